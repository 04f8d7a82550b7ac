"""The journal: group commit, fencing of older incarnations, recovery of what was acknowledged."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import run

from tracker import codec, filelog
from tracker.errors import Fenced, StorageUnavailable
from tracker.journal import Journal
from tracker.storage import FileStorage, Storage, open_storage


def records_of(replay: list[tuple[Any, list[Any]]]) -> list[Any]:
    return [record for _position, records in replay for record in records]


async def opened(storage: Storage, name: str = "j", **options: Any) -> tuple[Journal, list[Any]]:
    journal = Journal(storage, name, **options)
    replay = records_of(await journal.open())
    await journal.start()
    return journal, replay


async def commit_begun() -> None:
    """A few turns of the event loop: a commit woken by an append has begun (it is writing
    the records, or lingering before it takes them)."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
def local_storage(file_storage: str) -> FileStorage:
    """File storage, where the journal writes frames files."""
    storage = open_storage(file_storage)
    assert isinstance(storage, FileStorage)
    return storage


@pytest.mark.parametrize("busy", [False, True])
def test_a_busy_writers_commit_lingers_for_the_records_that_follow(
    local_storage: FileStorage, busy: bool
) -> None:
    async def scenario() -> None:
        journal, _ = await opened(local_storage, linger_s=0.5, busy=lambda: busy)
        first = journal.append(["a"])
        await commit_begun()
        second = journal.append(["b"])
        positions = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
        # Idle: "a" went alone, at once. Busy: "b" joined it.
        assert (positions[0] == positions[1]) is busy
        assert journal.commits == (1 if busy else 2)
        await journal.close()

    run(scenario())


def test_concurrent_appends_share_few_commits(storage: Storage) -> None:
    async def scenario() -> None:
        journal, _ = await opened(storage)
        positions = await asyncio.gather(*(journal.append(["r", i]) for i in range(100)))
        assert len(set(positions)) == journal.commits <= 5
        segments = await storage.list_objects("journals/j/log")
        # One object per commit, or one frames file for them all; and the start segment.
        per_commit = 1 if isinstance(storage, FileStorage) else journal.commits
        assert len(segments) == per_commit + 1
        await journal.close()
        again = Journal(storage, "j")
        assert records_of(await again.open()) == [["r", i] for i in range(100)]

    run(scenario())


def test_a_records_commit_hook_has_run_once_its_position_is_the_last(storage: Storage) -> None:
    """What a compaction relies on: when `last_position()` shows a commit, the hooks of its
    records have run, though the callers awaiting them have not resumed yet."""

    async def scenario() -> None:
        journal, _ = await opened(storage)
        hooked: dict[int, tuple[int, int]] = {}
        seen: list[tuple[tuple[int, int], dict[int, tuple[int, int]]]] = []

        def hook(i: int) -> Callable[[tuple[int, int]], None]:
            return lambda position: hooked.__setitem__(i, position)

        async def watch() -> None:
            while len(hooked) < 60:  # every step until the last commit's hooks ran
                seen.append((journal.last_position(), dict(hooked)))
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        for wave in range(3):
            appended = [
                journal.append(["r", 20 * wave + i], hook(20 * wave + i)) for i in range(20)
            ]
            assert await asyncio.gather(*appended) == [hooked[20 * wave + i] for i in range(20)]
        await asyncio.wait_for(watcher, 10)
        assert len({last for last, _ in seen}) >= 3  # it saw the commits land
        for last, hooks_then in seen:
            assert all(i in hooks_then for i, position in hooked.items() if position <= last)
        await journal.close()

    run(scenario())


def test_a_journal_dropped_without_closing_leaves_no_thread_behind(tmp_path: Path) -> None:
    """A caller that crashes never closes its journal: the commit thread must still end."""
    name = f"dropped-{os.getpid()}-{id(tmp_path)}"
    threads: list[threading.Thread] = []

    async def scenario() -> None:
        journal, _ = await opened(FileStorage(f"file://{tmp_path}"), name)
        await journal.append(["r", 1])  # the commit thread is running now
        threads.extend(t for t in threading.enumerate() if t.name == f"journal-commit-{name}")

    run(scenario())
    gc.collect()
    assert len(threads) == 1
    threads[0].join(timeout=10)
    assert not threads[0].is_alive()


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


class Pausing(FileStorage):
    """Real files, but the first `op` ("get" or "put") on a key `matches` picks waits until
    the test sets `go`: it holds one incarnation at a point while another one acts, a
    schedule that cannot be produced otherwise."""

    def __init__(self, url: str, op: str, matches: Callable[[str], bool]) -> None:
        super().__init__(url)
        self.op = op
        self.matches = matches
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    async def _pause(self, op: str, key: str) -> None:
        if op == self.op and self.matches(key) and not self.go.is_set():
            self.reached.set()
            await self.go.wait()

    async def get(self, key: str) -> tuple[bytes, str]:
        await self._pause("get", key)
        return await super().get(key)

    async def put(self, key: str, data: bytes, **options: Any) -> str:
        await self._pause("put", key)
        return await super().put(key, data, **options)


def test_an_open_while_a_zombie_truncates_still_replays_the_frames_it_moved(
    file_storage: str,
) -> None:
    """The older incarnation checked its fence before the newer one claimed the journal, and
    moves its file's later frames to a new file while the newer one reads the log."""

    def frames(key: str) -> bool:
        return key.endswith(".frames")

    async def scenario() -> None:
        zombie_files = Pausing(file_storage, "put", frames)
        zombie, _ = await opened(zombie_files)
        compacted = await zombie.append(["compacted", 1])
        await zombie.append(["acked", 2])
        truncating = asyncio.create_task(zombie.truncate(compacted))
        await zombie_files.reached.wait()  # fence checked; the copy is about to be written
        newer_files = Pausing(file_storage, "get", frames)
        opening = asyncio.create_task(Journal(newer_files, "j").open())
        await newer_files.reached.wait()  # claimed and listed; about to read the old file
        zombie_files.go.set()
        await truncating  # the later frame copied, the old file deleted
        newer_files.go.set()
        assert records_of(await opening) == [["acked", 2]]

    run(scenario())


def test_a_zombies_truncation_is_refused_and_deletes_nothing(storage: Storage) -> None:
    async def scenario() -> None:
        zombie, _ = await opened(storage)
        upto = await zombie.append(["a"])
        await zombie.append(["b"])
        await Journal(storage, "j").open()  # a newer incarnation, dead before it started
        with pytest.raises(Fenced):
            await zombie.truncate(upto)
        assert records_of(await Journal(storage, "j").open()) == [["a"], ["b"]]

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


# -- local files: commits as frames appended to one file per epoch and truncation ---------------


async def frames_files(storage: Storage) -> list[str]:
    """The frames files of journal "j", as `<epoch>-<first seq>`."""
    keys = [i.key for i in await storage.list_objects("journals/j/log")]
    return [k.rsplit("/", 1)[1].removesuffix(".frames") for k in keys if k.endswith(".frames")]


def frames_path(storage: FileStorage, name: str) -> Path:
    return Path(storage.path(f"journals/j/log/{name}.frames"))


def test_acknowledged_frames_replay_exactly_after_abrupt_stops_across_rotations_and_epochs(
    file_storage: str,
) -> None:
    storage = open_storage(file_storage)

    async def first_life() -> None:
        journal, _ = await opened(storage)
        await journal.append(["a"])
        await journal.append(["b"])
        await journal.truncate(journal.last_position())  # its whole file goes
        await journal.append(["c"])
        upto = journal.last_position()
        await asyncio.gather(journal.append(["d"]), journal.append(["e"]))
        await journal.truncate(upto)  # its file holds a later frame: that one is copied
        await journal.append(["f"])
        assert await frames_files(storage) == ["0000000001-000000000004", "0000000001-000000000005"]
        # No close: the process "crashes" here.

    async def second_life() -> list[tuple[Any, list[Any]]]:
        journal = Journal(storage, "j")
        replay = await journal.open()
        await journal.start()
        await journal.append(["g"])
        return replay

    async def third_life() -> list[tuple[Any, list[Any]]]:
        return await Journal(storage, "j").open()

    run(first_life())
    assert run(second_life()) == [
        ((1, 4), [["d"], ["e"]]),
        ((1, 5), [["f"]]),
    ]
    assert run(third_life()) == [((2, 1), [["g"]])]


def frames_on_disk(storage: FileStorage) -> dict[str, list[Any]]:
    """The records of each frames file of journal "j", by `<epoch>-<first seq>`."""
    found = {}
    for path in sorted(Path(storage.path("journals/j/log")).glob("*.frames")):
        payloads = filelog.frames(path.read_bytes())
        found[path.stem] = [codec.decode("segment", p, path.name)["records"] for p in payloads]
    return found


def test_truncate_deletes_frames_files_wholly_compacted_and_copies_the_rest_of_one_that_is_not(
    local_storage: FileStorage,
) -> None:

    async def scenario() -> None:
        journal, _ = await opened(local_storage)
        first = await journal.append(["a"])
        await journal.append(["b"])
        await journal.truncate(first)
        assert frames_on_disk(local_storage) == {"0000000001-000000000002": [[["b"]]]}
        third = await journal.append(["c"])
        await journal.append(["d"])
        await journal.truncate(third)
        assert frames_on_disk(local_storage) == {"0000000001-000000000004": [[["d"]]]}
        await journal.append(["e"])
        await journal.truncate(journal.last_position())
        assert frames_on_disk(local_storage) == {}
        await journal.close()

    run(scenario())


def test_frames_copied_by_a_truncation_cut_short_by_a_crash_replay_once(
    local_storage: FileStorage,
) -> None:

    async def crashed() -> None:
        journal, _ = await opened(local_storage)
        for name in ("a", "b", "c"):
            await journal.append([name])

    run(crashed())
    whole = frames_path(local_storage, "0000000001-000000000001")
    later = b"".join(filelog.frame(p) for p in filelog.frames(whole.read_bytes())[1:])
    frames_path(local_storage, "0000000001-000000000002").write_bytes(later)
    replay = run(Journal(local_storage, "j").open())
    assert replay == [((1, 1), [["a"]]), ((1, 2), [["b"]]), ((1, 3), [["c"]])]


@pytest.mark.parametrize(
    ("tear", "survivors"),
    [
        (lambda data: data + b"\x00\x00\x00", 3),  # a header cut short
        (lambda data: data + b"\x00\x00\x00\x09\x00\x00\x00\x00abc", 3),  # a payload too
        (lambda data: data + bytes(64), 3),  # a zero-filled tail
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), 2),  # the last frame's last byte
    ],
    ids=["short-header", "short-payload", "zeros", "flipped-byte"],
)
def test_a_torn_last_frame_is_skipped_and_the_earlier_ones_replay(
    local_storage: FileStorage, tear: Callable[[bytes], bytes], survivors: int
) -> None:
    names = ["a", "b", "c"]

    async def crashed() -> None:
        journal, _ = await opened(local_storage)
        for name in names:
            await journal.append([name])

    run(crashed())
    path = frames_path(local_storage, "0000000001-000000000001")
    path.write_bytes(tear(path.read_bytes()))

    async def recovered() -> None:
        journal = Journal(local_storage, "j")
        assert records_of(await journal.open()) == [[name] for name in names[:survivors]]
        await journal.start()
        assert await frames_files(local_storage) == []  # the torn file is gone with its epoch
        await journal.append(["d"])
        assert records_of(await Journal(local_storage, "j").open()) == [["d"]]

    run(recovered())


def test_a_zombies_refused_frame_is_cut_off_and_never_replayed(local_storage: FileStorage) -> None:

    async def scenario() -> None:
        zombie, _ = await opened(local_storage)
        await zombie.append(["acked"])
        path = frames_path(local_storage, "0000000001-000000000001")
        size = path.stat().st_size
        second = Journal(local_storage, "j")
        assert records_of(await second.open()) == [["acked"]]
        with pytest.raises(Fenced):
            await zombie.append(["refused"])
        assert path.stat().st_size == size
        # The second incarnation dies before its start segment; a third one recovers.
        third = Journal(local_storage, "j")
        assert records_of(await third.open()) == [["acked"]]
        await third.start()
        await third.append(["new"])
        assert records_of(await Journal(local_storage, "j").open()) == [["new"]]
        await zombie.close()

    run(scenario())


def short_writev(real: Any) -> Any:
    """`os.writev` that writes only half of what it is given (a disk filling up)."""

    def writev(fd: int, parts: Any) -> int:
        data = b"".join(bytes(p) for p in parts)
        return int(real(fd, [data[: len(data) // 2]]))

    return writev


def failing_write(fd: int, data: Any) -> int:
    raise OSError(28, "No space left on device")


def failing_sync(fd: int) -> None:
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize("failure", ["write", "sync"])
def test_a_failed_frame_is_cut_off_and_commits_continue_in_a_new_file(
    local_storage: FileStorage, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    async def scenario() -> None:
        journal, _ = await opened(local_storage)
        await journal.append(["before"])
        size = frames_path(local_storage, "0000000001-000000000001").stat().st_size
        with monkeypatch.context() as patch:
            if failure == "write":
                patch.setattr(os, "writev", short_writev(os.writev))
                patch.setattr(os, "write", failing_write)
            else:
                patch.setattr(os, "fdatasync", failing_sync)
            with pytest.raises(StorageUnavailable) as info:
                await journal.append(["lost"])
            assert not isinstance(info.value, Fenced)
        assert frames_path(local_storage, "0000000001-000000000001").stat().st_size == size
        await journal.append(["after"])
        assert await frames_files(local_storage) == [
            "0000000001-000000000001",
            "0000000001-000000000003",
        ]
        assert await Journal(local_storage, "j").open() == [
            ((1, 1), [["before"]]),
            ((1, 3), [["after"]]),
        ]

    run(scenario())


def test_segments_written_one_object_per_commit_still_replay(storage: Storage) -> None:
    """A log left by the version that wrote every commit as its own object."""

    async def scenario() -> None:
        await storage.put("journals/j/epochs/0000000001", b"", if_absent=True)
        for seq, records in enumerate([[], [["a"]], [["b"], ["c"]]]):
            segment = codec.encode("segment", {"records": records})
            await storage.put(f"journals/j/log/0000000001-{seq:012d}", segment)
        journal = Journal(storage, "j")
        assert await journal.open() == [((1, 1), [["a"]]), ((1, 2), [["b"], ["c"]])]
        await journal.start()
        await journal.append(["d"])
        assert await Journal(storage, "j").open() == [((2, 1), [["d"]])]

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


def test_records_waiting_for_a_commit_are_answered_when_the_journal_closes(
    local_storage: FileStorage,
) -> None:
    async def scenario() -> None:
        # Busy, with a long linger: the commit of "a" is waiting when the journal closes.
        journal, _ = await opened(local_storage, linger_s=60.0, busy=lambda: True)
        waiting = journal.append(["a"])
        await commit_begun()
        await journal.close()
        with pytest.raises(StorageUnavailable, match="closed"):
            await asyncio.wait_for(waiting, timeout=10)
        with pytest.raises(StorageUnavailable):
            journal.append(["b"])

    run(scenario())
