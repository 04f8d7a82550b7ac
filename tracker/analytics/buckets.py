"""The time buckets metrics count into: a minute (the series, the last 7 days) and an hour
(pages, elements, journeys, heatmap and scroll depth, the last 7 * 24). Each hour holds one
field per hourly metric; the metric's module is what reads and writes it."""

from __future__ import annotations

from tracker.analytics.scroll import SCROLL_BUCKETS


class Minute:
    __slots__ = ("count", "n_users", "types", "users")

    def __init__(self) -> None:
        self.count = 0
        self.types: dict[str, int] = {}
        self.users: set[int] | None = set()
        self.n_users = 0  # distinct users, once `users` is dropped

    def distinct_users(self) -> int:
        return self.n_users if self.users is None else len(self.users)


class Hour:
    __slots__ = ("elements", "heat", "heat_cells", "journeys", "pages", "scroll")

    def __init__(self) -> None:
        self.pages: dict[str, int] = {}
        self.elements: dict[tuple[str, str], int] = {}
        self.journeys: dict[tuple[str, str], int] = {}
        # path -> cell (row * HEAT_BINS_X + column) -> clicks; `heat_cells` counts all cells.
        self.heat: dict[str, dict[int, int]] = {}
        self.heat_cells = 0
        self.scroll = [0] * SCROLL_BUCKETS
