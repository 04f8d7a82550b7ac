"""Funnels: where visitors drop out on the way to a goal.

Counting rules (docs/analytics.md states them for anyone to recompute):
- a user's events are ordered by timestamp, equal timestamps in the order received;
- an attempt starts at any of the user's step-1 events inside the range;
- it reaches step k when steps 2..k follow in that order, each after the previous step's event
  and no later than `windowS` seconds after the attempt's step-1 event (later steps may fall
  after the range's end);
- a user counts at step k when any attempt reaches it, once per step.
`medianMsFromPrevious` of step k is the median, over the users counted at k, of the time from
step k-1 to step k in the earliest attempt of theirs that reached k (each step taken at the
first matching event after the previous one).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

import msgspec

from tracker.conversions.definitions import Funnel
from tracker.conversions.query import TimeRange, humans
from tracker.query.events import Event, UserHistory


class FunnelPartial(msgspec.Struct):
    visitors: list[int]  # per step
    # Per step (from the second), each counted user's ms from the previous step.
    gaps: list[list[int]]


Test = Callable[[Event], bool]


def attempt(events: Sequence[Event], start: int, steps: Sequence[Test], window: int) -> list[int]:
    """The timestamps of the steps an attempt from `events[start]` reaches, in order (the
    first is the start's). Taking each step at its first match after the previous step's
    event reaches as far as any choice could."""
    reached = [events[start].ts]
    deadline = events[start].ts + window
    i = start + 1
    for step in steps[1:]:
        while i < len(events) and events[i].ts <= deadline and not step(events[i]):
            i += 1
        if i >= len(events) or events[i].ts > deadline:
            break
        reached.append(events[i].ts)
        i += 1
    return reached


def user_steps(
    events: Sequence[Event], steps: Sequence[Test], window_ms: int, when: TimeRange
) -> list[int]:
    """Per step a user reaches, the gap from the previous step (0 for the first), taken from
    the earliest attempt that reached it."""
    gaps: list[int] = []
    first, lo, hi = steps[0], when.from_ms, when.to_ms
    for start, event in enumerate(events):
        if event.ts < lo or event.ts > hi or not first(event):
            continue
        reached = attempt(events, start, steps, window_ms)
        for k in range(len(gaps), len(reached)):
            gaps.append(reached[k] - reached[k - 1] if k else 0)
        if len(gaps) == len(steps):
            break
    return gaps


class FunnelQuery:
    def __init__(self, funnel: Funnel, when: TimeRange) -> None:
        self.funnel = funnel
        self.when = when

    def _empty(self) -> FunnelPartial:
        n = len(self.funnel.steps)
        return FunnelPartial([0] * n, [[] for _ in range(n - 1)])

    def run(self, histories: Iterable[UserHistory]) -> FunnelPartial:
        out = self._empty()
        steps = [step.predicate() for step in self.funnel.steps]
        window_ms = self.funnel.windowS * 1000
        for history in humans(histories):
            gaps = user_steps(history.ordered(), steps, window_ms, self.when)
            for k, gap in enumerate(gaps):
                out.visitors[k] += 1
                if k:
                    out.gaps[k - 1].append(gap)
        return out

    def merge(self, partials: Sequence[FunnelPartial]) -> FunnelPartial:
        out = self._empty()
        for part in partials:
            for k, n in enumerate(part.visitors):
                out.visitors[k] += n
            for k, gaps in enumerate(part.gaps):
                out.gaps[k].extend(gaps)
        return out


def median_ms(gaps: list[int]) -> float | None:
    """The median gap (the mean of the middle two for an even count), None without any."""
    return float(statistics.median(gaps)) if gaps else None
