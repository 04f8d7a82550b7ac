"""HTTP: the tracker on Ray Serve beside a hello-world Serve deployment served the same way.

One Serve instance with direct ingress (what `tracker serve` uses) and a range of ports: the
tracker (`tracker.server.run`, file storage, rate limit off) takes the first, the hello-world
deployment (`bench.hello`) the next. Both get the same requests from the same generator, in
alternating rounds so that the machine's other load falls on both alike:

- one event per request, closed loop (wrk, 64 connections): requests/s;
- p99 latency at half of the tracker's peak, open loop (asyncio client at a fixed rate);
- batches of 50 events per request: events/s;
- the CPU time each server process spent per request in the closed-loop runs (the tracker's
  replica and host, the hello-world's replica), from the processes' own counters: on a
  machine whose cores are all busy, throughput is the cores divided by this sum;
- the two load generators against the hello-world deployment, to show which one is faster.

Before each run the tracker's hosts compact and the run waits for it (`cluster.settle`), so
that a compaction set off by an earlier run's load falls in no later run's window; each run's
summary counts the compactions its own load set off.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from bench import hello, loadgen
from bench.cluster import (
    bench_config,
    compactions_since,
    cpu_seconds,
    free_port_range,
    host_handles,
    pid_of,
    pids_matching,
    ray_session,
    settle,
    start_serve,
    temp_storage,
    wait_ports,
)
from bench.loadgen import Load
from bench.profile import Recording
from bench.report import Row
from tracker import server

PORTS = 6
CONNECTIONS = 64


def _host_pids(config: Any) -> dict[str, int]:
    return {f"host-{index}": pid_of(host) for index, host in enumerate(host_handles(config))}


def deploy_pair(storage: str) -> tuple[Any, int, int]:
    """Serve with the tracker and the hello-world app; return (config, tracker port, hello's)."""
    first = free_port_range(PORTS)
    start_serve(first, PORTS)
    config = bench_config(storage, http_port=first)
    server.run(config, block=False)
    serve.run_many(
        [serve.RunTarget(hello.application(), name="hello", route_prefix="/hello")],
        wait_for_applications_running=False,
    )
    (hello_port,) = wait_ports(first + 1, PORTS - 1, "/hello/healthz", 1, 60)
    return config, first, hello_port


def run(quick: bool) -> list[Row]:
    duration = 3.0 if quick else 8.0
    rounds = 1 if quick else 2
    with ray_session(), temp_storage() as storage:
        config, port, hello_port = deploy_pair(storage)
        tracker_path, hello_path = "/api/track", "/hello/api/track"
        for p, path in ((port, tracker_path), (hello_port, hello_path)):
            loadgen.activate([p], path)  # every user of the pool active, code paths warm
            loadgen.run_closed([p], path, connections=CONNECTIONS, duration_s=2)
        singles: dict[str, list[Load]] = {"tracker": [], "hello": []}
        batches: dict[str, list[Load]] = {"tracker": [], "hello": []}
        servers = {
            "tracker": {"replica": _replica_pid(), **_host_pids(config)},
            "hello": {"replica": _replica_pid("hello:HelloIngress")},
        }
        for _ in range(rounds):
            for name, p, path in (
                ("hello", hello_port, hello_path),
                ("tracker", port, tracker_path),
            ):
                for events, runs in ((1, singles), (50, batches)):
                    settled = settle(config)
                    with cpu_seconds(servers[name]) as spent:
                        load = loadgen.run_closed(
                            [p], path, batch=events, connections=CONNECTIONS, duration_s=duration
                        )
                    load.cpu_ms = {k: v * 1000 / max(1, load.requests) for k, v in spent.items()}
                    load.compactions = compactions_since(config, settled)
                    runs[name].append(load)
        single = {k: max(v, key=lambda x: x.rps) for k, v in singles.items()}
        batch = {k: max(v, key=lambda x: x.rps) for k, v in batches.items()}
        rate = max(1.0, single["tracker"].rps / 2)
        half = {}
        for name, p, path in (("hello", hello_port, hello_path), ("tracker", port, tracker_path)):
            settled = settle(config)
            half[name] = loadgen.run_asyncio(
                [p], path, connections=CONNECTIONS, duration_s=duration, rate=rate
            )
            half[name].compactions = compactions_since(config, settled)
        generators = {
            "wrk": loadgen.run_wrk([hello_port], hello_path, duration_s=duration / 2)
            if loadgen.have_wrk()
            else None,
            "asyncio": loadgen.run_asyncio([hello_port], hello_path, duration_s=duration / 2),
        }
        rows = _rows(single, batch, half, generators, singles, batches)
        loads = {rows[0].name: 1, rows[1].name: 1, rows[2].name: 50}
        profiles: dict[int, list[str]] = {}
        for row in rows:
            if row.met is not False or quick:
                continue
            events = loads[row.name]
            if events not in profiles:
                pids = {**_host_pids(config), "replica": _replica_pid()}
                settle(config)
                recording = Recording(pids, f"http-{events}-per-request", duration)
                loadgen.run_closed(
                    [port], tracker_path, batch=events, connections=CONNECTIONS, duration_s=duration
                )
                profiles[events] = recording.stop()
            row.profile = profiles[events]
        return rows


def _replica_pid(deployment: str = "tracker:TrackerIngress") -> int:
    found = pids_matching(f"ServeReplica:{deployment}")
    if not found:
        raise RuntimeError(f"no process of the Serve replica of {deployment} found")
    return found[0]


def _rows(
    single: dict[str, Load],
    batch: dict[str, Load],
    half: dict[str, Load],
    generators: dict[str, Load | None],
    singles: dict[str, list[Load]],
    batches: dict[str, list[Load]],
) -> list[Row]:
    rps = Row(
        name="http: one event per request, durable",
        value=single["tracker"].rps,
        unit="req/s",
        baseline="Serve hello-world, same path",
        baseline_value=single["hello"].rps,
        target=">= 0.5x baseline",
        details={
            "tracker_runs": [x.summary() for x in singles["tracker"]],
            "baseline_runs": [x.summary() for x in singles["hello"]],
        },
    )
    rps.met = (rps.ratio or 0) >= 0.5 and single["tracker"].errors == 0
    p99 = Row(
        name="http: p99 latency at half of peak",
        value=half["tracker"].p99_ms,
        unit="ms",
        baseline="hello-world at the same rate",
        baseline_value=half["hello"].p99_ms,
        target="< 25 ms",
        met=half["tracker"].p99_ms < 25 and half["tracker"].errors == 0,
        details={k: v.summary() for k, v in half.items()},
    )
    events = Row(
        name="http: batches of 50 events, durable",
        value=batch["tracker"].events_per_s,
        unit="events/s",
        baseline="hello-world, same bodies",
        baseline_value=batch["hello"].events_per_s,
        target=">= 50,000 events/s",
        met=batch["tracker"].events_per_s >= 50_000 and batch["tracker"].errors == 0,
        details={
            "tracker_runs": [x.summary() for x in batches["tracker"]],
            "baseline_runs": [x.summary() for x in batches["hello"]],
        },
    )
    wrk, asyncio_load = generators["wrk"], generators["asyncio"]
    generator = Row(
        name="load generator: asyncio client on hello-world",
        value=asyncio_load.rps if asyncio_load else 0,
        unit="req/s",
        baseline="wrk, same target" if wrk else "",
        baseline_value=wrk.rps if wrk else None,
        details={k: v.summary() for k, v in generators.items() if v is not None},
    )
    cpu = [
        Row(
            name=f"http: CPU per request, {label} (replica and host)",
            value=sum(loads["tracker"].cpu_ms.values()),
            unit="ms",
            baseline="hello-world's replica, same requests",
            baseline_value=sum(loads["hello"].cpu_ms.values()),
            details={name: load.cpu_ms for name, load in loads.items()},
        )
        for label, loads in (("one event", single), ("50 events", batch))
        if all(load.cpu_ms for load in loads.values())
    ]
    return [rps, p99, events, *cpu, generator]
