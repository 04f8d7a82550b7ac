"""A group-committed, fenced, append-only log of records on object storage.

Layout under `journals/<name>/`:
- `epochs/<E>`: created (create-only) by each incarnation when it opens the journal. Claiming a
  higher epoch fences every older incarnation: after each commit's write, a writer checks that
  no newer epoch exists before acknowledging anything, so a zombie's writes are refused (raised
  as `Fenced`), removed again and never acknowledged.
- `log/<E>-<seq>` (object stores): one segment per commit, written create-only. Everything
  appended while a commit is in flight goes into the next one: storage writes are bounded by
  the commit rate, not the event rate (Durable Objects' output gates do the same).
- `log/<E>-<seq>.frames` (local files): the commits of epoch E from `seq` on, one frame each
  (`tracker.filelog`), appended in place and fdatasynced, then fence-checked, in one trip to the
  journal's own thread. That is one write and one sync per commit, where a new object costs a file
  created, synced, linked and unlinked and its folder synced: several times the CPU and the
  latency. A truncation starts a new file, so that compacted files are deleted whole (the one
  that also holds later commits is replaced by a copy of those); so does a failed commit, so
  that a file's frames hold consecutive positions.
- `log/<E>-000000000000`: the *start* segment of epoch E, written once the previous epochs'
  segments were replayed and compacted away, with the records its writer still needs of them
  (a host's alarm requests not yet shipped). Recovery ignores segments of epochs older than
  the newest started epoch: those were compacted already, or are a zombie's refused writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker import codec, filelog
from tracker.committer import Committer
from tracker.errors import Fenced, StorageUnavailable
from tracker.filelog import FrameFile
from tracker.storage import FileStorage, ObjectExists, ObjectMissing, Storage, put_fenced

Position = tuple[int, int]

LOG = "log"
FRAMES = ".frames"
# Reads of the log an `open` makes at most while older incarnations keep changing it.
OPEN_READS = 5


def journal_prefix(name: str) -> str:
    """The storage folder of the journal called `name`."""
    return f"journals/{name}"


def holds_commits(log_key: str) -> bool:
    """Whether an object of a journal's log holds commits (a start segment holds none)."""
    return _Stored.parse(log_key).first[1] != 0


@dataclass
class _Stored:
    """A segment or frames file of the log, and the positions it holds."""

    key: str
    first: Position
    last: Position
    # Frames files this incarnation appended to: the end offset of each acknowledged frame,
    # so that a truncation copies a file's later frames without reading it all.
    ends: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, key: str) -> _Stored:
        epoch, seq = (int(p) for p in key.rsplit("/", 1)[1].removesuffix(FRAMES).split("-"))
        return cls(key, (epoch, seq), (epoch, seq))


class Journal:
    """One writer's log. `append` queues records; awaiting the returned future acknowledges them."""

    def __init__(
        self,
        storage: Storage,
        name: str,
        *,
        linger_s: float = 0.0,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        """`linger_s` and `busy`: a commit that finds `busy()` true first waits `linger_s`, so
        that the records appended meanwhile share its write and sync (a commit costs hundreds
        of µs of CPU however few records it holds). An idle writer commits at once."""
        self.storage = storage
        self.name = name
        self.linger_s = linger_s
        self.busy = busy
        self.prefix = journal_prefix(name)
        self.epoch = 0
        self.seq = 0
        self.acked: Position = (0, 0)
        self.bytes_since_truncate = 0
        self.bytes_committed = 0  # all commits' bytes, from open on (a truncation keeps it)
        self.commits = 0
        self.fenced = False
        self._pending: list[Any] = []
        self._waiters: list[asyncio.Future[Position]] = []
        self._hooks: list[Callable[[Position], None]] = []
        self._fail_hooks: list[Callable[[], None]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stored: list[_Stored] = []
        # The frames file commits go to (local files only), until a truncation or a failure.
        self._appending: tuple[FrameFile, _Stored] | None = None
        # Commits get a thread of their own: in the shared default pool they would queue behind
        # a compaction's hundreds of chunk writes, and every acknowledgement would wait for them.
        self._committer: Committer | None = None

    def _log_key(self, first: Position, suffix: str = "") -> str:
        """The key of the segment (or, with `FRAMES`, frames file) starting at `first`."""
        return f"{self.prefix}/{LOG}/{first[0]:010d}-{first[1]:012d}{suffix}"

    # -- opening ----------------------------------------------------------------------------

    async def open(self) -> list[tuple[Position, list[Any]]]:
        """Claim a new epoch and return the records to replay, oldest first."""
        epochs = [
            int(i.key.rsplit("/", 1)[1])
            for i in await self.storage.list_objects(f"{self.prefix}/epochs")
        ]
        epoch = max(epochs, default=0) + 1
        while True:
            try:
                await self.storage.put(f"{self.prefix}/epochs/{epoch:010d}", b"", if_absent=True)
                break
            except ObjectExists:
                epoch += 1
        self.epoch = epoch
        # An older incarnation that checked its fence before this claim may still be
        # truncating: it copies a file's later frames to a new file, then deletes the file.
        # A file deleted under this read may thus have moved to one not listed: the log is
        # read until a listing after the read agrees with the one before it. (Its next
        # truncation checks the fence first, and is refused.)
        listed = await self._list_log()
        for _attempt in range(OPEN_READS):
            replay = await self._read_log(listed)
            again = await self._list_log()
            if [s.key for s in again] == [s.key for s in listed]:
                self._stored = listed
                return replay
            listed = again
        raise StorageUnavailable(f"journal {self.name}: the log kept changing while it was read")

    async def _list_log(self) -> list[_Stored]:
        infos = await self.storage.list_objects(f"{self.prefix}/{LOG}")
        return sorted((_Stored.parse(info.key) for info in infos), key=lambda s: s.first)

    async def _read_log(self, listed: list[_Stored]) -> list[tuple[Position, list[Any]]]:
        """The records to replay from the log files `listed` (and the last position of each)."""
        started = max((s.first[0] for s in listed if s.first[1] == 0), default=0)
        replay: list[tuple[Position, list[Any]]] = []
        for stored in listed:
            # Before `started`: a zombie's refused writes (or replayed and compacted already),
            # deleted by `start`.
            if stored.first[0] < started:
                continue
            try:
                data, _ = await self.storage.get(stored.key)
            except ObjectMissing:
                continue
            # A frames file may end in a torn frame: a commit that was never acknowledged.
            payloads = filelog.frames(data) if stored.key.endswith(FRAMES) else [data]
            epoch, first = stored.first
            for seq, payload in enumerate(payloads, first):
                if replay and (epoch, seq) <= replay[-1][0]:
                    continue  # also in the copy `truncate` made of a file's later frames
                records = codec.decode("segment", payload, stored.key)["records"]
                if records:  # a start segment holds none
                    replay.append(((epoch, seq), records))
            stored.last = (epoch, first + len(payloads) - 1)
        return replay

    async def start(self, records: Sequence[Any] = ()) -> None:
        """After replay and compaction: drop the old segments and begin accepting appends.

        `records`: what the writer still needs of the records it compacted away, committed
        first (at position 1 of this epoch, an ordinary commit that a later truncation drops)
        before the segments they came from are deleted, so a crash in between loses neither.
        The start segment, which makes recovery ignore the older epochs, is written last."""
        self.seq = 0
        self.acked = (self.epoch, 0)
        if records:
            await self._write(list(records))
        await self.truncate((self.epoch, 0))
        await self.storage.put(
            self._log_key((self.epoch, 0)),
            codec.encode("segment", {"records": []}),
            if_absent=True,
        )
        await self.check_fence()
        self._task = asyncio.create_task(self._commit_loop(), name=f"journal-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        # Records appended and not yet committed are answered, not left waiting forever.
        _fail(
            self._waiters,
            StorageUnavailable(f"journal {self.name} closed before committing"),
            self._fail_hooks,
            closing=True,
        )
        self._pending, self._waiters, self._hooks, self._fail_hooks = [], [], [], []
        await self._stop_appending()
        if self._committer is not None:
            self._committer.stop()  # idle: `_stop_appending` waited for it
            self._committer = None

    async def rotate(self) -> Position:
        """Send the commits from now on to a new frames file (local files; nothing to do on
        object stores), and return `last_position()`: what a compaction may truncate up to.
        The commits that land while it flushes then sit in a file of their own, which the
        truncation keeps as it is, instead of copying them out of the compacted one."""
        await self._stop_appending()
        return self.last_position()

    async def _stop_appending(self) -> None:
        """Close the frames file being appended to; the next commit starts a new one."""
        if self._appending is not None:
            file, self._appending = self._appending[0], None
            await self._in_committer(file.close)  # after an append still in that thread

    def _in_committer(self, work: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        """Run `work` in the journal's own thread (one; created on first use)."""
        if self._committer is None:
            self._committer = Committer(f"journal-commit-{self.name}")
        return self._committer.run(work, *args)

    # -- appending -------------------------------------------------------------------------

    def append(
        self,
        record: Any,
        on_commit: Callable[[Position], None] | None = None,
        on_fail: Callable[[], None] | None = None,
    ) -> asyncio.Future[Position]:
        """Queue a record for the next group commit; the future resolves once it is durable.

        `on_commit(position)`, which must not raise, runs as the commit lands, in the step
        that makes it `last_position()`: whoever reads that position finds the hooks of every
        record at or before it run. (The future's awaiter resumes a step later, when a
        compaction may already have read the position and truncated the log up to it.)
        `on_fail()`, which must not raise either, runs likewise in the step the commit fails.
        """
        if self.fenced:
            raise Fenced(f"journal {self.name}: a newer incarnation owns it")
        if self._task is None:
            raise StorageUnavailable(f"journal {self.name} is not open")
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._pending.append(record)
        self._waiters.append(future)
        if on_commit is not None:
            self._hooks.append(on_commit)
        if on_fail is not None:
            self._fail_hooks.append(on_fail)
        self._wakeup.set()
        return future

    def last_position(self) -> Position:
        """The newest acknowledged position (a segment still being fence-checked is not)."""
        return self.acked

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.linger_s > 0 and self.busy is not None and self.busy():
                await asyncio.sleep(self.linger_s)
            self._wakeup.clear()
            if not self._pending:
                continue
            records, waiters, hooks, fail_hooks = (
                self._pending,
                self._waiters,
                self._hooks,
                self._fail_hooks,
            )
            self._pending, self._waiters, self._hooks, self._fail_hooks = [], [], [], []
            try:
                position = await self._write(records)
            except asyncio.CancelledError:
                # Closed mid-commit: the write may have landed, but it is not confirmed.
                closed = StorageUnavailable(f"journal {self.name} closed while committing")
                _fail(waiters, closed, fail_hooks, closing=True)
                raise
            except Exception as exc:
                _fail(
                    waiters,
                    exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(str(exc)),
                    fail_hooks,
                )
                continue
            for hook in hooks:
                hook(position)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(position)

    async def _write(self, records: list[Any]) -> Position:
        if self.fenced:
            raise Fenced(f"journal {self.name}: a newer incarnation owns it")
        # A position is never reused, not even after a failed write: it may have landed all
        # the same (an answer lost to a timeout), and the next commit would take itself for
        # fenced.
        self.seq += 1
        position = (self.epoch, self.seq)
        data = codec.encode("segment", {"records": records})
        try:
            if isinstance(self.storage, FileStorage):
                written = await self._append_frame(self.storage, position, data)
            else:
                written = await self._put_segment(position, data)
        except ObjectExists as exc:
            self.fenced = True
            raise Fenced(f"journal {self.name}: {exc}, written by another") from None
        except Fenced:
            self.fenced = True
            raise self._claimed() from None
        self.acked = position
        self.bytes_since_truncate += written
        self.bytes_committed += written
        self.commits += 1
        return position

    async def _put_segment(self, position: Position, data: bytes) -> int:
        """Write one commit as its own object; return the bytes written."""
        key = self._log_key(position)
        stored = _Stored(key, position, position)
        self._stored.append(stored)  # listed for truncation even if it fails
        try:
            await put_fenced(self.storage, key, data, self._newer_epoch())
        except ObjectExists:
            self._stored.remove(stored)  # another's, not this one's to delete
            raise
        except Fenced:
            # Refused: delete it, since epoch order alone hides it from recovery only once the
            # newer incarnation has started (it may die while recovering).
            with contextlib.suppress(StorageUnavailable):
                await self.storage.delete([key])
            raise
        return len(data)

    async def _append_frame(self, storage: FileStorage, position: Position, data: bytes) -> int:
        """Append one commit as a frame of the current frames file; return the bytes written.
        A refused or failed frame is cut off again by `FrameFile.append_fenced`."""
        if self._appending is None:
            key = self._log_key(position, FRAMES)
            self._appending = (FrameFile(storage.path(key), key), _Stored(key, position, position))
            self._stored.append(self._appending[1])
        file, stored = self._appending
        stored.last = position  # so that a truncation keeps the file while this is in flight
        try:
            await self._in_committer(file.append_fenced, data, storage.path(self._newer_epoch()))
        except StorageUnavailable as exc:
            if self._appending is not None and self._appending[0] is file:
                self._appending = None  # closed by the failure: the next commit starts anew
            if isinstance(exc, ObjectExists):
                self._stored.remove(stored)
            raise
        size = filelog.HEADER.size + len(data)
        stored.ends.append((stored.ends[-1] if stored.ends else 0) + size)
        return size

    async def check_fence(self) -> None:
        """Raise `Fenced` if a newer incarnation has claimed this journal."""
        try:
            await self.storage.get(self._newer_epoch())
        except ObjectMissing:
            return
        self.fenced = True
        raise self._claimed()

    def _newer_epoch(self) -> str:
        """The key whose existence fences this incarnation."""
        return f"{self.prefix}/epochs/{self.epoch + 1:010d}"

    def _claimed(self) -> Fenced:
        return Fenced(f"journal {self.name}: epoch {self.epoch + 1} has been claimed")

    # -- compaction ------------------------------------------------------------------------

    async def truncate(self, upto: Position) -> None:
        """Delete segments at or before `upto` (their records are stored elsewhere now).

        The current frames file is closed first, so commits from now on go to a new file. A
        frames file holding positions on both sides of `upto` (commits that landed while the
        caller compacted) is replaced by a copy of its later frames: what was compacted must
        not stay behind them (an erased user's records, say), nor be replayed again.

        Checks the fence first: a newer incarnation may be reading the files this deletes.
        """
        await self.check_fence()
        doomed = [
            s.key
            for s in self._stored
            if (s.last <= upto and s.first[1] != 0) or (s.first[0] < upto[0] and s.first[1] == 0)
        ]
        straddling = [s for s in self._stored if s.first <= upto < s.last]
        self.bytes_since_truncate = 0
        await self._stop_appending()  # from here on, no file in `_stored` is appended to
        for stored in straddling:
            await self._copy_after(stored, upto)
            doomed.append(stored.key)
        if doomed:
            await self.storage.delete(doomed)
            gone = set(doomed)
            self._stored = [s for s in self._stored if s.key not in gone]

    async def _copy_after(self, stored: _Stored, upto: Position) -> None:
        """Write the frames of `stored` after `upto` to a frames file of their own.

        Recovery replays a position once, so a crash before `stored` is deleted is harmless."""
        epoch, first = stored.first
        skip = upto[1] + 1 - first  # frames of `stored` at or before `upto`
        offset = stored.ends[skip - 1] if 0 < skip <= len(stored.ends) else 0
        assert isinstance(self.storage, FileStorage)  # frames files are local files
        try:
            data = await asyncio.to_thread(filelog.read_from, self.storage.path(stored.key), offset)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {stored.key}: {exc.strerror or exc}") from exc
        kept = filelog.frames(data)[0 if offset else skip :]
        if not kept:
            return
        key = self._log_key((epoch, upto[1] + 1), FRAMES)
        await self.storage.put(key, b"".join(filelog.frame(p) for p in kept))
        if all(s.key != key for s in self._stored):  # a retry rewrote it
            self._stored.append(_Stored(key, (epoch, upto[1] + 1), (epoch, upto[1] + len(kept))))


def _fail(
    waiters: list[asyncio.Future[Position]],
    error: StorageUnavailable,
    hooks: list[Callable[[], None]],
    *,
    closing: bool = False,
) -> None:
    """Run the failure `hooks` and answer `waiters` with `error`. `closing`: a stop, where a
    caller that is gone already (cancelled with the actor's other work) is expected; its
    answer is not logged as lost."""
    for hook in hooks:
        hook()
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)
            if closing:
                waiter.exception()  # marks it retrieved: asyncio logs unretrieved errors
