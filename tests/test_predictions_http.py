"""The predictions routes through Ray Serve: the next page counted from what visitors viewed,
live sessions ranked for a goal, the evaluation, bad input named, the admin only; and erasure
reaching the training data before the next model."""

from __future__ import annotations

from typing import Any

import httpx
from support import now_ms, wait_for
from test_conversions_http import unique, visitor
from test_http import admin, assert_error, new_user

__all__ = ["admin", "visitor"]  # the fixtures, imported for pytest
HOUR_MS = 3_600_000


def pages(client: httpx.Client, user: str, paths: list[str], start_ms: int) -> None:
    """A session of `user` viewing `paths`, ten seconds apart from `start_ms`."""
    assert client.post("/api/track/session", json={"userId": user, "sessionId": "s1"}).is_success
    body = [
        {
            "userId": user,
            "sessionId": "s1",
            "timestamp": start_ms + 10_000 * i,
            "event": "page_view",
            "data": {"path": path},
        }
        for i, path in enumerate(paths)
    ]
    response = client.post("/api/track", json=body)
    assert response.status_code == 200, response.text


def test_predictions_are_the_admins(visitor: httpx.Client) -> None:
    assert visitor.get("/api/predictions/next").status_code == 401
    assert visitor.get("/api/predictions/sessions", params={"goal": "x"}).status_code == 401
    assert visitor.get("/api/predictions/evaluation").status_code == 401
    assert visitor.post("/api/predictions/train").status_code == 401


def test_bad_parameters_are_refused_with_the_field_named(admin: httpx.Client) -> None:
    assert_error(admin.get("/api/predictions/next", params={"path": "cart"}), 422, "path")
    assert_error(
        admin.get("/api/predictions/next", params={"path": "/a", "previous": "x"}), 422, "previous"
    )
    assert_error(admin.get("/api/predictions/sessions"), 422, "goal")
    assert_error(admin.get("/api/predictions/sessions", params={"goal": "a b"}), 422, "goal")
    assert_error(
        admin.get("/api/predictions/sessions", params={"goal": "g", "limit": "0"}), 422, "limit"
    )
    assert_error(admin.get("/api/predictions/sessions", params={"goal": unique("none")}), 404)


def test_the_next_page_is_what_visitors_viewed_next(
    admin: httpx.Client, visitor: httpx.Client
) -> None:
    site = f"/{unique('site')}"
    start = now_ms() - 60_000
    for n in range(4):
        last = f"{site}/cart" if n < 3 else f"{site}/help"
        pages(visitor, new_user(), [f"{site}/home", f"{site}/product", last], start)

    def predicted() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = admin.get(
            "/api/predictions/next", params={"path": f"{site}/product"}
        ).json()
        return found if found and found[0]["path"] == f"{site}/cart" else None

    found = wait_for(predicted, message="the next page counted")
    assert [(p["path"], p["probability"]) for p in found] == [
        (f"{site}/cart", 0.75),
        (f"{site}/help", 0.25),
    ]
    summary = admin.get("/api/predictions/next").json()
    assert summary["transitions"] >= 8 and summary["pairs"] >= 1
    assert summary["trainedThroughMs"] >= start


def test_live_sessions_are_ranked_and_an_erased_user_leaves_the_training_data(
    admin: httpx.Client, visitor: httpx.Client
) -> None:
    goal, site = unique("signup"), f"/{unique('shop')}"
    signup = {"match": {"event": "page_view", "path": f"{site}/signup"}}
    assert admin.put(f"/api/goals/{goal}", json=signup).status_code == 200
    ended = now_ms() - 3 * HOUR_MS
    users = []
    for n in range(24):
        user = new_user()
        users.append(user)
        path = [f"{site}/", f"{site}/pricing" if n % 2 else f"{site}/blog"]
        pages(visitor, user, path + ([f"{site}/signup"] if n % 2 else []), ended + n * 1000)
    live = new_user()
    pages(visitor, live, [f"{site}/", f"{site}/pricing"], now_ms() - 30_000)

    trained = admin.post("/api/predictions/train", params={"goal": goal}).json()["models"]
    assert [m["goal"] for m in trained] == [goal]
    before = trained[0]["users"]
    assert before >= 24 and trained[0]["learned"]

    ranked = admin.get("/api/predictions/sessions", params={"goal": goal}).json()
    assert ranked["goal"] == goal and ranked["live"] >= 1
    mine = [s for s in ranked["sessions"] if s["userId"] == live]
    assert mine and 0 < mine[0]["probability"] < 1 and mine[0]["entry"] == f"{site}/"
    probabilities = [s["probability"] for s in ranked["sessions"]]
    assert probabilities == sorted(probabilities, reverse=True)

    assert admin.delete(f"/api/users/{users[0]}").status_code == 200
    again = admin.post("/api/predictions/train", params={"goal": goal}).json()["models"]
    assert again[0]["users"] == before - 1


def test_the_evaluation_reports_both_models_against_their_baselines(admin: httpx.Client) -> None:
    found = admin.get("/api/predictions/evaluation").json()
    assert set(found["nextPage"]) >= {"top1", "top3", "baselineTop1", "baselineTop3", "test"}
    for goal in found["propensity"]:
        assert goal["baselineAuc"] == 0.5
        assert sum(row["sessions"] for row in goal["reliability"]) == goal["test"]
