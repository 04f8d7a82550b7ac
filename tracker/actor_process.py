"""What every actor process of the tracker shares, whatever it holds: the cycle collector
set up for a long-lived server, and a start run once on first use."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable

# Collections of the middle generation per full one (Python's default is 10).
FULL_COLLECTION_EVERY = 100


def tune_collector() -> None:
    """Set the cycle collector up for a server process, once it has started.

    - What is alive now is exempt from full collections (`gc.freeze`): the libraries (Ray,
      Serve, Starlette) and the recovered state are never walked again by one, which
      otherwise stalled every request of the process for 60-80 ms (measured in a host and
      in a replica; 10 ms after). Objects frozen are still freed when their last reference
      goes; only cycles among them would stay, and startup makes none that die.
    - Full collections come ten times less often. A host's state grows with every event
      (records wait for compaction, sessions keep their batches), so full collections came
      every ten middle ones: in-process, single-event `track` with 1,000 calls in flight spent
      34-39 µs per call in them (of 45-56 in the collector, 141-155 µs in all); one in ten
      leaves 4 µs (18 in the collector, 113 in all). A full collection is as long as before
      (about 0.1 s for 2,000 users), and ten times rarer.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


class Started:
    """Run an async start once, on first use, and make every caller wait for it."""

    def __init__(self, start: Callable[[], Awaitable[None]]) -> None:
        self._start = start
        self._task: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        if self._task is None or (self._task.done() and self._task.exception() is not None):
            self._task = asyncio.ensure_future(self._start())
        await asyncio.shield(self._task)
