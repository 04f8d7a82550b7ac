"""The alarms a host asks the scheduler for, from their request until the scheduler holds them.

A user's first change asks for their alarm; the host ships the requests about once a second.
Until the scheduler has answered, a shipment counts as not shipped: a compaction logs it again
(`records`), so that a crash loses no user's alarm.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tracker.codec import Record

ArmAlarms = Callable[[dict[str, int]], Awaitable[None]]


class AlarmRequests(dict[str, int]):
    """Requested alarms not shipped yet, by user ID: the time each is due (ms), and the
    shipments under way."""

    def __init__(self) -> None:
        super().__init__()
        self.shipping: list[dict[str, int]] = []

    def ask(self, user_id: str, due_ms: int) -> None:
        """Ask for the user's alarm, unless it is asked for already."""
        self.setdefault(user_id, due_ms)

    def take(self) -> dict[str, int]:
        """The requests not shipped yet, handed over (none are left)."""
        requests = dict(self)
        self.clear()
        return requests

    async def ship(self, send: ArmAlarms) -> None:
        """Hand the requests to the scheduler with `send`; keep them if it fails."""
        requests = self.take()
        if not requests:
            return
        self.shipping.append(requests)
        try:
            await send(requests)
        except BaseException:
            self.update(requests)
            raise
        finally:
            self.shipping.remove(requests)

    def forget(self, user_id: str) -> None:
        """Drop the user's request, also from a shipment under way: one that fails is not put
        back, and a compaction does not log it again (for an erasure)."""
        self.pop(user_id, None)
        for shipment in self.shipping:
            shipment.pop(user_id, None)

    def records(self, now_ms: int) -> list[Record]:
        """The requests the scheduler may not hold yet (waiting, or being shipped), as
        records: `["alarm", user_id, now_ms, due_ms]`."""
        pending: dict[str, int] = {}
        for shipment in self.shipping:
            pending.update(shipment)
        pending.update(self)
        return [["alarm", user_id, now_ms, due] for user_id, due in pending.items()]
