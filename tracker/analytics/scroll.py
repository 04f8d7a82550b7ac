"""Scroll depth: scroll events by their `metadata.scrollDepth`, in buckets of 10%, per hour.

Every scroll event counts in the bucket of its depth (not the maximum per page visit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from msgspec import Meta

from tracker.analytics.counting import NUMBER, Count, saturating_sum
from tracker.analytics.metric import Query, Seen

if TYPE_CHECKING:
    from tracker.analytics.buckets import Hour

SCROLL_BUCKETS = 11

ScrollColumn = Annotated[list[Count], Meta(min_length=SCROLL_BUCKETS, max_length=SCROLL_BUCKETS)]


class ScrollDepth:
    """`scrollDepth` in the range: a count for each bucket, 0 to 100."""

    def observe(self, seen: Seen) -> None:
        if "scroll" not in seen.types or seen.hour is None:
            return
        scroll = seen.hour.scroll
        for movement in seen.movements:
            if movement.event != "scroll" or movement.data.metadata is None:
                continue
            depth = movement.data.metadata.get("scrollDepth")
            if isinstance(depth, NUMBER) and not isinstance(depth, bool):
                scroll[min(SCROLL_BUCKETS - 1, max(0, int(depth // 10)))] += 1

    def merge_hour(self, mine: Hour, theirs: Hour) -> None:
        mine.scroll = [
            saturating_sum(a, b) for a, b in zip(mine.scroll, theirs.scroll, strict=True)
        ]

    def report(self, query: Query) -> dict[str, Any]:
        scroll = [0] * SCROLL_BUCKETS
        for hour in query.hours:
            scroll = [a + b for a, b in zip(scroll, hour.scroll, strict=True)]
        return {"scrollDepth": [{"bucket": i * 10, "count": n} for i, n in enumerate(scroll)]}

    def hour_to_wire(self, hour: Hour) -> list[int]:
        return list(hour.scroll)

    def load_hour(self, hour: Hour, column: list[int], start: int) -> None:
        hour.scroll = column
