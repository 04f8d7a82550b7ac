"""The route table: every route of the HTTP API, declared once.

`ROUTES` is the one place to add a route. Each entry names its path and method, the handler
(a method of `handlers.Ingress`, or a static page), who may call it, what it reads (request
body, query, path and header parameters as msgspec types), what it answers (a response type of
`tracker.responses`, or another media type) and the error statuses it may answer. The table
builds both the Starlette routes (`starlette_routes`) and the OpenAPI document
(`tracker.openapi`), so the two cannot drift.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from tracker import responses as r
from tracker.http_errors import error_response
from tracker.middleware import IDENTIFY_PATH, SESSION_PATH, TRACK_PATH
from tracker.schema import (
    MAX_BATCH_EVENTS,
    MAX_TIMESTAMP_MS,
    EventBatch,
    Id,
    IdentifyRequest,
    LoginRequest,
    Movement,
    SessionRequest,
    UserIdText,
)
from tracker.segment import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    SegmentBatchBody,
    SegmentMessageBody,
)

if TYPE_CHECKING:
    from tracker.handlers import Handler, Ingress


class Caller(enum.Enum):
    """Who may call a route."""

    ANYONE = "anyone"
    # Anyone for an anonymous visitor (a random UUID); any other user with its identity token.
    VISITOR = "visitor"
    # The visitor who owns the user (visitor cookie or identity token), or the admin.
    OWNER = "owner"
    # The admin's token or login cookie; checked before the handler runs.
    ADMIN = "admin"
    # A server-side source: a write key (TRACKER_WRITE_KEYS) as the HTTP Basic user name.
    SOURCE = "source"


@dataclass(frozen=True)
class Header:
    description: str
    required: bool = True


@dataclass(frozen=True)
class Answer:
    """A route's 200: a JSON body of one of `body` (several: any one of them), or a text body
    of `media_type`."""

    description: str
    body: tuple[Any, ...] = ()
    media_type: str = "application/json"
    headers: Mapping[str, Header] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    path: str  # Starlette's syntax; path parameters named as in `path_params`
    method: str
    handler: str  # a method of `Ingress`, or "page" for `page`
    tag: str
    summary: str
    caller: Caller
    ok: Answer
    errors: tuple[int, ...] = ()
    # The request body: any one of these types, as JSON (`body.JSON_TYPES`).
    body: tuple[Any, ...] = ()
    body_description: str | None = None
    query: type[Struct] | None = None
    path_params: type[Struct] | None = None
    headers: type[Struct] | None = None
    # The answer holds a visitor's or the admin's data, or sets their cookies: no cache may keep
    # it (a shared one would hand it to the next caller, the browser's to the next user).
    private: bool = False
    description: str | None = None
    page: str | None = None


class _AnyPath(PathConvertor):
    """Starlette's `path` stops at a line break (`%0A`); every /app/... URL, whatever it
    holds, is the demo app's page."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", _AnyPath())


# -- what routes read beside their bodies ------------------------------------------------------

UserId = Annotated[UserIdText, Meta(description="The user's ID: 1-128 printable characters.")]
# A time as a query parameter: ASCII digits (`handlers.time_param`), at most a movement's
# largest timestamp.
QueryMs = Annotated[int, Meta(ge=0, le=MAX_TIMESTAMP_MS)]
MovementList = Annotated[list[Movement], Meta(extra_json_schema={"maxItems": MAX_BATCH_EVENTS})]


class SessionQuery(Struct):
    userId: UserId
    sessionId: Annotated[Id, Meta(description="The session's ID.")]


class AnalyticsQuery(Struct):
    userId: (
        Annotated[
            UserIdText, Meta(description="Also return this user's live sessions (userSessions).")
        ]
        | UnsetType
    ) = UNSET
    from_: (
        Annotated[QueryMs, Meta(description="Start of the time range, inclusive.")] | UnsetType
    ) = msgspec.field(default=UNSET, name="from")
    to: Annotated[QueryMs, Meta(description="End of the time range, inclusive.")] | UnsetType = (
        UNSET
    )
    path: (
        Annotated[
            str,
            Meta(
                max_length=2048,
                description="The page the heatmap shows (default: the most clicked one in the "
                "range). Filters nothing else.",
            ),
        ]
        | UnsetType
    ) = UNSET


class UserPath(Struct):
    user_id: UserId = msgspec.field(name="userId")


class AppPath(Struct):
    rest: Annotated[str, Meta(min_length=1, description="Any route of the demo app.")] = (
        msgspec.field(name="path")
    )


_DECLINES = (
    "`{}: 1` declines tracking: the request is answered as declined before anything else (the "
    "body is not read), and nothing is recorded."
)
SecGpc = Annotated[str, Meta(description=_DECLINES.format("Sec-GPC"))]
Dnt = Annotated[str, Meta(description=_DECLINES.format("DNT"))]


class PrivacyHeaders(Struct):
    sec_gpc: SecGpc | UnsetType = msgspec.field(default=UNSET, name="Sec-GPC")
    dnt: Dnt | UnsetType = msgspec.field(default=UNSET, name="DNT")


# -- the table ---------------------------------------------------------------------------------

INPUT_ERRORS = (400, 408, 413, 415, 422)
# 429 on admin routes: too many failed admin authentications from one address.
ADMIN_READ_ERRORS = (401, 422, 429, 503)
PRIVATE_PAGE = Header("`no-store`: no cache may keep the answer.")
ANALYTICS_RANGE = (
    "`from` and `to` (either may be left out) select events by the time the server received "
    "them, at the granularity each figure is kept in: `topPages`, `topElements`, `heatmap`, "
    "`scrollDepth` and `journeys` sum the whole hours that overlap the range; `totalEvents`, "
    "`eventsByType` and `eventsPerMinute` the minutes that overlap it (`eventsPerMinute` "
    "without `from`: the 60 minutes up to `to`); `rageClicks` are those received within it. "
    "Buckets older than 7 days are not kept. Without a range, `totalEvents` and "
    "`eventsByType` are all-time totals and `eventsPerMinute` covers the last 60 minutes. "
    "Whatever the range, `totalSessions` and `totalUsers` are all-time totals, `activeUsers` "
    "counts the users of the last 5 minutes and `recentActivity` lists the 10 most recently "
    "active sessions."
)
PAGE = Answer("The page.", media_type="text/html")
SEGMENT_ERRORS = (400, 401, 408, 413, 415, 429, 503)
SEGMENT_DOC = (
    "Segment's HTTP tracking API, for server-side sources and Segment's SDKs (docs/segment.md). "
    "A bad message refuses the whole request (400 or 413 naming `batch.<index>.<field>`); "
    "answered once every message is durable."
)


def _segment(kind: str, summary: str) -> Route:
    single = kind != "batch"
    return Route(
        f"/v1/{kind}",
        "POST",
        "segment",
        "segment",
        summary,
        Caller.SOURCE,
        Answer("Stored.", (r.Ok,)),
        SEGMENT_ERRORS,
        body=(SegmentMessageBody,) if single else (SegmentBatchBody,),
        body_description=(
            f"One message; at most {MAX_MESSAGE_BYTES // 1024} KB."
            if single
            else f"Messages of any type; at most {MAX_BATCH_BYTES // 1024} KB in all, "
            f"{MAX_MESSAGE_BYTES // 1024} KB each."
        ),
        description=SEGMENT_DOC,
    )


def _page(path: str, file: str, summary: str, path_params: type[Struct] | None = None) -> Route:
    return Route(
        path,
        "GET",
        "page",
        "pages",
        summary,
        Caller.ANYONE,
        PAGE,
        path_params=path_params,
        page=file,
    )


ROUTES: tuple[Route, ...] = (
    Route(
        TRACK_PATH,
        "POST",
        "track",
        "tracking",
        "Record movements (text/plain is for navigator.sendBeacon).",
        Caller.VISITOR,
        Answer(
            "Stored; `accepted` counts the request's movements (0 if tracking is declined).",
            (r.TrackResult,),
        ),
        (401, 403, 429, 503, *INPUT_ERRORS),
        body=(Movement, MovementList, EventBatch),
        body_description="One movement, an array of them, or {events: [...]}; all for one user.",
        headers=PrivacyHeaders,
    ),
    Route(
        SESSION_PATH,
        "POST",
        "create_session",
        "tracking",
        "Start or resume a session; sets the visitor cookie for an anonymous visitor.",
        Caller.VISITOR,
        Answer(
            "The session, or a note that tracking is declined.",
            (r.SessionResult, r.Declined),
            headers={
                "Set-Cookie": Header(
                    "tracker_visitor, for an anonymous (random UUID) user ID only, to the "
                    "visitor who owns it or to one who starts the user's first session; Secure "
                    "over HTTPS; absent when declined.",
                    required=False,
                )
            },
        ),
        (401, 403, 429, 503, *INPUT_ERRORS),
        body=(SessionRequest,),
        headers=PrivacyHeaders,
        private=True,
    ),
    Route(
        IDENTIFY_PATH,
        "POST",
        "identify",
        "tracking",
        "Link the anonymous visitor to a logged-in user: their history moves into the user's.",
        Caller.OWNER,
        Answer("Linked (again, harmlessly, if it was).", (r.Linked,)),
        (401, 403, 409, 429, 503, *INPUT_ERRORS),
        body=(IdentifyRequest,),
        body_description="The visitor's anonymous ID (shown by their visitor cookie), the "
        "user's ID and their identity token.",
        private=True,
    ),
    Route(
        SESSION_PATH,
        "GET",
        "get_session",
        "tracking",
        "One session, for the visitor who owns it or the admin.",
        Caller.OWNER,
        Answer("The session.", (r.Session,)),
        (401, 403, 404, 422, 429, 503),
        query=SessionQuery,
        private=True,
    ),
    Route(
        "/api/analytics",
        "GET",
        "analytics",
        "analytics",
        "Cross-user analytics.",
        Caller.ADMIN,
        Answer("The report.", (r.Analytics,)),
        ADMIN_READ_ERRORS,
        query=AnalyticsQuery,
        private=True,
        description=ANALYTICS_RANGE,
    ),
    Route(
        "/api/analytics/stream",
        "GET",
        "analytics_stream",
        "analytics",
        "Live updates as Server-Sent Events.",
        Caller.ADMIN,
        Answer(
            "`event: update` with data {events, at} at most once a second while events "
            "arrive; a `: keepalive` comment every 15 s. Ends when the aggregator is "
            "unavailable, or when the login session of the tracker_admin cookie that opened it "
            "expires; an EventSource connects again after the stream's `retry` (2 s).",
            media_type="text/event-stream",
        ),
        (401, 429),
        private=True,
    ),
    Route(
        "/api/admin/login",
        "POST",
        "admin_login",
        "admin",
        "Exchange the admin token for the tracker_admin cookie.",
        Caller.ANYONE,
        Answer(
            "Logged in.",
            (r.Ok,),
            headers={"Set-Cookie": Header("tracker_admin; HttpOnly; SameSite=Strict.")},
        ),
        (401, 429, *INPUT_ERRORS),
        body=(LoginRequest,),
        private=True,
    ),
    Route(
        "/api/admin/logout",
        "POST",
        "admin_logout",
        "admin",
        "Clear the tracker_admin cookie.",
        # Only the admin: another site's page must not sign the admin out.
        Caller.ADMIN,
        Answer("Logged out.", (r.Ok,), headers={"Set-Cookie": Header("Expires tracker_admin.")}),
        (401, 429),
        private=True,
    ),
    Route(
        "/api/users/{user_id}",
        "GET",
        "user_detail",
        "users",
        "One user's active sessions (not ended by the 30-minute timeout) with their "
        "movements; `/export` holds their whole stored history.",
        Caller.ADMIN,
        Answer("The user.", (r.UserDetail,)),
        ADMIN_READ_ERRORS,
        path_params=UserPath,
        private=True,
    ),
    Route(
        "/api/users/{user_id}",
        "DELETE",
        "erase_user",
        "users",
        "Erase a user from memory and storage.",
        Caller.ADMIN,
        Answer("Erased.", (r.EraseResult,)),
        ADMIN_READ_ERRORS,
        path_params=UserPath,
        private=True,
    ),
    Route(
        "/api/users/{user_id}/export",
        "GET",
        "export_user",
        "users",
        "A user's stored history as NDJSON: session lines, then movement lines.",
        Caller.ADMIN,
        Answer("One JSON object per line.", media_type="application/x-ndjson"),
        ADMIN_READ_ERRORS,
        path_params=UserPath,
        private=True,
    ),
    _segment("batch", "Segment: several messages of any type."),
    _segment("track", "Segment: an event (a custom event with its properties)."),
    _segment("page", "Segment: a page view."),
    _segment("identify", "Segment: who a user is; links their anonymous ID to them."),
    _segment("alias", "Segment: link a previous (anonymous) ID to a user."),
    Route(
        "/tracker.js",
        "GET",
        "tracker_js",
        "service",
        "The browser client.",
        Caller.ANYONE,
        Answer("The script.", media_type="application/javascript"),
    ),
    Route(
        "/healthz",
        "GET",
        "healthz",
        "service",
        "Liveness.",
        Caller.ANYONE,
        Answer("Alive.", (r.Health,)),
    ),
    Route(
        "/metrics",
        "GET",
        "metrics_text",
        "service",
        "Prometheus metrics.",
        Caller.ANYONE,
        Answer("Prometheus text exposition format 0.0.4.", media_type="text/plain"),
    ),
    Route(
        "/openapi.json",
        "GET",
        "openapi",
        "service",
        "This document.",
        Caller.ANYONE,
        Answer("OpenAPI 3.1.", (dict[str, Any],)),
    ),
    _page("/", "demo/index.html", "Demo site home."),
    _page("/long", "demo/long.html", "Demo long page (scrolling)."),
    _page("/form", "demo/form.html", "Demo form page."),
    _page(
        "/app/{rest:anypath}",
        "demo/index.html",
        "Demo single-page-app routes (all serve the demo page).",
        AppPath,
    ),
    _page(
        "/analytics", "dashboard.html", "The analytics dashboard (its API calls need the admin)."
    ),
)


# -- the Starlette routes ----------------------------------------------------------------------


class _NoAnswer(Response):
    """What a handler returns when its client is gone: nothing is sent."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return


def _endpoint(ingress: Ingress, route: Route) -> Handler:
    """The route's handler, wrapped: the admin checked (`Caller.ADMIN`), errors answered
    (`http_errors`), private answers kept from caches, requests counted."""
    handler = ingress.page(route.page) if route.page else getattr(ingress, route.handler)
    admin = route.caller is Caller.ADMIN

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            if admin:
                request.state.admin_expiry = ingress.require_admin(request)
            response: Response = await handler(request)
        except ClientDisconnect:
            return _NoAnswer()  # nobody to answer, and no answer to count (as on the fast path)
        except Exception as exc:
            response = error_response(exc)
        if route.private:
            response.headers["Cache-Control"] = "no-store"
        ingress.metrics.observe(route.path, request.method, response.status_code, started)
        return response

    return endpoint


def starlette_routes(ingress: Ingress) -> list[BaseRoute]:
    """`ROUTES` as Starlette routes over `ingress`'s handlers."""
    return [
        StarletteRoute(route.path, _endpoint(ingress, route), methods=[route.method])
        for route in ROUTES
    ]
