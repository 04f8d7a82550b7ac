"""The route table: every route of the HTTP API, declared once.

`ROUTES` is the one place to add a route. Each entry names its path and method, the handler
(a method of `handlers.Ingress`, or a static page), who may call it, what it reads (request
body, query, path and header parameters as msgspec types), what it answers (a response type of
`tracker.responses`, or another media type) and the error statuses it may answer. The table
builds both the Starlette routes (`starlette_routes`) and the OpenAPI document
(`tracker.openapi`), so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from tracker import responses as r
from tracker.conversion_routes import SPECS, Spec
from tracker.middleware import IDENTIFY_PATH, SESSION_PATH, TRACK_PATH, TRACK_SOCKET_PATH
from tracker.prediction_routes import SPECS as PREDICTION_SPECS
from tracker.route_params import (
    CLIENT_FILE,
    CLIENT_HEADERS,
    AnalyticsQuery,
    AppPath,
    AssetPath,
    ClientHeaders,
    MovementList,
    PrivacyHeaders,
    SessionQuery,
    SocketQuery,
    UserPath,
)
from tracker.route_table import Answer, Caller, Header, Route
from tracker.schema import (
    EventBatch,
    IdentifyRequest,
    LoginRequest,
    Movement,
    SessionRequest,
)
from tracker.segment import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    SegmentBatchBody,
    SegmentMessageBody,
)

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
    "active sessions. The figures from `visitors` to `bots` are computed from the users' "
    "histories by event time over `from`-`to` (default: the 30 days up to now), of the visits "
    "every given filter keeps (`path`: visits that viewed the page; `event`: visits with that "
    "custom event; `referrer`, `channel`, `country`, `browser`, `os`, `device`: what was "
    "derived of the visit), bots left out unless `bots=include`; see docs/analytics.md."
)
PAGE = Answer("The page.", media_type="text/html")


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


def _conversions(spec: Spec, tag: str = "conversions") -> Route:
    return Route(
        spec.path,
        spec.method,
        spec.handler,
        tag,
        spec.summary,
        Caller.ADMIN if spec.admin else Caller.OWNER,
        Answer(spec.answer, spec.answers),
        tuple(sorted({*ADMIN_READ_ERRORS, 404, *(INPUT_ERRORS if spec.body else ())}))
        if spec.admin
        else (401, 403, 404, 422, 429, 503),
        body=spec.body,
        query=spec.query,
        path_params=spec.path_params,
        private=True,
        description=spec.description,
    )


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
        TRACK_SOCKET_PATH,
        "GET",
        "track_socket",
        "tracking",
        "Record movements over a WebSocket: each text message is a body of POST /api/track "
        "with an integer `seq`.",
        Caller.VISITOR,
        Answer(
            "Switching Protocols. Each message answered once stored, {seq, accepted}, or "
            "{seq, error, field, status} (POST's status; `retryAfter` s). Over "
            "TRACKER_WS_MAX_SOCKETS closed with 1013, idle (TRACKER_WS_IDLE_S) with 1000.",
            (r.SocketAck, r.SocketError),
            status=101,
        ),
        (403, 429),
        query=SocketQuery,
        headers=PrivacyHeaders,
        websocket=True,
        description="docs/realtime.md describes the protocol.",
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
        "/api/users/{user_id}/live",
        "GET",
        "follow_user",
        "users",
        "Follow one user live over a WebSocket: their movements as they are stored.",
        Caller.ADMIN,
        Answer(
            "Switching Protocols. {userId, movements, at}: what the live sessions hold, then "
            "new movements as stored. Closed with 1008 when the admin's login session "
            "expires, 1011 when the host or the aggregator is unavailable.",
            (r.LiveMovements,),
            status=101,
        ),
        (401, 429),
        path_params=UserPath,
        websocket=True,
        description='docs/realtime.md, "Following one user live".',
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
    Route(
        "/tracker.js",
        "GET",
        "tracker_js",
        "service",
        "The browser client.",
        Caller.ANYONE,
        Answer("The script.", media_type="application/javascript", headers=CLIENT_HEADERS),
        (304,),
        headers=ClientHeaders,
        description=CLIENT_FILE.format(cache="kept 5 minutes (`max-age=300`)"),
    ),
    Route(
        "/tracker.mjs",
        "GET",
        "tracker_module",
        "service",
        "The browser client as an ES module (`load`, `track`, `identify`, `variant`, ...).",
        Caller.ANYONE,
        Answer("The module.", media_type="application/javascript", headers=CLIENT_HEADERS),
        (304,),
        headers=ClientHeaders,
        description=CLIENT_FILE.format(cache="kept 5 minutes (`max-age=300`)"),
    ),
    Route(
        "/tracker.{asset}.js",
        "GET",
        "tracker_asset",
        "service",
        "A file of the browser client under a name with its content hash: tracker.js itself "
        "(`tracker.<hash>.js`), or a file it loads when the site asks (`tracker.hover.<hash>.js`).",
        Caller.ANYONE,
        Answer("The script.", media_type="application/javascript", headers=CLIENT_HEADERS),
        (304, 404),
        path_params=AssetPath,
        headers=ClientHeaders,
        description=CLIENT_FILE.format(cache="immutable, kept a year"),
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
    _segment("batch", "Segment: several messages of any type."),
    _segment("track", "Segment: an event (a custom event with its properties)."),
    _segment("page", "Segment: a page view."),
    _segment("identify", "Segment: who a user is; links their anonymous ID to them."),
    _segment("alias", "Segment: link a previous (anonymous) ID to a user."),
    *(_conversions(spec) for spec in SPECS),
    *(_conversions(spec, "predictions") for spec in PREDICTION_SPECS),
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
