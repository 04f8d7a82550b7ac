"""Memory: host bytes per retained movement, and 100,000 distinct users on one machine.

Bytes per movement: one host actor (`hosts=1`) retains 1M movements (1,000 users, two
sessions each, 500 movements per session: under the 1,000 cap, so all stay in memory); its
RSS is read before and after, once compaction has moved the journal's records into storage.
The baseline is a movement's encoded size: what a movement's bytes alone would take.

100k users: every user sends one event through the hosts' `track_batch` (several users' batches
in one call, as an HTTP replica coalesces them), sharded over the default host count; then
every one of them is active.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

import ray

from bench.cluster import bench_config, pid_of, ray_session, rss_bytes, temp_storage, uss_bytes
from bench.events import Movements, encoded_size, stored_size, user_ids
from bench.report import Row
from tracker.analytics import SiteStats
from tracker.api import Tracker, connect, shutdown
from tracker.placement import shard_of
from tracker.schema import MAX_BATCH_EVENTS
from tracker.storage import open_storage
from tracker.user_host import UserHost


def _pids(tracker: Tracker) -> list[int]:
    return [pid_of(h) for h in tracker.hosts.values()]


def _per_movement(storage: str, total: int, profile: bool) -> Row:
    config = bench_config(storage, hosts=1)
    tracker = connect(config=config)
    make = Movements()
    (pid,) = _pids(tracker)
    warm = user_ids(1)[0]
    ray.get(tracker.user(warm).track_many.remote(make.batch(warm, 10)))
    per_call = MAX_BATCH_EVENTS
    sessions = 2
    users = user_ids(total // (per_call * sessions))
    tracker.flush()
    before = rss_bytes(pid)
    began = time.perf_counter()
    sample = make.one(users[0])

    def call(i: int) -> Any:
        user = users[i % len(users)]
        session = f"s{(i // len(users)) % sessions}"
        return tracker.user(user).track_many.remote(make.batch(user, per_call, session))

    calls = total // per_call
    refs: list[Any] = []
    for i in range(calls):
        refs.append(call(i))
        if len(refs) >= 16:
            ready, refs = ray.wait(refs, num_returns=8)
            ray.get(ready)
    ray.get(refs)
    seconds = time.perf_counter() - began
    tracker.flush()  # compaction: the journal's records leave memory, the movements stay
    after = rss_bytes(pid)
    row = Row(
        name=f"memory: host bytes per retained movement ({total:,})",
        value=(after - before) / total,
        unit="B/movement",
        baseline="encoded movement",
        baseline_value=encoded_size(sample),
        target="<= 250 B",
        details={
            "movements": total,
            "stored_movement_bytes": stored_size(sample),
            "users": len(users),
            "sessions_per_user": sessions,
            "rss_before_mb": round(before / 2**20, 1),
            "rss_after_mb": round(after / 2**20, 1),
            "uss_after_mb": round(uss_bytes(pid) / 2**20, 1),
            "seconds": round(seconds, 1),
        },
    )
    row.met = row.value <= 250
    if not row.met and profile:
        row.profile = allocations(users=100, sessions=2, per_session=500)
    shutdown(config)
    return row


def _many_users(storage: str, count: int, profile: bool) -> Row:
    config = bench_config(storage)
    tracker = connect(config=config)
    make = Movements()
    pids = _pids(tracker)
    before = sum(rss_bytes(p) for p in pids)
    users = user_ids(count)
    by_host: dict[int, list[str]] = {}
    for user in users:
        by_host.setdefault(shard_of(user, config.hosts), []).append(user)
    hosts = list(tracker.hosts.values())
    items = [
        (index, [(u, [make.one(u)]) for u in group[start : start + 500]])
        for index, group in by_host.items()
        for start in range(0, len(group), 500)
    ]
    began = time.perf_counter()
    refs = [hosts[index].track_batch.remote(batch) for index, batch in items]
    answers: list[list[Any]] = ray.get(refs)
    results = [r for answer in answers for r in answer]
    seconds = time.perf_counter() - began
    status = tracker.status()
    after = sum(rss_bytes(p) for p in pids)
    row = Row(
        name="memory: distinct users active, sharded (one machine)",
        value=status["activeUsers"],
        unit="users",
        target=f">= {count:,}",
        met=status["activeUsers"] >= count,
        details={
            "failed_calls": sum(1 for r in results if not isinstance(r, int)),
            "seconds": round(seconds, 1),
            "users_per_s": round(count / seconds),
            "hosts": config.hosts,
            "rss_delta_mb": round((after - before) / 2**20, 1),
            "rss_bytes_per_user": round((after - before) / count),
        },
    )
    if profile:
        row.profile = allocations(users=5_000, sessions=1, per_session=1)
    shutdown(config)
    return row


def allocations(users: int, sessions: int, per_session: int, top: int = 12) -> list[str]:
    """Where a host's bytes go: the same calls into a `UserHost` in this process (with the
    actor's analytics listener), traced by tracemalloc, grouped by the line that allocated."""
    with temp_storage() as storage:
        return asyncio.run(_allocations(storage, users, sessions, per_session, top))


async def _allocations(
    storage: str, count: int, sessions: int, per_session: int, top: int
) -> list[str]:
    stats = SiteStats()
    host = UserHost(
        "trace",
        open_storage(storage),
        on_track=lambda user, session, movements, now, known: stats.observe_stored(
            user, session, movements, now, known=known
        ),
    )
    await host.start()
    make = Movements()
    users = user_ids(count)
    await host.track_many(users[0], make.batch(users[0], 10))  # imports, first-use caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for session in range(sessions):
        for user in users:
            await host.track_many(user, make.batch(user, per_session, f"s{session}"))
    await host.compact(force=True)
    stats.take_delta()  # what the actor ships to the aggregator every second
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    await host.stop()
    units = count * sessions * per_session
    unit = "movement" if per_session > 1 else "user"
    diff = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in diff)
    lines = [f"tracemalloc, {units:,} {unit}s: {total / units:.0f} B/{unit} in all; by line:"]
    for stat in diff[:top]:
        frame = stat.traceback[0]
        name = frame.filename.split("/main/")[-1].split("site-packages/")[-1]
        lines.append(f"  {stat.size_diff / units:7.1f} B/{unit}  {name}:{frame.lineno}")
    return lines


def run(quick: bool) -> list[Row]:
    with ray_session(), temp_storage() as storage:
        rows = [_per_movement(storage, 50_000 if quick else 1_000_000, not quick)]
        rows.append(_many_users(storage, 10_000 if quick else 100_000, not quick))
    return rows
