"""The live report's figures (totals, events by type and per minute, pages, elements,
journeys, recent activity, the heatmap, scroll depth and rage clicks) over the visits a
report's filters select: when the report is filtered, these come from the hosts' histories
over the range instead of the aggregator's unfiltered counts.

`FilteredActivity` is a `Query`: each host counts its users' matching visits into an
`ActivityPart`, parts add up, and `activity_figures` turns the sum into the report's fields.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.analytics.recent import RECENT_ACTIVITY
from tracker.query.events import Event, UserHistory
from tracker.query.filters import ReportOptions
from tracker.query.report import PART_ROWS, by_visit, events_match
from tracker.query.spots import SpotsPart
from tracker.schema import EVENT_TYPES

MINUTE_MS = 60_000
# A visit as recent activity shows it: last activity, user, session, start, events.
Recent = tuple[int, str, str, int, int]
# The newest minutes a part keeps of the series: a week, as the live series keeps.
SERIES_MINUTES = 7 * 24 * 60


@dataclass
class ActivityPart:
    """One host's counts of matching visits (or several hosts' added up)."""

    users: int = 0
    sessions: int = 0
    events: int = 0
    types: Counter[str] = field(default_factory=Counter)
    minutes: Counter[int] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)
    elements: Counter[tuple[str, str]] = field(default_factory=Counter)
    journeys: Counter[tuple[str, str]] = field(default_factory=Counter)
    recent: list[Recent] = field(default_factory=list)
    spots: SpotsPart = field(default_factory=SpotsPart)

    def add(self, other: ActivityPart) -> None:
        self.users += other.users
        self.sessions += other.sessions
        self.events += other.events
        self.recent.extend(other.recent)
        self.spots.add(other.spots)
        for mine, theirs in self._counters(other):
            mine.update(theirs)

    def _counters(self, other: ActivityPart) -> Iterable[tuple[Counter[Any], Counter[Any]]]:
        yield self.types, other.types
        yield self.minutes, other.minutes
        yield self.pages, other.pages
        yield self.elements, other.elements
        yield self.journeys, other.journeys

    def bounded(self) -> ActivityPart:
        """At most `PART_ROWS` pages, elements and journeys (the most counted) and the newest
        `SERIES_MINUTES` minutes, so a part's size does not grow with distinct values."""
        self.pages = _top(self.pages)
        self.elements = _top(self.elements)
        self.journeys = _top(self.journeys)
        self.recent = heapq.nlargest(RECENT_ACTIVITY, self.recent)
        self.spots.bounded()
        if len(self.minutes) > SERIES_MINUTES:
            newest = sorted(self.minutes)[-SERIES_MINUTES:]
            self.minutes = Counter({t: self.minutes[t] for t in newest})
        return self


def _top(counter: Counter[Any]) -> Counter[Any]:
    if len(counter) <= PART_ROWS:
        return counter
    return Counter(dict(counter.most_common(PART_ROWS)))


@dataclass(frozen=True)
class FilteredActivity:
    """The query over `options.from_ms` to `options.to_ms` (inclusive), under its filters."""

    options: ReportOptions

    def run(self, histories: Iterable[UserHistory]) -> ActivityPart:
        part = ActivityPart()
        for history in histories:
            self._count_user(part, history)
        return part.bounded()

    def merge(self, partials: Sequence[ActivityPart]) -> ActivityPart:
        total = ActivityPart()
        for partial in partials:
            total.add(partial)
        return total.bounded()

    def _count_user(self, part: ActivityPart, history: UserHistory) -> None:
        filters = self.options.filters
        events = history.between(self.options.from_ms, self.options.to_ms + 1)
        counted = False
        for visit, visit_events in by_visit(events).values():
            if filters.visit_matches(visit) and events_match(filters, visit_events):
                _count_visit(part, visit_events)
                part.spots.count(history.user_id, visit.session_id, visit_events)
                last, start, count = visit_events[-1].ts, visit.start_ms, len(visit_events)
                part.recent.append((last, history.user_id, visit.session_id, start, count))
                counted = True
        part.users += counted


def _count_visit(part: ActivityPart, events: list[Event]) -> None:
    part.sessions += 1
    part.events += len(events)
    previous: str | None = None
    for event in events:
        part.types[event.kind] += 1
        part.minutes[event.ts - event.ts % MINUTE_MS] += 1
        if event.kind == "page_view" and event.path is not None:
            part.pages[event.path] += 1
            if previous is not None and previous != event.path:
                part.journeys[(previous, event.path)] += 1
            previous = event.path
        elif event.kind == "click" and event.element is not None:
            part.elements[(event.element, event.path or "")] += 1


def _ranked(counter: Counter[Any], limit: int) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]


def activity_figures(part: ActivityPart, options: ReportOptions) -> dict[str, Any]:
    """The live report's fields that filters narrow, from a merged part."""
    limit = options.limit
    return {
        **part.spots.figures(options.filters.path),
        "totalSessions": part.sessions,
        "totalUsers": part.users,
        "totalEvents": part.events,
        "eventsByType": {kind: part.types.get(kind, 0) for kind in EVENT_TYPES},
        "eventsPerMinute": [{"t": t, "count": part.minutes[t]} for t in sorted(part.minutes)],
        "topPages": [{"path": p, "count": n} for p, n in _ranked(part.pages, limit)],
        "topElements": [
            {"element": e, "path": p, "count": n} for (e, p), n in _ranked(part.elements, limit)
        ],
        "journeys": [
            {"from": a, "to": b, "count": n} for (a, b), n in _ranked(part.journeys, limit)
        ],
        "recentActivity": [
            {
                "userId": user,
                "sessionId": session,
                "startTime": start,
                "lastActivity": last,
                "movementCount": count,
            }
            for last, user, session, start, count in part.recent
        ],
    }
