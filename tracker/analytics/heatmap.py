"""The heatmap: clicks by page and cell of a 40-column grid of 25 px rows, per hour.

A click is binned by its x over the viewport's width and its y plus the page's scroll; the map
covers the first 10,000 px of a page, clicks below are not binned. At most `MAX_HEAT_CELLS`
cells an hour over all pages.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from tracker.analytics.buckets import Hour
from tracker.analytics.counting import (
    KEY_CHARS,
    NUMBER,
    Count,
    Key,
    add,
    drop_smallest,
    smallest,
    top,
)
from tracker.analytics.metric import Query, Seen
from tracker.errors import InvalidInput
from tracker.schema import MovementData

MAX_HEAT_CELLS = 5_000
HEAT_BINS_X = 40
HEAT_BIN_PX = 25
HEAT_ROWS = 400
CELLS_PER_PAGE = HEAT_ROWS * HEAT_BINS_X

HeatColumn = dict[Key, list[Count]]  # path -> [cell, clicks, cell, clicks, ...]


def cell_of(data: MovementData, x: float, y: float) -> int | None:
    """The cell a click at (`x`, `y`) of the viewport falls in, if the map covers it."""
    metadata = data.metadata
    width = metadata.get("viewportWidth") if metadata is not None else None
    if not isinstance(width, NUMBER) or isinstance(width, bool) or width <= 0:
        return None
    row = int((y + (data.scrollY or 0)) // HEAT_BIN_PX)
    if not 0 <= row < HEAT_ROWS:
        return None
    # Clamped as a float: a tiny width makes it infinite, which `int` rejects.
    column = x / width * HEAT_BINS_X
    cell = row * HEAT_BINS_X
    if column >= HEAT_BINS_X - 1:
        cell += HEAT_BINS_X - 1
    elif column > 0:
        cell += int(column)
    return cell


def prune_heat(hour: Hour) -> None:
    """`prune` over all the hour's cells as if they were one dict of (path, cell), path by path.

    Done in place: flattening and rebuilding the dicts cost 5x as much, and under clicks spread
    over many cells this runs every thousand or so clicks.
    """
    drop = hour.heat_cells - MAX_HEAT_CELLS * 4 // 5
    if drop <= 0:
        return
    heat = hour.heat
    threshold, ties = smallest(chain.from_iterable(map(dict.values, heat.values())), drop)
    left = drop
    for path in list(heat):
        cells = heat[path]
        ties, left = drop_smallest(cells, threshold, ties, left)
        if not cells:
            del heat[path]
    hour.heat_cells -= drop


class Heatmap:
    """`heatmap` in the range: the cells of the page asked for, or of the most clicked one."""

    def observe(self, seen: Seen) -> None:
        if "click" not in seen.types or seen.hour is None:
            return
        hour = seen.hour
        heat = hour.heat
        for movement in seen.movements:
            data = movement.data
            point = data.coordinates
            if movement.event != "click" or point is None or not data.path:
                continue
            cell = cell_of(data, point.x, point.y)
            if cell is None:
                continue
            path = data.path[:KEY_CHARS]
            cells = heat.get(path)
            if cells is None:
                cells = heat[path] = {}
            n = cells.get(cell)
            if n is None:
                cells[cell] = 1
                hour.heat_cells += 1
                if hour.heat_cells > MAX_HEAT_CELLS:
                    prune_heat(hour)
            else:
                cells[cell] = n + 1

    def merge_hour(self, mine: Hour, theirs: Hour) -> None:
        for path, cells in theirs.heat.items():
            into = mine.heat.get(path)
            if into is None:
                into = mine.heat[path] = {}
            before = len(into)
            add(into, cells)
            mine.heat_cells += len(into) - before
        if mine.heat_cells > MAX_HEAT_CELLS:
            prune_heat(mine)

    def report(self, query: Query) -> dict[str, Any]:
        path = query.path[:KEY_CHARS] if query.path is not None else None
        if path is None:
            clicks: dict[str, int] = {}
            for hour in query.hours:
                for page, page_cells in hour.heat.items():
                    clicks[page] = clicks.get(page, 0) + sum(page_cells.values())
            best = top(clicks, 1)
            path = best[0][0] if best else None
        merged: dict[int, int] = {}
        if path is not None:
            for hour in query.hours:
                cells = hour.heat.get(path)
                if cells is not None:
                    add(merged, cells)
        return {
            "heatmap": {
                "path": path,
                "binsX": HEAT_BINS_X,
                "binHeightPx": HEAT_BIN_PX,
                "cells": [
                    {"x": cell % HEAT_BINS_X, "y": cell // HEAT_BINS_X, "count": n}
                    for cell, n in sorted(merged.items())
                ],
            }
        }

    def hour_to_wire(self, hour: Hour) -> dict[str, list[int]]:
        return {p: [v for item in cells.items() for v in item] for p, cells in hour.heat.items()}

    def load_hour(self, hour: Hour, column: HeatColumn, start: int) -> None:
        heat = hour.heat
        for path, flat in column.items():
            if len(flat) % 2:
                raise InvalidInput("analytics", f"hour {start}: heatmap of {path!r}")
            if flat:  # an empty page is never kept (`prune_heat` deletes them)
                heat[path] = dict(zip(flat[::2], flat[1::2], strict=True))
        if heat and max(map(max, heat.values())) >= CELLS_PER_PAGE:
            raise InvalidInput("analytics", f"hour {start}: a heatmap cell off the map")
        hour.heat_cells = sum(map(len, heat.values()))
