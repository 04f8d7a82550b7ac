"""The tracker as a Ray Serve application: one ingress deployment serving the whole HTTP app.

    serve run serve_app:app                         # configuration from TRACKER_* variables
    serve run serve_app:build storage=s3://b/p      # the same, settings given as arguments
    serve deploy deploy/serve_config.yaml           # a cluster (import_path: serve_app:app)

`tracker serve` (tracker.server) deploys this same deployment with the fast HTTP path turned on;
docs/serving.md explains the paths and the ports.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, cast

from ray import serve
from ray.serve import Application, Deployment
from starlette.applications import Starlette

from tracker.config import Config
from tracker.errors import ConfigError

# max_ongoing_requests: every open dashboard holds one request for as long as its event stream is
# open, and with Serve's default of 5 the sixth stream and every tracking request behind it would
# wait. Throughput does not depend on it (a hello-world replica measured the same with 5 and
# 1000, at 64 and at 256 connections): requests are short and asynchronous.
# graceful_shutdown_timeout_s: an open event stream never finishes by itself, so a shutdown waits
# this long for it; every other request finishes well within it. (With direct ingress on a
# cluster, Serve raises it to cover its draining period; see docs/serving.md.)
# logging_config: no access log, a line per visitor event (docs/serving.md).
# The benchmarks' hello-world deployment takes the same options, to be served the same way.
DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 1000,
    "graceful_shutdown_timeout_s": 5,
    "logging_config": {"enable_access_log": False},
}


@serve.deployment(name="TrackerIngress", **DEPLOYMENT_OPTIONS)
@serve.ingress()
class TrackerIngress:
    """Connects to the tracker's actors once per replica and serves `tracker.ingress`'s app."""

    def __init__(self, config: Config | None = None) -> None:
        # Ray is already initialised inside a replica; Tracker creates or finds the actors in
        # the configured namespace. Secrets are filled here, in the replica, so an embedded setup
        # needs nothing but the data directory.
        from tracker import header_timeout
        from tracker.api import Tracker
        from tracker.auth import ensure_secrets

        self.config = ensure_secrets(config or Config.from_env())
        # Serve starts the replica's own HTTP server (direct ingress) once this returns.
        header_timeout.install(self.config.header_timeout_s)
        self.tracker = Tracker(self.config)

    def __serve_build_asgi_app__(self) -> Starlette:
        # Imported here, in the replica, so that building the application (`serve run`,
        # `serve deploy`) does not import the web layer into the deploying process.
        from tracker.actor_process import tune_collector
        from tracker.ingress import build_app

        app = build_app(self.tracker, self.config)
        tune_collector()
        return app


def application(config: Config | None = None) -> Application:
    """The bound application; without `config`, each replica reads its own environment."""
    # mypy keeps a decorated class's own type; the decorators made it a Deployment.
    return cast(Deployment, TrackerIngress).bind(config)


def build(args: dict[str, str]) -> Application:
    """Application builder for `serve run serve_app:build key=value ...`.

    Keys are the `tracker.config.Config` field names (`storage`, `rate_limit`, ...); they win over
    the corresponding TRACKER_* variables of the deploying process.
    """
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {unknown} (known: {sorted(known)})")
    environ: dict[str, Any] = dict(os.environ)
    environ.update({f"TRACKER_{key.upper()}": str(value) for key, value in args.items()})
    return application(Config.from_env(environ))


app = application()
