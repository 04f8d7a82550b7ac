"""An actor's periodic work: steps run about every second, each on its own loop, or all once.

A step waiting on another actor (an aggregator or scheduler that hangs or restarts) holds up
itself only, never the others: the compaction that keeps a host's log short goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]
Sleep = Callable[[float], Awaitable[None]]

TICK_S = 1.0


class Ticker:
    """`steps`, each run every `interval_s` on a loop of its own once started; a step that
    fails is logged (naming `name` and the step) and run again at the next tick."""

    def __init__(
        self,
        name: str,
        steps: Sequence[Step],
        interval_s: float = TICK_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.steps = tuple(steps)
        self.interval_s = interval_s
        self._sleep = sleep
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._every(step)) for step in self.steps]

    def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        self._loops = []

    async def _every(self, step: Step) -> None:
        while True:
            await self._sleep(self.interval_s)
            try:
                await step()
            except Exception as exc:
                log.warning("%s: %s failed: %s", self.name, _step_name(step), exc)


async def each_once(steps: Sequence[Step]) -> None:
    """Run every step once, in order, each even when one before it failed; raise the first
    failure at the end."""
    errors: list[Exception] = []
    for step in steps:
        try:
            await step()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _step_name(step: Step) -> str:
    return getattr(step, "__name__", repr(step)).strip("_")
