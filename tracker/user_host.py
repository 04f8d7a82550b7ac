"""The tracker's API on a host: what a host actor answers for its users.

`UserHost` adds to the host runtime (`tracker.host.HostRuntime`: activation, durable commits,
compaction, passivation) the calls of a user's tracker: tracking movements (as sent, or in the
stored form), sessions, reads, the user's alarm, export and erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tracker import codec
from tracker.conversions.experiments import assign
from tracker.conversions.store import DefinitionStore
from tracker.errors import StorageUnavailable
from tracker.history import UserSlot, user_key
from tracker.host import HostRuntime
from tracker.journal import LOG, holds_commits
from tracker.schema import (
    DeviceInfo,
    Movement,
    check_id,
    check_user_id,
    device_info_from_obj,
    movement_from_obj,
    movements_from_obj,
)
from tracker.user_tracker import Tracked, export_lines
from tracker.visits.derive import derive_visit

# What a session request for an opted-out user answers (nothing is stored).
DECLINED: dict[str, Any] = {"success": False, "declined": True}


@dataclass(frozen=True)
class NewSession:
    """What `UserHost.create_new_session` did: the session it created (None if it created
    none), and whether the user held no other session, so that their sessions so far are
    none but this one."""

    session: dict[str, Any] | None
    first: bool


ExposureListener = Callable[[str, str, str, int], None]


class UserHost(HostRuntime):
    """Many users' trackers on one journal (`tracker.host` tells how it keeps them)."""

    # Told of each exposure once it is stored: (user, experiment, variant, time).
    on_exposure: ExposureListener | None = None

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

    async def track_server(
        self,
        user_id: str,
        movements: bytes,
        auto_session: str | None = None,
        device_info: Any = None,
        observe: bool = True,
    ) -> int:
        """A batch of the user's movements from a server-side source (`tracker.segment`), or
        moved from a linked anonymous ID (`tracker.links`, `observe` False: not shown to the
        site's analytics again), as `schema.pack_movements` makes it. Movements in
        `auto_session` go to the user's current session instead, if they have one
        (`UserTracker.current_session`). A session the batch starts is given `device_info`
        first."""
        with self._counted():
            now = self.now_ms()
            batch = movements_from_obj(movements, now)
            info = device_info_from_obj(device_info)
            if user_id in self.settings.opt_out:
                return 0
            slot = await self._slot(user_id)
            current = slot.tracker.current_session(now)
            if auto_session is not None and current is not None:
                for movement in batch:
                    if movement.sessionId == auto_session:
                        movement.sessionId = current
            if info is not None:
                for session_id in dict.fromkeys(m.sessionId for m in batch):
                    if session_id not in slot.tracker.sessions:
                        await self._start_session(user_id, slot, session_id, info, None, observe)
                        slot = await self._slot(user_id)
            return await self._track(user_id, batch, now, observe)

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        self.calls_in_flight += 1
        try:
            yield
        finally:
            self.calls_in_flight -= 1

    async def _track(
        self, user_id: str, movements: list[Movement], now: int, observe: bool = True
    ) -> int:
        if user_id in self.settings.opt_out:
            return 0
        slot = await self._slot(user_id)
        tracked = slot.tracker.track_record(movements, now)
        return await self._commit_track(user_id, slot, tracked, len(movements), observe)

    async def _track_stored(self, user_id: str, entries: list[codec.Entry], now: int) -> int:
        if user_id in self.settings.opt_out:
            return 0
        slot = await self._slot(user_id)
        tracked = slot.tracker.track_stored_record(entries, now)
        count = sum(len(movements) for _, _, movements in entries)
        return await self._commit_track(user_id, slot, tracked, count)

    async def _commit_track(
        self, user_id: str, slot: UserSlot, tracked: Tracked, count: int, observe: bool = True
    ) -> int:
        """Commit what is new; return how many were. The caller then answers that all `count`
        are stored, so a movement dropped as a duplicate must be stored too: the commit that
        holds it may still be under way, and this waits for it (as for its own)."""
        if tracked.record is None:
            await self._settled(slot)
        else:
            await self._commit(user_id, slot, tracked.record, tracked.kept, observe)
        if tracked.new < count and slot.failed:
            # A commit of this user failed since their memory was trusted: the duplicate may
            # have been in it. A retry finds the user reloaded from storage, and stores it.
            raise StorageUnavailable(
                f"user {user_id!r}: a commit holding some of these events failed; retry"
            )
        return tracked.new

    async def create_session(
        self,
        user_id: str,
        session_id: str,
        device_info: Any = None,
        visit: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start (or restart) a session. `visit`: what the ingress derived of the visit
        (`tracker.visits.derive`); without it, what the device info's user agent says."""
        check_id("sessionId", session_id)
        info = device_info_from_obj(device_info)
        if user_id in self.settings.opt_out:
            return dict(DECLINED)
        slot = await self._slot(user_id)
        return await self._start_session(user_id, slot, session_id, info, visit)

    async def create_new_session(
        self,
        user_id: str,
        session_id: str,
        device_info: Any = None,
        visit: dict[str, Any] | None = None,
    ) -> NewSession:
        """`create_session` for a caller who has not shown that it owns the user: a session the
        user holds already is left as it is, neither extended nor shown (`session` is None),
        and so is an opted-out user's. One call, so that nothing can come between the look
        and the creation."""
        check_id("sessionId", session_id)
        info = device_info_from_obj(device_info)
        if user_id in self.settings.opt_out:
            return NewSession(None, first=False)
        slot = await self._slot(user_id)
        sessions = slot.tracker.sessions
        if session_id in sessions:
            return NewSession(None, first=False)
        first = not sessions
        # No await before `_commit` applies the record: no other call sees the session absent.
        started = await self._start_session(user_id, slot, session_id, info, visit)
        return NewSession(started, first)

    async def _start_session(
        self,
        user_id: str,
        slot: UserSlot,
        session_id: str,
        info: DeviceInfo | None,
        visit: dict[str, Any] | None,
        observe: bool = True,
    ) -> dict[str, Any]:
        now = self.now_ms()
        if visit is None:
            visit = derive_visit(user_agent=info.userAgent if info else None)
        record = slot.tracker.create_session_record(session_id, info, now, visit)
        known = session_id in slot.tracker.sessions
        await self._commit(user_id, slot, record)
        session = slot.tracker.created_session(record)
        if self.on_session is not None and observe:
            self.on_session(user_id, session_id, now, session, known, visit)
        return session

    async def get_session(self, user_id: str, session_id: str) -> dict[str, Any]:
        check_id("sessionId", session_id)
        slot = await self._read_slot(user_id)
        return slot.tracker.get_session(session_id)

    async def analytics(self, user_id: str) -> dict[str, Any]:
        slot = await self._read_slot(user_id)
        return slot.tracker.analytics(self.now_ms())

    async def alarm(self, user_id: str) -> int | None:
        """The user's alarm: end expired sessions, apply retention; return the next due time."""
        slot = await self._slot(user_id)
        now = self.now_ms()
        limits = self.settings.limits
        record = slot.tracker.expire_record(now)
        if record is not None:
            await self._commit(user_id, slot, record)
        remaining = await self.history.trim(
            user_id, self.slots, now - limits.retention_ms, self._fold
        )
        # The scheduler re-arms from what this returns; the activation's own request is moot.
        self.alarm_requests.pop(user_id, None)
        if slot.tracker.is_empty() and not remaining and not slot.committed:
            # The scheduler drops the alarm: the user's next change must ask for one again.
            slot.armed = False
            return None
        return now + limits.alarm_interval_ms

    async def variant(self, user_id: str, experiment_name: str) -> str:
        """The user's variant of an experiment: as first assigned, which is recorded durably
        (an exposure); a stopped experiment's control. An opted-out user is assigned as
        anyone, and nothing is recorded."""
        check_id("userId", user_id)
        experiment = (await DefinitionStore(self.storage).read()).experiment(experiment_name)
        if experiment.stopped:
            return experiment.control
        if user_id in self.settings.opt_out:
            return assign(experiment, user_id)
        slot = await self._slot(user_id)
        known = slot.tracker.assignments.get(experiment_name)
        if known is not None:
            return known
        chosen = assign(experiment, user_id)
        now = self.now_ms()
        await self._commit(
            user_id, slot, slot.tracker.exposure_record(experiment_name, chosen, now)
        )
        if self.on_exposure is not None:
            self.on_exposure(user_id, experiment_name, chosen, now)
        return chosen

    async def export(self, user_id: str) -> list[dict[str, Any]]:
        """All of the user's stored history (within retention), as NDJSON-ready dicts."""
        check_user_id("userId", user_id)
        await self._erased(user_id)
        slot = self.slots.get(user_id)
        # An erasure coming meanwhile waits for this export: for its flush, which would store
        # the user again after the deletion, and for its read of what is being deleted.
        async with self._using(user_id, slot) as current:
            if slot is not None and current:
                await self._settled(slot)
                await self.journal.check_fence()  # as for compaction: a zombie moves nothing
                for _slot, error in await self.history.flush([slot], None, self._unread):
                    raise error
            records = await self.history.records(user_id)
        return list(export_lines(user_id, records))

    async def erase(self, user_id: str) -> dict[str, Any]:
        """Remove the user from memory, the log and storage. The caller removes the alarm.

        The user's other calls wait until it is done, then find them gone: an activation
        in between would read back what is being deleted (and store it again), and an event
        logged after the erase record would be acknowledged, then dropped with the slot."""
        check_user_id("userId", user_id)
        await self._erased(user_id)
        done = self._erasing[user_id] = asyncio.Event()
        try:
            await self._wait_loading(user_id)
            slot = self.slots.get(user_id)
            if slot is not None:
                await self._settled(slot)
            await self._append(["erase", user_id, self.now_ms(), None])
            self.slots.pop(user_id, None)
            self.alarm_requests.forget(user_id)
            self.set_aside.pop(user_id, None)
            self._unread.pop(user_id, None)
            # Writes of the user's data under way land first, then everything is deleted: a
            # compaction's chunk or snapshot, an export's flush, an alarm's snapshot. (Those
            # starting from now on find the user gone and write nothing.)
            await self.uses.ended(user_id)
            async with self._compacting:
                deleted = await self.history.delete(user_id)
            # The log may still hold the user's earlier records: compact it away now. Until
            # that succeeds the erasure is not complete (its record in the log deletes the
            # user's data again if the host restarts meanwhile).
            try:
                await self.compact(force=True)
            except StorageUnavailable as exc:
                raise type(exc)(
                    f"erasing user {user_id!r}: their stored objects were deleted, but this "
                    f"host's log, which still holds their earlier records, could not be "
                    f"compacted ({exc}); erase again"
                ) from exc
        finally:
            del self._erasing[user_id]
            done.set()
        return {"userId": user_id, "erased": True, "objectsDeleted": deleted}

    async def forget(self, user_id: str) -> dict[str, Any] | None:
        """Erase the user if this host holds any of their records (in memory, so in its log
        too): it held them before `TRACKER_HOSTS` changed, and its next compaction would
        write them back into the history of a user their new host erased. Returns the
        erasure's result, or None when there was nothing here to forget."""
        if user_id in self.slots or user_id in self._loading or user_id in self._erasing:
            return await self.erase(user_id)
        return None

    async def drop_journal(self, user_id: str) -> bool:
        """After `stop`, on the host of one user (per-user placement): delete this host's
        journal whole when nothing needs it, its log holding no commits and the user nothing
        stored. Its name is made from the user's ID, and must not outlive their data.
        Returns whether it was deleted."""
        logged = await self.storage.list_objects(f"{self.journal.prefix}/{LOG}")
        if any(holds_commits(info.key) for info in logged):
            return False
        if await self.storage.list_objects(user_key(user_id)):
            return False
        await self.storage.delete_folder(self.journal.prefix)
        return True

    async def _fold(self, slot: UserSlot) -> None:
        """Write the user's snapshot through their last chunk, unless they were erased or
        reloaded meanwhile (retention then deletes the chunks it folds in)."""
        async with self._using(slot.tracker.user_id, slot) as current:
            if current:
                await self.history.write_snapshot(slot, through=slot.next_chunk - 1)
