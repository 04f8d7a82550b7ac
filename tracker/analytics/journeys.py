"""Journeys: transitions from one page to the next within a session (the first page of a
session from its referrer path), per hour, at most `MAX_JOURNEYS` an hour."""

from __future__ import annotations

from typing import Any

from tracker.analytics.buckets import Hour
from tracker.analytics.counting import KEY_CHARS, Count, Key, add, prune, top
from tracker.analytics.metric import Query, Seen

MAX_JOURNEYS = 2_000

JourneysColumn = list[tuple[Key, Key, Count]]


class Journeys:
    """`journeys` in the range, the most taken first."""

    def observe(self, seen: Seen) -> None:
        if "page_view" not in seen.types or seen.hour is None:
            return
        journeys = seen.hour.journeys
        sequence = seen.sequence
        for movement in seen.movements:
            data = movement.data
            if movement.event != "page_view" or data.path is None:
                continue
            path = data.path[:KEY_CHARS]
            previous = sequence.last_path
            if previous is None and data.metadata is not None:
                referrer = data.metadata.get("referrerPath")
                if isinstance(referrer, str) and referrer:
                    previous = referrer[:KEY_CHARS]
            if previous is not None and previous != path:
                key = (previous, path)
                journeys[key] = journeys.get(key, 0) + 1
                if len(journeys) > MAX_JOURNEYS:
                    prune(journeys, MAX_JOURNEYS)
            sequence.last_path = path

    def merge_hour(self, mine: Hour, theirs: Hour) -> None:
        add(mine.journeys, theirs.journeys, MAX_JOURNEYS)

    def report(self, query: Query) -> dict[str, Any]:
        journeys: dict[tuple[str, str], int] = {}
        for hour in query.hours:
            add(journeys, hour.journeys)
        return {
            "journeys": [{"from": a, "to": b, "count": n} for (a, b), n in top(journeys, query.top)]
        }

    def hour_to_wire(self, hour: Hour) -> list[list[Any]]:
        return [[a, b, n] for (a, b), n in hour.journeys.items()]

    def load_hour(self, hour: Hour, column: JourneysColumn, start: int) -> None:
        hour.journeys = {(a, b): n for a, b, n in column}
