"""An actor's periodic steps, without Ray: each on its own loop, a failure holding up nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from support import eventually, run

from tracker.ticker import Ticker, each_once


def test_a_failing_or_hanging_step_holds_up_neither_the_others_nor_its_own_next_tick() -> None:
    runs = {"ship": 0, "compact": 0, "hang": 0}
    hung = asyncio.Event()

    async def ship() -> None:
        runs["ship"] += 1
        raise RuntimeError("the aggregator is restarting")

    async def compact() -> None:
        runs["compact"] += 1

    async def hang() -> None:
        runs["hang"] += 1
        await hung.wait()

    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    async def scenario() -> None:
        ticker = Ticker("host host-0", (ship, hang, compact), sleep=no_wait)
        ticker.start()
        try:
            await eventually(lambda: runs["ship"] >= 3 and runs["compact"] >= 3)
            assert runs["hang"] == 1  # still in its first run
        finally:
            ticker.stop()

    run(scenario())


def test_steps_run_once_each_in_order_and_the_first_failure_is_raised_after_all() -> None:
    done: list[str] = []

    def step(name: str, fails: bool = False) -> Callable[[], Awaitable[None]]:
        async def run_it() -> None:
            done.append(name)
            if fails:
                raise RuntimeError(name)

        return run_it

    with pytest.raises(RuntimeError, match=r"^ship$"):
        run(each_once((step("ship", fails=True), step("alarms", fails=True), step("compact"))))
    assert done == ["ship", "alarms", "compact"]
    done.clear()
    run(each_once((step("ship"), step("compact"))))
    assert done == ["ship", "compact"]
