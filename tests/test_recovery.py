"""Recovery on a real local Ray: a host process killed with SIGKILL, a whole new set of actors
over the same storage, and alarms firing through the actors."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import ray
import support
from ray.actor import ActorHandle
from ray.exceptions import RayError
from support import wait_for

from tracker.errors import UnknownSession
from tracker.placement import host_name


def movement(user: str, i: int, session: str = "s1") -> dict[str, Any]:
    """`user`'s click number `i`, on page `i`."""
    data = {"path": f"/page/{i}", "coordinates": {"x": i, "y": 2 * i}}
    return support.movement(user, session, data=data, eventId=f"{user}-{i}")


def host_of(t: Any, user: str) -> ActorHandle[Any]:
    return ray.get_actor(host_name(user, t.config), namespace=t.config.namespace)


def pid_of(host: ActorHandle[Any]) -> int | None:
    try:
        pid: Any = ray.get(host.pid.remote(), timeout=5)
        return int(pid)
    except RayError:
        return None  # being restarted


def event_ids(t: Any, user: str) -> list[str]:
    session = ray.get(t.user(user).get_session.remote("s1"))
    return [m["eventId"] for m in session["movements"]]


@pytest.mark.parametrize("placement", ["sharded", "per-user"])
def test_acknowledged_movements_survive_a_sigkilled_host(
    make_tracker: Any, storage_url: str, placement: str
) -> None:
    t = make_tracker(storage=storage_url, placement=placement)
    user = t.user("alice")
    ray.get(user.create_session.remote("s1", {"userAgent": "pytest"}))
    assert ray.get(user.track_many.remote([movement("alice", i) for i in range(30)])) == 30
    # Calls in flight at once: they share commits; each is acknowledged on its own.
    refs = [user.track.remote(movement("alice", i)) for i in range(30, 36)]
    assert ray.get(refs) == [1] * 6
    acknowledged = event_ids(t, "alice")
    assert sorted(acknowledged) == sorted(f"alice-{i}" for i in range(36))
    host = host_of(t, "alice")
    pid = pid_of(host)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid_of(host) not in (None, pid), timeout_s=60)
    assert event_ids(t, "alice") == acknowledged
    # The recovered host keeps working, and still counts retried events once.
    assert ray.get(user.track.remote(movement("alice", 35))) == 0
    assert ray.get(user.track.remote(movement("alice", 36))) == 1


@pytest.mark.parametrize("placement", ["sharded", "per-user"])
def test_sessions_and_pending_alarms_come_back_in_a_new_set_of_actors(
    make_tracker: Any, file_storage: str, placement: str
) -> None:
    from tracker.api import connect, shutdown

    t = make_tracker(storage=file_storage, placement=placement)
    users = ["alice", "bob"]
    for name in users:
        ray.get(t.user(name).create_session.remote("s1", {"userAgent": name}))
        ray.get(t.user(name).track_many.remote([movement(name, i) for i in range(3)]))
    alarms = wait_for(
        lambda: (
            (due := ray.get([t.scheduler.get_alarm.remote(u) for u in users])) and all(due) and due
        ),
        timeout_s=30,
    )
    before = {u: ray.get(t.user(u).get_session.remote("s1")) for u in users}
    shutdown(t.config)
    again = connect(config=t.config)
    assert ray.get([again.scheduler.get_alarm.remote(u) for u in users]) == alarms
    for name in users:
        assert ray.get(again.user(name).get_session.remote("s1")) == before[name]


@pytest.mark.parametrize("placement", ["sharded", "per-user"])
def test_alarms_fire_through_ray_and_expire_idle_sessions(
    make_tracker: Any, file_storage: str, placement: str
) -> None:
    t = make_tracker(
        storage=file_storage, placement=placement, session_timeout_s=1, alarm_interval_s=1
    )
    user = t.user("dave")
    ray.get(user.create_session.remote("s1", None))
    ray.get(user.track.remote(movement("dave", 0)))

    def expired() -> bool:
        try:
            ray.get(user.get_session.remote("s1"))
        except UnknownSession:
            return True
        return False

    wait_for(expired, timeout_s=30, interval_s=0.2)
    assert ray.get(t.scheduler.stats.remote())["fired"] >= 1
    assert ray.get(user.analytics.remote())["totalSessions"] == 0
