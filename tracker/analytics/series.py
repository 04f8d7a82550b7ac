"""The time series: events, event types and distinct users per minute, the last 7 days.

Users are kept as a set of 63-bit hashes for the last hour, enough for `activeUsers` (the last
5 minutes) and for deltas arriving late; older minutes keep only the count. Deltas must reach
the aggregator within that hour for per-minute distinct counts to stay exact: a delta's users
merged into a minute reduced to a count are added on top of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta

from tracker.analytics.buckets import Minute
from tracker.analytics.counting import (
    KEEP_MINUTES,
    MINUTE_MS,
    Count,
    Key,
    UserHash,
    add,
    saturating_sum,
)
from tracker.analytics.metric import Clock, Query, Seen
from tracker.analytics.totals import MAX_TYPES
from tracker.errors import InvalidInput
from tracker.schema import Timestamp

if TYPE_CHECKING:
    from tracker.analytics.wire import Wire

EXACT_USER_MINUTES = 60
ACTIVE_WINDOW_MS = 5 * MINUTE_MS
SERIES_MINUTES = 60


class MinuteRow(msgspec.Struct, array_like=True, gc=False):
    start: Timestamp
    count: Count
    types: Annotated[dict[Key, Count], Meta(max_length=MAX_TYPES)]
    users: list[UserHash] | None
    n_users: Count


class Series:
    """`eventsPerMinute` and `activeUsers`; the minute buckets a range's totals come from."""

    def __init__(self) -> None:
        self.minutes: dict[int, Minute] = {}

    def minute(self, start: int) -> Minute:
        minute = self.minutes.get(start)
        if minute is None:
            minute = self.minutes[start] = Minute()
        return minute

    def observe(self, seen: Seen) -> None:
        minute = seen.minute
        if minute.users is not None:
            minute.users.add(seen.uid)
        if seen.count:
            minute.count += seen.count
            per_minute = minute.types
            for event, n in seen.types.items():
                per_minute[event] = per_minute.get(event, 0) + n

    def newest_merged(self, theirs: Series, clock: Clock, newest: int) -> int:
        """The newest minute once `theirs` is merged, `newest` now."""
        for start in theirs.minutes:
            at = clock.minute(start)
            if at is not None and at > newest:
                newest = at
        return newest

    def merge(self, theirs: Series, clock: Clock) -> None:
        for start, other in theirs.minutes.items():
            at = clock.minute(start)
            if at is None:
                continue
            mine = self.minute(at)
            mine.count = saturating_sum(mine.count, other.count)
            add(mine.types, other.types)
            if mine.users is not None and other.users is not None:
                mine.users |= other.users
            else:
                mine.n_users = saturating_sum(mine.distinct_users(), other.distinct_users())
                mine.users = None

    def expire(self, newest: int) -> None:
        """Drop minutes older than 7 days and user sets older than an hour."""
        oldest = newest - (KEEP_MINUTES - 1) * MINUTE_MS
        exact = newest - (EXACT_USER_MINUTES - 1) * MINUTE_MS
        for start in [s for s, m in self.minutes.items() if s < exact and m.users is not None]:
            minute = self.minutes[start]
            minute.n_users = minute.distinct_users()
            minute.users = None
        for start in [s for s in self.minutes if s < oldest]:
            del self.minutes[start]

    def forget_user(self, user_id: str, uid: int) -> None:
        for minute in self.minutes.values():
            if minute.users is not None:
                minute.users.discard(uid)

    def report(self, query: Query) -> dict[str, Any]:
        return {
            "activeUsers": self._active_users(query.now_ms),
            "eventsPerMinute": self._series(query.now_ms, query.from_ms, query.to_ms),
        }

    def _active_users(self, now_ms: int) -> int:
        active: set[int] = set()
        frozen = 0
        for start, minute in self.minutes.items():
            if now_ms - ACTIVE_WINDOW_MS < start + MINUTE_MS and start <= now_ms:
                if minute.users is None:
                    frozen += minute.n_users
                else:
                    active |= minute.users
        return len(active) + frozen

    def _series(self, now_ms: int, from_ms: int | None, to_ms: int | None) -> list[dict[str, int]]:
        """Events and distinct users per minute, oldest first, with empty minutes as zeros."""
        now_minute = now_ms - now_ms % MINUTE_MS
        end = now_minute if to_ms is None else min(now_minute, to_ms - to_ms % MINUTE_MS)
        if from_ms is None:
            start = end - (SERIES_MINUTES - 1) * MINUTE_MS
        else:
            start = from_ms - from_ms % MINUTE_MS
        start = max(start, now_minute - (KEEP_MINUTES - 1) * MINUTE_MS)
        series = []
        for t in range(start, end + 1, MINUTE_MS):
            minute = self.minutes.get(t)
            if minute is None:
                series.append({"t": t, "count": 0, "users": 0})
            else:
                series.append({"t": t, "count": minute.count, "users": minute.distinct_users()})
        return series

    def to_wire(self, wire: dict[str, Any]) -> None:
        wire["minutes"] = [
            [start, m.count, dict(m.types), None if m.users is None else list(m.users), m.n_users]
            for start, m in self.minutes.items()
        ]

    def load(self, wire: Wire) -> None:
        for row in wire.minutes:
            if row.start % MINUTE_MS:
                raise InvalidInput("analytics", f"minute bucket {row.start} is not on a minute")
            minute = self.minutes[row.start] = Minute()
            minute.count = row.count
            minute.types = row.types
            minute.users = None if row.users is None else set(row.users)
            minute.n_users = row.n_users
