"""What a query is to a host, and its fan-out: each host runs the query over its users'
histories and answers a partial result; the partials merge into the answer.

A user lives on one host, so a partial's counts of distinct users add up exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from tracker.query.events import UserHistory

P = TypeVar("P")


class Query(Protocol[P]):
    """A query: run over some users' histories into a partial, and partials merged into one.

    The object travels to every host (it is pickled), so it holds only its parameters."""

    def run(self, histories: Iterable[UserHistory]) -> P: ...

    def merge(self, partials: Sequence[P]) -> P: ...


async def fan_out(hosts: Iterable[Any], query: Query[P]) -> P:
    """Run `query` on every host actor at once (`HostActor.query`) and merge the partials."""
    partials: list[P] = list(await asyncio.gather(*(h.query.remote(query) for h in hosts)))
    return query.merge(partials)
