"""The baseline HTTP deployment: a hello-world Starlette app on Ray Serve, served like the tracker.

It answers `POST /api/track` by parsing the JSON body and counting its events, without
validating or storing anything: what Ray Serve's direct ingress costs on its own. The tracker's
HTTP figures are ratios to this one, measured in the same run on the same Serve instance.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
from ray import serve
from ray.serve import Application, Deployment
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serve_app import DEPLOYMENT_OPTIONS


async def _track(request: Request) -> Response:
    raw: Any = msgspec.json.decode(await request.body())
    if isinstance(raw, dict) and "events" in raw:
        raw = raw["events"]
    accepted = len(raw) if isinstance(raw, list) else 1
    return JSONResponse({"success": True, "accepted": accepted})


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def hello_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/api/track", _track, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ]
    )


@serve.deployment(name="HelloIngress", **DEPLOYMENT_OPTIONS)
@serve.ingress()
class HelloIngress:
    def __serve_build_asgi_app__(self) -> Starlette:
        return hello_app()


def application(num_replicas: int = 1) -> Application:
    return cast(Deployment, HelloIngress).options(num_replicas=num_replicas).bind()
