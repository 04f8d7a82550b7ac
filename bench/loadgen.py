"""Bounded HTTP load: `wrk` (Debian's package) when installed, else an asyncio keep-alive client.

Both send the same requests: `POST /api/track` with valid events (anonymous UUID users from a
pool, the current time, a unique eventId), one or a batch per request. wrk is C and needs far
less CPU per request, which matters on 2 cores shared with the server under test; the asyncio
client is the fallback, and also the only one of the two that sends at a fixed rate (open loop,
latency counted from each request's scheduled time, so a stalled server cannot hide its queue).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).parent / "track.lua"
# Requests go to a fixed pool of users, the same in every run, so a warm-up activates them and
# the figures are those of active users (passivation has its own scenario).
USERS = 2_000
USERS_SEED = 1
EVENT = (
    '{{"userId":"{user}","sessionId":"{session}","timestamp":{ts},"event":"click",'
    '"data":{{"path":"/products/{page}","element":"button#buy","coordinates":{{"x":{x},"y":{y}}},'
    '"metadata":{{"viewportWidth":1280,"viewportHeight":800}}}},"eventId":"{prefix}-{n}"}}'
)


@dataclass
class Load:
    """What a load run measured."""

    tool: str
    requests: int
    duration_s: float
    errors: int
    events_per_request: int
    p50_ms: float
    p99_ms: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    # (seconds since the start, latency in ms) of each request, for `slow_windows`
    timeline: list[tuple[float, float]] = field(default_factory=list, repr=False)
    # CPU milliseconds per request of each server process, where the run measured them
    cpu_ms: dict[str, float] = field(default_factory=dict)
    # Compactions the tracker's hosts ran during the run, where the run counted them
    compactions: int | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def events_per_s(self) -> float:
        return self.rps * self.events_per_request

    def slow_windows(self, over_ms: float = 25.0, top: int = 5) -> dict[str, object]:
        """When the slow requests happened: a tail that comes in bursts (one every second, say)
        points at periodic work in the server, a spread-out one at steady contention."""
        slow = [start for start, latency in self.timeline if latency >= over_ms]
        windows: dict[float, int] = {}
        for start in slow:
            key = round(int(start * 10) / 10, 1)
            windows[key] = windows.get(key, 0) + 1
        busiest = sorted(windows.items(), key=lambda kv: -kv[1])[:top]
        return {
            f"requests_over_{over_ms:.0f}_ms": len(slow),
            "windows_of_100_ms_with_them": len(windows),
            "busiest_windows_s": [{"at_s": at, "requests": n} for at, n in busiest],
        }

    def summary(self) -> dict[str, object]:
        result: dict[str, object] = {
            "tool": self.tool,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 2),
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
        }
        if self.timeline:
            result["tail"] = self.slow_windows()
        if self.cpu_ms:
            result["cpu_ms_per_request"] = {k: round(v, 3) for k, v in self.cpu_ms.items()}
        if self.compactions is not None:
            result["compactions"] = self.compactions
        return result


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    ports: list[int],
    path: str,
    *,
    batch: int = 1,
    connections: int = 64,
    duration_s: float = 8.0,
    users: int = USERS,
) -> Load:
    """Closed-loop load with wrk, one process per port (a replica each), one thread each."""
    per_port = max(1, connections // len(ports))
    procs = []
    for index, port in enumerate(ports):
        command = [
            "wrk",
            "-t1",
            f"-c{per_port}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}",
            "--",
            path,
            str(batch),
            str(users_file(users)),
            str(random.randrange(1 << 30) + index),
        ]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration_s + 60)
        line = next((x for x in out.decode().splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary: {out.decode()[-500:]} {err.decode()}")
        results.append(json.loads(line.removeprefix("WRKJSON ")))
    duration = max(r["duration_us"] for r in results) / 1e6
    errors = sum(
        r[k]
        for r in results
        for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return Load(
        tool="wrk",
        requests=sum(r["requests"] for r in results),
        duration_s=duration,
        errors=errors,
        events_per_request=batch,
        p50_ms=max(r["p50_us"] for r in results) / 1000,
        p99_ms=max(r["p99_us"] for r in results) / 1000,
    )


def user_pool(count: int = USERS) -> list[str]:
    """The anonymous users (UUID v4) requests are spread over: the same in every run."""
    pool = random.Random(USERS_SEED)
    return [str(uuid.UUID(int=pool.getrandbits(128), version=4)) for _ in range(count)]


def users_file(count: int = USERS) -> Path:
    """The pool written one ID a line, for the wrk script."""
    path = Path(tempfile.gettempdir()) / f"tracker-bench-users-{USERS_SEED}-{count}.txt"
    if not path.exists():
        path.write_text("\n".join(user_pool(count)) + "\n")
    return path


class Bodies:
    """Request bodies like the wrk script's, for the asyncio client."""

    def __init__(self, batch: int = 1, users: int = USERS) -> None:
        self.batch = batch
        self.users = user_pool(users)
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count(1)

    def event(self, user: str, ts: int) -> str:
        return EVENT.format(
            user=user,
            session=f"s-{user[:8]}",
            ts=ts,
            page=random.randrange(50),
            x=random.randrange(1280),
            y=random.randrange(3000),
            prefix=self.prefix,
            n=next(self.counter),
        )

    def __call__(self) -> bytes:
        user = random.choice(self.users)
        ts = time.time_ns() // 1_000_000
        if self.batch == 1:
            return self.event(user, ts).encode()
        events = ",".join(self.event(user, ts) for _ in range(self.batch))
        return f'{{"events":[{events}]}}'.encode()


def request_bytes(path: str, port: int, body: bytes, headers: str = "") -> bytes:
    """A POST of `body`; `headers` are more header lines, each ending in CRLF."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


# A connection of the load: sends one body and returns whether it was accepted; `None` closes.
Exchange = Callable[[bytes | None], Awaitable[bool]]
# Opens a connection to a port, as the visitor whose body maker is given.
Opener = Callable[[int, Callable[[], bytes]], Awaitable[Exchange]]


async def http_opener(
    path: str, port: int, bodies: Callable[[], bytes], headers: str = ""
) -> Exchange:
    """A keep-alive HTTP/1.1 connection posting each body to `path`, with `headers` (more
    header lines) on every request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def exchange(body: bytes | None) -> bool:
        if body is None:
            writer.close()
            return True
        return await _exchange(reader, writer, request_bytes(path, port, body, headers)) == 200

    return exchange


async def _run_async(
    ports: list[int],
    opener: Opener,
    bodies: Callable[[], Callable[[], bytes]],
    connections: int,
    duration_s: float,
    rate: float | None,
) -> tuple[int, int, float, list[tuple[float, float]]]:
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []
    errors = 0
    slots = itertools.count()
    start = time.perf_counter() + 0.2
    end = start + duration_s

    async def worker(port: int) -> None:
        nonlocal errors
        made = bodies()
        exchange = await opener(port, made)
        try:
            while True:
                if rate is None:
                    began = time.perf_counter()
                    if began >= end:
                        return
                else:
                    began = start + next(slots) / rate
                    if began >= end:
                        return
                    delay = began - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                ok = await exchange(made())
                latency = (time.perf_counter() - began) * 1000
                latencies.append(latency)
                timeline.append((began - start, latency))
                if not ok:
                    errors += 1
        finally:
            await exchange(None)

    # The workers connect at once and then wait for their first slot: `start` leaves 200 ms
    # for that, so that no measured request waits for a connection to be set up.
    tasks = [worker(ports[i % len(ports)]) for i in range(connections)]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return len(latencies), errors, elapsed, timeline


def run_asyncio(
    ports: list[int],
    path: str,
    *,
    batch: int = 1,
    connections: int = 64,
    duration_s: float = 8.0,
    rate: float | None = None,
    users: int = USERS,
    opener: Opener | None = None,
    tool: str = "asyncio",
    visitors: bool = False,
    bodies: Callable[[], bytes] | None = None,
    headers: str = "",
) -> Load:
    """Closed-loop load, or with `rate` open-loop load at that many requests per second; over
    keep-alive HTTP to `path`, or over the connections `opener` opens. With `visitors`, each
    connection is one visitor of the pool, sending only their own events. `bodies` makes each
    request's body (default: `Bodies(batch, users)`); `headers` are more header lines for every
    HTTP request."""
    try:
        import uvloop

        runner: Callable[..., tuple[int, int, float, list[tuple[float, float]]]] = uvloop.run
    except ImportError:
        runner = asyncio.run
    shared = Bodies(batch, users)
    made = bodies or shared
    pool = itertools.cycle(shared.users)

    def visitor() -> Callable[[], bytes]:
        user = next(pool)
        return lambda: shared.event(user, time.time_ns() // 1_000_000).encode()

    requests, errors, elapsed, timeline = runner(
        _run_async(
            ports,
            opener or functools.partial(http_opener, path, headers=headers),
            visitor if visitors else lambda: made,
            connections,
            duration_s,
            rate,
        )
    )
    ordered = sorted(latency for _, latency in timeline)
    return Load(
        tool=tool + (f" @{rate:.0f}/s" if rate else ""),
        requests=requests,
        duration_s=elapsed,
        errors=errors,
        events_per_request=batch,
        p50_ms=percentile(ordered, 50),
        p99_ms=percentile(ordered, 99),
        latencies_ms=ordered,
        timeline=timeline,
    )


def activate(ports: list[int], path: str, users: int = USERS, connections: int = 32) -> int:
    """One event for every user of the pool, so that the measured runs find them active.

    Returns how many requests failed."""
    bodies = Bodies(1, users)
    pending = list(bodies.users)

    async def sweep() -> int:
        failed = 0

        async def worker(port: int) -> None:
            nonlocal failed
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while pending:
                    body = bodies.event(pending.pop(), time.time_ns() // 1_000_000).encode()
                    if await _exchange(reader, writer, request_bytes(path, port, body)) != 200:
                        failed += 1
            finally:
                writer.close()

        await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(connections)))
        return failed

    return asyncio.run(sweep())


def run_closed(ports: list[int], path: str, **options: int | float) -> Load:
    """Closed-loop load with the faster generator available (wrk, else asyncio)."""
    if have_wrk() and not os.environ.get("BENCH_NO_WRK"):
        return run_wrk(ports, path, **options)  # type: ignore[arg-type]
    return run_asyncio(ports, path, **options)  # type: ignore[arg-type]


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, int(len(ordered) * pct / 100))
    return ordered[index]
