"""Totals: events, sessions, events by type, and the all-time count of users (a sketch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.analytics.counting import add, saturating_sum
from tracker.analytics.distinct import DistinctUsers
from tracker.analytics.metric import Clock, Query, Seen
from tracker.schema import EVENT_TYPES

if TYPE_CHECKING:
    from tracker.analytics.wire import Wire

MAX_TYPES = 64  # event types in a delta's counts: room for types added by a newer version


class Totals:
    """`totalSessions`, `totalUsers`, and, all time or in a range, `totalEvents` and
    `eventsByType` (a range's come from the series' minute buckets)."""

    def __init__(self) -> None:
        self.events = 0
        self.sessions = 0
        self.types: dict[str, int] = {}
        self.users = DistinctUsers()

    def observe(self, seen: Seen) -> None:
        self.users.add(seen.uid)
        if seen.counted:
            self.sessions += 1
        if seen.count:
            self.events += seen.count
            totals = self.types
            for event, n in seen.types.items():
                totals[event] = totals.get(event, 0) + n

    def merge(self, theirs: Totals, clock: Clock) -> None:
        self.events = saturating_sum(self.events, theirs.events)
        self.sessions = saturating_sum(self.sessions, theirs.sessions)
        add(self.types, theirs.types)
        self.users.merge(theirs.users)

    def expire(self, newest: int) -> None:
        pass  # all time

    def forget_user(self, user_id: str, uid: int) -> None:
        pass  # counts and a sketch: none names a user

    def report(self, query: Query) -> dict[str, Any]:
        if query.ranged:
            total_events = sum(m.count for m in query.minutes)
            types: dict[str, int] = {}
            for minute in query.minutes:
                add(types, minute.types)
        else:
            total_events, types = self.events, self.types
        return {
            "totalSessions": self.sessions,
            "totalUsers": self.users.count(),
            "totalEvents": total_events,
            "eventsByType": {event: types.get(event, 0) for event in EVENT_TYPES},
        }

    def to_wire(self, wire: dict[str, Any]) -> None:
        wire["events"] = self.events
        wire["sessions"] = self.sessions
        wire["types"] = dict(self.types)
        wire["users"] = self.users.to_bytes()

    def load(self, wire: Wire) -> None:
        self.events = wire.events
        self.sessions = wire.sessions
        self.types = wire.types
        if isinstance(wire.users, bytes):
            self.users = DistinctUsers.from_bytes(wire.users)
        else:
            self.users = DistinctUsers.from_hashes(wire.users)
