"""A group-committed, fenced, append-only log of records on object storage.

Layout under `journals/<name>/`:
- `epochs/<E>`: created (create-only) by each incarnation when it opens the journal. Claiming a
  higher epoch fences every older incarnation: after each segment write, a writer checks that no
  newer epoch exists before acknowledging anything, so a zombie's writes are refused (raised as
  `Fenced`) and never acknowledged.
- `log/<E>-<seq>`: one segment per commit, written create-only. Everything appended while a
  commit is in flight goes into the next one: storage writes are bounded by the commit rate,
  not the event rate (Durable Objects' output gates do the same).
- `log/<E>-000000000000`: the *start* segment of epoch E, written once the previous epochs'
  segments were replayed and compacted away. Recovery ignores segments of epochs older than the
  newest started epoch: those can only be a zombie's refused writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tracker import codec
from tracker.errors import Fenced, StorageUnavailable
from tracker.storage import ObjectExists, ObjectMissing, Storage, put_fenced

log = logging.getLogger(__name__)

Position = tuple[int, int]


class Journal:
    """One writer's log. `append` queues records; awaiting the returned future acknowledges them."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name
        self.prefix = f"journals/{name}"
        self.epoch = 0
        self.seq = 0
        self.acked: Position = (0, 0)
        self.bytes_since_truncate = 0
        self.commits = 0
        self.fenced = False
        self._pending: list[Any] = []
        self._waiters: list[asyncio.Future[Position]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._segments: list[tuple[Position, str]] = []

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
        infos = await self.storage.list_objects(f"{self.prefix}/log")
        segments: list[tuple[Position, str]] = []
        started = 0
        for info in infos:
            e, s = (int(p) for p in info.key.rsplit("/", 1)[1].split("-"))
            segments.append(((e, s), info.key))
            if s == 0:
                started = max(started, e)
        replay: list[tuple[Position, list[Any]]] = []
        self._segments = []
        for pos, key in segments:
            if pos[0] < started:
                self._segments.append((pos, key))  # a zombie's refused write: delete later
                continue
            self._segments.append((pos, key))
            if pos[1] == 0:
                continue
            try:
                data, _ = await self.storage.get(key)
            except ObjectMissing:
                continue
            replay.append((pos, codec.decode("segment", data, key)["records"]))
        return replay

    async def start(self) -> None:
        """After replay and compaction: drop the old segments and begin accepting appends."""
        await self.truncate((self.epoch, 0))
        await self.storage.put(
            f"{self.prefix}/log/{self.epoch:010d}-{0:012d}",
            codec.encode("segment", {"records": []}),
            if_absent=True,
        )
        await self.check_fence()
        self.seq = 0
        self.acked = (self.epoch, 0)
        self._task = asyncio.create_task(self._commit_loop(), name=f"journal-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # -- appending -------------------------------------------------------------------------

    def append(self, record: Any) -> asyncio.Future[Position]:
        """Queue a record for the next group commit; the future resolves once it is durable."""
        if self.fenced:
            raise Fenced(f"journal {self.name}: a newer incarnation owns it")
        if self._task is None:
            raise StorageUnavailable(f"journal {self.name} is not open")
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._pending.append(record)
        self._waiters.append(future)
        self._wakeup.set()
        return future

    def last_position(self) -> Position:
        """The newest acknowledged position (a segment still being fence-checked is not)."""
        return self.acked

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                continue
            records, waiters = self._pending, self._waiters
            self._pending, self._waiters = [], []
            try:
                position = await self._write(records)
            except Exception as exc:
                error = exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(str(exc))
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(position)

    async def _write(self, records: list[Any]) -> Position:
        if self.fenced:
            raise Fenced(f"journal {self.name}: a newer incarnation owns it")
        # A key is never reused, not even after a failed write: it may have landed all the
        # same (an answer lost to a timeout), and the next commit would take itself for fenced.
        self.seq += 1
        position = (self.epoch, self.seq)
        key = f"{self.prefix}/log/{self.epoch:010d}-{self.seq:012d}"
        data = codec.encode("segment", {"records": records})
        self._segments.append((position, key))  # listed for truncation even if it fails
        try:
            await put_fenced(self.storage, key, data, self._newer_epoch())
        except ObjectExists:
            self._segments.remove((position, key))  # another's, not this one's to delete
            self.fenced = True
            raise Fenced(f"journal {self.name}: segment {key} was written by another") from None
        except Fenced:
            self.fenced = True
            # Refused: delete it, since epoch order alone hides it from recovery only once the
            # newer incarnation has started (it may die while recovering).
            with contextlib.suppress(StorageUnavailable):
                await self.storage.delete([key])
            raise self._claimed() from None
        self.acked = position
        self.bytes_since_truncate += len(data)
        self.commits += 1
        return position

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
        """Delete segments at or before `upto` (their records are stored elsewhere now)."""
        doomed = [key for pos, key in self._segments if pos <= upto and pos[1] != 0]
        doomed += [key for pos, key in self._segments if pos[0] < upto[0] and pos[1] == 0]
        if doomed:
            await self.storage.delete(doomed)
            gone = set(doomed)
            self._segments = [(p, k) for p, k in self._segments if k not in gone]
        self.bytes_since_truncate = 0
