"""Identify and alias: an anonymous visitor linked to a user, through the Python API, tracker.js's
route and Segment's; the move counted once, completed after a crash, erased with the user."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import ray
from conftest import file_url, holders, user_traces
from support import movement, wait_for

from tracker import auth, links
from tracker.config import Config
from tracker.errors import AlreadyLinked
from tracker.storage import open_storage


def visit(t: Any, user_id: str, sessions: dict[str, int], prefix: str) -> list[str]:
    """`user_id`'s sessions with that many clicks each; their event IDs."""
    ids = []
    for session, count in sessions.items():
        ray.get(t.user(user_id).create_session.remote(session, {"userAgent": "Firefox"}))
        batch = [
            movement(user_id, session, eventId=f"{prefix}-{session}-{i}") for i in range(count)
        ]
        ray.get(t.user(user_id).track_many.remote(batch))
        ids += [m["eventId"] for m in batch]
    return ids


def event_ids(t: Any, user_id: str) -> list[str]:
    lines = ray.get(t.user(user_id).export.remote())
    return sorted(line["eventId"] for line in lines if line.get("type") == "movement")


def total_events(t: Any) -> int:
    t.flush()
    return int(t.analytics()["totalEvents"])


def test_alias_moves_the_visitors_history_into_the_users_and_counts_it_once(
    make_tracker: Any, tmp_path: Any
) -> None:
    t = make_tracker(storage=file_url(tmp_path / "data"), hosts=2)
    anonymous, user = str(uuid.uuid4()), "user_123"
    moved = visit(t, anonymous, {"a1": 3, "a2": 2}, "anon")
    own = visit(t, user, {"u1": 2}, "own")
    wait_for(lambda: total_events(t) == 7, message="the events counted")

    assert t.alias(anonymous, user) == {"userId": user, "linked": True}

    assert event_ids(t, user) == sorted(moved + own)
    assert event_ids(t, anonymous) == []
    detail = ray.get(t.user(user).analytics.remote())["userSessions"]
    assert {s["sessionId"]: s["deviceInfo"]["userAgent"] for s in detail} == {
        "a1": "Firefox",
        "a2": "Firefox",
        "u1": "Firefox",
    }
    assert total_events(t) == 7
    # Linked again (a resent identify): nothing moves twice.
    assert t.alias(anonymous, user)["linked"] is True
    assert event_ids(t, user) == sorted(moved + own)


def test_an_anonymous_id_links_to_one_user_at_most(make_tracker: Any, tmp_path: Any) -> None:
    t = make_tracker(storage=file_url(tmp_path / "data"))
    anonymous = str(uuid.uuid4())
    visit(t, anonymous, {"a1": 1}, "anon")
    t.alias(anonymous, "alice")
    with pytest.raises(AlreadyLinked, match="linked to another user"):
        t.alias(anonymous, "bob")
    assert event_ids(t, "bob") == []


def test_erasing_the_user_erases_every_linked_anonymous_id(
    make_tracker: Any, tmp_path: Any
) -> None:
    root = tmp_path / "data"
    t = make_tracker(storage=file_url(root), hosts=2)
    first, second, user = str(uuid.uuid4()), str(uuid.uuid4()), "carol+x@example.com"
    visit(t, first, {"a1": 2}, "first")
    t.alias(first, user)
    t.alias(second, user)
    # Sent under the second ID after the link: still the user's to erase.
    late = visit(t, second, {"b1": 2}, "late")
    assert event_ids(t, second) == sorted(late)
    t.flush()

    assert ray.get(t.user(user).erase.remote())["erased"] is True

    t.flush()
    traces = [trace for u in (first, second, user) for trace in user_traces(u)]
    assert holders(root, traces) == []
    # The link records went with the user: the IDs may be linked anew.
    t.alias(first, "dave")


def test_a_move_cut_short_by_a_killed_host_completes_with_nothing_lost_or_doubled(
    make_tracker: Any, tmp_path: Any
) -> None:
    root = tmp_path / "data"
    t = make_tracker(storage=file_url(root), hosts=2)
    anonymous, user = str(uuid.uuid4()), "user_456"
    moved = visit(t, anonymous, {"a1": 4, "a2": 3, "a3": 2}, "anon")
    own = visit(t, user, {"u1": 1}, "own")
    wait_for(lambda: total_events(t) == 10, message="the events counted")

    # The first steps of a link, as the host runs them, up to half the move...
    storage = open_storage(t.config.storage)
    ray.get(_claim.remote(storage.url, anonymous, user))
    lines = ray.get(t.user(anonymous).export.remote())
    calls = links.moved(lines, user)
    assert len(calls) == 3
    host = t.user(user).host
    ray.get(host.track_server.remote(user, calls[0][0], None, calls[0][1], False))
    # ... then both hosts die, and come back.
    for name in {t.user(anonymous).host, host}:
        ray.kill(name, no_restart=False)
    wait_for(lambda: _answers(t, user), timeout_s=60, message="the hosts back")

    assert t.alias(anonymous, user)["linked"] is True

    assert event_ids(t, user) == sorted(moved + own)
    assert event_ids(t, anonymous) == []
    assert total_events(t) == 10


@ray.remote
def _claim(url: str, anonymous_id: str, user_id: str) -> None:
    import asyncio

    asyncio.run(links.claim(open_storage(url), anonymous_id, user_id))


def _answers(t: Any, user_id: str) -> bool:
    try:
        ray.get(t.user(user_id).analytics.remote(), timeout=10)
    except Exception:
        return False
    return True


# -- over HTTP ----------------------------------------------------------------------------------


def test_identify_links_the_visitor_of_the_cookie_to_the_user_of_the_token(
    serve_tracker: str, serve_config: Config
) -> None:
    assert serve_config.secret is not None
    anonymous, user = str(uuid.uuid4()), f"user_{uuid.uuid4().hex}"
    token = auth.mint_token(serve_config.secret, user)
    admin = {"Authorization": f"Bearer {serve_config.admin_token}"}
    with httpx.Client(base_url=serve_tracker, timeout=30) as browser:
        browser.post("/api/track/session", json={"userId": anonymous, "sessionId": "s1"})
        browser.post("/api/track", json=[movement(anonymous, eventId=f"e{i}") for i in range(3)])
        body = {"anonymousId": anonymous, "userId": user, "token": token}
        with httpx.Client(base_url=serve_tracker, timeout=30) as stranger:
            assert stranger.post("/api/track/identify", json=body).status_code == 403
        bad = browser.post("/api/track/identify", json={**body, "token": token[:-2] + "xx"})
        assert bad.status_code == 401
        linked = browser.post("/api/track/identify", json=body)
        assert linked.status_code == 200, linked.text
        assert linked.json() == {"userId": user, "linked": True}
    export = httpx.get(f"{serve_tracker}/api/users/{user}/export", headers=admin, timeout=30)
    lines = [json.loads(line) for line in export.text.splitlines()]
    moved = sorted(line["eventId"] for line in lines if line["type"] == "movement")
    assert moved == ["e0", "e1", "e2"]


def test_segment_identify_links_and_a_second_alias_to_another_user_is_409(
    serve_tracker: str, serve_config: Config
) -> None:
    anonymous, user = f"anon-{uuid.uuid4().hex}", f"user_{uuid.uuid4().hex}"
    with httpx.Client(
        base_url=serve_tracker, timeout=30, auth=(serve_config.write_keys[0], "")
    ) as source:
        page = {"type": "page", "anonymousId": anonymous, "properties": {"path": "/"}}
        identify = {"type": "identify", "anonymousId": anonymous, "userId": user}
        sent = source.post("/v1/batch", json={"batch": [page, identify]})
        assert sent.status_code == 200, sent.text
        again = source.post("/v1/alias", json={"previousId": anonymous, "userId": user})
        assert again.status_code == 200, again.text
        other = source.post("/v1/alias", json={"previousId": anonymous, "userId": "someone"})
        assert other.status_code == 409, other.text
        assert "linked to another user" in other.json()["error"]
    admin = {"Authorization": f"Bearer {serve_config.admin_token}"}
    export = httpx.get(f"{serve_tracker}/api/users/{user}/export", headers=admin, timeout=30)
    assert [line for line in export.text.splitlines() if '"page_view"' in line]
