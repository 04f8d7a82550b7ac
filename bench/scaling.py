"""Scaling: single-event HTTP throughput with 1, 2 and 4 hosts and Serve replicas.

Each configuration is a fresh deployment of `serve_app.TrackerIngress` (num_replicas=N) over
a fresh set of host actors (TRACKER_HOSTS=H), with direct ingress: every replica has its own
port, and the load generator spreads its connections over them (there is no load balancer on
one machine). Serve reserves one CPU per replica by default, so on a 2-CPU node four replicas
get half a CPU each. Ratios are to 1 host and 1 replica. On a 2-core machine the curve is
expected to be flat or to fall: every replica and host is a process competing for the same two
cores; the figures show what the next machine would have to take over.
"""

from __future__ import annotations

from typing import cast

from ray import serve
from ray.serve import Deployment

import serve_app
from bench import loadgen
from bench.cluster import (
    NUM_CPUS,
    bench_config,
    free_port_range,
    ray_session,
    start_serve,
    temp_storage,
    wait_ports,
)
from bench.loadgen import Load
from bench.report import Row
from tracker.api import shutdown

PORTS = 6
CONNECTIONS = 64


def _throughput(first: int, hosts: int, replicas: int, duration: float) -> Load:
    with temp_storage() as storage:
        return _measure(storage, first, hosts, replicas, duration)


def _measure(storage: str, first: int, hosts: int, replicas: int, duration: float) -> Load:
    # Fresh storage for each shape: the same users map to other hosts when the number of hosts
    # changes, and the hosts of the previous shape are killed, not stopped cleanly, so their
    # logs still hold records of users a new host now owns (docs/architecture.md: change
    # TRACKER_HOSTS only after a clean stop).
    config = bench_config(storage, hosts=hosts, http_port=first)
    # Serve reserves a CPU per replica by default, so a 2-CPU node fits only two: more
    # replicas are given a share of a CPU each (the figure then says what 4 processes do).
    cpus = min(1.0, NUM_CPUS / replicas)
    deployment = cast(Deployment, serve_app.TrackerIngress).options(
        num_replicas=replicas, ray_actor_options={"num_cpus": cpus}
    )
    app = deployment.bind(config)
    serve.run_many(
        [serve.RunTarget(app, name="scaling", route_prefix="/")],
        wait_for_applications_running=False,
    )
    try:
        # Bounded: a deployment whose replicas keep failing would otherwise be waited for forever.
        ports = wait_ports(first, PORTS, "/healthz", replicas, 180)
        loadgen.activate(ports, "/api/track")
        loadgen.run_closed(ports, "/api/track", connections=CONNECTIONS, duration_s=2)
        return loadgen.run_closed(ports, "/api/track", connections=CONNECTIONS, duration_s=duration)
    finally:
        serve.delete("scaling")
        shutdown(config)


def run(quick: bool) -> list[Row]:
    shapes = [(1, 1), (2, 2)] if quick else [(1, 1), (2, 1), (4, 1), (2, 2), (4, 4)]
    duration = 3.0 if quick else 6.0
    with ray_session():
        first = free_port_range(PORTS)
        start_serve(first, PORTS)
        results: dict[tuple[int, int], Load | str] = {}
        for shape in shapes:
            try:
                results[shape] = _throughput(first, *shape, duration)
            except Exception as exc:  # one shape failing must not lose the others
                results[shape] = f"{type(exc).__name__}: {exc}"
    base = results[(1, 1)]
    rows = []
    for (hosts, replicas), result in results.items():
        row = Row(
            name=f"scaling: {hosts} host(s), {replicas} replica(s)",
            value=result.rps if isinstance(result, Load) else 0.0,
            unit="req/s",
            baseline="1 host, 1 replica",
            baseline_value=base.rps if isinstance(base, Load) else None,
            target="curve reported",
            details={"hosts": hosts, "replicas": replicas},
        )
        if isinstance(result, Load):
            row.details["load"] = result.summary()
            row.met = None if result.requests and not result.errors else False
        else:
            row.met = False
            row.details["error"] = result
        rows.append(row)
    return rows
