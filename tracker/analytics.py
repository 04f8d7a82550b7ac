"""`SiteStats`: the site-wide analytics behind `GET /api/analytics`, in bounded memory.

Users live on many hosts, the dashboard reads one aggregator. Each host keeps a long-lived
`SiteStats`, calls `observe()` for every committed batch and `observe_session()` for every
session it creates, and about once a second ships what it gathered::

    delta = stats.take_delta()                      # the counters; `stats` starts again empty
    data = msgspec.msgpack.encode(delta.to_wire())  # on the host
    aggregator.merge(SiteStats.decode_wire(data), now_ms)   # in the aggregator

The aggregator trusts nothing in a delta: `decode_wire` (`from_wire` for a decoded one) checks
every type, bound and row length before anything is merged, and raises `InvalidInput` for a
delta `merge` could not take whole; `merge` then cannot fail part way. Counts saturate at
`MAX_COUNT` (2^53), so no total outgrows the codec.

Two kinds of state, kept apart so that shipping can be plain addition:

* **Counters** (events, pages, clicks, heatmap cells, scroll depths, journeys, distinct users,
  recent sessions, rage clicks) travel in deltas. `merge` adds them, so merging the deltas of
  several hosts gives exactly what one instance observing every batch would have, as long as no
  cap below is hit (caps drop the smallest keys, which depends on the order of arrival).
* **Per-session order** (the last page of a session, its last few clicks, its current rage
  burst) is needed to count journeys and rage clicks but is not a sum of anything. It lives in
  `SessionSequences`, which `take_delta` leaves with the host: every event of a session goes
  through the host that owns its user, so that host sees the whole sequence. It is never
  shipped, merged or persisted; a restarted host starts sessions' sequences afresh (without
  counting those sessions again: the host says which ones its user trackers held). A rage burst
  that goes on across shipments is keyed, and `merge` keeps the entry with the larger count.

Time: buckets use `now_ms`, the server's receive time; client timestamps are only used inside a
session (the 1 s window of a rage burst, where one batch shares one receive time). A session
counts its user in the minute it is created, and again in the minute it is created again (the
browser client posts its session on every page load): that page load is activity. It is never
counted at its earlier start time: a delta's users are merged exactly only into a minute whose
set of users the aggregator still holds (the last hour, see below); into a minute reduced to a
count they are added on top of it, and a user already counted there would count twice.
Hosts' clocks may differ from the aggregator's: it merges with its own `now_ms`, counts a
bucket more than `CLOCK_SKEW_MS` (5 min) ahead of it in its current minute and hour, drops one
older than the 7 days kept, and never lets `newest`, which expiry goes by, run further ahead
(a host hours ahead had frozen the current minutes' user sets, so users counted twice; a
`newest` far in the future had emptied every bucket and stopped expiry for good).

* Minute buckets (the last 7 days): event count, counts by type, and distinct users. Users
  are kept as a set of 63-bit hashes for the last hour, enough for `activeUsers` (last 5 min)
  and for deltas arriving late; older minutes keep only the count. Deltas must reach the
  aggregator within that hour for per-minute distinct counts to stay exact.
* Hour buckets (the last 7 * 24): pages, element clicks, heatmap cells, scroll depths and
  journeys, so `report(from_ms=, to_ms=)` sums the hours that overlap the range: these
  aggregates have hour granularity. `eventsByType` and `totalEvents` in a range come from the
  minute buckets (minute granularity); without a range they are all-time totals.

Bounds: per hour bucket at most `MAX_PAGES` paths, `MAX_ELEMENTS` (element, path) pairs,
`MAX_JOURNEYS` transitions and `MAX_HEAT_CELLS` heatmap cells; going over drops the smallest
fifth. Paths and elements are cut to `KEY_CHARS` characters. `MAX_RECENT_SESSIONS` recent
sessions, `MAX_RAGE_CLICKS` rage clicks and `SessionSequences.max_sessions` sequences. The
all-time count of users is a HyperLogLog sketch (`DistinctUsers`): at most 16 KiB, within about
1.6% of the exact count.

Choices: scroll depth counts every scroll event in the bucket of its `metadata.scrollDepth`
(not the maximum per page visit). The heatmap covers the first 10,000 px of a page; clicks
below are not binned. `totalSessions` counts sessions created plus sessions first seen in
movements, deduplicated by the host's `SessionSequences` (so a session evicted from it, or
seen again after a host restart, counts again). `forget_user` removes a user from the distinct
counts of the last hour, recent sessions and rage clicks; anonymous counters keep what they
had counted, and so does the all-time user count (a sketch, which holds no ID).
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Annotated, Any, NamedTuple, TypeVar

import msgspec
from msgspec import Meta

from tracker.distinct import MAX_BYTES as SKETCH_BYTES
from tracker.distinct import DistinctUsers
from tracker.errors import InvalidInput
from tracker.schema import (
    EVENT_TYPES,
    Coordinate,
    Movement,
    MovementData,
    Observed,
    Timestamp,
)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
KEEP_MINUTES = 7 * 24 * 60
KEEP_HOURS = 7 * 24
EXACT_USER_MINUTES = 60
ACTIVE_WINDOW_MS = 5 * MINUTE_MS
SERIES_MINUTES = 60

KEY_CHARS = 256
MAX_PAGES = 2_000
MAX_ELEMENTS = 2_000
MAX_JOURNEYS = 2_000
MAX_HEAT_CELLS = 5_000
MAX_RECENT_SESSIONS = 1_000
MAX_RAGE_CLICKS = 100
MAX_SEQUENCES = 100_000
RECENT_ACTIVITY = 10

HEAT_BINS_X = 40
HEAT_BIN_PX = 25
HEAT_ROWS = 400
SCROLL_BUCKETS = 11

RAGE_MIN_CLICKS = 3
RAGE_RADIUS_PX = 30
RAGE_WINDOW_MS = 1_000
RAGE_RING = 8
_RAGE_RADIUS_SQUARED = RAGE_RADIUS_PX * RAGE_RADIUS_PX

# Every count saturates here: the largest integer a JSON number (the dashboard's) holds
# exactly, and far below what msgpack, the storage codec, can encode (2^64 - 1).
MAX_COUNT = 2**53
# How far ahead of the aggregator's clock a host's buckets may be (clocks of nodes differ).
CLOCK_SKEW_MS = 5 * MINUTE_MS
MAX_TYPES = 64  # event types in a delta's counts: room for types added by a newer version

K = TypeVar("K", str, tuple[str, str], tuple[str, int], int)
NUMBER = (int, float)


def user_key(user_id: str) -> int:
    """A 63-bit hash of a user ID, the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _prune(counts: dict[K, int], limit: int) -> None:
    """Drop the smallest counts down to 4/5 of `limit`, so pruning is rare (amortised O(1)).

    Among equal counts the oldest keys go first: newer ones have had less time to grow.
    """
    drop = len(counts) - limit * 4 // 5
    if drop > 0:
        threshold, ties = _threshold(counts.values(), drop)
        _drop_smallest(counts, threshold, ties, drop)


def _threshold(counts: Iterable[int], drop: int) -> tuple[int, int]:
    """For dropping the `drop` smallest of `counts`: the largest count to drop, and how many
    of the counts equal to it to drop."""
    ranked = sorted(counts)
    threshold = ranked[drop - 1]
    return threshold, drop - bisect.bisect_left(ranked, threshold)


def _drop_smallest(counts: dict[K, int], threshold: int, ties: int, drop: int) -> tuple[int, int]:
    """Delete, oldest first, the counts below `threshold` and `ties` of those equal to it,
    `drop` in all; return the ties and drops that are left for a further dict."""
    if drop == 0:
        return ties, drop
    for key in [k for k, n in counts.items() if n <= threshold]:
        if counts[key] == threshold:
            if ties == 0:
                continue
            ties -= 1
        del counts[key]
        drop -= 1
        if drop == 0:
            break
    return ties, drop


def _add(into: dict[K, int], counts: dict[K, int], limit: int | None = None) -> None:
    for key, n in counts.items():
        n += into.get(key, 0)
        into[key] = n if n <= MAX_COUNT else MAX_COUNT
    if limit is not None and len(into) > limit:
        _prune(into, limit)


def _sum(a: int, b: int) -> int:
    """`a + b`, saturating at `MAX_COUNT`."""
    n = a + b
    return n if n <= MAX_COUNT else MAX_COUNT


def _top(counts: dict[K, int], top: int) -> list[tuple[K, int]]:
    return heapq.nsmallest(top, counts.items(), key=lambda kv: (-kv[1], kv[0]))


class _Minute:
    __slots__ = ("count", "n_users", "types", "users")

    def __init__(self) -> None:
        self.count = 0
        self.types: dict[str, int] = {}
        self.users: set[int] | None = set()
        self.n_users = 0  # distinct users, once `users` is dropped

    def distinct_users(self) -> int:
        return self.n_users if self.users is None else len(self.users)


class _Hour:
    __slots__ = ("elements", "heat", "heat_cells", "journeys", "pages", "scroll")

    def __init__(self) -> None:
        self.pages: dict[str, int] = {}
        self.elements: dict[tuple[str, str], int] = {}
        self.journeys: dict[tuple[str, str], int] = {}
        # path -> cell (row * HEAT_BINS_X + column) -> clicks; `heat_cells` counts all cells.
        self.heat: dict[str, dict[int, int]] = {}
        self.heat_cells = 0
        self.scroll = [0] * SCROLL_BUCKETS

    def prune_heat(self) -> None:
        """`_prune` over all cells as if they were one dict of (path, cell), path by path.

        Done in place: flattening and rebuilding the dicts cost 5x as much, and under clicks
        spread over many cells this runs every thousand or so clicks.
        """
        drop = self.heat_cells - MAX_HEAT_CELLS * 4 // 5
        if drop <= 0:
            return
        heat = self.heat
        threshold, ties = _threshold(chain.from_iterable(map(dict.values, heat.values())), drop)
        left = drop
        for path in list(heat):
            cells = heat[path]
            ties, left = _drop_smallest(cells, threshold, ties, left)
            if not cells:
                del heat[path]
        self.heat_cells -= drop


class Recent(NamedTuple):
    start: int
    last: int
    movements: int
    device: dict[str, Any] | None = None  # the session's deviceInfo, when it was created with one


class RageClick(NamedTuple):
    path: str
    element: str
    x: float
    y: float
    clicks: int
    user_id: str
    timestamp: int


class _Sequence:
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
                            if dx * dx + dy * dy <= _RAGE_RADIUS_SQUARED:
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
        self._sessions: dict[tuple[str, str], _Sequence] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def touch(self, user_id: str, session_id: str) -> tuple[_Sequence, bool]:
        """The session's state, most recently used now; and whether it was just created."""
        key = (user_id, session_id)
        sequence = self._sessions.pop(key, None)
        created = sequence is None
        if sequence is None:
            sequence = _Sequence()
            if len(self._sessions) >= self.max_sessions:
                del self._sessions[next(iter(self._sessions))]
        self._sessions[key] = sequence
        return sequence, created

    def forget_user(self, user_id: str) -> None:
        for key in [k for k in self._sessions if k[0] == user_id]:
            del self._sessions[key]


# -- the wire form, typed --------------------------------------------------------------------
# What `to_wire` makes, declared so that msgspec checks every type, bound and row length while
# decoding: a delta (or stored totals) that passes is one `merge` cannot fail on. Rows are
# arrays; a row longer than declared (from a newer version) has its extra fields ignored.

Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Key = Annotated[str, Meta(max_length=KEY_CHARS)]
UserHash = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class _WireMinute(msgspec.Struct, array_like=True, gc=False):
    start: Timestamp
    count: Count
    types: Annotated[dict[Key, Count], Meta(max_length=MAX_TYPES)]
    users: list[UserHash] | None
    n_users: Count


class _WireHour(msgspec.Struct, array_like=True, gc=False):
    start: Timestamp
    pages: dict[Key, Count]
    elements: list[tuple[Key, Key, Count]]
    journeys: list[tuple[Key, Key, Count]]
    heat: dict[Key, list[Count]]  # path -> [cell, clicks, cell, clicks, ...]
    scroll: Annotated[list[Count], Meta(min_length=SCROLL_BUCKETS, max_length=SCROLL_BUCKETS)]


class _WireRecent(msgspec.Struct, array_like=True, gc=False):
    user_id: Key
    session_id: Key
    start: Timestamp
    last: Timestamp
    movements: Count
    device: dict[str, Any] | None = None  # rows written before devices were kept have none


class _WireRage(msgspec.Struct, array_like=True, gc=False):
    burst: Annotated[str, Meta(max_length=3 * KEY_CHARS)]  # user/session/time
    path: Key
    element: Key
    x: Coordinate
    y: Coordinate
    clicks: Count
    user_id: Key
    timestamp: Timestamp


class _Wire(msgspec.Struct, gc=False):
    newest: int  # not trusted: recomputed from the minutes (see `from_wire`)
    events: Count
    sessions: Count
    types: Annotated[dict[Key, Count], Meta(max_length=MAX_TYPES)]
    # A `DistinctUsers` sketch; the hashes themselves in totals stored before sketches.
    users: Annotated[bytes, Meta(max_length=SKETCH_BYTES)] | list[UserHash]
    minutes: list[_WireMinute]
    hours: list[_WireHour]
    recent: list[_WireRecent]
    rage: list[_WireRage]


_wire_decoder = msgspec.msgpack.Decoder(_Wire)
_HEAT_CELLS_PER_PAGE = HEAT_ROWS * HEAT_BINS_X


class SiteStats:
    """Site-wide aggregates: observed on hosts, shipped as deltas, merged in the aggregator."""

    def __init__(self, sequences: SessionSequences | None = None) -> None:
        self.sequences = sequences if sequences is not None else SessionSequences()
        self._reset()

    def _reset(self) -> None:
        self.newest = 0  # start of the newest minute bucket
        self.events = 0
        self.sessions = 0
        self.types: dict[str, int] = {}
        self.users = DistinctUsers()
        self.minutes: dict[int, _Minute] = {}
        self.hours: dict[int, _Hour] = {}
        self.recent: dict[tuple[str, str], Recent] = {}
        self.rage: dict[str, RageClick] = {}

    def is_empty(self) -> bool:
        return not self.minutes and not self.recent

    def total_events(self) -> int:
        return self.events

    def take_delta(self) -> SiteStats:
        """Hand over the counters gathered so far and start empty; sequences stay here."""
        taken = copy.copy(self)
        self._reset()
        return taken

    # -- observing (hot path) -----------------------------------------------------------------

    def observe(self, user_id: str, movements: Sequence[Movement], now_ms: int) -> None:
        """Count one committed batch of `user_id`'s movements, received at `now_ms`."""
        start = 0
        for end in range(1, len(movements) + 1):
            if end == len(movements) or movements[end].sessionId != movements[start].sessionId:
                self.observe_stored(
                    user_id, movements[start].sessionId, movements[start:end], now_ms
                )
                start = end

    def observe_stored(
        self,
        user_id: str,
        session_id: str,
        movements: Sequence[Observed],
        now_ms: int,
        *,
        known: bool = False,
    ) -> None:
        """Count committed movements of one session (a `track` record's entry, decoded).

        `known`: the user's tracker held the session already (restored from storage after a
        restart, say), so it is not counted as a session again, even where this instance has
        no sequence for it."""
        count = len(movements)
        if not count:
            return
        minute = self._minute(now_ms)
        hour = self._hour(now_ms)
        uid = user_key(user_id)
        self.users.add(uid)
        if minute.users is not None:
            minute.users.add(uid)
        self.events += count
        minute.count += count
        totals = self.types
        per_minute = minute.types
        events = [movement.event for movement in movements]
        # Counted once per batch (a batch has few event types), in the order first seen.
        for event, n in (Counter(events) if count > 1 else {events[0]: 1}).items():
            totals[event] = totals.get(event, 0) + n
            per_minute[event] = per_minute.get(event, 0) + n
        sequence = self._session(user_id, session_id, known)
        if "click" in events:
            self._clicks(hour, sequence, user_id, session_id, movements, now_ms)
        if "page_view" in events:
            for movement in movements:
                if movement.event == "page_view":
                    self._page_view(hour, sequence, movement.data)
        if "scroll" in events:
            for movement in movements:
                if movement.event == "scroll":
                    self._scroll(hour, movement.data)
        self._recent(user_id, session_id, now_ms, count)

    def observe_session(
        self,
        user_id: str,
        session_id: str,
        now_ms: int,
        device: dict[str, Any] | None = None,
        *,
        start_ms: int | None = None,
        known: bool = False,
    ) -> None:
        """Count a session created (or created again) at `now_ms`: once as a session, even if
        it is created again or has movements; its user as active at `now_ms`. `start_ms`: the
        session's start, when it began earlier (it is created again). `known`: as for
        `observe_stored`."""
        uid = user_key(user_id)
        self.users.add(uid)
        minute = self._minute(now_ms)
        if minute.users is not None:
            minute.users.add(uid)
        self._session(user_id, session_id, known)
        self._recent(user_id, session_id, now_ms, 0, device, start_ms)

    def _minute(self, now_ms: int) -> _Minute:
        start = now_ms - now_ms % MINUTE_MS
        minute = self.minutes.get(start)
        if minute is None:
            minute = self.minutes[start] = _Minute()
            if start > self.newest:
                self.newest = start
                self._expire()
        return minute

    def _hour(self, now_ms: int) -> _Hour:
        start = now_ms - now_ms % HOUR_MS
        hour = self.hours.get(start)
        if hour is None:
            hour = self.hours[start] = _Hour()
        return hour

    def _expire(self) -> None:
        """Drop buckets older than 7 days and per-minute user sets older than an hour."""
        oldest = self.newest - (KEEP_MINUTES - 1) * MINUTE_MS
        exact = self.newest - (EXACT_USER_MINUTES - 1) * MINUTE_MS
        for start in [s for s, m in self.minutes.items() if s < exact and m.users is not None]:
            minute = self.minutes[start]
            minute.n_users = minute.distinct_users()
            minute.users = None
        for start in [s for s in self.minutes if s < oldest]:
            del self.minutes[start]
        oldest_hour = self.newest - self.newest % HOUR_MS - (KEEP_HOURS - 1) * HOUR_MS
        for start in [s for s in self.hours if s < oldest_hour]:
            del self.hours[start]

    def _session(self, user_id: str, session_id: str, known: bool) -> _Sequence:
        sequence, created = self.sequences.touch(user_id, session_id)
        if created and not known:
            self.sessions += 1
        return sequence

    def _recent(
        self,
        user_id: str,
        session_id: str,
        now_ms: int,
        count: int,
        device: dict[str, Any] | None = None,
        start_ms: int | None = None,
    ) -> None:
        key = (user_id, session_id)
        old = self.recent.pop(key, None)
        if old is None:
            start = now_ms if start_ms is None else start_ms
            self.recent[key] = Recent(start, now_ms, count, device)
        else:
            self.recent[key] = Recent(
                old.start if start_ms is None else min(old.start, start_ms),
                max(old.last, now_ms),
                old.movements + count,
                device if device is not None else old.device,
            )
        if len(self.recent) > MAX_RECENT_SESSIONS:
            self._trim_recent()

    def _trim_recent(self) -> None:
        # The dict is in order of last activity (entries move to the end when touched).
        for key in list(self.recent)[: len(self.recent) - MAX_RECENT_SESSIONS * 4 // 5]:
            del self.recent[key]

    def _page_view(self, hour: _Hour, sequence: _Sequence, data: MovementData) -> None:
        if data.path is None:
            return
        path = data.path[:KEY_CHARS]
        pages = hour.pages
        pages[path] = pages.get(path, 0) + 1
        if len(pages) > MAX_PAGES:
            _prune(pages, MAX_PAGES)
        previous = sequence.last_path
        if previous is None and data.metadata is not None:
            referrer = data.metadata.get("referrerPath")
            if isinstance(referrer, str) and referrer:
                previous = referrer[:KEY_CHARS]
        if previous is not None and previous != path:
            journeys = hour.journeys
            key = (previous, path)
            journeys[key] = journeys.get(key, 0) + 1
            if len(journeys) > MAX_JOURNEYS:
                _prune(journeys, MAX_JOURNEYS)
        sequence.last_path = path

    @staticmethod
    def _scroll(hour: _Hour, data: MovementData) -> None:
        depth = data.metadata.get("scrollDepth") if data.metadata is not None else None
        if isinstance(depth, NUMBER) and not isinstance(depth, bool):
            hour.scroll[min(SCROLL_BUCKETS - 1, max(0, int(depth // 10)))] += 1

    def _clicks(
        self,
        hour: _Hour,
        sequence: _Sequence,
        user_id: str,
        session_id: str,
        movements: Sequence[Observed],
        now_ms: int,
    ) -> None:
        """Count a session's clicks: elements, heatmap cells, rage clicks. The hot path: one
        loop over the batch with the buckets' dicts in locals."""
        elements = hour.elements
        heat = hour.heat
        add_click = sequence.add_click
        for movement in movements:
            if movement.event != "click":
                continue
            data = movement.data
            path = data.path
            path = "" if path is None else path[:KEY_CHARS]
            element = data.element
            if element is None:
                element = ""
            else:
                element = element[:KEY_CHARS]
                key = (element, path)
                n = elements.get(key)
                if n is None:
                    elements[key] = 1
                    if len(elements) > MAX_ELEMENTS:
                        _prune(elements, MAX_ELEMENTS)
                else:
                    elements[key] = n + 1
            point = data.coordinates
            if point is None:
                continue
            x, y = point.x, point.y
            metadata = data.metadata
            width = metadata.get("viewportWidth") if metadata is not None else None
            if path and isinstance(width, NUMBER) and not isinstance(width, bool) and width > 0:
                row = int((y + (data.scrollY or 0)) // HEAT_BIN_PX)
                if 0 <= row < HEAT_ROWS:
                    # Clamped as a float: a tiny width makes it infinite, which `int` rejects.
                    column = x / width * HEAT_BINS_X
                    cell = row * HEAT_BINS_X
                    if column >= HEAT_BINS_X - 1:
                        cell += HEAT_BINS_X - 1
                    elif column > 0:
                        cell += int(column)
                    cells = heat.get(path)
                    if cells is None:
                        cells = heat[path] = {}
                    n = cells.get(cell)
                    if n is None:
                        cells[cell] = 1
                        hour.heat_cells += 1
                        if hour.heat_cells > MAX_HEAT_CELLS:
                            hour.prune_heat()
                    else:
                        cells[cell] = n + 1
            t = movement.timestamp
            near = add_click(t, x, y, path)
            if near >= RAGE_MIN_CLICKS:
                self._rage(sequence, user_id, session_id, t, x, y, path, element, near, now_ms)

    def _rage(
        self,
        sequence: _Sequence,
        user_id: str,
        session_id: str,
        t: int,
        x: float,
        y: float,
        path: str,
        element: str,
        near: int,
        now_ms: int,
    ) -> None:
        """Record a rage click at client time `t` (`near` close clicks, itself included): the
        burst going on, if its last rage click was on this path within 1 s and 30 px, else a
        new one (another cluster of clicks is another rage click)."""
        dx, dy = x - sequence.burst_x, y - sequence.burst_y
        if (
            sequence.burst is not None
            and sequence.burst_path == path
            and abs(t - sequence.burst_t) <= RAGE_WINDOW_MS
            and dx * dx + dy * dy <= _RAGE_RADIUS_SQUARED
        ):
            sequence.burst_count += 1
        else:
            sequence.burst = f"{user_id}/{session_id}/{t}"
            sequence.burst_count = near
            sequence.burst_path = path
        sequence.burst_t = t
        sequence.burst_x = x
        sequence.burst_y = y
        self.rage.pop(sequence.burst, None)
        self.rage[sequence.burst] = RageClick(
            path, element, x, y, sequence.burst_count, user_id, now_ms
        )
        self._trim_rage()

    def _trim_rage(self) -> None:
        while len(self.rage) > MAX_RAGE_CLICKS:
            del self.rage[min(self.rage, key=lambda k: (self.rage[k].timestamp, k))]

    # -- merging and shipping -----------------------------------------------------------------

    def merge(self, other: SiteStats, now_ms: int | None = None) -> None:
        """Add another instance's counters (a host's delta) into this one.

        Nothing here can fail for an instance from `from_wire` (which checks every type and
        bound) or one observed in this process, so a merge is never left half done. Counts
        saturate at `MAX_COUNT`.

        `now_ms` is the aggregator's clock. Hosts run on other nodes, whose clocks may be
        ahead: given it, a bucket of `other` more than `CLOCK_SKEW_MS` ahead of it is counted
        in the current minute and hour instead, timestamps that far ahead are taken as now,
        buckets older than the 7 days kept are dropped, and `newest` (which expiry goes by)
        stays within `CLOCK_SKEW_MS` of it. Without it (a host putting back a delta it failed
        to ship: its own counts, on its own clock) buckets are merged as they are.
        """
        if now_ms is None:
            now_minute = now_hour = last_minute = last_hour = 0
            oldest_minute = oldest_hour = 0
        else:
            horizon = now_ms + CLOCK_SKEW_MS
            now_minute = now_ms - now_ms % MINUTE_MS
            now_hour = now_ms - now_ms % HOUR_MS
            last_minute = horizon - horizon % MINUTE_MS
            last_hour = horizon - horizon % HOUR_MS
            oldest_minute = now_minute - (KEEP_MINUTES - 1) * MINUTE_MS
            oldest_hour = now_hour - (KEEP_HOURS - 1) * HOUR_MS
        self.events = _sum(self.events, other.events)
        self.sessions = _sum(self.sessions, other.sessions)
        _add(self.types, other.types)
        self.users.merge(other.users)
        newest = self.newest
        for start, theirs in other.minutes.items():
            if now_ms is not None:
                if start < oldest_minute:
                    continue
                if start > last_minute:
                    start = now_minute
            if start > newest:
                newest = start
            mine = self.minutes.get(start)
            if mine is None:
                mine = self.minutes[start] = _Minute()
            mine.count = _sum(mine.count, theirs.count)
            _add(mine.types, theirs.types)
            if mine.users is not None and theirs.users is not None:
                mine.users |= theirs.users
            else:
                mine.n_users = _sum(mine.distinct_users(), theirs.distinct_users())
                mine.users = None
        for start, their_hour in other.hours.items():
            if now_ms is not None:
                if start < oldest_hour:
                    continue
                if start > last_hour:
                    start = now_hour
            self._merge_hour(self._hour(start), their_hour)
        for key, recent in other.recent.items():
            if now_ms is not None and max(recent.start, recent.last) > now_ms + CLOCK_SKEW_MS:
                recent = recent._replace(
                    start=min(recent.start, now_ms), last=min(recent.last, now_ms)
                )
            old = self.recent.pop(key, None)
            if old is not None:
                recent = Recent(
                    min(old.start, recent.start),
                    max(old.last, recent.last),
                    _sum(old.movements, recent.movements),
                    recent.device if recent.device is not None else old.device,
                )
            self.recent[key] = recent
        if len(self.recent) > MAX_RECENT_SESSIONS:
            self._trim_recent()
        for burst, rage in other.rage.items():
            if now_ms is not None and rage.timestamp > now_ms + CLOCK_SKEW_MS:
                rage = rage._replace(timestamp=now_ms)
            old_rage = self.rage.pop(burst, None)
            if old_rage is not None and (old_rage.clicks, old_rage.timestamp) > (
                rage.clicks,
                rage.timestamp,
            ):
                rage = old_rage
            self.rage[burst] = rage
        self._trim_rage()
        if now_ms is not None and newest > last_minute:
            # Only totals stored before buckets were held to the clock can be this far ahead.
            newest = last_minute
        if newest != self.newest:
            self.newest = newest
            self._expire()

    @staticmethod
    def _merge_hour(mine: _Hour, theirs: _Hour) -> None:
        _add(mine.pages, theirs.pages, MAX_PAGES)
        _add(mine.elements, theirs.elements, MAX_ELEMENTS)
        _add(mine.journeys, theirs.journeys, MAX_JOURNEYS)
        for path, cells in theirs.heat.items():
            into = mine.heat.get(path)
            if into is None:
                into = mine.heat[path] = {}
            before = len(into)
            _add(into, cells)
            mine.heat_cells += len(into) - before
        if mine.heat_cells > MAX_HEAT_CELLS:
            mine.prune_heat()
        mine.scroll = [_sum(a, b) for a, b in zip(mine.scroll, theirs.scroll, strict=True)]

    def forget_user(self, user_id: str) -> None:
        """Remove a user from the last hour's distinct counts, recent sessions, rage clicks
        and sequences (not from the all-time count: see `DistinctUsers`)."""
        uid = user_key(user_id)
        for minute in self.minutes.values():
            if minute.users is not None:
                minute.users.discard(uid)
        for key in [k for k in self.recent if k[0] == user_id]:
            del self.recent[key]
        for burst in [k for k, r in self.rage.items() if r.user_id == user_id]:
            del self.rage[burst]
        self.sequences.forget_user(user_id)

    def to_wire(self) -> dict[str, Any]:
        """The counters as msgpack-able plain types (sequences are not included)."""
        return {
            "newest": self.newest,
            "events": self.events,
            "sessions": self.sessions,
            "types": dict(self.types),
            "users": self.users.to_bytes(),
            "minutes": [
                [
                    start,
                    m.count,
                    dict(m.types),
                    None if m.users is None else list(m.users),
                    m.n_users,
                ]
                for start, m in self.minutes.items()
            ],
            "hours": [
                [
                    start,
                    dict(h.pages),
                    [[e, p, n] for (e, p), n in h.elements.items()],
                    [[a, b, n] for (a, b), n in h.journeys.items()],
                    {p: [v for item in cells.items() for v in item] for p, cells in h.heat.items()},
                    list(h.scroll),
                ]
                for start, h in self.hours.items()
            ],
            "recent": [[u, s, *r] for (u, s), r in self.recent.items()],
            "rage": [[key, *r] for key, r in self.rage.items()],
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> SiteStats:
        """The inverse of `to_wire`, with empty sequences; checked as `decode_wire` checks."""
        try:
            typed = msgspec.convert(wire, _Wire)
        except msgspec.ValidationError as exc:
            raise InvalidInput("analytics", str(exc)) from None
        return cls._from_typed(typed)

    @classmethod
    def decode_wire(cls, data: bytes) -> SiteStats:
        """`from_wire` of `to_wire`'s form encoded with msgpack, decoded in one typed pass.

        Raises `InvalidInput` for anything `merge` could not take whole: a value of the wrong
        type, a count beyond `MAX_COUNT` or below 0, a row too short, a bucket start not on a
        minute (hour), a scroll list of another length, a heatmap cell off the map.
        """
        try:
            typed = _wire_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidInput("analytics", str(exc)) from None
        return cls._from_typed(typed)

    @classmethod
    def _from_typed(cls, wire: _Wire) -> SiteStats:
        stats = cls()
        stats.events = wire.events
        stats.sessions = wire.sessions
        stats.types = wire.types
        if isinstance(wire.users, bytes):
            stats.users = DistinctUsers.from_bytes(wire.users)
        else:
            stats.users = DistinctUsers.from_hashes(wire.users)
        for row in wire.minutes:
            if row.start % MINUTE_MS:
                raise InvalidInput("analytics", f"minute bucket {row.start} is not on a minute")
            minute = stats.minutes[row.start] = _Minute()
            minute.count = row.count
            minute.types = row.types
            minute.users = None if row.users is None else set(row.users)
            minute.n_users = row.n_users
        for h in wire.hours:
            if h.start % HOUR_MS:
                raise InvalidInput("analytics", f"hour bucket {h.start} is not on an hour")
            hour = stats.hours[h.start] = _Hour()
            hour.pages = h.pages
            hour.elements = {(e, p): n for e, p, n in h.elements}
            hour.journeys = {(a, b): n for a, b, n in h.journeys}
            heat = hour.heat
            for path, flat in h.heat.items():
                if len(flat) % 2:
                    raise InvalidInput("analytics", f"hour {h.start}: heatmap of {path!r}")
                if flat:  # an empty page is never kept (`prune_heat` deletes them)
                    heat[path] = dict(zip(flat[::2], flat[1::2], strict=True))
            if heat and max(map(max, heat.values())) >= _HEAT_CELLS_PER_PAGE:
                raise InvalidInput("analytics", f"hour {h.start}: a heatmap cell off the map")
            hour.heat_cells = sum(map(len, heat.values()))
            hour.scroll = h.scroll
        # The newest minute is what expiry goes by; the wire's `newest` (older versions set
        # it from a host's clock, or a bad peer from anything) is not trusted.
        stats.newest = max(stats.minutes, default=0)
        stats.recent = {
            (r.user_id, r.session_id): Recent(r.start, r.last, r.movements, r.device)
            for r in wire.recent
        }
        stats.rage = {
            r.burst: RageClick(r.path, r.element, r.x, r.y, r.clicks, r.user_id, r.timestamp)
            for r in wire.rage
        }
        return stats

    # -- reporting ----------------------------------------------------------------------------

    def report(
        self,
        now_ms: int,
        *,
        from_ms: int | None = None,
        to_ms: int | None = None,
        path: str | None = None,
        top: int = 10,
    ) -> dict[str, Any]:
        """The cross-user analytics JSON (see the HTTP contract), at server time `now_ms`.

        `from_ms`/`to_ms` (inclusive) select the hour buckets overlapping the range for pages,
        elements, heatmap, scroll depth and journeys, the minute buckets for the event counts
        and the per-minute series, and rage clicks by time. `path` selects the heatmap's page
        (default: the most clicked one) and nothing else. `top` is the length of the top-N
        lists. Total sessions and users (all time), active users (the last 5 minutes) and
        recent activity (the 10 latest sessions) do not depend on the range.
        """
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise InvalidInput("from", f"{from_ms} is after to={to_ms}")
        if top < 0:
            raise InvalidInput("top", f"{top} is negative")
        lo = max(from_ms if from_ms is not None else 0, now_ms - KEEP_MINUTES * MINUTE_MS + 1)
        hi = to_ms if to_ms is not None else None
        hours = _overlapping(self.hours.items(), HOUR_MS, lo, hi)
        ranged = from_ms is not None or to_ms is not None

        if ranged:
            minutes = _overlapping(self.minutes.items(), MINUTE_MS, lo, hi)
            total_events = sum(m.count for m in minutes)
            types: dict[str, int] = {}
            for minute in minutes:
                _add(types, minute.types)
        else:
            total_events, types = self.events, self.types

        pages: dict[str, int] = {}
        elements: dict[tuple[str, str], int] = {}
        journeys: dict[tuple[str, str], int] = {}
        scroll = [0] * SCROLL_BUCKETS
        for hour in hours:
            _add(pages, hour.pages)
            _add(elements, hour.elements)
            _add(journeys, hour.journeys)
            scroll = [a + b for a, b in zip(scroll, hour.scroll, strict=True)]

        rage = sorted(
            (
                r
                for r in self.rage.items()
                if lo <= r[1].timestamp and (hi is None or r[1].timestamp <= hi)
            ),
            key=lambda kv: (-kv[1].timestamp, kv[0]),
        )
        recent = heapq.nsmallest(
            RECENT_ACTIVITY, self.recent.items(), key=lambda kv: (-kv[1].last, kv[0])
        )
        return {
            "totalSessions": self.sessions,
            "recentActivity": [_recent_dict(u, s, r) for (u, s), r in recent],
            "activeUsers": self._active_users(now_ms),
            "totalUsers": self.users.count(),
            "totalEvents": total_events,
            "eventsPerMinute": self._series(now_ms, from_ms, to_ms),
            "topPages": [{"path": p, "count": n} for p, n in _top(pages, top)],
            "topElements": [
                {"element": e, "path": p, "count": n} for (e, p), n in _top(elements, top)
            ],
            "heatmap": _heatmap(hours, path[:KEY_CHARS] if path is not None else None),
            "scrollDepth": [{"bucket": i * 10, "count": n} for i, n in enumerate(scroll)],
            "journeys": [{"from": a, "to": b, "count": n} for (a, b), n in _top(journeys, top)],
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
            ],
            "eventsByType": {event: types.get(event, 0) for event in EVENT_TYPES},
        }

    def _active_users(self, now_ms: int) -> int:
        active: set[int] = set()
        frozen = 0
        for start, minute in self.minutes.items():
            if now_ms - ACTIVE_WINDOW_MS < start + MINUTE_MS and start <= now_ms:
                if minute.users is None:
                    frozen += minute.n_users
                else:
                    active |= minute.users
        return len(active) + frozen

    def _series(self, now_ms: int, from_ms: int | None, to_ms: int | None) -> list[dict[str, int]]:
        """Events and distinct users per minute, oldest first, with empty minutes as zeros."""
        now_minute = now_ms - now_ms % MINUTE_MS
        end = now_minute if to_ms is None else min(now_minute, to_ms - to_ms % MINUTE_MS)
        if from_ms is None:
            start = end - (SERIES_MINUTES - 1) * MINUTE_MS
        else:
            start = from_ms - from_ms % MINUTE_MS
        start = max(start, now_minute - (KEEP_MINUTES - 1) * MINUTE_MS)
        series = []
        for t in range(start, end + 1, MINUTE_MS):
            minute = self.minutes.get(t)
            if minute is None:
                series.append({"t": t, "count": 0, "users": 0})
            else:
                series.append({"t": t, "count": minute.count, "users": minute.distinct_users()})
        return series


def _recent_dict(user_id: str, session_id: str, recent: Recent) -> dict[str, Any]:
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


def _overlapping(
    buckets: Iterable[tuple[int, Any]], width: int, lo: int, hi: int | None
) -> list[Any]:
    return [b for start, b in buckets if start + width > lo and (hi is None or start <= hi)]


def _heatmap(hours: list[_Hour], path: str | None) -> dict[str, Any]:
    if path is None:
        clicks: dict[str, int] = {}
        for hour in hours:
            for page, page_cells in hour.heat.items():
                clicks[page] = clicks.get(page, 0) + sum(page_cells.values())
        best = _top(clicks, 1)
        path = best[0][0] if best else None
    merged: dict[int, int] = {}
    if path is not None:
        for hour in hours:
            cells = hour.heat.get(path)
            if cells is not None:
                _add(merged, cells)
    return {
        "path": path,
        "binsX": HEAT_BINS_X,
        "binHeightPx": HEAT_BIN_PX,
        "cells": [
            {"x": cell % HEAT_BINS_X, "y": cell // HEAT_BINS_X, "count": n}
            for cell, n in sorted(merged.items())
        ],
    }
