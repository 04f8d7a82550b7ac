"""HTTP status codes of the error tree: the one place where errors become answers.

`ERRORS` maps each error class a route may raise to its status, the OpenAPI response that
documents it and the headers it carries. An error is answered by the entry of its nearest
class, so a subclass (`TooLarge` of `InvalidInput`) may have an entry of its own; any other
exception is a 500, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from tracker.errors import (
    AlreadyLinked,
    Forbidden,
    HostBusy,
    InvalidInput,
    InvalidMessage,
    NotFound,
    RateLimited,
    RequestTimeout,
    StorageUnavailable,
    TooLarge,
    TooManyUserActors,
    Unauthorized,
    UnsupportedMediaType,
)
from tracker.responses import Error, FieldError

log = logging.getLogger(__name__)

Headers = dict[str, str]


@dataclass(frozen=True)
class ErrorStatus:
    """How one error class is answered, and how the OpenAPI document describes that answer
    (`name` is its component in `#/components/responses`)."""

    status: int
    name: str
    description: str
    body: type[Error] | type[FieldError] = Error
    headers: Callable[[Any], Headers] | None = None
    # Headers the document declares (name -> description), beside those of `headers`.
    documented_headers: tuple[str, ...] = ()


def _unauthorized(exc: Unauthorized) -> Headers:
    return {"WWW-Authenticate": "Bearer"}


def _rate_limited(exc: RateLimited) -> Headers:
    return {"Retry-After": str(exc.retry_after_whole_s)}


def _request_timeout(exc: RequestTimeout) -> Headers:
    # The rest of the body may still come: this connection cannot carry another request.
    return {"Connection": "close"}


def _storage_unavailable(exc: StorageUnavailable) -> Headers:
    return {"Retry-After": str(exc.retry_after_s)}


# A body that is not JSON at all (raised as `InvalidInput` itself, field `body`) is a 400;
# JSON of the wrong shape, even as a whole (`[]` for an object), is a schema violation: 422.
BAD_REQUEST = ErrorStatus(
    400,
    "BadRequest",
    "The body is not valid JSON, or is nested too deeply to read (field `body`); or, on the "
    "Segment routes, a message is malformed or over 32 KB: the whole batch is refused, and "
    "`field` names the culprit (`batch.<index>.<field>`).",
    FieldError,
)

# One answer, one component of the document: the two things a route may not find.
NOT_FOUND = ErrorStatus(
    404,
    "NotFound",
    "No such session for this user; no goal, funnel or experiment so named; or no file of the "
    "browser client by this name (an older build's hash).",
)

ERRORS: dict[type[Exception], ErrorStatus] = {
    Unauthorized: ErrorStatus(
        401,
        "Unauthorized",
        "Missing or wrong admin token or identity token.",
        headers=_unauthorized,
        documented_headers=("WWW-Authenticate",),
    ),
    Forbidden: ErrorStatus(
        403,
        "Forbidden",
        "Valid credentials, but not for this user's data; or a tracking request from a page "
        "whose Origin is neither the tracker's nor in TRACKER_ALLOWED_ORIGINS (nothing is "
        "stored).",
    ),
    NotFound: NOT_FOUND,
    AlreadyLinked: ErrorStatus(
        409, "Conflict", "The anonymous ID is linked to another user already (one user at most)."
    ),
    InvalidMessage: BAD_REQUEST,
    RequestTimeout: ErrorStatus(
        408,
        "RequestTimeout",
        "The body did not all arrive within TRACKER_BODY_TIMEOUT_S (10 s by default); the "
        "connection is closed.",
        headers=_request_timeout,
    ),
    TooLarge: ErrorStatus(413, "TooLarge", "Body over 64 KB, or more than 500 events.", FieldError),
    UnsupportedMediaType: ErrorStatus(
        415, "UnsupportedMediaType", "Content type is not application/json or text/plain."
    ),
    InvalidInput: ErrorStatus(
        422,
        "Invalid",
        "The request does not match the schema; `field` names the culprit.",
        FieldError,
    ),
    RateLimited: ErrorStatus(
        429,
        "RateLimited",
        "Too many requests from this client or for this user, too many open at once from "
        "this client (TRACKER_OPEN_REQUESTS_PER_CLIENT), or too many failed admin "
        "authentications from it (TRACKER_ADMIN_FAILURES_PER_MIN).",
        headers=_rate_limited,
        documented_headers=("Retry-After",),
    ),
    StorageUnavailable: ErrorStatus(
        503,
        "StorageUnavailable",
        "Storage is unavailable, or the user's host did not answer within "
        "TRACKER_HOST_TIMEOUT_S (30 s by default) or has too many requests waiting, or (per-user "
        "placement) TRACKER_MAX_USER_ACTORS per-user actors are live already: not stored, or "
        "not confirmed. Retry; an event with an `eventId` is stored once however often it is "
        "sent.",
        headers=_storage_unavailable,
        documented_headers=("Retry-After",),
    ),
}

# Every answer an error can get, by status: what the OpenAPI document lists.
STATUSES: dict[int, ErrorStatus] = {
    entry.status: entry for entry in sorted([BAD_REQUEST, *ERRORS.values()], key=lambda e: e.status)
}


def status_of(exc: Exception) -> ErrorStatus | None:
    """The entry that answers `exc`: its nearest class's, or None (a 500)."""
    if type(exc) is InvalidInput and exc.field == "body":
        return BAD_REQUEST
    for cls in type(exc).__mro__:
        entry = ERRORS.get(cls)
        if entry is not None:
            return entry
    return None


def error_body(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, InvalidInput):
        return {"error": exc.message, "field": exc.field}
    if isinstance(exc, StorageUnavailable) and not isinstance(exc, HostBusy | TooManyUserActors):
        # Not "nothing was stored": a host that died after its commit, or a retry waiting on
        # a first try whose commit failed, cannot tell. A retry stores each eventId once.
        # A request refused by a busy host was not sent at all, and its message says so.
        return {"error": "storage unavailable; not stored or not confirmed, retry later"}
    return {"error": str(exc)}


def error_response(exc: Exception) -> Response:
    """The answer to a route's error."""
    entry = status_of(exc)
    if entry is None:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"error": "internal error"}, status_code=500)
    headers = entry.headers(exc) if entry.headers is not None else {}
    return JSONResponse(error_body(exc), status_code=entry.status, headers=headers)


def socket_error(exc: Exception, seq: int | None) -> dict[str, Any]:
    """The answer to a tracking socket's message that failed: the error and field the POST
    route would answer, the status it would answer with, and when to retry where it says."""
    entry = status_of(exc)
    if entry is None:
        log.exception("unexpected error", exc_info=exc)
        return {"seq": seq, "error": "internal error", "field": None, "status": 500}
    body = error_body(exc)
    reply: dict[str, Any] = {
        "seq": seq,
        "error": body["error"],
        "field": body.get("field"),
        "status": entry.status,
    }
    if isinstance(exc, RateLimited):
        reply["retryAfter"] = exc.retry_after_whole_s
    elif isinstance(exc, StorageUnavailable):
        reply["retryAfter"] = exc.retry_after_s
    return reply


async def deny(websocket: WebSocket, exc: Exception) -> None:
    """Refuse a WebSocket handshake with the HTTP answer `exc` gets on other routes, where the
    server can send one; else by closing before accepting (the server answers 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(exc))
    else:
        await websocket.close(1008)
