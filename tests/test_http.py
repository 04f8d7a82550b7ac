"""The HTTP contract through the real app on Ray Serve: every route, status code and rule.

One Serve deployment serves the whole test session (`serve_support`); each test works on users
of its own (fresh random UUIDs), so tests do not see each other's data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import support
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from support import now_ms

from tracker.config import Config
from tracker.routes import ROUTES

# One Serve deployment for the whole test session: the fixtures must be registered once (as a
# plugin), not copied into each module, or each module would deploy its own.

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)
MINUTE_MS = 60_000
# Placeholder replaced by raw JSON text that Python's json module would not write.
RAW = "__raw__"


def new_user() -> str:
    """A fresh anonymous visitor: a random UUID, as `crypto.randomUUID()` makes it."""
    return str(uuid.uuid4())


def movement(
    user_id: str, session_id: str = "s1", event: str = "click", **data: Any
) -> dict[str, Any]:
    """`user_id`'s `event` now, with `data` as keywords."""
    return support.movement(user_id, session_id, event=event, data=data)


def raw_json(value: Any, raw: str) -> bytes:
    """`value` as JSON with the string `RAW` replaced by `raw` (say `1e999`)."""
    return json.dumps(value).replace(json.dumps(RAW), raw).encode()


@pytest.fixture
def client(serve_tracker: str) -> Iterator[httpx.Client]:
    """A visitor's browser: its own cookie jar, no credentials."""
    with httpx.Client(base_url=serve_tracker, timeout=30) as c:
        yield c


@pytest.fixture
def admin(serve_tracker: str, serve_config: Config) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=serve_tracker,
        timeout=30,
        headers={"Authorization": f"Bearer {serve_config.admin_token}"},
    ) as c:
        yield c


def stored_movements(admin: httpx.Client, user_id: str, session_id: str = "s1") -> list[Any]:
    """The movements the server holds for one session ([] when it has no such session)."""
    response = admin.get("/api/track/session", params={"userId": user_id, "sessionId": session_id})
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    movements: list[Any] = response.json()["movements"]
    return movements


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    if field is not None:
        assert body["field"] == field, body


# -- POST /api/track ----------------------------------------------------------------------------


def test_one_movement_an_array_and_an_events_object_are_all_accepted(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    one = client.post("/api/track", json=movement(user, path="/a"))
    array = client.post("/api/track", json=[movement(user, path="/b"), movement(user, path="/c")])
    batch = client.post("/api/track", json={"events": [movement(user, path="/d")]})
    assert [r.json() for r in (one, array, batch)] == [
        {"success": True, "accepted": 1},
        {"success": True, "accepted": 2},
        {"success": True, "accepted": 1},
    ]
    assert [m["data"]["path"] for m in stored_movements(admin, user)] == ["/a", "/b", "/c", "/d"]


def test_an_empty_batch_is_accepted_with_nothing_counted(client: httpx.Client) -> None:
    for body in ([], {"events": []}):
        response = client.post("/api/track", json=body)
        assert response.json() == {"success": True, "accepted": 0}


def test_text_plain_bodies_are_accepted_as_send_beacon_sends_them(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    response = client.post(
        "/api/track",
        content=json.dumps(movement(user, event="page_view", path="/")),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert response.json() == {"success": True, "accepted": 1}
    assert [m["event"] for m in stored_movements(admin, user)] == ["page_view"]


def test_tracking_requests_from_another_sites_page_are_403_and_store_nothing(
    client: httpx.Client, admin: httpx.Client, serve_tracker: str
) -> None:
    """A page may make them from its own origin only (the tracker's, with no
    TRACKER_ALLOWED_ORIGINS here); browsers send `Origin` with every POST, beacons included."""
    user = new_user()
    other = {"Origin": "https://evil.example"}
    beacon = {**other, "Content-Type": "text/plain;charset=UTF-8"}
    refused = [
        client.post("/api/track", json=movement(user), headers=other),
        client.post("/api/track", content=json.dumps(movement(user)), headers=beacon),
        client.post("/api/track", json=movement(user), headers={"Origin": "null"}),
        client.post("/api/track/session", json={"userId": user, "sessionId": "s1"}, headers=other),
    ]
    for response in refused:
        assert_error(response, 403)
        assert "set-cookie" not in response.headers
    assert_error(admin.get("/api/track/session", params={"userId": user, "sessionId": "s1"}), 404)
    # The tracker's own pages, and programs that send no Origin, are served.
    own = {"Origin": serve_tracker}
    assert client.post("/api/track", json=movement(user), headers=own).json()["accepted"] == 1
    assert client.post("/api/track", json=movement(user)).json()["accepted"] == 1
    assert len(stored_movements(admin, user)) == 2


def test_a_retried_event_id_counts_once(client: httpx.Client, admin: httpx.Client) -> None:
    user = new_user()
    event = {**movement(user), "eventId": "e-1"}
    counted = _metric(client, "tracker_events_accepted_total")
    # Each answer says the events are stored; the metric counts the first send only.
    accepted = [client.post("/api/track", json=event).json()["accepted"] for _ in range(3)]
    assert accepted == [1, 1, 1]
    # A retry inside a batch, beside a new event, stores only the new one; so does an event
    # sent twice in one batch.
    second = {**event, "eventId": "e-2"}
    assert client.post("/api/track", json=[event, second, second]).json()["accepted"] == 3
    assert [m["eventId"] for m in stored_movements(admin, user)] == ["e-1", "e-2"]
    assert _metric(client, "tracker_events_accepted_total") == counted + 2


def test_a_body_that_is_not_json_is_400_naming_the_body(client: httpx.Client) -> None:
    for body in (b"{not json", b"", b"\xff\xfe", b'{"userId": NaN}'):
        response = client.post(
            "/api/track", content=body, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "body")


@pytest.mark.parametrize("body", [b"5", b'"click"', b"null", b"[5]", b'{"events": {}}'])
def test_json_of_the_wrong_shape_is_422_not_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/api/track", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "application/xml", "multipart/form-data"]
)
def test_a_body_of_another_content_type_is_415(client: httpx.Client, content_type: str) -> None:
    body = json.dumps(movement(new_user())).encode()
    response = client.post("/api/track", content=body, headers={"Content-Type": content_type})
    assert_error(response, 415)


def test_a_body_without_a_content_type_is_415(client: httpx.Client) -> None:
    response = client.post("/api/track", content=b"{}")
    assert "content-type" not in response.request.headers
    assert_error(response, 415)


def oversized_body(user_id: str) -> bytes:
    """A valid movement just over 64 KB, so only its size is wrong."""
    return json.dumps(
        movement(user_id, path="/", element="x" * 500) | {"pad": " " * 66_000}
    ).encode()


def test_a_body_over_64_kb_is_413(client: httpx.Client, admin: httpx.Client) -> None:
    user = new_user()
    response = client.post(
        "/api/track", content=oversized_body(user), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "body")
    assert stored_movements(admin, user) == []


def test_a_chunked_body_over_64_kb_is_413_without_a_declared_length(client: httpx.Client) -> None:
    body = oversized_body(new_user())
    chunks = iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
    response = client.post(
        "/api/track", content=chunks, headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body")


def test_a_batch_of_more_than_500_events_is_413_and_of_500_is_accepted(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    small = {"userId": user, "sessionId": "s1", "timestamp": now_ms(), "event": "hover"}
    too_many = client.post("/api/track", json=[small] * 501)
    assert_error(too_many, 413, "events")
    assert stored_movements(admin, user) == []
    assert client.post("/api/track", json={"events": [small] * 500}).json() == {
        "success": True,
        "accepted": 500,
    }


# Each rule of the movement schema: (a change to a good movement, the field the 422 names).
INVALID_MOVEMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown event type": ({"event": "tap"}, "event"),
    "user id over 128 characters": ({"userId": "u" * 129}, "userId"),
    "user id with a line break": ({"userId": "a\nb"}, "userId"),
    "session id empty": ({"sessionId": ""}, "sessionId"),
    "session id with a space": ({"sessionId": "a b"}, "sessionId"),
    "event id over 128 characters": ({"eventId": "e" * 129}, "eventId"),
    "path over 2 KB": ({"data": {"path": "/" + "p" * 2048}}, "data.path"),
    "path not starting with a slash": ({"data": {"path": "__proto__"}}, "data.path"),
    "path empty": ({"data": {"path": ""}}, "data.path"),
    "element over 512 characters": ({"data": {"element": "e" * 513}}, "data.element"),
    "metadata over 4 KB": ({"data": {"metadata": {"k": "m" * 4100}}}, "data.metadata"),
    # msgpack, which stores movements, holds integers of at most 64 bits.
    "metadata integer over 64 bits": ({"data": {"metadata": {"n": 2**64}}}, "data.metadata.n"),
    "metadata 5 levels deep": (
        {"data": {"metadata": {"a": {"b": {"c": {"d": {}}}}}}},
        "data.metadata.a.b.c.d",
    ),
    "coordinate not a number": (
        {"data": {"coordinates": {"x": "1", "y": 2}}},
        "data.coordinates.x",
    ),
    "coordinate out of range": (
        {"data": {"coordinates": {"x": 1e8, "y": 2}}},
        "data.coordinates.x",
    ),
    "coordinates without y": ({"data": {"coordinates": {"x": 1}}}, "data.coordinates.y"),
    "negative duration": ({"data": {"duration": -1}}, "data.duration"),
    "timestamp a day ahead": ({"timestamp": now_ms() + 24 * 60 * MINUTE_MS}, "timestamp"),
    "timestamp before 1970": ({"timestamp": -1}, "timestamp"),
    "timestamp as text": ({"timestamp": "now"}, "timestamp"),
    "unknown key": ({"colour": "red"}, "colour"),
    "unknown key in data": ({"data": {"colour": "red"}}, "data.colour"),
    "unknown key in coordinates": (
        {"data": {"coordinates": {"x": 1, "y": 2, "z": 3}}},
        "data.coordinates.z",
    ),
    "data not an object": ({"data": [1]}, "data"),
}


@pytest.mark.parametrize("case", list(INVALID_MOVEMENTS))
def test_each_rule_of_the_movement_schema_is_a_422_naming_the_field(
    client: httpx.Client, case: str
) -> None:
    changes, field = INVALID_MOVEMENTS[case]
    bad = movement(new_user()) | changes
    assert_error(client.post("/api/track", json=bad), 422, field)
    # In a batch, the field is prefixed with the event's index.
    good = movement(new_user() if field == "userId" else bad["userId"])
    batch = client.post("/api/track", json={"events": [good, bad]})
    assert_error(batch, 422, f"events.1.{field}")


def test_timestamps_may_be_up_to_5_minutes_ahead_of_the_server_clock(
    client: httpx.Client,
) -> None:
    user = new_user()
    ahead = client.post("/api/track", json=movement(user) | {"timestamp": now_ms() + 4 * MINUTE_MS})
    assert ahead.status_code == 200, ahead.text
    too_far = movement(user) | {"timestamp": now_ms() + 6 * MINUTE_MS}
    assert_error(client.post("/api/track", json=too_far), 422, "timestamp")


def test_a_movement_without_an_event_type_is_a_422_naming_it(client: httpx.Client) -> None:
    event = movement(new_user())
    del event["event"]
    assert_error(client.post("/api/track", json=event), 422, "event")


def test_a_key_beside_events_is_a_422_naming_it(client: httpx.Client) -> None:
    response = client.post("/api/track", json={"events": [], "extra": 1})
    assert_error(response, 422, "extra")


# JSON has no NaN or infinity; a number too large for a double is the way to send one.
INFINITE: dict[str, tuple[dict[str, Any], str, str]] = {
    "coordinate": ({"data": {"coordinates": {"x": RAW, "y": 0}}}, "1e999", "data.coordinates.x"),
    "scroll position": ({"data": {"scrollY": RAW}}, "-1e999", "data.scrollY"),
    "duration": ({"data": {"duration": RAW}}, "1e999", "data.duration"),
    "metadata value": ({"data": {"metadata": {"v": [RAW]}}}, "1e999", "data.metadata.v.0"),
    "timestamp": ({"timestamp": RAW}, "1e999", "timestamp"),
    # More digits than Python reads as an integer: read as the float they are.
    "long integer": ({"data": {"metadata": {"n": RAW}}}, "9" * 5000, "data.metadata.n"),
    "long timestamp": ({"timestamp": RAW}, "1" * 4301, "timestamp"),
}


@pytest.mark.parametrize("case", list(INFINITE))
def test_an_infinite_number_is_a_422_naming_the_field_and_stores_nothing(
    client: httpx.Client, admin: httpx.Client, case: str
) -> None:
    changes, raw, field = INFINITE[case]
    user = new_user()
    body = raw_json(movement(user) | changes, raw)
    response = client.post("/api/track", content=body, headers={"Content-Type": "text/plain"})
    assert_error(response, 422, field)
    assert stored_movements(admin, user) == []


# JSON's grammar allows "\ud83d"; it is what JSON.stringify makes of a string cut inside a pair.
HALF_PAIR = '"button.x\\ud83d"'


def test_half_a_surrogate_pair_is_a_422_naming_its_field_and_stores_nothing(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    body = raw_json([movement(user), movement(user, element=RAW)], HALF_PAIR)
    response = client.post("/api/track", content=body, headers={"Content-Type": "text/plain"})
    assert_error(response, 422, "events.1.data.element")
    assert stored_movements(admin, user) == []


DEEP = b"[" * 20_000 + b"]" * 20_000


@pytest.mark.parametrize("path", ["/api/track", "/api/track/session", "/api/admin/login"])
def test_json_nested_too_deeply_to_read_is_400_naming_the_body(
    client: httpx.Client, path: str
) -> None:
    response = client.post(path, content=DEEP, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "body")


def test_one_bad_event_rejects_the_whole_batch_and_stores_none_of_it(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    assert client.post("/api/track", json=movement(user, path="/before")).status_code == 200
    batch = [movement(user, path="/one"), movement(user, path="/two"), movement(user, "s2")]
    batch[2]["event"] = "tap"
    assert_error(client.post("/api/track", json=batch), 422, "events.2.event")
    # Neither the good events of the batch nor the new session were stored.
    assert [m["data"]["path"] for m in stored_movements(admin, user)] == ["/before"]
    assert stored_movements(admin, user, "s2") == []


# -- sessions -----------------------------------------------------------------------------------


def test_creating_a_session_returns_it_and_sets_a_private_visitor_cookie(
    client: httpx.Client,
) -> None:
    user = new_user()
    response = client.post(
        "/api/track/session",
        json={
            "userId": user,
            "sessionId": "s1",
            "deviceInfo": {"userAgent": "test", "screenResolution": "1280x720", "timezone": "UTC"},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    session = body["session"]
    assert (session["userId"], session["sessionId"], session["movements"]) == (user, "s1", [])
    assert session["deviceInfo"]["screenResolution"] == "1280x720"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("tracker_visitor=")
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/api;" in cookie


def test_the_visitor_cookie_reads_the_visitors_own_session(client: httpx.Client) -> None:
    user = new_user()
    client.post("/api/track/session", json={"userId": user, "sessionId": "s1"})
    client.post("/api/track", json=movement(user, path="/mine"))
    response = client.get("/api/track/session", params={"userId": user, "sessionId": "s1"})
    assert response.status_code == 200, response.text
    assert [m["data"]["path"] for m in response.json()["movements"]] == ["/mine"]


def test_another_visitor_is_forbidden_to_read_a_session(
    client: httpx.Client, serve_tracker: str
) -> None:
    user = new_user()
    client.post("/api/track/session", json={"userId": user, "sessionId": "s1"})
    with httpx.Client(base_url=serve_tracker, timeout=30) as other:
        other.post("/api/track/session", json={"userId": new_user(), "sessionId": "s1"})
        response = other.get("/api/track/session", params={"userId": user, "sessionId": "s1"})
    assert_error(response, 403)


def test_the_admin_reads_any_session_and_unknown_ones_are_404(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    client.post("/api/track", json=movement(user, path="/x"))
    found = admin.get("/api/track/session", params={"userId": user, "sessionId": "s1"})
    assert found.status_code == 200
    assert found.json()["userId"] == user
    missing = admin.get("/api/track/session", params={"userId": user, "sessionId": "nope"})
    assert_error(missing, 404)
    assert_error(
        admin.get("/api/track/session", params={"userId": new_user(), "sessionId": "s"}), 404
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sessionId": "s1"}, "userId"),
        ({"userId": "a\tb", "sessionId": "s1"}, "userId"),
        ({"userId": "u"}, "sessionId"),
        ({"userId": "u", "sessionId": "s" * 129}, "sessionId"),
    ],
)
def test_reading_a_session_with_missing_or_malformed_ids_is_422(
    admin: httpx.Client, params: dict[str, str], field: str
) -> None:
    assert_error(admin.get("/api/track/session", params=params), 422, field)


def test_session_requests_are_validated_like_movements(client: httpx.Client) -> None:
    user = new_user()
    cases: list[tuple[Any, str]] = [
        ({"userId": user}, "sessionId"),
        ({"userId": user, "sessionId": "s", "extra": 1}, "extra"),
        ({"userId": user, "sessionId": "s", "deviceInfo": {}}, "deviceInfo.userAgent"),
        (
            {"userId": user, "sessionId": "s", "deviceInfo": {"userAgent": "u" * 513}},
            "deviceInfo.userAgent",
        ),
        ({"userId": "line\nbreak", "sessionId": "s"}, "userId"),
        ([], "body"),
    ]
    for body, field in cases:
        response = client.post("/api/track/session", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field
    not_json = client.post(
        "/api/track/session", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_error(not_json, 400, "body")
    form = client.post("/api/track/session", data={"userId": user, "sessionId": "s"})
    assert_error(form, 415)
    big = {"userId": user, "sessionId": "s", "deviceInfo": {"userAgent": "u" * 70_000}}
    assert_error(client.post("/api/track/session", json=big), 413, "body")


@pytest.mark.parametrize("number", ["1e999", "9" * 5000, HALF_PAIR])
def test_a_session_request_with_a_value_msgspec_refuses_is_422_naming_it_like_a_movement(
    client: httpx.Client, number: str
) -> None:
    body = raw_json(
        {"userId": new_user(), "sessionId": "s", "deviceInfo": {"userAgent": RAW}}, number
    )
    response = client.post(
        "/api/track/session", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "deviceInfo.userAgent")


def test_a_session_with_do_not_track_is_declined_and_nothing_is_stored(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    for header in ({"DNT": "1"}, {"Sec-GPC": "1"}):
        declined = client.post(
            "/api/track/session", json={"userId": user, "sessionId": "s1"}, headers=header
        )
        assert declined.json() == {"success": False, "declined": True}
        assert "set-cookie" not in declined.headers
        tracked = client.post("/api/track", json=movement(user), headers=header)
        assert tracked.json() == {"success": True, "accepted": 0}
    assert_error(admin.get("/api/track/session", params={"userId": user, "sessionId": "s1"}), 404)


# -- admin routes -------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/api/analytics"),
    ("GET", "/api/analytics/stream"),
    ("GET", "/api/users/someone"),
    ("DELETE", "/api/users/someone"),
    ("GET", "/api/users/someone/export"),
    ("POST", "/api/admin/logout"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_without_or_with_a_wrong_token_are_401(
    client: httpx.Client, serve_config: Config, method: str, path: str
) -> None:
    assert serve_config.admin_token
    wrong = serve_config.admin_token[:-1] + ("A" if serve_config.admin_token[-1] != "A" else "B")
    attempts: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, {}),
        ({"Authorization": f"Bearer {wrong}"}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({"Authorization": f"Basic {serve_config.admin_token}"}, {}),
        ({}, {"tracker_admin": wrong}),
        ({}, {"tracker_admin": serve_config.admin_token}),  # the token is not a session
    ]
    for headers, cookies in attempts:
        client.cookies.clear()
        client.cookies.update(cookies)
        response = client.request(method, path, headers=headers)
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


def test_login_sets_a_strict_cookie_that_opens_admin_routes_and_logout_clears_it(
    client: httpx.Client, serve_config: Config
) -> None:
    login = client.post("/api/admin/login", json={"token": serve_config.admin_token})
    assert login.json() == {"success": True}
    cookie = login.headers["set-cookie"].lower()
    assert cookie.startswith("tracker_admin=")
    assert serve_config.admin_token.lower() not in cookie  # a signed session, not the token
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/analytics").status_code == 200
    logout = client.post("/api/admin/logout")
    assert logout.json() == {"success": True}
    assert "tracker_admin" not in client.cookies
    assert_error(client.get("/api/analytics"), 401)


def test_logout_needs_the_admin_so_another_site_cannot_sign_the_admin_out(
    client: httpx.Client, admin: httpx.Client
) -> None:
    # Another site's form posts without the SameSite=Strict cookie.
    refused = client.post("/api/admin/logout")
    assert_error(refused, 401)
    assert "set-cookie" not in refused.headers
    assert admin.post("/api/admin/logout").json() == {"success": True}


def test_answers_with_the_admins_or_a_visitors_data_may_not_be_stored_by_caches(
    client: httpx.Client, admin: httpx.Client, serve_config: Config
) -> None:
    user = new_user()
    session = {"userId": user, "sessionId": "s1"}
    answers = {
        "create session": client.post("/api/track/session", json=session),
        "read session": client.get("/api/track/session", params=session),
        "analytics": admin.get("/api/analytics"),
        "detail": admin.get(f"/api/users/{user}"),
        "export": admin.get(f"/api/users/{user}/export"),
        "refused": client.get("/api/analytics"),
        "login": client.post("/api/admin/login", json={"token": serve_config.admin_token}),
        "logout": client.post("/api/admin/logout"),
        "erase": admin.delete(f"/api/users/{user}"),
    }
    with admin.stream("GET", "/api/analytics/stream", timeout=20) as stream:
        answers["stream"] = stream
    for name, response in answers.items():
        assert response.status_code == (401 if name == "refused" else 200), name
        assert response.headers["cache-control"] == "no-store", name


def test_login_with_a_wrong_or_malformed_token_sets_no_cookie(client: httpx.Client) -> None:
    wrong = client.post("/api/admin/login", json={"token": "guess"})
    assert_error(wrong, 401)
    assert "set-cookie" not in wrong.headers
    for body in ({}, {"token": 42}, ["token"]):
        assert_error(client.post("/api/admin/login", json=body), 422, "token")
    not_json = client.post(
        "/api/admin/login", content=b"token=x", headers={"Content-Type": "text/plain"}
    )
    assert_error(not_json, 400, "body")
    assert_error(client.post("/api/admin/login", data={"token": "x"}), 415)


def test_analytics_reports_the_site_and_one_users_sessions(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    client.post("/api/track", json=movement(user, event="page_view", path="/report"))
    report = admin.get("/api/analytics", params={"userId": user}).json()
    for key in (
        "totalSessions",
        "userSessions",
        "recentActivity",
        "activeUsers",
        "totalUsers",
        "totalEvents",
        "eventsPerMinute",
        "topPages",
        "topElements",
        "heatmap",
        "scrollDepth",
        "journeys",
        "rageClicks",
        "eventsByType",
    ):
        assert key in report, key
    assert [s["userId"] for s in report["userSessions"]] == [user]
    filtered = admin.get("/api/analytics", params={"from": 0, "to": now_ms() + MINUTE_MS})
    assert filtered.status_code == 200
    assert admin.get("/api/analytics", params={"path": "/report"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "-5"}, "to"),
        # Digits to str.isdigit, not to int(), or read as other numbers than they show.
        ({"from": "\u00b2"}, "from"),
        ({"to": "\u0661\u0662\u0663"}, "to"),
        ({"from": "9" * 4301}, "from"),
        ({"to": str(10**14 + 1)}, "to"),
        ({"path": "/" + "p" * 2048}, "path"),
        ({"userId": "a\u200bb"}, "userId"),
    ],
)
def test_analytics_filters_are_validated(
    admin: httpx.Client, params: dict[str, str], field: str
) -> None:
    assert_error(admin.get("/api/analytics", params=params), 422, field)


def test_the_live_stream_announces_tracked_events(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    # The read timeout bounds the wait: the stream itself never ends.
    with admin.stream("GET", "/api/analytics/stream", timeout=20) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        assert client.post("/api/track", json=movement(user)).status_code == 200
        for line in lines:
            if line == "event: update":
                data = json.loads(next(lines).removeprefix("data: "))
                assert data["events"] >= 1 and data["at"] > 0
                break
        else:
            pytest.fail("the stream ended without an update")


def test_a_users_detail_export_and_erasure(client: httpx.Client, admin: httpx.Client) -> None:
    user = new_user()
    client.post("/api/track/session", json={"userId": user, "sessionId": "s1"})
    client.post("/api/track", json=[movement(user, path="/1"), movement(user, path="/2")])

    detail = admin.get(f"/api/users/{user}").json()
    assert detail["userId"] == user
    assert [len(s["movements"]) for s in detail["sessions"]] == [2]

    export = admin.get(f"/api/users/{user}/export")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert f'filename="{user}.ndjson"' in export.headers["content-disposition"]
    assert f"filename*=UTF-8''{user}.ndjson" in export.headers["content-disposition"]
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines and all(isinstance(line, dict) for line in lines)
    assert {"/1", "/2"} <= {line.get("data", {}).get("path") for line in lines}

    erased = admin.delete(f"/api/users/{user}")
    assert erased.status_code == 200
    assert erased.json()["userId"] == user and erased.json()["erased"] is True
    assert admin.get(f"/api/users/{user}").json() == {"userId": user, "sessions": []}
    assert admin.get(f"/api/users/{user}/export").text == ""
    assert_error(admin.get("/api/track/session", params={"userId": user, "sessionId": "s1"}), 404)
    # The visitor's cookie no longer finds anything either.
    assert_error(client.get("/api/track/session", params={"userId": user, "sessionId": "s1"}), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/users/a%00b"),
        ("DELETE", "/api/users/caf%C3%A9%0A"),
        ("GET", "/api/users/%09/export"),
    ],
)
def test_user_routes_with_a_malformed_id_are_422(
    admin: httpx.Client, method: str, path: str
) -> None:
    assert_error(admin.request(method, path), 422, "userId")


# -- service routes and pages -------------------------------------------------------------------


def test_healthz_is_ok(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def _healthz_requests(client: httpx.Client) -> float:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "tracker_http_requests_total" and sample.labels == {
                "route": "/healthz",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_metrics_are_prometheus_text_counting_requests(client: httpx.Client) -> None:
    before = _healthz_requests(client)
    for _ in range(3):
        client.get("/healthz")
    # One replica serves the session, so its count is the whole count.
    assert _healthz_requests(client) >= before + 3
    text = client.get("/metrics").text
    assert "tracker_http_request_duration_seconds_bucket" in text
    assert "tracker_events_accepted_total" in text


def _metric(client: httpx.Client, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return 0.0


def test_metrics_time_the_calls_to_hosts_and_count_the_requests_they_carry(
    client: httpx.Client,
) -> None:
    calls = _metric(client, "tracker_host_call_duration_seconds_count")
    carried = _metric(client, "tracker_host_call_requests_sum")
    for _ in range(3):
        assert client.post("/api/track", json=movement(new_user())).status_code == 200
    assert _metric(client, "tracker_host_call_duration_seconds_count") >= calls + 1
    assert _metric(client, "tracker_host_call_duration_seconds_sum") > 0
    assert _metric(client, "tracker_host_call_requests_sum") >= carried + 3


def test_the_openapi_document_served_is_valid(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    validate(document)
    assert "/api/track" in document["paths"]


def test_the_browser_client_is_served_as_javascript(client: httpx.Client) -> None:
    response = client.get("/tracker.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text.strip()


# (`/app/a%0Ab`: any /app/... URL is the demo app, even one with a line break.)
@pytest.mark.parametrize(
    "path", ["/", "/long", "/form", "/app/cart/42", "/app/a%0Ab", "/analytics"]
)
def test_pages_are_html_with_the_content_security_policy(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith(CSP)
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script" in response.text


def test_api_answers_and_errors_carry_the_security_headers_too(client: httpx.Client) -> None:
    tracked = client.post("/api/track", json=movement(new_user()))
    assert tracked.status_code == 200
    refused = client.post("/api/track", content=b"{}", headers={"content-type": "text/csv"})
    assert refused.status_code == 415
    answers = (client.get("/healthz"), client.get("/api/analytics"), client.get("/nope"))
    for response in (*answers, tracked, refused):
        assert response.headers["content-security-policy"].startswith(CSP)
        assert response.headers["x-content-type-options"] == "nosniff"


def test_unknown_routes_are_404_and_wrong_methods_405(client: httpx.Client) -> None:
    assert client.get("/api/nope").status_code == 404
    assert client.get("/api/track").status_code == 405
    assert client.put("/api/users/x").status_code == 405


# -- declared answers ---------------------------------------------------------------------------


def declared(path: str, method: str) -> tuple[Any, ...]:
    """The response types the route table declares for a route's 200."""
    (route,) = [r for r in ROUTES if r.path == path and r.method == method]
    return route.ok.body


def decodes_as_declared(response: httpx.Response, path: str, method: str) -> None:
    assert response.status_code == 200, response.text
    errors = []
    for kind in declared(path, method):
        try:
            msgspec.json.decode(response.content, type=kind, strict=True)
            return
        except msgspec.ValidationError as exc:
            errors.append(f"{kind}: {exc}")
    raise AssertionError(f"{method} {path}: {errors}")


def test_every_json_answer_decodes_as_the_type_the_route_table_declares(
    client: httpx.Client, admin: httpx.Client, serve_tracker: str, serve_config: Config
) -> None:
    user = new_user()
    session = {"userId": user, "sessionId": "s1", "deviceInfo": {"userAgent": "Firefox"}}
    decodes_as_declared(
        client.post("/api/track/session", json=session), "/api/track/session", "POST"
    )
    declined = client.post("/api/track/session", json=session, headers={"DNT": "1"})
    decodes_as_declared(declined, "/api/track/session", "POST")
    tracked = client.post("/api/track", json=movement(user, path="/", element="a#home"))
    decodes_as_declared(tracked, "/api/track", "POST")
    params = {"userId": user, "sessionId": "s1"}
    decodes_as_declared(
        client.get("/api/track/session", params=params), "/api/track/session", "GET"
    )
    decodes_as_declared(
        admin.get("/api/analytics", params={"userId": user}), "/api/analytics", "GET"
    )
    decodes_as_declared(admin.get(f"/api/users/{user}"), "/api/users/{user_id}", "GET")
    decodes_as_declared(admin.delete(f"/api/users/{user}"), "/api/users/{user_id}", "DELETE")
    decodes_as_declared(client.get("/healthz"), "/healthz", "GET")
    decodes_as_declared(client.get("/openapi.json"), "/openapi.json", "GET")
    with httpx.Client(base_url=serve_tracker, timeout=30) as browser:
        login = browser.post("/api/admin/login", json={"token": serve_config.admin_token})
        decodes_as_declared(login, "/api/admin/login", "POST")
        decodes_as_declared(browser.post("/api/admin/logout"), "/api/admin/logout", "POST")
