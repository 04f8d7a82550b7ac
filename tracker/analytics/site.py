"""`SiteStats`: the site-wide analytics behind `GET /api/analytics`, in bounded memory.

Users live on many hosts, the dashboard reads one aggregator. Each host keeps a long-lived
`SiteStats`, calls `observe()` for every committed batch and `observe_session()` for every
session it creates, and about once a second ships what it gathered::

    delta = stats.take_delta()                      # the counters; `stats` starts again empty
    data = msgspec.msgpack.encode(delta.to_wire())  # on the host
    aggregator.merge(SiteStats.decode_wire(data), now_ms)   # in the aggregator

`SiteStats` only composes the metrics registered below (`METRICS`, `HOURLY`), one module each,
all implementing `metric.py`'s interface. To add a metric, add its module and register it here.

The aggregator trusts nothing in a delta: `decode_wire` (`from_wire` for a decoded one) checks
every type, bound and row length before anything is merged (`wire.py`), and raises
`InvalidInput` for a delta `merge` could not take whole; `merge` then cannot fail part way.
Counts saturate at `MAX_COUNT` (2^53), so no total outgrows the codec.

Two kinds of state, kept apart so that shipping can be plain addition:

* **Counters** travel in deltas. `merge` adds them, so merging the deltas of several hosts
  gives exactly what one instance observing every batch would have, as long as no cap is hit
  (caps drop the smallest keys, which depends on the order of arrival).
* **Per-session order** (`SessionSequences`) is needed to count journeys and rage clicks but is
  not a sum of anything: `take_delta` leaves it with the host, which sees every event of its
  users' sessions. A restarted host starts sessions' sequences afresh (without counting those
  sessions again: the host says which ones its user trackers held).

Time: buckets use `now_ms`, the server's receive time; client timestamps are only used inside a
session (the 1 s window of a rage burst, where one batch shares one receive time). A session
counts its user in the minute it is created, and again in the minute it is created again (the
browser client posts its session on every page load): that page load is activity. It is never
counted at its earlier start time: a delta's users are merged exactly only into a minute whose
set of users the aggregator still holds (the last hour, see `series.py`). Hosts' clocks may
differ from the aggregator's: it merges with its own `now_ms` (see `metric.Clock`) and never
lets `newest`, which expiry goes by, run more than `CLOCK_SKEW_MS` ahead of it (a host hours
ahead had frozen the current minutes' user sets, so users counted twice; a `newest` far in the
future had emptied every bucket and stopped expiry for good).

Minute buckets cover the last 7 days (`series.py`); hour buckets the last 7 * 24, so
`report(from_ms=, to_ms=)` sums the hours that overlap the range for the hourly metrics: these
have hour granularity. `eventsByType` and `totalEvents` in a range come from the minute buckets;
without a range they are all-time totals.

`totalSessions` counts sessions created plus sessions first seen in movements, deduplicated by
the host's `SessionSequences` (so a session evicted from it, or seen again after a host
restart, counts again). `forget_user` removes a user from the distinct counts of the last hour,
recent sessions and rage clicks; anonymous counters keep what they had counted, and so does the
all-time user count (a sketch, which holds no ID).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from tracker.analytics import wire as wire_form
from tracker.analytics.buckets import Hour, Minute
from tracker.analytics.counting import (
    HOUR_MS,
    KEEP_HOURS,
    KEEP_MINUTES,
    MINUTE_MS,
    overlapping,
    user_key,
)
from tracker.analytics.elements import Elements
from tracker.analytics.heatmap import Heatmap
from tracker.analytics.journeys import Journeys
from tracker.analytics.metric import Clock, HourlyMetric, Metric, Query, Seen
from tracker.analytics.pages import Pages
from tracker.analytics.rage import RageClicks
from tracker.analytics.recent import RecentActivity
from tracker.analytics.scroll import ScrollDepth
from tracker.analytics.sequences import SessionSequences
from tracker.analytics.series import Series
from tracker.analytics.totals import Totals
from tracker.errors import InvalidInput
from tracker.schema import Movement, Observed

# The registry. Metrics with state of their own, each a fresh instance per `SiteStats`:
METRICS: tuple[type[Metric], ...] = (Totals, Series, RecentActivity, RageClicks)
# Metrics kept in the hour buckets, in the order of their columns in `wire.HourRow`:
HOURLY: tuple[HourlyMetric, ...] = (Pages(), Elements(), Journeys(), Heatmap(), ScrollDepth())

M = TypeVar("M")


class SiteStats:
    """Site-wide aggregates: observed on hosts, shipped as deltas, merged in the aggregator."""

    def __init__(self, sequences: SessionSequences | None = None) -> None:
        self.sequences = sequences if sequences is not None else SessionSequences()
        self._reset()

    def _reset(self) -> None:
        self.newest = 0  # start of the newest minute bucket
        self.hours: dict[int, Hour] = {}
        self.metrics: list[Metric] = [kind() for kind in METRICS]
        self.series = self.metric(Series)

    def metric(self, kind: type[M]) -> M:
        """The registered metric of class `kind`."""
        return next(m for m in self.metrics if isinstance(m, kind))

    def is_empty(self) -> bool:
        return not self.series.minutes and not self.metric(RecentActivity).recent

    def total_events(self) -> int:
        return self.metric(Totals).events

    def take_delta(self) -> SiteStats:
        """Hand over the counters gathered so far and start empty; sequences stay here."""
        taken = copy.copy(self)
        self._reset()
        return taken

    # -- observing (hot path) -----------------------------------------------------------------

    def observe(self, user_id: str, movements: Sequence[Movement], now_ms: int) -> None:
        """Count one committed batch of `user_id`'s movements, received at `now_ms`."""
        start = 0
        for end in range(1, len(movements) + 1):
            if end == len(movements) or movements[end].sessionId != movements[start].sessionId:
                self.observe_stored(
                    user_id, movements[start].sessionId, movements[start:end], now_ms
                )
                start = end

    def observe_stored(
        self,
        user_id: str,
        session_id: str,
        movements: Sequence[Observed],
        now_ms: int,
        *,
        known: bool = False,
    ) -> None:
        """Count committed movements of one session (a `track` record's entry, decoded).

        `known`: the user's tracker held the session already (restored from storage after a
        restart, say), so it is not counted as a session again, even where this instance has
        no sequence for it."""
        count = len(movements)
        if not count:
            return
        events = [movement.event for movement in movements]
        # Counted once per batch (a batch has few event types), in the order first seen.
        types = Counter(events) if count > 1 else {events[0]: 1}
        minute = self._minute(now_ms)
        start = now_ms - now_ms % HOUR_MS
        hour = self.hours.get(start)
        if hour is None:
            hour = self.hours[start] = Hour()
        self._observe(user_id, session_id, now_ms, known, minute, hour, movements, types)

    def observe_session(
        self,
        user_id: str,
        session_id: str,
        now_ms: int,
        device: dict[str, Any] | None = None,
        *,
        start_ms: int | None = None,
        known: bool = False,
    ) -> None:
        """Count a session created (or created again) at `now_ms`: once as a session, even if
        it is created again or has movements; its user as active at `now_ms`. `start_ms`: the
        session's start, when it began earlier (it is created again). `known`: as for
        `observe_stored`."""
        minute = self._minute(now_ms)
        self._observe(user_id, session_id, now_ms, known, minute, None, (), {}, device, start_ms)

    def _observe(
        self,
        user_id: str,
        session_id: str,
        now_ms: int,
        known: bool,
        minute: Minute,
        hour: Hour | None,
        movements: Sequence[Observed],
        types: dict[str, int],
        device: dict[str, Any] | None = None,
        start_ms: int | None = None,
    ) -> None:
        sequence, created = self.sequences.touch(user_id, session_id)
        seen = Seen(
            user_id,
            session_id,
            user_key(user_id),
            now_ms,
            movements,
            len(movements),
            types,
            sequence,
            created and not known,
            minute,
            hour,
            device,
            start_ms,
        )
        for metric in self.metrics:
            metric.observe(seen)
        if hour is not None:
            for hourly in HOURLY:
                hourly.observe(seen)

    def _minute(self, now_ms: int) -> Minute:
        start = now_ms - now_ms % MINUTE_MS
        if start > self.newest:
            self.newest = start
            self._expire()
        return self.series.minute(start)

    def _expire(self) -> None:
        """Drop buckets older than 7 days (and what each metric keeps no longer)."""
        for metric in self.metrics:
            metric.expire(self.newest)
        oldest_hour = self.newest - self.newest % HOUR_MS - (KEEP_HOURS - 1) * HOUR_MS
        for start in [s for s in self.hours if s < oldest_hour]:
            del self.hours[start]

    # -- merging and shipping -----------------------------------------------------------------

    def merge(self, other: SiteStats, now_ms: int | None = None) -> None:
        """Add another instance's counters (a host's delta) into this one.

        Nothing here can fail for an instance from `from_wire` (which checks every type and
        bound) or one observed in this process, so a merge is never left half done. Counts
        saturate at `MAX_COUNT`.

        `now_ms` is the aggregator's clock: given it, `other`'s buckets and times are placed
        by it (see `metric.Clock`), and `newest` (which expiry goes by) stays within
        `CLOCK_SKEW_MS` of it. Without it (a host putting back a delta it failed to ship: its
        own counts, on its own clock) buckets are merged as they are.
        """
        clock = Clock(now_ms)
        newest = self.series.newest_merged(other.series, clock, self.newest)
        for mine, theirs in zip(self.metrics, other.metrics, strict=True):
            mine.merge(theirs, clock)
        for start, their_hour in other.hours.items():
            at = clock.hour(start)
            if at is None:
                continue
            hour = self.hours.get(at)
            if hour is None:
                hour = self.hours[at] = Hour()
            for hourly in HOURLY:
                hourly.merge_hour(hour, their_hour)
        if now_ms is not None and newest > clock.last_minute:
            # Only totals stored before buckets were held to the clock can be this far ahead.
            newest = clock.last_minute
        if newest != self.newest:
            self.newest = newest
            self._expire()

    def forget_user(self, user_id: str) -> None:
        """Remove a user from the last hour's distinct counts, recent sessions, rage clicks
        and sequences (not from the all-time count: see `DistinctUsers`)."""
        uid = user_key(user_id)
        for metric in self.metrics:
            metric.forget_user(user_id, uid)
        self.sequences.forget_user(user_id)

    def to_wire(self) -> dict[str, Any]:
        """The counters as msgpack-able plain types (sequences are not included)."""
        wire: dict[str, Any] = {"newest": self.newest}
        for metric in self.metrics:
            metric.to_wire(wire)
        wire["hours"] = [
            [start, *(hourly.hour_to_wire(hour) for hourly in HOURLY)]
            for start, hour in self.hours.items()
        ]
        # In the declared order, so that the encoded form is the same whatever the registry's.
        return {key: wire[key] for key in wire_form.Wire.__struct_fields__}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> SiteStats:
        """The inverse of `to_wire`, with empty sequences; checked as `decode_wire` checks."""
        try:
            typed = msgspec.convert(wire, wire_form.Wire)
        except msgspec.ValidationError as exc:
            raise InvalidInput("analytics", str(exc)) from None
        return cls._from_typed(typed)

    @classmethod
    def decode_wire(cls, data: bytes) -> SiteStats:
        """`from_wire` of `to_wire`'s form encoded with msgpack, decoded in one typed pass.

        Raises `InvalidInput` for anything `merge` could not take whole: a value of the wrong
        type, a count beyond `MAX_COUNT` or below 0, a row too short, a bucket start not on a
        minute (hour), a scroll list of another length, a heatmap cell off the map.
        """
        try:
            typed = wire_form.decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidInput("analytics", str(exc)) from None
        return cls._from_typed(typed)

    @classmethod
    def _from_typed(cls, wire: wire_form.Wire) -> SiteStats:
        stats = cls()
        for metric in stats.metrics:
            metric.load(wire)
        for row in wire.hours:
            if row.start % HOUR_MS:
                raise InvalidInput("analytics", f"hour bucket {row.start} is not on an hour")
            hour = stats.hours[row.start] = Hour()
            for hourly, column in zip(HOURLY, msgspec.structs.astuple(row)[1:], strict=True):
                hourly.load_hour(hour, column, row.start)
        # The newest minute is what expiry goes by; the wire's `newest` (older versions set
        # it from a host's clock, or a bad peer from anything) is not trusted.
        stats.newest = max(stats.series.minutes, default=0)
        return stats

    # -- reporting ----------------------------------------------------------------------------

    def report(
        self,
        now_ms: int,
        *,
        from_ms: int | None = None,
        to_ms: int | None = None,
        path: str | None = None,
        top: int = 10,
    ) -> dict[str, Any]:
        """The cross-user analytics JSON (see the HTTP contract), at server time `now_ms`.

        `from_ms`/`to_ms` (inclusive) select the hour buckets overlapping the range for pages,
        elements, heatmap, scroll depth and journeys, the minute buckets for the event counts
        and the per-minute series, and rage clicks by time. `path` selects the heatmap's page
        (default: the most clicked one) and nothing else. `top` is the length of the top-N
        lists. Total sessions and users (all time), active users (the last 5 minutes) and
        recent activity (the 10 latest sessions) do not depend on the range.
        """
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise InvalidInput("from", f"{from_ms} is after to={to_ms}")
        if top < 0:
            raise InvalidInput("top", f"{top} is negative")
        lo = max(from_ms if from_ms is not None else 0, now_ms - KEEP_MINUTES * MINUTE_MS + 1)
        ranged = from_ms is not None or to_ms is not None
        query = Query(now_ms, from_ms, to_ms, path, top, lo, to_ms, ranged)
        query.hours = overlapping(self.hours.items(), HOUR_MS, lo, to_ms)
        if ranged:
            query.minutes = overlapping(self.series.minutes.items(), MINUTE_MS, lo, to_ms)
        report: dict[str, Any] = {}
        for metric in self.metrics:
            report.update(metric.report(query))
        for hourly in HOURLY:
            report.update(hourly.report(query))
        return report
