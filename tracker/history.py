"""Users' stored histories: the layout a host writes them in, and reads them back from.

A user's folder (`users/<h2>/<h38>`, from `user_key`) holds their history as numbered chunks
(`chunks/<n>`, create-only), each holding records a host committed for them and, per host,
the highest log position the history holds, and a `snapshot` of the live state (replaced if
unchanged) that covers the chunks up to its `through`. Activation reads the snapshot and the
chunks past it. A host appends a user's next chunk at compaction; if another host took that
number first (the user moved between hosts, or an older incarnation of this one wrote it), it
catches up on what was written and appends after it, without what it held already.

A user whose chunk cannot be written is set aside: their records ride in the host's log, in
`CARRY` records, until a compaction writes them; `replayed` reads a host's log back into each
user's records to apply when the host starts.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tracker import codec
from tracker.codec import Record
from tracker.errors import Fenced, StorageUnavailable
from tracker.journal import Position
from tracker.storage import (
    ObjectExists,
    ObjectInfo,
    PreconditionFailed,
    Put,
    Storage,
    put_all,
    read_tail,
)
from tracker.user_tracker import Limits, UserTracker

# A compaction writes the users' chunks (and then snapshots) this many users at a time, with
# this many groups in flight: on files a group is one thread hop (`storage.put_all`).
FLUSH_GROUP = 32
FLUSH_GROUPS = 4


def user_key(user_id: str) -> str:
    """Storage folder of a user: a hash, so no user ID can escape or collide in key space."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()
    return f"users/{digest[:2]}/{digest[2:40]}"


class UserSlot:
    """A user held in memory, with what is known about their storage."""

    __slots__ = (
        "applied",
        "armed",
        "bytes_since_snapshot",
        "committed",
        "etag",
        "failed",
        "inflight",
        "last_access_ms",
        "last_commit",
        "next_chunk",
        "snapshot_through",
        "stale",
        "tracker",
    )

    def __init__(self, tracker: UserTracker) -> None:
        self.tracker = tracker
        self.applied: dict[str, Position] = {}
        self.committed: list[tuple[Position, Record]] = []
        self.inflight = 0
        self.last_commit: asyncio.Future[Position] | None = None
        self.next_chunk = 1
        self.snapshot_through = 0
        self.bytes_since_snapshot = 0
        self.etag: str | None = None
        self.last_access_ms = 0
        self.stale = False
        # A commit of this user failed: memory may hold what storage refused. (`stale` alone
        # may also mean memory misses records another host stored, which refuses nothing.)
        self.failed = False
        self.armed = False

    def mark_failed(self) -> None:
        self.failed = True
        self.stale = True


# A log record holding a set-aside user's records (their chunk could not be written), carried
# past a truncation: `["carry", user_id, now_ms, [[position, record], ...]]`, each at the
# position it was committed at.
CARRY = "carry"
# A host log's records to apply, by user, under their (position, rank at that position).
Replayed = dict[str, dict[tuple[Position, int], Record]]
# Users whose writes failed in a flush, with the error.
Failures = list[tuple[UserSlot, Exception]]


@dataclass(frozen=True, eq=False)
class Chunk:
    """A user's next history chunk, encoded: the records it holds and what they apply."""

    slot: UserSlot
    taken: list[tuple[Position, Record]]
    applied: dict[str, Position]
    number: int
    key: str
    data: bytes


class History:
    """The histories of the users of the host `host`, in `storage`."""

    def __init__(self, storage: Storage, host: str) -> None:
        self.storage = storage
        self.host = host

    async def load(self, user_id: str, limits: Limits) -> UserSlot:
        """The user as stored: their snapshot, then the chunks past it, in one round."""
        slot = UserSlot(UserTracker(user_id, limits))
        key = user_key(user_id)
        snapshot: dict[str, Any] | None = None

        def past_snapshot(data: bytes | None, listed: list[ObjectInfo]) -> list[ObjectInfo]:
            nonlocal snapshot
            if data is None:
                return chunks_past(listed, 0)
            snapshot = codec.decode("snapshot", data, f"{key}/snapshot")
            return chunks_past(listed, snapshot["through"])

        found, listed, chunks = await read_tail(
            self.storage, f"{key}/snapshot", f"{key}/chunks", past_snapshot
        )
        if found is not None and snapshot is not None:
            slot.tracker.restore(
                snapshot["sessions"], snapshot.get("seen", ()), snapshot.get("assignments")
            )
            slot.applied = {h: (p[0], p[1]) for h, p in snapshot["applied"].items()}
            slot.snapshot_through = snapshot["through"]
            slot.next_chunk = snapshot["through"] + 1
            slot.etag = found[1]
        apply_chunks(slot, listed, chunks, apply=True)
        return slot

    async def records(self, user_id: str) -> list[Record]:
        """All the records of the user's history chunks, in order."""
        _, records = await stored_records(self.storage, user_key(user_id))
        return records

    async def delete(self, user_id: str) -> int:
        """Delete everything stored of the user; return how many objects were."""
        return await self.storage.delete_folder(user_key(user_id))

    async def flush(
        self, slots: list[UserSlot], upto: Position | None, unread: Mapping[str, Exception]
    ) -> Failures:
        """Write each user's committed records (up to `upto`) as their next history chunk,
        then their snapshot if one is due: `FLUSH_GROUP` users at a time, `FLUSH_GROUPS`
        groups in flight. Returns the users whose writes failed, with the error. A user whose
        history could not be read (`unread`, with why) is not written to blind."""
        failures: Failures = [
            (slot, unread[slot.tracker.user_id]) for slot in slots if slot.tracker.user_id in unread
        ]
        pending = [s for s in slots if s.committed and s.tracker.user_id not in unread]
        semaphore = asyncio.Semaphore(FLUSH_GROUPS)

        async def flush(group: list[UserSlot]) -> Failures:
            async with semaphore:
                return await self._flush_group(group, upto)

        groups = [pending[at : at + FLUSH_GROUP] for at in range(0, len(pending), FLUSH_GROUP)]
        results = await asyncio.gather(*(flush(g) for g in groups), return_exceptions=True)
        for group, result in zip(groups, results, strict=True):
            if isinstance(result, Exception):
                failures.extend((slot, result) for slot in group)
            elif isinstance(result, BaseException):  # cancelled: not a write's outcome
                raise result
            else:
                failures.extend(result)
        return failures

    async def _flush_group(self, slots: list[UserSlot], upto: Position | None) -> Failures:
        """A group of users' chunks, then their snapshots that are due, each kind written
        together (`put_all`: one thread hop on files). Encoded a group at a time, so a
        compaction holds a copy of a group's histories, not of every user's; and a user's
        snapshot is decided right after their chunk lands, while they are likely quiet.
        A user whose next chunk another host wrote meanwhile is caught up and written on
        its own after."""
        chunks = [
            self._chunk(slot, taken)
            for slot in slots
            if (taken := [(p, r) for p, r in slot.committed if upto is None or p <= upto])
        ]
        written = await put_all(self.storage, [Put(c.key, c.data, if_absent=True) for c in chunks])
        failures: Failures = []
        contested: list[UserSlot] = []
        done: list[Chunk] = []
        for chunk, result in zip(chunks, written, strict=True):
            if isinstance(result, ObjectExists):
                contested.append(chunk.slot)
            elif isinstance(result, Exception):
                failures.append((chunk.slot, result))
            else:
                chunk_written(chunk)
                done.append(chunk)
        failures.extend(await self._snapshots([c for c in done if snapshot_due(c.slot)]))
        alone = [self._flush_user(slot, upto, contested=True) for slot in contested]
        outcomes = await asyncio.gather(*alone, return_exceptions=True)
        for slot, failure in zip(contested, outcomes, strict=True):
            if isinstance(failure, Exception):
                failures.append((slot, failure))
            elif isinstance(failure, BaseException):
                raise failure
        return failures

    async def _snapshots(self, due: list[Chunk]) -> Failures:
        """The snapshots of the users whose chunks `due` just landed, written together."""
        snapshots = [snapshot_put(c.slot, through=c.number) for c in due]
        stored = await put_all(self.storage, snapshots)
        failures: Failures = []
        for put, chunk, outcome in zip(snapshots, due, stored, strict=True):
            try:
                snapshot_written(chunk.slot, put, chunk.number, outcome)
            except Exception as exc:
                failures.append((chunk.slot, exc))
        return failures

    async def _flush_user(
        self, slot: UserSlot, upto: Position | None, *, contested: bool = False
    ) -> None:
        """One user's chunk on its own, appended after the chunks other hosts wrote (or an
        earlier compaction of this host, cancelled after its write landed); `contested`:
        the chunk number is known to be taken already."""
        taken = [(p, r) for p, r in slot.committed if upto is None or p <= upto]
        if contested and taken:
            taken = await self._catch_up(slot, taken)
        if not taken:
            return
        for _attempt in range(3):
            chunk = self._chunk(slot, taken)
            try:
                await self.storage.put(chunk.key, chunk.data, if_absent=True)
                break
            except ObjectExists:
                # Another host wrote this user's history meanwhile: it took the user over
                # (TRACKER_HOSTS changed), or it is an older incarnation of this one. Append
                # after what it wrote, without what it wrote of ours already.
                taken = await self._catch_up(slot, taken)
                if not taken:
                    return
        else:
            raise Fenced(f"{chunk.key}: other hosts keep writing this user's history")
        chunk_written(chunk)
        if snapshot_due(slot):
            await self.write_snapshot(slot, through=chunk.number)

    def _chunk(self, slot: UserSlot, taken: list[tuple[Position, Record]]) -> Chunk:
        """The user's next history chunk, holding the records `taken`."""
        user_id = slot.tracker.user_id
        applied = dict(slot.applied)
        applied[self.host] = max(applied.get(self.host, (0, 0)), max(p for p, _ in taken))
        data = codec.encode(
            "chunk",
            {
                "user": user_id,
                "records": [r for _, r in taken],
                "applied": {h: list(p) for h, p in applied.items()},
            },
        )
        key = f"{user_key(user_id)}/chunks/{slot.next_chunk:012d}"
        return Chunk(slot, taken, applied, slot.next_chunk, key, data)

    async def _catch_up(
        self, slot: UserSlot, taken: list[tuple[Position, Record]]
    ) -> list[tuple[Position, Record]]:
        """Read the chunks others wrote past `slot.next_chunk`; return what of `taken` they
        do not hold yet. The user's memory misses their records: it is reloaded before its
        next use."""
        slot.stale = True
        after = slot.next_chunk - 1
        _, listed, chunks = await read_tail(
            self.storage,
            None,
            f"{user_key(slot.tracker.user_id)}/chunks",
            lambda _data, listed: chunks_past(listed, after),
        )
        apply_chunks(slot, listed, chunks, apply=False)
        written = slot.applied.get(self.host, (0, 0))
        kept = [(p, r) for p, r in taken if p > written]
        if len(kept) < len(taken):
            done = {id(r) for p, r in taken if p <= written}
            slot.committed = [(p, r) for p, r in slot.committed if id(r) not in done]
        return kept

    async def write_snapshot(self, slot: UserSlot, through: int) -> None:
        """Write the user's snapshot, which holds their chunks up to `through`."""
        put = snapshot_put(slot, through)
        try:
            result: str | Exception = await self.storage.put(
                put.key, put.data, if_absent=put.if_absent, if_match=put.if_match
            )
        except StorageUnavailable as exc:
            result = exc
        snapshot_written(slot, put, through, result)

    async def trim(
        self,
        user_id: str,
        slots: Mapping[str, UserSlot],
        cutoff_ms: int,
        fold: Callable[[UserSlot], Awaitable[None]],
    ) -> int:
        """Delete the user's history chunks written before `cutoff_ms` that their snapshot
        holds; return how many chunks remain. Chunks not yet folded into a snapshot are still
        needed to activate the user: `fold` writes the snapshot of the user in memory (in
        `slots`, if they are) first, as small users otherwise never get one."""
        cutoff_s = cutoff_ms / 1000
        infos = await self.storage.list_objects(f"{user_key(user_id)}/chunks")
        old = {i.key: chunk_number(i) for i in infos if i.last_modified_s < cutoff_s}
        slot = slots.get(user_id)
        if slot is not None and old and max(old.values()) > slot.snapshot_through and quiet(slot):
            await fold(slot)
        through = slot.snapshot_through if slot else 0
        doomed = [key for key, number in old.items() if number <= through]
        await self.storage.delete(doomed)
        return len(infos) - len(doomed)


async def stored_records(storage: Storage, folder: str) -> tuple[str | None, list[Record]]:
    """The user whose folder (`user_key`) this is, and all the records of their history
    chunks, in order; (None, []) when the folder holds no chunk."""
    _, _, chunks = await read_tail(storage, None, f"{folder}/chunks", lambda _data, listed: listed)
    user_id: str | None = None
    records: list[Record] = []
    for info, data in chunks:
        chunk = codec.decode("chunk", data, info.key)
        user_id = chunk["user"]
        records.extend(chunk["records"])
    return user_id, records


async def replayed(
    replay: list[tuple[Position, list[Record]]],
    alarm_requests: dict[str, int],
    delete: Callable[[str], Awaitable[int]],
) -> Replayed:
    """A host log's records to apply, by user, each under its (position, rank among the
    user's records at that position): a record carried to a later commit keeps the key
    it had, so it is applied once, in its place, whether or not its first copy is still
    in the log. Alarm requests go into `alarm_requests`. An erasure deletes what the user had
    stored (`delete`), and drops their records and alarm request logged before it."""
    pending: Replayed = {}
    for position, records in replay:
        ranks: dict[str, int] = {}
        for record in records:
            op, user_id = record[0], record[1]
            if op == "alarm":
                alarm_requests.setdefault(user_id, record[3])
            elif op == "erase":
                pending.pop(user_id, None)
                alarm_requests.pop(user_id, None)
                await delete(user_id)
            elif op == CARRY:
                mine = pending.setdefault(user_id, {})
                counts: dict[Position, int] = {}
                for (epoch, seq), held in record[3]:
                    rank = counts.get((epoch, seq), 0)
                    counts[(epoch, seq)] = rank + 1
                    mine.setdefault(((epoch, seq), rank), held)
            else:
                rank = ranks.get(user_id, 0)
                ranks[user_id] = rank + 1
                pending.setdefault(user_id, {})[(position, rank)] = record
    return pending


def carry_record(user_id: str, now_ms: int, taken: list[tuple[Position, Record]]) -> Record:
    """The log record that carries a set-aside user's records `taken` past a truncation."""
    return [CARRY, user_id, now_ms, [[list(p), r] for p, r in taken]]


def quiet(slot: UserSlot) -> bool:
    """Whether the live state is exactly the user's stored history, as a snapshot must be:
    nothing committed but not yet in a chunk, nothing applied but not yet committed."""
    return not slot.committed and not slot.inflight and not slot.stale


def chunk_written(chunk: Chunk) -> None:
    """Note in the user's slot that `chunk` landed: its records leave `committed`."""
    slot = chunk.slot
    slot.next_chunk = chunk.number + 1
    slot.applied = chunk.applied
    slot.bytes_since_snapshot += len(chunk.data)
    done = {id(r) for _, r in chunk.taken}
    slot.committed = [(p, r) for p, r in slot.committed if id(r) not in done]


def snapshot_due(slot: UserSlot) -> bool:
    """Whether the history since the user's snapshot outgrew their live state."""
    return quiet(slot) and slot.bytes_since_snapshot >= max(slot.tracker.live_bytes(), 4096)


def snapshot_put(slot: UserSlot, through: int) -> Put:
    """The write of the user's snapshot (the live state, which holds chunks up to
    `through`): create-only the first time, then replace-if-unchanged."""
    data = codec.encode(
        "snapshot",
        {
            "user": slot.tracker.user_id,
            "through": through,
            "applied": {h: list(p) for h, p in slot.applied.items()},
            "sessions": slot.tracker.snapshot(),
            "seen": slot.tracker.seen.to_stored(),
            "assignments": slot.tracker.assignments,
        },
    )
    key = f"{user_key(slot.tracker.user_id)}/snapshot"
    return Put(key, data, if_absent=slot.etag is None, if_match=slot.etag)


def snapshot_written(slot: UserSlot, put: Put, through: int, result: str | Exception) -> None:
    """Note the outcome of the snapshot write `put`; raise if it failed (`Fenced` when another
    host replaced the snapshot)."""
    if isinstance(result, ObjectExists | PreconditionFailed):
        slot.stale = True
        raise Fenced(f"{put.key} was replaced by another host") from None
    if isinstance(result, Exception):
        raise result
    slot.etag = result
    slot.snapshot_through = through
    slot.bytes_since_snapshot = 0


def apply_chunks(
    slot: UserSlot,
    listed: list[ObjectInfo],
    chunks: list[tuple[ObjectInfo, bytes]],
    *,
    apply: bool,
) -> None:
    """What the user's history chunks `chunks` (read, in order) say was applied, and, if
    `apply`, their records into the tracker; `next_chunk` ends past all of `listed`."""
    for info in listed:
        slot.next_chunk = max(slot.next_chunk, chunk_number(info) + 1)
    for info, data in chunks:
        chunk = codec.decode("chunk", data, info.key)
        if apply:
            for record in chunk["records"]:
                slot.tracker.apply(record)
        for host, pos in chunk["applied"].items():
            slot.applied[host] = max(slot.applied.get(host, (0, 0)), (pos[0], pos[1]))
        slot.bytes_since_snapshot += info.size


def chunk_number(info: ObjectInfo) -> int:
    return int(info.key.rsplit("/", 1)[1])


def chunks_past(listed: list[ObjectInfo], after: int) -> list[ObjectInfo]:
    """The history chunks of `listed` numbered past `after`."""
    return [info for info in listed if chunk_number(info) > after]
