"""Per-user placement: the count of live per-user actors, which bounds how many may run.

Every replica, program and the scheduler asks it before a user's actor is started, so that
visitors who invent user IDs cannot start processes without limit. An actor that exits idle
says so (`release`); one that ended otherwise is found missing from the named actors when the
count is full, and forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Per-user actors admitted this recently are counted even if they are not listed yet: their
# creation is under way (a name is listed once Ray has registered it, before the process runs).
STARTING_S = 10.0


class UserActorCount:
    """The per-user actors counted live, by name, with when each was admitted; `named()`
    lists the per-user actors that exist (asked only when the count is full)."""

    def __init__(
        self,
        limit: int,
        named: Callable[[], set[str]],
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._named = named
        self._monotonic_s = monotonic_s
        # Those found existing at the start count as admitted long ago.
        self.live: dict[str, float] = dict.fromkeys(named(), 0.0)

    def admit(self, name: str) -> bool:
        """Whether the per-user actor `name` may run: it is counted already, or one more fits."""
        if name in self.live:
            return True
        if len(self.live) >= self.limit:
            named = self._named()
            starting = self._monotonic_s() - STARTING_S
            self.live = {n: at for n, at in self.live.items() if n in named or at > starting}
        if len(self.live) >= self.limit:
            return False
        self.live[name] = self._monotonic_s()
        return True

    def release(self, name: str) -> None:
        """The per-user actor `name` is exiting."""
        self.live.pop(name, None)
