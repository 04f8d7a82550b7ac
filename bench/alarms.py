"""Alarms: fire lag with a million pending alarms in the scheduler, while ingesting.

`AlarmScheduler` (the scheduler actor's logic, without Ray) on fsynced file storage holds
`pending` alarms, most due in hours and some due during a measured window. While the window
runs, the same event loop ingests: hosts' `ensure_alarms` requests for newly seen users, and a
`UserHost` taking tracked events from concurrent callers, so the scheduler shares its loop with
real work. Firing a user's alarm returns the next due time an hour on, as a host's `alarm()`
would. The baseline fires the same due alarms with nothing else pending and nothing ingested.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from typing import Any

from bench.cluster import rss_bytes, temp_storage
from bench.events import Movements, user_ids
from bench.profile import in_process
from bench.report import Row
from tracker.clock import wall_clock_ms
from tracker.scheduler import AlarmScheduler
from tracker.storage import open_storage
from tracker.user_host import UserHost

HOUR_MS = 3600 * 1000
ARM_BATCH = 10_000


async def _arm(scheduler: AlarmScheduler, alarms: dict[str, int]) -> None:
    items = list(alarms.items())
    for start in range(0, len(items), ARM_BATCH):
        await scheduler.ensure_alarms(dict(items[start : start + ARM_BATCH]))


async def _ingest(storage_url: str, scheduler: AlarmScheduler, stop: asyncio.Event) -> int:
    host = UserHost("ingest", open_storage(storage_url))
    await host.start()
    users = user_ids(500)
    make = Movements()
    events = 0
    counter = 0

    async def caller() -> None:
        nonlocal events
        while not stop.is_set():
            user = random.choice(users)
            await host.track(user, make.one(user))
            events += 1

    async def new_users() -> None:
        nonlocal counter
        while not stop.is_set():
            due = wall_clock_ms() + HOUR_MS
            fresh = {f"new-{counter + i:012d}": due for i in range(100)}
            counter += 100
            await scheduler.ensure_alarms(fresh)
            await asyncio.sleep(0.1)

    await asyncio.gather(new_users(), *(caller() for _ in range(32)))
    await host.stop()
    return events


async def _measure(
    storage_url: str, pending: int, due: int, window_s: float, ingest: bool
) -> dict[str, Any]:
    scheduler: AlarmScheduler

    async def fire(user_id: str) -> int | None:
        await asyncio.sleep(0)
        return scheduler.now_ms() + HOUR_MS

    scheduler = AlarmScheduler(open_storage(storage_url), fire)
    await scheduler.start()
    gc.collect()
    rss_before = rss_bytes(os.getpid())
    began = time.perf_counter()
    now = wall_clock_ms()
    later = {
        f"user-{i:012d}-later": now + HOUR_MS + random.randrange(20 * HOUR_MS)
        for i in range(pending - due)
    }
    await _arm(scheduler, later)
    del later
    window_start = now + 2000 + int((time.perf_counter() - began) * 1000)
    window_ms = int(window_s * 1000)
    soon = {f"user-{i:012d}-soon": window_start + random.randrange(window_ms) for i in range(due)}
    await _arm(scheduler, soon)
    arm_s = time.perf_counter() - began
    compact_began = time.perf_counter()
    await scheduler.compact()  # what the scheduler does as its log grows while arming
    compact_s = time.perf_counter() - compact_began
    gc.collect()
    rss_after = rss_bytes(os.getpid())
    runner = asyncio.create_task(scheduler.run())
    stop = asyncio.Event()
    ingesting = asyncio.create_task(_ingest(storage_url, scheduler, stop)) if ingest else None
    await asyncio.sleep(max(0.0, (window_start + window_ms - wall_clock_ms()) / 1000) + 1.5)
    stop.set()
    events = await ingesting if ingesting is not None else 0
    runner.cancel()
    stats = scheduler.stats()
    lags = sorted(scheduler.lags_ms)
    await scheduler.stop()
    return {
        "pending": pending,
        "due_in_window": due,
        "window_s": window_s,
        "fired": scheduler.fired,
        "fire_lag_p50_ms": lags[len(lags) // 2] if lags else None,
        "fire_lag_p99_ms": stats["fireLagP99Ms"],
        "fire_lag_max_ms": lags[-1] if lags else None,
        "arm_s": round(arm_s, 2),
        "compact_s": round(compact_s, 2),
        "rss_delta_bytes": rss_after - rss_before,
        "ingested_events": events,
        "ingested_events_per_s": round(events / (window_s + 1.5), 1),
    }


def run(quick: bool) -> list[Row]:
    pending = 100_000 if quick else 1_000_000
    window_s = 4.0 if quick else 15.0
    due = int(window_s * (500 if quick else 1000))
    with temp_storage() as storage:
        base = asyncio.run(_measure(storage, due, due, window_s, ingest=False))
    with temp_storage() as storage:
        loaded = asyncio.run(_measure(storage, pending, due, window_s, ingest=True))
    lag = Row(
        name=f"alarms: fire lag p99, {pending:,} pending, ingesting",
        value=loaded["fire_lag_p99_ms"],
        unit="ms",
        baseline=f"{due:,} pending, idle",
        baseline_value=base["fire_lag_p99_ms"],
        target="< 1000 ms",
        met=loaded["fire_lag_p99_ms"] < 1000 and loaded["fired"] >= due,
        details={"loaded": loaded, "baseline": base},
    )
    memory = Row(
        name="alarms: memory per pending alarm",
        value=loaded["rss_delta_bytes"] / pending,
        unit="B/alarm",
        details={"rss_delta_mb": round(loaded["rss_delta_bytes"] / 2**20, 1)},
    )
    if not lag.met and not quick:
        lines: list[str] = []
        with temp_storage() as storage, in_process(lines):
            asyncio.run(_measure(storage, pending, due, window_s, ingest=True))
        lag.profile = lines
    return [lag, memory]
