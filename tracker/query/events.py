"""A user's history as queries read it: visits, and events in the order they happened.

Events are ordered by their timestamp, and events with equal timestamps in the order they were
received (`seq`, counted per user). Each event points at its visit, so a query filters events
by what was derived of their session (source, technology, country, bot) without a join.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import msgspec

Property = str | int | float | bool
# What an event is: the movements' types, `custom` (a named event with properties), and
# `exposure` (an experiment's first assignment: `name` the experiment, `variant` the variant).
EventKind = str


@dataclass(slots=True)
class Campaign:
    """The `utm_*` parameters of a visit's landing URL."""

    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None


@dataclass(slots=True)
class Visit:
    """A session and what was derived of it at ingest (None where nothing was known)."""

    session_id: str
    start_ms: int
    referrer: str | None = None  # the referring host, never a same-site one
    channel: str = "direct"  # direct, search, social, email, paid, referral
    campaign: Campaign | None = None
    browser: str | None = None  # families, as ua-parser names them
    os: str | None = None
    device: str | None = None  # desktop, mobile, tablet, bot, other
    country: str | None = None  # ISO 3166-1 alpha-2
    bot: bool = False


class Event(msgspec.Struct, gc=False):
    """One stored event of a user. A struct made in C: a host makes one per event it stores
    (a slotted dataclass's `__init__` cost four times as much), and they hold no cycles."""

    ts: int  # the event's timestamp, ms
    seq: int  # the order received, per user: breaks ties of `ts`
    kind: EventKind
    visit: Visit
    path: str | None = None
    element: str | None = None
    name: str | None = None  # a custom event's name, an exposure's experiment
    properties: dict[str, Property] | None = None
    variant: str | None = None  # an exposure's variant


@dataclass(slots=True)
class UserHistory:
    """One user's visits and events, as their host holds them for queries."""

    user_id: str
    visits: dict[str, Visit] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    _ordered: bool = True

    @property
    def bot(self) -> bool:
        """A user is a bot when any of their visits is."""
        return any(visit.bot for visit in self.visits.values())

    def add(self, event: Event) -> None:
        if self.events and (event.ts, event.seq) < (self.events[-1].ts, self.events[-1].seq):
            self._ordered = False
        self.events.append(event)

    def extend(self, events: list[Event]) -> None:
        """`add` for many events at once."""
        if not events:
            return
        self.add(events[0])
        if self._ordered:
            self._ordered = all(a.ts <= b.ts for a, b in pairwise(events))
        self.events.extend(events[1:])

    def ordered(self) -> list[Event]:
        """The events by (timestamp, order received); sorted once when they arrived out of it."""
        if not self._ordered:
            self.events.sort(key=lambda e: (e.ts, e.seq))
            self._ordered = True
        return self.events

    def between(self, from_ms: int, to_ms: int) -> Iterator[Event]:
        """The events with `from_ms <= ts < to_ms`, in order."""
        return (e for e in self.ordered() if from_ms <= e.ts < to_ms)
