"""Elements: clicks by (element, path), per hour, at most `MAX_ELEMENTS` pairs an hour."""

from __future__ import annotations

from typing import Any

from tracker.analytics.buckets import Hour
from tracker.analytics.counting import KEY_CHARS, Count, Key, add, prune, top
from tracker.analytics.metric import Query, Seen

MAX_ELEMENTS = 2_000

ElementsColumn = list[tuple[Key, Key, Count]]


class Elements:
    """`topElements` in the range."""

    def observe(self, seen: Seen) -> None:
        if "click" not in seen.types or seen.hour is None:
            return
        elements = seen.hour.elements
        for movement in seen.movements:
            data = movement.data
            if movement.event != "click" or data.element is None:
                continue
            key = (data.element[:KEY_CHARS], "" if data.path is None else data.path[:KEY_CHARS])
            n = elements.get(key)
            if n is None:
                elements[key] = 1
                if len(elements) > MAX_ELEMENTS:
                    prune(elements, MAX_ELEMENTS)
            else:
                elements[key] = n + 1

    def merge_hour(self, mine: Hour, theirs: Hour) -> None:
        add(mine.elements, theirs.elements, MAX_ELEMENTS)

    def report(self, query: Query) -> dict[str, Any]:
        elements: dict[tuple[str, str], int] = {}
        for hour in query.hours:
            add(elements, hour.elements)
        return {
            "topElements": [
                {"element": e, "path": p, "count": n} for (e, p), n in top(elements, query.top)
            ]
        }

    def hour_to_wire(self, hour: Hour) -> list[list[Any]]:
        return [[e, p, n] for (e, p), n in hour.elements.items()]

    def load_hour(self, hour: Hour, column: ElementsColumn, start: int) -> None:
        hour.elements = {(e, p): n for e, p, n in column}
