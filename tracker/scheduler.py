"""Alarms: one per user, like Durable Objects' setAlarm / getAlarm / deleteAlarm.

`AlarmScheduler` is the logic of the scheduler actor with Ray left out. Alarms live in a dict
(user -> due time) with a heap of (due, user) beside it, so a million pending alarms cost memory
and a wake-up per due alarm, not a scan. Changes are logged to a `Journal` (group-committed and
fenced like a host's) and compacted into a snapshot, so alarms survive restarts of the scheduler
and of the whole cluster.

Firing is at least once: an alarm stays stored until the user's `alarm()` has run; a failure is
retried with exponential backoff (2 s, doubling, up to 6 retries, as Durable Objects do), after
which the alarm falls back to its normal interval rather than being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tracker import codec
from tracker.errors import Fenced
from tracker.host import NowMs, wall_clock_ms
from tracker.journal import Journal
from tracker.storage import ObjectExists, PreconditionFailed, Storage, get_if_any

log = logging.getLogger(__name__)

Fire = Callable[[str], Awaitable[int | None]]

RETRY_BASE_MS = 2000
MAX_RETRIES = 6
SNAPSHOT_KEY = "scheduler/snapshot"


class AlarmScheduler:
    """Durable per-user alarms; `fire_due` calls the user's alarm for each one that is due."""

    def __init__(
        self,
        storage: Storage,
        fire: Fire,
        *,
        now_ms: NowMs = wall_clock_ms,
        fallback_interval_ms: int = 3600 * 1000,
        compact_log_bytes: int = 4 * 1024 * 1024,
        max_concurrency: int = 64,
    ) -> None:
        self.storage = storage
        self.fire = fire
        self.now_ms = now_ms
        self.fallback_interval_ms = fallback_interval_ms
        self.compact_log_bytes = compact_log_bytes
        self.journal = Journal(storage, "scheduler")
        self.alarms: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._retries: dict[str, int] = {}
        self._running: set[str] = set()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._wakeup = asyncio.Event()
        self._compacting = asyncio.Lock()
        self._etag: str | None = None
        self.fired = 0
        self.failures = 0
        self.lags_ms: list[int] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        replay = await self.journal.open()
        found = await get_if_any(self.storage, SNAPSHOT_KEY)
        if found is not None:
            data, self._etag = found
            for user_id, due in codec.decode("alarms", data, SNAPSHOT_KEY)["alarms"]:
                self._set(user_id, due)
        for _position, records in replay:
            for op, user_id, due in records:
                if op == "set":
                    self._set(user_id, due)
                else:
                    self.alarms.pop(user_id, None)
        await self._write_snapshot()
        await self.journal.start()

    async def stop(self) -> None:
        await self.journal.close()

    # -- the alarm API ---------------------------------------------------------------------

    # Each change is logged and made in memory with no await in between, so a compaction can
    # never snapshot memory without a change whose log segment it then deletes. A change whose
    # commit fails stays in memory: an alarm that fires once too often is harmless.

    async def set_alarm(self, user_id: str, due_ms: int) -> None:
        committed = self.journal.append(["set", user_id, due_ms])
        self._set(user_id, due_ms)
        await committed

    async def ensure_alarms(self, requests: dict[str, int]) -> int:
        """Arm each user's alarm unless one is pending already; return how many were armed."""
        fresh = {u: due for u, due in requests.items() if u not in self.alarms}
        if not fresh:
            return 0
        waits = [self.journal.append(["set", u, due]) for u, due in fresh.items()]
        for user_id, due in fresh.items():
            self._set(user_id, due)
        await asyncio.gather(*waits)
        return len(fresh)

    def get_alarm(self, user_id: str) -> int | None:
        return self.alarms.get(user_id)

    async def delete_alarm(self, user_id: str) -> None:
        committed = self.journal.append(["del", user_id, 0])
        self.alarms.pop(user_id, None)
        self._retries.pop(user_id, None)
        await committed

    async def erase(self, user_id: str) -> None:
        """Delete the user's alarm and compact, so that no stored object names them any more
        (the log still holds their earlier alarms until a compaction)."""
        await self.delete_alarm(user_id)
        await self.compact()

    def pending(self) -> int:
        return len(self.alarms)

    def next_due(self) -> int | None:
        self._drop_stale_heads()
        return self._heap[0][0] if self._heap else None

    def _set(self, user_id: str, due_ms: int) -> None:
        self.alarms[user_id] = due_ms
        heapq.heappush(self._heap, (due_ms, user_id))
        self._wakeup.set()

    def _drop_stale_heads(self) -> None:
        heap = self._heap
        while heap and self.alarms.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

    # -- firing ----------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Fire every alarm due now; wait for them; return how many were started."""
        now = self.now_ms()
        started: list[asyncio.Task[None]] = []
        while True:
            self._drop_stale_heads()
            if not self._heap or self._heap[0][0] > now:
                break
            due, user_id = heapq.heappop(self._heap)
            if user_id in self._running:
                continue
            self._running.add(user_id)
            self.lags_ms.append(max(0, now - due))
            started.append(asyncio.create_task(self._fire_one(user_id, due)))
        if len(self.lags_ms) > 100_000:
            del self.lags_ms[:50_000]
        if started:
            await asyncio.gather(*started)
        await self._maybe_compact()
        return len(started)

    async def _fire_one(self, user_id: str, due: int) -> None:
        try:
            async with self._semaphore:
                try:
                    next_due = await self.fire(user_id)
                except Exception as exc:
                    self.failures += 1
                    attempt = self._retries.get(user_id, 0) + 1
                    if attempt > MAX_RETRIES:
                        log.warning("alarm for %s failed %d times: %s", user_id, attempt, exc)
                        self._retries.pop(user_id, None)
                        retry_at = self.now_ms() + self.fallback_interval_ms
                    else:
                        self._retries[user_id] = attempt
                        retry_at = self.now_ms() + RETRY_BASE_MS * 2 ** (attempt - 1)
                    # Retries stay in memory; the stored due time makes a restart fire again.
                    if self.alarms.get(user_id) == due:
                        self.alarms[user_id] = retry_at
                        heapq.heappush(self._heap, (retry_at, user_id))
                    return
                self._retries.pop(user_id, None)
                self.fired += 1
                if self.alarms.get(user_id) != due:
                    return  # set again while it ran: the newer alarm stands
                if next_due is None:
                    await self.delete_alarm(user_id)
                else:
                    await self.set_alarm(user_id, next_due)
        except Exception as exc:  # storage trouble while re-arming: retry from memory
            log.warning("re-arming the alarm of %s failed: %s", user_id, exc)
            heapq.heappush(self._heap, (self.now_ms() + RETRY_BASE_MS, user_id))
        finally:
            self._running.discard(user_id)

    async def run(self, max_wait_s: float = 1.0) -> None:
        """Fire alarms as they fall due, until cancelled."""
        while True:
            try:
                await self.fire_due()
            except Fenced:
                raise
            except Exception as exc:
                log.warning("firing alarms failed: %s", exc)
            next_due = self.next_due()
            wait_s = max_wait_s
            if next_due is not None:
                wait_s = min(max_wait_s, max(0.0, (next_due - self.now_ms()) / 1000))
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(wait_s, 0.01))

    # -- compaction ------------------------------------------------------------------------

    async def _maybe_compact(self) -> None:
        if self.journal.bytes_since_truncate >= self.compact_log_bytes:
            await self.compact()

    async def compact(self) -> None:
        # One at a time: two snapshot writes from the same ETag would take each other for a
        # newer scheduler.
        async with self._compacting:
            upto = await self.journal.rotate()  # what commits meanwhile is kept, not copied
            await self._write_snapshot()
            await self.journal.truncate(upto)

    async def _write_snapshot(self) -> None:
        data = codec.encode("alarms", {"alarms": list(self.alarms.items())})
        try:
            if self._etag is None:
                self._etag = await self.storage.put(SNAPSHOT_KEY, data, if_absent=True)
            else:
                self._etag = await self.storage.put(SNAPSHOT_KEY, data, if_match=self._etag)
        except (ObjectExists, PreconditionFailed):
            raise Fenced("the alarm snapshot was replaced by another scheduler") from None

    def stats(self) -> dict[str, Any]:
        lags = sorted(self.lags_ms[-10_000:])
        p99 = lags[int(len(lags) * 0.99)] if lags else 0
        return {
            "pendingAlarms": len(self.alarms),
            "fired": self.fired,
            "failures": self.failures,
            "fireLagP99Ms": p99,
            "epoch": self.journal.epoch,
        }
