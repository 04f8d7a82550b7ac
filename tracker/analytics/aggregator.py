"""`Aggregator`: the site-wide totals, merged from the hosts' deltas, saved, and watched.

The aggregator actor (`actors.py`) is this class started under Ray. It merges each delta by
its own clock (hosts' clocks may differ), saves the totals under `analytics/site` every
`PERSIST_INTERVAL_S` while they changed (and at once on an erasure), and wakes the live views
waiting for events (`wait_events`, the dashboard's feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from tracker import codec
from tracker.analytics.site import SiteStats
from tracker.config import Config
from tracker.errors import InvalidInput, StorageUnavailable
from tracker.storage import ObjectMissing, open_storage

log = logging.getLogger(__name__)

AGGREGATE_KEY = "analytics/site"
PERSIST_INTERVAL_S = 5.0


class Aggregator:
    """Site-wide analytics: merges the deltas hosts ship every second; persisted periodically.

    `start` loads the saved totals and starts the periodic save; call it before the rest.
    """

    def __init__(self, config: Config, now_ms: Callable[[], int]) -> None:
        self.storage = open_storage(config.storage)
        self.stats = SiteStats()
        self.now_ms = now_ms  # the clock deltas are merged by, whatever the hosts' clocks say
        self.dirty = False
        self.persist_interval_s = PERSIST_INTERVAL_S
        self.listeners: list[asyncio.Queue[int]] = []
        self._persister: asyncio.Task[None] | None = None
        # One save at a time: an erasure's save must land after a periodic one already out
        # (which still names the erased user), not before it.
        self._saving = asyncio.Lock()

    async def start(self) -> None:
        """Load the saved totals; `codec.CorruptObject` for totals that fail the checks, which
        are left in place (not overwritten) for the operator to move away."""
        with contextlib.suppress(ObjectMissing):
            data, _ = await self.storage.get(AGGREGATE_KEY)
            wire = codec.decode("site", data, AGGREGATE_KEY)["stats"]
            try:
                self.stats = SiteStats.from_wire(wire)
            except InvalidInput as exc:
                raise codec.CorruptObject(f"{AGGREGATE_KEY}: {exc}") from None
        self._persister = asyncio.create_task(self._persist_forever())

    async def _persist_forever(self) -> None:
        while True:
            await asyncio.sleep(self.persist_interval_s)
            if self.dirty:
                try:
                    await self.save()
                except StorageUnavailable as exc:
                    log.warning("aggregator: cannot persist: %s", exc)
                except Exception:
                    # Not a storage outage, so a bug; this loop must outlive it all the same,
                    # or the totals would silently never be saved again.
                    log.exception("aggregator: cannot persist")

    async def save(self) -> None:
        """Persist the totals now; if that fails, they stay dirty for the next save."""
        async with self._saving:
            self.dirty = False
            try:
                await self.storage.put(
                    AGGREGATE_KEY, codec.encode("site", {"stats": self.stats.to_wire()})
                )
            except BaseException:
                self.dirty = True
                raise

    def merge(self, wire: dict[str, Any] | bytes) -> None:
        """Add a host's delta: `SiteStats.to_wire`, or that encoded with msgpack.

        A delta that fails `SiteStats`'s checks (a newer or broken peer, a crafted call) is
        refused and dropped: logged, and this returns normally, so that the host does not send
        it again. Raising would make the host put it back into its next delta, which would then
        be refused too, every second, and nothing more of that host would ever arrive.
        """
        try:
            if isinstance(wire, bytes):
                delta = SiteStats.decode_wire(wire)
            else:
                delta = SiteStats.from_wire(wire)
        except InvalidInput as exc:
            log.warning("aggregator: refused and dropped an analytics delta: %s", exc)
            return
        self.stats.merge(delta, self.now_ms())
        self.dirty = True
        events = delta.total_events()
        for queue in self.listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(events)

    def report(self, now_ms: int, filters: dict[str, Any]) -> dict[str, Any]:
        report: dict[str, Any] = self.stats.report(now_ms, **filters)
        return report

    async def forget_user(self, user_id: str) -> None:
        """Erasure: the stored totals must stop naming the user now, not at the next save."""
        self.stats.forget_user(user_id)
        await self.save()

    async def wait_events(self, timeout_s: float) -> int:
        """Block until some events arrive (or the timeout); return how many (for live views)."""
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1000)
        self.listeners.append(queue)
        try:
            first = await asyncio.wait_for(queue.get(), timeout=timeout_s)
        except TimeoutError:
            return 0
        finally:
            self.listeners.remove(queue)
        total = first
        while not queue.empty():
            total += queue.get_nowait()
        return total
