"""A host of user trackers: activation, group-committed durability, compaction, passivation.

`HostRuntime` is the logic of a host actor with Ray left out (the actor in `tracker.actors` is a
thin shell around `tracker.user_host.UserHost`, which adds the tracker's API to it). It keeps many
users' `UserTracker`s in memory, Orleans/Durable Objects style:

- **Activation.** A user is loaded from storage on first use: their snapshot, then the history
  chunks written after it. Concurrent first calls share one load; nothing is served before it.
- **Durability.** A change is checked, logged to the host's `Journal`, applied in memory, and
  acknowledged only when the journal commit that holds it is durable. Calls for one user never
  interleave inside an operation (the check-log-apply step has no await in it); calls for
  different users run concurrently and share commits. Reads wait for a user's commit in flight
  so they never show what could still be lost. A failed commit makes the users it touched
  reload from storage, so memory never keeps what storage refused.
- **Compaction.** Periodically (or when the log grows past a size) each user's committed
  records are appended to their own history (`tracker.history`) as one chunk, a snapshot of the
  live state is written when the history since the last one outgrows it, and the log segments
  are deleted. Host recovery thus replays a bounded log, and user activation reads a snapshot
  plus a bounded number of chunks. A user whose chunk cannot be written is set aside: their
  records are carried into the log again (`history.CARRY`), and the others are compacted as
  usual.
- **Passivation.** Users idle longer than `passivate_after_ms` are compacted and dropped.
- **Memory budget.** Above a share of `memory_bytes` the host compacts and passivates its least
  recently used users (durable once compacted; `tracker.shedding` decides when and how many),
  and new activations wait for that meanwhile.

Records carry the log position they were committed at; a user's chunks remember the highest
position per host, so replaying a log after a crash in the middle of compaction never applies a
record twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from tracker import codec
from tracker.alarm_requests import AlarmRequests, ArmAlarms
from tracker.clock import NowMs, wall_clock_ms
from tracker.codec import Record
from tracker.errors import StorageUnavailable
from tracker.history import Failures, History, UserSlot, carry_record, replayed, user_key
from tracker.host_settings import HostSettings
from tracker.journal import Journal, Position
from tracker.memory import process_rss_bytes
from tracker.schema import Observed, check_user_id
from tracker.shedding import MemoryGuard
from tracker.storage import Storage
from tracker.stored_uses import StoredUses
from tracker.user_tracker import UserTracker

log = logging.getLogger(__name__)

# A host's journal is called `hosts/<host name>`.
HOSTS = "hosts"
# Set-aside users a host's stats name (by storage folder), at most.
SET_ASIDE_SHOWN = 100
# Tracking calls in flight from which a host is busy enough for its commits to linger
# (`HostSettings.commit_linger_ms`): many callers, like a program's handles, not one replica.
LINGER_CALLS = 3
# Told of each session's newly stored movements: (user_id, session_id, movements, now_ms,
# known), `known` when the user's tracker held the session before them.
TrackListener = Callable[[str, str, Sequence[Observed], int, bool], None]
# Told of movements stored without being shown to the site's analytics (moved from a linked
# anonymous ID, counted when it sent them): (user_id, session_id, movements, now_ms).
MovedListener = Callable[[str, str, Sequence[Observed], int], None]
# Told of each session created (or created again) by `create_session`: (user_id, session_id,
# now_ms, the session as `create_session` answers it, known, what was derived of the visit).
SessionListener = Callable[[str, str, int, dict[str, Any], bool, dict[str, Any]], None]


class HostRuntime:
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
        rss_bytes: Callable[[], int] = process_rss_bytes,
    ) -> None:
        self.name = name
        self.storage = storage
        self.history = History(storage, name)
        self.settings = settings or HostSettings()
        self.now_ms = now_ms
        self.on_track = on_track
        self.on_session = on_session
        self.on_moved: MovedListener | None = None
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
        self.alarm_requests = AlarmRequests()
        self._loading: dict[str, asyncio.Task[UserSlot]] = {}
        # Users being erased: their other calls wait until the erasure is complete.
        self._erasing: dict[str, asyncio.Event] = {}
        self.uses = StoredUses()  # counted by `_using`
        self._compacting = asyncio.Lock()
        self._last_compaction_ms = 0
        self.compactions = 0  # compactions completed since this host started
        # Users whose history chunk could not be written (a lasting error of theirs: a corrupt
        # chunk, a folder that cannot be written), and why: their records are carried in the
        # log from one compaction to the next, which tries them again, while everyone else's
        # are compacted and truncated as usual.
        self.set_aside: dict[str, str] = {}
        # Of those, users whose history could not even be read when this host started: their
        # slot holds only their records from the log (`_unread_user`), and why.
        self._unread: dict[str, Exception] = {}
        self.started = False
        self.memory = MemoryGuard(name, rss_bytes)

    @property
    def rss(self) -> int:
        """The host's RSS at its last read."""
        return self.memory.rss

    @property
    def shed(self) -> int:
        """Users passivated for memory since this host started."""
        return self.memory.shed

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Claim the journal, replay what was not compacted yet, compact it, start serving.

        A start that failed is tried again from scratch: users replayed by the failed attempt
        are dropped, or their records not yet compacted would be applied (and stored) twice.
        """
        self.slots.clear()
        self.set_aside = {}
        replay = await self.journal.open()
        pending = await replayed(replay, self.alarm_requests, self.history.delete)
        for user_id, records in pending.items():
            try:
                await self._restore(user_id, records)
            except StorageUnavailable as exc:
                self._unread_user(user_id, records, exc)
        failures = await self.history.flush(list(self.slots.values()), None, self._unread)
        # Committed first in the new epoch, as the records they came from are deleted now: the
        # records of users whose history cannot be written, and the replayed alarm requests.
        await self.journal.start([*self._set_aside(failures, upto=None), *self._alarm_records()])
        self._last_compaction_ms = self.now_ms()
        self.started = True

    def reconfigure(self, settings: HostSettings) -> None:
        """Apply new settings now, to the users in memory too (their sessions keep the movement
        cap they were created with)."""
        self.settings = settings
        self.journal.linger_s = settings.commit_linger_ms / 1000
        for slot in self.slots.values():
            slot.tracker.limits = settings.limits

    def _unread_user(
        self, user_id: str, records: dict[tuple[Position, int], Record], error: Exception
    ) -> None:
        """A replayed user whose history cannot be read (a corrupt object in it): their
        records wait in a slot to be reloaded (their next call, or a compaction, tries again,
        and applies them on top of what was read), set aside meanwhile."""
        slot = UserSlot(UserTracker(user_id, self.settings.limits))
        slot.committed = [(key[0], records[key]) for key in sorted(records)]
        slot.stale = True
        self.slots[user_id] = slot
        self._unread[user_id] = error

    async def _restore(self, user_id: str, records: dict[tuple[Position, int], Record]) -> None:
        """Apply a user's replayed records that their history does not hold yet, in order."""
        slot = await self._slot(user_id)
        applied = slot.applied.get(self.name)
        for key in sorted(records):
            position = key[0]
            if applied is not None and position <= applied:
                continue
            # Not counted in the analytics again: the incarnation that committed it counted
            # it, and ships its counts about once a second (a crash loses the counts not
            # shipped yet; the events themselves are all here).
            slot.tracker.apply(records[key])
            slot.committed.append((position, records[key]))
        if slot.committed and not slot.armed:
            self._arm(user_id, slot)  # their first change may be in this log only

    async def stop(self) -> None:
        """Compact everything and stop committing. A clean shutdown ships the alarm requests
        first, and leaves an empty log; those not shipped stay in it."""
        with contextlib.suppress(StorageUnavailable):
            await self.compact(force=True)
        await self.journal.close()

    @contextlib.asynccontextmanager
    async def _using(self, user_id: str, slot: UserSlot | None) -> AsyncIterator[bool]:
        """Around a use of the user's stored data outside a compaction (a write, an export's
        read): yields whether `slot` is still the user's (else the user was erased or
        reloaded: write nothing). An erasure waits for the uses counted here to end before
        it deletes."""
        with self.uses.counted(user_id):
            yield self.slots.get(user_id) is slot

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
        observe: bool = True,
    ) -> None:
        """`observe`: show the stored movements to the site's analytics (not those moved from
        a linked anonymous ID, counted when it sent them)."""
        # Log and apply with no await in between: this is the per-user critical section.
        # The record joins `committed` as its commit lands, not when this call resumes: a
        # compaction truncating the log up to that commit must find it there to flush it.
        # Stale in the very step the commit fails (memory may hold what storage refused: the
        # user is reloaded before the next use). A call that found its events in memory
        # already checks this once the commits before its answer have settled.
        future = self.journal.append(
            record, lambda position: slot.committed.append((position, record)), slot.mark_failed
        )
        sessions = slot.tracker.sessions
        # Sessions the tracker held before this record: analytics count the others as new.
        known = {e[0] for e in record[3] if e[0] in sessions} if record[0] == "track" else None
        slot.tracker.apply(record, fresh=True, decoded=kept)
        slot.inflight += 1
        slot.last_commit = future
        slot.last_access_ms = self.now_ms()
        self.memory.mind(self.settings.memory_bytes, self._shed)
        try:
            await future
        finally:
            slot.inflight -= 1
        if not slot.armed:
            self._arm(user_id, slot)
        listener = self.on_track if observe else None
        if known is None or (listener is None and self.on_moved is None):
            return
        if kept is None:
            kept = [(session_id, codec.decode_stored(blob)) for session_id, blob in record[3]]
        # Analytics count what was stored: duplicates were dropped from `kept` too.
        for session_id, movements in kept:
            if listener is not None:
                listener(user_id, session_id, movements, record[2], session_id in known)
            elif self.on_moved is not None:
                self.on_moved(user_id, session_id, movements, record[2])

    async def _read_slot(self, user_id: str) -> UserSlot:
        """The user's slot for a read, once their commit in flight has settled: one that
        failed leaves the slot stale (its memory holds what storage refused), and the read
        then waits for the user reloaded from storage instead."""
        while True:
            slot = await self._slot(user_id)
            await self._settled(slot)
            if not slot.stale:
                return slot

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
            check_user_id("userId", user_id)
            task = self._loading.get(user_id)
            # Over the memory budget: no one more in memory until users have left it.
            if task is None and await self.memory.wait():
                continue
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
        # An activation is what a returning visitor's first event waits for: one round.
        slot = await self.history.load(user_id, self.settings.limits)
        if uncompacted:
            # Records this host committed but has not compacted yet are only in its log,
            # unless a compaction wrote them into a chunk just read. One whose chunk landed
            # after the listing is kept here too: the next chunk of this slot is then
            # contested, and caught up without it (`History.flush`).
            written = slot.applied.get(self.name, (0, 0))
            for position, record in uncompacted:
                if position > written:
                    slot.tracker.apply(record)
                    slot.committed.append((position, record))
        slot.last_access_ms = self.now_ms()
        slot.tracker.limits = self.settings.limits  # in case they changed while it loaded
        self.slots[user_id] = slot
        self._unread.pop(user_id, None)
        self.memory.mind(self.settings.memory_bytes, self._shed)
        # A user with nothing stored gets an alarm with their first change, not on a mere
        # look-up: an erased user's ID must not be written anywhere again by a read.
        if not slot.tracker.is_empty():
            self._arm(user_id, slot)
        return slot

    def _arm(self, user_id: str, slot: UserSlot) -> None:
        """Ask for the user's alarm (the scheduler arms it unless one is pending already)."""
        slot.armed = True
        self.alarm_requests.ask(user_id, self.now_ms() + self.settings.limits.alarm_interval_ms)

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
        for user_id in list(self._unread):  # repaired, perhaps: read them again
            with contextlib.suppress(StorageUnavailable):
                await self._slot(user_id)
        async with self._compacting:
            upto = await self.journal.rotate()
            failures = await self.history.flush(list(self.slots.values()), upto, self._unread)
            # Appended in the step that decides them: an erasure starting later logs its
            # record after these, so that a replay drops what they carry.
            carried = [self.journal.append(r) for r in self._set_aside(failures, upto)]
            if carried:
                await asyncio.gather(*carried)
            await self._log_alarm_requests()
            await self.journal.truncate(upto)
            self._last_compaction_ms = self.now_ms()
            self.compactions += 1
            return self._passivate()

    async def _log_alarm_requests(self) -> None:
        """Log the alarm requests the scheduler does not hold yet, past the position a
        compaction truncates up to: they may come from records it moves out of the log (a
        user's only ones), and a crash before their shipment would leave the user's history
        with no alarm, which retention then never trims."""
        await asyncio.gather(*(self._append(record) for record in self._alarm_records()))

    def _alarm_records(self) -> list[Record]:
        return self.alarm_requests.records(self.now_ms())

    def _passivate(self) -> int:
        cutoff = self.now_ms() - self.settings.passivate_after_ms
        idle = [user_id for user_id, slot in self._passivable() if slot.last_access_ms < cutoff]
        for user_id in idle:
            del self.slots[user_id]
        return len(idle)

    def _set_aside(self, failures: Failures, upto: Position | None) -> list[Record]:
        """Set aside the users whose chunk failed and who still hold records up to `upto`
        (not those erased meanwhile); return the records that carry theirs into the log.

        Their records stay in memory at the positions they were committed at, and are
        flushed again by each compaction: the first that writes them ends the set-aside."""
        carried: list[Record] = []
        aside: dict[str, str] = {}
        for slot, error in failures:
            user_id = slot.tracker.user_id
            current = self.slots.get(user_id)  # the slot reloaded meanwhile, if it was
            held = [] if current is None or user_id in self._erasing else current.committed
            taken = [(p, r) for p, r in held if upto is None or p <= upto]
            if not taken:  # only their snapshot failed: their records are in a chunk
                log.warning("host %s: %s: %s", self.name, user_key(user_id), error)
                continue
            aside[user_id] = str(error)
            if user_id not in self.set_aside:
                log.warning(
                    "host %s: set aside %s, whose records stay in the log: %s",
                    self.name,
                    user_key(user_id),
                    error,
                )
            carried.append(carry_record(user_id, self.now_ms(), taken))
        self.set_aside = aside
        return carried

    def _passivable(self) -> Iterator[tuple[str, UserSlot]]:
        """The users that may leave memory: all they hold is in their stored history."""
        for user_id, slot in self.slots.items():
            if not slot.committed and not slot.inflight and user_id not in self._loading:
                yield user_id, slot

    async def _shed(self) -> None:
        """Compact (records not yet in a user's history keep them in memory), then passivate
        the least recently used users, as many as `MemoryGuard.to_shed` says."""
        await self.compact(force=True)
        # Sorted by last use; users of the same millisecond in activation order.
        quiet = sorted(self._passivable(), key=lambda item: item[1].last_access_ms)
        for user_id, _slot in quiet[: self.memory.to_shed(self.settings.memory_bytes, len(quiet))]:
            del self.slots[user_id]
        self.memory.shed_done()

    # -- introspection ---------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether a user is being activated right now."""
        return bool(self._loading)

    def idle(self) -> bool:
        """Whether the host has started and holds no user, nor is activating one: a per-user
        host then leaves (once what it holds is shipped and compacted)."""
        return self.started and not self.slots and not self.busy()

    def take_alarm_requests(self) -> dict[str, int]:
        return self.alarm_requests.take()

    async def ship_alarm_requests(self, send: ArmAlarms) -> None:
        """Hand the alarm requests to the scheduler with `send`; keep them if it fails. Until
        it answers they count as not shipped (a compaction logs them again)."""
        await self.alarm_requests.ship(send)

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "activeUsers": len(self.slots),
            "epoch": self.journal.epoch,
            "commits": self.journal.commits,
            "logBytes": self.journal.bytes_since_truncate,
            "compactions": self.compactions,
            "fenced": self.journal.fenced,
            # Named by storage folder (a hash of the ID), as an operator repairs them there.
            "setAside": len(self.set_aside),
            "setAsideUsers": {
                user_key(user_id): error
                for user_id, error in sorted(self.set_aside.items())[:SET_ASIDE_SHOWN]
            },
            "rssBytes": self.rss,
            "usersShed": self.shed,
        }
