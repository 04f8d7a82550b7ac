"""`AlarmScheduler` without Ray: a fake fire function and an injected clock."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from support import eventually, run

from tracker.errors import Fenced, StorageUnavailable
from tracker.scheduler import MAX_RETRIES, RETRY_BASE_MS, SNAPSHOT_KEY, AlarmScheduler
from tracker.storage import ObjectInfo, PreconditionFailed, Storage, open_storage

T0 = 1_700_000_000_000
HOUR = 3600 * 1000


class Users:
    """The fake fire function: records each call; answers with a next due time, None, or an
    error, as the test sets per user. Calls for the users in `held` hang until `release` is
    set (a host that is slow, or hung)."""

    def __init__(self, clock: list[int]) -> None:
        self.clock = clock
        self.calls: list[tuple[str, int]] = []
        self.answers: dict[str, Any] = {}
        self.held: set[str] = set()
        self.release = asyncio.Event()

    async def fire(self, user_id: str) -> int | None:
        self.calls.append((user_id, self.clock[0]))
        if user_id in self.held:
            await self.release.wait()
        answer = self.answers.get(user_id, HOUR)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return None
        return int(self.clock[0] + answer)

    def fired(self) -> list[str]:
        return [user for user, _ in self.calls]


async def started(storage: Storage, clock: list[int], users: Users, **kw: Any) -> AlarmScheduler:
    scheduler = AlarmScheduler(
        storage, users.fire, now_ms=lambda: clock[0], fallback_interval_ms=HOUR, **kw
    )
    await scheduler.start()
    return scheduler


class Once:
    """A fault of `Faulty`: `error`, for the first write whose key starts with `prefix`."""

    def __init__(self, prefix: str, error: Exception) -> None:
        self.prefix = prefix
        self.error = error
        self.used = False

    def __call__(self, key: str) -> Exception | None:
        if self.used or not key.startswith(self.prefix):
            return None
        self.used = True
        return self.error


class Faulty:
    """A storage passing every call through, with faults a test can set: a write failing
    before it lands (`before`), or landing and then failing all the same (`after`: an answer
    lost); `hold` keeps writes waiting until `release` is set."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url
        self.before: Callable[[str], Exception | None] = lambda key: None
        self.after: Callable[[str], Exception | None] = lambda key: None
        self.hold: Callable[[str], bool] = lambda key: False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if self.hold(key):
            self.held.set()
            await self.release.wait()
        if (error := self.before(key)) is not None:
            raise error
        etag = await self.inner.put(key, data, **kwargs)
        if (error := self.after(key)) is not None:
            raise error
        return etag

    async def get(self, key: str) -> tuple[bytes, str]:
        return await self.inner.get(key)

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return await self.inner.list_objects(prefix)

    async def delete(self, keys: list[str]) -> None:
        await self.inner.delete(keys)


@pytest.fixture
def storage(file_storage: str) -> Storage:
    return open_storage(file_storage)


def test_only_due_alarms_fire(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        await scheduler.set_alarm("early", T0 + 1000)
        await scheduler.set_alarm("late", T0 + 5000)
        assert await scheduler.fire_due() == 0
        clock[0] = T0 + 999
        assert await scheduler.fire_due() == 0
        clock[0] = T0 + 1000
        assert await scheduler.fire_due() == 1
        assert users.fired() == ["early"]
        assert scheduler.get_alarm("early") == T0 + 1000 + HOUR  # re-armed from the answer
        assert scheduler.next_due() == T0 + 5000
        users.answers["late"] = None
        clock[0] = T0 + 10_000
        assert await scheduler.fire_due() == 1
        assert users.fired() == ["early", "late"]
        assert scheduler.get_alarm("late") is None  # nothing left to do: not re-armed
        assert await scheduler.fire_due() == 0
        assert scheduler.stats()["fired"] == 2

    run(scenario())


def test_set_get_and_delete(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        assert scheduler.get_alarm("u") is None
        await scheduler.set_alarm("u", T0 + 10)
        assert scheduler.get_alarm("u") == T0 + 10
        await scheduler.set_alarm("u", T0 + 20)  # one alarm per user: replaced
        assert scheduler.get_alarm("u") == T0 + 20
        assert scheduler.pending() == 1
        await scheduler.delete_alarm("u")
        assert scheduler.get_alarm("u") is None
        await scheduler.delete_alarm("never-set")
        clock[0] = T0 + 100
        assert await scheduler.fire_due() == 0
        assert users.calls == []

    run(scenario())


def test_ensure_alarms_arms_only_users_without_one(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        await scheduler.set_alarm("a", T0 + 5)
        assert await scheduler.ensure_alarms({"a": T0 + 999, "b": T0 + 7, "c": T0 + 8}) == 2
        assert scheduler.get_alarm("a") == T0 + 5
        assert scheduler.get_alarm("b") == T0 + 7
        assert await scheduler.ensure_alarms({"a": 1, "b": 1}) == 0
        assert scheduler.get_alarm("b") == T0 + 7

    run(scenario())


def test_a_failing_alarm_is_retried_with_doubling_backoff_then_falls_back_to_the_interval(
    storage: Storage,
) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        users.answers["u"] = StorageUnavailable("host down")
        await scheduler.set_alarm("u", T0)
        delays = []
        for _ in range(MAX_RETRIES + 2):
            before = len(users.calls)
            assert await scheduler.fire_due() == 1
            assert len(users.calls) == before + 1
            due = scheduler.get_alarm("u")
            assert due is not None
            delays.append(due - clock[0])
            clock[0] = due - 1
            assert await scheduler.fire_due() == 0  # not before it is due
            clock[0] = due
        assert delays == [2000, 4000, 8000, 16000, 32000, 64000, HOUR, 2000]
        assert RETRY_BASE_MS == 2000
        users.answers["u"] = 10 * HOUR
        assert await scheduler.fire_due() == 1
        assert scheduler.get_alarm("u") == clock[0] + 10 * HOUR
        assert scheduler.stats()["failures"] == MAX_RETRIES + 2

    run(scenario())


def test_an_alarm_set_again_while_it_fires_keeps_the_newer_time(storage: Storage) -> None:
    clock = [T0]
    release = asyncio.Event()

    async def scenario() -> None:
        async def slow_fire(user_id: str) -> int | None:
            await release.wait()
            return clock[0] + HOUR

        scheduler = AlarmScheduler(storage, slow_fire, now_ms=lambda: clock[0])
        await scheduler.start()
        await scheduler.set_alarm("u", T0)
        firing = asyncio.ensure_future(scheduler.fire_due())
        await asyncio.sleep(0.01)
        assert await scheduler.fire_due() == 0  # already running: not fired twice at once
        await scheduler.set_alarm("u", T0 + 42)
        release.set()
        assert await firing == 1
        assert scheduler.get_alarm("u") == T0 + 42

    run(scenario())


def test_a_hung_alarm_call_does_not_hold_up_other_users_alarms(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)
    users.held = {"hung"}

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        await scheduler.set_alarm("hung", T0)
        runner = asyncio.ensure_future(scheduler.run())
        await eventually(lambda: users.fired() == ["hung"])
        clock[0] = T0 + 200
        await scheduler.set_alarm("fast", T0 + 200)
        await eventually(lambda: scheduler.get_alarm("fast") == T0 + 200 + HOUR)
        assert scheduler.get_alarm("hung") == T0  # still out, still pending
        users.release.set()
        await eventually(lambda: scheduler.get_alarm("hung") == T0 + 200 + HOUR)
        assert users.fired() == ["hung", "fast"]
        assert scheduler.stats()["fireLagP99Ms"] == 0
        runner.cancel()

    run(scenario())


def test_an_alarm_call_that_times_out_is_retried_but_never_runs_twice_at_once(
    storage: Storage,
) -> None:
    clock = [T0]
    users = Users(clock)
    users.held = {"u"}  # its first call hangs until released; the second comes after

    async def scenario() -> None:
        scheduler = await started(storage, clock, users, fire_timeout_s=0.01)
        await scheduler.set_alarm("u", T0)
        assert await scheduler.fire_due() == 1  # returns at the timeout, the call still out
        assert scheduler.stats()["failures"] == 1
        assert scheduler.get_alarm("u") == T0 + RETRY_BASE_MS
        clock[0] = T0 + RETRY_BASE_MS
        assert await scheduler.fire_due() == 0  # due again, but its first call has not ended
        assert users.fired() == ["u"]
        users.release.set()
        await eventually(lambda: scheduler.next_due() == T0 + RETRY_BASE_MS)
        assert await scheduler.fire_due() == 1
        assert users.fired() == ["u", "u"]
        assert scheduler.get_alarm("u") == clock[0] + HOUR

    run(scenario())


def test_while_a_call_to_a_host_is_overdue_no_other_call_goes_to_that_host(
    storage: Storage,
) -> None:
    """A hung host's users wait (a timeout at a time) instead of each taking a place in
    flight and leaving one more call behind; other hosts' users are called as usual."""
    clock = [T0]
    users = Users(clock)
    users.held = {"hung/a"}

    async def scenario() -> None:
        scheduler = await started(
            storage, clock, users, fire_timeout_s=0.05, group=lambda user: user.split("/")[0]
        )
        await scheduler.set_alarm("hung/a", T0)
        assert await scheduler.fire_due() == 1  # returns at the timeout, the call still out
        assert scheduler.stats()["overdueCalls"] == 1
        for user in ("hung/b", "ok/c"):
            await scheduler.set_alarm(user, T0)
        assert await scheduler.fire_due() == 1
        assert users.fired() == ["hung/a", "ok/c"]
        assert scheduler.get_alarm("hung/b") == T0 + 50  # waits a timeout, then tried again
        assert scheduler.stats()["stalledHosts"] == 1
        users.release.set()
        await eventually(lambda: scheduler.stats()["overdueCalls"] == 0)
        assert scheduler.stats()["stalledHosts"] == 0
        clock[0] = T0 + 50
        assert await scheduler.fire_due() == 1
        assert users.fired() == ["hung/a", "ok/c", "hung/b"]
        assert scheduler.get_alarm("hung/b") == clock[0] + HOUR

    run(scenario())


def test_two_heap_entries_of_one_alarm_fire_it_once_and_leave_one(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        await scheduler.set_alarm("u", T0)
        await scheduler.set_alarm("u", T0)  # the same time again (a replayed log does this)
        assert await scheduler.fire_due() == 1
        assert users.fired() == ["u"]
        assert len(scheduler._heap) == 1  # no copy left to fire again, nor to keep forever

    run(scenario())


def test_no_more_alarm_calls_than_the_limit_run_at_once(storage: Storage) -> None:
    clock = [T0]
    running: list[str] = []
    most = 0

    async def fire(user_id: str) -> int | None:
        nonlocal most
        running.append(user_id)
        most = max(most, len(running))
        await asyncio.sleep(0)  # let the other due alarms try to start meanwhile
        running.remove(user_id)
        return clock[0] + HOUR

    async def scenario() -> None:
        scheduler = AlarmScheduler(storage, fire, now_ms=lambda: clock[0], max_in_flight=3)
        await scheduler.start()
        await scheduler.ensure_alarms({f"u{i}": T0 for i in range(10)})
        assert await scheduler.fire_due() == 10
        assert most == 3
        assert all(scheduler.get_alarm(f"u{i}") == T0 + HOUR for i in range(10))

    run(scenario())


def test_a_due_alarm_waiting_for_a_place_in_flight_fires_as_soon_as_one_frees(
    storage: Storage,
) -> None:
    clock = [T0]
    users = Users(clock)
    users.held = {"first"}

    async def scenario() -> None:
        scheduler = await started(storage, clock, users, max_in_flight=1)
        await scheduler.ensure_alarms({"first": T0, "second": T0 + 1})
        clock[0] = T0 + 1
        runner = asyncio.ensure_future(scheduler.run(max_wait_s=60))  # no wake-up by itself
        await eventually(lambda: users.fired() == ["first"])
        users.release.set()
        await eventually(lambda: scheduler.get_alarm("second") == T0 + 1 + HOUR)
        runner.cancel()

    run(scenario())


def test_an_alarm_requested_while_it_fires_is_armed_when_the_firing_ends_it(
    storage: Storage,
) -> None:
    clock = [T0]
    users = Users(clock)
    users.held = {"u"}
    users.answers["u"] = None  # the user had nothing left when their alarm looked

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        await scheduler.set_alarm("u", T0)
        firing = asyncio.ensure_future(scheduler.fire_due())
        await eventually(lambda: users.fired() == ["u"])
        # Meanwhile the user came back, and their host asks for an alarm.
        assert await scheduler.ensure_alarms({"u": T0 + HOUR}) == 0  # one is pending still
        users.release.set()
        assert await firing == 1
        assert scheduler.get_alarm("u") == T0 + HOUR
        again = await started(storage, clock, Users(clock))
        assert again.get_alarm("u") == T0 + HOUR  # logged, as any alarm

    run(scenario())


def test_alarms_survive_a_new_scheduler_on_the_same_storage(storage_url: str) -> None:
    storage = open_storage(storage_url)
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        first = await started(storage, clock, users)
        await first.ensure_alarms({f"user-{i}": T0 + i for i in range(50)})
        await first.set_alarm("late", T0 + HOUR)
        await first.delete_alarm("user-3")
        await first.compact()
        await first.set_alarm("after-compaction", T0 + 7)
        # No stop(): the first scheduler's process just dies.
        second = await started(storage, clock, users)
        assert second.pending() == 51
        assert second.get_alarm("user-3") is None
        assert second.get_alarm("user-7") == T0 + 7
        assert second.get_alarm("after-compaction") == T0 + 7
        assert second.get_alarm("late") == T0 + HOUR
        with pytest.raises(Fenced):
            await first.set_alarm("zombie", T0)
        clock[0] = T0 + 100
        assert await second.fire_due() == 50
        assert len(set(users.fired())) == 50
        third = await started(storage, clock, users)
        assert third.pending() == 51
        assert third.get_alarm("user-7") == T0 + 100 + HOUR
        assert third.get_alarm("zombie") is None

    run(scenario())


def test_a_retry_pending_in_memory_fires_again_after_a_restart(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        first = await started(storage, clock, users)
        users.answers["u"] = StorageUnavailable("host down")
        await first.set_alarm("u", T0)
        await first.fire_due()
        assert first.get_alarm("u") == T0 + 2000
        second = await started(storage, clock, users)
        users.answers["u"] = HOUR
        assert second.get_alarm("u") is not None
        assert await second.fire_due() == 1  # due at once: at least once, never lost
        assert users.fired() == ["u", "u"]

    run(scenario())


def test_alarm_changes_are_group_committed(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        scheduler = await started(storage, clock, users)
        await asyncio.gather(*(scheduler.set_alarm(f"u{i}", T0 + i) for i in range(200)))
        assert scheduler.journal.commits < 10

    run(scenario())


def test_an_alarm_set_as_the_log_is_compacted_is_not_lost(storage: Storage) -> None:
    """A compaction that runs between a set's commit and its caller resuming must still keep
    the alarm (the snapshot is written from memory, and the log segment is then deleted)."""
    clock = [T0]
    users = Users(clock)
    compactions: list[asyncio.Future[None]] = []

    class CompactDuringFenceCheck:
        def __init__(self, inner: Storage) -> None:
            self.inner = inner
            self.url = inner.url
            self.scheduler: AlarmScheduler | None = None

        async def get(self, key: str) -> tuple[bytes, str]:
            try:
                return await self.inner.get(key)
            finally:
                if "/epochs/" in key and self.scheduler is not None:
                    # Scheduled now, so it runs before the acknowledged caller resumes.
                    compactions.append(asyncio.ensure_future(self.scheduler.compact()))
                    self.scheduler = None

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            return await self.inner.put(key, data, **kwargs)

        async def list_objects(self, prefix: str) -> list[ObjectInfo]:
            return await self.inner.list_objects(prefix)

        async def delete(self, keys: list[str]) -> None:
            await self.inner.delete(keys)

    wrapped = CompactDuringFenceCheck(storage)

    async def scenario() -> None:
        scheduler = await started(wrapped, clock, users)
        wrapped.scheduler = scheduler
        await scheduler.set_alarm("u", T0 + 5)
        await asyncio.gather(*compactions)
        assert compactions
        again = await started(storage, clock, users)
        assert again.get_alarm("u") == T0 + 5

    run(scenario())


async def steps_taken(action: Callable[[], Awaitable[Any]]) -> int:
    """How many bytecode instructions `action` executes, awaited with nothing else to run: a
    measure of its work that load on the machine cannot change."""
    steps = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        frame.f_trace_opcodes = True
        steps += event == "opcode"
        return trace

    sys.settrace(trace)
    try:
        await action()
    finally:
        sys.settrace(None)
    return steps


def test_a_hundred_thousand_pending_alarms_cost_nothing_while_none_is_due(
    tmp_path: Path,
) -> None:
    """Checking for due alarms when none is due does the same work with 100,000 pending as
    with 10, and `run` then sleeps for its longest wait instead of polling."""
    clock = [T0]
    users = Users(clock)

    async def idle(count: int) -> tuple[AlarmScheduler, int]:
        """A scheduler with `count` alarms an hour away, and the steps a check then takes."""
        storage = open_storage(f"file://{tmp_path / str(count)}")
        scheduler = await started(storage, clock, users)
        await scheduler.ensure_alarms({f"user-{i}": T0 + HOUR + i for i in range(count)})
        assert await scheduler.fire_due() == 0  # compacting what was armed, if that is due
        return scheduler, await steps_taken(scheduler.fire_due)

    async def scenario() -> None:
        scheduler, steps = await idle(100_000)
        assert steps == (await idle(10))[1]
        passes = 0
        real_start_due = scheduler._start_due

        def counted_start_due(now: int) -> tuple[list[asyncio.Task[Any]], bool]:
            nonlocal passes
            passes += 1
            return real_start_due(now)

        scheduler._start_due = counted_start_due  # type: ignore[method-assign]
        runner = asyncio.ensure_future(scheduler.run(max_wait_s=60))
        await eventually(lambda: scheduler._wake_by == T0 + 60_000)
        for _ in range(100):  # turns of the event loop: a polling `run` would pass again
            await asyncio.sleep(0)
        runner.cancel()
        assert passes == 1
        clock[0] = T0 + HOUR + 99
        assert await scheduler.fire_due() == 100

    run(scenario())


@pytest.mark.parametrize(
    "answer",
    [
        StorageUnavailable("cannot write scheduler/snapshot: timed out"),
        PreconditionFailed("scheduler/snapshot changed since it was read"),  # a retry's answer
    ],
    ids=["answer-lost", "retry-refused"],
)
def test_a_snapshot_write_that_landed_but_failed_does_not_stop_the_alarms(
    storage: Storage, answer: Exception
) -> None:
    """Its ETag is unknown then: the next write must not take its own snapshot for a newer
    scheduler's, and stop firing."""
    clock = [T0]
    users = Users(clock)
    faulty = Faulty(storage)

    async def scenario() -> None:
        scheduler = await started(faulty, clock, users, compact_log_bytes=1)
        runner = asyncio.ensure_future(scheduler.run(max_wait_s=0.01))
        faulty.after = lost = Once(SNAPSHOT_KEY, answer)
        await scheduler.set_alarm("a", T0 + HOUR)  # a log this big is compacted at once
        await eventually(lambda: lost.used)
        await scheduler.set_alarm("b", T0)
        await eventually(lambda: users.fired() == ["b"])
        await eventually(lambda: not scheduler._firing)  # its re-arming committed
        assert not runner.done()
        runner.cancel()
        await scheduler.compact()
        again = await started(storage, clock, Users(clock))
        assert again.get_alarm("a") == T0 + HOUR
        assert again.get_alarm("b") == T0 + HOUR

    run(scenario())


def test_a_scheduler_whose_snapshot_a_newer_one_replaced_is_fenced(storage: Storage) -> None:
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        first = await started(storage, clock, users)
        await first.set_alarm("u", T0 + HOUR)
        await started(storage, clock, Users(clock))
        with pytest.raises(Fenced):
            await first.compact()

    run(scenario())


LOG = "journals/scheduler/log/"


def test_an_alarm_whose_commit_failed_is_logged_when_requested_again(storage: Storage) -> None:
    """The host asks again for a request that failed; the alarm is in memory, but must not
    be taken for stored (a restart would lose it, and the user's history never be trimmed)."""
    clock = [T0]
    users = Users(clock)
    faulty = Faulty(storage)

    async def scenario() -> None:
        scheduler = await started(faulty, clock, users)
        faulty.before = Once(LOG, StorageUnavailable("injected outage"))
        with pytest.raises(StorageUnavailable):
            await scheduler.ensure_alarms({"u": T0 + HOUR})
        assert await scheduler.ensure_alarms({"u": T0 + 2 * HOUR}) == 1
        assert await scheduler.ensure_alarms({"u": T0 + 2 * HOUR}) == 0  # stored now
        again = await started(storage, clock, Users(clock))
        assert again.get_alarm("u") == T0 + HOUR  # the one pending, not replaced

    run(scenario())


def test_a_request_made_while_an_alarm_commits_fails_with_that_commit(storage: Storage) -> None:
    """A host whose call timed out asks again while the first call's commit is in flight: the
    second answer must not rest on the first commit, which then fails."""
    clock = [T0]
    users = Users(clock)
    faulty = Faulty(storage)

    async def scenario() -> None:
        scheduler = await started(faulty, clock, users)
        faulty.hold = lambda key: key.startswith(LOG)
        faulty.before = Once(LOG, StorageUnavailable("injected outage"))
        first = asyncio.ensure_future(scheduler.ensure_alarms({"u": T0 + HOUR}))
        await faulty.held.wait()
        second = asyncio.ensure_future(scheduler.ensure_alarms({"u": T0 + HOUR}))
        faulty.release.set()
        with pytest.raises(StorageUnavailable):
            await first
        assert await second == 1  # logged again, in a commit of its own
        again = await started(storage, clock, Users(clock))
        assert again.get_alarm("u") == T0 + HOUR

    run(scenario())


def test_a_fenced_scheduler_stops_firing_alarms(storage: Storage) -> None:
    """An old incarnation still running must not call users' `alarm()` beside the new one:
    once a write of its own finds it fenced, `run` raises `Fenced`."""
    clock = [T0]
    users = Users(clock)

    async def scenario() -> None:
        old = await started(storage, clock, users)
        await old.set_alarm("u", T0)
        await started(storage, clock, Users(clock))  # a newer incarnation claims the journal
        runner = asyncio.ensure_future(old.run(max_wait_s=0.01))
        with pytest.raises(Fenced):
            await asyncio.wait_for(runner, timeout=5)
        assert users.fired() == ["u"]  # its re-arming was the write that found it fenced
        clock[0] = T0 + RETRY_BASE_MS + HOUR
        with pytest.raises(Fenced):
            await old.fire_due()
        with pytest.raises(Fenced):  # its pending alarms no longer fire: it answers none
            await old.ensure_alarms({"u": T0})
        assert users.fired() == ["u"]

    run(scenario())
