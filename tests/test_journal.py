"""The journal: group commit, fencing of older incarnations, recovery of what was acknowledged."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.errors import Fenced, StorageUnavailable
from tracker.journal import Journal
from tracker.storage import Storage, open_storage

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def records_of(replay: list[tuple[Any, list[Any]]]) -> list[Any]:
    return [record for _position, records in replay for record in records]


async def opened(storage: Storage, name: str = "j") -> tuple[Journal, list[Any]]:
    journal = Journal(storage, name)
    replay = records_of(await journal.open())
    await journal.start()
    return journal, replay


@pytest.fixture
def storage(storage_url: str) -> Storage:
    return open_storage(storage_url)


def test_concurrent_appends_share_few_commits(storage: Storage) -> None:
    async def scenario() -> None:
        journal, _ = await opened(storage)
        positions = await asyncio.gather(*(journal.append(["r", i]) for i in range(100)))
        assert len(set(positions)) == journal.commits <= 5
        segments = await storage.list_objects("journals/j/log")
        assert len(segments) == journal.commits + 1  # and the epoch's start segment
        await journal.close()
        again = Journal(storage, "j")
        assert records_of(await again.open()) == [["r", i] for i in range(100)]

    run(scenario())


def test_recovery_replays_acknowledged_records_in_order(storage: Storage) -> None:
    async def scenario() -> list[Any]:
        journal, _ = await opened(storage)
        for i in range(5):
            await journal.append(["one", i])
        await asyncio.gather(*(journal.append(["many", i]) for i in range(5)))
        return []  # no close: the process "crashes" here

    run(scenario())

    async def reopen() -> list[Any]:
        return records_of(await Journal(storage, "j").open())

    assert run(reopen()) == [["one", i] for i in range(5)] + [["many", i] for i in range(5)]


def test_a_second_open_fences_the_first_whose_refused_records_never_come_back(
    storage: Storage,
) -> None:
    async def scenario() -> None:
        first, _ = await opened(storage)
        await first.append(["acked", 1])
        second = Journal(storage, "j")
        assert records_of(await second.open()) == [["acked", 1]]
        with pytest.raises(Fenced):
            await first.append(["refused", 2])
        with pytest.raises(Fenced):
            first.append(["refused", 3])
        assert isinstance(Fenced("x"), StorageUnavailable)
        await second.start()
        await second.append(["new", 4])
        with pytest.raises(Fenced):
            first.append(["refused", 5])
        third = Journal(storage, "j")
        assert records_of(await third.open()) == [["new", 4]]

    run(scenario())


def test_records_refused_while_the_new_incarnation_recovers_are_not_replayed_later(
    storage: Storage,
) -> None:
    async def scenario() -> None:
        first, _ = await opened(storage)
        await first.append(["acked", 1])
        second = Journal(storage, "j")
        assert records_of(await second.open()) == [["acked", 1]]
        with pytest.raises(Fenced):
            await first.append(["refused", 2])
        # The second incarnation dies before it starts; a third one recovers.
        third = Journal(storage, "j")
        assert records_of(await third.open()) == [["acked", 1]]

    run(scenario())


def test_a_journal_not_started_refuses_appends(storage: Storage) -> None:
    async def scenario() -> None:
        journal = Journal(storage, "j")
        await journal.open()
        with pytest.raises(StorageUnavailable):
            journal.append(["too", "early"])

    run(scenario())


def test_truncate_drops_segments_up_to_a_position(storage: Storage) -> None:
    async def scenario() -> None:
        journal, _ = await opened(storage)
        await journal.append(["a"])
        upto = journal.last_position()
        await journal.append(["b"])
        await journal.truncate(upto)
        assert journal.bytes_since_truncate == 0
        assert records_of(await Journal(storage, "j").open()) == [["b"]]

    run(scenario())


class FailingStorage:
    """Passes calls through, but every write to a log segment fails (an outage)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url
        self.failing = False
        self.ambiguous = False

    async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if self.failing and "/log/" in key:
            if self.ambiguous:  # written, but the answer was lost (a timeout)
                await self.inner.put(key, data, **kwargs)
            raise StorageUnavailable(f"injected outage writing {key}")
        return await self.inner.put(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("ambiguous", [False, True], ids=["refused", "lost-answer"])
def test_a_failed_commit_raises_and_the_journal_keeps_working_afterwards(
    file_storage: str, ambiguous: bool
) -> None:
    storage = FailingStorage(open_storage(file_storage))
    storage.ambiguous = ambiguous

    async def scenario() -> None:
        journal, _ = await opened(storage)
        await journal.append(["before"])
        storage.failing = True
        failed = [journal.append(["lost", i]) for i in range(3)]
        for future in failed:
            with pytest.raises(StorageUnavailable) as info:
                await future
            assert not isinstance(info.value, Fenced)
        storage.failing = False
        await journal.append(["after"])
        replayed = records_of(await Journal(storage, "j").open())
        acknowledged = [["before"], ["after"]]
        assert [r for r in replayed if r in acknowledged] == acknowledged

    run(scenario())


# -- property: whatever was acknowledged before a crash is replayed, in order ---------------------


@settings(max_examples=25, deadline=None)
@given(
    lives=st.lists(
        st.tuples(st.lists(st.integers(1, 8), max_size=5), st.integers(0, 5)),
        min_size=1,
        max_size=4,
    )
)
def test_recovery_replays_every_acknowledged_record_in_order(
    lives: list[tuple[list[int], int]],
) -> None:
    """Each life: open, start, append groups (each group concurrently, awaited), then append a
    few more without waiting and crash. The next life must replay all acknowledged records of
    the previous one, in order; extra records may only be its unacknowledged ones."""
    counter = iter(range(1_000_000))
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(f"file://{Path(tmp) / 'data'}")
        acked: list[Any] = []
        unacked: list[Any] = []
        for groups, crash_with in lives:
            acked, unacked = run(life(storage, acked, unacked, groups, crash_with, counter))
        replayed = run(replay_only(storage))
        check(replayed, acked, unacked)


async def life(
    storage: Storage,
    acked: list[Any],
    unacked: list[Any],
    groups: list[int],
    crash_with: int,
    counter: Any,
) -> tuple[list[Any], list[Any]]:
    journal = Journal(storage, "j")
    check(records_of(await journal.open()), acked, unacked)
    await journal.start()
    now_acked: list[Any] = []
    for size in groups:
        records = [["r", next(counter)] for _ in range(size)]
        await asyncio.gather(*(journal.append(r) for r in records))
        now_acked.extend(records)
    pending = [["p", next(counter)] for _ in range(crash_with)]
    for record in pending:
        journal.append(record)
    return now_acked, pending  # returning ends the event loop: a crash without close()


async def replay_only(storage: Storage) -> list[Any]:
    return records_of(await Journal(storage, "j").open())


def check(replayed: list[Any], acked: list[Any], unacked: list[Any]) -> None:
    assert [r for r in replayed if r in acked] == acked
    assert all(r in unacked for r in replayed if r not in acked)
    numbers = [r[1] for r in replayed]
    assert numbers == sorted(numbers)
