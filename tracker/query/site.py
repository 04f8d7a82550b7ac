"""The report's figures computed from the hosts' histories: `SiteReport` over the selected
range, and over the preceding range of equal length when asked to compare."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tracker.query.filters import ReportOptions
from tracker.query.report import ReportPart, SiteReport, figures

RunQuery = Callable[[SiteReport], Awaitable[ReportPart]]


async def site_figures(run: RunQuery, options: ReportOptions) -> dict[str, Any]:
    """The figures for `options` (`run` fans a query out and merges it), with `range`,
    `filters` and, with `compare`, `previous`: the same figures for the range before."""
    ranges = [options, options.previous()] if options.compare else [options]
    parts = await asyncio.gather(*(run(SiteReport(o)) for o in ranges))
    result = figures(parts[0], options.limit)
    result["range"] = {"from": options.from_ms, "to": options.to_ms}
    result["filters"] = options.filters.active()
    if options.compare:
        previous = ranges[1]
        result["previous"] = {
            **figures(parts[1], options.limit),
            "range": {"from": previous.from_ms, "to": previous.to_ms},
        }
    return result
