"""The interface every site-wide metric implements, and the records it is handed.

A metric observes stored events, merges another instance's counts (a host's delta), expires
what is older than the 7 days kept, forgets an erased user, reports its keys of
`GET /api/analytics`, and declares its part of the wire form (the deltas hosts ship and the
`analytics/site` object) once. `SiteStats` (`site.py`) composes the registered metrics.

Two kinds: a `Metric` keeps its own state and wire keys; an `HourlyMetric` keeps one field of
each shared hour bucket (`buckets.Hour`) and one column of each hour's wire row. Hour buckets
are shared so that a range selects the same hours for every hourly metric; they expire, and
are merged by the aggregator's clock, as a whole (`SiteStats`), and hold anonymous counts only,
so an hourly metric neither expires nor forgets anything itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tracker.analytics.counting import (
    CLOCK_SKEW_MS,
    HOUR_MS,
    KEEP_HOURS,
    KEEP_MINUTES,
    MINUTE_MS,
)
from tracker.schema import Observed

if TYPE_CHECKING:
    from tracker.analytics.buckets import Hour, Minute
    from tracker.analytics.sequences import SessionSequence
    from tracker.analytics.wire import Wire


@dataclass(slots=True)
class Seen:
    """One observation: a session's committed movements (or none, for a session created)."""

    user_id: str
    session_id: str
    uid: int  # `user_key(user_id)`
    now_ms: int  # the server's receive time
    movements: Sequence[Observed]
    count: int  # len(movements)
    types: dict[str, int]  # the movements' counts by event type
    sequence: SessionSequence
    counted: bool  # the session is counted as a session now (first seen, not known before)
    minute: Minute
    hour: Hour | None  # None for a session created without movements
    device: dict[str, Any] | None = None
    start_ms: int | None = None  # the session's start, when it was created again


class Clock:
    """Where a merge puts another instance's buckets and times, by the aggregator's clock.

    Hosts run on other nodes, whose clocks may be ahead: a bucket more than `CLOCK_SKEW_MS`
    ahead of `now_ms` goes into the current minute (hour), a time that far ahead is taken as
    now, and a bucket older than the 7 days kept is dropped (None). Without `now_ms` (a host
    putting back a delta it failed to ship: its own counts, on its own clock) nothing moves.
    """

    def __init__(self, now_ms: int | None) -> None:
        self.now_ms = now_ms
        if now_ms is None:
            return
        horizon = now_ms + CLOCK_SKEW_MS
        self.now_minute = now_ms - now_ms % MINUTE_MS
        self.now_hour = now_ms - now_ms % HOUR_MS
        self.last_minute = horizon - horizon % MINUTE_MS
        self.last_hour = horizon - horizon % HOUR_MS
        self.oldest_minute = self.now_minute - (KEEP_MINUTES - 1) * MINUTE_MS
        self.oldest_hour = self.now_hour - (KEEP_HOURS - 1) * HOUR_MS

    def minute(self, start: int) -> int | None:
        if self.now_ms is None:
            return start
        if start < self.oldest_minute:
            return None
        return self.now_minute if start > self.last_minute else start

    def hour(self, start: int) -> int | None:
        if self.now_ms is None:
            return start
        if start < self.oldest_hour:
            return None
        return self.now_hour if start > self.last_hour else start

    def ahead(self, t: int) -> bool:
        """Whether time `t` is further ahead than clocks differ."""
        return self.now_ms is not None and t > self.now_ms + CLOCK_SKEW_MS


@dataclass(slots=True)
class Query:
    """What a report is asked for (see `SiteStats.report`), with the buckets in its range."""

    now_ms: int
    from_ms: int | None
    to_ms: int | None
    path: str | None
    top: int
    lo: int  # the range, within the 7 days kept
    hi: int | None
    ranged: bool
    hours: list[Hour] = field(default_factory=list)
    minutes: list[Minute] = field(default_factory=list)  # only when `ranged`


class Metric(Protocol):
    """A metric with state of its own."""

    def observe(self, seen: Seen) -> None: ...

    def merge(self, theirs: Any, clock: Clock) -> None:
        """Add `theirs` (an instance of the same class); nothing here may fail part way."""

    def expire(self, newest: int) -> None:
        """Drop what is older than kept, `newest` being the start of the newest minute."""

    def forget_user(self, user_id: str, uid: int) -> None: ...

    def report(self, query: Query) -> dict[str, Any]: ...

    def to_wire(self, wire: dict[str, Any]) -> None:
        """Add this metric's keys of the wire form to `wire`."""

    def load(self, wire: Wire) -> None:
        """Take this metric's keys of a checked wire form (see `wire.py`)."""


class HourlyMetric(Protocol):
    """A metric kept in the shared hour buckets (its field of `Hour`)."""

    def observe(self, seen: Seen) -> None: ...

    def merge_hour(self, mine: Hour, theirs: Hour) -> None: ...

    def report(self, query: Query) -> dict[str, Any]: ...

    def hour_to_wire(self, hour: Hour) -> Any:
        """This metric's column of the hour's wire row."""

    def load_hour(self, hour: Hour, column: Any, start: int) -> None:
        """Take this metric's column of a checked wire row of the hour starting at `start`."""
