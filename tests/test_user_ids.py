"""Free-form user IDs (any 1-128 printable characters) through HTTP and the Python API: tracked,
read, exported and erased whole, and never a path, a header or a token's message of their own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
import ray
from conftest import file_url, holders, stored_items, user_traces
from support import movement

from tracker import auth
from tracker.config import Config
from tracker.errors import InvalidInput, Unauthorized
from tracker.schema import check_user_id

HOSTILE = [
    "user_123",
    "a+b@example.com",
    "Jane Doe",
    "a/../b",
    "../../etc/passwd",
    "100%",
    "%2F%25",
    "<img src=x onerror=alert(1)>",
    'quote"back\\slash;',
    "名前 ✓ ünïcode",
    "?q=1#frag",
    "x" * 127 + "é",
]


@pytest.fixture
def admin(serve_tracker: str, serve_config: Config) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {serve_config.admin_token}"}
    with httpx.Client(base_url=serve_tracker, timeout=30, headers=headers) as c:
        yield c


def user_path(user_id: str, rest: str = "") -> str:
    return f"/api/users/{quote(user_id, safe='')}{rest}"


@pytest.mark.parametrize("user_id", HOSTILE)
def test_any_printable_user_id_is_tracked_read_exported_and_erased_over_http(
    serve_tracker: str, serve_config: Config, admin: httpx.Client, user_id: str
) -> None:
    assert serve_config.secret is not None
    token = auth.mint_token(serve_config.secret, user_id)
    with httpx.Client(
        base_url=serve_tracker, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as visitor:
        started = visitor.post("/api/track/session", json={"userId": user_id, "sessionId": "s1"})
        assert started.status_code == 200, started.text
        events = [movement(user_id, eventId=f"e{i}") for i in range(3)]
        tracked = visitor.post("/api/track", json=events)
        assert tracked.status_code == 200, tracked.text
        own = visitor.get("/api/track/session", params={"userId": user_id, "sessionId": "s1"})
        assert [m["eventId"] for m in own.json()["movements"]] == ["e0", "e1", "e2"]

    detail = admin.get(user_path(user_id))
    assert detail.status_code == 200, detail.text
    assert detail.json()["userId"] == user_id
    export = admin.get(user_path(user_id, "/export"))
    assert export.status_code == 200, export.text
    disposition = export.headers["content-disposition"]
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == f"{user_id}.ndjson"
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert {line.get("eventId") for line in lines} >= {"e0", "e1", "e2"}

    erased = admin.delete(user_path(user_id))
    assert erased.status_code == 200, erased.text
    assert erased.json()["userId"] == user_id
    assert admin.get(user_path(user_id, "/export")).text == ""


@pytest.mark.parametrize(
    "path",
    ["/api/users/a%00b", "/api/users/line%0Abreak", "/api/users/%E2%80%8B", "/api/users/%FF"],
)
def test_a_user_route_with_an_id_that_is_not_printable_text_is_422(
    admin: httpx.Client, path: str
) -> None:
    for method, rest in (("GET", ""), ("DELETE", ""), ("GET", "/export")):
        response = admin.request(method, path + rest)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "userId"


def test_a_user_id_with_a_line_break_is_refused_when_tracked(serve_tracker: str) -> None:
    sent = httpx.post(f"{serve_tracker}/api/track", json=movement("a\nb"), timeout=30)
    assert sent.status_code == 422
    assert sent.json()["field"] == "userId"


def test_no_identity_token_of_a_user_opens_the_admin_routes_even_with_one_key() -> None:
    key = "k" * 40
    config = Config.from_env({}, admin_token=key, secret=key)
    access = auth.Access(config)
    # A user may call themselves "admin session"; the admin session's subject is no user ID.
    token = auth.mint_token(key, "admin session")
    with pytest.raises(Unauthorized, match="signature"):
        access.require_admin({}, {auth.ADMIN_COOKIE: token}, "127.0.0.1")
    access.require_admin({}, {auth.ADMIN_COOKIE: access.admin_cookie()}, "127.0.0.1")
    with pytest.raises(InvalidInput):
        check_user_id("userId", auth._ADMIN_SESSION)


# The per-user placement starts a process per user: two of them name its actors and journals.
@pytest.mark.parametrize(("placement", "users"), [("sharded", HOSTILE), ("per-user", HOSTILE[3:5])])
def test_hostile_user_ids_through_the_python_api_stay_inside_their_hashed_folders(
    make_tracker: Any, tmp_path: Any, placement: str, users: list[str]
) -> None:
    storage = file_url(tmp_path / "data")
    t = make_tracker(storage=storage, placement=placement)
    for user_id in users:
        handle = t.user(user_id)
        assert ray.get(handle.track.remote(movement(user_id, eventId="e1"))) == 1
        exported = ray.get(handle.export.remote())
        assert "e1" in {line.get("eventId") for line in exported}
    t.flush()
    names = list(stored_items(tmp_path / "data"))
    for user_id in users:
        assert not [name for name in names if user_id in name]
    for user_id in users:
        assert ray.get(t.user(user_id).erase.remote())["erased"] is True
    t.flush()
    assert holders(tmp_path / "data", [trace for u in users for trace in user_traces(u)]) == []
