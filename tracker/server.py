"""Serving the tracker on Ray Serve at one address on this machine (`tracker serve`, `make run`).

Serve's HTTP proxy hands every request to a replica over Ray: one more process and one more hop.
With direct ingress each ingress replica runs its own HTTP server instead; on 2 cores a
hello-world deployment answered about 6 to 24 times as many requests that way (figures in
docs/serving.md). So the public address `TRACKER_HTTP_HOST:TRACKER_HTTP_PORT` is the replica's
own server: Serve's direct-ingress port range is narrowed to that one port, and the proxy,
which Serve starts whatever it is told, listens on a port the kernel picks.

Serve reads these switches from its processes' environment when they start, so they are given
to the Serve controller as its runtime environment; the proxy and the replicas it creates
inherit them. That works whether `run` starts Ray or joins a running one.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

from tracker import cluster
from tracker.config import Config
from tracker.errors import ConfigError, TrackerError
from tracker.storage import local_path

APP_NAME = "tracker"
# Starting the replica includes starting a Ray worker and the tracker's actors.
READY_TIMEOUT_S = 180.0
# Linux keeps a server-closed connection in TIME_WAIT for 60 s, and Serve binds the replica's
# port without SO_REUSEADDR, so a restart right after a stop must wait that long for the port.
PORT_RELEASE_TIMEOUT_S = 65.0

# Serve's switches for the fast path; a value already in the environment wins (set
# RAY_SERVE_ENABLE_DIRECT_INGRESS=0 to serve through the proxy instead).
SERVE_SWITCHES = {
    # Direct ingress, plus user code on the replica's own event loop: no thread hop per request,
    # and so a handler that blocks (ray.get instead of awaiting) stalls every request.
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    # Both exist for an external load balancer, and there is none on one machine: a stopping
    # replica would otherwise keep serving for 30 s, and a freed port would stay unusable.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    "RAY_SERVE_PORT_QUARANTINE_S": "0",
}

LOCAL_RAY_ENV = {"RAY_enable_metrics_collection": "0"}

_owns_ray = False


def local_ray_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to set before `run` starts Ray on this machine (the embedded setup): those of
    `LOCAL_RAY_ENV` not set already. Ray's processes read them when they start; a cluster that
    `run` joins instead keeps its own settings.

    Ray's own metrics export is off unless `RAY_enable_metrics_collection` says otherwise: Ray's
    dashboard agent ingests the replicas' per-request metrics in bursts that take most of a
    core for half a second every few seconds, which on two cores stretched the tracker's p99
    at half of peak from about 30 ms to 40-130 ms (docs/benchmarks.md). The tracker counts
    its own requests at `/metrics`."""
    env = os.environ if environ is None else environ
    return {key: value for key, value in LOCAL_RAY_ENV.items() if key not in env}


def serve_env(config: Config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of Serve's processes: the switches, and the port range of exactly the
    public port (the range's upper bound is exclusive), which the one replica then takes."""
    env = os.environ if environ is None else environ
    values = {key: env.get(key, default) for key, default in SERVE_SWITCHES.items()}
    values["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(config.http_port)
    values["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(config.http_port + 1)
    return values


def base_url(config: Config) -> str:
    """The URL a browser on this machine uses for `config`'s address."""
    host = _local_host(config)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.http_port}"


def _local_host(config: Config) -> str:
    # Listening on every interface includes loopback, which is what this machine connects to.
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.http_host, config.http_host)


def run(config: Config, *, block: bool = True) -> str:
    """Serve the tracker at `config.http_host:config.http_port` and return its base URL.

    Joins the Ray cluster of `RAY_ADDRESS` (or starts a local Ray: `tracker.cluster`), starts
    Serve with direct ingress, deploys `serve_app`, and waits until `/healthz` answers. With
    `block`, serves until Ctrl-C (or SIGTERM) and then shuts Serve down.
    """
    import ray
    from ray import serve

    import serve_app
    from tracker.api import refuse_fixed_changes
    from tracker.conversions.demo import define_demo
    from tracker.conversions.store import DefinitionStore
    from tracker.storage import open_storage

    global _owns_ray
    config = _absolute_storage(config)
    env = serve_env(config)
    direct = env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    _wait_for_free_port(config)
    if not ray.is_initialized():
        if cluster.cluster_address("serve") is None:
            os.environ.update(local_ray_env())
        _owns_ray = cluster.init_ray(config.namespace, "serve")
    # Here, at once: a replica refusing it would be retried by Serve for a while first.
    refuse_fixed_changes(config)
    asyncio.run(define_demo(DefinitionStore(open_storage(config.storage))))
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": config.http_host, "port": 0 if direct else config.http_port},
        controller_options={"runtime_env": {"env_vars": env}},
    )
    serve.run_many(
        [serve.RunTarget(serve_app.application(config), name=APP_NAME, route_prefix="/")],
        wait_for_applications_running=False,
    )
    url = base_url(config)
    _wait_until_healthy(config)
    _announce(url, config)
    if block:
        _serve_until_interrupted()
    return url


def stop() -> None:
    """Shut Serve down, and Ray too if `run` started it. The tracker's state is in storage."""
    import ray
    from ray import serve

    global _owns_ray
    serve.shutdown()  # type: ignore[no-untyped-call]
    if _owns_ray:
        ray.shutdown()
        _owns_ray = False


def _absolute_storage(config: Config) -> Config:
    # A relative file:// URL means the caller's working directory, not the replica's.
    root = local_path(config.storage)
    if root is None or root.is_absolute():
        return config
    return config.replace(storage=f"file://{root.resolve()}")


def _wait_for_free_port(config: Config) -> None:
    """Fail at once if a program listens on the port; wait out connections in TIME_WAIT."""
    family = socket.AF_INET6 if ":" in config.http_host else socket.AF_INET
    deadline = time.monotonic() + PORT_RELEASE_TIMEOUT_S
    told = False
    while True:
        # Bound exactly as Serve binds it: no SO_REUSEADDR.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((config.http_host, config.http_port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise ConfigError(
                        f"TRACKER_HTTP_HOST={config.http_host!r}, TRACKER_HTTP_PORT="
                        f"{config.http_port!r}: cannot listen there ({exc.strerror})"
                    ) from exc
        if _someone_listens(config) or time.monotonic() > deadline:
            raise ConfigError(
                f"TRACKER_HTTP_PORT={config.http_port!r}: {config.http_host}:{config.http_port} "
                "is in use by another program"
            )
        if not told:
            print(
                f"Waiting up to {PORT_RELEASE_TIMEOUT_S:.0f} s for the kernel to release port "
                f"{config.http_port} (connections of a previous run are closing)...",
                flush=True,
            )
            told = True
        time.sleep(0.5)


def _someone_listens(config: Config) -> bool:
    try:
        with socket.create_connection((_local_host(config), config.http_port), timeout=1.0):
            return True
    except OSError:
        return False


def _wait_until_healthy(config: Config) -> None:
    """Poll `/healthz` until it answers 200; fail early if Serve gives up on the deployment."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status = _get_status(config, "/healthz")
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        app = serve.status().applications.get(APP_NAME)
        if app is not None and app.status == ApplicationStatus.DEPLOY_FAILED:
            raise TrackerError(f"Serve could not deploy the tracker: {app.message}")
        time.sleep(0.25)
    raise TrackerError(
        f"{base_url(config)}/healthz did not answer 200 within {READY_TIMEOUT_S:.0f} s ({last}); "
        "if Serve was already running on this Ray cluster with other settings, run "
        "`serve shutdown`"
    )


def _get_status(config: Config, path: str) -> int:
    # A keep-alive request closed by us: a connection the server closes (as it does after
    # `Connection: close`, which urllib sends) would hold the port in TIME_WAIT for 60 s.
    connection = http.client.HTTPConnection(_local_host(config), config.http_port, timeout=2.0)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _announce(url: str, config: Config) -> None:
    root = local_path(config.storage)
    if config.admin_token:
        admin = "the TRACKER_ADMIN_TOKEN you set"
    elif root is not None:
        admin = f"in {root / '.secrets' / 'admin_token'}"
    else:
        admin = "TRACKER_ADMIN_TOKEN"
    print(
        f"Tracker serving at {url}\n"
        f"  demo site   {url}/\n"
        f"  dashboard   {url}/analytics\n"
        f"  admin token {admin}",
        flush=True,
    )


def _serve_until_interrupted() -> None:
    def interrupt(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopping...", flush=True)
    finally:
        stop()
