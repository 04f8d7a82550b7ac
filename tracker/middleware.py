"""What wraps every route: security headers, CORS for tracker.js only, and the Origin check.

The tracked site is usually the same site as the tracker (www.example.com and
tracker.example.com), so the admin's SameSite cookie goes along with its scripts' requests:
with CORS on other routes, they could read what the admin may. Only the requests tracker.js
makes (`CORS_PATHS`) may come from other origins (TRACKER_ALLOWED_ORIGINS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.errors import Forbidden

TRACK_PATH = "/api/track"
SESSION_PATH = "/api/track/session"
TRACK_SOCKET_PATH = "/api/track/ws"
IDENTIFY_PATH = "/api/track/identify"
CORS_PATHS = frozenset({TRACK_PATH, SESSION_PATH, IDENTIFY_PATH})
CORS_METHODS = ("POST",)
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path, as routes match it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


USERS_PREFIX = "/api/users/"
# Set on a scope whose path keeps `%2F` and `%25` escaped (`escape_user_paths`).
ESCAPED_PATH = "tracker.escaped_path"
_KEPT_ESCAPES = re.compile(r"(%2[fF]|%25)")


def escape_user_paths(scope: Scope) -> Scope:
    """A `/api/users/<id>...` request's scope with its path decoded from the raw path except
    for `%2F` and `%25`, so that a user ID holding `/` (sent as `%2F`) stays one path segment;
    the handler decodes the segment (`request_parts.path_user_id`). Other scopes, and servers that
    give no raw path, are left as they are."""
    path: str = scope["path"]
    raw = scope.get("raw_path")
    if USERS_PREFIX not in path or not isinstance(raw, bytes):
        return scope
    text = raw.decode("latin-1")
    pieces = _KEPT_ESCAPES.split(text)
    kept = "".join(piece if index % 2 else _decoded(piece) for index, piece in enumerate(pieces))
    if unquote(text) != path:  # the raw path is not this request's (rewritten by a proxy)
        return scope
    return {**scope, "path": kept, ESCAPED_PATH: True}


def _decoded(piece: str) -> str:
    """`piece` percent-decoded, or left escaped if that is not UTF-8 text (the handler's own
    decoding then refuses it by name)."""
    try:
        return unquote(piece, errors="strict")
    except UnicodeDecodeError:
        return piece


def header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return ""


def has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


class OriginCheck:
    """Which pages may send tracking requests: the tracker's own and the allowed origins."""

    def __init__(self, allowed: Iterable[str]) -> None:
        # Browsers send origins in lower case.
        self.allowed = frozenset(origin.lower() for origin in allowed)

    def check(self, headers: Mapping[str, str]) -> None:
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
        if lowered in self.allowed:
            return
        scheme, sep, authority = lowered.partition("://")
        if sep and scheme in ("http", "https") and authority == headers.get("host", "").lower():
            return
        shown = origin if len(origin) <= 100 else f"{origin[:100]}..."
        raise Forbidden(
            f"origin {shown!r} may not send tracking requests: it is neither this tracker's "
            "nor listed in TRACKER_ALLOWED_ORIGINS"
        )


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
                method = header(scope, b"access-control-request-method")
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
