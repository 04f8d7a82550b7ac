"""`POST /api/track` without Starlette: one request per visitor event, so it skips routing,
the `Request` object and the middleware stack, which are most of a request's cost here.

`TrackerApp` is the Starlette app with this one route answered first, by `track_asgi`, with
the same answers as the routed handler (`Ingress.track`), security headers included.
Cross-origin tracking requests still go through Starlette when CORS is configured, so that
`VisitorCors` answers them as it answers the session route.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from tracker.body import asgi_chunks
from tracker.handlers import Ingress
from tracker.http_errors import error_response
from tracker.middleware import (
    SECURITY_HEADERS,
    TRACK_PATH,
    escape_user_paths,
    has_origin,
    route_path,
)
from tracker.ratelimit import client_of
from tracker.request_parts import accepted_body


async def track_asgi(ingress: Ingress, scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /api/track` as a bare ASGI app: the same answers as `Ingress.track`."""
    started = time.perf_counter()
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    ingress.notice_proxy(scope, headers.get("x-forwarded-for"))
    try:
        accepted = await ingress.accept(headers, client_of(scope), asgi_chunks(receive))
        payload = accepted_body(accepted)
    except ClientDisconnect:
        return  # nobody to answer
    except Exception as exc:
        response = error_response(exc)
        response.raw_headers += SECURITY_HEADERS
        await response(scope, receive, send)
        ingress.metrics.observe(TRACK_PATH, "POST", response.status_code, started)
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
    ingress.metrics.observe(TRACK_PATH, "POST", 200, started)


class TrackerApp(Starlette):
    """The Starlette app, except that it answers same-origin `POST /api/track` itself, and
    routes `/api/users/<id>` on the raw path (`escape_user_paths`)."""

    def __init__(self, ingress: Ingress, **options: Any) -> None:
        super().__init__(**options)
        self.ingress = ingress
        self.cors = bool(ingress.config.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and route_path(scope) == TRACK_PATH
            and not (self.cors and has_origin(scope))
        ):
            await track_asgi(self.ingress, scope, receive, send)
            return
        if scope["type"] == "http":
            scope = escape_user_paths(scope)
        await super().__call__(scope, receive, send)
