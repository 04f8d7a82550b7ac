"""Behaviour predictions: both models' time-split evaluation on generated traffic with structure
planted in it (`bench.traffic`), each against its baseline; and what the online next-page
update costs ingest.

The ingest figure is a host (`UserHost`, in process, on fsynced files) taking batches of page
views, its listener keeping the query index as the host actor does, with and without the
next-page model's online update beside it. The two alternate in rounds in the same run, and
the medians are compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench import traffic
from bench.cluster import temp_storage
from bench.events import user_ids
from bench.report import Row
from tracker.conversions.definitions import Match
from tracker.host import HostSettings
from tracker.predictions.evaluate import ObservationsQuery, evaluate
from tracker.predictions.next_page import OnlineNextPage
from tracker.query.index import HistoryIndex
from tracker.schema import MAX_BATCH_EVENTS, Observed
from tracker.storage import open_storage
from tracker.user_host import UserHost

SIGNUP = Match("page_view", path=traffic.GOAL_PATH)
TIMEOUT_MS = 30 * 60_000
ROUNDS = 6


def _evaluation_rows(quick: bool) -> list[Row]:
    users = traffic.histories(2_000 if quick else 8_000, seed=11)
    started = time.perf_counter()
    result = evaluate(ObservationsQuery({"signup": SIGNUP}).run(users), TIMEOUT_MS)
    seconds = time.perf_counter() - started
    pages = result["nextPage"]
    (signup,) = result["propensity"]
    details = {"users": len(users), "evaluate_s": round(seconds, 2), "split_ms": result["splitMs"]}

    def row(name: str, value: float, baseline: str, base: float, higher: bool, **more: Any) -> Row:
        return Row(
            name=f"predictions: {name}",
            value=round(value, 4),
            unit="",
            baseline=baseline,
            baseline_value=round(base, 4),
            target="better than the baseline",
            met=value > base if higher else value < base,
            details={**details, **more},
        )

    return [
        row(
            "next page top-1 accuracy",
            pages["top1"],
            "most frequent next page",
            pages["baselineTop1"],
            True,
            transitions_tested=pages["test"],
        ),
        row(
            "next page top-3 accuracy",
            pages["top3"],
            "most frequent next pages",
            pages["baselineTop3"],
            True,
            transitions_tested=pages["test"],
        ),
        row(
            "propensity AUC",
            signup["auc"],
            "base rate",
            signup["baselineAuc"],
            True,
            sessions_tested=signup["test"],
        ),
        row(
            "propensity Brier score",
            signup["brier"],
            "base rate",
            signup["baselineBrier"],
            False,
            sessions_tested=signup["test"],
            reliability=signup["reliability"],
        ),
    ]


def _page_views(user: str, start: int, count: int) -> list[dict[str, Any]]:
    paths = traffic.PAGES
    return [
        {
            "userId": user,
            "sessionId": f"s-{user[:8]}",
            "timestamp": int(time.time() * 1000),
            "event": "page_view",
            "data": {"path": paths[(start + n) % len(paths)]},
            "eventId": f"{user[:8]}-{start + n}",
        }
        for n in range(count)
    ]


async def _ingest(storage_url: str, online: bool, users: list[str], batches: int) -> float:
    """Events/s of `batches` batches of page views, the listener with or without the update."""
    index = HistoryIndex()
    pages = OnlineNextPage()

    def listener(
        user_id: str, session_id: str, movements: Sequence[Observed], now_ms: int, known: bool
    ) -> None:
        index.track(user_id, session_id, movements, now_ms)
        if online:
            pages.stored(user_id, session_id, movements)

    host = UserHost("bench", open_storage(storage_url), HostSettings(), on_track=listener)
    await host.start()
    try:
        started = time.perf_counter()
        for b in range(batches):
            calls = [
                host.track_many(u, _page_views(u, b * MAX_BATCH_EVENTS, MAX_BATCH_EVENTS))
                for u in users
            ]
            await asyncio.gather(*calls)
        elapsed = time.perf_counter() - started
    finally:
        await host.stop()
    return batches * len(users) * MAX_BATCH_EVENTS / elapsed


def _ingest_row(quick: bool) -> Row:
    users = user_ids(8)
    batches = 4 if quick else 10
    with_update: list[float] = []
    without: list[float] = []
    for _ in range(ROUNDS):
        for online, into in ((False, without), (True, with_update)):
            with temp_storage() as storage:
                into.append(asyncio.run(_ingest(storage, online, users, batches)))
    value, base = statistics.median(with_update), statistics.median(without)
    return Row(
        name="predictions: batch ingest with the online next-page update",
        value=round(value),
        unit="events/s",
        baseline="without it, same run",
        baseline_value=round(base),
        target="at least 95% of the baseline",
        met=value >= 0.95 * base,
        details={
            "rounds": ROUNDS,
            "batch": MAX_BATCH_EVENTS,
            "with": [round(v) for v in with_update],
            "without": [round(v) for v in without],
        },
    )


def run(quick: bool) -> list[Row]:
    return [*_evaluation_rows(quick), _ingest_row(quick)]
