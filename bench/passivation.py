"""A passivated user's first event: how long until it is acknowledged (file storage).

Users are tracked once, then the hosts compact and passivate them (`passivate_after_s` is tiny
and `Tracker.flush()` compacts, which passivates idle users). Each user's next event then has
to activate them from storage (snapshot, history chunks) before it is logged and fsynced.
Calls go one at a time from the driver, so each figure is one call's latency. The baseline is
an event of the same users right after another one, so they are active: the same call minus
the activation.
"""

from __future__ import annotations

import time

import ray

from bench.cluster import bench_config, pid_of, ray_session, temp_storage
from bench.events import Movements, user_ids
from bench.loadgen import percentile
from bench.profile import Recording
from bench.report import Row
from tracker.api import Tracker, connect, shutdown


def _timed(
    tracker: Tracker, users: list[str], make: Movements, *, warm: bool = False
) -> list[float]:
    latencies = []
    for user in users:
        handle = tracker.user(user)
        if warm:
            # Hosts passivate idle users every second here: make sure this one is active.
            ray.get(handle.track.remote(make.one(user)))
        began = time.perf_counter()
        ray.get(handle.track.remote(make.one(user)))
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def _passivate(tracker: Tracker, users: list[str], make: Movements) -> int:
    ray.get([tracker.user(u).track.remote(make.one(u)) for u in users])
    time.sleep(0.05)  # idle longer than passivate_after_s (0.01 s)
    tracker.flush()
    active: int = tracker.status()["activeUsers"]
    return active


def run(quick: bool) -> list[Row]:
    count = 100 if quick else 400
    with ray_session(), temp_storage() as storage:
        # Hosts compact (and so passivate idle users) on every tick and flush.
        config = bench_config(storage, passivate_after_s=0.01, compact_interval_s=0.001)
        tracker = connect(config=config)
        make = Movements()
        _timed(tracker, user_ids(50), make)  # warm the code paths
        users = user_ids(count)
        still_active = _passivate(tracker, users, make)
        cold = _timed(tracker, users, make)
        warm = _timed(tracker, users, make, warm=True)
        cold.sort()
        warm.sort()
        row = Row(
            name="passivated user's first event, median",
            value=percentile(cold, 50),
            unit="ms",
            baseline="active user's event, median",
            baseline_value=percentile(warm, 50),
            target="< 5 ms",
            met=percentile(cold, 50) < 5.0,
            details={
                "users": count,
                "active_after_passivation": still_active,
                "cold_p99_ms": round(percentile(cold, 99), 2),
                "warm_p99_ms": round(percentile(warm, 99), 2),
            },
        )
        if not row.met and not quick:
            pids = {n: pid_of(h) for n, h in tracker.hosts.items()}
            more = user_ids(count)
            _passivate(tracker, more, make)
            recording = Recording(pids, "passivation", 3)
            deadline = time.perf_counter() + 3
            while time.perf_counter() < deadline and more:
                _timed(tracker, [more.pop()], make)
            row.profile = recording.stop()
        shutdown(config)
        return [row]
