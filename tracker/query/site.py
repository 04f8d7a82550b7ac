"""The report's figures computed from the hosts' histories: `SiteReport` over the selected
range, and over the preceding range of equal length when asked to compare.

When the report is filtered, `FilteredActivity` also computes the live report's figures
(totals, events by type and per minute, pages, elements, journeys, recent activity, the
heatmap, scroll depth and rage clicks) over the range, in place of the aggregator's, which
count every visit; the preceding range always has them from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tracker.query.activity import ActivityPart, FilteredActivity, activity_figures
from tracker.query.filters import ReportOptions
from tracker.query.report import ReportPart, SiteReport, figures
from tracker.query.run import Query

RunQuery = Callable[[Query[Any]], Awaitable[Any]]


def filtered(options: ReportOptions) -> bool:
    """Whether a report's live figures must come from the histories: any filter is set, or
    bots are asked for."""
    return bool(options.filters.active()) or options.filters.bots


async def _figures(run: RunQuery, options: ReportOptions, activity: bool) -> dict[str, Any]:
    report: Awaitable[ReportPart] = run(SiteReport(options))
    if not activity:
        return figures(await report, options.limit)
    counted: Awaitable[ActivityPart] = run(FilteredActivity(options))
    part, active = await asyncio.gather(report, counted)
    return {**figures(part, options.limit), **activity_figures(active, options)}


async def site_figures(run: RunQuery, options: ReportOptions) -> dict[str, Any]:
    """The figures for `options` (`run` fans a query out and merges it), with `range`,
    `filters` and, with `compare`, `previous`: the same figures for the range before."""
    current = _figures(run, options, filtered(options))
    if not options.compare:
        result = await current
    else:
        previous = options.previous()
        result, before = await asyncio.gather(current, _figures(run, previous, True))
        result["previous"] = {**before, "range": {"from": previous.from_ms, "to": previous.to_ms}}
    result["range"] = {"from": options.from_ms, "to": options.to_ms}
    result["filters"] = options.filters.active()
    return result
