"""Scaling: single-event HTTP throughput with 1, 2 and 4 hosts and Serve replicas.

Each configuration is a fresh deployment of `serve_app.TrackerIngress` (num_replicas=N) over
a fresh set of host actors (TRACKER_HOSTS=H), with direct ingress: every replica has its own
port, and the load generator spreads its connections over them (there is no load balancer on
one machine). Ratios are to 1 host and 1 replica. On a 2-core machine the curve is expected to
be flat or to fall: every replica and host is a process competing for the same two cores; the
figures show what the next machine would have to take over.
"""

from __future__ import annotations

from typing import cast

from ray import serve
from ray.serve import Deployment

import serve_app
from bench import loadgen
from bench.cluster import (
    bench_config,
    free_port_range,
    ray_session,
    start_serve,
    temp_storage,
    wait_ports,
)
from bench.report import Row
from tracker.api import shutdown

PORTS = 6
CONNECTIONS = 64


def _throughput(first: int, hosts: int, replicas: int, duration: float) -> float:
    with temp_storage() as storage:
        return _measure(storage, first, hosts, replicas, duration)


def _measure(storage: str, first: int, hosts: int, replicas: int, duration: float) -> float:
    # Fresh storage for each shape: the same users map to other hosts when the number of hosts
    # changes, and the hosts of the previous shape are killed, not stopped cleanly, so their
    # logs still hold records of users a new host now owns (docs/architecture.md: change
    # TRACKER_HOSTS only after a clean stop).
    config = bench_config(storage, hosts=hosts, http_port=first)
    app = cast(Deployment, serve_app.TrackerIngress).options(num_replicas=replicas).bind(config)
    serve.run_many(
        [serve.RunTarget(app, name="scaling", route_prefix="/")],
        wait_for_applications_running=False,
    )
    try:
        # Bounded: a deployment whose replicas keep failing would otherwise be waited for forever.
        ports = wait_ports(first, PORTS, "/healthz", replicas, 180)
        loadgen.activate(ports, "/api/track")
        loadgen.run_closed(ports, "/api/track", connections=CONNECTIONS, duration_s=2)
        load = loadgen.run_closed(ports, "/api/track", connections=CONNECTIONS, duration_s=duration)
        return load.rps
    finally:
        serve.delete("scaling")
        shutdown(config)


def run(quick: bool) -> list[Row]:
    shapes = [(1, 1), (2, 2)] if quick else [(1, 1), (2, 1), (4, 1), (2, 2), (4, 4)]
    duration = 3.0 if quick else 6.0
    with ray_session():
        first = free_port_range(PORTS)
        start_serve(first, PORTS)
        results = {shape: _throughput(first, *shape, duration) for shape in shapes}
    base = results[(1, 1)]
    return [
        Row(
            name=f"scaling: {hosts} host(s), {replicas} replica(s)",
            value=rps,
            unit="req/s",
            baseline="1 host, 1 replica",
            baseline_value=base,
            target="curve reported",
            details={"hosts": hosts, "replicas": replicas},
        )
        for (hosts, replicas), rps in results.items()
    ]
