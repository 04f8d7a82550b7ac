"""The Python API on a real local Ray, over both placements and both storage backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from browser_support import serve_asgi
from conftest import file_url
from prometheus_client.parser import text_string_to_metric_families
from support import movement, wait_for

from tracker.errors import InvalidMovement, UnknownSession
from tracker.history import user_key
from tracker.ingress import build_app
from tracker.storage import local_root


@pytest.mark.parametrize("placement", ["sharded", "per-user"])
def test_tracked_movements_come_back_from_get_session_and_survive_new_actors(
    make_tracker: Any, storage_url: str, placement: str
) -> None:
    t = make_tracker(storage=storage_url, placement=placement)
    user = t.user("alice")
    session = ray.get(user.create_session.remote("s1", {"userAgent": "pytest"}))
    assert session["sessionId"] == "s1" and session["movements"] == []
    assert ray.get(user.track.remote(movement("alice"))) == 1
    assert ray.get(user.track_many.remote([movement("alice") for _ in range(5)])) == 5
    got = ray.get(user.get_session.remote("s1"))
    assert len(got["movements"]) == 6
    assert got["deviceInfo"] == {"userAgent": "pytest"}
    analytics = ray.get(user.analytics.remote())
    assert analytics["totalSessions"] == 1

    from tracker.api import connect, shutdown

    shutdown(t.config)
    again = connect(config=t.config)
    got = ray.get(again.user("alice").get_session.remote("s1"))
    assert len(got["movements"]) == 6


def test_errors_reach_the_caller_as_themselves(make_tracker: Any, file_storage: str) -> None:
    t = make_tracker(storage=file_storage)
    user = t.user("bob")
    with pytest.raises(UnknownSession):
        ray.get(user.get_session.remote("nope"))
    with pytest.raises(KeyError):
        ray.get(user.get_session.remote("nope"))
    with pytest.raises(InvalidMovement) as info:
        ray.get(user.track.remote({**movement("bob"), "event": "teleport"}))
    assert info.value.field == "event"
    with pytest.raises(ValueError):
        ray.get(user.track.remote({**movement("bob"), "extra": 1}))
    with pytest.raises(InvalidMovement):
        ray.get(user.track.remote(movement("mallory")))
    # A batch that fails the handle's own validation goes as sent: the host names the field.
    with pytest.raises(InvalidMovement) as info:
        ray.get(user.track_many.remote([movement("bob"), {**movement("bob"), "event": "x"}]))
    assert info.value.field == "events.1.event"
    with pytest.raises(InvalidMovement) as info:
        ray.get(user.track_many.remote([movement("bob"), movement("mallory")]))
    assert info.value.field == "events.1.userId"
    with pytest.raises(UnknownSession):  # all or nothing: neither batch left a trace
        ray.get(user.get_session.remote("s1"))


def test_retried_event_ids_count_once(make_tracker: Any, file_storage: str) -> None:
    t = make_tracker(storage=file_storage)
    user = t.user("carol")
    m = movement("carol", eventId="evt-1")
    assert ray.get(user.track.remote(m)) == 1
    assert ray.get(user.track.remote(m)) == 0
    assert len(ray.get(user.get_session.remote("s1"))["movements"]) == 1


def test_a_null_event_id_gets_one_and_an_opted_out_user_is_stored_by_no_handle(
    make_tracker: Any, file_storage: str
) -> None:
    t = make_tracker(storage=file_storage, opt_out=("dave",))
    carol = t.user("carol")
    ray.get(carol.track.remote(movement("carol", eventId=None)))
    ray.get(carol.track_many.remote([movement("carol", eventId=None)]))
    ids = [m.get("eventId") for m in ray.get(carol.get_session.remote("s1"))["movements"]]
    assert len(ids) == 2 and all(ids)  # retry-safe, as over HTTP
    dave = t.user("dave")
    assert ray.get(dave.track.remote(movement("dave"))) == 0
    assert ray.get(dave.track_many.remote([movement("dave")])) == 0
    assert ray.get(dave.create_session.remote("s1"))["declined"]
    with pytest.raises(UnknownSession):
        ray.get(dave.get_session.remote("s1"))


@pytest.mark.parametrize("placement", ["sharded", "per-user"])
def test_site_analytics_count_every_users_events_in_both_placements(
    make_tracker: Any, file_storage: str, placement: str
) -> None:
    t = make_tracker(storage=file_storage, placement=placement)
    users = [f"visitor-{i}" for i in range(3)]
    for user in users:
        handle = t.user(user)
        ray.get(handle.create_session.remote("s1", {"userAgent": f"agent-{user}"}))
        views = [movement(user, event="page_view", data={"path": f"/p/{user}"})]
        clicks = [movement(user) for _ in range(4)]
        assert ray.get(handle.track_many.remote(views + clicks)) == 5

    def counted() -> dict[str, Any] | None:
        report = t.analytics()
        ok = report["totalEvents"] == 15 and report["eventsByType"].get("click") == 12
        return report if ok else None

    report = wait_for(counted, timeout_s=30)
    assert {p["path"] for p in report["topPages"]} == {f"/p/{u}" for u in users}
    assert report["totalUsers"] == 3
    devices = {r["userId"]: r["deviceInfo"]["userAgent"] for r in report["recentActivity"]}
    assert devices == {u: f"agent-{u}" for u in users}


def test_a_user_whose_history_cannot_be_written_is_reported_until_the_repair(
    make_tracker: Any, tmp_path: Path
) -> None:
    """A file stands where one user's history folder goes: the compaction sets them aside,
    `status()` (what `tracker status` prints) names their folder, `/metrics` counts them, and
    the compaction after the repair stores their events and clears both."""
    storage = file_url(tmp_path / "data")
    t = make_tracker(storage=storage, admin_token="a" * 32, secret="s" * 32, rate_limit=0)
    broken, fine = "set-aside-user", "fine-user"
    for user in (broken, fine):
        assert ray.get(t.user(user).track.remote(movement(user, eventId=f"{user}-1"))) == 1
    blocker = local_root(storage) / user_key(broken) / "chunks"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"")
    t.flush()
    status = t.status()
    assert status["setAsideUsers"] == 1
    named = [folder for host in status["hosts"] for folder in host["setAsideUsers"]]
    assert named == [user_key(broken)]
    assert (local_root(storage) / user_key(fine) / "chunks").is_dir()  # compacted as usual

    def set_aside_in_metrics(url: str) -> float:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        families = text_string_to_metric_families(text)
        family = next(f for f in families if f.name == "tracker_host_users_set_aside")
        return sum(sample.value for sample in family.samples)

    with serve_asgi(build_app(t, t.config)) as url:
        # Polled: a scrape whose hosts answer late keeps the gauges as they were.
        wait_for(lambda: set_aside_in_metrics(url) == 1, timeout_s=60, interval_s=0.5)
        blocker.unlink()  # the repair
        t.flush()
        assert t.status()["setAsideUsers"] == 0
        wait_for(lambda: set_aside_in_metrics(url) == 0, timeout_s=60, interval_s=0.5)
    assert (local_root(storage) / user_key(broken) / "chunks").is_dir()
    got = ray.get(t.user(broken).get_session.remote("s1"))
    assert [m["eventId"] for m in got["movements"]] == [f"{broken}-1"]
