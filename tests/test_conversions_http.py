"""The conversions routes through Ray Serve: definitions made, read and refused with the field
named; goals, funnels, retention and experiments computed from what visitors sent; a user's
variant for its visitor or the admin only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import now_ms
from test_http import admin, assert_error, new_user

from tracker.config import Config

__all__ = ["admin"]  # the fixture, imported for pytest
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36"
)
DAY_MS = 86_400_000


@pytest.fixture
def visitor(serve_tracker: str) -> Iterator[httpx.Client]:
    """A visitor's browser (not a bot): its own cookie jar, a browser's user agent."""
    with httpx.Client(base_url=serve_tracker, timeout=30, headers={"User-Agent": BROWSER}) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def visit(client: httpx.Client, user: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """A session of `user` with these (event, data) movements, a millisecond apart."""
    session = client.post("/api/track/session", json={"userId": user, "sessionId": "s1"})
    assert session.status_code == 200, session.text
    start = now_ms() - len(events)
    body = [
        {"userId": user, "sessionId": "s1", "timestamp": start + i, "event": e, "data": d}
        for i, (e, d) in enumerate(events)
    ]
    assert client.post("/api/track", json=body).status_code == 200


def test_definitions_are_refused_with_the_field_named(admin: httpx.Client) -> None:
    goal = unique("g")
    assert admin.put(
        f"/api/goals/{goal}", json={"match": {"event": "custom", "name": "x"}}
    ).json() == {"success": True}
    one_step = {"steps": [{"event": "page_view", "path": "/a"}]}
    assert_error(admin.put(f"/api/funnels/{unique('f')}", json=one_step), 422, "steps")
    eleven = {"steps": [{"event": "page_view", "path": f"/{i}"} for i in range(11)]}
    assert_error(admin.put(f"/api/funnels/{unique('f')}", json=eleven), 422, "steps")
    zero = {"variants": {"control": 0, "new": 0}, "goal": goal}
    assert_error(admin.put(f"/api/experiments/{unique('e')}", json=zero), 422, "variants")
    unknown = {"variants": {"control": 1}, "goal": unique("missing")}
    assert_error(admin.put(f"/api/experiments/{unique('e')}", json=unknown), 422, "goal")
    assert_error(
        admin.put("/api/goals/bad.name", json={"match": {"event": "custom", "name": "x"}}),
        422,
        "name",
    )
    assert_error(admin.get("/api/goals", params={"from": 0, "to": 367 * DAY_MS}), 422, "to")
    assert_error(admin.get("/api/retention", params={"period": "month"}), 422, "period")
    assert_error(admin.get(f"/api/funnels/{unique('f')}"), 404)
    assert_error(admin.delete(f"/api/goals/{unique('g')}"), 404)
    assert admin.delete(f"/api/goals/{goal}").status_code == 200


def test_conversions_routes_are_the_admins(visitor: httpx.Client) -> None:
    assert visitor.get("/api/goals").status_code == 401
    assert (
        visitor.put("/api/goals/x", json={"match": {"event": "custom", "name": "x"}}).status_code
        == 401
    )
    assert visitor.get("/api/retention").status_code == 401


def test_goals_and_a_funnel_count_what_visitors_did(
    admin: httpx.Client, serve_tracker: str
) -> None:
    tag = unique("p")
    cart, paid = f"/{tag}/cart", f"/{tag}/paid"
    assert (
        admin.put(
            f"/api/goals/{tag}", json={"match": {"event": "page_view", "path": f"/{tag}/*"}}
        ).status_code
        == 200
    )
    funnel = {"steps": [{"event": "page_view", "path": cart}, {"event": "page_view", "path": paid}]}
    assert admin.put(f"/api/funnels/{tag}", json=funnel).status_code == 200
    for steps in ([cart, paid], [cart], [paid, cart]):
        with httpx.Client(base_url=serve_tracker, timeout=30, headers={"User-Agent": BROWSER}) as c:
            visit(c, new_user(), [("page_view", {"path": p}) for p in steps])
    goals = admin.get("/api/goals").json()
    mine = next(g for g in goals["goals"] if g["name"] == tag)
    assert (mine["visitors"], mine["conversions"]) == (3, 5)
    assert mine["conversionRate"] == pytest.approx(3 / goals["visitors"])
    report = admin.get(f"/api/funnels/{tag}").json()
    assert [s["visitors"] for s in report["steps"]] == [3, 1]
    assert report["steps"][1]["conversion"] == pytest.approx(1 / 3)
    assert report["steps"][1]["dropoff"] == pytest.approx(2 / 3)
    assert report["steps"][1]["medianMsFromPrevious"] == 1.0
    retention = admin.get("/api/retention", params={"period": "day"}).json()
    assert retention["period"] == "day" and retention["cohorts"][-1]["size"] >= 3


def test_an_experiment_assigns_its_visitor_records_exposures_and_reports_results(
    admin: httpx.Client, serve_tracker: str, serve_config: Config
) -> None:
    name, goal = unique("e"), unique("buy")
    admin.put(f"/api/goals/{goal}", json={"match": {"event": "custom", "name": goal}})
    put = admin.put(
        f"/api/experiments/{name}", json={"variants": {"control": 1, "new": 1}, "goal": goal}
    )
    assert put.status_code == 200, put.text
    chosen: dict[str, str] = {}
    for i in range(6):
        with httpx.Client(base_url=serve_tracker, timeout=30, headers={"User-Agent": BROWSER}) as c:
            user = new_user()
            visit(c, user, [("page_view", {"path": "/"})])
            answer = c.get(f"/api/experiments/{name}/variant", params={"userId": user})
            assert answer.status_code == 200, answer.text
            chosen[user] = answer.json()["variant"]
            assert (
                c.get(f"/api/experiments/{name}/variant", params={"userId": user}).json()
                == answer.json()
            )
            if i % 2:
                body = {
                    "userId": user,
                    "sessionId": "s1",
                    "timestamp": now_ms() + 1000,
                    "event": "custom",
                    "data": {"name": goal},
                }
                assert c.post("/api/track", json=body).status_code == 200
    some = next(iter(chosen))
    with httpx.Client(base_url=serve_tracker, timeout=30) as stranger:
        denied = stranger.get(f"/api/experiments/{name}/variant", params={"userId": some})
        assert denied.status_code == 403
    admins = admin.get(f"/api/experiments/{name}/variant", params={"userId": some})
    assert admins.json() == {"variant": chosen[some]}
    report = admin.get(f"/api/experiments/{name}").json()
    exposed = {v["name"]: v["exposed"] for v in report["variants"]}
    assert exposed == {v: list(chosen.values()).count(v) for v in ("control", "new")}
    assert sum(v["converted"] for v in report["variants"]) == 3
    assert report["control"] == "control" and report["sampleRatioMismatch"] is False
    export = admin.get(f"/api/users/{some}/export").text
    assert f'"experiment":"{name}"' in export
    assert admin.post(f"/api/experiments/{name}/stop").status_code == 200
    assert admin.get(f"/api/experiments/{name}/variant", params={"userId": some}).json() == {
        "variant": "control"
    }
    listed = admin.get("/api/conversions").json()
    assert listed["experiments"][name]["stopped"] is True
