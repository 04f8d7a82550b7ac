"""A host's erasure of a user everywhere, without Ray: what is erased, and in which order."""

from __future__ import annotations

import asyncio
from typing import Any

from support import eventually, run

from tracker.erasure import Erasure
from tracker.placement import AGGREGATOR_NAME, SCHEDULER_NAME


class Steps:
    """Records each step of an erasure as it is taken."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, ...]] = []

    async def call_named(self, name: str, method: str, user_id: str) -> None:
        self.taken.append((name, method, user_id))

    async def erase_here(self, user_id: str) -> dict[str, Any]:
        self.taken.append(("here", "erase", user_id))
        return {"success": True, "deleted": 3}

    async def forget_analytics(self, user_id: str) -> None:
        self.taken.append(("outbox", "forget_user", user_id))


def erasure(steps: Steps, others: list[str], alarms_shipping: asyncio.Lock) -> Erasure:
    return Erasure(
        other_hosts=lambda: others,
        erase_here=steps.erase_here,
        forget_analytics=steps.forget_analytics,
        alarms_shipping=alarms_shipping,
        call_named=steps.call_named,
    )


def test_other_hosts_forget_the_user_first_then_this_host_scheduler_and_aggregator() -> None:
    steps = Steps()
    answer = run(erasure(steps, ["host-1", "host-2"], asyncio.Lock()).run("alice"))
    assert answer == {"success": True, "deleted": 3}
    assert sorted(steps.taken[:2]) == [("host-1", "forget", "alice"), ("host-2", "forget", "alice")]
    assert steps.taken[2:] == [
        ("here", "erase", "alice"),
        ("outbox", "forget_user", "alice"),
        (SCHEDULER_NAME, "erase", "alice"),
        (AGGREGATOR_NAME, "forget_user", "alice"),
    ]


def test_the_scheduler_erases_only_once_an_alarm_shipment_under_way_has_landed() -> None:
    steps = Steps()

    async def scenario() -> None:
        shipping = asyncio.Lock()
        await shipping.acquire()  # a shipment of alarm requests is out
        erasing = asyncio.create_task(erasure(steps, [], shipping).run("alice"))
        await eventually(lambda: ("outbox", "forget_user", "alice") in steps.taken)
        await asyncio.sleep(0)
        assert (SCHEDULER_NAME, "erase", "alice") not in steps.taken
        shipping.release()
        await erasing
        assert steps.taken[-2:] == [
            (SCHEDULER_NAME, "erase", "alice"),
            (AGGREGATOR_NAME, "forget_user", "alice"),
        ]

    run(scenario())
