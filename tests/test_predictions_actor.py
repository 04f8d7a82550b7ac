"""The predictions actor on a real cluster: it trains and evaluates on its own every
`TRACKER_PREDICTIONS_TRAIN_EVERY_S`, and in the per-user placement it counts the next pages from
storage."""

from __future__ import annotations

from typing import Any

import ray
from support import movement, now_ms, wait_for

from tracker.prediction_actor import predictions_actor


def views(t: Any, user_id: str, paths: list[str]) -> None:
    user = t.user(user_id)
    ray.get(user.create_session.remote("s1", None))
    start = now_ms() - 60_000
    batch = [
        movement(user_id, event="page_view", at=start + i, data={"path": p}) | {"eventId": f"e{i}"}
        for i, p in enumerate(paths)
    ]
    assert ray.get(user.track_many.remote(batch)) == len(paths)


def test_the_models_are_trained_and_evaluated_every_period(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage, predictions_train_every_s=1.0)
    views(t, "ann", ["/a", "/b", "/c"])
    actor = predictions_actor(t.config)
    # Asking starts the actor, and its period; nothing was evaluated when it answered.
    assert ray.get(actor.summary.remote())["transitions"] == 2

    def evaluated() -> dict[str, Any] | None:
        found: dict[str, Any] | None = ray.get(actor.summary.remote())["evaluation"]
        return found

    evaluation = wait_for(evaluated, timeout_s=120, interval_s=0.5, message="a periodic run")
    assert evaluation["train"] + evaluation["test"] == 2


def test_in_the_per_user_placement_the_next_page_is_counted_from_storage(
    make_tracker: Any, file_storage: str
) -> None:
    # Storage holds a user's records once their actor compacts: soon, here.
    t = make_tracker(storage=file_storage, placement="per-user", compact_interval_s=0.5)
    views(t, "bob", ["/home", "/cart"] * 3)
    actor = predictions_actor(t.config)

    def predicted() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = ray.get(actor.next_pages.remote("/home", None))
        return found if found and found[0]["path"] == "/cart" else None

    assert wait_for(predicted, timeout_s=60, interval_s=1, message="the next page")[0] == {
        "path": "/cart",
        "probability": 1.0,
    }
