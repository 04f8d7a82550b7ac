"""Which hours the hourly Parquet export owes (`TRACKER_EXPORT_DEST`).

Each complete hour is exported once it has ended, oldest first. What was exported last is kept
in storage (`KEY`), so an hour missed while the scheduler was down or the export failed is
exported later; at most `MAX_CATCH_UP` of them, the most recent (older ones are in reach of
`tracker export-parquet --from --to`). The first run exports the hour that just ended.
"""

from __future__ import annotations

from tracker import codec
from tracker.storage import Storage, get_if_any

HOUR_MS = 3_600_000
MAX_CATCH_UP = 48
KEY = "exports/parquet-hourly"


class ExportHours:
    """The hours due for export, given the last one exported (None: none yet)."""

    def __init__(self, done_ms: int | None = None, max_catch_up: int = MAX_CATCH_UP) -> None:
        self.done_ms = done_ms
        self.max_catch_up = max_catch_up

    def due(self, now_ms: int) -> list[int]:
        """The starts of the hours to export now, oldest first: every complete hour after the
        last one exported, the latest `max_catch_up` of them."""
        last = now_ms // HOUR_MS * HOUR_MS - HOUR_MS  # the hour that ended last
        first = last if self.done_ms is None else self.done_ms + HOUR_MS
        first = max(first, last - (self.max_catch_up - 1) * HOUR_MS)
        return list(range(first, last + 1, HOUR_MS))

    def done(self, hour_ms: int) -> None:
        """The hour starting at `hour_ms` is exported."""
        if self.done_ms is None or hour_ms > self.done_ms:
            self.done_ms = hour_ms


async def load(storage: Storage) -> ExportHours:
    """The hours exported so far, as kept in `storage`."""
    found = await get_if_any(storage, KEY)
    if found is None:
        return ExportHours()
    return ExportHours(codec.decode("export-hours", found[0], KEY)["done"])


async def save(storage: Storage, hours: ExportHours) -> None:
    await storage.put(KEY, codec.encode("export-hours", {"done": hours.done_ms}))
