"""What a route of the table is (`Route`, `Answer`, `Caller`), and how a table becomes
Starlette's routes: each handler wrapped so that the admin is checked, errors answered through
`http_errors`, private answers kept from caches and requests counted.

The table itself, the one place to add a route, is `tracker.routes.ROUTES`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msgspec import Struct
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from tracker.http_errors import error_response

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
    status: int = 200


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
    # A WebSocket route: the handler takes the socket, checks its caller at the handshake (an
    # admin route's too), and `ok.body` declares its messages.
    websocket: bool = False


class _AnyPath(PathConvertor):
    """Starlette's `path` stops at a line break (`%0A`); every /app/... URL, whatever it
    holds, is the demo app's page."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", _AnyPath())


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


def starlette_routes(ingress: Ingress, routes: Sequence[Route]) -> list[BaseRoute]:
    """The route table (`tracker.routes.ROUTES`) as Starlette routes over `ingress`'s
    handlers."""
    return [
        WebSocketRoute(route.path, getattr(ingress, route.handler))
        if route.websocket
        else StarletteRoute(route.path, _endpoint(ingress, route), methods=[route.method])
        for route in routes
    ]
