"""Rage clicks: 3 or more clicks of a session within 1 s and 30 px, at most `MAX_RAGE_CLICKS`.

A burst that goes on (on the same path, within 1 s and 30 px of its last rage click) is one rage
click whose count grows; it is keyed by user, session and client time of its start, and a merge
keeps the entry with the larger count. The clicks a burst is found in are the session's
(`SessionSequence`), which stay on the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import msgspec
from msgspec import Meta

from tracker.analytics.counting import KEY_CHARS, Count, Key
from tracker.analytics.metric import Clock, Query, Seen
from tracker.analytics.sequences import (
    RAGE_MIN_CLICKS,
    RAGE_RADIUS_SQUARED,
    RAGE_WINDOW_MS,
    SessionSequence,
)
from tracker.schema import Coordinate, Timestamp

if TYPE_CHECKING:
    from tracker.analytics.wire import Wire

MAX_RAGE_CLICKS = 100


class RageClick(NamedTuple):
    path: str
    element: str
    x: float
    y: float
    clicks: int
    user_id: str
    timestamp: int


class RageRow(msgspec.Struct, array_like=True, gc=False):
    burst: Annotated[str, Meta(max_length=3 * KEY_CHARS)]  # user/session/time
    path: Key
    element: Key
    x: Coordinate
    y: Coordinate
    clicks: Count
    user_id: Key
    timestamp: Timestamp


class RageClicks:
    """`rageClicks`, newest first, within the range by server time."""

    def __init__(self) -> None:
        self.rage: dict[str, RageClick] = {}

    def observe(self, seen: Seen) -> None:
        if "click" not in seen.types:
            return
        add_click = seen.sequence.add_click
        for movement in seen.movements:
            if movement.event != "click":
                continue
            data = movement.data
            point = data.coordinates
            if point is None:
                continue
            path = "" if data.path is None else data.path[:KEY_CHARS]
            near = add_click(movement.timestamp, point.x, point.y, path)
            if near >= RAGE_MIN_CLICKS:
                element = "" if data.element is None else data.element[:KEY_CHARS]
                self._rage(seen, movement.timestamp, point.x, point.y, path, element, near)

    def _rage(
        self, seen: Seen, t: int, x: float, y: float, path: str, element: str, near: int
    ) -> None:
        """Record a rage click at client time `t` (`near` close clicks, itself included): the
        burst going on, if its last rage click was on this path within 1 s and 30 px, else a
        new one (another cluster of clicks is another rage click)."""
        sequence: SessionSequence = seen.sequence
        dx, dy = x - sequence.burst_x, y - sequence.burst_y
        if (
            sequence.burst is not None
            and sequence.burst_path == path
            and abs(t - sequence.burst_t) <= RAGE_WINDOW_MS
            and dx * dx + dy * dy <= RAGE_RADIUS_SQUARED
        ):
            sequence.burst_count += 1
        else:
            sequence.burst = f"{seen.user_id}/{seen.session_id}/{t}"
            sequence.burst_count = near
            sequence.burst_path = path
        sequence.burst_t = t
        sequence.burst_x = x
        sequence.burst_y = y
        self.rage.pop(sequence.burst, None)
        self.rage[sequence.burst] = RageClick(
            path, element, x, y, sequence.burst_count, seen.user_id, seen.now_ms
        )
        self._trim()

    def _trim(self) -> None:
        while len(self.rage) > MAX_RAGE_CLICKS:
            del self.rage[min(self.rage, key=lambda k: (self.rage[k].timestamp, k))]

    def merge(self, theirs: RageClicks, clock: Clock) -> None:
        for burst, rage in theirs.rage.items():
            if clock.now_ms is not None and clock.ahead(rage.timestamp):
                rage = rage._replace(timestamp=clock.now_ms)
            old = self.rage.pop(burst, None)
            if old is not None and (old.clicks, old.timestamp) > (rage.clicks, rage.timestamp):
                rage = old
            self.rage[burst] = rage
        self._trim()

    def expire(self, newest: int) -> None:
        pass  # bounded by count, not by age

    def forget_user(self, user_id: str, uid: int) -> None:
        for burst in [k for k, r in self.rage.items() if r.user_id == user_id]:
            del self.rage[burst]

    def report(self, query: Query) -> dict[str, Any]:
        lo, hi = query.lo, query.hi
        rage = sorted(
            (
                r
                for r in self.rage.items()
                if lo <= r[1].timestamp and (hi is None or r[1].timestamp <= hi)
            ),
            key=lambda kv: (-kv[1].timestamp, kv[0]),
        )
        return {
            "rageClicks": [
                {
                    "path": r.path,
                    "element": r.element,
                    "x": r.x,
                    "y": r.y,
                    "count": r.clicks,
                    "userId": r.user_id,
                    "timestamp": r.timestamp,
                }
                for _, r in rage
            ]
        }

    def to_wire(self, wire: dict[str, Any]) -> None:
        wire["rage"] = [[key, *r] for key, r in self.rage.items()]

    def load(self, wire: Wire) -> None:
        self.rage = {
            r.burst: RageClick(r.path, r.element, r.x, r.y, r.clicks, r.user_id, r.timestamp)
            for r in wire.rage
        }
