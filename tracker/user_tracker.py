"""`UserTracker`: one user's sessions and movements, as in the seed, in plain Python.

No Ray, no HTTP, no storage, no clock of its own: every method takes `now_ms`. Each change is
made in two steps, so that what is logged is exactly what is replayed:
`*_record(...)` checks the request against the current state and returns a record (or raises),
and `apply(record)` makes the change. Recovery applies the logged records again; `apply` is
idempotent for movements with an `eventId`, which is what makes retried requests count once.

Sessions keep their movements encoded (see `session` and `codec`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from tracker import codec
from tracker.codec import Record
from tracker.config import Config
from tracker.errors import InvalidMovement, UnknownSession
from tracker.schema import DeviceInfo, Movement, Observed
from tracker.seen import SeenEvents, pair_key, pair_keys
from tracker.session import SessionState, kept_positions


@dataclass(frozen=True)
class Limits:
    """The seed's constants, made configurable. The defaults are `Config`'s, in ms."""

    max_movements: int = Config.max_movements_per_session
    max_sessions: int = Config.max_sessions_per_user
    session_timeout_ms: int = int(Config.session_timeout_s * 1000)
    alarm_interval_ms: int = int(Config.alarm_interval_s * 1000)
    retention_ms: int = int(Config.retention_s * 1000)

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        """The limits `config` sets (seconds made milliseconds, as the defaults are)."""
        return cls(
            max_movements=config.max_movements_per_session,
            max_sessions=config.max_sessions_per_user,
            session_timeout_ms=int(config.session_timeout_s * 1000),
            alarm_interval_ms=int(config.alarm_interval_s * 1000),
            retention_ms=int(config.retention_s * 1000),
        )


class Tracked(NamedTuple):
    """What a tracking request becomes: its record (None when every movement was a duplicate),
    how many movements are new, and those movements by session (for analytics)."""

    record: Record | None
    new: int
    kept: list[tuple[str, Sequence[Observed]]]


class UserTracker:
    """All sessions of one user, keyed by session ID."""

    def __init__(self, user_id: str, limits: Limits | None = None) -> None:
        self.user_id = user_id
        self.limits = limits or Limits()
        self.sessions: dict[str, SessionState] = {}
        # Events stored during the last day, whether or not their session is still here.
        self.seen = SeenEvents()
        # Each experiment's variant, as first assigned (`exposure_record`): kept for good.
        self.assignments: dict[str, str] = {}

    # -- requests -> records -------------------------------------------------------------

    def create_session_record(
        self,
        session_id: str,
        device_info: DeviceInfo | dict[str, Any] | None,
        now_ms: int,
        visit: dict[str, Any] | None = None,
    ) -> Record:
        """Start (or restart) a session. Device info replaces what the session had. `visit`:
        what was derived of the visit (`tracker.visits.derive`), stored as a third item that
        records stored before it lack."""
        info: Any = device_info
        if isinstance(device_info, DeviceInfo):
            info = msgspec.to_builtins(device_info)
        payload = [session_id, info] if visit is None else [session_id, info, visit]
        return ["session", self.user_id, now_ms, payload]

    def track_record(self, movements: Iterable[Movement], now_ms: int) -> Tracked:
        """Turn validated movements of this user into one record (see `track_stored_record`)."""
        user_id = self.user_id
        movements = list(movements)
        for index, movement in enumerate(movements):
            if movement.userId != user_id:
                raise InvalidMovement(
                    f"events.{index}.userId",
                    f"{movement.userId!r} is not the user this call is for ({user_id!r})",
                )
        groups = codec.group_by_session(movements)
        entries = [(sid, codec.encode_blob(group), group) for sid, group in groups.items()]
        return self.track_stored_record(entries, now_ms)

    def track_stored_record(self, entries: Sequence[codec.Entry], now_ms: int) -> Tracked:
        """Turn validated movements in the stored form into one record, dropping duplicates
        (an `eventId` this session has seen, or seen earlier in the batch; or stored in this
        session during the last day, which `seen` remembers after the session has ended).

        The record is None when every movement was a duplicate. A blob is logged as it came
        unless some of its movements were dropped.
        """
        sessions = self.sessions
        seen = self.seen
        payload: list[list[Any]] = []
        kept: list[tuple[str, Sequence[Observed]]] = []
        in_batch: dict[str, set[str | None]] = {}
        new = 0
        for session_id, blob, movements in entries:
            session = sessions.get(session_id)
            known = session if session is not None and session.movements else None
            # The user's record is asked only when the session's window may miss an ID.
            record = None if known is not None and known.recent_ids.whole else seen
            event_ids = [m.eventId for m in movements]
            batch_ids = in_batch.setdefault(session_id, set())
            keep: list[int] | None
            if (
                not batch_ids
                and len(set(event_ids)) == len(event_ids)
                and (known is None or not known.recent_ids.holds_any(event_ids))
                and not (record and record.holds_any(pair_keys(session_id, event_ids)))
            ):
                # The common case, checked for the whole batch at once: nothing seen before.
                keep = None
                batch_ids.update(event_ids)
            else:
                keep = kept_positions(event_ids, _seen_by(known, batch_ids, record, session_id))
            if keep is None:
                payload.append([session_id, blob])
                kept.append((session_id, movements))
                new += len(movements)
            elif keep:
                payload.append([session_id, codec.blob_subset(blob, keep)])
                kept.append((session_id, [movements[i] for i in keep]))
                new += len(keep)
        if not new:
            return Tracked(None, 0, [])
        return Tracked(["track", self.user_id, now_ms, payload], new, kept)

    def exposure_record(self, experiment: str, variant: str, now_ms: int) -> Record:
        """The user's first assignment to an experiment (an exposure, for its results)."""
        return ["exposure", self.user_id, now_ms, [experiment, variant]]

    def expire_record(self, now_ms: int) -> Record | None:
        """End the sessions idle longer than the timeout; None when there are none."""
        cutoff = now_ms - self.limits.session_timeout_ms
        if all(s.last_activity >= cutoff for s in self.sessions.values()):
            return None
        return ["expire", self.user_id, now_ms, None]

    # -- applying records ------------------------------------------------------------------

    def apply(
        self,
        record: Record,
        *,
        fresh: bool = False,
        decoded: Sequence[tuple[str, Sequence[Observed]]] | None = None,
    ) -> None:
        """Make the change a record describes. Records come from `*_record` or from a log.

        `fresh`: the record was just made by `track_record` against this very state, so its
        event IDs were checked already (replayed records are checked again, which is what
        makes applying one twice harmless). `decoded`: a fresh `track` record's movements
        as `Tracked.kept` holds them, one entry per blob, so the blobs are not read again.
        """
        op, _user, now_ms, payload = record
        if op == "track":
            self._apply_track(now_ms, payload, fresh, decoded)
        elif op == "session":
            session_id, device_info = payload[:2]
            session = self.sessions.get(session_id)
            if session is None:
                self._start_session(session_id, now_ms, device_info)
            else:
                session.last_activity = max(session.last_activity, now_ms)
                if device_info is not None:
                    session.device_info = device_info
        elif op == "expire":
            self._apply_expire(now_ms)
        elif op == "exposure":
            experiment, variant = payload
            self.assignments.setdefault(experiment, variant)
        elif op == "erase":
            self.sessions.clear()
            self.seen = SeenEvents()
            self.assignments.clear()
        else:
            raise ValueError(f"unknown record op {op!r}")

    def _apply_track(
        self,
        now_ms: int,
        entries: list[list[Any]],
        fresh: bool,
        decoded: Sequence[tuple[str, Sequence[Observed]]] | None,
    ) -> None:
        for index, (session_id, blob) in enumerate(entries):
            session = self.sessions.get(session_id)
            if session is None:
                # The seed starts a session on its first movement; so do we.
                session = self._start_session(session_id, now_ms, None)
            event_ids = None if decoded is None else [m.eventId for m in decoded[index][1]]
            if event_ids is None:
                event_ids = codec.blob_event_ids(blob)
            session.add(blob, fresh=fresh, event_ids=event_ids)
            session.last_activity = max(session.last_activity, now_ms)
            self.seen.add(pair_keys(session_id, event_ids), now_ms)

    def _start_session(self, session_id: str, now_ms: int, device_info: Any) -> SessionState:
        """A new session in memory. At `max_sessions`, the session idle longest leaves memory
        first (the first of them held, on a tie): only memory, as when a session ends; its
        history stays stored and exported, and an event for it starts it again. Decided by
        the records alone, so a replay evicts the same sessions."""
        sessions = self.sessions
        if len(sessions) >= self.limits.max_sessions:
            del sessions[min(sessions, key=lambda s: sessions[s].last_activity)]
        session = sessions[session_id] = SessionState(
            session_id, now_ms, device_info, self.limits.max_movements
        )
        return session

    def _apply_expire(self, now_ms: int) -> None:
        cutoff = now_ms - self.limits.session_timeout_ms
        for session_id in [s for s, v in self.sessions.items() if v.last_activity < cutoff]:
            del self.sessions[session_id]
        self.seen.trim(now_ms)

    # -- queries ---------------------------------------------------------------------------

    def get_session(self, session_id: str) -> dict[str, Any]:
        """The session in the seed's shape; raises UnknownSession."""
        session = self.sessions.get(session_id)
        if session is None:
            raise UnknownSession(self.user_id, session_id)
        return self.session_dict(session)

    def created_session(self, record: Record) -> dict[str, Any]:
        """The session a `create_session_record` record made, as `get_session` answers it. If
        it has left memory already (more than `max_sessions` sessions started meanwhile), the
        session as that record made it."""
        _op, _user, now_ms, payload = record
        session_id, device_info = payload[:2]
        session = self.sessions.get(session_id)
        if session is None:
            session = SessionState(session_id, now_ms, device_info, self.limits.max_movements)
        return self.session_dict(session)

    def session_dict(self, session: SessionState, *, movements: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = {
            "userId": self.user_id,
            "sessionId": session.session_id,
            "startTime": session.start_time,
            "lastActivity": session.last_activity,
        }
        if movements:
            user_id, session_id = self.user_id, session.session_id
            result["movements"] = [
                codec.movement_dict(m, user_id, session_id) for m in session.movements
            ]
        else:
            result["movementCount"] = len(session.movements)
        if session.device_info is not None:
            result["deviceInfo"] = session.device_info
        return result

    def analytics(self, now_ms: int | None = None) -> dict[str, Any]:
        """The seed's analytics, for this user: totals, their sessions, ten most recent.

        Given `now_ms`, sessions idle past the timeout by then are left out: they have ended,
        though they stay in memory until the user's alarm removes them (the seed removed them
        before answering; a read changes nothing here)."""
        live: Iterable[SessionState] = self.sessions.values()
        if now_ms is not None:
            cutoff = now_ms - self.limits.session_timeout_ms
            live = [s for s in live if s.last_activity >= cutoff]
        sessions = [self.session_dict(s) for s in live]
        recent = sorted(sessions, key=lambda s: s["lastActivity"], reverse=True)[:10]
        return {"totalSessions": len(sessions), "userSessions": sessions, "recentActivity": recent}

    def is_empty(self) -> bool:
        return not self.sessions

    def live_bytes(self) -> int:
        return sum(s.movements.nbytes() + 64 for s in self.sessions.values()) + self.seen.nbytes()

    def last_activity(self) -> int:
        return max((s.last_activity for s in self.sessions.values()), default=0)

    def current_session(self, now_ms: int) -> str | None:
        """The session active most recently, if it was within the session timeout: where a
        server-side event without a session of its own belongs (as tracker.js keeps one
        session while the visitor comes back within the timeout)."""
        if not self.sessions:
            return None
        latest = max(self.sessions.values(), key=lambda s: s.last_activity)
        if latest.last_activity < now_ms - self.limits.session_timeout_ms:
            return None
        return latest.session_id

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> list[Any]:
        """The live state as plain msgpack-able lists (see `restore`)."""
        return [
            [s.session_id, s.start_time, s.last_activity, s.device_info, s.movements.blob()]
            for s in self.sessions.values()
        ]

    def restore(
        self,
        snapshot: list[Any],
        seen: Iterable[Sequence[Any]] = (),
        assignments: dict[str, str] | None = None,
    ) -> None:
        """Take a snapshot's sessions (`snapshot`), `seen` (`SeenEvents.to_stored`) and
        experiment `assignments`."""
        self.seen = SeenEvents.from_stored(seen)
        self.assignments = dict(assignments or {})
        for session_id, start, last, device_info, blob in snapshot:
            session = SessionState(session_id, start, device_info, self.limits.max_movements)
            session.last_activity = last
            session.restore(blob)
            self.sessions[session_id] = session
        sessions = self.sessions
        while len(sessions) > self.limits.max_sessions:  # stored under a larger cap
            del sessions[min(sessions, key=lambda s: sessions[s].last_activity)]


def _seen_by(
    session: SessionState | None,
    batch_ids: set[str | None],
    seen: SeenEvents | None,
    session_id: str,
) -> Callable[[str], bool]:
    """Whether an event ID is a duplicate: seen by the session already, earlier in the batch
    (`batch_ids`, which the IDs let through join), or in the user's `seen` (if given)."""

    def duplicate(event_id: str) -> bool:
        if (
            event_id in batch_ids
            or (session is not None and session.has_seen(event_id))
            or (seen and seen.holds(pair_key(session_id, event_id)))
        ):
            return True
        batch_ids.add(event_id)
        return False

    return duplicate


def _movement_lines(
    user_id: str, session_id: str, blob: bytes, now_ms: int, seen: set[tuple[str, str]]
) -> Iterator[dict[str, Any]]:
    """A stored blob's movements, those whose event ID was seen already left out."""
    for movement in codec.decode_blob(blob, user_id, session_id):
        if movement.eventId is not None:
            if (session_id, movement.eventId) in seen:
                continue
            seen.add((session_id, movement.eventId))
        line = msgspec.to_builtins(movement)
        yield {"type": "movement", "receivedAt": now_ms, **line}


def _exposure_line(user_id: str, now_ms: int, payload: list[str]) -> dict[str, Any]:
    experiment, variant = payload
    return {
        "type": "exposure",
        "userId": user_id,
        "experiment": experiment,
        "variant": variant,
        "receivedAt": now_ms,
    }


def export_lines(user_id: str, records: Iterable[Record]) -> Iterator[dict[str, Any]]:
    """A user's whole stored history as NDJSON-ready dicts: sessions, then their movements,
    then their experiments' exposures (`{"type": "exposure", experiment, variant, receivedAt}`).

    Unlike the live state, history has no movement cap: whatever retention still keeps.
    """
    sessions: dict[str, dict[str, Any]] = {}
    movements: list[dict[str, Any]] = []
    exposures: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def touch(session_id: str, now_ms: int) -> dict[str, Any]:
        entry = sessions.setdefault(
            session_id,
            {
                "type": "session",
                "userId": user_id,
                "sessionId": session_id,
                "startTime": now_ms,
                "lastActivity": now_ms,
            },
        )
        entry["lastActivity"] = max(entry["lastActivity"], now_ms)
        return entry

    for op, _user, now_ms, payload in records:
        if op == "erase":
            sessions.clear()
            movements.clear()
            exposures.clear()
            seen.clear()
        elif op == "exposure":
            exposures.append(_exposure_line(user_id, now_ms, payload))
        elif op == "session":
            session_id, device_info = payload[:2]
            entry = touch(session_id, now_ms)
            if device_info is not None:
                entry["deviceInfo"] = device_info
            if len(payload) > 2:
                entry["visit"] = payload[2]
        elif op == "track":
            for session_id, blob in payload:
                touch(session_id, now_ms)
                movements.extend(_movement_lines(user_id, session_id, blob, now_ms, seen))
    yield from sessions.values()
    yield from movements
    yield from exposures
