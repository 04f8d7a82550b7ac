"""`UserHost` without Ray: durability across incarnations, compaction, passivation, fencing,
erasure, export, alarms and retention, with an injected clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import holders, user_traces
from support import movement, run

from tracker import codec, shedding
from tracker.analytics import SiteStats
from tracker.analytics.totals import Totals
from tracker.drain import drain, orphaned_hosts
from tracker.errors import Fenced, InvalidMovement, StorageUnavailable, UnknownSession
from tracker.history import user_key
from tracker.host import LINGER_CALLS
from tracker.host_settings import HostSettings
from tracker.schema import movement_from_obj, movements_from_obj
from tracker.storage import FileStorage, ObjectInfo, ObjectMissing, Storage, open_storage
from tracker.user_host import UserHost
from tracker.user_tracker import Limits

MINUTE = 60_000
DAY = 24 * 60 * MINUTE


class Clock:
    """Injected time, starting at the real time (storage stamps objects with the real time)."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


class Wrapped:
    """A storage passing every call through, with hooks a test can set: count the bytes
    written, fail writes, or hold writes until released."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url
        self.written = 0
        self.fail: Callable[[str], bool] = lambda key: False
        self.fail_read: Callable[[str], bool] = lambda key: False
        self.hold: Callable[[str], bool] = lambda key: False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if self.fail(key):
            raise StorageUnavailable(f"injected outage writing {key}")
        if self.hold(key):
            self.held.set()
            await self.release.wait()
            if self.fail(key):  # failing once released: a write that hung, then failed
                raise StorageUnavailable(f"injected outage writing {key}")
        etag = await self.inner.put(key, data, **kwargs)
        self.written += len(data)
        return etag

    async def get(self, key: str) -> tuple[bytes, str]:
        if self.fail_read(key):
            raise StorageUnavailable(f"injected outage reading {key}")
        return await self.inner.get(key)

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        if self.fail_read(prefix):
            raise StorageUnavailable(f"injected outage listing {prefix}")
        return await self.inner.list_objects(prefix)

    async def delete(self, keys: list[str]) -> None:
        await self.inner.delete(keys)

    async def delete_folder(self, prefix: str) -> int:
        return await self.inner.delete_folder(prefix)


def new_host(storage: Storage, clock: Clock, name: str = "host-0", **settings: Any) -> UserHost:
    limits = settings.pop("limits", Limits())
    return UserHost(name, storage, HostSettings(limits=limits, **settings), now_ms=clock)


async def started(storage: Storage, clock: Clock, **settings: Any) -> UserHost:
    host = new_host(storage, clock, **settings)
    await host.start()
    return host


async def movements_of(host: UserHost, user: str = "alice", session: str = "s1") -> list[Any]:
    return list((await host.get_session(user, session))["movements"])


async def everything(storage: Storage) -> dict[str, bytes]:
    return {i.key: (await storage.get(i.key))[0] for i in await storage.list_objects("")}


def scheduler_receiving(arrived: dict[str, int]) -> Callable[[dict[str, int]], Awaitable[None]]:
    """A scheduler's `ensure_alarms` for `UserHost.ship_alarm_requests`: the alarm requests
    it is sent land in `arrived`."""

    async def ensure_alarms(requests: dict[str, int]) -> None:
        arrived.update(requests)

    return ensure_alarms


@pytest.mark.parametrize("compacted", [False, True], ids=["log-only", "compacted"])
def test_acknowledged_events_survive_a_new_incarnation(storage: Storage, compacted: bool) -> None:
    clock = Clock()

    async def scenario() -> None:
        old = await started(storage, clock)
        await old.create_session("alice", "s1", {"userAgent": "pytest"})
        for i in range(5):
            assert await old.track("alice", movement(at=clock(), eventId=f"e{i}")) == 1
        if compacted:
            await old.compact(force=True)
        assert await old.track_many("alice", [movement(at=clock()) for _ in range(3)]) == 3
        assert await old.track_many("bob", [movement(at=clock(), user="bob")]) == 1
        before = await old.get_session("alice", "s1")
        # No stop(): the old incarnation just vanishes.
        new = await started(storage, clock)
        assert await new.get_session("alice", "s1") == before
        assert len(await movements_of(new, "bob")) == 1
        assert await new.track("alice", movement(at=clock(), eventId="e0")) == 0

    run(scenario())


def test_a_clean_stop_leaves_an_empty_log(file_storage: str) -> None:
    storage = open_storage(file_storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.track("alice", movement(at=clock()))
        await host.ship_alarm_requests(scheduler_receiving({}))
        await host.stop()
        segments = await storage.list_objects("journals/hosts/host-0/log")
        assert [i.key.rsplit("-", 1)[1] for i in segments] == ["000000000000"]
        again = await started(storage, clock)
        assert len(await movements_of(again)) == 1

    run(scenario())


def test_passivation_drops_idle_users_and_activation_restores_them_exactly(
    storage: Storage,
) -> None:
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock, passivate_after_ms=MINUTE)
        for user in ("alice", "bob"):
            await host.create_session(user, "s1", {"userAgent": user})
            await host.track_many(
                user, [movement(user, at=clock(), eventId=f"{user}{i}") for i in range(60)]
            )
        before = {user: await host.analytics(user) for user in ("alice", "bob")}
        clock.advance(30_000)
        await host.track("bob", movement("bob", at=clock()))
        assert await host.compact(force=True) == 0
        clock.advance(31_000)
        assert await host.compact(force=True) == 1
        assert await host.compact() == 0  # not due: no compaction runs, none is counted
        assert host.stats()["compactions"] == 2
        assert set(host.slots) == {"bob"}
        assert await host.analytics("alice") == before["alice"]
        assert "alice" in host.slots
        assert await host.track("alice", movement(at=clock(), eventId="alice3")) == 0

    run(scenario())


@pytest.mark.parametrize("max_movements", [1000, 5])
def test_a_batch_resent_after_its_session_ended_and_its_user_was_passivated_is_not_stored_again(
    storage: Storage, max_movements: int
) -> None:
    """tracker.js resends a batch it got no answer for during up to a day. The session has
    ended and left memory, and the user was passivated (and, later, the host restarted): the
    resend is answered as a duplicate, stored nowhere and counted nowhere. A small cap on a
    session's movements does not shrink that window."""
    clock = Clock()
    settings = HostSettings(
        limits=Limits(max_movements=max_movements, session_timeout_ms=30 * MINUTE),
        passivate_after_ms=MINUTE,
    )
    counted: list[str | None] = []

    def new(name: str = "host-0") -> UserHost:
        def on_track(user: str, session: str, movements: Any, now: int, known: bool) -> None:
            counted.extend(m.eventId for m in movements)

        return UserHost(name, storage, settings, now_ms=clock, on_track=on_track)

    async def stored_ids(host: UserHost) -> list[str]:
        lines = await host.export("alice")
        return sorted(line["eventId"] for line in lines if line["type"] == "movement")

    async def scenario() -> None:
        host = new()
        await host.start()
        batch = [movement(at=clock(), eventId=f"e{i}") for i in range(20)]
        assert await host.track_many("alice", batch) == 20
        later = [movement(at=clock(), eventId=f"later{i}") for i in range(20)]
        assert await host.track_many("alice", later) == 20
        clock.advance(60 * MINUTE)
        await host.alarm("alice")  # the session has ended: it leaves memory
        assert not host.slots["alice"].tracker.sessions
        await host.compact(force=True)
        clock.advance(2 * MINUTE)
        await host.compact(force=True)
        assert "alice" not in host.slots  # passivated
        expected = sorted(m["eventId"] for m in batch + later)
        assert await stored_ids(host) == expected
        await host.compact(force=True)
        clock.advance(20 * 60 * MINUTE)
        counted.clear()
        assert await host.track_many("alice", batch) == 0  # a duplicate, answered as such
        assert await host.track_many("alice", later[-3:]) == 0
        with pytest.raises(UnknownSession):
            await host.get_session("alice", "s1")
        await host.stop()
        again = new()  # a new incarnation: alice is activated from storage once more
        await again.start()
        assert await again.track_many("alice", batch[:7]) == 0
        assert counted == []
        assert await stored_ids(again) == expected

    run(scenario())


def test_concurrent_calls_for_one_user_lose_no_update(file_storage: str) -> None:
    storage = open_storage(file_storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        counts = await asyncio.gather(
            *(host.track("alice", movement(at=clock(), eventId=f"e{i}")) for i in range(200))
        )
        assert counts == [1] * 200
        assert len(await movements_of(host)) == 200
        assert host.journal.commits < 20
        again = await started(storage, clock)
        assert len(await movements_of(again)) == 200

    run(scenario())


def test_concurrent_first_calls_share_one_activation(file_storage: str) -> None:
    storage = open_storage(file_storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.track_many("alice", [movement(at=clock()) for _ in range(3)])
        await host.stop()
        again = await started(storage, clock)
        sessions = await asyncio.gather(*(again.get_session("alice", "s1") for _ in range(20)))
        assert all(len(s["movements"]) == 3 for s in sessions)

    run(scenario())


def test_bytes_written_per_event_stay_within_three_times_its_encoding(file_storage: str) -> None:
    """Every byte put to storage (log, history chunks, snapshots) over many events, compared
    with the events' own encoding. Traffic is shaped as the HTTP ingress sends it: batches
    (tracker.js sends its events in batches) of many users at once (which share commits)."""
    storage = Wrapped(open_storage(file_storage))
    clock = Clock()
    users, rounds, batch = 40, 24, 10

    async def scenario() -> int:
        host = await started(storage, clock)
        encoded = 0
        for r in range(rounds):
            calls = []
            for u in range(users):
                raws = [
                    movement(
                        f"user-{u}", at=clock(), eventId=f"{u}-{r}-{i}", data={"path": f"/{i}"}
                    )
                    for i in range(batch)
                ]
                encoded += sum(codec.encoded_size(movement_from_obj(m, clock())) for m in raws)
                calls.append(host.track_many(f"user-{u}", raws))
            await asyncio.gather(*calls)
            clock.advance(1000)
            if r % 8 == 7:
                await host.compact(force=True)
        await host.stop()
        return encoded

    encoded = run(scenario())
    ratio = storage.written / encoded
    events = users * rounds * batch
    print(
        f"bytes written per event: {storage.written / events:.0f}; "
        f"encoded: {encoded / events:.0f}; ratio {ratio:.2f}"
    )
    assert ratio <= 3.0


def test_a_failed_commit_raises_and_leaves_no_trace_of_the_refused_event(
    storage: Storage,
) -> None:
    wrapped = Wrapped(storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="ok-1"))
        await host.compact(force=True)
        await host.track("alice", movement(at=clock(), eventId="ok-2"))
        wrapped.fail = lambda key: "/log/" in key
        with pytest.raises(StorageUnavailable) as info:
            await host.track("alice", movement(at=clock(), eventId="refused"))
        assert not isinstance(info.value, Fenced)
        wrapped.fail = lambda key: False
        ids = [m["eventId"] for m in await movements_of(host)]
        assert ids == ["ok-1", "ok-2"]
        assert await host.track("alice", movement(at=clock(), eventId="refused")) == 1
        again = await started(storage, clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["ok-1", "ok-2", "refused"]

    run(scenario())


def test_a_retry_of_an_event_whose_commit_then_fails_is_refused_not_acknowledged(
    storage: Storage,
) -> None:
    """The retry finds the event in the user's memory (its first try is committing) and
    waits for that commit: when it fails, the retry must fail too, or the event is answered
    as stored and is not."""
    wrapped = Wrapped(storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="e0"))
        wrapped.hold = lambda key: "/log/" in key
        first = asyncio.create_task(host.track("alice", movement(at=clock(), eventId="e1")))
        await wrapped.held.wait()
        retry = asyncio.create_task(host.track("alice", movement(at=clock(), eventId="e1")))
        await asyncio.sleep(0)  # the retry runs until it waits for the first try's commit
        assert host.calls_in_flight == 2 and not retry.done()
        wrapped.fail = lambda key: "/log/" in key
        wrapped.release.set()
        with pytest.raises(StorageUnavailable):
            await first
        with pytest.raises(StorageUnavailable):
            await retry
        wrapped.fail = lambda key: False
        wrapped.hold = lambda key: False
        assert await host.track("alice", movement(at=clock(), eventId="e1")) == 1
        again = await started(storage, clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["e0", "e1"]

    run(scenario())


def test_a_read_waiting_for_a_commit_that_fails_shows_only_what_was_stored(
    storage: Storage,
) -> None:
    wrapped = Wrapped(storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="ok"))
        wrapped.hold = lambda key: "/log/" in key
        refused = asyncio.create_task(host.track("alice", movement(at=clock(), eventId="refused")))
        await wrapped.held.wait()
        session = asyncio.create_task(host.get_session("alice", "s1"))
        analytics = asyncio.create_task(host.analytics("alice"))
        await asyncio.sleep(0)  # both reads run until they wait for the commit in flight
        assert not session.done() and not analytics.done()
        wrapped.fail = lambda key: "/log/" in key
        wrapped.release.set()
        with pytest.raises(StorageUnavailable):
            await refused
        assert [m["eventId"] for m in (await session)["movements"]] == ["ok"]
        [listed] = (await analytics)["userSessions"]
        assert [m["eventId"] for m in listed["movements"]] == ["ok"]

    run(scenario())


def test_a_duplicate_retry_during_a_compaction_conflict_is_acknowledged(
    storage: Storage,
) -> None:
    """Another host wrote the user's next chunk, so the compaction catches up and marks the
    user's memory stale while a retry waits for its first try's commit: that commit lands,
    so the retry (every event already stored) is answered, not refused as unavailable."""
    wrapped = Wrapped(storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="e0"))
        # Shipped: the compaction, with nothing to log, then runs while a commit is held.
        await host.ship_alarm_requests(scheduler_receiving({}))
        other = await started(storage, clock, name="host-1")
        await other.track("alice", movement(at=clock(), eventId="elsewhere"))
        await other.compact(force=True)  # takes alice's chunk 1
        wrapped.hold = lambda key: "/log/" in key
        first = asyncio.create_task(host.track("alice", movement(at=clock(), eventId="e1")))
        await wrapped.held.wait()
        retry = asyncio.create_task(host.track("alice", movement(at=clock(), eventId="e1")))
        await asyncio.sleep(0)  # the retry runs until it waits for the first try's commit
        assert not retry.done()
        await host.compact(force=True)
        assert host.slots["alice"].stale  # the conflict was met while the retry waited
        wrapped.release.set()
        assert await first == 1
        assert await retry == 0  # a duplicate: stored by the first try
        ids = sorted(m["eventId"] for m in await movements_of(host))
        assert ids == ["e0", "e1", "elsewhere"]

    run(scenario())


def test_an_event_acknowledged_while_its_user_reloads_is_kept(file_storage: str) -> None:
    """A failed commit makes the user reload; a later commit in flight must survive that."""
    wrapped = Wrapped(open_storage(file_storage))
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="ok-1"))
        log_writes: list[str] = []

        def fail(key: str) -> bool:  # the next segment written fails...
            if "/log/" in key:
                log_writes.append(key)
            return log_writes[:1] == [key]

        wrapped.fail = fail
        wrapped.hold = lambda key: log_writes[1:2] == [key]  # ...and the one after is held
        refused = asyncio.ensure_future(
            host.track("alice", movement(at=clock(), eventId="refused"))
        )
        await asyncio.sleep(0)
        later = asyncio.ensure_future(host.track("alice", movement(at=clock(), eventId="later")))
        with pytest.raises(StorageUnavailable):
            await refused
        await wrapped.held.wait()
        reader = asyncio.ensure_future(host.get_session("alice", "s1"))
        await asyncio.sleep(0.05)
        wrapped.release.set()
        assert await later == 1
        assert [m["eventId"] for m in (await reader)["movements"]] == ["ok-1", "later"]
        assert [m["eventId"] for m in await movements_of(host)] == ["ok-1", "later"]
        await host.compact(force=True)
        again = await started(wrapped, clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["ok-1", "later"]

    run(scenario())


def test_a_user_whose_history_cannot_be_read_at_start_is_set_aside_and_not_the_host(
    storage: Storage,
) -> None:
    """Restarting, a host replays alice's and bob's log records and fails reading bob's
    history: it starts all the same, with bob set aside (his records carried in its log),
    and reads him again at his next call; alice's and bob's records (without eventIds, so
    not told apart by them) are each applied once."""
    wrapped = Wrapped(storage)
    clock = Clock()

    async def scenario() -> None:
        crashed = await started(storage, clock)
        await crashed.track("alice", movement(at=clock()))
        await crashed.track("bob", movement(at=clock(), user="bob"))
        # No stop: both events are in the log only.
        failures = [user_key("bob")]

        def once_for_bob(key: str) -> bool:
            if failures and key.startswith(failures[0]):
                failures.clear()
                return True
            return False

        wrapped.fail_read = once_for_bob
        host = new_host(wrapped, clock)
        await host.start()
        assert list(host.stats()["setAsideUsers"]) == [user_key("bob")]
        assert len(await movements_of(host)) == 1
        assert len(await movements_of(host, user="bob")) == 1
        await host.compact(force=True)
        assert host.stats()["setAside"] == 0
        await host.stop()
        again = await started(storage, clock)
        for user in ("alice", "bob"):
            assert len(await movements_of(again, user=user)) == 1
            lines = await again.export(user)
            assert len([x for x in lines if x["type"] == "movement"]) == 1

    run(scenario())


def test_a_stale_user_reloaded_while_a_compaction_writes_them_keeps_their_events(
    storage: Storage,
) -> None:
    """Alice's event is in the log; a later commit fails (her memory is reloaded before the
    next use); the reload lists her history just before a compaction's chunk with that
    event lands. The event must still be there, and its retry a duplicate."""

    class ListedBeforeWritten(Wrapped):
        """Holds the chunk write until the user's chunks are listed, and the listing's
        answer until the compaction took the written records off the stale slot."""

        armed = False
        stale: Any = None

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            if self.armed and "/chunks/" in key:
                await self.held.wait()
            return await super().put(key, data, **kwargs)

        async def list_objects(self, prefix: str) -> list[ObjectInfo]:
            found = await super().list_objects(prefix)
            if self.armed and prefix.endswith("/chunks"):
                self.held.set()
                deadline = time.monotonic() + 10
                while self.stale.committed:
                    assert time.monotonic() < deadline, "the compaction never landed"
                    await asyncio.sleep(0.001)
            return found

    clock = Clock()
    gated = ListedBeforeWritten(storage)

    async def scenario() -> None:
        host = await started(gated, clock)
        await host.track("alice", movement(at=clock(), eventId="A"))
        gated.fail = lambda key: "/log/" in key
        with pytest.raises(StorageUnavailable):
            await host.track("alice", movement(at=clock(), eventId="B"))
        gated.fail = lambda key: False
        gated.stale = host.slots["alice"]
        gated.armed = True
        compaction = asyncio.create_task(host.compact(force=True))
        session = await host.get_session("alice", "s1")
        await compaction
        gated.armed = False
        assert [m["eventId"] for m in session["movements"]] == ["A"]
        assert await host.track("alice", movement(at=clock(), eventId="A")) == 0
        await host.compact(force=True)
        exported = [x["eventId"] for x in await host.export("alice") if x["type"] == "movement"]
        assert exported == ["A"]

    run(scenario())


def test_a_zombie_host_is_fenced_and_the_new_incarnations_data_stays(storage: Storage) -> None:
    clock = Clock()

    async def scenario() -> None:
        zombie = await started(storage, clock)
        await zombie.track("alice", movement(at=clock(), eventId="acked"))
        new = await started(storage, clock)
        await new.track("alice", movement(at=clock(), eventId="new"))
        with pytest.raises(Fenced):
            await zombie.track("alice", movement(at=clock(), eventId="zombie"))
        with pytest.raises(Fenced):
            await zombie.track("bob", movement("bob", at=clock()))
        with pytest.raises(StorageUnavailable):
            await zombie.compact(force=True)
        with pytest.raises(Fenced):
            await zombie.export("alice")  # would flush the user's records as chunks
        third = await started(storage, clock)
        assert [m["eventId"] for m in await movements_of(third)] == ["acked", "new"]
        with pytest.raises(UnknownSession):
            await third.get_session("bob", "s1")

    run(scenario())


def test_erase_leaves_no_object_holding_the_user(storage: Storage) -> None:
    clock = Clock()
    victim = "erase-me-7f3a9c"

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.create_session(victim, "s1", {"userAgent": "x"})
        await host.track_many(victim, [movement(victim, at=clock()) for _ in range(80)])
        await host.track("bob", movement("bob", at=clock()))
        await host.compact(force=True)  # history chunks and a snapshot
        await host.track("bob", movement("bob", at=clock()))
        await host.track(victim, movement(victim, at=clock()))  # and some still only in the log
        assert any(victim.encode() in data for data in (await everything(storage)).values())
        result = await host.erase(victim)
        assert result["erased"] and result["objectsDeleted"] >= 2
        assert not await storage.list_objects(user_key(victim))
        holders = [k for k, data in (await everything(storage)).items() if victim.encode() in data]
        assert holders == []
        with pytest.raises(UnknownSession):
            await host.get_session(victim, "s1")
        assert len(await movements_of(host, "bob")) == 2
        again = await started(storage, clock)
        with pytest.raises(UnknownSession):
            await again.get_session(victim, "s1")
        assert len(await movements_of(again, "bob")) == 2

    run(scenario())


def test_an_erasure_removes_the_temporary_files_a_crash_left_in_the_users_folder(
    file_storage: str,
) -> None:
    clock = Clock()
    storage = open_storage(file_storage)
    assert isinstance(storage, FileStorage)
    chunks = Path(storage.path(f"{user_key('alice')}/chunks"))

    async def scenario() -> None:
        host = await started(storage, clock)
        assert await host.track("alice", movement(at=clock(), eventId="alice-1")) == 1
        await host.compact(force=True)
        # Writes a crash interrupted: their temporary files (one with the data) stay behind.
        (chunks / ".tmp-0123456789abcdef").write_bytes((chunks / f"{1:012d}").read_bytes())
        (chunks.parent / ".tmp-fedcba9876543210").write_bytes(b"")
        assert (await host.erase("alice"))["erased"]
        assert holders(file_storage, user_traces("alice", "alice-1")) == []

    run(scenario())


def test_an_erasure_whose_log_cannot_be_compacted_says_so_and_a_replay_stores_nothing_again(
    file_storage: str,
) -> None:
    """The erasure's compaction cannot truncate the log, which still holds the user's records
    (and the erasure's): the erasure fails, saying so. After a crash, the restart replays
    the records and the erasure: it neither stores the user again nor asks for their alarm."""
    clock = Clock()
    storage = LogKept(file_storage)

    async def scenario() -> None:
        host = await started(storage, clock)
        assert await host.track("alice", movement(at=clock(), eventId="alice-1")) == 1
        assert await host.track("bob", movement(at=clock(), user="bob", eventId="bob-1")) == 1
        host.take_alarm_requests()  # shipped
        storage.keep_log = True
        with pytest.raises(StorageUnavailable, match=r"could not be compacted.*erase again"):
            await host.erase("alice")
        await host.journal.close()  # a crash
        storage.keep_log = False
        again = await started(storage, clock)
        assert set(again.take_alarm_requests()) == {"bob"}
        assert holders(file_storage, user_traces("alice", "alice-1")) == []
        assert [m["eventId"] for m in await movements_of(again, user="bob")] == ["bob-1"]

    run(scenario())


def test_an_alarm_firing_for_an_erased_user_stores_nothing_and_asks_for_no_alarm(
    storage_url: str,
) -> None:
    """An alarm the scheduler still fires for an erased user (one it got before the erasure)
    ends it: nothing of theirs is written again, and no alarm is asked for."""
    clock = Clock()
    storage = open_storage(storage_url)

    async def scenario() -> None:
        host = await started(storage, clock)
        assert await host.track("alice", movement(at=clock(), eventId="alice-1")) == 1
        await host.compact(force=True)
        host.take_alarm_requests()  # shipped
        assert (await host.erase("alice"))["erased"]
        clock.advance(DAY)
        assert await host.alarm("alice") is None
        await host.compact(force=True)
        assert host.take_alarm_requests() == {}
        assert holders(storage_url, user_traces("alice", "alice-1")) == []

    run(scenario())


def test_an_erasure_completes_while_another_users_history_cannot_be_written(
    file_storage: str,
) -> None:
    clock = Clock()
    storage = open_storage(file_storage)
    assert isinstance(storage, FileStorage)
    blocker = Path(storage.path(f"{user_key('bob')}/chunks"))

    async def scenario() -> None:
        host = await started(storage, clock)
        assert await host.track("alice", movement(at=clock(), eventId="alice-1")) == 1
        assert await host.track("bob", movement(at=clock(), user="bob", eventId="bob-1")) == 1
        blocker.parent.mkdir(parents=True)
        blocker.write_bytes(b"")
        assert (await host.erase("alice"))["erased"]
        assert holders(file_storage, user_traces("alice", "alice-1")) == []
        assert host.stats()["setAside"] == 1
        assert [m["eventId"] for m in await movements_of(host, user="bob")] == ["bob-1"]
        # And the user set aside can be erased too: nothing of his is carried on.
        assert (await host.erase("bob"))["erased"]
        assert host.stats()["setAside"] == 0
        assert holders(file_storage, user_traces("bob", "bob-1")) == []

    run(scenario())


def test_a_host_that_held_an_erased_user_before_the_host_count_changed_forgets_them(
    storage_url: str,
) -> None:
    """TRACKER_HOSTS was raised without a clean stop: host-0 still holds some of Alice's
    records in its log when host-1, her host now, erases her. The erasure reaches host-0
    first (`HostActor.erase`), whose compactions then write nothing of hers back."""
    clock = Clock()
    storage = open_storage(storage_url)

    async def scenario() -> None:
        former = await started(storage, clock)
        assert await former.track("alice", movement(at=clock(), eventId="on-former")) == 1
        host = new_host(storage, clock, name="host-1")
        await host.start()
        assert await host.track("alice", movement(at=clock(), eventId="on-new")) == 1
        await host.compact(force=True)
        assert await former.forget("bob") is None  # nothing of his there: nothing to do
        assert await former.forget("alice") is not None
        assert (await host.erase("alice"))["erased"]
        await former.compact(force=True)
        await host.compact(force=True)
        await former.journal.close()  # a crash
        again = await started(storage, clock)
        await again.compact(force=True)
        assert holders(storage_url, user_traces("alice", "on-former", "on-new")) == []

    run(scenario())


async def still_running(task: asyncio.Task[Any], wait_s: float = 0.5) -> bool:
    """Whether `task` is still waiting after `wait_s` (it must be blocked, not slow)."""
    done, _ = await asyncio.wait({task}, timeout=wait_s)
    return not done


def test_an_alarm_request_out_as_its_user_is_erased_is_neither_armed_after_nor_sent_again(
    file_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host actor's shell, without Ray: the scheduler and the aggregator are reached
    through `_to_named`, here a stand-in whose alarm shipment hangs, then fails. The erasure
    waits for that shipment before it erases the alarm, and the failed shipment does not put
    the erased user's request back for the next one."""
    from tracker import host_actor
    from tracker.config import Config

    monkeypatch.setattr(host_actor, "tune_collector", lambda: None)  # not in the test process
    clock = Clock()
    calls: list[str] = []
    shipping = asyncio.Event()
    release = asyncio.Event()

    async def to_named(name: str, method: str, *args: Any) -> None:
        calls.append(method)
        if method == "ensure_alarms":
            shipping.set()
            await release.wait()
            raise StorageUnavailable("injected: the scheduler did not answer")

    async def scenario() -> None:
        # A memory budget of its own: outside Ray there is no node to derive one from.
        config = Config.from_env({}, storage=file_storage, host_memory_mb=256)
        actor = host_actor.HostActor("host-0", config)
        monkeypatch.setattr(actor, "_to_named", to_named)
        assert await actor.track("alice", movement(at=clock(), eventId="alice-1")) == 1
        shipment = asyncio.ensure_future(actor._ship_alarm_requests())
        await asyncio.wait_for(shipping.wait(), 10)
        erasure = asyncio.ensure_future(actor.erase("alice"))
        assert await still_running(erasure)
        assert "erase" not in calls
        release.set()
        with pytest.raises(StorageUnavailable):
            await shipment
        assert (await erasure)["erased"]
        assert calls.index("erase") > calls.index("ensure_alarms")
        assert "alice" not in actor.host.alarm_requests
        await actor.host.stop()

    run(scenario())


@pytest.mark.parametrize("writer", ["compaction", "export"])
def test_an_erasure_waits_for_a_write_of_the_users_data_and_then_leaves_nothing(
    storage: Storage, writer: str
) -> None:
    """A compaction (or an export's flush) writing the user's chunk as the erasure comes:
    the erasure deletes after that chunk lands, not before (which stored it again)."""
    wrapped = Wrapped(storage)
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="e1"))
        wrapped.hold = lambda key: "/chunks/" in key
        if writer == "compaction":
            writing = asyncio.create_task(host.compact(force=True))
        else:
            writing = asyncio.create_task(host.export("alice"))
        await wrapped.held.wait()
        erase = asyncio.create_task(host.erase("alice"))
        assert await still_running(erase)
        wrapped.hold = lambda key: False
        wrapped.release.set()
        await writing
        assert (await erase)["erased"]
        assert await storage.list_objects(user_key("alice")) == []
        again = await started(storage, clock)
        assert await again.export("alice") == []

    run(scenario())


def test_an_event_arriving_during_an_erasure_is_kept_and_the_erased_ones_stay_gone(
    file_storage: str,
) -> None:
    """An erasure deletes the user's objects after dropping them from memory: their next
    event waits for it, instead of activating them from what is being deleted (which would
    bring the erased history back, and store it again), and is then kept as the first of a
    new history."""
    deleting = asyncio.Event()
    release = asyncio.Event()
    clock = Clock()

    class SlowDelete(FileStorage):
        hold = False

        async def delete(self, keys: list[str]) -> None:
            if self.hold:
                deleting.set()
                await release.wait()
            await super().delete(keys)

    storage = SlowDelete(file_storage)

    async def scenario() -> None:
        host = await started(storage, clock)
        for i in range(3):
            await host.track("alice", movement(at=clock(), eventId=f"erased-{i}"))
        await host.compact(force=True)
        await host.track("alice", movement(at=clock(), eventId="erased-3"))  # in the log only
        storage.hold = True
        erasure = asyncio.ensure_future(host.erase("alice"))
        await asyncio.wait_for(deleting.wait(), 10)
        tracked = asyncio.ensure_future(host.track("alice", movement(at=clock(), eventId="after")))
        reads = asyncio.ensure_future(host.export("alice"))
        done, _ = await asyncio.wait([tracked, reads], timeout=0.2)
        assert not done  # both wait for the erasure
        storage.hold = False
        release.set()
        assert (await erasure)["erased"]
        assert await tracked == 1
        assert [line["eventId"] for line in await reads if line["type"] == "movement"] == []
        assert [m["eventId"] for m in await movements_of(host)] == ["after"]
        await host.compact(force=True)
        await host.journal.close()  # a crash
        again = await started(open_storage(file_storage), clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["after"]
        lines = await again.export("alice")
        assert [line["eventId"] for line in lines if line["type"] == "movement"] == ["after"]

    run(scenario())


def test_a_user_reloaded_while_a_compaction_writes_their_chunk_keeps_each_event_once(
    storage_url: str,
) -> None:
    """A failed commit leaves the user to be reloaded; a compaction's chunk of theirs lands
    before it forgets the records in it, and the reload reads that chunk: it must not apply
    those records a second time (a movement without an `eventId` would show twice)."""
    inner = open_storage(storage_url)
    landed = asyncio.Event()
    release = asyncio.Event()
    clock = Clock()

    class Landing(Wrapped):
        stall = False

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            etag = await super().put(key, data, **kwargs)
            if self.stall and "/chunks/" in key:
                landed.set()
                await release.wait()
            return etag

    wrapped = Landing(inner)

    async def scenario() -> None:
        host = await started(wrapped, clock)
        assert await host.track("alice", movement(at=clock())) == 1  # no eventId
        assert await host.track("alice", movement(at=clock(), eventId="e1")) == 1
        wrapped.fail = lambda key: "/log/" in key
        with pytest.raises(StorageUnavailable):
            await host.track("alice", movement(at=clock(), eventId="refused"))
        wrapped.fail = lambda key: False
        wrapped.stall = True
        compaction = asyncio.ensure_future(host.compact(force=True))
        await asyncio.wait_for(landed.wait(), 10)
        assert await host.track("alice", movement(at=clock(), eventId="after")) == 1
        wrapped.stall = False
        release.set()
        await compaction
        assert [m.get("eventId") for m in await movements_of(host)] == [None, "e1", "after"]
        await host.compact(force=True)
        again = await started(inner, clock)
        assert [m.get("eventId") for m in await movements_of(again)] == [None, "e1", "after"]
        lines = await again.export("alice")
        exported = [line.get("eventId") for line in lines if line["type"] == "movement"]
        assert exported == [None, "e1", "after"]

    run(scenario())


def test_export_returns_every_movement_including_those_the_cap_evicted(storage: Storage) -> None:
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock, limits=Limits(max_movements=5))
        await host.create_session("alice", "s1", {"userAgent": "x"})
        for i in range(12):
            await host.track("alice", movement(at=clock(), eventId=f"e{i}"))
            clock.advance(10)
            if i == 6:
                await host.compact(force=True)
        assert len(await movements_of(host)) == 5
        lines = await host.export("alice")
        assert lines[0]["type"] == "session" and lines[0]["deviceInfo"] == {"userAgent": "x"}
        assert [line["eventId"] for line in lines[1:]] == [f"e{i}" for i in range(12)]
        assert all(line["type"] == "movement" for line in lines[1:])

    run(scenario())


@pytest.mark.parametrize("compacted", [False, True], ids=["log-only", "compacted"])
def test_past_the_session_cap_the_longest_idle_session_leaves_memory_and_none_of_its_events(
    storage: Storage, compacted: bool
) -> None:
    clock = Clock()
    limits = Limits(max_sessions=3)

    async def scenario() -> None:
        host = await started(storage, clock, limits=limits)
        await host.track("alice", movement(at=clock(), session="s0", eventId="e0"))
        for number in range(1, 4):
            clock.advance(10)
            await host.create_session("alice", f"s{number}", {"userAgent": "x"})
        if compacted:
            await host.compact(force=True)
        assert list(host.slots["alice"].tracker.sessions) == ["s1", "s2", "s3"]
        with pytest.raises(UnknownSession):
            await host.get_session("alice", "s0")
        # An event for the session that left memory is stored: it starts the session again.
        clock.advance(10)
        assert await host.track("alice", movement(at=clock(), session="s0", eventId="e1")) == 1
        assert [m["eventId"] for m in await movements_of(host, session="s0")] == ["e1"]
        assert list(host.slots["alice"].tracker.sessions) == ["s2", "s3", "s0"]
        lines = await host.export("alice")
        assert {line["sessionId"] for line in lines if line["type"] == "session"} == {
            "s0",
            "s1",
            "s2",
            "s3",
        }
        exported = [line["eventId"] for line in lines if line["type"] == "movement"]
        assert exported == ["e0", "e1"]
        # A new incarnation replays the same records into the same sessions.
        again = await started(storage, clock, limits=limits)
        assert await again.get_session("alice", "s0") == await host.get_session("alice", "s0")
        assert list(again.slots["alice"].tracker.sessions) == ["s2", "s3", "s0"]

    run(scenario())


def test_above_its_memory_budget_a_host_passivates_its_least_recently_used_users(
    file_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shedding, "MEMORY_CHECK_EVERY", 1)  # read the RSS at every call
    clock = Clock()
    rss = [100]
    users = [f"u{n}" for n in range(10)]

    async def scenario() -> None:
        host = UserHost(
            "host-0",
            open_storage(file_storage),
            HostSettings(memory_bytes=1000),
            now_ms=clock,
            rss_bytes=lambda: rss[0],
        )
        await host.start()
        for user in users:
            clock.advance(1000)
            await host.track(user, movement(user, at=clock(), eventId="e1"))
        assert host.shed == 0
        rss[0] = 900  # over 80%: sheds (900 - 600) / 900 of the 10 users, least recent first
        clock.advance(1000)
        await host.track("u9", movement("u9", at=clock(), eventId="e2"))
        # A user new to memory waits for the shedding.
        await host.track("new", movement("new", at=clock(), eventId="e1"))
        assert host.shed == 3
        assert set(host.slots) == {*users[3:], "new"}
        # Memory the interpreter freed is reused first: no more shedding while RSS stays put.
        for user in users[3:]:
            await host.track(user, movement(user, at=clock(), eventId="e3"))
        assert host.shed == 3
        rss[0] = 950
        await host.track("u9", movement("u9", at=clock(), eventId="e4"))
        await host.track("newer", movement("newer", at=clock(), eventId="e1"))
        assert host.shed > 3
        # The users who left memory lost nothing.
        for user in users[:3]:
            assert [m["eventId"] for m in await movements_of(host, user)] == ["e1"]

    run(scenario())


def test_the_alarm_expires_sessions_after_the_timeout_and_returns_the_next_due_time(
    storage: Storage,
) -> None:
    clock = Clock()
    limits = Limits(session_timeout_ms=30 * MINUTE, alarm_interval_ms=60 * MINUTE)

    async def scenario() -> None:
        host = await started(storage, clock, limits=limits)
        await host.create_session("alice", "old", None)
        clock.advance(20 * MINUTE)
        await host.track("alice", movement(at=clock(), session="new"))
        assert host.take_alarm_requests() == {"alice": clock() - 20 * MINUTE + 60 * MINUTE}
        clock.advance(10 * MINUTE)
        assert await host.alarm("alice") == clock() + 60 * MINUTE
        assert (await host.analytics("alice"))["totalSessions"] == 2
        clock.advance(1)
        assert await host.alarm("alice") == clock() + 60 * MINUTE
        assert [s["sessionId"] for s in (await host.analytics("alice"))["userSessions"]] == ["new"]
        clock.advance(30 * MINUTE)
        await host.alarm("alice")
        assert (await host.analytics("alice"))["totalSessions"] == 0
        again = await started(storage, clock, limits=limits)
        assert (await again.analytics("alice"))["totalSessions"] == 0

    run(scenario())


def test_retention_deletes_old_history_chunks_but_keeps_the_live_sessions(
    storage: Storage,
) -> None:
    clock = Clock()
    limits = Limits(session_timeout_ms=10 * DAY, retention_ms=DAY)

    async def scenario() -> None:
        host = await started(storage, clock, limits=limits)
        await host.create_session("alice", "s1", {"userAgent": "x"})
        for i in range(3):
            await host.track("alice", movement(at=clock(), eventId=f"e{i}"))
            await host.compact(force=True)
        chunks = f"{user_key('alice')}/chunks"
        assert len(await storage.list_objects(chunks)) == 3
        before = await host.get_session("alice", "s1")
        clock.advance(DAY // 2)
        await host.alarm("alice")
        assert len(await storage.list_objects(chunks)) == 3
        clock.advance(DAY)
        await host.alarm("alice")
        assert await storage.list_objects(chunks) == []
        await host.stop()
        again = await started(storage, clock, limits=limits)
        assert await again.get_session("alice", "s1") == before

    run(scenario())


def test_an_alarm_with_nothing_left_to_do_is_not_rearmed(file_storage: str) -> None:
    storage = open_storage(file_storage)
    clock = Clock()
    limits = Limits(session_timeout_ms=MINUTE, retention_ms=DAY)

    async def scenario() -> None:
        host = await started(storage, clock, limits=limits)
        await host.track("alice", movement(at=clock()))
        await host.compact(force=True)
        clock.advance(2 * MINUTE)
        assert await host.alarm("alice") is not None  # expired a session just now
        await host.compact(force=True)
        clock.advance(2 * DAY)
        nexts = [await host.alarm("alice")]
        await host.compact(force=True)
        nexts.append(await host.alarm("alice"))
        assert nexts[-1] is None, nexts
        assert host.take_alarm_requests().get("alice") is None
        # Still in memory when she comes back: her new activity asks for an alarm again.
        assert "alice" in host.slots
        await host.track("alice", movement(at=clock()))
        assert host.take_alarm_requests() == {"alice": clock() + Limits().alarm_interval_ms}

    run(scenario())


def test_an_alarm_request_survives_a_compaction_and_crashes_before_its_shipment(
    storage: Storage,
) -> None:
    """The compaction moves the user's only records out of the log; the host crashes before
    it ships her alarm request, and so does the next incarnation: the third ships it."""
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.track("alice", movement(at=clock()))
        due = host.alarm_requests["alice"]
        await host.compact(force=True)
        await started(storage, clock)  # crashes too, before shipping anything
        arrived: dict[str, int] = {}
        last = await started(storage, clock)
        await last.ship_alarm_requests(scheduler_receiving(arrived))
        assert arrived == {"alice": due}

    run(scenario())


def test_an_alarm_request_a_restarted_host_keeps_is_gone_with_its_erased_user(
    storage: Storage, storage_url: str
) -> None:
    """The request a restart carries into the new epoch's log is an ordinary commit: the
    erasure's compaction removes it with the rest of the user's records."""
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.track("alice", movement(at=clock(), eventId="alice-1"))
        await host.track("bob", movement("bob", at=clock(), eventId="bob-1"))
        await host.compact(force=True)
        again = await started(storage, clock)  # a crash before the shipment
        assert set(again.alarm_requests) == {"alice", "bob"}
        assert (await again.erase("alice"))["erased"]
        assert holders(storage_url, user_traces("alice", "alice-1")) == []
        arrived: dict[str, int] = {}
        await (await started(storage, clock)).ship_alarm_requests(scheduler_receiving(arrived))
        assert list(arrived) == ["bob"]

    run(scenario())


def test_an_alarm_request_being_shipped_during_a_compaction_survives_a_crash(
    storage: Storage,
) -> None:
    """The host crashes while the scheduler has not answered the shipment yet (it may never
    have received it)."""
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.track("alice", movement(at=clock()))
        shipping = asyncio.Event()

        async def never_answered(requests: dict[str, int]) -> None:
            shipping.set()
            await asyncio.Event().wait()

        shipment = asyncio.create_task(host.ship_alarm_requests(never_answered))
        await shipping.wait()
        assert not host.alarm_requests
        await host.compact(force=True)
        shipment.cancel()  # the crash
        arrived: dict[str, int] = {}
        again = await started(storage, clock)
        await again.ship_alarm_requests(scheduler_receiving(arrived))
        assert list(arrived) == ["alice"]

    run(scenario())


def test_an_erased_users_alarm_request_being_shipped_is_neither_logged_nor_put_back(
    storage: Storage,
) -> None:
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.track("alice", movement(at=clock()))
        await host.track("bob", movement("bob", at=clock()))
        shipping, fail = asyncio.Event(), asyncio.Event()

        async def failing(requests: dict[str, int]) -> None:
            shipping.set()
            await fail.wait()
            raise StorageUnavailable("the scheduler is restarting")

        shipment = asyncio.create_task(host.ship_alarm_requests(failing))
        await shipping.wait()
        await host.erase("alice")  # compacts, logging the requests still being shipped
        fail.set()
        with pytest.raises(StorageUnavailable):
            await shipment
        assert list(host.alarm_requests) == ["bob"]
        arrived: dict[str, int] = {}
        again = await started(storage, clock)
        await again.ship_alarm_requests(scheduler_receiving(arrived))
        assert list(arrived) == ["bob"]

    run(scenario())


def test_a_snapshot_never_holds_an_event_committed_after_its_chunk(file_storage: str) -> None:
    """Compaction writes a chunk, then maybe a snapshot of the live state. An event committed
    meanwhile is in that state but after the chunk's position: a crash must not replay it twice."""
    wrapped = Wrapped(open_storage(file_storage))
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track_many(
            "alice", [movement(at=clock()) for _ in range(60)]
        )  # > 4 KB: snapshot
        wrapped.hold = lambda key: "/chunks/" in key
        compaction = asyncio.ensure_future(host.compact(force=True))
        await wrapped.held.wait()
        assert await host.track("alice", movement(at=clock())) == 1  # no eventId to dedup it
        wrapped.release.set()
        await compaction
        assert len(await movements_of(host)) == 61
        again = await started(wrapped, clock)
        assert len(await movements_of(again)) == 61

    run(scenario())


def test_a_snapshot_never_holds_an_event_whose_commit_failed(file_storage: str) -> None:
    wrapped = Wrapped(open_storage(file_storage))
    clock = Clock()

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track_many("alice", [movement(at=clock()) for _ in range(60)])
        wrapped.hold = lambda key: "/chunks/" in key
        compaction = asyncio.ensure_future(host.compact(force=True))
        await wrapped.held.wait()
        wrapped.fail = lambda key: "/log/" in key
        with pytest.raises(StorageUnavailable):
            await host.track("alice", movement(at=clock(), eventId="refused"))
        wrapped.fail = lambda key: False
        wrapped.release.set()
        await compaction
        assert len(await movements_of(host)) == 60
        again = await started(wrapped, clock)
        assert len(await movements_of(again)) == 60

    run(scenario())


def test_compaction_never_truncates_a_commit_still_being_acknowledged(file_storage: str) -> None:
    """A segment is written, then checked against fencing before it is acknowledged; a
    compaction in between must not drop it from the log before it is in the user's history."""
    inner = open_storage(file_storage)
    clock = Clock()
    checking = asyncio.Event()
    proceed = asyncio.Event()

    class SlowFenceCheck(Wrapped):
        slow = False

        async def get(self, key: str) -> tuple[bytes, str]:
            if "/epochs/" in key and self.slow:
                checking.set()
                await proceed.wait()
            return await self.inner.get(key)

    wrapped = SlowFenceCheck(inner)

    async def scenario() -> None:
        host = await started(wrapped, clock)
        await host.track("alice", movement(at=clock(), eventId="first"))
        # Shipped: the compaction, with nothing to log, then runs while a commit is held.
        await host.ship_alarm_requests(scheduler_receiving({}))
        wrapped.slow = True
        tracked = asyncio.ensure_future(host.track("alice", movement(at=clock(), eventId="second")))
        await checking.wait()
        wrapped.slow = False
        await host.compact(force=True)
        proceed.set()
        assert await tracked == 1
        # Crash now, before any further compaction.
        again = await started(inner, clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["first", "second"]

    run(scenario())


def test_a_compaction_resuming_as_a_commit_lands_keeps_that_commit(storage_url: str) -> None:
    """A compaction that resumes (from its fence check) between a commit's acknowledgement by
    the journal and the resumption of the call that made it must still leave that commit in
    the log or in the user's history: the call acknowledges it right after."""
    inner = open_storage(storage_url)
    clock = Clock()
    release = asyncio.Event()

    class Choreographed(Wrapped):
        """The compaction's fence check waits; the commit's fence check releases it and
        answers at once, so that the compaction resumes right after the commit is logged."""

        epoch_checks = 0
        armed = False

        async def get(self, key: str) -> tuple[bytes, str]:
            if "/epochs/" in key and self.armed:
                self.epoch_checks += 1
                if self.epoch_checks == 1:  # the compaction's
                    await release.wait()
                else:  # the commit's
                    release.set()
                    self.armed = False
                raise ObjectMissing(key)  # no newer epoch
            return await self.inner.get(key)

    wrapped = Choreographed(inner)

    async def scenario() -> None:
        host = await started(wrapped, clock)
        assert await host.track("alice", movement(at=clock(), eventId="first")) == 1
        await host.compact(force=True)  # alice has nothing left to flush
        wrapped.armed = True
        compaction = asyncio.ensure_future(host.compact(force=True))
        for _ in range(1000):  # the compaction reaches its fence check within a few steps
            if wrapped.epoch_checks:
                break
            await asyncio.sleep(0)
        assert wrapped.epoch_checks == 1
        assert await host.track("alice", movement(at=clock(), eventId="second")) == 1
        await compaction
        # Crash now, before any further compaction.
        again = await started(inner, clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["first", "second"]

    run(scenario())


def test_commits_landing_during_a_compaction_are_not_copied_out_of_its_log_file(
    file_storage: str,
) -> None:
    """Frames files: a compaction starts a new file before it reads the last position, so
    what is committed while it writes users' histories is not rewritten by its truncation."""
    release = asyncio.Event()
    flushing = asyncio.Event()
    clock = Clock()

    class Files(FileStorage):
        hold = False
        log_puts = 0

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            if "/log/" in key:
                self.log_puts += 1
            if "/chunks/" in key and self.hold:
                flushing.set()
                await release.wait()
            return await super().put(key, data, **kwargs)

    files = Files(file_storage)

    async def scenario() -> None:
        host = await started(files, clock)
        assert await host.track("alice", movement(at=clock(), eventId="first")) == 1
        files.hold, puts_before = True, files.log_puts
        compaction = asyncio.ensure_future(host.compact(force=True))
        await asyncio.wait_for(flushing.wait(), 10)
        assert await host.track("bob", movement(at=clock(), user="bob", eventId="during")) == 1
        release.set()
        await compaction
        assert files.log_puts == puts_before  # no frames copied
        again = await started(open_storage(file_storage), clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["first"]
        assert [m["eventId"] for m in await movements_of(again, "bob")] == ["during"]

    run(scenario())


def test_analytics_listeners_see_each_stored_movement_once_even_when_retried(
    tmp_path: Any,
) -> None:
    async def scenario() -> list[str | None]:
        clock = Clock()
        seen: list[str | None] = []
        host = UserHost(
            "host-0",
            open_storage(f"file://{tmp_path}"),
            HostSettings(),
            now_ms=clock,
            on_track=lambda user, session, movements, now, known: seen.extend(
                m.eventId for m in movements
            ),
        )
        await host.start()
        batch = [movement(at=clock(), eventId="e1"), movement(at=clock(), eventId="e2")]
        await host.track_many("alice", batch)
        await host.track_many("alice", [*batch, movement(at=clock(), eventId="e3")])
        await host.track("alice", movement(at=clock(), eventId="e3"))
        await host.journal.close()
        return seen

    assert run(scenario()) == ["e1", "e2", "e3"]


def test_a_restarted_host_does_not_count_what_it_replays_again(tmp_path: Any) -> None:
    """The analytics listener saw each event when it was committed; a new incarnation that
    replays the log (a crash: nothing compacted) must not report the same events again."""

    async def scenario() -> tuple[list[str | None], list[str | None], list[Any]]:
        clock = Clock()
        storage = open_storage(f"file://{tmp_path}")
        seen: list[list[str | None]] = [[], []]

        def host(incarnation: int) -> UserHost:
            return UserHost(
                "host-0",
                storage,
                HostSettings(),
                now_ms=clock,
                on_track=lambda user, session, movements, now, known: seen[incarnation].extend(
                    m.eventId for m in movements
                ),
            )

        first = host(0)
        await first.start()
        await first.track_many("alice", [movement(at=clock(), eventId=f"e{i}") for i in range(3)])
        await first.journal.close()  # a crash: the events are in the log only
        second = host(1)
        await second.start()
        await second.track("alice", movement(at=clock(), eventId="e3"))
        kept = [m["eventId"] for m in await movements_of(second)]
        await second.journal.close()
        return seen[0], seen[1], kept

    first, second, kept = run(scenario())
    assert first == ["e0", "e1", "e2"]
    assert second == ["e3"]
    assert kept == ["e0", "e1", "e2", "e3"]


def counting(storage: Storage, clock: Clock, stats: SiteStats) -> UserHost:
    """A host whose analytics listeners feed `stats`, as a host actor's feed its outbox."""

    def on_track(user: str, session: str, movements: Any, now: int, known: bool) -> None:
        stats.observe_stored(user, session, movements, now, known=known)

    def on_session(user: str, session: str, now: int, state: Any, known: bool, visit: Any) -> None:
        stats.observe_session(user, session, now, start_ms=state["startTime"], known=known)

    return UserHost(
        "host-0", storage, HostSettings(), now_ms=clock, on_track=on_track, on_session=on_session
    )


def test_a_restarted_host_counts_no_session_again(storage: Storage) -> None:
    """Site analytics count a session once, when it is first stored. A new incarnation (a
    restart, or an idle per-user actor started again) has fresh analytics state: the sessions
    its users' trackers restore from storage are not new, whether they go on with an event or
    are posted again by a page load; a session they never held is."""

    async def scenario() -> list[tuple[int, int]]:
        clock = Clock()
        stats = [SiteStats() for _ in range(3)]
        first = counting(storage, clock, stats[0])
        await first.start()
        await first.create_session("alice", "s1", {"userAgent": "a"})
        await first.track("alice", movement(at=clock(), eventId="e1"))
        await first.track("bob", movement("bob", "s9", at=clock(), eventId="e2"))
        await first.stop()  # a clean stop: restored from histories and snapshots
        second = counting(storage, clock, stats[1])
        await second.start()
        await second.track("alice", movement(at=clock(), eventId="e3"))
        await second.create_session("bob", "s9", {"userAgent": "b"})
        await second.track("alice", movement(at=clock(), session="s2", eventId="e4"))
        await second.journal.close()  # a crash: restored from the log
        third = counting(storage, clock, stats[2])
        await third.start()
        await third.track("alice", movement(at=clock(), session="s2", eventId="e5"))
        await third.stop()
        return [(s.metric(Totals).sessions, s.metric(Totals).events) for s in stats]

    # Two new sessions at first; then only s2 is new (s1 and s9 were restored); then none.
    assert run(scenario()) == [(2, 2), (1, 2), (0, 1)]


def test_the_stored_form_is_logged_as_sent_counted_once_and_recovered(storage: Storage) -> None:
    clock = Clock()

    def stored(*movements: dict[str, Any]) -> list[tuple[str, bytes]]:
        return codec.encode_entries(movements_from_obj(list(movements), clock()))

    async def scenario() -> tuple[list[str | None], list[Any], list[Any]]:
        seen: list[str | None] = []
        host = UserHost(
            "host-0",
            storage,
            HostSettings(),
            now_ms=clock,
            on_track=lambda user, session, movements, now, known: seen.extend(
                m.eventId for m in movements
            ),
        )
        await host.start()
        first = stored(movement(at=clock(), eventId="e1"), movement(at=clock(), eventId="e2"))
        assert await host.track_stored("alice", first) == 2
        # A retry of e2 beside a new e3, and e3 again in a second entry of the same session.
        again = [
            *stored(movement(at=clock(), eventId="e2"), movement(at=clock(), eventId="e3")),
            *stored(
                movement(at=clock(), eventId="e3"), movement(at=clock(), session="s2", eventId="e3")
            ),
        ]
        assert await host.track_stored("alice", again) == 2
        kept = await movements_of(host)
        recovered = await movements_of(await started(storage, clock))  # no stop: the log only
        return seen, kept, recovered

    seen, kept, recovered = run(scenario())
    assert seen == ["e1", "e2", "e3", "e3"]  # e3 of s2 is another session's event
    assert [m["eventId"] for m in kept] == ["e1", "e2", "e3"]
    assert recovered == kept


def test_a_stored_batch_that_fails_its_checks_is_refused_whole(storage: Storage) -> None:
    clock = Clock()
    good = codec.encode_entries(movements_from_obj([movement(at=clock(), user="bob")], clock()))
    ahead = movement(at=clock(), eventId="late")
    ahead["timestamp"] = clock() + DAY
    valid = movements_from_obj([movement(at=clock()), movement(at=clock(), eventId="ok")], clock())
    late = codec.encode_blob(movements_from_obj([ahead], clock() + DAY))
    bad = [*codec.encode_entries(valid), ("s1", late)]

    async def scenario() -> list[int | BaseException]:
        host = await started(storage, clock)
        results = await host.track_stored_batch([("bob", good), ("alice", bad)])
        with pytest.raises(UnknownSession):
            await host.get_session("alice", "s1")
        assert len(await movements_of(host, "bob")) == 1
        return results

    first, second = run(scenario())
    assert first == 1
    assert isinstance(second, InvalidMovement)
    assert second.field == "entries.1.movements.0.timestamp"


class Concurrency(Wrapped):
    """Reads that take a round trip (as on S3), counting how many are in flight at most."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.counting = False
        self.in_flight = self.most = 0

    async def _round_trip(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1

    async def get(self, key: str) -> tuple[bytes, str]:
        if self.counting:
            await self._round_trip()
        return await self.inner.get(key)

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        if self.counting:
            await self._round_trip()
        return await self.inner.list_objects(prefix)


def test_an_activation_asks_for_the_users_history_together(file_storage: str) -> None:
    clock = Clock()
    storage = Concurrency(open_storage(file_storage))

    async def scenario() -> list[Any]:
        host = await started(storage, clock, passivate_after_ms=0)
        for i in range(5):
            await host.track("alice", movement(at=clock(), eventId=f"e{i}"))
            clock.advance(1)
            await host.compact(force=True)  # a history chunk each; alice is passivated
        assert "alice" not in host.slots
        storage.counting = True
        return await movements_of(host)

    assert [m["eventId"] for m in run(scenario())] == [f"e{i}" for i in range(5)]
    assert storage.most == 5  # the snapshot and the listing together, then the five chunks


def test_a_user_taken_over_by_another_host_keeps_both_hosts_events(storage: Storage) -> None:
    """Changing TRACKER_HOSTS moves users between hosts while the old one still holds some of
    their records in its log: both hosts' events end up in the user's history, in full."""
    clock = Clock()

    async def scenario() -> None:
        old = await started(storage, clock)
        await old.track("alice", movement(at=clock(), eventId="on-old"))
        taker = new_host(storage, clock, name="host-1")
        await taker.start()
        await taker.track("alice", movement(at=clock(), eventId="on-new"))
        await taker.compact(force=True)  # writes alice's first chunk
        await old.compact(force=True)  # finds that chunk taken: appends after it
        await old.track("alice", movement(at=clock(), eventId="on-old-again"))
        await old.compact(force=True)
        await taker.track("alice", movement(at=clock(), eventId="on-new-again"))
        await taker.stop()
        restarted = await started(storage, clock)  # host-0 again: replays nothing twice
        await restarted.stop()
        fresh = new_host(storage, clock, name="host-9")
        await fresh.start()
        ids = sorted(m["eventId"] for m in await movements_of(fresh))
        assert ids == ["on-new", "on-new-again", "on-old", "on-old-again"]
        lines = await fresh.export("alice")
        assert sorted(line["eventId"] for line in lines if line["type"] == "movement") == ids

    run(scenario())


def test_lowering_the_host_count_without_a_clean_stop_loses_no_event(storage: Storage) -> None:
    """Hosts 1 and 2 crash with acknowledged events in their logs, and only host-0 comes back
    (TRACKER_HOSTS lowered to 1): draining their logs puts every event in its user's history,
    after what host-0 wrote meanwhile, and asks for the users' alarms."""
    clock = Clock()

    async def scenario() -> None:
        for name in ("host-1", "host-2"):
            crashed = new_host(storage, clock, name=name)
            await crashed.start()
            await crashed.track("alice", movement(at=clock(), eventId=f"on-{name}"))
            await crashed.track(f"user-of-{name}", movement(at=clock(), user=f"user-of-{name}"))
            await crashed.journal.close()  # no compaction: the events are in its log only
        survivor = await started(storage, clock)
        await survivor.track("alice", movement(at=clock(), eventId="on-host-0"))
        await survivor.compact(force=True)  # alice's next chunk number is taken by now

        assert await orphaned_hosts(storage, hosts=1) == ["host-1", "host-2"]
        assert await orphaned_hosts(storage, hosts=2) == ["host-2"]
        alarms: dict[str, int] = {}
        for name in await orphaned_hosts(storage, hosts=1):
            alarms.update(await drain(name, storage, HostSettings(), now_ms=clock))
        assert set(alarms) == {"alice", "user-of-host-1", "user-of-host-2"}
        assert await orphaned_hosts(storage, hosts=1) == []  # drained: not replayed again

        await survivor.track("alice", movement(at=clock(), eventId="after"))
        await survivor.stop()
        fresh = await started(storage, clock)
        assert sorted(m["eventId"] for m in await movements_of(fresh)) == [
            "after",
            "on-host-0",
            "on-host-1",
            "on-host-2",
        ]
        for name in ("host-1", "host-2"):
            assert len(await movements_of(fresh, user=f"user-of-{name}")) == 1
        await fresh.stop()

    run(scenario())


def test_a_host_is_busy_for_its_journal_while_many_tracking_calls_are_in_flight(
    storage: Storage,
) -> None:
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock, commit_linger_ms=50.0)
        assert host.journal.linger_s == 0.05 and host.journal.busy is not None
        users = [f"u{i}" for i in range(LINGER_CALLS)]
        for user in users:  # activated first: loading is not what is measured
            await host.track(user, movement(at=clock(), user=user))
        assert not host.journal.busy()
        calls = [asyncio.ensure_future(host.track(u, movement(at=clock(), user=u))) for u in users]
        bad = asyncio.ensure_future(host.track("alice", {"userId": "alice"}))
        for _ in range(3):  # the calls reach their commit, which lingers
            await asyncio.sleep(0)
        assert host.calls_in_flight == LINGER_CALLS and host.journal.busy()
        results = await asyncio.gather(*calls, bad, return_exceptions=True)
        assert results[:-1] == [1] * len(users)
        assert isinstance(results[-1], InvalidMovement)  # refused, and counted out too
        assert host.calls_in_flight == 0 and not host.journal.busy()
        await host.stop()

    run(scenario())


class LogKept(FileStorage):
    """Files whose log segments cannot be deleted while `keep_log` is set: a compaction
    cannot truncate its log."""

    keep_log = False

    async def delete(self, keys: list[str]) -> None:
        if self.keep_log and any(key.startswith("journals/") for key in keys):
            raise StorageUnavailable("injected outage deleting the log")
        await super().delete(keys)


def log_bytes(stored: dict[str, bytes]) -> bytes:
    return b"".join(data for key, data in stored.items() if key.startswith("journals/"))


@pytest.mark.parametrize("fault", ["unwritable", "corrupt"])
def test_one_users_lasting_flush_error_sets_them_aside_and_the_others_are_compacted(
    file_storage: str, fault: str
) -> None:
    """Bob's history cannot be written (a file stands where his folder goes, or a corrupt
    object holds his next chunk's number): he is set aside, reported, and his records are
    carried in the log, while the others are compacted, truncated and passivated. A crash
    meanwhile loses nothing, and the host starts all the same (with a corrupt chunk, his
    history cannot even be read: his calls fail, no one else's). The compaction after the
    repair stores his events."""
    clock = Clock()
    storage = open_storage(file_storage)
    assert isinstance(storage, FileStorage)
    chunks = Path(storage.path(f"{user_key('bob')}/chunks"))
    corrupt = chunks / f"{2:012d}"
    users = ("alice", "bob", "carol")

    async def scenario() -> None:
        host = await started(storage, clock, passivate_after_ms=MINUTE)
        for user in users:
            assert await host.track(user, movement(at=clock(), user=user, eventId=f"{user}-1")) == 1
        if fault == "unwritable":
            chunks.parent.mkdir(parents=True)
            chunks.write_bytes(b"")
        else:
            await host.compact(force=True)  # everyone's first chunk
            corrupt.write_bytes(b"not a chunk")
        for user in users:
            assert await host.track(user, movement(at=clock(), user=user, eventId=f"{user}-2")) == 1
        assert await host.track("bob", movement(at=clock(), user="bob")) == 1  # no eventId
        bob = ["bob-1", "bob-2", None]
        clock.advance(2 * MINUTE)
        assert await host.compact(force=True) == 2  # alice and carol passivated
        assert set(host.slots) == {"bob"}
        stats = host.stats()
        assert stats["setAside"] == 1 and list(stats["setAsideUsers"]) == [user_key("bob")]
        log = log_bytes(await everything(storage))
        assert b"alice-" not in log and b"carol-" not in log  # truncated
        assert b"bob-2" in log  # carried (and bob-1, unless it made the first chunk)
        assert (b"bob-1" in log) is (fault == "unwritable")
        with pytest.raises(StorageUnavailable):
            await host.export("bob")  # would miss what cannot be written

        await host.journal.close()  # a crash while bob is set aside
        host = await started(storage, clock)
        assert host.stats()["setAside"] == 1
        assert [m["eventId"] for m in await movements_of(host)] == ["alice-1", "alice-2"]
        assert await host.track("carol", movement(at=clock(), user="carol", eventId="carol-3")) == 1
        if fault == "unwritable":
            assert [m.get("eventId") for m in await movements_of(host, user="bob")] == bob
            assert await host.track("bob", movement(at=clock(), user="bob", eventId="bob-3")) == 1
            bob.append("bob-3")
        else:
            with pytest.raises(StorageUnavailable):  # his history cannot be read
                await host.track("bob", movement(at=clock(), user="bob", eventId="bob-3"))
        await host.compact(force=True)
        assert host.stats()["setAside"] == 1

        if fault == "unwritable":  # the operator's repair
            chunks.unlink()
        else:
            corrupt.unlink()
        await host.compact(force=True)
        assert host.stats()["setAside"] == 0 and host.stats()["setAsideUsers"] == {}
        assert b"bob-" not in log_bytes(await everything(storage))
        await host.journal.close()  # a crash: only what storage holds comes back
        again = await started(open_storage(file_storage), clock)
        lines = await again.export("bob")
        assert [x.get("eventId") for x in lines if x["type"] == "movement"] == bob
        for user, last in (("alice", 2), ("carol", 3)):
            expected = [f"{user}-{i}" for i in range(1, last + 1)]
            assert [m["eventId"] for m in await movements_of(again, user=user)] == expected
        await again.stop()

    run(scenario())


def test_carried_records_replay_once_when_a_crash_comes_before_the_truncation(
    file_storage: str,
) -> None:
    """A compaction carries a set-aside user's records into the log, then cannot truncate it:
    the log holds them twice (where they were committed, and carried). A restart applies
    them once, in the order they were committed."""
    clock = Clock()

    storage = LogKept(file_storage)
    chunks = Path(storage.path(f"{user_key('bob')}/chunks"))

    async def scenario() -> None:
        host = await started(storage, clock)
        await host.create_session("bob", "s1", {"userAgent": "pytest"})
        for _ in range(3):
            assert await host.track("bob", movement(at=clock(), user="bob")) == 1  # no eventIds
        assert await host.track("alice", movement(at=clock(), eventId="a1")) == 1
        chunks.parent.mkdir(parents=True)
        chunks.write_bytes(b"")
        storage.keep_log = True
        with pytest.raises(StorageUnavailable):
            await host.compact(force=True)
        await host.journal.close()  # a crash
        storage.keep_log = False
        chunks.unlink()
        again = await started(storage, clock)
        assert again.stats()["setAside"] == 0
        assert len(await movements_of(again, user="bob")) == 3
        await again.journal.close()
        third = await started(storage, clock)
        assert len(await movements_of(third, user="bob")) == 3
        lines = await third.export("bob")
        assert len([x for x in lines if x["type"] == "movement"]) == 3
        assert [m["eventId"] for m in await movements_of(third)] == ["a1"]
        await third.stop()

    run(scenario())


def test_a_compaction_cancelled_after_its_chunks_landed_is_caught_up_by_the_next(
    file_storage: str,
) -> None:
    """A compaction cancelled once its chunk writes landed but before it recorded them: the
    next compaction finds those chunk numbers taken, reads what they hold, and writes only
    the records they lack. Every event ends up in the history exactly once."""
    landed = asyncio.Event()
    clock = Clock()

    class Files(FileStorage):
        stall = False

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            etag = await super().put(key, data, **kwargs)
            if "/chunks/" in key and self.stall:
                landed.set()
                await asyncio.Event().wait()  # never answers: cancelled while waiting
            return etag

    files = Files(file_storage)

    async def scenario() -> None:
        host = await started(files, clock)
        for user in ("alice", "bob"):
            assert await host.track(user, movement(at=clock(), user=user, eventId=f"{user}-1")) == 1
        files.stall = True
        compaction = asyncio.ensure_future(host.compact(force=True))
        await asyncio.wait_for(landed.wait(), 10)
        compaction.cancel()
        with pytest.raises(asyncio.CancelledError):
            await compaction
        files.stall = False
        assert await host.track("alice", movement(at=clock(), eventId="alice-2")) == 1
        await host.compact(force=True)
        await host.journal.close()  # a crash: only what storage holds comes back
        chunked: list[str] = []
        for info in await files.list_objects("users"):
            if "/chunks/" in info.key:
                chunk = codec.decode("chunk", (await files.get(info.key))[0])
                for record in chunk["records"]:
                    for _session, blob in record[3]:
                        chunked += [str(i) for i in codec.blob_event_ids(blob)]
        assert sorted(chunked) == ["alice-1", "alice-2", "bob-1"]
        again = await started(open_storage(file_storage), clock)
        assert [m["eventId"] for m in await movements_of(again)] == ["alice-1", "alice-2"]
        assert [m["eventId"] for m in await movements_of(again, user="bob")] == ["bob-1"]
        await again.stop()

    run(scenario())


def test_an_opted_out_user_is_stored_by_no_call_whoever_makes_it(storage: Storage) -> None:
    """`TRACKER_OPT_OUT` holds on the host itself, so a program's handles (which do not go
    through the HTTP app's check) store nothing of the user either."""
    clock = Clock()

    async def scenario() -> None:
        host = await started(storage, clock, opt_out=frozenset({"bob"}))
        bob = movement(at=clock(), user="bob", eventId="b1")
        assert await host.track("bob", bob) == 0
        assert await host.track_many("bob", [bob]) == 0
        entries = codec.encode_entries(movements_from_obj([bob], clock()))
        assert await host.track_stored("bob", entries) == 0
        assert await host.track_stored_batch([("bob", entries)]) == [0]
        assert (await host.create_session("bob", "s1"))["declined"]
        assert await host.track("alice", movement(at=clock(), eventId="a1")) == 1
        await host.compact(force=True)
        assert await storage.list_objects(user_key("bob")) == []
        assert [m["eventId"] for m in await movements_of(host)] == ["a1"]
        assert "bob" not in host.slots

    run(scenario())


def test_a_new_session_only_call_leaves_an_existing_session_as_it_was(file_storage: str) -> None:
    """What the HTTP app asks for a caller who has not shown it owns the user: a session that
    exists is neither shown, extended nor changed; `first` tells whether the user had none."""
    clock = Clock()

    async def scenario() -> None:
        host = await started(open_storage(file_storage), clock, opt_out=frozenset({"bob"}))
        started_first = await host.create_new_session("alice", "s1", {"userAgent": "alice"})
        assert started_first.first and started_first.session is not None
        assert started_first.session["deviceInfo"] == {"userAgent": "alice"}
        await host.track("alice", movement(at=clock(), eventId="a1"))
        before = await host.get_session("alice", "s1")
        clock.advance(MINUTE)
        again = await host.create_new_session("alice", "s1", {"userAgent": "mallory"})
        assert (again.session, again.first) == (None, False)
        assert await host.get_session("alice", "s1") == before
        another = await host.create_new_session("alice", "s2", {"userAgent": "mallory"})
        assert another.session is not None and another.session["sessionId"] == "s2"
        assert not another.first  # alice has s1
        declined = await host.create_new_session("bob", "s1")
        assert (declined.session, declined.first) == (None, False)
        assert "bob" not in host.slots

    run(scenario())


def test_a_host_is_idle_once_started_and_holding_no_user(storage: Storage) -> None:
    """What a per-user host's exit waits for: no user in memory, none being activated."""

    async def scenario() -> None:
        clock = Clock()
        host = new_host(storage, clock, passivate_after_ms=MINUTE)
        assert not host.idle()  # not started yet
        await host.start()
        assert host.idle()
        await host.track("alice", movement("alice", at=clock(), eventId="e1"))
        assert not host.idle()
        clock.advance(2 * MINUTE)
        await host.compact(force=True)  # alice's records stored, and she is passivated
        assert host.idle()
        await host.stop()

    run(scenario())
