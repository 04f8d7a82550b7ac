"""The hourly Parquet export the scheduler runs when `TRACKER_EXPORT_DEST` is set, and what
keeps that export in step with erasure and retention.

Each hour due (`hours.ExportHours`) is exported by a Ray task of its own (`job.export_task`)
once the hosts are flushed; then retention is applied to the export as to the histories. An
erasure rewrites the export without the user. Exports and erasures take turns (one lock): an
export that read a user's history before its deletion lands before the rewrite that removes
them, never after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tracker.config import Config
from tracker.parquet import hours
from tracker.parquet.columns import Window
from tracker.storage import Storage

log = logging.getLogger(__name__)


class HourlyExport:
    """The scheduler's Parquet exports, over the tracker's `storage`."""

    def __init__(self, storage: Storage, flush: Callable[[], Awaitable[object]]) -> None:
        self.storage = storage
        self.flush = flush
        self._turn = asyncio.Lock()

    async def run_due(self, config: Config, now_ms: int) -> list[int]:
        """Export each hour due at `now_ms` (if an export destination is set), then apply
        retention to the export; return the starts of the hours exported."""
        from tracker.parquet.destination import drop_before, open_destination
        from tracker.parquet.job import export_task

        dest = config.export_dest
        if dest is None:
            return []
        async with self._turn:
            owed = await hours.load(self.storage)
            due = owed.due(now_ms)
            if not due:
                return []
            await self.flush()
            for hour in due:
                window = Window(hour, hour + hours.HOUR_MS)
                written = await export_task.remote(config.storage, dest, window)
                log.info("parquet export of the hour from %d: %s", hour, written)
                owed.done(hour)
                await hours.save(self.storage, owed)
            cutoff_ms = now_ms - int(config.retention_s * 1000)
            await asyncio.to_thread(drop_before, *open_destination(dest), cutoff_ms)
            return due

    async def erase(self, config: Config, user_id: str) -> int:
        """Rewrite the export without `user_id`'s rows; return how many files changed."""
        from tracker.parquet.destination import erase_user, open_destination

        if config.export_dest is None:
            return 0
        async with self._turn:
            return await asyncio.to_thread(
                erase_user, *open_destination(config.export_dest), user_id
            )
