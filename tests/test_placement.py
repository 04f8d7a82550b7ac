"""Where a user lives. The names and shards themselves (plain functions): a user's shard is
the same in every process and moves only to a new host when hosts are added. Then the per-user
placement on the real Ray cluster: invented user IDs cannot start processes without limit.
Past `TRACKER_MAX_USER_ACTORS` live per-user actors a new user's call is refused (HTTP 503 with
Retry-After) and starts nothing; once an idle actor has exited, one more fits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import ray
from support import wait_for

from tracker.config import Config
from tracker.dispatch import Dispatcher
from tracker.errors import TooManyUserActors
from tracker.ingress import error_response
from tracker.placement import (
    AGGREGATOR_NAME,
    FIRST_HOST,
    ROUTER_NAME,
    SCHEDULER_NAME,
    USER_ACTORS_NAME,
    host_name,
    is_user_actor,
    shard_of,
    sharded_host_index,
    sharded_host_name,
    sharded_host_names,
)

USERS = [f"user-{i}@example.com" for i in range(4000)]


def test_a_users_shard_is_the_same_in_every_process() -> None:
    # Fixed values: a shard derived from Python's salted `hash` would differ between the
    # replicas and after a restart, and the user's history would be looked for elsewhere.
    users = ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert [shard_of(user, 4) for user in users] == [1, 3, 0, 2, 2, 3]
    assert [shard_of(user, 16) for user in users] == [1, 7, 13, 2, 15, 7]
    assert all(shard_of(user, 1) == 0 for user in users)


def test_users_spread_evenly_over_the_hosts() -> None:
    for hosts in (2, 3, 8):
        counts = [0] * hosts
        for user in USERS:
            counts[shard_of(user, hosts)] += 1
        expected = len(USERS) / hosts
        assert all(abs(count - expected) < 0.15 * expected for count in counts), counts


def test_a_host_added_takes_its_share_of_users_and_no_other_user_moves() -> None:
    for hosts in (1, 2, 4, 7):
        moved = [user for user in USERS if shard_of(user, hosts + 1) != shard_of(user, hosts)]
        assert all(shard_of(user, hosts + 1) == hosts for user in moved)
        share = len(USERS) / (hosts + 1)
        assert abs(len(moved) - share) < 0.15 * share, (hosts, len(moved))


def test_a_sharded_users_actor_is_the_host_of_their_shard() -> None:
    config = Config(hosts=4)
    assert sharded_host_names(config) == ["host-0", "host-1", "host-2", "host-3"]
    assert FIRST_HOST == sharded_host_name(0) == "host-0"
    for user in ["alice", "bob", "carol"]:
        assert host_name(user, config) == sharded_host_name(shard_of(user, 4))
        assert not is_user_actor(host_name(user, config))
    assert host_name("alice", Config(hosts=1)) == "host-0"


def test_a_per_user_actors_name_is_bounded_and_safe_whatever_the_user_id() -> None:
    config = Config(placement="per-user")
    ids = ["alice", "a/../../b", "x" * 10_000, "é 🙂\n", ""]
    names = [host_name(user, config) for user in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert is_user_actor(name)
        assert len(name) == len("user-") + 40
        assert name.removeprefix("user-").isalnum() and name.isascii()
    assert host_name("alice", config) == host_name("alice", Config(placement="per-user"))


def test_only_sharded_host_names_have_an_index() -> None:
    assert [sharded_host_index(sharded_host_name(i)) for i in (0, 3, 12)] == [0, 3, 12]
    others = ["host-", "host-x", "host--1", "ghost-1", SCHEDULER_NAME, AGGREGATOR_NAME]
    others += [ROUTER_NAME, USER_ACTORS_NAME, host_name("alice", Config(placement="per-user"))]
    assert [sharded_host_index(name) for name in others] == [None] * len(others)
    assert not any(is_user_actor(name) for name in others[:-1])


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


def test_a_bound_given_by_a_later_connect_applies_to_the_running_count(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage, placement="per-user", max_user_actors=1)
    ray.get(t.user("u0").create_session.remote("s1", None))
    with pytest.raises(TooManyUserActors):
        ray.get(t.user("u1").create_session.remote("s1", None))

    raised = make_tracker(**{**vars(t.config), "max_user_actors": 2})
    assert ray.get(raised.user("u1").create_session.remote("s1", None))["sessionId"] == "s1"
    assert len(user_actors(t.config.namespace)) == 2
