"""When a host sheds users to stay under its memory budget, and how many.

Every `MEMORY_CHECK_EVERY` commits and activations the host reads its RSS; above `SHED_AT` of
the budget it starts a shedding (one at a time): it compacts, then passivates the least
recently used users, as many as the share of them the RSS is over `SHED_TO` of the budget by.
New activations wait for the shedding meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

# Commits and activations between two reads of the host's RSS (a read costs about 10 µs; a
# commit adds at most a batch, 64 KB, so this many add a few MB between reads at most).
MEMORY_CHECK_EVERY = 256
# The share of the memory budget above which a host sheds users, leaving room for what arrives
# while it compacts them; and the share it sheds down to, by its estimate.
SHED_AT = 0.8
SHED_TO = 0.6


class MemoryGuard:
    """One host's memory readings and its shedding under way."""

    def __init__(self, name: str, rss_bytes: Callable[[], int]) -> None:
        self.name = name
        self.rss_bytes = rss_bytes
        self.rss = 0  # at the last read
        self.shed = 0  # users passivated for memory since the host started
        self.shedding: asyncio.Task[None] | None = None
        self._until_check = MEMORY_CHECK_EVERY
        self._rss_after_shed = 0

    def mind(self, budget_bytes: int, shed: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Count a call; every `MEMORY_CHECK_EVERY` calls read the RSS, and above `SHED_AT` of
        the budget start `shed()`. Once a shedding is done, another starts only if the RSS
        grew since: memory the interpreter freed is reused before the RSS falls, if it ever
        does, so an RSS that stays put is no sign of more users to shed."""
        if not budget_bytes:
            return
        self._until_check -= 1
        if self._until_check > 0 or self.shedding is not None:
            return
        self._until_check = MEMORY_CHECK_EVERY
        self.rss = self.rss_bytes()
        if self.rss <= budget_bytes * SHED_AT:
            return
        if self._rss_after_shed and self._rss_after_shed >= self.rss:
            return
        self.shedding = asyncio.create_task(shed())
        self.shedding.add_done_callback(self._done)

    async def wait(self) -> bool:
        """Wait for the shedding under way; return whether there was one."""
        if self.shedding is None:
            return False
        with contextlib.suppress(Exception):
            await asyncio.shield(self.shedding)
        return True

    def to_shed(self, budget_bytes: int, quiet: int) -> int:
        """How many of the `quiet` users (those that may leave memory) to passivate now: the
        share of them the RSS is over `SHED_TO` of the budget by, as if users held all of
        it."""
        rss = self.rss_bytes()
        target = int(budget_bytes * SHED_TO)
        if rss <= target:
            return 0
        count = min(quiet, max(1, quiet * (rss - target) // rss))
        self.shed += count
        log.warning(
            "host %s: %d MB RSS, over %d%% of its %d MB budget: %d users left memory",
            self.name,
            rss // 2**20,
            SHED_AT * 100,
            budget_bytes // 2**20,
            count,
        )
        return count

    def shed_done(self) -> None:
        """Read the RSS once the users shed have left memory."""
        self.rss = self._rss_after_shed = self.rss_bytes()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.shedding = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("host %s: shedding users failed: %s", self.name, task.exception())
