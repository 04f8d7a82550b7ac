"""Recent activity: the sessions last active, at most `MAX_RECENT_SESSIONS` of them."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from tracker.analytics.counting import Count, Key, saturating_sum
from tracker.analytics.metric import Clock, Query, Seen
from tracker.schema import Timestamp

if TYPE_CHECKING:
    from tracker.analytics.wire import Wire

MAX_RECENT_SESSIONS = 1_000
RECENT_ACTIVITY = 10


class Recent(NamedTuple):
    start: int
    last: int
    movements: int
    device: dict[str, Any] | None = None  # the session's deviceInfo, when it was created with one


class RecentRow(msgspec.Struct, array_like=True, gc=False):
    user_id: Key
    session_id: Key
    start: Timestamp
    last: Timestamp
    movements: Count
    device: dict[str, Any] | None = None  # rows written before devices were kept have none


class RecentActivity:
    """`recentActivity`: the 10 sessions last active, whatever the range."""

    def __init__(self) -> None:
        # In order of last activity: entries move to the end when touched.
        self.recent: dict[tuple[str, str], Recent] = {}

    def observe(self, seen: Seen) -> None:
        key = (seen.user_id, seen.session_id)
        now_ms, start_ms, device = seen.now_ms, seen.start_ms, seen.device
        old = self.recent.pop(key, None)
        if old is None:
            start = now_ms if start_ms is None else start_ms
            self.recent[key] = Recent(start, now_ms, seen.count, device)
        else:
            self.recent[key] = Recent(
                old.start if start_ms is None else min(old.start, start_ms),
                max(old.last, now_ms),
                old.movements + seen.count,
                device if device is not None else old.device,
            )
        if len(self.recent) > MAX_RECENT_SESSIONS:
            self._trim()

    def merge(self, theirs: RecentActivity, clock: Clock) -> None:
        for key, recent in theirs.recent.items():
            if clock.now_ms is not None and clock.ahead(max(recent.start, recent.last)):
                recent = recent._replace(
                    start=min(recent.start, clock.now_ms), last=min(recent.last, clock.now_ms)
                )
            old = self.recent.pop(key, None)
            if old is not None:
                recent = Recent(
                    min(old.start, recent.start),
                    max(old.last, recent.last),
                    saturating_sum(old.movements, recent.movements),
                    recent.device if recent.device is not None else old.device,
                )
            self.recent[key] = recent
        if len(self.recent) > MAX_RECENT_SESSIONS:
            self._trim()

    def _trim(self) -> None:
        for key in list(self.recent)[: len(self.recent) - MAX_RECENT_SESSIONS * 4 // 5]:
            del self.recent[key]

    def expire(self, newest: int) -> None:
        pass  # bounded by count, not by age

    def forget_user(self, user_id: str, uid: int) -> None:
        for key in [k for k in self.recent if k[0] == user_id]:
            del self.recent[key]

    def report(self, query: Query) -> dict[str, Any]:
        recent = heapq.nsmallest(
            RECENT_ACTIVITY, self.recent.items(), key=lambda kv: (-kv[1].last, kv[0])
        )
        return {"recentActivity": [_entry(u, s, r) for (u, s), r in recent]}

    def to_wire(self, wire: dict[str, Any]) -> None:
        wire["recent"] = [[u, s, *r] for (u, s), r in self.recent.items()]

    def load(self, wire: Wire) -> None:
        self.recent = {
            (r.user_id, r.session_id): Recent(r.start, r.last, r.movements, r.device)
            for r in wire.recent
        }


def _entry(user_id: str, session_id: str, recent: Recent) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "userId": user_id,
        "sessionId": session_id,
        "startTime": recent.start,
        "lastActivity": recent.last,
        "movementCount": recent.movements,
    }
    if recent.device is not None:
        entry["deviceInfo"] = recent.device
    return entry
