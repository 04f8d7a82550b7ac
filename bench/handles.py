"""Python handles: `UserHandle.track` and `track_many` beside a no-op Ray actor method.

Before each run the hosts compact and the run waits for it (`cluster.settle`): a compaction that
an earlier run's log set off lands in no later run's window, and each row counts the
compactions its own load set off.

The driver keeps a window of calls in flight (`ray.wait` on half of it at a time) for both the
tracker and the baseline, so each side runs as fast as Ray lets one driver submit. The baseline
actors have the tracker's actor options (async, `max_concurrency=10000`, `num_cpus=0`), one per
host, and get the same arguments routed the same way.

A second baseline for `track` answers the way a group commit does: the first call to arrive
starts a 1 ms wait, and the calls that arrive meanwhile are answered with it. It shows what
waiting for a commit costs by itself (the calls suspend, and are answered in groups).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import ObjectRef

from bench.cluster import (
    bench_config,
    compactions_since,
    cpu_seconds,
    pid_of,
    ray_session,
    settle,
    temp_storage,
)
from bench.events import Movements, user_ids
from bench.profile import Recording
from bench.report import Row
from tracker.api import Tracker, connect, shutdown
from tracker.codec import encode_entries
from tracker.placement import shard_of
from tracker.schema import MAX_BATCH_EVENTS, movements_from_obj, pack_movements

# The largest batch a call takes (the issue asks for 1,000; the schema caps a batch at 500).
BATCH = MAX_BATCH_EVENTS
# Batches in flight: enough that a host always has work while its last commit is syncing.
MANY_WINDOW = 64


class NoopHost:
    """A host that does nothing: what a Ray actor method call costs by itself."""

    async def track(self, user_id: str, movement: Any) -> int:
        return 1

    async def track_stored(self, user_id: str, entries: list[tuple[str, bytes]]) -> int:
        return BATCH

    def pid(self) -> int:
        import os

        return os.getpid()


class WaitingHost(NoopHost):
    """A no-op that answers like a group commit: the first call to arrive starts a `COMMIT_S`
    wait, and every call that arrives meanwhile is answered with it (the host's commit takes
    about this long when idle: a write, an `fdatasync`, two thread hops)."""

    COMMIT_S = 0.001

    def __init__(self) -> None:
        self.commit: asyncio.Future[None] | None = None

    def _committed(self) -> None:
        commit, self.commit = self.commit, None
        if commit is not None:
            commit.set_result(None)

    async def track(self, user_id: str, movement: Any) -> int:
        if self.commit is None:
            loop = asyncio.get_running_loop()
            self.commit = loop.create_future()
            loop.call_later(self.COMMIT_S, self._committed)
        await asyncio.shield(self.commit)
        return 1


_RemoteNoop: Any = ray.remote(NoopHost)
_RemoteWaiting: Any = ray.remote(WaitingHost)


def drive(submit: Callable[[int], ObjectRef[Any]], duration_s: float, window: int) -> float:
    """Submit calls until `duration_s` is over, `window` in flight; return completed per s."""
    inflight: list[ObjectRef[Any]] = []
    done_count = 0
    i = 0
    start = time.perf_counter()
    end = start + duration_s
    while time.perf_counter() < end:
        while len(inflight) < window:
            inflight.append(submit(i))
            i += 1
        done, inflight = ray.wait(inflight, num_returns=max(1, window // 2))
        ray.get(done)
        done_count += len(done)
    ray.get(inflight)
    done_count += len(inflight)
    return done_count / (time.perf_counter() - start)


def _host_pids(tracker: Tracker) -> dict[str, int]:
    return {name: pid_of(h) for name, h in tracker.hosts.items()}


def run(quick: bool) -> list[Row]:
    duration = 2.0 if quick else 6.0
    rounds = 1 if quick else 2
    with ray_session(), temp_storage() as storage:
        config = bench_config(storage)
        tracker = connect(config=config)
        noops = [
            _RemoteNoop.options(num_cpus=0, max_concurrency=10_000).remote()
            for _ in range(config.hosts)
        ]
        waiting = [
            _RemoteWaiting.options(num_cpus=0, max_concurrency=10_000).remote()
            for _ in range(config.hosts)
        ]
        ray.get([n.pid.remote() for n in noops + waiting])
        users = user_ids(2_000)
        handles = [tracker.user(u) for u in users]
        shards = [noops[shard_of(u, config.hosts)] for u in users]
        waiting_shards = [waiting[shard_of(u, config.hosts)] for u in users]
        make = Movements()

        def track(i: int) -> ObjectRef[Any]:
            k = i % len(users)
            return handles[k].track.remote(make.one(users[k]))

        def noop(i: int) -> ObjectRef[Any]:
            k = i % len(users)
            ref: ObjectRef[Any] = shards[k].track.remote(users[k], make.one(users[k]))
            return ref

        def noop_waiting(i: int) -> ObjectRef[Any]:
            k = i % len(users)
            ref: ObjectRef[Any] = waiting_shards[k].track.remote(users[k], make.one(users[k]))
            return ref

        def track_many(i: int) -> ObjectRef[Any]:
            k = i % len(users)
            return handles[k].track_many.remote(make.batch(users[k], BATCH, f"s{i}"))

        def noop_many(i: int) -> ObjectRef[Any]:
            k = i % len(users)
            # What a `UserHandle` does and sends: the batch validated, in the stored form.
            batch = pack_movements(make.batch(users[k], BATCH, f"s{i}"))
            entries = encode_entries(movements_from_obj(batch, time.time_ns() // 1_000_000))
            ref: ObjectRef[Any] = shards[k].track_stored.remote(users[k], entries)
            return ref

        activate(handles, users, make)
        drive(track, 1.0, 200)  # warm: code paths compiled
        drive(noop, 1.0, 200)
        drive(noop_waiting, 1.0, 200)
        calls: dict[str, list[float]] = {
            "track": [],
            "noop": [],
            "waiting": [],
            "many": [],
            "noop_many": [],
        }
        servers = {
            "noop": noops,
            "waiting": waiting,
            "track": list(tracker.hosts.values()),
            "noop_many": noops,
            "many": list(tracker.hosts.values()),
        }
        processes = {
            name: {"driver": _own_pid()}
            | {f"actor-{i}": pid_of(actor) for i, actor in enumerate(actors)}
            for name, actors in servers.items()
        }
        # CPU ms per call of the driver and the actors, and the hosts' compactions, in the
        # last round
        cpu: dict[str, dict[str, float]] = {}
        compactions: dict[str, int] = {}

        def measured(name: str, submit: Callable[[int], ObjectRef[Any]], window: int) -> float:
            settled = settle(config)  # no compaction of an earlier run's log in this window
            start = time.perf_counter()
            with cpu_seconds(processes[name]) as spent:
                rate = drive(submit, duration, window)
            done = max(1.0, rate * (time.perf_counter() - start))
            cpu[name] = {k: round(v * 1000 / done, 3) for k, v in spent.items()}
            compactions[name] = compactions_since(config, settled)
            return rate

        for _ in range(rounds):
            calls["noop"].append(measured("noop", noop, 1000))
            calls["waiting"].append(measured("waiting", noop_waiting, 1000))
            calls["track"].append(measured("track", track, 1000))
            calls["noop_many"].append(BATCH * measured("noop_many", noop_many, MANY_WINDOW))
            calls["many"].append(BATCH * measured("many", track_many, MANY_WINDOW))
        best = {k: max(v) for k, v in calls.items()}

        def compared(subject: str, against: str, **row: Any) -> Row:
            """`subject`'s best beside `against`'s, with both sides' runs and CPU per call."""
            extra = row.pop("details", {})
            return Row(
                value=best[subject],
                baseline_value=best[against],
                details={
                    "runs": calls[subject],
                    "baseline_runs": calls[against],
                    **extra,
                    "cpu_ms_per_call": {subject: cpu[subject], against: cpu[against]},
                    "compactions": compactions[subject],
                },
                **row,
            )

        track_row = compared(
            "track",
            "noop",
            name="handles: track calls/s",
            unit="calls/s",
            baseline="no-op actor method",
            target=">= 0.8x baseline",
            details={"window": 1000},
        )
        track_row.met = (track_row.ratio or 0) >= 0.8
        waiting_row = compared(
            "track",
            "waiting",
            name="handles: track calls/s beside a no-op that waits for a commit",
            unit="calls/s",
            baseline="no-op actor method answering in 1 ms groups, as a commit does",
            details={"window": 1000},
        )
        many_row = compared(
            "many",
            "noop_many",
            name="handles: track_many events/s (durable)",
            unit="events/s",
            baseline="no-op call, same batches validated and encoded",
            target=">= 200,000 events/s",
            met=best["many"] >= 200_000,
            details={"batch": BATCH},
        )
        pids = _host_pids(tracker)
        if not track_row.met and not quick:
            settle(config)
            recording = Recording({**pids, "driver": _own_pid()}, "handles-track", duration)
            drive(track, duration, 1000)
            track_row.profile = recording.stop()
        if not many_row.met and not quick:
            settle(config)
            recording = Recording({**pids, "driver": _own_pid()}, "handles-track_many", duration)
            drive(track_many, duration, MANY_WINDOW)
            many_row.profile = recording.stop()
        for actor in noops + waiting:
            ray.kill(actor)
        shutdown(config)
        rows = [track_row, waiting_row, many_row]
        if not quick:
            rows.append(_two_hosts(best["many"], calls["many"], duration, rounds))
        return rows


def activate(handles: list[Any], users: list[str], make: Movements) -> None:
    """One event for every user, so that the measured runs find them all in memory: a warm-up
    of a second of calls reached about half of the 2,000 users with `track` and under a tenth
    with `track_many`, and the measured rounds paid for loading the rest from storage."""
    for start in range(0, len(users), 500):
        chunk = range(start, min(start + 500, len(users)))
        ray.get([handles[k].track.remote(make.one(users[k])) for k in chunk])


def _two_hosts(one_host: float, one_host_runs: list[float], duration: float, rounds: int) -> Row:
    """`track_many` again with two hosts, one per core: a host is one Python process, and
    with one host its core is what bounds the rate (the driver's is half idle)."""
    with temp_storage() as storage:
        config = bench_config(storage, hosts=2)
        tracker = connect(config=config)
        users = user_ids(2_000)
        handles = [tracker.user(u) for u in users]
        make = Movements()

        def track_many(i: int) -> ObjectRef[Any]:
            k = i % len(users)
            return handles[k].track_many.remote(make.batch(users[k], BATCH, f"s{i}"))

        activate(handles, users, make)
        drive(track_many, 1.0, MANY_WINDOW)  # warm: code paths compiled on both hosts
        runs = []
        for _ in range(rounds):
            settle(config)
            runs.append(BATCH * drive(track_many, duration, MANY_WINDOW))
        shutdown(config)
    return Row(
        name="handles: track_many events/s (durable), 2 hosts",
        value=max(runs),
        unit="events/s",
        baseline="track_many with 1 host, same run",
        baseline_value=one_host,
        details={"runs": runs, "baseline_runs": one_host_runs, "batch": BATCH, "hosts": 2},
    )


def _own_pid() -> int:
    import os

    return os.getpid()
