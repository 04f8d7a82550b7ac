"""Settings on a running tracker: a process that connects later hands its settings to the
running actors, which apply the live ones and refuse the fixed ones (`tracker.settings`).

Here on the test session's Ray; tests/test_cluster.py does it on a cluster `ray start` made,
through `tracker serve` and the HTTP app."""

from __future__ import annotations

from typing import Any

import pytest
import ray
import support
from support import wait_for

from tracker.api import Tracker, connect
from tracker.errors import ConfigError
from tracker.placement import host_name


def movement(user: str, event_id: str, session: str = "s1") -> dict[str, Any]:
    return support.movement(user, session, data={"path": "/"}, eventId=event_id)


def test_a_shorter_session_timeout_given_by_a_later_connect_ends_running_sessions_sooner(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage)
    alice = t.user("alice")
    ray.get(alice.track.remote(movement("alice", "e1")))
    assert ray.get(alice.analytics.remote())["totalSessions"] == 1

    connect(config=t.config.replace(session_timeout_s=0.5))

    # The handle of the first connect reaches the same running host, which now ends the
    # idle session after half a second instead of half an hour.
    wait_for(lambda: ray.get(alice.analytics.remote())["totalSessions"] == 0)


@pytest.mark.parametrize("placement", ["sharded", "per-user"])
def test_an_opt_out_list_given_by_a_later_connect_makes_running_actors_drop_that_users_events(
    make_tracker: Any, file_storage: str, placement: str
) -> None:
    t = make_tracker(storage=file_storage, placement=placement)
    dave = t.user("dave")
    assert ray.get(dave.track.remote(movement("dave", "e1"))) == 1  # dave's actor runs now

    connect(config=t.config.replace(opt_out=("dave",)))

    assert ray.get(dave.track.remote(movement("dave", "e2"))) == 0
    assert [m["eventId"] for m in ray.get(dave.get_session.remote("s1"))["movements"]] == ["e1"]


def test_settings_taken_on_live_outlast_a_restart_of_the_host_by_ray(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage)
    connect(config=t.config.replace(opt_out=("dave",)))
    host = t.hosts[host_name("dave", t.config)]
    before = ray.get(host.pid.remote())

    ray.kill(host, no_restart=False)  # Ray starts it again with the Config it was created with

    def restarted() -> bool:
        try:
            return bool(ray.get(host.pid.remote(), timeout=10) != before)
        except ray.exceptions.RayError:
            return False

    wait_for(restarted, timeout_s=60)
    assert ray.get(t.user("dave").track.remote(movement("dave", "e1"))) == 0


def test_settings_taken_on_live_outlast_a_restart_of_the_scheduler_by_ray(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage)
    connect(config=t.config.replace(session_timeout_s=0.5, opt_out=("dave",)))
    before = ray.get(t.scheduler.pid.remote())

    ray.kill(t.scheduler, no_restart=False)

    def restarted() -> bool:
        try:
            return bool(ray.get(t.scheduler.pid.remote(), timeout=10) != before)
        except ray.exceptions.RayError:
            return False

    wait_for(restarted, timeout_s=60)
    # Ray started it again with the Config it was created with; the live settings come from
    # storage, all but the opt-out list, which is never written there.
    restarted_config = ray.get(t.scheduler.current_config.remote())
    assert restarted_config.session_timeout_s == 0.5
    assert restarted_config.opt_out == ()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"placement": "per-user"}, "TRACKER_PLACEMENT='per-user'.*'sharded'"),
        ({"hosts": 2}, "TRACKER_HOSTS=2.*has 1"),
        ({"storage": "file:///elsewhere"}, "TRACKER_STORAGE='file:///elsewhere'"),
    ],
)
def test_a_setting_that_cannot_change_under_running_actors_is_refused_naming_it(
    make_tracker: Any, file_storage: str, change: dict[str, Any], named: str
) -> None:
    t = make_tracker(storage=file_storage)
    with pytest.raises(ConfigError, match=named):
        connect(config=t.config.replace(**change))
    with pytest.raises(ConfigError, match=named):
        Tracker(t.config.replace(**change), reconfigure=False)
    # Refused before any actor was made with it: no second host, no router.
    names = {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == t.config.namespace
    }
    assert names == {"scheduler", "aggregator", "host-0"}


def test_another_namespace_over_the_storage_of_a_running_tracker_is_refused_naming_it(
    make_tracker: Any, file_storage: str, tmp_path: Any
) -> None:
    t = make_tracker(storage=file_storage)
    with pytest.raises(ConfigError, match=f"TRACKER_NAMESPACE='other'.*{t.config.namespace!r}"):
        make_tracker(storage=file_storage, namespace="other")
    # Over storage of its own, another namespace is another tracker.
    make_tracker(storage=f"file://{tmp_path / 'own'}", namespace="other")


def test_a_tracker_made_not_to_reconfigure_leaves_the_running_settings_alone(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage, opt_out=("dave",))
    Tracker(t.config.replace(opt_out=()), reconfigure=False)  # as the command line does
    assert ray.get(t.user("dave").track.remote(movement("dave", "e1"))) == 0
