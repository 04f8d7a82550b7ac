"""Storage: writes follow the group-commit rate, not the event rate; bytes written per event.

A `UserHost` (the host actor's logic, without Ray) on fsynced file storage, counted (objects
as they are put, the journal's frames as it commits them: the path file storage takes in
production), takes single-event `track` calls from many concurrent callers at two
load levels. If writes follow commits, not events, the write rate stays put while the event
rate grows. Compaction runs every second (as the host actor's tick would), and the run ends
with a clean stop, so the bytes written include the journal, every history chunk and snapshot.
The baseline is what the tracker stores of each request (`events.stored_request_size`: the
format-2 blob, `[eventId, timestamp, event, data]` per movement in one msgpack array per
session and request), so the ratio counts the bytes written beyond the event's stored form.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from bench.cluster import temp_storage
from bench.events import Movements, stored_request_size, user_ids
from bench.profile import in_process
from bench.report import Row
from tracker.host_settings import HostSettings
from tracker.journal import Journal
from tracker.storage import FileStorage
from tracker.user_host import UserHost

COMPACT_EVERY_S = 1.0


class CountingStorage(FileStorage):
    """File storage that counts the objects put, by kind. The journal's commits are appended
    to frames files in place, past `put`: `written` adds them from the journal's counters."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.puts: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    @staticmethod
    def kind(key: str) -> str:
        if "/log/" in key:
            return "journal"
        if "/chunks/" in key:
            return "chunk"
        if key.endswith("/snapshot"):
            return "snapshot"
        return "other"

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        kind = self.kind(key)
        self.puts[kind] += 1
        self.bytes[kind] += len(data)
        return await super().put(key, data, if_absent=if_absent, if_match=if_match)

    def written(self, journal: Journal) -> tuple[Counter[str], Counter[str]]:
        """(writes, bytes) by kind, with `journal`'s committed frames counted as journal's:
        one write (an append and its `fdatasync`) per commit."""
        writes, size = self.puts.copy(), self.bytes.copy()
        writes["journal"] += journal.commits
        size["journal"] += journal.bytes_committed
        return writes, size


async def _load(
    host: UserHost, users: list[str], concurrency: int, duration_s: float
) -> dict[str, Any]:
    make = Movements()
    sizes: list[int] = []
    events = 0
    end = time.perf_counter() + duration_s

    async def caller() -> None:
        nonlocal events
        while time.perf_counter() < end:
            movement = make.one(random.choice(users))
            if len(sizes) < 2000:
                sizes.append(stored_request_size([movement]))
            await host.track(movement["userId"], movement)
            events += 1

    storage = host.storage
    assert isinstance(storage, CountingStorage)
    before, _ = storage.written(host.journal)
    commits_before = host.journal.commits
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    writes = storage.written(host.journal)[0] - before
    return {
        "concurrency": concurrency,
        "events": events,
        "events_per_s": events / elapsed,
        "writes_per_s": sum(writes.values()) / elapsed,
        "journal_writes_per_s": writes["journal"] / elapsed,
        "commits_per_s": (host.journal.commits - commits_before) / elapsed,
        "writes": dict(writes),
        "mean_stored_bytes": sum(sizes) / len(sizes),
    }


async def _scheduler(requests: dict[str, int]) -> None:
    """Where the host actor ships its alarm requests every second: nothing is measured there."""


async def _compact_forever(host: UserHost) -> None:
    while True:
        await asyncio.sleep(COMPACT_EVERY_S)
        # As the host actor does: requests not shipped would be logged by every compaction.
        await host.ship_alarm_requests(_scheduler)
        await host.compact()


async def _measure(storage_url: str, quick: bool, profile: list[str] | None) -> dict[str, Any]:
    counting = CountingStorage(storage_url)
    settings = HostSettings(compact_interval_ms=int(COMPACT_EVERY_S * 1000))
    host = UserHost("bench", counting, settings)
    await host.start()
    compactor = asyncio.create_task(_compact_forever(host))
    users = user_ids(300 if quick else 1000)
    duration = 3.0 if quick else 8.0
    levels = []
    try:
        if profile is None:
            for concurrency in (8, 256):
                levels.append(await _load(host, users, concurrency, duration))
        else:
            with in_process(profile):
                levels.append(await _load(host, users, 256, duration))
    finally:
        compactor.cancel()
    await host.ship_alarm_requests(_scheduler)
    await host.stop()  # a clean stop compacts everything: all bytes are counted
    writes, written = counting.written(host.journal)
    events = sum(level["events"] for level in levels)
    stored = events * sum(lv["mean_stored_bytes"] for lv in levels) / len(levels)
    return {
        "levels": levels,
        "events": events,
        "stored_bytes": stored,
        "written_bytes": dict(written),
        "writes": dict(writes),
    }


def run(quick: bool) -> list[Row]:
    with temp_storage() as storage:
        result = asyncio.run(_measure(storage, quick, None))
    low, high = result["levels"]
    event_growth = high["events_per_s"] / low["events_per_s"]
    write_growth = high["journal_writes_per_s"] / max(low["journal_writes_per_s"], 1e-9)
    writes = Row(
        name="storage: journal writes/s at high load",
        value=high["journal_writes_per_s"],
        unit="writes/s",
        baseline="events/s in the same run",
        baseline_value=high["events_per_s"],
        target="journal writes/s = commit rate, flat as events/s grows",
        # Bounded by commits: one write per commit, and the write rate does not follow the
        # event rate (which grew `event_growth` times between the two levels).
        met=high["journal_writes_per_s"] <= high["commits_per_s"] * 1.01
        and write_growth < max(1.5, event_growth / 2),
        details={
            "levels": result["levels"],
            "event_rate_growth": round(event_growth, 2),
            "journal_write_rate_growth": round(write_growth, 2),
        },
    )
    total = sum(result["written_bytes"].values())
    per_event = total / result["events"]
    mean_stored = result["stored_bytes"] / result["events"]
    amplification = Row(
        name="storage: bytes written per event, compaction included",
        value=per_event,
        unit="B/event",
        baseline="the event as stored (its request's blob)",
        baseline_value=mean_stored,
        target="<= 3x baseline",
        details={
            "written_bytes_by_kind": result["written_bytes"],
            "writes_by_kind": result["writes"],
            "events": result["events"],
        },
    )
    amplification.met = (amplification.ratio or 99) <= 3.0
    if not amplification.met:
        # Where the bytes go matters more here than where the CPU time goes.
        amplification.profile = [
            f"{kind}: {count} writes, {size / result['events']:.0f} B/event "
            f"({size / result['stored_bytes']:.2f}x stored)"
            for kind, size in result["written_bytes"].items()
            for count in [result["writes"].get(kind, 0)]
            if size
        ]
    if not writes.met and not quick:
        lines: list[str] = []
        with temp_storage() as storage:
            asyncio.run(_measure(storage, True, lines))
        writes.profile = lines
    return [writes, amplification]
