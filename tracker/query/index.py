"""A host's index of its users' histories for queries: `UserHistory` per user, kept up to date
on every commit, rebuilt from storage when the host starts, trimmed by retention, and
forgetting erased users.

An event costs one `Event` (a slotted object) in memory; its strings (paths, elements, names)
are interned, so a page's path is held once whoever views it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec

from tracker import codec
from tracker.codec import Record
from tracker.query.events import Event, UserHistory, Visit
from tracker.schema import Observed
from tracker.visits.derive import enter, visit_of


class HistoryIndex:
    """Every user's `UserHistory` on one host."""

    def __init__(self) -> None:
        self.users: dict[str, UserHistory] = {}
        self._next_seq: dict[str, int] = {}
        self.events = 0

    def histories(self) -> Iterable[UserHistory]:
        return self.users.values()

    def _history(self, user_id: str) -> UserHistory:
        history = self.users.get(user_id)
        if history is None:
            history = self.users[user_id] = UserHistory(user_id)
        return history

    def session(self, user_id: str, session_id: str, now_ms: int, stored: Any) -> None:
        """A session started (or started again): its visit takes what was derived of it."""
        history = self._history(user_id)
        known = history.visits.get(session_id)
        visit = visit_of(session_id, now_ms, stored if isinstance(stored, dict) else None)
        if known is None:
            history.visits[session_id] = visit
            return
        # Started again (a new page load of the same tab's session): its events point at the
        # visit they were stored with, which keeps its start and takes what is known now.
        if stored:
            for name in ("referrer", "channel", "campaign", "browser", "os", "device", "country"):
                setattr(known, name, getattr(visit, name))
            known.bot = known.bot or visit.bot

    def track(
        self, user_id: str, session_id: str, movements: Sequence[Observed], now_ms: int
    ) -> None:
        """A session's movements, as stored (duplicates already dropped)."""
        history = self._history(user_id)
        visit = history.visits.get(session_id)
        if visit is None:
            start = min((m.timestamp for m in movements), default=now_ms)
            visit = history.visits[session_id] = Visit(session_id, start)
        first = self._next_seq.get(user_id, 0)
        intern = sys.intern
        made = []
        for seq, movement in enumerate(movements, first):
            data = movement.data
            path, element, name = data.path, data.element, data.name
            entered = data.referrer is not None or data.utm is not None
            if entered and movement.event == "page_view":
                utm = None if data.utm is None else msgspec.to_builtins(data.utm)
                enter(visit, data.referrer, utm)
            made.append(
                Event(
                    movement.timestamp,
                    seq,
                    movement.event,
                    visit,
                    None if path is None else intern(path),
                    None if element is None else intern(element),
                    None if name is None else intern(name),
                    data.properties,
                )
            )
        history.extend(made)
        self._next_seq[user_id] = first + len(made)
        self.events += len(made)

    def exposure(self, user_id: str, experiment: str, variant: str, now_ms: int) -> None:
        """A user's first assignment to an experiment, at the time it was recorded. It
        belongs to no visit of the user's (a visit of no session stands for it)."""
        history = self._history(user_id)
        seq = self._next_seq.get(user_id, 0)
        visit = Visit("", now_ms)
        history.add(Event(now_ms, seq, "exposure", visit, name=experiment, variant=variant))
        self._next_seq[user_id] = seq + 1
        self.events += 1

    def forget(self, user_id: str) -> None:
        history = self.users.pop(user_id, None)
        self._next_seq.pop(user_id, None)
        if history is not None:
            self.events -= len(history.events)

    def trim(self, cutoff_ms: int) -> int:
        """Drop events older than `cutoff_ms`, and the visits and users left without any;
        return how many events were dropped."""
        dropped = 0
        for user_id in list(self.users):
            history = self.users[user_id]
            events = history.ordered()
            if not events or events[0].ts >= cutoff_ms:
                continue
            kept = [e for e in events if e.ts >= cutoff_ms]
            dropped += len(events) - len(kept)
            history.events = kept
            live = {e.visit.session_id for e in kept}
            history.visits = {s: v for s, v in history.visits.items() if s in live}
            if not kept:
                self.forget(user_id)
        self.events -= dropped
        return dropped

    def apply(self, user_id: str, records: Iterable[Record]) -> None:
        """A user's stored records, in order (their history's chunks): what they made, as the
        commits made it. An event ID met twice counts once, as in an export."""
        seen: set[tuple[str, str]] = set()
        for op, _user, now_ms, payload in records:
            if op == "erase":
                self.forget(user_id)
                seen.clear()
            elif op == "session":
                self.session(user_id, payload[0], now_ms, payload[2] if len(payload) > 2 else None)
            elif op == "exposure":
                self.exposure(user_id, payload[0], payload[1], now_ms)
            elif op == "track":
                for session_id, blob in payload:
                    fresh = list(_first_seen(session_id, codec.decode_stored(blob), seen))
                    if fresh:
                        self.track(user_id, session_id, fresh, now_ms)


def _first_seen(
    session_id: str, movements: Iterable[codec.StoredMovement], seen: set[tuple[str, str]]
) -> Iterator[codec.StoredMovement]:
    for movement in movements:
        if movement.eventId is not None:
            key = (session_id, movement.eventId)
            if key in seen:
                continue
            seen.add(key)
        yield movement
