"""A host of user trackers: activation, group-committed durability, compaction, passivation.

`UserHost` is the logic of a host actor with Ray left out (the actor in `tracker.actors` is a
thin shell). It keeps many users' `UserTracker`s in memory, Orleans/Durable Objects style:

- **Activation.** A user is loaded from storage on first use: their snapshot, then the history
  chunks written after it. Concurrent first calls share one load; nothing is served before it.
- **Durability.** A change is checked, logged to the host's `Journal`, applied in memory, and
  acknowledged only when the journal commit that holds it is durable. Calls for one user never
  interleave inside an operation (the check-log-apply step has no await in it); calls for
  different users run concurrently and share commits. Reads wait for a user's commit in flight
  so they never show what could still be lost. A failed commit makes the users it touched
  reload from storage, so memory never keeps what storage refused.
- **Compaction.** Periodically (or when the log grows past a size) each user's committed
  records are appended to their own history as one chunk (`users/<key>/chunks/<n>`,
  create-only), a snapshot of the live state is written when the history since the last one
  outgrows it, and the log segments are deleted. Host recovery thus replays a bounded log, and
  user activation reads a snapshot plus a bounded number of chunks.
- **Passivation.** Users idle longer than `passivate_after_ms` are compacted and dropped.

Records carry the log position they were committed at; a user's chunks remember the highest
position per host, so replaying a log after a crash in the middle of compaction never applies a
record twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker import codec
from tracker.codec import Record
from tracker.config import Config
from tracker.errors import Fenced, StorageUnavailable
from tracker.journal import LOG, Journal, Position, holds_commits, journal_prefix
from tracker.placement import sharded_host_index, sharded_host_name
from tracker.schema import (
    Movement,
    Observed,
    check_id,
    device_info_from_obj,
    movement_from_obj,
    movements_from_obj,
)
from tracker.storage import (
    ObjectExists,
    ObjectInfo,
    PreconditionFailed,
    Put,
    Storage,
    put_all,
    read_tail,
)
from tracker.user_tracker import Limits, Tracked, UserTracker, export_lines

log = logging.getLogger(__name__)

NowMs = Callable[[], int]
# A host's journal is called `hosts/<host name>`.
HOSTS = "hosts"
JOURNALS = journal_prefix(HOSTS)
# A compaction writes the users' chunks (and then snapshots) this many users at a time, with
# this many groups in flight: on files a group is one thread hop (`storage.put_all`).
FLUSH_GROUP = 32
FLUSH_GROUPS = 4
# Tracking calls in flight from which a host is busy enough for its commits to linger
# (`HostSettings.commit_linger_ms`): many callers, like a program's handles, not one replica.
LINGER_CALLS = 3
ArmAlarms = Callable[[dict[str, int]], Awaitable[None]]
# Told of each session's newly stored movements: (user_id, session_id, movements, now_ms,
# known), `known` when the user's tracker held the session before them.
TrackListener = Callable[[str, str, Sequence[Observed], int, bool], None]
# Told of each session created (or created again) by `create_session`: (user_id, session_id,
# now_ms, the session as `create_session` answers it, known).
SessionListener = Callable[[str, str, int, dict[str, Any], bool], None]


# What a session request for an opted-out user answers (nothing is stored).
DECLINED: dict[str, Any] = {"success": False, "declined": True}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def user_key(user_id: str) -> str:
    """Storage folder of a user: a hash, so no user ID can escape or collide in key space."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()
    return f"users/{digest[:2]}/{digest[2:40]}"


@dataclass
class HostSettings:
    # The defaults are `Config`'s, in milliseconds.
    limits: Limits = field(default_factory=Limits)
    passivate_after_ms: int = int(Config.passivate_after_s * 1000)
    compact_log_bytes: int = Config.compact_log_bytes
    compact_interval_ms: int = int(Config.compact_interval_s * 1000)
    commit_linger_ms: float = Config.commit_linger_ms
    # Users whose events are dropped, whoever sends them (`TRACKER_OPT_OUT`).
    opt_out: frozenset[str] = frozenset()


class UserSlot:
    """A user held in memory, with what is known about their storage."""

    __slots__ = (
        "applied",
        "armed",
        "bytes_since_snapshot",
        "committed",
        "etag",
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
        self.armed = False

    def mark_stale(self) -> None:
        self.stale = True


@dataclass(frozen=True, eq=False)
class _Chunk:
    """A user's next history chunk, encoded: the records it holds and what they apply."""

    slot: UserSlot
    taken: list[tuple[Position, Record]]
    applied: dict[str, Position]
    number: int
    key: str
    data: bytes


class UserHost:
    """Many users' trackers on one journal. See the module docstring."""

    def __init__(
        self,
        name: str,
        storage: Storage,
        settings: HostSettings | None = None,
        *,
        now_ms: NowMs = wall_clock_ms,
        on_track: TrackListener | None = None,
        on_session: SessionListener | None = None,
    ) -> None:
        self.name = name
        self.storage = storage
        self.settings = settings or HostSettings()
        self.now_ms = now_ms
        self.on_track = on_track
        self.on_session = on_session
        # Tracking calls being served: with LINGER_CALLS or more, commits wait a little to
        # be shared (one replica keeps at most two calls in flight, so HTTP alone does not).
        self.calls_in_flight = 0
        self.journal = Journal(
            storage,
            f"{HOSTS}/{name}",
            linger_s=self.settings.commit_linger_ms / 1000,
            busy=lambda: self.calls_in_flight >= LINGER_CALLS,
        )
        self.slots: dict[str, UserSlot] = {}
        self.alarm_requests: dict[str, int] = {}
        self._loading: dict[str, asyncio.Task[UserSlot]] = {}
        # Users being erased: their other calls wait until the erasure is complete.
        self._erasing: dict[str, asyncio.Event] = {}
        # Uses of a user's stored data under way outside compactions (`_using`), by user.
        self._writers: dict[str, int] = {}
        self._writers_done: dict[str, asyncio.Event] = {}
        self._compacting = asyncio.Lock()
        self._last_compaction_ms = 0
        self.compactions = 0  # compactions completed since this host started
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Claim the journal, replay what was not compacted yet, compact it, start serving.

        A start that failed is tried again from scratch: users replayed by the failed attempt
        are dropped, or their records not yet compacted would be applied (and stored) twice.
        """
        self.slots.clear()
        replay = await self.journal.open()
        for position, records in replay:
            for record in records:
                await self._replay(position, record)
        await self._flush_users(list(self.slots.values()), upto=None)
        await self.journal.start()
        self._last_compaction_ms = self.now_ms()
        self.started = True

    def reconfigure(self, settings: HostSettings) -> None:
        """Apply new settings now, to the users in memory too (their sessions keep the movement
        cap they were created with)."""
        self.settings = settings
        self.journal.linger_s = settings.commit_linger_ms / 1000
        for slot in self.slots.values():
            slot.tracker.limits = settings.limits

    async def _replay(self, position: Position, record: Record) -> None:
        user_id = record[1]
        if record[0] == "erase":
            self.slots.pop(user_id, None)
            await self._delete_user_data(user_id)
            return
        slot = await self._slot(user_id)
        applied = slot.applied.get(self.name)
        if applied is not None and position <= applied:
            return
        # Not counted in the analytics again: the incarnation that committed it counted it,
        # and ships its counts about once a second (a crash loses the counts not shipped yet;
        # the events themselves are all here).
        slot.tracker.apply(record)
        slot.committed.append((position, record))
        if not slot.armed:
            self._arm(user_id, slot)  # their first change may be in this log only

    async def stop(self) -> None:
        """Compact everything (a clean shutdown leaves an empty log) and stop committing."""
        with contextlib.suppress(StorageUnavailable):
            await self.compact(force=True)
        await self.journal.close()

    # -- the tracker API (what the actor exposes) --------------------------------------------

    async def track(self, user_id: str, movement: Any) -> int:
        with self._counted():
            now = self.now_ms()
            return await self._track(user_id, [movement_from_obj(movement, now)], now)

    async def track_many(self, user_id: str, movements: Sequence[Any] | bytes) -> int:
        """A batch of the user's movements: a list, or `schema.pack_movements` of one."""
        with self._counted():
            now = self.now_ms()
            return await self._track(user_id, movements_from_obj(movements, now), now)

    async def track_batch(
        self, items: Sequence[tuple[str, Sequence[Any] | bytes]]
    ) -> list[int | BaseException]:
        """Several users' batches in one call. Each item is all-or-nothing on its own; the
        result is its count or its error."""
        now = self.now_ms()

        async def one(user_id: str, raws: Sequence[Any] | bytes) -> int:
            return await self._track(user_id, movements_from_obj(raws, now), now)

        with self._counted():
            return await asyncio.gather(*(one(u, m) for u, m in items), return_exceptions=True)

    async def track_stored(self, user_id: str, entries: Sequence[Any]) -> int:
        """A batch of the user's movements in the stored form: `(session_id, blob)` pairs, as
        `codec.encode_entries` makes them. The blobs are checked, then logged as they came."""
        with self._counted():
            now = self.now_ms()
            return await self._track_stored(user_id, codec.entries_from_obj(entries, now), now)

    async def track_stored_batch(
        self, items: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[int | BaseException]:
        """Several users' `track_stored` in one call (an HTTP replica coalesces its requests).

        Each item is all-or-nothing on its own; the result is its count or its error.
        """
        now = self.now_ms()

        async def one(user_id: str, entries: Sequence[Any]) -> int:
            return await self._track_stored(user_id, codec.entries_from_obj(entries, now), now)

        with self._counted():
            return await asyncio.gather(*(one(u, e) for u, e in items), return_exceptions=True)

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        self.calls_in_flight += 1
        try:
            yield
        finally:
            self.calls_in_flight -= 1

    async def _track(self, user_id: str, movements: list[Movement], now: int) -> int:
        if user_id in self.settings.opt_out:
            return 0
        slot = await self._slot(user_id)
        tracked = slot.tracker.track_record(movements, now)
        return await self._commit_track(user_id, slot, tracked, len(movements))

    async def _track_stored(self, user_id: str, entries: list[codec.Entry], now: int) -> int:
        if user_id in self.settings.opt_out:
            return 0
        slot = await self._slot(user_id)
        tracked = slot.tracker.track_stored_record(entries, now)
        count = sum(len(movements) for _, _, movements in entries)
        return await self._commit_track(user_id, slot, tracked, count)

    async def _commit_track(
        self, user_id: str, slot: UserSlot, tracked: Tracked, count: int
    ) -> int:
        """Commit what is new; return how many were. The caller then answers that all `count`
        are stored, so a movement dropped as a duplicate must be stored too: the commit that
        holds it may still be under way, and this waits for it (as for its own)."""
        if tracked.record is None:
            await self._settled(slot)
        else:
            await self._commit(user_id, slot, tracked.record, tracked.kept)
        if tracked.new < count and slot.stale:
            # A commit of this user failed since their memory was trusted: the duplicate may
            # have been in it. A retry finds the user reloaded from storage, and stores it.
            raise StorageUnavailable(
                f"user {user_id!r}: a commit holding some of these events failed; retry"
            )
        return tracked.new

    async def create_session(
        self, user_id: str, session_id: str, device_info: Any = None
    ) -> dict[str, Any]:
        check_id("sessionId", session_id)
        info = device_info_from_obj(device_info)
        if user_id in self.settings.opt_out:
            return dict(DECLINED)
        slot = await self._slot(user_id)
        now = self.now_ms()
        record = slot.tracker.create_session_record(session_id, info, now)
        known = session_id in slot.tracker.sessions
        await self._commit(user_id, slot, record)
        session = slot.tracker.get_session(session_id)
        if self.on_session is not None:
            self.on_session(user_id, session_id, now, session, known)
        return session

    async def get_session(self, user_id: str, session_id: str) -> dict[str, Any]:
        check_id("sessionId", session_id)
        slot = await self._slot(user_id)
        await self._settled(slot)
        return slot.tracker.get_session(session_id)

    async def analytics(self, user_id: str) -> dict[str, Any]:
        slot = await self._slot(user_id)
        await self._settled(slot)
        return slot.tracker.analytics(self.now_ms())

    async def alarm(self, user_id: str) -> int | None:
        """The user's alarm: end expired sessions, apply retention; return the next due time."""
        slot = await self._slot(user_id)
        now = self.now_ms()
        limits = self.settings.limits
        record = slot.tracker.expire_record(now)
        if record is not None:
            await self._commit(user_id, slot, record)
        remaining = await self._apply_retention(user_id, now)
        # The scheduler re-arms from what this returns; the activation's own request is moot.
        self.alarm_requests.pop(user_id, None)
        if slot.tracker.is_empty() and not remaining and not slot.committed:
            # The scheduler drops the alarm: the user's next change must ask for one again.
            slot.armed = False
            return None
        return now + limits.alarm_interval_ms

    async def export(self, user_id: str) -> list[dict[str, Any]]:
        """All of the user's stored history (within retention), as NDJSON-ready dicts."""
        check_id("userId", user_id)
        await self._erased(user_id)
        slot = self.slots.get(user_id)
        # An erasure coming meanwhile waits for this export: for its flush, which would store
        # the user again after the deletion, and for its read of what is being deleted.
        async with self._using(user_id, slot) as current:
            if slot is not None and current:
                await self._settled(slot)
                await self.journal.check_fence()  # as for compaction: a zombie moves nothing
                await self._flush_users([slot], upto=None)
            _, _, chunks = await read_tail(
                self.storage, None, f"{user_key(user_id)}/chunks", lambda _data, listed: listed
            )
        records: list[Record] = []
        for info, data in chunks:
            records.extend(codec.decode("chunk", data, info.key)["records"])
        return list(export_lines(user_id, records))

    async def erase(self, user_id: str) -> dict[str, Any]:
        """Remove the user from memory, the log and storage. The caller removes the alarm.

        The user's other calls wait until it is done, then find them gone: an activation
        in between would read back what is being deleted (and store it again), and an event
        logged after the erase record would be acknowledged, then dropped with the slot."""
        check_id("userId", user_id)
        await self._erased(user_id)
        done = self._erasing[user_id] = asyncio.Event()
        try:
            await self._wait_loading(user_id)
            slot = self.slots.get(user_id)
            if slot is not None:
                await self._settled(slot)
            await self._append(["erase", user_id, self.now_ms(), None])
            self.slots.pop(user_id, None)
            self.alarm_requests.pop(user_id, None)
            # Writes of the user's data under way land first, then everything is deleted: a
            # compaction's chunk or snapshot, an export's flush, an alarm's snapshot. (Those
            # starting from now on find the user gone and write nothing.)
            await self._writes_done(user_id)
            async with self._compacting:
                deleted = await self._delete_user_data(user_id)
            # The log may still hold the user's earlier records: compact it away now.
            await self.compact(force=True)
        finally:
            del self._erasing[user_id]
            done.set()
        return {"userId": user_id, "erased": True, "objectsDeleted": deleted}

    @contextlib.asynccontextmanager
    async def _using(self, user_id: str, slot: UserSlot | None) -> AsyncIterator[bool]:
        """Around a use of the user's stored data outside a compaction (a write, an export's
        read): yields whether `slot` is still the user's (else the user was erased or
        reloaded: write nothing). An erasure waits for the uses counted here to end before
        it deletes."""
        self._writers[user_id] = self._writers.get(user_id, 0) + 1
        try:
            yield self.slots.get(user_id) is slot
        finally:
            left = self._writers[user_id] - 1
            if left:
                self._writers[user_id] = left
            else:
                del self._writers[user_id]
                done = self._writers_done.pop(user_id, None)
                if done is not None:
                    done.set()

    async def _writes_done(self, user_id: str) -> None:
        while user_id in self._writers:
            await self._writers_done.setdefault(user_id, asyncio.Event()).wait()

    async def _erased(self, user_id: str) -> None:
        """Wait until no erasure of the user is under way."""
        while (erasing := self._erasing.get(user_id)) is not None:
            await erasing.wait()

    # -- commits ---------------------------------------------------------------------------

    async def _append(self, record: Record) -> Position:
        return await self.journal.append(record)

    async def _commit(
        self,
        user_id: str,
        slot: UserSlot,
        record: Record,
        kept: list[tuple[str, Sequence[Observed]]] | None = None,
    ) -> None:
        # Log and apply with no await in between: this is the per-user critical section.
        # The record joins `committed` as its commit lands, not when this call resumes: a
        # compaction truncating the log up to that commit must find it there to flush it.
        # Stale in the very step the commit fails (memory may hold what storage refused: the
        # user is reloaded before the next use). A call that found its events in memory
        # already checks this once the commits before its answer have settled.
        future = self.journal.append(
            record, lambda position: slot.committed.append((position, record)), slot.mark_stale
        )
        sessions = slot.tracker.sessions
        # Sessions the tracker held before this record: analytics count the others as new.
        known = {e[0] for e in record[3] if e[0] in sessions} if record[0] == "track" else None
        slot.tracker.apply(record, fresh=True, decoded=kept)
        slot.inflight += 1
        slot.last_commit = future
        slot.last_access_ms = self.now_ms()
        try:
            await future
        finally:
            slot.inflight -= 1
        if not slot.armed:
            self._arm(user_id, slot)
        if self.on_track is None:
            return
        if known is None:
            return
        if kept is None:
            kept = [(session_id, codec.decode_stored(blob)) for session_id, blob in record[3]]
        # Analytics count what was stored: duplicates were dropped from `kept` too.
        for session_id, movements in kept:
            self.on_track(user_id, session_id, movements, record[2], session_id in known)

    async def _settled(self, slot: UserSlot) -> None:
        """Wait for the user's commit in flight (an output gate for reads)."""
        if slot.last_commit is not None and not slot.last_commit.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(slot.last_commit)

    # -- activation ------------------------------------------------------------------------

    async def _slot(self, user_id: str) -> UserSlot:
        while True:
            if user_id in self._erasing:
                await self._erased(user_id)
            slot = self.slots.get(user_id)
            if slot is not None and not slot.stale:
                slot.last_access_ms = self.now_ms()
                return slot
            check_id("userId", user_id)
            task = self._loading.get(user_id)
            if task is None:
                task = asyncio.create_task(self._load(user_id, slot))
                self._loading[user_id] = task
                task.add_done_callback(lambda _t: self._loading.pop(user_id, None))
            slot = await asyncio.shield(task)
            if user_id not in self._erasing:  # else erased while loading: look again
                return slot

    async def _wait_loading(self, user_id: str) -> None:
        task = self._loading.get(user_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _load(self, user_id: str, stale: UserSlot | None) -> UserSlot:
        uncompacted: list[tuple[Position, Record]] = []
        if stale is not None:
            # Commits already under way on the stale slot land in its `committed` (kept
            # below). Taken before storage is read: a compaction writing them meanwhile
            # drops them from `committed` as its chunk lands, perhaps after the listing.
            await self._settled(stale)
            uncompacted = list(stale.committed)
        slot = UserSlot(UserTracker(user_id, self.settings.limits))
        key = user_key(user_id)
        snapshot: dict[str, Any] | None = None

        def past_snapshot(data: bytes | None, listed: list[ObjectInfo]) -> list[ObjectInfo]:
            nonlocal snapshot
            if data is None:
                return _chunks_past(listed, 0)
            snapshot = codec.decode("snapshot", data, f"{key}/snapshot")
            return _chunks_past(listed, snapshot["through"])

        # An activation is what a returning visitor's first event waits for: one round.
        found, listed, chunks = await read_tail(
            self.storage, f"{key}/snapshot", f"{key}/chunks", past_snapshot
        )
        if found is not None and snapshot is not None:
            slot.tracker.restore(snapshot["sessions"])
            slot.applied = {h: (p[0], p[1]) for h, p in snapshot["applied"].items()}
            slot.snapshot_through = snapshot["through"]
            slot.next_chunk = snapshot["through"] + 1
            slot.etag = found[1]
        self._apply_chunks(slot, listed, chunks, apply=True)
        if uncompacted:
            # Records this host committed but has not compacted yet are only in its log,
            # unless a compaction wrote them into a chunk just read. One whose chunk landed
            # after the listing is kept here too: the next chunk of this slot is then
            # contested, and caught up without it (`_flush_user`).
            written = slot.applied.get(self.name, (0, 0))
            for position, record in uncompacted:
                if position > written:
                    slot.tracker.apply(record)
                    slot.committed.append((position, record))
        slot.last_access_ms = self.now_ms()
        slot.tracker.limits = self.settings.limits  # in case they changed while it loaded
        self.slots[user_id] = slot
        # A user with nothing stored gets an alarm with their first change, not on a mere
        # look-up: an erased user's ID must not be written anywhere again by a read.
        if not slot.tracker.is_empty():
            self._arm(user_id, slot)
        return slot

    def _arm(self, user_id: str, slot: UserSlot) -> None:
        """Ask for the user's alarm (the scheduler arms it unless one is pending already)."""
        slot.armed = True
        self.alarm_requests.setdefault(
            user_id, self.now_ms() + self.settings.limits.alarm_interval_ms
        )

    # -- compaction and passivation ----------------------------------------------------------

    def needs_compaction(self) -> bool:
        due = self._last_compaction_ms + self.settings.compact_interval_ms
        return (
            self.journal.bytes_since_truncate >= self.settings.compact_log_bytes
            or self.now_ms() >= due
        )

    async def compact(self, *, force: bool = False) -> int:
        """Move committed records into users' histories, truncate the log, passivate idlers.

        Returns how many users were passivated.
        """
        if not force and not self.needs_compaction():
            return 0
        # A zombie (an older incarnation still running) must not move records around: its
        # commits are refused already, and so is this.
        await self.journal.check_fence()
        async with self._compacting:
            upto = await self.journal.rotate()
            await self._flush_users(list(self.slots.values()), upto=upto)
            await self.journal.truncate(upto)
            self._last_compaction_ms = self.now_ms()
            self.compactions += 1
            return self._passivate()

    def _passivate(self) -> int:
        cutoff = self.now_ms() - self.settings.passivate_after_ms
        idle = [
            user_id
            for user_id, slot in self.slots.items()
            if slot.last_access_ms < cutoff
            and not slot.committed
            and not slot.inflight
            and user_id not in self._loading
        ]
        for user_id in idle:
            del self.slots[user_id]
        return len(idle)

    async def _flush_users(self, slots: list[UserSlot], upto: Position | None) -> None:
        """Write each user's committed records (up to `upto`) as their next history chunk,
        then their snapshot if one is due: `FLUSH_GROUP` users at a time, `FLUSH_GROUPS`
        groups in flight. The first error is raised once every user was tried."""
        pending = [slot for slot in slots if slot.committed]
        semaphore = asyncio.Semaphore(FLUSH_GROUPS)

        async def flush(group: list[UserSlot]) -> None:
            async with semaphore:
                await self._flush_group(group, upto)

        groups = [pending[at : at + FLUSH_GROUP] for at in range(0, len(pending), FLUSH_GROUP)]
        results = await asyncio.gather(*(flush(g) for g in groups), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _flush_group(self, slots: list[UserSlot], upto: Position | None) -> None:
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
        errors: list[BaseException] = []
        contested: list[UserSlot] = []
        done: list[_Chunk] = []
        for chunk, result in zip(chunks, written, strict=True):
            if isinstance(result, ObjectExists):
                contested.append(chunk.slot)
            elif isinstance(result, Exception):
                errors.append(result)
            else:
                self._chunk_written(chunk)
                done.append(chunk)
        due = [c for c in done if self._snapshot_due(c.slot)]
        snapshots = [self._snapshot(c.slot, through=c.number) for c in due]
        stored = await put_all(self.storage, snapshots)
        for put, chunk, outcome in zip(snapshots, due, stored, strict=True):
            try:
                self._snapshot_written(chunk.slot, put, chunk.number, outcome)
            except Exception as exc:
                errors.append(exc)
        alone = [self._flush_user(slot, upto, contested=True) for slot in contested]
        for failure in await asyncio.gather(*alone, return_exceptions=True):
            if isinstance(failure, BaseException):
                errors.append(failure)
        if errors:
            raise errors[0]

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
        self._chunk_written(chunk)
        if self._snapshot_due(slot):
            await self._write_snapshot(slot, through=chunk.number)

    def _chunk(self, slot: UserSlot, taken: list[tuple[Position, Record]]) -> _Chunk:
        """The user's next history chunk, holding the records `taken`."""
        user_id = slot.tracker.user_id
        applied = dict(slot.applied)
        applied[self.name] = max(applied.get(self.name, (0, 0)), max(p for p, _ in taken))
        data = codec.encode(
            "chunk",
            {
                "user": user_id,
                "records": [r for _, r in taken],
                "applied": {h: list(p) for h, p in applied.items()},
            },
        )
        key = f"{user_key(user_id)}/chunks/{slot.next_chunk:012d}"
        return _Chunk(slot, taken, applied, slot.next_chunk, key, data)

    @staticmethod
    def _chunk_written(chunk: _Chunk) -> None:
        slot = chunk.slot
        slot.next_chunk = chunk.number + 1
        slot.applied = chunk.applied
        slot.bytes_since_snapshot += len(chunk.data)
        done = {id(r) for _, r in chunk.taken}
        slot.committed = [(p, r) for p, r in slot.committed if id(r) not in done]

    @staticmethod
    def _snapshot_due(slot: UserSlot) -> bool:
        return _quiet(slot) and slot.bytes_since_snapshot >= max(slot.tracker.live_bytes(), 4096)

    @staticmethod
    def _apply_chunks(
        slot: UserSlot,
        listed: list[ObjectInfo],
        chunks: list[tuple[ObjectInfo, bytes]],
        *,
        apply: bool,
    ) -> None:
        """What the user's history chunks `chunks` (read, in order) say was applied, and, if
        `apply`, their records into the tracker; `next_chunk` ends past all of `listed`."""
        for info in listed:
            slot.next_chunk = max(slot.next_chunk, _chunk_number(info) + 1)
        for info, data in chunks:
            chunk = codec.decode("chunk", data, info.key)
            if apply:
                for record in chunk["records"]:
                    slot.tracker.apply(record)
            for host, pos in chunk["applied"].items():
                slot.applied[host] = max(slot.applied.get(host, (0, 0)), (pos[0], pos[1]))
            slot.bytes_since_snapshot += info.size

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
            lambda _data, listed: _chunks_past(listed, after),
        )
        self._apply_chunks(slot, listed, chunks, apply=False)
        written = slot.applied.get(self.name, (0, 0))
        kept = [(p, r) for p, r in taken if p > written]
        if len(kept) < len(taken):
            done = {id(r) for p, r in taken if p <= written}
            slot.committed = [(p, r) for p, r in slot.committed if id(r) not in done]
        return kept

    async def _write_snapshot(self, slot: UserSlot, through: int) -> None:
        put = self._snapshot(slot, through)
        try:
            result: str | Exception = await self.storage.put(
                put.key, put.data, if_absent=put.if_absent, if_match=put.if_match
            )
        except StorageUnavailable as exc:
            result = exc
        self._snapshot_written(slot, put, through, result)

    def _snapshot(self, slot: UserSlot, through: int) -> Put:
        """The write of the user's snapshot (the live state, which holds chunks up to
        `through`): create-only the first time, then replace-if-unchanged."""
        data = codec.encode(
            "snapshot",
            {
                "user": slot.tracker.user_id,
                "through": through,
                "applied": {h: list(p) for h, p in slot.applied.items()},
                "sessions": slot.tracker.snapshot(),
            },
        )
        key = f"{user_key(slot.tracker.user_id)}/snapshot"
        return Put(key, data, if_absent=slot.etag is None, if_match=slot.etag)

    @staticmethod
    def _snapshot_written(slot: UserSlot, put: Put, through: int, result: str | Exception) -> None:
        if isinstance(result, ObjectExists | PreconditionFailed):
            slot.stale = True
            raise Fenced(f"{put.key} was replaced by another host") from None
        if isinstance(result, Exception):
            raise result
        slot.etag = result
        slot.snapshot_through = through
        slot.bytes_since_snapshot = 0

    async def _apply_retention(self, user_id: str, now: int) -> int:
        """Delete history chunks older than retention; return how many remain."""
        cutoff_s = (now - self.settings.limits.retention_ms) / 1000
        infos = await self.storage.list_objects(f"{user_key(user_id)}/chunks")
        old = {i.key: int(i.key.rsplit("/", 1)[1]) for i in infos if i.last_modified_s < cutoff_s}
        slot = self.slots.get(user_id)
        if slot is not None and old and max(old.values()) > slot.snapshot_through and _quiet(slot):
            # Chunks not yet folded into a snapshot are still needed to activate the user:
            # fold them in first (small users otherwise never get a snapshot).
            async with self._using(user_id, slot) as current:
                if current:
                    await self._write_snapshot(slot, through=slot.next_chunk - 1)
        through = slot.snapshot_through if slot else 0
        doomed = [key for key, number in old.items() if number <= through]
        await self.storage.delete(doomed)
        return len(infos) - len(doomed)

    async def _delete_user_data(self, user_id: str) -> int:
        infos = await self.storage.list_objects(user_key(user_id))
        await self.storage.delete([i.key for i in infos])
        return len(infos)

    # -- introspection ---------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether a user is being activated right now."""
        return bool(self._loading)

    def take_alarm_requests(self) -> dict[str, int]:
        requests, self.alarm_requests = self.alarm_requests, {}
        return requests

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "activeUsers": len(self.slots),
            "epoch": self.journal.epoch,
            "commits": self.journal.commits,
            "logBytes": self.journal.bytes_since_truncate,
            "compactions": self.compactions,
            "fenced": self.journal.fenced,
        }


# -- hosts no longer started -------------------------------------------------------------------


async def orphaned_hosts(storage: Storage, hosts: int) -> list[str]:
    """Hosts numbered `hosts` or higher whose logs still hold commits, in number order.

    They are what lowering `TRACKER_HOSTS` without a clean stop leaves: no host of the new count
    replays those logs, so their acknowledged events would reach no user's history."""
    found: set[int] = set()
    for info in await storage.list_objects(JOURNALS):
        name, _, rest = info.key.removeprefix(f"{JOURNALS}/").partition("/")
        index = sharded_host_index(name)
        if index is None or index < hosts:
            continue
        # A drained (or cleanly stopped) log holds its start segment only.
        if rest.startswith(f"{LOG}/") and holds_commits(rest):
            found.add(index)
    return [sharded_host_name(index) for index in sorted(found)]


async def drain(
    name: str,
    storage: Storage,
    settings: HostSettings,
    *,
    now_ms: NowMs = wall_clock_ms,
) -> dict[str, int]:
    """Move an orphaned host's logged commits into its users' histories and empty its log.

    A host of that name is started (it claims the log, which fences any incarnation still
    running) and stopped cleanly. The users' next hosts find the events in their histories,
    after what those hosts wrote themselves. Returns the alarms those users need."""
    orphan = UserHost(name, storage, settings, now_ms=now_ms)
    await orphan.start()
    await orphan.stop()
    return orphan.take_alarm_requests()


def _quiet(slot: UserSlot) -> bool:
    """Whether the live state is exactly the user's stored history, as a snapshot must be:
    nothing committed but not yet in a chunk, nothing applied but not yet committed."""
    return not slot.committed and not slot.inflight and not slot.stale


def _chunk_number(info: ObjectInfo) -> int:
    return int(info.key.rsplit("/", 1)[1])


def _chunks_past(listed: list[ObjectInfo], after: int) -> list[ObjectInfo]:
    """The history chunks of `listed` numbered past `after`."""
    return [info for info in listed if _chunk_number(info) > after]
