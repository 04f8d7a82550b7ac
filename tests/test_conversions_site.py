"""Goals, funnels, retention and experiments on a generated site (10,000 visitors, over 200,000
events), equal to an independent computation over the NDJSON export: with 3 hosts, then
after a restart with 1 host (the index rebuilt from storage), then after erasures.

The expected figures are computed here, apart from the tracker's code, from the export's
lines: a user's events are their movements in the order the export lists them (the order
received), and their exposures, stably sorted by timestamp.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray
from conftest import file_url
from support import now_ms, run

from tracker import responses as r
from tracker.conversions.definitions import experiment_from, funnel_from, goal_from
from tracker.conversions.query import TimeRange
from tracker.conversions.reports import Reports
from tracker.conversions.store import DefinitionStore
from tracker.storage import open_storage

pytestmark = pytest.mark.heavy

VISITORS = 10_000
BOTS = 150
DAY = 86_400_000
PATHS = ["/", "/pricing", "/app/cart", "/app/checkout", "/blog/a", "/blog/b", "/app/settings"]
ELEMENTS = ["button#buy", "a.nav", "button#hero"]
GOALS = {
    "app": {"event": "page_view", "path": "/app/*"},
    "signup": {"event": "custom", "name": "signup"},
    "buy-click": {"event": "click", "element": "button#buy"},
    "purchase": {"event": "custom", "name": "purchase"},
}
FUNNEL = {
    "steps": [
        {"event": "page_view", "path": "/"},
        {"event": "page_view", "path": "/app/cart"},
        {"event": "page_view", "path": "/app/checkout"},
        {"event": "custom", "name": "purchase"},
    ],
    "windowS": 1800,
}
Event = dict[str, Any]  # {"ts", "kind", "path", "element", "name", "variant"}


# -- the site ----------------------------------------------------------------------------------


def site(start: int, rng: random.Random) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each visitor's movements: 1-5 sessions on different days, each a walk over the pages
    with clicks and custom events, some at equal timestamps."""
    for n in range(VISITORS):
        user = f"v{n:05d}"
        movements: list[dict[str, Any]] = []
        for s in range(rng.randint(1, 5)):
            at = start + rng.randrange(24 * DAY)
            for _ in range(rng.randint(4, 11)):
                at += rng.choice([0, 0, 1, 1_000, 30_000, 400_000, 2_000_000])
                kind = rng.random()
                if kind < 0.55:
                    data: dict[str, Any] = {"path": rng.choice(PATHS)}
                    movement = {"event": "page_view", "data": data}
                elif kind < 0.8:
                    movement = {
                        "event": "click",
                        "data": {"path": "/", "element": rng.choice(ELEMENTS)},
                    }
                else:
                    name = rng.choice(["signup", "purchase", "share"])
                    movement = {"event": "custom", "data": {"path": "/", "name": name}}
                movements.append(
                    {"userId": user, "sessionId": f"s{s}", "timestamp": at, **movement}
                )
        yield user, movements


def feed(tracker: Any, items: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for start in range(0, len(items), 2000):
        results = tracker.track_batch(items[start : start + 2000])
        assert all(isinstance(x, int) for x in results), [
            x for x in results if not isinstance(x, int)
        ][:1]


# -- the independent computation over the export -----------------------------------------------


def histories(lines_by_user: dict[str, list[dict[str, Any]]]) -> dict[str, list[Event]]:
    """Each human user's events in order (bots, with any session flagged, left out)."""
    out: dict[str, list[Event]] = {}
    for user, lines in lines_by_user.items():
        if any(line.get("visit", {}).get("bot") for line in lines if line["type"] == "session"):
            continue
        events: list[Event] = []
        for line in lines:
            if line["type"] == "movement":
                data = line.get("data", {})
                events.append(
                    {
                        "ts": line["timestamp"],
                        "kind": line["event"],
                        "path": data.get("path"),
                        "element": data.get("element"),
                        "name": data.get("name"),
                    }
                )
            elif line["type"] == "exposure":
                events.append(
                    {
                        "ts": line["receivedAt"],
                        "kind": "exposure",
                        "name": line["experiment"],
                        "variant": line["variant"],
                    }
                )
        events.sort(key=lambda e: e["ts"])  # stable: equal timestamps keep the order received
        if events:
            out[user] = events
    return out


def matcher(match: dict[str, str]) -> Callable[[Event], bool]:
    def matches(e: Event) -> bool:
        if e["kind"] != match["event"]:
            return False
        if match["event"] == "page_view":
            path = match["path"]
            if path.endswith("*"):
                return bool(e["path"]) and e["path"].startswith(path[:-1])
            return bool(e["path"] == path)
        if match["event"] == "custom":
            return bool(e["name"] == match["name"])
        return bool(e["element"] == match["element"])

    return matches


def expected_goals(users: dict[str, list[Event]], lo: int, hi: int) -> dict[str, Any]:
    inside = {u: [e for e in es if lo <= e["ts"] <= hi] for u, es in users.items()}
    inside = {u: es for u, es in inside.items() if es}
    goals = {}
    for name, match in GOALS.items():
        m = matcher(match)
        hits = {u: sum(1 for e in es if m(e)) for u, es in inside.items()}
        goals[name] = (sum(1 for n in hits.values() if n), sum(hits.values()))
    return {"visitors": len(inside), "goals": goals}


def expected_funnel(users: dict[str, list[Event]], lo: int, hi: int) -> tuple[list[int], list[Any]]:
    steps = [matcher(m) for m in FUNNEL["steps"]]
    window = FUNNEL["windowS"] * 1000
    reached = [0] * len(steps)
    gaps: list[list[int]] = [[] for _ in steps[1:]]
    for events in users.values():
        best: dict[int, int] = {}  # step -> gap, from the earliest attempt reaching it
        for i, first in enumerate(events):
            if not (lo <= first["ts"] <= hi and steps[0](first)):
                continue
            times, j = [first["ts"]], i
            for step in steps[1:]:
                j = next(
                    (
                        k
                        for k in range(j + 1, len(events))
                        if events[k]["ts"] <= first["ts"] + window and step(events[k])
                    ),
                    None,
                )
                if j is None:
                    break
                times.append(events[j]["ts"])
            for k in range(len(times)):
                best.setdefault(k, times[k] - times[k - 1] if k else 0)
        for k, gap in best.items():
            reached[k] += 1
            if k:
                gaps[k - 1].append(gap)
    return reached, [statistics.median(g) if g else None for g in gaps]


def expected_retention(users: dict[str, list[Event]], lo: int, hi: int, week: bool) -> list[Any]:
    def period(ts: int) -> int:
        return (ts + 3 * DAY) // (7 * DAY) if week else ts // DAY

    cohorts: dict[int, list[int]] = {}
    sizes: dict[int, int] = defaultdict(int)
    last = period(hi)
    for events in users.values():
        first = events[0]["ts"]
        if not lo <= first <= hi:
            continue
        p = period(first)
        sizes[p] += 1
        row = cohorts.setdefault(p, [0] * (last - p))
        for offset in {period(e["ts"]) - p for e in events}:
            if 1 <= offset <= last - p:
                row[offset - 1] += 1
    return [(sizes[p], cohorts[p]) for p in sorted(cohorts)]


def expected_experiment(users: dict[str, list[Event]]) -> dict[str, tuple[int, int]]:
    bought = matcher(GOALS["purchase"])
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for events in users.values():
        i = next((i for i, e in enumerate(events) if e["kind"] == "exposure"), None)
        if i is None:
            continue
        counts = out[events[i]["variant"]]
        counts[0] += 1
        counts[1] += any(bought(e) for e in events[i + 1 :])
    return {v: (n, c) for v, (n, c) in out.items()}


# -- the test ----------------------------------------------------------------------------------


def figures(tracker: Any, storage_url: str, lo: int, hi: int) -> dict[str, Any]:
    reports = Reports(DefinitionStore(open_storage(storage_url)), tracker.query)
    when = TimeRange.checked(lo, hi)

    async def all_of() -> dict[str, Any]:
        goals: r.Goals = await reports.goals(when)
        funnel: r.FunnelReport = await reports.funnel("checkout", when)
        day: r.Retention = await reports.retention(when, "day")
        week: r.Retention = await reports.retention(when, "week")
        experiment: r.ExperimentReport = await reports.experiment("hero")
        return {
            "goals": {
                "visitors": goals.visitors,
                "goals": {g.name: (g.visitors, g.conversions) for g in goals.goals},
            },
            "funnel": (
                [s.visitors for s in funnel.steps],
                [s.medianMsFromPrevious for s in funnel.steps[1:]],
            ),
            "day": [(c.size, c.returning) for c in day.cohorts],
            "week": [(c.size, c.returning) for c in week.cohorts],
            "experiment": {
                v.name: (v.exposed, v.converted) for v in experiment.variants if v.exposed
            },
        }

    return run(all_of())


def exported(tracker: Any, users: list[str]) -> dict[str, list[dict[str, Any]]]:
    return dict(zip(users, ray.get([tracker.user(u).export.remote() for u in users]), strict=True))


def expected(exports: dict[str, list[dict[str, Any]]], lo: int, hi: int) -> dict[str, Any]:
    by_user = histories(exports)
    return {
        "goals": expected_goals(by_user, lo, hi),
        "funnel": expected_funnel(by_user, lo, hi),
        "day": expected_retention(by_user, lo, hi, week=False),
        "week": expected_retention(by_user, lo, hi, week=True),
        "experiment": expected_experiment(by_user),
    }


def test_figures_equal_an_independent_computation_with_3_hosts_after_a_restart_and_erasures(
    make_tracker: Callable[..., Any], tmp_path: Any
) -> None:
    from tracker.api import shutdown

    rng = random.Random(22)
    storage = file_url(tmp_path / "data")
    start = now_ms() - 25 * DAY
    tracker = make_tracker(storage=storage, hosts=3)
    store = DefinitionStore(open_storage(storage))

    async def define() -> None:
        for name, match in GOALS.items():
            await store.put_goal(name, goal_from({"match": match}))
        await store.put_funnel("checkout", funnel_from(FUNNEL))
        body = {"variants": {"control": 1, "new": 2}, "goal": "purchase"}
        await store.put_experiment("hero", experiment_from(body, set(GOALS)))

    run(define())
    items = list(site(start, rng))
    assert sum(len(m) for _, m in items) >= 200_000
    feed(tracker, items)
    users = [u for u, _ in items]
    bots = rng.sample(users, BOTS)
    crawler = {
        "userAgent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    }
    ray.get([tracker.user(u).create_session.remote("s0", crawler) for u in bots])
    exposed = rng.sample(users, 3000)
    ray.get([tracker.user(u).variant.remote("hero") for u in exposed])
    after = now_ms() + 1_000
    buyers = [
        (
            u,
            [
                {
                    "userId": u,
                    "sessionId": "s0",
                    "timestamp": after + i % 500,
                    "event": "custom",
                    "data": {"path": "/", "name": "purchase"},
                }
            ],
        )
        for i, u in enumerate(exposed[::3])
    ]
    feed(tracker, buyers)
    lo, hi = start, now_ms() + 60_000

    exports = exported(tracker, users)
    want = expected(exports, lo, hi)
    assert want["funnel"][0][3] > 0 and len(want["experiment"]) == 2
    assert figures(tracker, storage, lo, hi) == want

    shutdown(tracker.config)
    again = make_tracker(storage=storage, hosts=1)
    assert figures(again, storage, lo, hi) == want

    erased = exposed[:20] + bots[:5] + rng.sample(users, 30)
    ray.get([again.user(u).erase.remote() for u in erased])
    assert all(lines == [] for lines in exported(again, erased).values())
    after_erasure = expected({u: ls for u, ls in exports.items() if u not in set(erased)}, lo, hi)
    assert after_erasure != want
    assert figures(again, storage, lo, hi) == after_erasure
