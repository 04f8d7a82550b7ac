"""The HTTP ingress: the seed's routes, validated and secured, as one Starlette app.

`build_app(tracker, config)` is what the Ray Serve deployment (`serve_app.py`) serves. Routes
resolve the user named in the request and call their tracker through a `Dispatcher`. HTTP
status codes are mapped from the error tree in exactly one place, `error_response`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import msgspec
from ray.exceptions import RayError
from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker import auth, schema
from tracker.api import Tracker
from tracker.clock import wall_clock_ms
from tracker.config import Config
from tracker.dispatch import Dispatcher, answer_within
from tracker.errors import (
    Forbidden,
    HostBusy,
    InvalidInput,
    InvalidMovement,
    RateLimited,
    RequestTimeout,
    StorageUnavailable,
    TooLarge,
    TooManyUserActors,
    Unauthorized,
    UnknownSession,
    UnsupportedMediaType,
)
from tracker.host import DECLINED, NewSession
from tracker.metrics import Metrics
from tracker.ratelimit import OpenRequests, ProxyCheck, RateLimiter, client_key

log = logging.getLogger(__name__)
# How long `/metrics` waits for the hosts' own figures: a host that does not answer must not
# hold a scrape (Prometheus gives one 10 s by default); the gauges then keep their last values.
HOST_STATS_TIMEOUT_S = 2.0

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
# Events a tracking request carries per token of its address's rate-limit bucket, beyond the
# request's own token: tracker.js sends a few to a few tens every 2 s, and one address at the
# default limit of 50 may send 1,250 events a second (25,000 when requests were all it paid).
EVENTS_PER_TOKEN = 25
ADMIN_COOKIE = "tracker_admin"
VISITOR_COOKIE = "tracker_visitor"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
JSON_TYPES = ("application/json", "text/plain")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
TRACK_PATH = "/api/track"
SESSION_PATH = "/api/track/session"
# What tracker.js sends from the tracked site's pages: the only requests that other origins
# (TRACKER_ALLOWED_ORIGINS) may make. The tracked site is usually the same site as the tracker
# (www.example.com and tracker.example.com), so the admin's SameSite cookie goes along with its
# scripts' requests: with CORS on other routes, they could read what the admin may.
CORS_PATHS = frozenset({TRACK_PATH, SESSION_PATH})
CORS_METHODS = ("POST",)


class _AnyPath(PathConvertor):
    """Starlette's `path` stops at a line break (`%0A`), which made such /app/... URLs 404;
    every /app/... URL is the demo app's page."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", _AnyPath())


# -- errors: the one place where they become status codes --------------------------------------


def error_response(exc: Exception) -> Response:
    headers: dict[str, str] = {}
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, InvalidInput):
        body = {"error": exc.message, "field": exc.field}
    if isinstance(exc, TooLarge):
        status = 413
    elif isinstance(exc, InvalidInput):
        # 400 only for a body that is not JSON at all (raised as the base class); JSON of the
        # wrong shape, even as a whole (`[]` for an object), is a schema violation: 422.
        status = 400 if type(exc) is InvalidInput and exc.field == "body" else 422
    elif isinstance(exc, UnsupportedMediaType):
        status = 415
    elif isinstance(exc, UnknownSession):
        status = 404
    elif isinstance(exc, Unauthorized):
        status = 401
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, Forbidden):
        status = 403
    elif isinstance(exc, RateLimited):
        status = 429
        headers["Retry-After"] = str(exc.retry_after_whole_s)
    elif isinstance(exc, RequestTimeout):
        status = 408
        # The rest of the body may still come: this connection cannot carry another request.
        headers["Connection"] = "close"
    elif isinstance(exc, StorageUnavailable):
        status = 503
        headers["Retry-After"] = str(exc.retry_after_s)
        # Not "nothing was stored": a host that died after its commit, or a retry waiting on
        # a first try whose commit failed, cannot tell. A retry stores each eventId once.
        # A request refused by a busy host was not sent at all, and its message says so.
        if not isinstance(exc, HostBusy | TooManyUserActors):
            body = {"error": "storage unavailable; not stored or not confirmed, retry later"}
    else:
        log.exception("unexpected error", exc_info=exc)
        status = 500
        body = {"error": "internal error"}
    return JSONResponse(body, status_code=status, headers=headers)


# -- request bodies --------------------------------------------------------------------------


def check_body_headers(headers: Mapping[str, str], types: tuple[str, ...]) -> None:
    """Refuse a body of another content type, or one declared larger than `MAX_BODY_BYTES`."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in types:
        raise UnsupportedMediaType(
            f"content type {content_type or '(none)'!r}; expected one of {', '.join(types)}"
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge("body", f"{declared} bytes; at most {MAX_BODY_BYTES}")


async def read_limited(chunks: AsyncIterator[bytes], timeout_s: float) -> bytes:
    """The body, refused as soon as it grows past `MAX_BODY_BYTES` (whatever was declared), or
    when it has not all arrived within `timeout_s` (a trickling body holds a request slot)."""
    parts: list[bytes] = []
    size = 0
    task = asyncio.current_task()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        if task is not None:
            task.cancel()

    # A bare timer: `asyncio.timeout` cost 12 µs per request here, this one 2-4.
    timer = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise TooLarge("body", f"more than {MAX_BODY_BYTES} bytes")
            parts.append(chunk)
    except asyncio.CancelledError:
        if not expired or task is None:
            raise
        task.uncancel()
        raise RequestTimeout(
            f"the body did not arrive within {timeout_s:g} s (TRACKER_BODY_TIMEOUT_S)"
        ) from None
    finally:
        timer.cancel()
    return b"".join(parts)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def accepted_body(accepted: int) -> bytes:
    return b'{"success":true,"accepted":%d}' % accepted


def signals_decline(headers: Mapping[str, str]) -> bool:
    """Global Privacy Control or Do Not Track: the request is answered as declined before
    anything else is looked at (docs/privacy.md)."""
    return headers.get("sec-gpc") == "1" or headers.get("dnt") == "1"


def client_of(scope: Scope) -> str:
    """The key the client's address is limited under (`client_key`). Client IPs stay in this
    process's memory only (the rate limiter's); they are never stored."""
    client = scope.get("client")
    return client_key(client[0]) if client else "?"


def over_https(request: Request) -> bool:
    """Whether the request came over HTTPS, so that the cookies it gets may say `Secure`. Behind
    a load balancer that ends TLS, the server takes the scheme from `X-Forwarded-Proto` when
    the balancer is trusted (`FORWARDED_ALLOW_IPS`, docs/deploy.md)."""
    return request.url.scheme == "https"


def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# -- middleware --------------------------------------------------------------------------------


class VisitorCors:
    """CORS (with credentials) for the requests tracker.js makes (`CORS_PATHS`), and for no
    other route: those answer other origins nothing, as if no origin were allowed."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=list(CORS_METHODS),
            allow_headers=["Content-Type", "Authorization"],
            allow_credentials=True,
            # Else a page of another origin cannot read it, and tracker.js backs off on its own
            # schedule instead of the server's on a 429 or 503.
            expose_headers=["Retry-After"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) in CORS_PATHS:
            method = scope["method"]
            if method == "OPTIONS":  # a preflight: the method it asks about
                method = _header(scope, b"access-control-request-method")
            if method in CORS_METHODS:
                await self.cors(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """CSP and friends on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- the app -----------------------------------------------------------------------------------


class Ingress:
    """Route handlers with their collaborators (tracker, limits, secrets, metrics)."""

    def __init__(
        self, tracker: Tracker, config: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not config.admin_token or not config.secret:
            config = auth.ensure_secrets(config)
        self.tracker = tracker
        self.config = config
        # Unix seconds, for the admin's sessions.
        self.clock = clock
        self.metrics = Metrics()
        self.dispatch = Dispatcher(tracker, self.metrics)
        self.ip_limiter = RateLimiter(config.rate_limit)
        self.user_limiter = RateLimiter(config.rate_limit)
        per_min = config.admin_failures_per_min
        self.admin_failures = RateLimiter(per_min / 60, burst=max(per_min, 1.0))
        # Browsers send origins in lower case.
        self.allowed_origins = frozenset(origin.lower() for origin in config.allowed_origins)
        self.open_requests = OpenRequests(
            config.open_requests_per_client if config.rate_limit else 0
        )
        self.opt_out = frozenset(config.opt_out)
        self.proxies = ProxyCheck()
        self.admin_token: str = config.admin_token or ""
        self.secret: str = config.secret or ""

    # -- helpers ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return wall_clock_ms()

    async def body(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> bytes:
        check_body_headers(headers, JSON_TYPES)
        return await read_limited(chunks, self.config.body_timeout_s)

    async def json_body(self, request: Request) -> Any:
        return schema.decode_json(await self.body(request.headers, request.stream()))

    def notice_proxy(self, scope: Scope, forwarded: str | None) -> None:
        """Warn, once, when tracking requests come through a proxy that is not trusted."""
        client = scope.get("client")
        if forwarded is None or not client:
            return
        if not self.proxies.first_untrusted(client[0], forwarded):
            return
        log.warning(
            "tracking requests from %s carry an X-Forwarded-For header that is not trusted: "
            "every visitor behind that proxy shares one rate limit and one open-request "
            "limit. Add the proxy's addresses to FORWARDED_ALLOW_IPS (docs/deploy.md).",
            client[0],
        )

    def admit(self, client: str) -> AbstractContextManager[None]:
        """Charge the client address's bucket; count the request among the address's open ones
        for as long as the returned context lasts, however the request ends. Either one over
        its limit raises `RateLimited`."""
        self.ip_limiter.check(client)
        return self.open_requests.hold(client)

    def authorize_user(self, headers: Mapping[str, str], user_id: str) -> None:
        """Anonymous visitors are random UUIDs; any other user ID needs its identity token."""
        if auth.is_anonymous(user_id):
            return
        token = auth.bearer(headers.get("authorization"))
        if token is None:
            raise Unauthorized(f"user {user_id!r} is not anonymous: an identity token is required")
        auth.verify_token(self.secret, user_id, token)

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """Refuse (403) a tracking request from a page of another site than the tracker's own
        or those in TRACKER_ALLOWED_ORIGINS; one without an `Origin` (a program's) passes.

        The tracker's own origin is the host and port the request's `Host` header names, as
        the browser wrote it and a proxy in front passes it on. The scheme is not compared:
        behind a balancer that ends TLS the replica sees plain HTTP. `X-Forwarded-Host` is not
        read: past uvicorn's proxy handling the replica cannot tell who set it. A proxy that
        rewrites `Host` needs the public origin listed in TRACKER_ALLOWED_ORIGINS."""
        origin = headers.get("origin")
        if origin is None:
            return
        lowered = origin.lower()
        if lowered in self.allowed_origins:
            return
        scheme, sep, authority = lowered.partition("://")
        if sep and scheme in ("http", "https") and authority == headers.get("host", "").lower():
            return
        shown = origin if len(origin) <= 100 else f"{origin[:100]}..."
        raise Forbidden(
            f"origin {shown!r} may not send tracking requests: it is neither this tracker's "
            "nor listed in TRACKER_ALLOWED_ORIGINS"
        )

    def require_admin(self, request: Request) -> int | None:
        """Accept the admin's token (a bearer) or login cookie, or raise `Unauthorized`; return
        when the cookie's session expires (unix seconds), None for the token, which does not."""
        presented = auth.bearer(request.headers.get("authorization"))
        if presented is None:
            cookie = request.cookies.get(ADMIN_COOKIE)
            return auth.check_admin_session(self.admin_token, cookie, now_s=self.clock())
        self.check_admin_token(client_of(request.scope), presented)
        return None

    def check_admin_token(self, client: str, presented: str | None) -> None:
        """Accept the admin token; a wrong one is charged to the client's address
        (TRACKER_ADMIN_FAILURES_PER_MIN). An address out of failures is refused before its
        token is compared, so that guesses past the limit learn nothing."""
        self.admin_failures.check_left(client)
        try:
            auth.check_admin(self.admin_token, presented)
        except Unauthorized:
            self.admin_failures.check(client)
            raise

    def may_read(self, request: Request, user_id: str) -> bool:
        """Whether the request shows that it may read `user_id`'s sessions: by that anonymous
        visitor's cookie, an identity token for the user, or as the admin (cookie or token).
        A bearer that is neither is a 401, and counts as a failed admin authentication."""
        if self.has_visitor_cookie(request, user_id):
            return True
        presented = auth.bearer(request.headers.get("authorization"))
        if presented is None:
            try:
                self.require_admin(request)
            except Unauthorized:
                return False
            return True
        try:
            auth.verify_token(self.secret, user_id, presented)
        except Unauthorized as refused:
            try:
                self.check_admin_token(client_of(request.scope), presented)
            except Unauthorized:
                raise refused from None
        return True

    def visitor_proof(self, user_id: str) -> str:
        mac = hmac.new(self.secret.encode(), f"visitor\n{user_id}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def has_visitor_cookie(self, request: Request, user_id: str) -> bool:
        """Whether the request carries the visitor cookie of `user_id`, an anonymous visitor.
        Any other user reads with their token, whatever cookie comes along: one set before
        cookies were kept to anonymous visitors would outlive the token by up to a year."""
        if not auth.is_anonymous(user_id):
            return False
        cookie = request.cookies.get(VISITOR_COOKIE, "")
        owner, _, proof = cookie.rpartition(".")
        # Bytes, because compare_digest refuses non-ASCII str (a cookie may carry any byte).
        expected = self.visitor_proof(user_id).encode()
        return owner == user_id and hmac.compare_digest(proof.encode(), expected)

    # -- tracking routes -------------------------------------------------------------------

    async def track(self, request: Request) -> Response:
        """`POST /api/track` through Starlette: cross-origin requests, for CORS (`TrackerApp`
        answers the others itself)."""
        self.notice_proxy(request.scope, request.headers.get("x-forwarded-for"))
        accepted = await self.accept(request.headers, client_of(request.scope), request.stream())
        return Response(accepted_body(accepted), media_type="application/json")

    async def accept(
        self, headers: Mapping[str, str], client: str, chunks: AsyncIterator[bytes]
    ) -> int:
        """Read, validate and store a tracking request's events; return how many there were
        (stored now or by an earlier try: a movement whose `eventId` its session already holds
        is not stored again).

        Checks run cheapest first, so that what is refused costs little: a page of a site not
        allowed to send is refused, and a privacy signal answered, before anything else; the
        client's address pays, and has the request counted among its open ones until it ends,
        before its body is read; the user's own bucket only once the request has shown it may
        write for that user (else anyone could use up anyone's)."""
        self.check_origin(headers)
        if signals_decline(headers):
            return 0
        with self.admit(client):
            return await self.store(headers, client, chunks)

    async def store(
        self, headers: Mapping[str, str], client: str, chunks: AsyncIterator[bytes]
    ) -> int:
        """`accept` from the body on, once the client's address is admitted."""
        movements = schema.movements_from_json(await self.body(headers, chunks), self.now_ms())
        if not movements:
            return 0
        # A large batch costs the address more than one request: what one address can make the
        # hosts hold in memory is bounded by events, not by requests of up to 500 events each.
        # (At most what a full bucket holds beside the request's own token, so that a full
        # batch can pass at any limit.)
        extra = min((len(movements) - 1) // EVENTS_PER_TOKEN, self.ip_limiter.burst - 1)
        if extra >= 1:
            self.ip_limiter.check(client, extra)
        user_id = movements[0].userId
        for index, movement in enumerate(movements):
            if movement.userId != user_id:
                raise InvalidMovement(
                    f"events.{index}.userId", "all events of one request must be for one user"
                )
        self.authorize_user(headers, user_id)
        if user_id in self.opt_out:
            return 0
        self.user_limiter.check(user_id)
        for movement in movements:
            if movement.eventId is None:
                # Lets an internal retry of this request count once.
                movement.eventId = uuid.uuid4().hex
        stored = await self.dispatch.track(user_id, movements)
        self.metrics.events.inc(stored)
        # All of them are stored now, by this request or an earlier try of it: a retry (the
        # client's, or Ray's after a host died between its commit and its answer) must not
        # read as a loss. The metric counts each event once.
        return len(movements)

    async def track_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /api/track` as a bare ASGI app: the same answers as `track`, with the security
        headers, without Starlette's request, routing and middleware (most of a request's cost
        here, and there is one request per visitor event)."""
        started = time.perf_counter()
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        self.notice_proxy(scope, headers.get("x-forwarded-for"))
        try:
            accepted = await self.accept(headers, client_of(scope), _chunks(receive))
            payload = accepted_body(accepted)
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as exc:
            response = error_response(exc)
            response.raw_headers += SECURITY_HEADERS
            await response(scope, receive, send)
            self.metrics.observe(TRACK_PATH, "POST", response.status_code, started)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self.metrics.observe(TRACK_PATH, "POST", 200, started)

    async def create_session(self, request: Request) -> Response:
        """In the order of `accept`, for the same reasons."""
        self.check_origin(request.headers)
        if signals_decline(request.headers):
            return JSONResponse(DECLINED)
        with self.admit(client_of(request.scope)):
            return await self.start_session(request)

    async def start_session(self, request: Request) -> Response:
        """`create_session` from the body on, once the client's address is admitted.

        Anyone may start a session for an anonymous visitor, whose ID is all there is to
        show. A caller who has not shown it owns the user (`may_read`) starts new sessions
        only: a session that exists is neither shown, extended nor changed, and the caller
        gets back what it sent. It gets the visitor cookie only when the user had no session
        before: the cookie reads all of the user's sessions."""
        req = schema.session_request_from_obj(await self.json_body(request))
        self.authorize_user(request.headers, req.userId)
        if req.userId in self.opt_out:
            return JSONResponse(DECLINED)
        self.user_limiter.check(req.userId)
        info = msgspec.to_builtins(req.deviceInfo) if req.deviceInfo else None
        # Only for an anonymous visitor, who has nothing else to read with: an identified user
        # reads with their token, which expires, and a cookie would outlive it by a year.
        cookie = auth.is_anonymous(req.userId)
        if not cookie or self.may_read(request, req.userId):
            session = await self.dispatch.call(req.userId, "create_session", req.sessionId, info)
        else:
            started: NewSession = await self.dispatch.call(
                req.userId, "create_new_session", req.sessionId, info
            )
            if started.session is None:
                sent = msgspec.to_builtins(req)
                return JSONResponse({"success": True, "session": sent})
            session, cookie = started.session, started.first
        response = JSONResponse({"success": True, "session": session})
        if cookie:
            response.set_cookie(
                VISITOR_COOKIE,
                f"{req.userId}.{self.visitor_proof(req.userId)}",
                max_age=365 * 24 * 3600,
                httponly=True,
                samesite="lax",
                path="/api/track",
                secure=over_https(request),
            )
        return response

    async def get_session(self, request: Request) -> Response:
        self.ip_limiter.check(client_of(request.scope))
        user_id = schema.check_id("userId", request.query_params.get("userId"))
        session_id = schema.check_id("sessionId", request.query_params.get("sessionId"))
        if not self.may_read(request, user_id):
            raise Forbidden("only the visitor who owns this session, or the admin")
        self.user_limiter.check(user_id)
        session = await self.dispatch.call(user_id, "get_session", session_id)
        return JSONResponse(session)

    # -- admin routes ------------------------------------------------------------------------

    async def analytics(self, request: Request) -> Response:
        self.require_admin(request)
        params = request.query_params
        filters: dict[str, Any] = {}
        for name in ("from", "to"):
            if params.get(name):
                filters[f"{name}_ms"] = time_param(name, params[name])
        if params.get("path"):
            if len(params["path"]) > 2048:
                raise InvalidInput("path", "longer than 2048 characters")
            filters["path"] = params["path"]
        report: dict[str, Any] = await answer_within(
            self.tracker.aggregator.report.remote(self.now_ms(), filters), self.config, "aggregator"
        )
        report.setdefault("userSessions", [])
        if params.get("userId"):
            user_id = schema.check_id("userId", params["userId"])
            mine = await self.dispatch.call(user_id, "analytics")
            report["userSessions"] = mine["userSessions"]
        return JSONResponse(report)

    async def analytics_stream(self, request: Request) -> Response:
        """Live updates while the client stays; with the login cookie, until its session
        expires (the dashboard's EventSource then connects again, and is refused)."""
        expiry = self.require_admin(request)
        aggregator = self.tracker.aggregator

        async def events() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            quiet_s = 0.0
            while not await request.is_disconnected():
                started = time.monotonic()
                wait_s = 5.0
                if expiry is not None:
                    wait_s = min(wait_s, expiry - self.clock())
                    if wait_s <= 0:
                        return
                try:
                    count: int = await answer_within(
                        aggregator.wait_events.remote(wait_s), self.config, "aggregator"
                    )
                except Exception as exc:  # the aggregator failed, or hangs
                    # Answered 200 already: the stream ends, and the dashboard's EventSource
                    # connects again after `retry`.
                    log.warning("live stream ended: %s", exc)
                    return
                if count:
                    quiet_s = 0.0
                    data = json.dumps({"events": count, "at": self.now_ms()})
                    yield f"event: update\ndata: {data}\n\n".encode()
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
                else:
                    quiet_s += time.monotonic() - started
                    if quiet_s >= 15:
                        quiet_s = 0.0
                        yield b": keepalive\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def admin_login(self, request: Request) -> Response:
        with self.admit(client_of(request.scope)):
            raw = await self.json_body(request)
        token = raw.get("token") if isinstance(raw, dict) else None
        if not isinstance(token, str):
            raise InvalidInput("token", "expected the admin token as a string")
        self.check_admin_token(client_of(request.scope), token)
        response = JSONResponse({"success": True})
        response.set_cookie(
            ADMIN_COOKIE,
            auth.admin_session(self.admin_token, now_s=self.clock()),
            httponly=True,
            samesite="strict",
            path="/",
            max_age=auth.ADMIN_SESSION_S,
            secure=over_https(request),
        )
        return response

    async def admin_logout(self, request: Request) -> Response:
        # Only the admin: another site's page must not sign the admin out (the cookie is
        # SameSite=Strict, so such a request comes without it).
        self.require_admin(request)
        response = JSONResponse({"success": True})
        response.delete_cookie(ADMIN_COOKIE, path="/", secure=over_https(request))
        return response

    async def user_detail(self, request: Request) -> Response:
        self.require_admin(request)
        user_id = schema.check_id("userId", request.path_params["user_id"])
        result = await self.dispatch.call(user_id, "analytics")
        return JSONResponse({"userId": user_id, "sessions": result["userSessions"]})

    async def erase_user(self, request: Request) -> Response:
        self.require_admin(request)
        user_id = schema.check_id("userId", request.path_params["user_id"])
        result = await self.dispatch.call(user_id, "erase")
        return JSONResponse(result)

    async def export_user(self, request: Request) -> Response:
        self.require_admin(request)
        user_id = schema.check_id("userId", request.path_params["user_id"])
        lines = await self.dispatch.call(user_id, "export")
        body = b"".join(msgspec.json.encode(line) + b"\n" for line in lines)
        return Response(
            body,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{user_id}.ndjson"'},
        )

    # -- service routes ----------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_text(self, request: Request) -> Response:
        hosts = [h.stats.remote() for h in self.tracker.hosts.values()]
        try:
            async with asyncio.timeout(HOST_STATS_TIMEOUT_S):
                self.metrics.observe_hosts(await asyncio.gather(*hosts))
        except (TimeoutError, RayError) as exc:  # the replica's own figures are still worth it
            log.warning("metrics: the hosts' figures are not current: %r", exc)
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi(self, request: Request) -> Response:
        from tracker.openapi import openapi_document

        return JSONResponse(openapi_document())

    async def tracker_js(self, request: Request) -> Response:
        return FileResponse(
            STATIC / "tracker.js",
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=300"},
        )

    def page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        path = STATIC / name

        async def serve(request: Request) -> Response:
            return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

        return serve


def time_param(name: str, value: str) -> int:
    """A query parameter in ms since the epoch: ASCII digits only (`str.isdigit` takes "²" and
    other scripts' digits), no more than a movement's timestamp may be."""
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > len(str(schema.MAX_TIMESTAMP_MS))
        or int(value) > schema.MAX_TIMESTAMP_MS
    ):
        shown = value if len(value) <= 32 else f"{value[:32]}..."
        raise InvalidInput(
            name, f"{shown!r} is not a time in ms since the epoch (0 to {schema.MAX_TIMESTAMP_MS})"
        )
    return int(value)


class _NoAnswer(Response):
    """What a handler returns when its client is gone: nothing is sent."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return


def _handled(
    ingress: Ingress,
    handler: Callable[[Request], Awaitable[Response]],
    route: str,
    *,
    private: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: map errors to responses and count requests. A `private` route's
    answers hold a visitor's or the admin's data, or set their cookies: no cache may keep them
    (a shared one would hand them to the next caller, the browser's to the next user)."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except ClientDisconnect:
            return _NoAnswer()  # nobody to answer, and no answer to count (as in `track_asgi`)
        except Exception as exc:
            response = error_response(exc)
        if private:
            response.headers["Cache-Control"] = "no-store"
        ingress.metrics.observe(route, request.method, response.status_code, started)
        return response

    return endpoint


def build_app(
    tracker: Tracker, config: Config, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """The whole HTTP app: API, browser tracker, demo site and dashboard. `clock` (unix
    seconds) dates the admin's sessions."""
    ingress = Ingress(tracker, config, clock=clock)
    h = ingress

    def route(
        path: str,
        handler: Callable[[Request], Awaitable[Response]],
        methods: list[str],
        *,
        private: bool = False,
    ) -> Route:
        return Route(path, _handled(ingress, handler, path, private=private), methods=methods)

    routes = [
        route(TRACK_PATH, h.track, ["POST"]),
        route(SESSION_PATH, h.create_session, ["POST"], private=True),
        route(SESSION_PATH, h.get_session, ["GET"], private=True),
        route("/api/analytics", h.analytics, ["GET"], private=True),
        route("/api/analytics/stream", h.analytics_stream, ["GET"], private=True),
        route("/api/admin/login", h.admin_login, ["POST"], private=True),
        route("/api/admin/logout", h.admin_logout, ["POST"], private=True),
        route("/api/users/{user_id}", h.user_detail, ["GET"], private=True),
        route("/api/users/{user_id}", h.erase_user, ["DELETE"], private=True),
        route("/api/users/{user_id}/export", h.export_user, ["GET"], private=True),
        route("/tracker.js", h.tracker_js, ["GET"]),
        route("/healthz", h.healthz, ["GET"]),
        route("/metrics", h.metrics_text, ["GET"]),
        route("/openapi.json", h.openapi, ["GET"]),
        route("/", h.page("demo/index.html"), ["GET"]),
        route("/app/{rest:anypath}", h.page("demo/index.html"), ["GET"]),
        route("/long", h.page("demo/long.html"), ["GET"]),
        route("/form", h.page("demo/form.html"), ["GET"]),
        route("/analytics", h.page("dashboard.html"), ["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if ingress.config.allowed_origins:
        middleware.append(Middleware(VisitorCors, origins=ingress.config.allowed_origins))
    app = TrackerApp(ingress, routes=routes, middleware=middleware)
    app.state.ingress = ingress
    return app


class TrackerApp(Starlette):
    """The Starlette app, except that it answers `POST /api/track` itself (`track_asgi`).

    Cross-origin tracking requests still go through Starlette when CORS is configured, so
    that `VisitorCors` answers them as it answers the session route."""

    def __init__(self, ingress: Ingress, **options: Any) -> None:
        super().__init__(**options)
        self.ingress = ingress
        self.cors = bool(ingress.config.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and route_path(scope) == TRACK_PATH
            and not (self.cors and _has_origin(scope))
        ):
            await self.ingress.track_asgi(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return ""
