"""The route handlers: what each route of `tracker.routes` does, with its collaborators.

Handlers resolve the user named in the request and call their tracker through a `Dispatcher`.
They raise errors of the tree; `tracker.routes` answers those (`http_errors`), and checks the
admin before an admin route's handler runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import msgspec
from ray.exceptions import RayError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.types import Scope
from starlette.websockets import WebSocket

from tracker import auth, schema
from tracker.api import Tracker
from tracker.body import read_json_body
from tracker.client_assets import MEDIA_TYPE, ClientAssets
from tracker.clock import wall_clock_ms
from tracker.config import Config
from tracker.conversion_handlers import ConversionHandlers
from tracker.dispatch import Dispatcher, answer_within
from tracker.errors import Forbidden, InvalidInput, InvalidMovement
from tracker.live_user import follow_user
from tracker.metrics import Metrics
from tracker.middleware import OriginCheck
from tracker.openapi import openapi_document
from tracker.prediction_handlers import PredictionHandlers
from tracker.query.filters import report_options
from tracker.query.site import site_figures
from tracker.ratelimit import OpenRequests, ProxyCheck, RateLimiter, client_of
from tracker.request_parts import (
    accepted_body,
    attachment,
    drop_same_site_referrers,
    over_https,
    path_user_id,
    signals_decline,
    site_host,
    time_param,
)
from tracker.segment_ingest import SegmentIngest
from tracker.track_socket import Sockets, serve_socket
from tracker.user_host import DECLINED, NewSession
from tracker.visits.derive import derive_visit

log = logging.getLogger(__name__)
# How long `/metrics` waits for the hosts' own figures: a host that does not answer must not
# hold a scrape (Prometheus gives one 10 s by default); the gauges then keep their last values.
HOST_STATS_TIMEOUT_S = 2.0

STATIC = Path(__file__).parent / "static"
# Events a tracking request carries per token of its address's rate-limit bucket, beyond the
# request's own token: tracker.js sends a few to a few tens every 2 s, and one address at the
# default limit of 50 may send 1,250 events a second.
EVENTS_PER_TOKEN = 25

Handler = Callable[[Request], Awaitable[Response]]


class Ingress(ConversionHandlers, PredictionHandlers):
    """Route handlers with their collaborators (tracker, limits, access, metrics)."""

    time_param = staticmethod(time_param)
    client_of = staticmethod(client_of)

    def __init__(
        self, tracker: Tracker, config: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not config.admin_token or not config.secret:
            config = auth.ensure_secrets(config)
        self.tracker = tracker
        self.config = config
        self.access = auth.Access(config, clock)
        self.metrics = Metrics()
        self.dispatch = Dispatcher(tracker, self.metrics)
        self.ip_limiter = RateLimiter(config.rate_limit)
        self.user_limiter = RateLimiter(config.rate_limit)
        self.origins = OriginCheck(config.allowed_origins)
        self.open_requests = OpenRequests(
            config.open_requests_per_client if config.rate_limit else 0
        )
        self.opt_out = frozenset(config.opt_out)
        self.proxies = ProxyCheck()
        self.assets = ClientAssets(STATIC)
        self.sockets = Sockets(config.ws_max_sockets)
        self.segment_ingest = SegmentIngest(config, self.dispatch, self.metrics)

    # -- helpers ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return wall_clock_ms()

    async def body(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> bytes:
        return await read_json_body(headers, chunks, self.config.body_timeout_s)

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

    def require_admin(self, request: Request) -> int | None:
        """`Access.require_admin` for this request: when its login session expires, if any."""
        return self.access.require_admin(request.headers, request.cookies, client_of(request.scope))

    def may_read(self, request: Request, user_id: str) -> bool:
        return self.access.may_read(
            request.headers, request.cookies, client_of(request.scope), user_id
        )

    # -- tracking routes -------------------------------------------------------------------

    async def track(self, request: Request) -> Response:
        """`POST /api/track` through Starlette: cross-origin requests, for CORS (the fast path,
        `tracker.fast_path`, answers the others)."""
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
        self.origins.check(headers)
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
        self.access.authorize_user(headers, user_id)
        if user_id in self.opt_out:
            return 0
        self.user_limiter.check(user_id)
        drop_same_site_referrers(movements, site_host(headers))
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

    async def track_socket(self, websocket: WebSocket) -> None:
        """`GET /api/track/ws`: `accept` for each message of a socket (`tracker.track_socket`)."""
        await serve_socket(self, websocket)

    async def create_session(self, request: Request) -> Response:
        """In the order of `accept`, for the same reasons."""
        self.origins.check(request.headers)
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
        self.access.authorize_user(request.headers, req.userId)
        if req.userId in self.opt_out:
            return JSONResponse(DECLINED)
        self.user_limiter.check(req.userId)
        info = msgspec.to_builtins(req.deviceInfo) if req.deviceInfo else None
        visit = self.derived_visit(request, req)
        # Only for an anonymous visitor, who has nothing else to read with: an identified user
        # reads with their token, which expires, and a cookie would outlive it by a year.
        cookie = auth.is_anonymous(req.userId)
        if not cookie or self.may_read(request, req.userId):
            session = await self.dispatch.call(
                req.userId, "create_session", req.sessionId, info, visit
            )
        else:
            started: NewSession = await self.dispatch.call(
                req.userId, "create_new_session", req.sessionId, info, visit
            )
            if started.session is None:
                sent = msgspec.to_builtins(req)
                return JSONResponse({"success": True, "session": sent})
            session, cookie = started.session, started.first
        response = JSONResponse({"success": True, "session": session})
        if cookie:
            response.set_cookie(
                auth.VISITOR_COOKIE,
                self.access.visitor_cookie(req.userId),
                max_age=auth.VISITOR_COOKIE_S,
                httponly=True,
                samesite="lax",
                # The routes a visitor proves themselves on: /api/track... and their variants.
                path="/api",
                secure=over_https(request),
            )
        return response

    def derived_visit(self, request: Request, req: schema.SessionRequest) -> dict[str, Any]:
        """What is stored of the visit (`tracker.visits.derive`): the user agent is the one
        the page sent, else the request's; the country comes from the client's address (a
        trusted proxy's `X-Forwarded-For` has made it the visitor's), which is not kept; the
        site is the page's origin, else this server's host."""
        client = request.scope.get("client")
        user_agent = req.deviceInfo.userAgent if req.deviceInfo else None
        return derive_visit(
            user_agent=user_agent or request.headers.get("user-agent"),
            referrer=req.referrer,
            utm=msgspec.to_builtins(req.utm) if req.utm else None,
            automation=req.automation,
            address=client[0] if client else None,
            site_host=site_host(request.headers),
        )

    async def get_session(self, request: Request) -> Response:
        self.ip_limiter.check(client_of(request.scope))
        user_id = schema.check_user_id("userId", request.query_params.get("userId"))
        session_id = schema.check_id("sessionId", request.query_params.get("sessionId"))
        if not self.may_read(request, user_id):
            raise Forbidden("only the visitor who owns this session, or the admin")
        self.user_limiter.check(user_id)
        session = await self.dispatch.call(user_id, "get_session", session_id)
        return JSONResponse(session)

    async def identify(self, request: Request) -> Response:
        """Link the anonymous visitor of the visitor cookie to the user of the identity token
        (at login): their history moves into the user's (`tracker.links`)."""
        self.origins.check(request.headers)
        with self.admit(client_of(request.scope)):
            req = schema.identify_request_from_obj(await self.json_body(request))
        if not self.access.has_visitor_cookie(request.cookies, req.anonymousId):
            raise Forbidden("only the visitor who owns the anonymous ID (their visitor cookie)")
        auth.verify_token(self.access.secret, req.userId, req.token)
        self.user_limiter.check(req.userId)
        result = await self.dispatch.call(req.anonymousId, "link", req.userId)
        return JSONResponse(result)

    async def segment(self, request: Request) -> Response:
        """`/v1/<type>`, Segment's HTTP tracking API (`tracker.segment_ingest`)."""
        kind = request.url.path.rsplit("/", 1)[-1]
        with self.admit(client_of(request.scope)):
            return await self.segment_ingest.handle(request, None if kind == "batch" else kind)

    # -- admin routes (`tracker.routes` has checked the admin) --------------------------------

    async def analytics(self, request: Request) -> Response:
        params = request.query_params
        filters: dict[str, Any] = {}
        for name in ("from", "to"):
            if params.get(name):
                filters[f"{name}_ms"] = time_param(name, params[name])
        if params.get("path"):
            if len(params["path"]) > 2048:
                raise InvalidInput("path", "longer than 2048 characters")
            filters["path"] = params["path"]
        now = self.now_ms()
        options = report_options(params, now, filters.get("from_ms"), filters.get("to_ms"))
        report: dict[str, Any] = await answer_within(
            self.tracker.aggregator.report.remote(now, filters), self.config, "aggregator"
        )
        figures = site_figures(self.tracker.query, options)
        report.update(await answer_within(figures, self.config, "hosts"))
        report.setdefault("userSessions", [])
        if params.get("userId"):
            user_id = schema.check_user_id("userId", params["userId"])
            mine = await self.dispatch.call(user_id, "analytics")
            report["userSessions"] = mine["userSessions"]
        return JSONResponse(report)

    async def analytics_stream(self, request: Request) -> Response:
        """Live updates while the client stays; with the login cookie, until its session
        expires (the dashboard's EventSource then connects again, and is refused)."""
        expiry: int | None = request.state.admin_expiry
        return StreamingResponse(
            self.updates(request, expiry),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def updates(self, request: Request, expiry: int | None) -> AsyncIterator[bytes]:
        """The live stream's events: an update at most once a second while events arrive, a
        keepalive comment after 15 quiet seconds."""
        aggregator = self.tracker.aggregator
        yield b"retry: 2000\n\n"
        quiet_s = 0.0
        while not await request.is_disconnected():
            started = time.monotonic()
            wait_s = 5.0
            if expiry is not None:
                wait_s = min(wait_s, expiry - self.access.clock())
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

    async def admin_login(self, request: Request) -> Response:
        with self.admit(client_of(request.scope)):
            raw = await self.json_body(request)
        token = raw.get("token") if isinstance(raw, dict) else None
        if not isinstance(token, str):
            raise InvalidInput("token", "expected the admin token as a string")
        self.access.check_admin_token(client_of(request.scope), token)
        response = JSONResponse({"success": True})
        response.set_cookie(
            auth.ADMIN_COOKIE,
            self.access.admin_cookie(),
            httponly=True,
            samesite="strict",
            path="/",
            max_age=auth.ADMIN_SESSION_S,
            secure=over_https(request),
        )
        return response

    async def admin_logout(self, request: Request) -> Response:
        # Admin only: another site's page must not sign the admin out (the cookie is
        # SameSite=Strict, so such a request comes without it).
        response = JSONResponse({"success": True})
        response.delete_cookie(auth.ADMIN_COOKIE, path="/", secure=over_https(request))
        return response

    async def user_detail(self, request: Request) -> Response:
        user_id = path_user_id(request)
        result = await self.dispatch.call(user_id, "analytics")
        return JSONResponse({"userId": user_id, "sessions": result["userSessions"]})

    async def erase_user(self, request: Request) -> Response:
        user_id = path_user_id(request)
        result = await self.dispatch.call(user_id, "erase")
        return JSONResponse(result)

    async def follow_user(self, websocket: WebSocket) -> None:
        """`GET /api/users/{userId}/live` (`tracker.live_user`); the admin is checked."""
        await follow_user(self, websocket)

    async def export_user(self, request: Request) -> Response:
        user_id = path_user_id(request)
        lines = await self.dispatch.call(user_id, "export")
        body = b"".join(msgspec.json.encode(line) + b"\n" for line in lines)
        return Response(
            body,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": attachment(f"{user_id}.ndjson")},
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
        return JSONResponse(openapi_document())

    async def tracker_js(self, request: Request) -> Response:
        return self.client_file(request, "tracker.js")

    async def tracker_module(self, request: Request) -> Response:
        return self.client_file(request, "tracker.mjs")

    async def tracker_asset(self, request: Request) -> Response:
        return self.client_file(request, f"tracker.{request.path_params['asset']}.js")

    def client_file(self, request: Request, name: str) -> Response:
        """A file of the browser client, compressed as the client accepts, 304 when the
        client holds it already (`If-None-Match`)."""
        asset = self.assets.get(name)
        headers = {"ETag": asset.etag, "Cache-Control": asset.cache_control}
        headers["Vary"] = "Accept-Encoding"
        if asset.matches(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        body, encoding = asset.encoded(request.headers.get("accept-encoding", ""))
        if encoding:
            headers["Content-Encoding"] = encoding
        return Response(body, media_type=MEDIA_TYPE, headers=headers)

    def page(self, name: str) -> Handler:
        path = STATIC / name

        async def serve(request: Request) -> Response:
            return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

        return serve
