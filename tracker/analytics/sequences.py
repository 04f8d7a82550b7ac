"""`SessionSequences`: what each session did last, which journeys and rage clicks need.

Per-session order (the last page of a session, its last few clicks, its current rage burst) is
not a sum of anything: it stays with the host that owns the session's user (every event of a
session goes through it), and is never shipped, merged or persisted.
"""

from __future__ import annotations

from typing import Any

MAX_SEQUENCES = 100_000

RAGE_MIN_CLICKS = 3
RAGE_RADIUS_PX = 30
RAGE_WINDOW_MS = 1_000
RAGE_RING = 8
RAGE_RADIUS_SQUARED = RAGE_RADIUS_PX * RAGE_RADIUS_PX


class SessionSequence:
    __slots__ = (
        "burst",
        "burst_count",
        "burst_path",
        "burst_t",
        "burst_x",
        "burst_y",
        "clicks",
        "high",
        "last_path",
        "low",
    )

    def __init__(self) -> None:
        self.last_path: str | None = None
        # The session's last RAGE_RING clicks, oldest first, flat: t, x, y, path, t, x, ...
        # One list instead of a tuple per click: 312 bytes instead of 696 for a full ring
        # (100,000 sessions are kept), and `add_click` checks the paths with one C-level `in`.
        self.clicks: list[Any] = []
        self.low = 0  # bounds of the clicks' times: `low` <= every t <= `high`
        self.high = 0
        self.burst: str | None = None
        self.burst_count = 0
        self.burst_path = ""
        self.burst_t = 0
        self.burst_x = 0.0  # where the burst's last rage click was
        self.burst_y = 0.0

    def add_click(self, t: int, x: float, y: float, path: str) -> int:
        """Remember a click (client time `t`); return how many of the session's clicks within
        1 s of it are on `path` within 30 px of it, itself included (3+ make a rage click)."""
        clicks = self.clicks
        near = 1
        if clicks:
            earliest, latest = t - RAGE_WINDOW_MS, t + RAGE_WINDOW_MS
            if self.high < earliest or self.low > latest:
                # Every remembered click is out of the window: the usual case, clicks seconds
                # apart, costs no scan.
                clicks.clear()
            else:
                if self.low < earliest or self.high > latest:
                    self._keep_within(earliest, latest)
                if path in clicks[3::4]:
                    for i in range(3, len(clicks), 4):
                        if clicks[i] == path:
                            dx, dy = clicks[i - 2] - x, clicks[i - 1] - y
                            if dx * dx + dy * dy <= RAGE_RADIUS_SQUARED:
                                near += 1
                if len(clicks) == 4 * RAGE_RING:
                    del clicks[:4]  # `low` stays a bound: at worst one needless `_keep_within`
        if clicks:
            if t < self.low:
                self.low = t
            elif t > self.high:
                self.high = t
        else:
            self.low = self.high = t
        clicks += (t, x, y, path)
        return near

    def _keep_within(self, earliest: int, latest: int) -> None:
        clicks = self.clicks
        times = [c for c in clicks[::4] if earliest <= c <= latest]
        if len(times) < len(clicks) // 4:
            clicks[:] = [
                value
                for at in range(0, len(clicks), 4)
                if earliest <= clicks[at] <= latest
                for value in clicks[at : at + 4]
            ]
        if times:
            self.low, self.high = min(times), max(times)


class SessionSequences:
    """What each session did last (page, clicks, rage burst): host state, never shipped.

    A bounded LRU by session: about 300 bytes a session, 1.2 kB with a full ring of clicks.
    An evicted session starts afresh.
    """

    def __init__(self, max_sessions: int = MAX_SEQUENCES) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[tuple[str, str], SessionSequence] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def touch(self, user_id: str, session_id: str) -> tuple[SessionSequence, bool]:
        """The session's state, most recently used now; and whether it was just created."""
        key = (user_id, session_id)
        sequence = self._sessions.pop(key, None)
        created = sequence is None
        if sequence is None:
            sequence = SessionSequence()
            if len(self._sessions) >= self.max_sessions:
                del self._sessions[next(iter(self._sessions))]
        self._sessions[key] = sequence
        return sequence, created

    def forget_user(self, user_id: str) -> None:
        for key in [k for k in self._sessions if k[0] == user_id]:
            del self._sessions[key]
