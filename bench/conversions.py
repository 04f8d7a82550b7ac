"""Conversions over 100,000 visitors and 1,000,000 events on 2 hosts: a 4-step funnel and a
weekly retention, each timed through `Tracker.query` (every host runs the query over its users'
histories, and the partials merge) beside DuckDB running the same query over the same events
exported to Parquet, in the same run. The ratio is the tracker's time over DuckDB's.

The events are fed through `Tracker.track_batch`; DuckDB reads them from the driver's copy
(each user's in the order sent, with that order as `seq`, as the hosts order equal
timestamps). The two answers are compared too, so a fast wrong answer does not count.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench.cluster import bench_config, ray_session, temp_storage
from bench.report import Row
from tracker.api import connect, shutdown
from tracker.clock import wall_clock_ms
from tracker.conversions.definitions import funnel_from
from tracker.conversions.funnels import FunnelQuery
from tracker.conversions.query import DAY_MS, TimeRange
from tracker.conversions.retention import RetentionQuery, period_of

TARGET_S = 5.0
PATHS = ["/", "/pricing", "/app/cart", "/app/checkout", "/blog", "/docs"]
FUNNEL = {
    "steps": [
        {"event": "page_view", "path": "/"},
        {"event": "page_view", "path": "/pricing"},
        {"event": "page_view", "path": "/app/cart"},
        {"event": "custom", "name": "purchase"},
    ],
    "windowS": 3600,
}
BATCH_USERS = 2_000


def _site(visitors: int, per_visitor: int, start: int, rng: random.Random) -> list[Any]:
    """Each visitor's events (a few visits on different days), and the rows DuckDB reads."""
    items: list[tuple[str, list[dict[str, Any]]]] = []
    for n in range(visitors):
        user = f"u{n:06d}"
        movements = []
        at = start + rng.randrange(26 * DAY_MS)
        for i in range(per_visitor):
            if i and rng.random() < 0.2:
                at = min(at + rng.randrange(7 * DAY_MS), start + 27 * DAY_MS)
            at += rng.choice([0, 1_000, 20_000, 300_000])
            if rng.random() < 0.15:
                movement = {"event": "custom", "data": {"path": "/", "name": "purchase"}}
            else:
                movement = {"event": "page_view", "data": {"path": rng.choice(PATHS)}}
            movements.append(
                {"userId": user, "sessionId": f"s{at // DAY_MS}", "timestamp": at, **movement}
            )
        items.append((user, movements))
    return items


def _parquet(items: list[Any], path: Path) -> None:
    columns: dict[str, list[Any]] = {
        k: [] for k in ("user_id", "seq", "ts", "kind", "path", "name")
    }
    for user, movements in items:
        for seq, m in enumerate(movements):
            columns["user_id"].append(user)
            columns["seq"].append(seq)
            columns["ts"].append(m["timestamp"])
            columns["kind"].append(m["event"])
            columns["path"].append(m["data"].get("path"))
            columns["name"].append(m["data"].get("name"))
    pq.write_table(pa.table(columns), path)


def _step_sql(match: dict[str, str]) -> str:
    if match["event"] == "page_view":
        return f"e.kind = 'page_view' AND e.path = '{match['path']}'"
    return f"e.kind = 'custom' AND e.name = '{match['name']}'"


def _duckdb_funnel(con: Any, lo: int, hi: int) -> list[int]:
    steps = FUNNEL["steps"]
    window = int(FUNNEL["windowS"]) * 1000
    parts = [
        f"s1 AS (SELECT user_id, ts AS t0, ts * 1000000 + seq AS k FROM ev e "
        f"WHERE {_step_sql(steps[0])} AND ts BETWEEN {lo} AND {hi})"
    ]
    for k, step in enumerate(steps[1:], start=2):
        parts.append(
            f"s{k} AS (SELECT p.user_id, p.t0, p.k AS k0, min(e.ts * 1000000 + e.seq) AS k "
            f"FROM s{k - 1} p JOIN ev e ON e.user_id = p.user_id AND {_step_sql(step)} "
            f"AND e.ts * 1000000 + e.seq > p.k AND e.ts <= p.t0 + {window} GROUP BY ALL)"
        )
    counts = ", ".join(
        f"(SELECT count(DISTINCT user_id) FROM s{k})" for k in range(1, len(steps) + 1)
    )
    row = con.execute(f"WITH {', '.join(parts)} SELECT {counts}").fetchone()
    return list(row)


def _duckdb_retention(con: Any, lo: int, hi: int) -> list[tuple[int, list[int]]]:
    week, shift = 7 * DAY_MS, 3 * DAY_MS
    last = period_of(hi, "week")
    rows = con.execute(
        f"""
        WITH f AS (SELECT user_id, min(ts) AS first FROM ev GROUP BY user_id),
        c AS (SELECT user_id, (first + {shift}) // {week} AS cw FROM f
              WHERE first BETWEEN {lo} AND {hi}),
        a AS (SELECT DISTINCT user_id, (ts + {shift}) // {week} AS w FROM ev)
        SELECT c.cw, a.w - c.cw AS off, count(*) FROM c JOIN a USING (user_id)
        WHERE a.w BETWEEN c.cw AND {last} GROUP BY ALL ORDER BY 1, 2
        """
    ).fetchall()
    cohorts: dict[int, list[int]] = {}
    sizes: dict[int, int] = {}
    for cw, off, n in rows:
        if off == 0:
            sizes[cw] = n
        else:
            cohorts.setdefault(cw, [0] * (last - cw))[off - 1] = n
    return [(sizes[cw], cohorts.get(cw, [0] * (last - cw))) for cw in sorted(sizes)]


def _timed(call: Any, rounds: int) -> tuple[float, Any]:
    """The median time of `rounds` calls, and the last answer."""
    times, answer = [], None
    for _ in range(rounds):
        began = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), answer


def run(quick: bool) -> list[Row]:
    visitors = 10_000 if quick else 100_000
    per_visitor = 10
    rounds = 1 if quick else 3
    rng = random.Random(7)
    start = wall_clock_ms() - 28 * DAY_MS
    items = _site(visitors, per_visitor, start, rng)
    events = sum(len(m) for _, m in items)
    with ray_session(), temp_storage() as storage, tempfile.TemporaryDirectory() as tmp:
        config = bench_config(storage, hosts=2)
        tracker = connect(config=config)
        began = time.perf_counter()
        for i in range(0, len(items), BATCH_USERS):
            results = tracker.track_batch(items[i : i + BATCH_USERS])
            failed = [r for r in results if not isinstance(r, int)]
            if failed:
                raise RuntimeError(f"the load failed: {failed[0]!r}")
        load_s = time.perf_counter() - began
        parquet = Path(tmp) / "events.parquet"
        _parquet(items, parquet)
        con = duckdb.connect()
        con.execute(f"CREATE VIEW ev AS SELECT * FROM read_parquet('{parquet}')")
        lo, hi = start, wall_clock_ms()
        when = TimeRange.checked(lo, hi)
        funnel = FunnelQuery(funnel_from(FUNNEL), when)
        retention = RetentionQuery(when, "week")
        funnel_s, ours_funnel = _timed(lambda: asyncio.run(tracker.query(funnel)), rounds)
        duck_funnel_s, duck_funnel = _timed(lambda: _duckdb_funnel(con, lo, hi), rounds)
        retention_s, ours_retention = _timed(lambda: asyncio.run(tracker.query(retention)), rounds)
        duck_retention_s, duck_retention = _timed(lambda: _duckdb_retention(con, lo, hi), rounds)
        shutdown(config)
    cohorts = [(c.size, c.returning) for c in ours_retention.cohorts.values()]
    common = {"visitors": visitors, "events": events, "hosts": 2, "load_s": round(load_s, 1)}
    return [
        Row(
            name="conversions: 4-step funnel, tracker (2 hosts) vs DuckDB over Parquet",
            value=round(funnel_s, 3),
            unit="s",
            baseline="DuckDB, same events in Parquet",
            baseline_value=round(duck_funnel_s, 3),
            target=f"< {TARGET_S:g} s",
            met=funnel_s < TARGET_S and ours_funnel.visitors == duck_funnel,
            details={
                **common,
                "steps": ours_funnel.visitors,
                "duckdb_steps": duck_funnel,
                "equal": ours_funnel.visitors == duck_funnel,
            },
        ),
        Row(
            name="conversions: weekly retention, tracker (2 hosts) vs DuckDB over Parquet",
            value=round(retention_s, 3),
            unit="s",
            baseline="DuckDB, same events in Parquet",
            baseline_value=round(duck_retention_s, 3),
            target=f"< {TARGET_S:g} s",
            met=retention_s < TARGET_S and cohorts == duck_retention,
            details={**common, "cohorts": len(cohorts), "equal": cohorts == duck_retention},
        ),
    ]
