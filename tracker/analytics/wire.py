"""The wire form of `SiteStats`, typed: a host's delta and the saved `analytics/site` object.

Declared so that msgspec checks every type, bound and row length while decoding: a delta (or
stored totals) that passes is one `merge` cannot fail on. Rows are arrays; a row longer than
declared (from a newer version) has its extra fields ignored. Each metric declares its rows
(or, for an hourly one, its column of the hour row) in its own module; this composes them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from tracker.analytics.counting import Count, Key, UserHash
from tracker.analytics.distinct import MAX_BYTES as SKETCH_BYTES
from tracker.analytics.elements import ElementsColumn
from tracker.analytics.heatmap import HeatColumn
from tracker.analytics.journeys import JourneysColumn
from tracker.analytics.pages import PagesColumn
from tracker.analytics.rage import RageRow
from tracker.analytics.recent import RecentRow
from tracker.analytics.scroll import ScrollColumn
from tracker.analytics.series import MinuteRow
from tracker.analytics.totals import MAX_TYPES
from tracker.schema import Timestamp


class HourRow(msgspec.Struct, array_like=True, gc=False):
    """An hour bucket: one column per hourly metric, in the order of `site.HOURLY`."""

    start: Timestamp
    pages: PagesColumn
    elements: ElementsColumn
    journeys: JourneysColumn
    heat: HeatColumn
    scroll: ScrollColumn


class Wire(msgspec.Struct, gc=False):
    newest: int  # not trusted: recomputed from the minutes (see `SiteStats.load`)
    events: Count
    sessions: Count
    types: Annotated[dict[Key, Count], Meta(max_length=MAX_TYPES)]
    # A `DistinctUsers` sketch; the hashes themselves in totals stored before sketches.
    users: Annotated[bytes, Meta(max_length=SKETCH_BYTES)] | list[UserHash]
    minutes: list[MinuteRow]
    hours: list[HourRow]
    recent: list[RecentRow]
    rage: list[RageRow]


decoder = msgspec.msgpack.Decoder(Wire)
