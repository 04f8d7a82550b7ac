"""Erasing a user everywhere, as their host does it: the other hosts that may hold them, this
host, the analytics it has yet to ship, the scheduler and the aggregator, in that order.

The hosts that held the user before `TRACKER_HOSTS` changed go first: they could write their
records back. The scheduler's erasure waits for an alarm shipment under way (it could carry
the user's request, and arm their alarm after the erasure), and the aggregator's for an
analytics shipment under way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from tracker.placement import AGGREGATOR_NAME, SCHEDULER_NAME

# A call of another actor's method: (actor name, method, user ID).
CallNamed = Callable[[str, str, str], Awaitable[Any]]


class Erasure:
    """The steps of one host's erasure of a user, each given as a call."""

    def __init__(
        self,
        *,
        other_hosts: Callable[[], Sequence[str]],
        erase_here: Callable[[str], Awaitable[dict[str, Any]]],
        forget_analytics: Callable[[str], Awaitable[None]],
        alarms_shipping: AbstractAsyncContextManager[Any],
        call_named: CallNamed,
    ) -> None:
        self.other_hosts = other_hosts
        self.erase_here = erase_here
        self.forget_analytics = forget_analytics
        self.alarms_shipping = alarms_shipping
        self.call_named = call_named

    async def run(self, user_id: str) -> dict[str, Any]:
        """Erase the user everywhere; return this host's answer."""
        others = self.other_hosts()
        await asyncio.gather(*(self.call_named(name, "forget", user_id) for name in others))
        result = await self.erase_here(user_id)
        await self.forget_analytics(user_id)  # after an analytics shipment out lands
        async with self.alarms_shipping:  # and an alarm request out: erased after it
            pass
        await self.call_named(SCHEDULER_NAME, "erase", user_id)
        await self.call_named(AGGREGATOR_NAME, "forget_user", user_id)
        return result
