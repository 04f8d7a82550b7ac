"""The HTTP ingress: the seed's routes, validated and secured, as one Starlette app.

`build_app(tracker, config)` is what the Ray Serve deployment (`serve_app.py`) serves. It is
assembled along Starlette's own seams, one module each:

- `tracker.routes`: the route table, the one place to add a route;
- `tracker.handlers`: what the routes do;
- `tracker.body`: reading request bodies (content types, size limit, deadline);
- `tracker.middleware`: security headers, CORS for tracker.js, the Origin check;
- `tracker.fast_path`: `POST /api/track` without Starlette's routing;
- `tracker.http_errors`: the error classes' HTTP statuses;
- `tracker.auth`: who may call what.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tracker.api import Tracker
from tracker.body import read_limited
from tracker.config import Config
from tracker.fast_path import TrackerApp
from tracker.handlers import STATIC, Ingress
from tracker.http_errors import error_response
from tracker.middleware import SecurityHeaders, VisitorCors
from tracker.route_table import starlette_routes
from tracker.routes import ROUTES

__all__ = ["Ingress", "TrackerApp", "build_app", "error_response", "read_limited"]


def build_app(
    tracker: Tracker, config: Config, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """The whole HTTP app: API, browser tracker, demo site and dashboard. `clock` (unix
    seconds) dates the admin's sessions."""
    ingress = Ingress(tracker, config, clock=clock)
    routes = [
        *starlette_routes(ingress, ROUTES),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if ingress.config.allowed_origins:
        middleware.append(Middleware(VisitorCors, origins=ingress.config.allowed_origins))
    app = TrackerApp(ingress, routes=routes, middleware=middleware)
    app.state.ingress = ingress
    return app
