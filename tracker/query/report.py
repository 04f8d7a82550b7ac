"""The site report's figures over users' histories: sources, campaigns, technology,
countries, entry and exit pages, custom events, engagement and bots, over a range and under
filters (docs/analytics.md says what counts as what).

`SiteReport` is a `Query`: each host counts its users into a `ReportPart`, parts add up, and
`figures` turns the sum into the report's lists (top N, the rest as one "(other)" row).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.query.events import Event, UserHistory, Visit
from tracker.query.filters import Filters, ReportOptions

# What a host's part keeps of each list, at most: the rest is counted in one "other" entry,
# so a part's size does not grow with the number of distinct values.
PART_ROWS = 1000
OTHER = "(other)"
# Events that make a visit more than a bounce, beside a second page view.
INTERACTIONS = frozenset({"click", "form_interaction", "custom"})
LISTS = ("referrers", "channels", "campaigns", "browsers", "os", "devices", "countries")
PAGES = ("entryPages", "exitPages")


@dataclass
class CustomPart:
    count: int = 0
    visitors: int = 0
    properties: dict[str, Counter[str]] = field(default_factory=dict)


@dataclass
class ReportPart:
    """One host's counts (or several hosts' added up)."""

    visitors: int = 0
    visits: int = 0
    pageviews: int = 0
    bounces: int = 0
    durations: Counter[int] = field(default_factory=Counter)
    lists: dict[str, Counter[Hashable]] = field(default_factory=dict)
    custom: dict[str, CustomPart] = field(default_factory=dict)
    bot_visitors: int = 0
    bot_events: int = 0

    def count(self, name: str, keys: Iterable[Hashable]) -> None:
        counter = self.lists.setdefault(name, Counter())
        counter.update(keys)

    def add(self, other: ReportPart) -> None:
        self.visitors += other.visitors
        self.visits += other.visits
        self.pageviews += other.pageviews
        self.bounces += other.bounces
        self.durations.update(other.durations)
        for name, counter in other.lists.items():
            self.lists.setdefault(name, Counter()).update(counter)
        for name, part in other.custom.items():
            mine = self.custom.setdefault(name, CustomPart())
            mine.count += part.count
            mine.visitors += part.visitors
            for key, values in part.properties.items():
                mine.properties.setdefault(key, Counter()).update(values)
        self.bot_visitors += other.bot_visitors
        self.bot_events += other.bot_events

    def bounded(self) -> ReportPart:
        for name, counter in self.lists.items():
            self.lists[name] = _bounded(counter)
        if len(self.custom) > PART_ROWS:
            kept = sorted(self.custom, key=lambda n: -self.custom[n].count)[:PART_ROWS]
            self.custom = {name: self.custom[name] for name in kept}
        for part in self.custom.values():
            for key, values in list(part.properties.items())[:PART_ROWS]:
                part.properties[key] = _bounded(values)
        return self


def _bounded(counter: Counter[Any]) -> Counter[Any]:
    if len(counter) <= PART_ROWS:
        return counter
    top = counter.most_common(PART_ROWS)
    kept: Counter[Any] = Counter(dict(top))
    kept[OTHER] += sum(counter.values()) - sum(count for _, count in top)
    return kept


@dataclass(frozen=True)
class SiteReport:
    """The report's query over `options.from_ms` to `options.to_ms` (inclusive)."""

    options: ReportOptions

    def run(self, histories: Iterable[UserHistory]) -> ReportPart:
        part = ReportPart()
        for history in histories:
            _count_user(part, history, self.options)
        return part.bounded()

    def merge(self, partials: Sequence[ReportPart]) -> ReportPart:
        total = ReportPart()
        for partial in partials:
            total.add(partial)
        return total.bounded()


def _by_visit(events: Iterable[Event]) -> dict[str, tuple[Visit, list[Event]]]:
    visits: dict[str, tuple[Visit, list[Event]]] = {}
    for event in events:
        entry = visits.get(event.visit.session_id)
        if entry is None:
            visits[event.visit.session_id] = (event.visit, [event])
        else:
            entry[1].append(event)
    return visits


def _count_user(part: ReportPart, history: UserHistory, options: ReportOptions) -> None:
    filters = options.filters
    matched: list[tuple[Visit, list[Event]]] = []
    bot_events = 0
    for visit, events in _by_visit(history.between(options.from_ms, options.to_ms + 1)).values():
        if visit.bot:
            bot_events += len(events)
        if filters.visit_matches(visit) and _events_match(filters, events):
            matched.append((visit, events))
    if bot_events:
        part.bot_visitors += 1
        part.bot_events += bot_events
    if not matched:
        return
    part.visitors += 1
    values: dict[str, set[Hashable]] = {name: set() for name in (*LISTS, *PAGES)}
    custom: dict[str, int] = {}
    for visit, events in matched:
        _count_visit(part, visit, events, values, custom)
    for name, keys in values.items():
        part.count(name, keys)
    for name, count in custom.items():
        entry = part.custom.setdefault(name, CustomPart())
        entry.count += count
        entry.visitors += 1


def _events_match(filters: Filters, events: list[Event]) -> bool:
    if filters.path is not None and not any(
        e.kind == "page_view" and e.path == filters.path for e in events
    ):
        return False
    return filters.event is None or any(
        e.kind == "custom" and e.name == filters.event for e in events
    )


def _count_visit(
    part: ReportPart,
    visit: Visit,
    events: list[Event],
    values: dict[str, set[Hashable]],
    custom: dict[str, int],
) -> None:
    part.visits += 1
    pages = [e.path for e in events if e.kind == "page_view" and e.path is not None]
    part.pageviews += len(pages)
    if len(pages) == 1 and not any(e.kind in INTERACTIONS for e in events):
        part.bounces += 1
    part.durations[events[-1].ts - events[0].ts] += 1
    if pages:
        values["entryPages"].add(pages[0])
        values["exitPages"].add(pages[-1])
    values["channels"].add(visit.channel)
    if visit.referrer:
        values["referrers"].add(visit.referrer)
    if visit.campaign is not None:
        c = visit.campaign
        values["campaigns"].add((c.source, c.medium, c.campaign))
    for name, value in (
        ("browsers", visit.browser),
        ("os", visit.os),
        ("devices", visit.device),
        ("countries", visit.country),
    ):
        if value is not None:
            values[name].add(value)
    for event in events:
        if event.kind == "custom" and event.name is not None:
            custom[event.name] = custom.get(event.name, 0) + 1
            entry = part.custom.setdefault(event.name, CustomPart())
            for key, prop in (event.properties or {}).items():
                entry.properties.setdefault(key, Counter())[_text(prop)] += 1


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the report's figures ------------------------------------------------------------------


def _rows(counter: Counter[Any], limit: int, label: str) -> list[dict[str, Any]]:
    """The top `limit` rows by visitors (ties by name), the rest summed in one "(other)" row."""
    named = sorted(
        ((k, v) for k, v in counter.items() if k != OTHER), key=lambda kv: (-kv[1], str(kv[0]))
    )
    rows = [{label: key, "visitors": count} for key, count in named[:limit]]
    rest = sum(count for _, count in named[limit:]) + counter.get(OTHER, 0)
    if rest:
        rows.append({label: OTHER, "visitors": rest, "other": True})
    return rows


def _campaign_rows(counter: Counter[Any], limit: int) -> list[dict[str, Any]]:
    rows = []
    for row in _rows(counter, limit, "key"):
        key = row.pop("key")
        if row.get("other"):
            rows.append({"source": OTHER, "medium": None, "campaign": None, **row})
        else:
            source, medium, campaign = key
            rows.append({"source": source, "medium": medium, "campaign": campaign, **row})
    return rows


def _custom_rows(custom: dict[str, CustomPart], limit: int) -> list[dict[str, Any]]:
    names = sorted(custom, key=lambda n: (-custom[n].count, n))
    rows = []
    for name in names[:limit]:
        entry = custom[name]
        if not entry.count:
            continue
        properties = {
            key: [
                {"value": row["value"], "count": row["visitors"]}
                for row in _rows(values, limit, "value")
            ]
            for key, values in sorted(entry.properties.items())
        }
        counts = {"count": entry.count, "visitors": entry.visitors}
        rows.append({"name": name, **counts, "properties": properties})
    return rows


def figures(part: ReportPart, limit: int) -> dict[str, Any]:
    """The report's fields from a merged part."""
    durations = sorted(part.durations.elements())
    lists = part.lists
    result: dict[str, Any] = {
        "visitors": part.visitors,
        "visits": part.visits,
        "pageviews": part.pageviews,
        "referrers": _rows(lists.get("referrers", Counter()), limit, "source"),
        "channels": _rows(lists.get("channels", Counter()), limit, "channel"),
        "campaigns": _campaign_rows(lists.get("campaigns", Counter()), limit),
        "browsers": _rows(lists.get("browsers", Counter()), limit, "name"),
        "os": _rows(lists.get("os", Counter()), limit, "name"),
        "devices": _rows(lists.get("devices", Counter()), limit, "name"),
        "countries": _rows(lists.get("countries", Counter()), limit, "name"),
        "entryPages": _rows(lists.get("entryPages", Counter()), limit, "path"),
        "exitPages": _rows(lists.get("exitPages", Counter()), limit, "path"),
        "customEvents": _custom_rows(part.custom, limit),
        "bounceRate": part.bounces / part.visits if part.visits else 0.0,
        "visitDuration": {
            "median": statistics.median(durations) if durations else 0,
            "mean": statistics.fmean(durations) if durations else 0.0,
        },
        "pagesPerVisit": part.pageviews / part.visits if part.visits else 0.0,
        "bots": {"visitors": part.bot_visitors, "events": part.bot_events},
    }
    return result
