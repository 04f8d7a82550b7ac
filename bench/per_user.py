"""The per-user placement's ceiling: what one actor per user costs in memory and start time.

Users are tracked one after another in the `per-user` placement, so each first call starts
that user's own actor; its start time is that first call's latency. Then each actor's USS
(memory only that process holds) is read. The baseline is an empty Ray actor with the same
options, started and measured the same way: most of a per-user actor is a Ray worker process.
Users per node = this machine's memory / USS per actor.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import ray

from bench.cluster import bench_config, pid_of, ray_session, temp_storage, uss_bytes
from bench.events import Movements, user_ids
from bench.handles import NoopHost
from bench.report import Row, machine
from tracker.api import connect, shutdown
from tracker.placement import host_name

_RemoteNoop: Any = ray.remote(NoopHost)


def run(quick: bool) -> list[Row]:
    count = 4 if quick else 24
    with ray_session(), temp_storage() as storage:
        config = bench_config(storage, placement="per-user")
        tracker = connect(config=config)
        make = Movements()
        warm = user_ids(1)[0]
        ray.get(tracker.user(warm).track.remote(make.one(warm)))
        starts: list[float] = []
        users = user_ids(count)
        for user in users:
            began = time.perf_counter()
            ray.get(tracker.user(user).track.remote(make.one(user)))
            starts.append(time.perf_counter() - began)
        handles = [ray.get_actor(host_name(u, config), namespace=config.namespace) for u in users]
        uss = [uss_bytes(pid_of(h)) for h in handles]
        noop_starts: list[float] = []
        noops: list[Any] = []
        for _ in range(min(count, 8)):
            began = time.perf_counter()
            noop = _RemoteNoop.options(num_cpus=0, max_concurrency=10_000).remote()
            pid = pid_of(noop)
            noop_starts.append(time.perf_counter() - began)
            noops.append((noop, pid))
        noop_uss = [uss_bytes(pid) for _, pid in noops]
        mb = statistics.median(uss) / 2**20
        noop_mb = statistics.median(noop_uss) / 2**20
        memory_gib = machine()["memory_gib"]
        per_node = memory_gib * 1024 / mb
        for noop, _ in noops:
            ray.kill(noop)
        shutdown(config)
        return [
            Row(
                name="per-user placement: memory per actor (USS)",
                value=mb,
                unit="MB",
                baseline="empty Ray actor",
                baseline_value=noop_mb,
                target="measured",
                details={"actors": count, "uss_mb": [round(u / 2**20, 1) for u in uss]},
            ),
            Row(
                name="per-user placement: start time per actor (first event)",
                value=statistics.median(starts),
                unit="s",
                baseline="empty Ray actor start",
                baseline_value=statistics.median(noop_starts),
                target="measured",
                details={
                    "starts_s": [round(s, 3) for s in starts],
                    "noop_starts_s": [round(s, 3) for s in noop_starts],
                },
            ),
            Row(
                name="per-user placement: users per node (memory / USS per actor)",
                value=per_node,
                unit="users",
                target="measured",
                details={"node_memory_gib": memory_gib},
            ),
        ]
