"""What every conversions query shares: its time range, and how a query runs on a host and is
merged across hosts.

A query (`tracker.query.run.Query`) has `run(histories)`, the partial result of one host's
users, and `merge(partials)`, exact: each user lives on exactly one host, so counts add and
lists join.
Bots (users with any bot visit) are left out of every figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tracker.errors import InvalidDefinition
from tracker.query.events import Event, UserHistory
from tracker.query.run import Query

DAY_MS = 86_400_000
# A year, leap or not: longer ranges are refused, so that a query's work stays bounded.
MAX_RANGE_MS = 366 * DAY_MS

P = TypeVar("P")


@dataclass(frozen=True)
class TimeRange:
    """Events with `from_ms <= ts <= to_ms` (both ends inclusive, as `/api/analytics`)."""

    from_ms: int
    to_ms: int

    @classmethod
    def checked(cls, from_ms: int, to_ms: int) -> TimeRange:
        if to_ms < from_ms:
            raise InvalidDefinition("to", f"{to_ms} is before from ({from_ms})")
        if to_ms - from_ms > MAX_RANGE_MS:
            raise InvalidDefinition(
                "to",
                f"{to_ms}: the range from {from_ms} is over a year ({MAX_RANGE_MS} ms); "
                "query a year or less",
            )
        return cls(from_ms, to_ms)

    def contains(self, ts: int) -> bool:
        return self.from_ms <= ts <= self.to_ms

    def events(self, history: UserHistory) -> Iterator[Event]:
        return history.between(self.from_ms, self.to_ms + 1)


def humans(histories: Iterable[UserHistory]) -> Iterator[UserHistory]:
    """The histories of users who are not bots."""
    return (h for h in histories if not h.bot)


def merged(query: Query[P], shares: Iterable[Iterable[UserHistory]]) -> P:
    """A query over several hosts' users, in one process: each share's partial, merged."""
    return query.merge([query.run(share) for share in shares])
