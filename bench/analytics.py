"""Analytics at ingest: what the derivations cost per session and per event, what an event
costs in the query index, and batch throughput with the index beside the host's own work.

In one process, without Ray: the per-session derivation (`derive_visit`: referrer host,
channel, user-agent parse, country lookup, bot check) against the validation of the session
request it comes with; the per-event work added (the schema's pass over custom events and
referrers, and the index's update) against the host's whole cost per event; and batches of
`track_many` into a `UserHost` whose commits feed the site analytics (as today) and the query
index, against the same host feeding the site analytics only, run alternately.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from bench.cluster import temp_storage
from bench.events import Movements, user_ids
from bench.report import Row
from tracker import schema
from tracker.analytics import SiteStats
from tracker.host import HostSettings
from tracker.query.index import HistoryIndex
from tracker.schema import Observed
from tracker.storage import open_storage
from tracker.user_host import UserHost
from tracker.visits import technology
from tracker.visits.derive import derive_visit

AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
]
ADDRESSES = ["81.2.69.160", "8.8.8.8", "2.16.6.1", "1.1.1.1"]
BATCH = 100


def _per_call_us(fn: Callable[[int], Any], count: int) -> float:
    started = time.perf_counter()
    for n in range(count):
        fn(n)
    return (time.perf_counter() - started) / count * 1e6


def _session_costs(count: int) -> dict[str, float]:
    bodies = [
        {
            "userId": f"u{n}",
            "sessionId": "s1",
            "deviceInfo": {"userAgent": AGENTS[n % 4]},
            "referrer": "https://www.google.com/search?q=x",
            "utm": {"utm_source": "newsletter", "utm_medium": "email"},
        }
        for n in range(count)
    ]

    def derive(n: int, agent: str | None = None) -> None:
        derive_visit(
            user_agent=agent or AGENTS[n % 4],
            referrer=bodies[n]["referrer"],
            utm=bodies[n]["utm"],
            address=ADDRESSES[n % 4],
            site_host="shop.example",
        )

    fresh = [f"{AGENTS[n % 4]} build/{n}" for n in range(count)]
    for n in range(len(AGENTS)):  # the parsers' first call compiles their rules
        derive(n)
    return {
        "validation_us": _per_call_us(lambda n: schema.session_request_from_obj(bodies[n]), count),
        "derivation_us": _per_call_us(derive, count),
        # A user agent the cache has not seen: one ua-parser and one crawler-list parse.
        "derivation_new_agent_us": _per_call_us(lambda n: derive(n, fresh[n]), count),
        "parse_cache_size": technology.technology.cache_info().maxsize or 0,
    }


def _batches(users: Sequence[str], per_user: int) -> list[tuple[str, list[dict[str, Any]]]]:
    make = Movements()
    return [(u, make.batch(u, BATCH)) for u in users for _ in range(per_user // BATCH)]


async def _throughput(indexed: bool, batches: list[tuple[str, list[dict[str, Any]]]]) -> float:
    """Events per second through `track_many` (validation, the commit, the listeners)."""
    with temp_storage() as url:
        stats = SiteStats()
        index = HistoryIndex()

        def observe(
            user: str, session: str, moved: Sequence[Observed], now: int, known: bool
        ) -> None:
            stats.observe_stored(user, session, moved, now, known=known)
            if indexed:
                index.track(user, session, moved, now)

        host = UserHost("bench", open_storage(url), HostSettings(), on_track=observe)
        await host.start()
        gc.collect()
        started = time.perf_counter()
        for user, batch in batches:
            await host.track_many(user, batch)
        elapsed = time.perf_counter() - started
        await host.stop()
    return sum(len(b) for _, b in batches) / elapsed


def _index_costs(batches: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, float]:
    now = time.time_ns() // 1_000_000
    checked = [(u, schema.movements_from_obj(b, now)) for u, b in batches]
    events = sum(len(m) for _, m in checked)
    timed = HistoryIndex()
    started = time.perf_counter()
    for user, movements in checked:
        timed.track(user, movements[0].sessionId, movements, now)
    elapsed = time.perf_counter() - started
    # Measured apart: tracing allocations slows them down.
    index = HistoryIndex()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for user, movements in checked:
        index.track(user, movements[0].sessionId, movements, now)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    started = time.perf_counter()
    for _user, batch in batches:
        schema.movements_from_obj(batch, now)
    validation = time.perf_counter() - started
    return {
        "index_us_per_event": elapsed / events * 1e6,
        "index_bytes_per_event": size / events,
        "validation_us_per_event": validation / events * 1e6,
        "events": events,
    }


def run(quick: bool) -> list[Row]:
    sessions = _session_costs(2_000 if quick else 20_000)
    batches = _batches(user_ids(50 if quick else 200), 500 if quick else 1_000)
    index = _index_costs(batches)
    rounds = 3 if quick else 5
    with_index: list[float] = []
    without: list[float] = []
    for _ in range(rounds):  # alternated, so that a noisy neighbour weighs on both
        without.append(asyncio.run(_throughput(False, batches)))
        with_index.append(asyncio.run(_throughput(True, batches)))
    best_with, best_without = max(with_index), max(without)
    per_event_us = 1e6 / best_without
    return [
        Row(
            name="analytics: derivations per session",
            value=sessions["derivation_us"],
            unit="µs",
            baseline="validating the session request",
            baseline_value=sessions["validation_us"],
            details=sessions,
        ),
        Row(
            name="analytics: derivations per session, a user agent not seen before",
            value=sessions["derivation_new_agent_us"],
            unit="µs",
            baseline="validating the session request",
            baseline_value=sessions["validation_us"],
            details=sessions,
        ),
        Row(
            name="analytics: query index per event",
            value=index["index_us_per_event"],
            unit="µs",
            baseline="the host's whole cost per event, without the index",
            baseline_value=per_event_us,
            details=index,
        ),
        Row(
            name="analytics: query index memory per event",
            value=index["index_bytes_per_event"],
            unit="B/event",
            details=index,
        ),
        Row(
            name="analytics: batch throughput with the query index",
            value=best_with,
            unit="events/s",
            baseline="the same host without the index, in the same run",
            baseline_value=best_without,
            target=">= 0.9x baseline",
            met=best_with >= 0.9 * best_without,
            details={"with_index": with_index, "without": without, "batch": BATCH},
        ),
    ]
