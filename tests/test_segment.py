"""Segment's HTTP tracking API: the mapping of messages (plain functions), and the routes through
the app on Ray Serve, with Segment's unmodified Python SDK."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from support import now_ms

from tracker import segment
from tracker.config import Config
from tracker.errors import ConfigError, InvalidMessage

NOW = 1_800_000_000_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def track(user: str = "user_123", **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "properties": {"total": 9.5},
        "messageId": str(uuid.uuid4()),
        **fields,
    }


def page(user: str = "user_123", **fields: Any) -> dict[str, Any]:
    return {
        "type": "page",
        "userId": user,
        "properties": {"path": "/pricing"},
        "messageId": str(uuid.uuid4()),
        **fields,
    }


def read(messages: list[dict[str, Any]], **fields: Any) -> segment.SegmentBatch:
    body = {"batch": messages, **fields}
    return segment.read_batch(body, len(json.dumps(body)), NOW)


# -- the mapping ------------------------------------------------------------------------------


def test_a_track_message_is_a_custom_event_with_flattened_properties() -> None:
    properties = {"order": {"id": "o-1", "total": 12}, "items": [1, 2], "coupon": None, "ok": True}
    batch = read([track(properties=properties, timestamp=iso(NOW - 1000))])
    [movement] = batch.users["user_123"].movements
    assert movement.event == "custom"
    assert movement.data.name == "Order Completed"
    assert movement.data.properties == {
        "order.id": "o-1",
        "order.total": 12,
        "items": "[1,2]",
        "coupon": "null",
        "ok": True,
    }
    assert movement.timestamp == NOW - 1000


def test_a_page_message_keeps_its_path_the_referrers_host_and_the_campaign_only() -> None:
    message = page(
        properties={
            "url": "https://shop.example/pricing?email=a@b.example",
            "referrer": "https://news.example/story?id=7",
            "title": "Pricing",
        },
        context={"campaign": {"source": "news", "medium": "email", "name": "spring"}},
    )
    [movement] = read([message]).users["user_123"].movements
    assert movement.event == "page_view"
    assert movement.data.path == "/pricing"
    assert movement.data.referrer == "news.example"
    assert movement.data.utm is not None
    assert (movement.data.utm.utm_source, movement.data.utm.utm_campaign) == ("news", "spring")
    assert movement.data.metadata == {"title": "Pricing"}
    assert "email=" not in json.dumps(segment.msgspec.to_builtins(movement))


def test_the_user_is_the_user_id_else_the_anonymous_id() -> None:
    batch = read(
        [track(user="a+b@example.com"), {**track(), "userId": None, "anonymousId": "anon"}]
    )
    assert set(batch.users) == {"a+b@example.com", "anon"}


def test_a_message_id_outside_the_id_alphabet_becomes_a_stable_hash() -> None:
    first = read([track(messageId="not an id/ü")]).users["user_123"].movements[0].eventId
    again = read([track(messageId="not an id/ü")]).users["user_123"].movements[0].eventId
    other = read([track(messageId="another one")]).users["user_123"].movements[0].eventId
    assert first == again != other
    assert first is not None and first.startswith("m-")
    kept = read([track(messageId="ajs-1f2e")]).users["user_123"].movements[0].eventId
    assert kept == "ajs-1f2e"


def test_a_message_without_an_id_is_named_by_its_content_so_a_resend_counts_once() -> None:
    message = track(timestamp=iso(NOW - 5))
    del message["messageId"]
    ids = {read([message]).users["user_123"].movements[0].eventId for _ in range(2)}
    assert len(ids) == 1


def test_sent_at_corrects_the_senders_clock() -> None:
    # The sender's clock is an hour fast: it stamped the event 2 s before it sent the batch.
    fast = NOW + 3_600_000
    batch = read([track(timestamp=iso(fast - 2000))], sentAt=iso(fast))
    assert batch.users["user_123"].movements[0].timestamp == NOW - 2000


def test_the_session_is_context_session_id_or_left_for_the_host_to_choose() -> None:
    batch = read([track(context={"sessionId": 1700000000}), track(), track(user="other")])
    sessions = [m.sessionId for m in batch.users["user_123"].movements]
    assert sessions == ["1700000000", segment.AUTO_SESSION]


def test_identify_with_both_ids_and_alias_link_an_anonymous_id_to_a_user() -> None:
    batch = read(
        [
            {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "traits": {"x": 1}},
            {"type": "identify", "userId": "u2", "traits": {"plan": "pro"}},
            {"type": "alias", "previousId": "anon-2", "userId": "u2"},
        ]
    )
    assert [(link.anonymous_id, link.user_id) for link in batch.links] == [
        ("anon-1", "u1"),
        ("anon-2", "u2"),
    ]
    assert batch.users == {}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({**track(), "event": ""}, "batch.1.event"),
        ({**track(), "event": "e" * 65}, "batch.1.event"),
        ({**track(), "userId": None}, "batch.1.userId"),
        ({**track(), "userId": "line\nbreak"}, "batch.1.userId"),
        ({**track(), "type": "screen"}, "batch.1.type"),
        ({**track(), "timestamp": "yesterday"}, "batch.1.timestamp"),
        ({**track(), "timestamp": iso(NOW + 3_600_000)}, "batch.1.timestamp"),
        ({**track(), "properties": {f"k{i}": i for i in range(21)}}, "batch.1.properties"),
        ({**page(), "context": {"campaign": {"source": 3}}}, "batch.1.context.campaign.source"),
        ({**page(), "properties": {"path": "pricing"}}, "batch.1.data.path"),
        ({**page(), "properties": {}}, "batch.1.properties.path"),
        ({"type": "alias", "userId": "u"}, "batch.1.previousId"),
        ({**track(), "properties": {"blob": "x" * 33_000}}, "batch.1"),
    ],
)
def test_a_bad_message_refuses_the_batch_naming_its_index_and_field(
    message: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidMessage) as info:
        read([track(), message, track()])
    assert info.value.field == field


# -- the routes, on Ray Serve -----------------------------------------------------------------


@pytest.fixture
def source(serve_tracker: str, serve_config: Config) -> Iterator[httpx.Client]:
    """A server-side source: the write key as the HTTP Basic user name."""
    with httpx.Client(
        base_url=serve_tracker, timeout=30, auth=(serve_config.write_keys[0], "")
    ) as client:
        yield client


@pytest.fixture
def admin(serve_tracker: str, serve_config: Config) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {serve_config.admin_token}"}
    with httpx.Client(base_url=serve_tracker, timeout=30, headers=headers) as client:
        yield client


def exported(admin: httpx.Client, user_id: str) -> list[dict[str, Any]]:
    response = admin.get(f"/api/users/{quote(user_id, safe='')}/export")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def movements_of(admin: httpx.Client, user_id: str) -> list[dict[str, Any]]:
    return [line for line in exported(admin, user_id) if line.get("type") == "movement"]


def test_without_or_with_a_wrong_write_key_nothing_is_stored(
    serve_tracker: str, admin: httpx.Client
) -> None:
    user = f"user_{uuid.uuid4().hex}"
    body = {"batch": [track(user)]}
    wrong = base64.b64encode(b"w" * 32 + b":").decode()
    for headers in ({}, {"Authorization": f"Basic {wrong}"}, {"Authorization": "Bearer x"}):
        response = httpx.post(f"{serve_tracker}/v1/batch", json=body, headers=headers, timeout=30)
        assert response.status_code == 401, response.text
    assert exported(admin, user) == []


def test_a_batch_with_one_bad_message_is_refused_whole_with_400(
    source: httpx.Client, admin: httpx.Client
) -> None:
    user = f"user_{uuid.uuid4().hex}"
    response = source.post("/v1/batch", json={"batch": [track(user), {**track(user), "event": 5}]})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "batch.1.event"
    assert exported(admin, user) == []


def test_a_batch_over_500_kb_is_refused_with_413(source: httpx.Client) -> None:
    messages = [track(properties={"pad": "x" * 30_000}) for _ in range(17)]
    response = source.post("/v1/batch", json={"batch": messages})
    assert response.status_code == 413, response.text


def test_a_resent_batch_is_stored_once_in_one_session(
    source: httpx.Client, admin: httpx.Client
) -> None:
    user = f"user_{uuid.uuid4().hex}"
    at = now_ms()
    messages = [
        page(user, timestamp=iso(at - 3000), context={"userAgent": "Mozilla/5.0 Firefox/133"}),
        track(user, timestamp=iso(at - 2000)),
        track(user, timestamp=iso(at - 1000)),
    ]
    for _ in range(2):
        response = source.post("/v1/batch", json={"batch": messages})
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    moved = movements_of(admin, user)
    assert sorted(m["eventId"] for m in moved) == sorted(m["messageId"] for m in messages)
    assert len({m["sessionId"] for m in moved}) == 1
    sessions = admin.get(f"/api/users/{user}").json()["sessions"]
    assert [s["deviceInfo"]["userAgent"] for s in sessions] == ["Mozilla/5.0 Firefox/133"]


def test_single_message_routes_take_their_type_from_the_path(
    source: httpx.Client, admin: httpx.Client
) -> None:
    user = f"user_{uuid.uuid4().hex}"
    sent = page(user, context={"sessionId": "s-7"})
    del sent["type"]
    assert source.post("/v1/page", json=sent).status_code == 200
    sent = track(user, context={"sessionId": "s-7"})
    del sent["type"]
    assert source.post("/v1/track", json=sent).status_code == 200
    assert (
        source.post("/v1/track", json={**sent, "properties": {"p": "x" * 33_000}}).status_code
        == 413
    )
    moved = movements_of(admin, user)
    assert [(m["event"], m["sessionId"]) for m in moved] == [
        ("page_view", "s-7"),
        ("custom", "s-7"),
    ]


def test_the_unmodified_segment_python_sdk_works_end_to_end(
    serve_tracker: str, serve_config: Config, admin: httpx.Client
) -> None:
    from segment.analytics.client import Client

    errors: list[Any] = []
    client = Client(
        serve_config.write_keys[0],
        host=serve_tracker,
        on_error=lambda error, batch: errors.append(error),
        max_retries=2,
    )
    user = f"a+{uuid.uuid4().hex}@example.com"
    client.page(user, name="Pricing", properties={"path": "/pricing", "title": "Pricing"})
    client.track(user, "Signed Up", {"plan": {"name": "pro", "seats": 3}})
    client.track(
        user, "Upgraded", {"from": "free"}, timestamp=datetime.now(UTC) - timedelta(seconds=1)
    )
    client.flush()
    client.join()
    assert errors == []
    moved = movements_of(admin, user)
    assert [m["event"] for m in sorted(moved, key=lambda m: m["timestamp"])].count("custom") == 2
    custom = {m["data"]["name"]: m["data"]["properties"] for m in moved if m["event"] == "custom"}
    assert custom == {
        "Signed Up": {"plan.name": "pro", "plan.seats": 3},
        "Upgraded": {"from": "free"},
    }
    assert [m["data"]["path"] for m in moved if m["event"] == "page_view"] == ["/pricing"]


def test_tracker_write_key_makes_a_key_the_configuration_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tracker import cli

    assert cli.main(["write-key"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) >= 32
    config = Config.from_env({"TRACKER_WRITE_KEYS": f"{key}, {'k' * 40}"})
    assert config.write_keys == (key, "k" * 40)


@pytest.mark.parametrize("key", ["short-key", "k" * 31 + ":" + "k" * 8])
def test_a_write_key_too_short_or_holding_a_colon_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({"TRACKER_WRITE_KEYS": key})
    assert "TRACKER_WRITE_KEYS" in str(info.value) and key not in str(info.value)
