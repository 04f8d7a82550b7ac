"""Where clicks and scrolls were, over the visits a report's filters select: the heatmap's
cells by page, the scroll depth's buckets and rage clicks, as the live report shows them
(`tracker.analytics.heatmap`, `scroll`, `rage`), counted from the histories. A rage click's
`timestamp` here is the time of its last click."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tracker.analytics.heatmap import HEAT_BIN_PX, HEAT_BINS_X
from tracker.analytics.metric import Clock
from tracker.analytics.rage import Click, RageClicks
from tracker.analytics.scroll import SCROLL_BUCKETS
from tracker.analytics.sequences import RAGE_MIN_CLICKS, SessionSequence
from tracker.query.events import Event

# Pages a part keeps cells of, the most clicked: the heatmap shows one page.
MAX_HEAT_PAGES = 100


@dataclass
class SpotsPart:
    heat: dict[str, Counter[int]] = field(default_factory=dict)
    scroll: list[int] = field(default_factory=lambda: [0] * SCROLL_BUCKETS)
    rage: RageClicks = field(default_factory=RageClicks)

    def count(self, user_id: str, session_id: str, events: Iterable[Event]) -> None:
        """One visit's events, in order."""
        sequence = SessionSequence()
        for event in events:
            spot = event.spot
            if spot is not None:
                path = event.path or ""
                if spot.cell is not None:
                    self.heat.setdefault(path, Counter())[spot.cell] += 1
                near = sequence.add_click(event.ts, spot.x, spot.y, path)
                if near >= RAGE_MIN_CLICKS:
                    click = Click(event.ts, spot.x, spot.y, path, event.element or "")
                    self.rage.record(sequence, user_id, session_id, event.ts, click, near)
            elif event.depth is not None:
                self.scroll[min(SCROLL_BUCKETS - 1, max(0, int(event.depth // 10)))] += 1

    def add(self, other: SpotsPart) -> None:
        for path, cells in other.heat.items():
            self.heat.setdefault(path, Counter()).update(cells)
        self.scroll = [a + b for a, b in zip(self.scroll, other.scroll, strict=True)]
        self.rage.merge(other.rage, Clock(None))

    def bounded(self) -> SpotsPart:
        if len(self.heat) > MAX_HEAT_PAGES:
            kept = sorted(self.heat, key=lambda p: (-self.heat[p].total(), p))[:MAX_HEAT_PAGES]
            self.heat = {path: self.heat[path] for path in kept}
        return self

    def figures(self, path: str | None) -> dict[str, Any]:
        """`heatmap` (of `path`, else of the most clicked page) and `scrollDepth`."""
        if path is None and self.heat:
            path = min(self.heat, key=lambda p: (-self.heat[p].total(), p))
        cells = self.heat.get(path, Counter()) if path is not None else Counter()
        return {
            "heatmap": {
                "path": path,
                "binsX": HEAT_BINS_X,
                "binHeightPx": HEAT_BIN_PX,
                "cells": [
                    {"x": cell % HEAT_BINS_X, "y": cell // HEAT_BINS_X, "count": n}
                    for cell, n in sorted(cells.items())
                ],
            },
            "scrollDepth": [{"bucket": i * 10, "count": n} for i, n in enumerate(self.scroll)],
            **self.rage.rows(0, None),
        }
