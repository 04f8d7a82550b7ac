"""`AnalyticsOutbox`: a host's site-wide analytics on their way to the aggregator.

A host observes what it commits into `delta` and ships it about once a second; a shipment that
fails is put back, to go with the next one. A shipment the aggregator refuses (it fails the
checks of `SiteStats.decode_wire`) is not a failure here: the aggregator logs and drops it and
answers normally, so it is not sent again (put back, it would be refused with every later
shipment). An erasure clears the user from the delta and then from the aggregator, and a
shipment that was out meanwhile must not bring them back: put back after a failure it would
name the user again, and landing after the aggregator's erasure it would restore them there. So
shipments go one at a time, and `forget_user` waits for the one out before clearing the delta:
that shipment has then landed (and the aggregator's erasure, which follows, removes the user)
or been put back (and is cleared with the rest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tracker.analytics import SiteStats

Send = Callable[[SiteStats], Awaitable[None]]


class AnalyticsOutbox:
    """The counters a host has observed and not yet handed to the aggregator."""

    def __init__(self) -> None:
        self.delta = SiteStats()
        self._shipping = asyncio.Lock()

    async def ship(self, send: Send) -> None:
        """Hand what was observed since the last shipment to `send`; if it raises, keep it
        for the next shipment and raise."""
        async with self._shipping:
            if self.delta.is_empty():
                return
            delta = self.delta.take_delta()
            try:
                await send(delta)
            except BaseException:
                self.delta.merge(delta)
                raise

    async def forget_user(self, user_id: str) -> None:
        """Erasure: once this returns, no shipment still to land names the user (until they
        are observed again)."""
        async with self._shipping:
            self.delta.forget_user(user_id)
