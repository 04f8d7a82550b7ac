"""WebSocket tracking against single-event HTTP, on one tracker in the same run.

The tracker on Ray Serve with direct ingress (`tracker.server.run`, file storage, rate limit
off), as `tracker serve` runs it. Both are driven by the same asyncio generator
(`bench.loadgen`), each of its 64 connections one visitor of the pool sending only their own
events, one event per message and each answered once durable:

- over HTTP, a keep-alive connection per visitor, one `POST /api/track` per event;
- over a WebSocket per visitor (`GET /api/track/ws`), one message per event, each waiting for
  its `{"seq", "accepted"}` before the next (closed loop, as a request waits for its answer).

Closed loop for peak events/s, in alternating rounds so that the machine's other load falls
on both alike, with the CPU time the replica and the host spent per event in the best round;
then p99 latency of each, open loop at half of the HTTP peak (the same rate for both).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

from bench import loadgen
from bench.cluster import (
    bench_config,
    cpu_seconds,
    free_port_range,
    ray_session,
    settle,
    start_serve,
    temp_storage,
    wait_ports,
)
from bench.http import _host_pids, _replica_pid
from bench.loadgen import Exchange, Load
from bench.report import Row
from tracker import server
from tracker.middleware import TRACK_PATH, TRACK_SOCKET_PATH

CONNECTIONS = 64


async def socket_opener(port: int, bodies: Callable[[], bytes]) -> Exchange:
    """A tracking socket; each body is sent with the next `seq`, and its answer awaited."""
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{port}{TRACK_SOCKET_PATH}", compression=None)
    seqs = itertools.count()

    async def exchange(body: bytes | None) -> bool:
        if body is None:
            await ws.close()
            return True
        await ws.send(b'{"seq":%d,' % next(seqs) + body[1:], text=True)
        return b'"accepted"' in (await ws.recv(decode=False))

    return exchange


def _load(port: int, socket: bool, **options: float) -> Load:
    return loadgen.run_asyncio(
        [port],
        TRACK_PATH,
        connections=CONNECTIONS,
        visitors=True,
        opener=socket_opener if socket else functools.partial(loadgen.http_opener, TRACK_PATH),
        tool="websocket" if socket else "http",
        **options,  # type: ignore[arg-type]
    )


def run(quick: bool) -> list[Row]:
    duration = 3.0 if quick else 8.0
    rounds = 1 if quick else 3
    with ray_session(), temp_storage() as storage:
        port = free_port_range(1)
        start_serve(port, 1)
        config = bench_config(storage, http_port=port)
        server.run(config, block=False)
        wait_ports(port, 1, "/healthz", 1, 120)
        loadgen.activate([port], TRACK_PATH)  # every user of the pool active, code paths warm
        _load(port, True, duration_s=2)
        runs: dict[str, list[Load]] = {"http": [], "websocket": []}
        servers = {"replica": _replica_pid(), **_host_pids(config)}
        for _ in range(rounds):
            for name in runs:
                settle(config)
                with cpu_seconds(servers) as spent:
                    load = _load(port, name == "websocket", duration_s=duration)
                load.cpu_ms = {k: v * 1000 / max(1, load.requests) for k, v in spent.items()}
                runs[name].append(load)
        peak = {name: max(loads, key=lambda x: x.rps) for name, loads in runs.items()}
        rate = max(1.0, peak["http"].rps / 2)
        half = {}
        for name in runs:
            settle(config)
            half[name] = _load(port, name == "websocket", duration_s=duration, rate=rate)
        return _rows(peak, half, runs)


def _rows(peak: dict[str, Load], half: dict[str, Load], runs: dict[str, list[Load]]) -> list[Row]:
    events = Row(
        name="websocket: one event per message, durable",
        value=peak["websocket"].rps,
        unit="events/s",
        baseline="HTTP, one event per request, same visitors",
        baseline_value=peak["http"].rps,
        target=">= 1x baseline",
        details={name: [x.summary() for x in loads] for name, loads in runs.items()},
    )
    events.met = (events.ratio or 0) >= 1 and peak["websocket"].errors == 0
    latency = Row(
        name="websocket: p99 latency at half of peak",
        value=half["websocket"].p99_ms,
        unit="ms",
        baseline="HTTP at the same rate",
        baseline_value=half["http"].p99_ms,
        target="< baseline",
        met=half["websocket"].p99_ms < half["http"].p99_ms and half["websocket"].errors == 0,
        details={name: load.summary() for name, load in half.items()},
    )
    # CPU per event depends less on the machine's other load than events/s: the figure to
    # trust when the machine is busy.
    cpu = Row(
        name="websocket: CPU per event (replica and host)",
        value=sum(peak["websocket"].cpu_ms.values()),
        unit="ms",
        baseline="HTTP, one event per request",
        baseline_value=sum(peak["http"].cpu_ms.values()),
        target="< baseline",
        details={name: load.cpu_ms for name, load in peak.items()},
    )
    cpu.met = (cpu.ratio or 2) < 1
    return [events, latency, cpu]
