"""Alarms: one per user, like Durable Objects' setAlarm / getAlarm / deleteAlarm.

`AlarmScheduler` is the logic of the scheduler actor with Ray left out. Alarms live in a dict
(user -> due time) with a heap of (due, user) beside it, so a million pending alarms cost memory
and a wake-up per due alarm, not a scan. Changes are logged to a `Journal` (group-committed and
fenced like a host's) and compacted into a snapshot, so alarms survive restarts of the scheduler
and of the whole cluster.

Firing is at least once: an alarm stays stored until the user's `alarm()` has run; a failure is
retried with exponential backoff (2 s, doubling, up to 6 retries, as Durable Objects do), after
which the alarm falls back to its normal interval rather than being dropped.

Each due alarm is fired as a task of its own, at most `max_in_flight` at once, and the runner
never waits for them. A call that has not answered within `fire_timeout_s` counts as failed
(retried as above) and stops taking a place among those in flight; it is not cancelled, and the
user's alarm is not fired again until it has ended, so a user's `alarm()` never runs twice at
once on the scheduler's account. While a call to a host (`group` of the user; by default each
user is a group of their own) is overdue, no other call goes to that host: its users' due
alarms wait `fire_timeout_s` and are tried again, so a hung host neither fills the places in
flight nor piles up calls, and delays only its own users' alarms.

A scheduler that a newer incarnation has fenced (found by a write of its own being refused)
starts no more calls: `run` raises `Fenced`, rather than fire each alarm beside the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tracker import codec
from tracker.clock import NowMs, wall_clock_ms
from tracker.errors import Fenced, StorageUnavailable
from tracker.journal import Journal
from tracker.storage import ObjectExists, PreconditionFailed, Storage, get_if_any

log = logging.getLogger(__name__)

Fire = Callable[[str], Awaitable[int | None]]
Group = Callable[[str], str]

RETRY_BASE_MS = 2000
MAX_RETRIES = 6
SNAPSHOT_KEY = "scheduler/snapshot"


class AlarmScheduler:
    """Durable per-user alarms: `run` calls the user's alarm for each one as it falls due
    (`fire_due` fires those due now and waits for them, for tests and tools)."""

    def __init__(
        self,
        storage: Storage,
        fire: Fire,
        *,
        now_ms: NowMs = wall_clock_ms,
        fallback_interval_ms: int = 3600 * 1000,
        compact_log_bytes: int = 4 * 1024 * 1024,
        max_in_flight: int = 64,
        fire_timeout_s: float = 30.0,
        group: Group = lambda user_id: user_id,
    ) -> None:
        self.storage = storage
        self.fire = fire
        self.now_ms = now_ms
        self.fallback_interval_ms = fallback_interval_ms
        self.compact_log_bytes = compact_log_bytes
        self.max_in_flight = max_in_flight
        self.fire_timeout_s = fire_timeout_s
        self.group = group
        self.journal = Journal(storage, "scheduler")
        self.alarms: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._retries: dict[str, int] = {}
        # Users whose `alarm()` call has not ended (answered, failed, or given up on but still
        # running), and those whose alarm fell due meanwhile: fired once the call ends.
        self._running: dict[str, int] = {}  # user -> the due time being fired
        self._deferred: set[str] = set()
        # Groups (hosts) with calls overdue, and how many: none of their alarms fire meanwhile.
        self._stalled: dict[str, int] = {}
        # Requests of `ensure_alarms` that came while the user's alarm was firing: honoured if
        # the firing ends the alarm.
        self._requested: dict[str, int] = {}
        # Users whose latest alarm change is not known to be stored: the number of their
        # changes whose commit has not answered, kept (at 0) when the latest one failed.
        self._unsure: dict[str, int] = {}
        self._firing: set[asyncio.Task[Any]] = set()  # the calls holding a place in flight
        self._overdue: set[asyncio.Task[Any]] = set()  # timed out, still running
        self._freed = asyncio.Event()  # set as a place in flight frees
        self._wakeup = asyncio.Event()
        self._wake_by: int | None = None  # while `run` sleeps: when it wakes by itself
        self._needs_room = False  # `run` sleeps until a place in flight frees
        self._compacting = asyncio.Lock()
        self._etag: str | None = None  # the snapshot's, as this scheduler last wrote or read it
        self._etag_unknown = False  # a write of it failed: it may have landed all the same
        self.fired = 0
        self.failures = 0
        self.lags_ms: list[int] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        replay = await self.journal.open()
        found = await get_if_any(self.storage, SNAPSHOT_KEY)
        self._etag, self._etag_unknown = None, False
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
    # commit fails stays in memory (an alarm that fires once too often is harmless), and
    # `ensure_alarms` logs it again when asked for that user's alarm.

    async def set_alarm(self, user_id: str, due_ms: int) -> None:
        await self._log_set(user_id, due_ms)

    async def ensure_alarms(self, requests: dict[str, int]) -> int:
        """Arm each user's alarm unless one is pending already; return how many were armed.

        A pending alarm whose change is not known to be stored (its commit failed, or has not
        answered yet) is logged again, so that a request answered here never rests on a
        commit that fails. A user whose alarm is firing still has it pending, but the firing
        may end it (their `alarm()` found nothing left, just before this request's activity):
        their request is kept, and armed then."""
        self._check_not_fenced()  # its pending alarms no longer fire: none answers a request
        fresh: dict[str, int] = {}
        for user_id, due in requests.items():
            pending = self.alarms.get(user_id)
            if pending is None:
                fresh[user_id] = due
                continue
            if user_id in self._unsure:
                fresh[user_id] = pending
            if user_id in self._running:
                self._requested.setdefault(user_id, due)
        if not fresh:
            return 0
        await asyncio.gather(*self._log_sets(fresh))
        return len(fresh)

    def get_alarm(self, user_id: str) -> int | None:
        return self.alarms.get(user_id)

    async def delete_alarm(self, user_id: str) -> None:
        await self._log_delete(user_id)

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

    def _log_set(self, user_id: str, due_ms: int) -> asyncio.Future[Any]:
        return self._log_sets({user_id: due_ms})[0]

    def _log_sets(self, alarms: dict[str, int]) -> list[asyncio.Future[Any]]:
        committed = self._log([["set", user_id, due] for user_id, due in alarms.items()])
        for user_id, due in alarms.items():
            self._set(user_id, due)
        return committed

    def _log_delete(self, user_id: str) -> asyncio.Future[Any]:
        committed = self._log([["del", user_id, 0]])[0]
        self.alarms.pop(user_id, None)
        self._retries.pop(user_id, None)
        self._requested.pop(user_id, None)
        return committed

    def _log(self, records: list[list[Any]]) -> list[asyncio.Future[Any]]:
        """Append changes of users' alarms, and count each user's among those not stored yet.

        Appended with no await in between, the records go into one commit: one pair of hooks
        answers for them all (a pair per record made arming 100,000 users 2-3 times as
        costly, mostly in garbage collection)."""
        users = [record[1] for record in records]
        committed = [self.journal.append(record) for record in records[:-1]]
        committed.append(
            self.journal.append(
                records[-1],
                lambda _position: self._commit_answered(users, stored=True),
                lambda: self._commit_answered(users, stored=False),
            )
        )
        unsure = self._unsure
        for user_id in users:
            unsure[user_id] = unsure.get(user_id, 0) + 1
        return committed

    def _commit_answered(self, users: list[str], *, stored: bool) -> None:
        # Commits answer in the order they were appended: the last answer for a user tells
        # whether their latest change is stored.
        unsure = self._unsure
        for user_id in users:
            left = unsure[user_id] - 1
            if left or not stored:
                unsure[user_id] = left
            else:
                del unsure[user_id]

    def _set(self, user_id: str, due_ms: int) -> None:
        self.alarms[user_id] = due_ms
        self._push(due_ms, user_id)

    def _push(self, due_ms: int, user_id: str) -> None:
        heapq.heappush(self._heap, (due_ms, user_id))
        # Only an alarm due before `run` wakes anyway wakes it: a re-armed alarm, due an hour
        # on, costs the runner nothing.
        if self._wake_by is not None and due_ms < self._wake_by:
            self._wakeup.set()

    def _drop_stale_heads(self) -> None:
        heap = self._heap
        while heap and self.alarms.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

    # -- firing ----------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Fire every alarm due now and wait until each call has ended (its change logged) or
        timed out; return how many were started. (`run` starts calls the same way, without
        waiting for them.)"""
        now = self.now_ms()
        count = 0
        waiting: list[asyncio.Task[Any]] = []
        while True:
            started, full = self._start_due(now)
            count += len(started)
            waiting = [task for task in waiting if task in self._firing] + started
            if not waiting and not full:
                break
            self._freed.clear()
            await self._freed.wait()
        await self._maybe_compact()
        return count

    def _start_due(self, now: int) -> tuple[list[asyncio.Task[Any]], bool]:
        """Start a call for each alarm due at `now`, as places in flight allow; return the
        calls' tasks, and whether due alarms are left waiting for a place."""
        self._check_not_fenced()
        started: list[asyncio.Task[Any]] = []
        heap = self._heap
        full = False
        while True:
            self._drop_stale_heads()
            if not heap or heap[0][0] > now:
                break
            if len(self._firing) >= self.max_in_flight:
                full = True
                break
            due, user_id = heapq.heappop(heap)
            running = self._running.get(user_id)
            if running is not None:
                if running != due:  # a duplicate of the alarm being fired goes; another waits
                    self._deferred.add(user_id)
                continue
            if self._stalled and self.group(user_id) in self._stalled:
                self._reschedule(user_id, due, now + int(self.fire_timeout_s * 1000))
                continue
            self._running[user_id] = due
            self.lags_ms.append(max(0, now - due))
            task = asyncio.create_task(self._fire_one(user_id, due))
            self._firing.add(task)
            started.append(task)
        if len(self.lags_ms) > 100_000:
            del self.lags_ms[:50_000]
        return started, full

    async def _fire_one(self, user_id: str, due: int) -> None:
        task = asyncio.current_task()
        assert task is not None  # run as a task by `_start_due`
        # A timer rather than a task per call to wait with a timeout: this is the hot path.
        timer = asyncio.get_running_loop().call_later(
            self.fire_timeout_s, self._give_up, task, user_id, due
        )
        ended = False
        try:
            try:
                answer: int | Exception | None = await self.fire(user_id)
            except Exception as exc:
                answer = exc
            timer.cancel()
            # Given up on at the timeout, the call's retry is set already; else its answer
            # is applied before the user's alarm may fire again.
            committed = self._settle(user_id, due, answer) if task in self._firing else None
            ended = True
            self._call_ended(user_id)
            if committed is not None:
                await committed
        except Exception as exc:  # the change stands in memory; a restart fires again
            log.warning("re-arming the alarm of %s failed: %s", user_id, exc)
        finally:
            timer.cancel()
            if not ended:
                self._call_ended(user_id)
            if self.journal.fenced:
                self._wakeup.set()  # so that `run` stops at once
            if task in self._firing:
                self._firing.discard(task)
                self._place_freed()
            else:
                self._overdue.discard(task)
                group = self.group(user_id)
                left = self._stalled.pop(group, 1) - 1
                if left:
                    self._stalled[group] = left

    def _give_up(self, task: asyncio.Task[Any], user_id: str, due: int) -> None:
        """A call's timeout: it counts as failed and frees its place, but is not cancelled (a
        host may be busy rather than gone); the user's alarm fires again once it has ended."""
        self._firing.discard(task)
        self._overdue.add(task)
        group = self.group(user_id)
        self._stalled[group] = self._stalled.get(group, 0) + 1
        self._failed(user_id, due, f"no answer within {self.fire_timeout_s:g} s")
        self._place_freed()

    def _place_freed(self) -> None:
        self._freed.set()
        if self._needs_room:
            self._needs_room = False
            self._wakeup.set()

    def _settle(
        self, user_id: str, due: int, answer: int | Exception | None
    ) -> asyncio.Future[Any] | None:
        """Apply a call's answer in memory; return the log commit it needs, if any."""
        try:
            return self._answered(user_id, due, answer)
        except Exception as exc:  # the log refused the change: retry from memory
            if self.journal.fenced:
                return None  # a newer scheduler fires it: no retry here
            log.warning("re-arming the alarm of %s failed: %s", user_id, exc)
            self._reschedule(user_id, due, self.now_ms() + RETRY_BASE_MS)
            return None

    def _answered(
        self, user_id: str, due: int, answer: int | Exception | None
    ) -> asyncio.Future[Any] | None:
        requested = self._requested.pop(user_id, None)
        if isinstance(answer, Exception):
            self._failed(user_id, due, answer)
            return None
        self._retries.pop(user_id, None)
        self.fired += 1
        if self.alarms.get(user_id) != due:
            return None  # set again (or deleted) while it ran: that change stands
        next_due = answer if answer is not None else requested
        if next_due is None:
            return self._log_delete(user_id)
        return self._log_set(user_id, next_due)

    def _failed(self, user_id: str, due: int, error: object) -> None:
        self.failures += 1
        attempt = self._retries.get(user_id, 0) + 1
        if attempt > MAX_RETRIES:
            log.warning("alarm for %s failed %d times: %s", user_id, attempt, error)
            self._retries.pop(user_id, None)
            retry_at = self.now_ms() + self.fallback_interval_ms
        else:
            self._retries[user_id] = attempt
            retry_at = self.now_ms() + RETRY_BASE_MS * 2 ** (attempt - 1)
        # Retries stay in memory; the stored due time makes a restart fire again.
        self._reschedule(user_id, due, retry_at)

    def _check_not_fenced(self) -> None:
        if self.journal.fenced:
            raise Fenced(f"journal {self.journal.name}: a newer scheduler owns the alarms")

    def _reschedule(self, user_id: str, due: int, at: int) -> None:
        if self.alarms.get(user_id) == due:
            self.alarms[user_id] = at
            self._push(at, user_id)

    def _call_ended(self, user_id: str) -> None:
        self._running.pop(user_id, None)
        if user_id in self._deferred:
            self._deferred.discard(user_id)
            due = self.alarms.get(user_id)
            if due is not None:
                self._push(due, user_id)

    async def run(self, max_wait_s: float = 1.0) -> None:
        """Fire alarms as they fall due, until cancelled: start their calls, as places in
        flight allow, and leave them running. Raises `Fenced` once a newer scheduler has
        claimed the journal (found by a write of this one), rather than fire alongside it."""
        while True:
            self._wakeup.clear()
            try:
                _, self._needs_room = self._start_due(self.now_ms())
                await self._maybe_compact()
            except Fenced:
                raise
            except Exception as exc:
                log.warning("firing alarms failed: %s", exc)
            wait_s = max_wait_s
            if not self._needs_room:
                next_due = self.next_due()
                if next_due is not None:
                    wait_s = min(max_wait_s, max(0.0, (next_due - self.now_ms()) / 1000))
                self._wake_by = self.now_ms() + int(wait_s * 1000)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=max(wait_s, 0.01))
            finally:
                self._wake_by = None
                self._needs_room = False

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
        """Replace the snapshot if it is still the one this scheduler last wrote or read.

        A refusal means fencing only once the journal confirms a newer incarnation: it is
        also how a write of this scheduler's own that landed unanswered shows (a timeout, a
        client retry refused because its first attempt had landed, a folder sync failing
        after the rename). The ETag is then read again, and the write tried once more."""
        data = codec.encode("alarms", {"alarms": list(self.alarms.items())})
        for _ in range(2):
            if self._etag_unknown:
                await self._read_etag()
            self._etag_unknown = True  # until the write answers
            try:
                if self._etag is None:
                    self._etag = await self.storage.put(SNAPSHOT_KEY, data, if_absent=True)
                else:
                    self._etag = await self.storage.put(SNAPSHOT_KEY, data, if_match=self._etag)
            except (ObjectExists, PreconditionFailed):
                continue
            self._etag_unknown = False
            return
        await self.journal.check_fence()
        raise StorageUnavailable(
            "the alarm snapshot changed twice as it was written; retried later"
        )

    async def _read_etag(self) -> None:
        found = await get_if_any(self.storage, SNAPSHOT_KEY)
        # Checked after the read: a newer scheduler claims its epoch before it writes the
        # snapshot, so an ETag of its snapshot is never taken for one of this scheduler's.
        await self.journal.check_fence()
        self._etag = None if found is None else found[1]
        self._etag_unknown = False

    def stats(self) -> dict[str, Any]:
        lags = sorted(self.lags_ms[-10_000:])
        p99 = lags[int(len(lags) * 0.99)] if lags else 0
        return {
            "pendingAlarms": len(self.alarms),
            "fired": self.fired,
            "failures": self.failures,
            "fireLagP99Ms": p99,
            "overdueCalls": len(self._overdue),  # timed out, still running
            "stalledHosts": len(self._stalled),  # hosts with such a call: not called meanwhile
            "epoch": self.journal.epoch,
        }
