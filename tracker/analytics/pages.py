"""Page counts: page views by path, per hour, at most `MAX_PAGES` paths an hour."""

from __future__ import annotations

from typing import Any

from tracker.analytics.buckets import Hour
from tracker.analytics.counting import KEY_CHARS, Count, Key, add, prune, top
from tracker.analytics.metric import Query, Seen

MAX_PAGES = 2_000

PagesColumn = dict[Key, Count]


class Pages:
    """`topPages` in the range."""

    def observe(self, seen: Seen) -> None:
        if "page_view" not in seen.types or seen.hour is None:
            return
        pages = seen.hour.pages
        for movement in seen.movements:
            if movement.event == "page_view" and movement.data.path is not None:
                path = movement.data.path[:KEY_CHARS]
                pages[path] = pages.get(path, 0) + 1
                if len(pages) > MAX_PAGES:
                    prune(pages, MAX_PAGES)

    def merge_hour(self, mine: Hour, theirs: Hour) -> None:
        add(mine.pages, theirs.pages, MAX_PAGES)

    def report(self, query: Query) -> dict[str, Any]:
        pages: dict[str, int] = {}
        for hour in query.hours:
            add(pages, hour.pages)
        return {"topPages": [{"path": p, "count": n} for p, n in top(pages, query.top)]}

    def hour_to_wire(self, hour: Hour) -> PagesColumn:
        return dict(hour.pages)

    def load_hour(self, hour: Hour, column: PagesColumn, start: int) -> None:
        hour.pages = column
