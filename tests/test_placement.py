"""The per-user placement on the real Ray cluster: invented user IDs cannot start processes
without limit. Past `TRACKER_MAX_USER_ACTORS` live per-user actors a new user's call is refused
(HTTP 503 with Retry-After) and starts nothing; once an idle actor has exited, one more fits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import ray
from support import wait_for

from tracker.dispatch import Dispatcher
from tracker.errors import TooManyUserActors
from tracker.ingress import error_response
from tracker.placement import USER_ACTORS_NAME, host_name, is_user_actor


def user_actors(namespace: str) -> set[str]:
    return {
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == namespace and is_user_actor(entry["name"])
    }


def test_past_the_bound_a_new_users_call_is_refused_and_starts_no_actor(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage, placement="per-user", max_user_actors=2)
    namespace = t.config.namespace
    for user in ("u0", "u1"):
        ray.get(t.user(user).create_session.remote("s1", None))
    assert len(user_actors(namespace)) == 2

    # The Python handles' path (through the router) and the HTTP replica's (a dispatcher).
    with pytest.raises(TooManyUserActors):
        ray.get(t.user("u2").create_session.remote("s1", None))
    with pytest.raises(TooManyUserActors) as refused:
        asyncio.run(Dispatcher(t).call("u3", "create_session", "s1", None))
    response = error_response(refused.value)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(TooManyUserActors.retry_after_s)
    assert "TRACKER_MAX_USER_ACTORS" in json.loads(bytes(response.body))["error"]
    assert len(user_actors(namespace)) == 2
    assert t.status()["userActors"] == 2
    # The users served keep being served.
    assert ray.get(t.user("u0").get_session.remote("s1"))["sessionId"] == "s1"

    # An actor that ended without a word (killed) is no longer counted once it is gone.
    ray.kill(ray.get_actor(host_name("u0", t.config), namespace=namespace), no_restart=True)

    def admitted() -> bool:
        try:
            return bool(ray.get(t.user("u2").create_session.remote("s1", None)))
        except TooManyUserActors:
            return False

    wait_for(admitted, timeout_s=60, interval_s=0.5)
    assert user_actors(namespace) == {host_name(u, t.config) for u in ("u1", "u2")}


def test_an_actor_leaving_idle_frees_its_place_at_once(
    make_tracker: Any, file_storage: str
) -> None:
    # Idle after a second; passivated and gone at the compaction due every second after that.
    t = make_tracker(
        storage=file_storage,
        placement="per-user",
        max_user_actors=1,
        passivate_after_s=1,
        compact_interval_s=1,
    )
    namespace = t.config.namespace
    count = ray.get_actor(USER_ACTORS_NAME, namespace=namespace)
    ray.get(t.user("u0").create_session.remote("s1", None))
    wait_for(lambda: not user_actors(namespace), timeout_s=60, interval_s=0.2)
    # Told by the actor as it left, not found out later from the named actors.
    assert ray.get(count.count.remote()) == 0
    assert ray.get(t.user("u1").create_session.remote("s1", None))["sessionId"] == "s1"
