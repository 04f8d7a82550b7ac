"""Retention cohorts: do visitors come back?

Periods are UTC days, or ISO weeks (starting on Monday, 00:00 UTC). A cohort is the users whose
first event ever falls in that period and inside the range; `returning[i-1]` counts those of
them with any event in the i-th period after it, for every period up to the one that holds the
range's end (whole periods: an event late in that last period counts). Bots are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from tracker.conversions.query import DAY_MS, TimeRange, humans
from tracker.query.events import UserHistory

Period = Literal["day", "week"]
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday: weeks counted from the epoch start 3 days earlier, on a Monday.
_MONDAY_OFFSET_MS = 3 * DAY_MS


def period_of(ts: int, period: Period) -> int:
    """The index of the period that holds `ts`."""
    if period == "day":
        return ts // DAY_MS
    return (ts + _MONDAY_OFFSET_MS) // WEEK_MS


def period_start(index: int, period: Period) -> int:
    """The first ms of the period of this index."""
    if period == "day":
        return index * DAY_MS
    return index * WEEK_MS - _MONDAY_OFFSET_MS


class Cohort(msgspec.Struct):
    size: int
    returning: list[int]


class RetentionPartial(msgspec.Struct):
    cohorts: dict[int, Cohort]  # by period index


class RetentionQuery:
    def __init__(self, when: TimeRange, period: Period) -> None:
        self.when = when
        self.period = period
        self.last = period_of(when.to_ms, period)

    def run(self, histories: Iterable[UserHistory]) -> RetentionPartial:
        cohorts: dict[int, Cohort] = {}
        for history in humans(histories):
            events = history.ordered()
            if not events or not self.when.contains(events[0].ts):
                continue
            first = period_of(events[0].ts, self.period)
            cohort = cohorts.get(first)
            if cohort is None:
                cohort = cohorts[first] = Cohort(0, [0] * (self.last - first))
            cohort.size += 1
            seen = {period_of(e.ts, self.period) - first for e in events}
            for offset in seen:
                if 1 <= offset <= len(cohort.returning):
                    cohort.returning[offset - 1] += 1
        return RetentionPartial(cohorts)

    def merge(self, partials: Sequence[RetentionPartial]) -> RetentionPartial:
        cohorts: dict[int, Cohort] = {}
        for part in partials:
            for index, cohort in part.cohorts.items():
                total = cohorts.get(index)
                if total is None:
                    total = cohorts[index] = Cohort(0, [0] * len(cohort.returning))
                total.size += cohort.size
                for i, n in enumerate(cohort.returning):
                    total.returning[i] += n
        return RetentionPartial(dict(sorted(cohorts.items())))
