"""Security of the HTTP ingress: identities, other visitors' data, admin routes, floods,
oversized bodies, hostile user IDs and stored script payloads.

Most tests use the session's Serve deployment; tests of settings it lacks (rate limits, allowed
origins, body timeouts) build apps of their own, and the storage tests drive a `UserHost` on
local files directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import test_http
from browser_support import serve_asgi
from conftest import file_url
from starlette.routing import Match, Mount, Route, WebSocketRoute
from support import eventually as _until
from support import wait_for
from test_http import assert_error, movement, new_user, stored_movements

from tracker.api import Tracker, connect, shutdown
from tracker.auth import ADMIN_SESSION_S, mint_token
from tracker.config import Config
from tracker.errors import ConfigError, InvalidInput, RequestTimeout
from tracker.history import user_key
from tracker.ingress import build_app, read_limited
from tracker.openapi import openapi_document
from tracker.storage import FileStorage
from tracker.user_host import UserHost

# One Serve deployment for the whole test session: the fixtures must be registered once (as a
# plugin), not copied into each module, or each module would deploy its own.

HOUR_S = 3600


client = test_http.client
admin = test_http.admin


def secret_of(config: Config) -> str:
    assert config.secret
    return config.secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def identified_user() -> str:
    """A user the site's backend knows (not a random UUID): writing needs their token."""
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


OWN_ADMIN = "security-admin-token-0123456789abcdef"
OWN_SECRET = "security-secret-0123456789abcdef0123"
JSON = {"Content-Type": "application/json"}
# A site allowed to make the tracking requests cross-origin, where a test allows one.
SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def own_tracker(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracker]:
    """Actors of this module's own, under apps built with settings the session's deployment
    lacks; each test builds its app, so its rate limits start afresh."""
    config = Config.from_env(
        {},
        storage=file_url(tmp_path_factory.mktemp("security") / "data"),
        namespace=f"security-{uuid.uuid4().hex[:12]}",
        admin_token=OWN_ADMIN,
        secret=OWN_SECRET,
        hosts=1,
    )
    yield connect(config=config)
    shutdown(config)


@contextmanager
def served(tracker: Tracker, **settings: Any) -> Iterator[str]:
    """The app over `tracker`, with these `Config` settings, on a real server; its URL."""
    with serve_asgi(build_app(tracker, tracker.config.replace(**settings))) as url:
        yield url


def client_at(url: str, address: str = "127.0.0.1") -> httpx.Client:
    """A client from `address`: the server on 127.0.0.1 sees 127.0.0.x as other clients."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, timeout=30, transport=transport)


# -- the route table ------------------------------------------------------------------------------

# A value for each path parameter of the document or the app.
SAMPLE_PARAMETERS = {
    "userId": str(uuid.uuid4()),
    "user_id": str(uuid.uuid4()),
    "path": "a",
    "rest": "a",
    "name": "a-name",
    "asset": "hover.0123456789",
}


def concrete(template: str) -> str:
    return template.format(**SAMPLE_PARAMETERS)


def documented(document: dict[str, Any], path: str, method: str) -> bool:
    """Whether the document lists `method` on a path template that `path` is an instance of."""
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return True
    return False


def test_every_route_of_the_app_is_documented_and_every_documented_operation_is_served(
    own_tracker: Tracker,
) -> None:
    app = build_app(own_tracker, own_tracker.config)
    document = openapi_document()
    routes = [route for route in app.routes if not isinstance(route, Mount)]
    for route in routes:
        assert isinstance(route, Route | WebSocketRoute)
        path = route.url_path_for(
            route.name, **{name: SAMPLE_PARAMETERS[name] for name in route.param_convertors}
        )
        methods = {"GET"} if isinstance(route, WebSocketRoute) else route.methods or set()
        for method in methods - {"HEAD"}:
            assert documented(document, path, method), f"{method} {route.path}"
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            kind = "websocket" if "101" in operation["responses"] else "http"
            scope = {"type": kind, "path": concrete(template), "method": method.upper()}
            matches = [route.matches(scope)[0] for route in routes]
            assert Match.FULL in matches, f"{method.upper()} {template}"


def test_every_route_documented_for_the_admin_refuses_anyone_else(client: httpx.Client) -> None:
    document = openapi_document()
    admin_only = [{"adminBearer": []}, {"adminCookie": []}]
    refused = []
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            # A WebSocket's refusal is tested with a WebSocket client (test_track_socket.py).
            if operation.get("security") == admin_only and "101" not in operation["responses"]:
                response = client.request(method.upper(), concrete(template))
                assert response.status_code == 401, f"{method.upper()} {template}"
                assert response.headers["www-authenticate"] == "Bearer"
                refused.append(f"{method.upper()} {template}")
    # 6 of the site's and users' routes, 12 of goals, funnels, retention and experiments, 4 of
    # the predictions.
    assert len(refused) == 22


# -- identified users ---------------------------------------------------------------------------


def test_an_identified_user_with_their_token_may_write_and_read(
    client: httpx.Client, serve_config: Config
) -> None:
    user = identified_user()
    auth = bearer(mint_token(secret_of(serve_config), user))
    created = client.post(
        "/api/track/session", json={"userId": user, "sessionId": "s1"}, headers=auth
    )
    assert created.status_code == 200, created.text
    assert client.post("/api/track", json=movement(user), headers=auth).status_code == 200
    client.cookies.clear()
    # The token alone (no visitor cookie) reads the user's session.
    read = client.get(
        "/api/track/session", params={"userId": user, "sessionId": "s1"}, headers=auth
    )
    assert read.status_code == 200
    assert len(read.json()["movements"]) == 1


@pytest.mark.parametrize(
    "user",
    [
        "alice",
        "alice@example.com",
        # A version 1 UUID is not a random one: it could name someone.
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        # Not in canonical dashed form.
        uuid.uuid4().hex,
    ],
)
def test_an_identified_user_without_a_token_is_401(
    client: httpx.Client, admin: httpx.Client, user: str
) -> None:
    assert_error(client.post("/api/track", json=movement(user)), 401)
    assert_error(client.post("/api/track/session", json={"userId": user, "sessionId": "s1"}), 401)
    assert stored_movements(admin, user) == []


TOKENS: dict[str, Callable[[Config, str], str]] = {
    "forged with another secret": lambda config, user: mint_token("not-the-secret", user),
    "expired an hour ago": lambda config, user: mint_token(
        secret_of(config), user, ttl_s=60, now_s=time.time() - HOUR_S
    ),
    "of another user": lambda config, user: mint_token(secret_of(config), identified_user()),
    "with its expiry pushed back": lambda config, user: _push_expiry(
        mint_token(secret_of(config), user)
    ),
    "malformed": lambda config, user: "v1.not-a-token",
    "the admin token": lambda config, user: str(config.admin_token),
}


def _push_expiry(token: str) -> str:
    version, expiry, signature = token.split(".")
    return f"{version}.{int(expiry) + 10 * HOUR_S}.{signature}"


@pytest.mark.parametrize("kind", list(TOKENS))
def test_an_identified_user_with_a_bad_token_is_401_everywhere(
    client: httpx.Client, admin: httpx.Client, serve_config: Config, kind: str
) -> None:
    user = identified_user()
    # The session exists, so a 401 on reading it is about the token, not a missing session.
    valid = bearer(mint_token(secret_of(serve_config), user))
    assert client.post("/api/track", json=movement(user), headers=valid).status_code == 200
    client.cookies.clear()
    auth = bearer(TOKENS[kind](serve_config, user))
    assert_error(client.post("/api/track", json=movement(user), headers=auth), 401)
    session = {"userId": user, "sessionId": "s1"}
    assert_error(client.post("/api/track/session", json=session, headers=auth), 401)
    if kind != "the admin token":
        # (The admin token reads any session, as the admin.)
        assert_error(client.get("/api/track/session", params=session, headers=auth), 401)
    assert len(stored_movements(admin, user)) == 1


async def _over(app: Any, scheme: str, calls: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """What `calls` return, made to `app` in process by a browser at `scheme`://tracker.test."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://tracker.test") as c:
        return await calls(c)


def test_an_identified_user_gets_no_visitor_cookie_and_reads_with_a_valid_token_only(
    own_tracker: Tracker,
) -> None:
    """A token expires; a visitor cookie lasts a year. An identified user's cookie (as one was
    set before they were kept to anonymous visitors) must not read past the token."""
    app = build_app(own_tracker, own_tracker.config)
    user = identified_user()
    session = {"userId": user, "sessionId": "s1"}
    valid = bearer(mint_token(OWN_SECRET, user))
    expired = bearer(mint_token(OWN_SECRET, user, ttl_s=60, now_s=time.time() - HOUR_S))
    old_cookie = f"{user}.{app.state.ingress.access.visitor_proof(user)}"

    async def calls(browser: httpx.AsyncClient) -> tuple[httpx.Response, dict[str, int]]:
        created = await browser.post("/api/track/session", json=session, headers=valid)
        browser.cookies.set("tracker_visitor", old_cookie, path="/api/track")
        reads = {}
        for name, headers in (("no token", {}), ("expired", expired), ("valid", valid)):
            read = await browser.get("/api/track/session", params=session, headers=headers)
            reads[name] = read.status_code
        return created, reads

    created, reads = asyncio.run(_over(app, "https", calls))
    assert created.status_code == 200, created.text
    assert "set-cookie" not in created.headers
    assert reads == {"no token": 403, "expired": 401, "valid": 200}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_visitor_cookie_is_secure_when_the_request_came_over_https(
    own_tracker: Tracker, scheme: str
) -> None:
    app = build_app(own_tracker, own_tracker.config)
    user = new_user()
    session = {"userId": user, "sessionId": "s1"}

    async def calls(browser: httpx.AsyncClient) -> tuple[str, int]:
        created = await browser.post("/api/track/session", json=session)
        read = await browser.get("/api/track/session", params=session)
        return created.headers["set-cookie"], read.status_code

    cookie, read = asyncio.run(_over(app, scheme, calls))
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert attributes[0].startswith(f"tracker_visitor={user}.")
    assert ("secure" in attributes) == (scheme == "https")
    assert read == 200  # the cookie reads the visitor's own session


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_admin_cookie_is_secure_when_the_login_came_over_https(
    own_tracker: Tracker, scheme: str
) -> None:
    app = build_app(own_tracker, own_tracker.config)

    async def calls(browser: httpx.AsyncClient) -> tuple[str, int, str]:
        login = await browser.post("/api/admin/login", json={"token": OWN_ADMIN})
        analytics = await browser.get("/api/analytics")
        logout = await browser.post("/api/admin/logout")
        return login.headers["set-cookie"], analytics.status_code, logout.headers["set-cookie"]

    login, analytics, logout = asyncio.run(_over(app, scheme, calls))
    for cookie in (login, logout):
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert attributes[0].startswith("tracker_admin=")
        assert ("secure" in attributes) == (scheme == "https")
    assert analytics == 200


def test_failed_admin_authentication_is_limited_per_address_and_success_is_not(
    own_tracker: Tracker,
) -> None:
    # One failure per address, regained after a minute: longer than the test takes.
    user = identified_user()
    identity = bearer(mint_token(OWN_SECRET, user))
    session = {"userId": user, "sessionId": "s1"}
    with served(own_tracker, admin_failures_per_min=1) as url:
        with client_at(url, "127.0.0.8") as guesser:
            wrong = bearer("x" * 43)
            assert_error(guesser.get("/api/analytics", headers=wrong), 401)
            limited = guesser.get("/api/analytics", headers=wrong)
            assert_error(limited, 429)
            assert int(limited.headers["retry-after"]) >= 1
            # Past the limit even the right token is refused before it is compared: a guess
            # there learns nothing.
            assert_error(guesser.get("/api/analytics", headers=bearer(OWN_ADMIN)), 429)
            assert_error(guesser.post("/api/admin/login", json={"token": OWN_ADMIN}), 429)
            assert_error(guesser.get("/api/track/session", params=session, headers=wrong), 429)
        with client_at(url, "127.0.0.9") as operator:
            # Successes cost nothing: not the admin's, nor a user's with their identity token.
            for _ in range(3):
                assert operator.get("/api/analytics", headers=bearer(OWN_ADMIN)).status_code == 200
                login = operator.post("/api/admin/login", json={"token": OWN_ADMIN})
                assert login.status_code == 200
            created = operator.post("/api/track/session", json=session, headers=identity)
            assert created.status_code == 200, created.text
            for _ in range(3):
                read = operator.get("/api/track/session", params=session, headers=identity)
                assert read.status_code == 200, read.text
            # A wrong login token is a failure as a wrong bearer is.
            assert_error(operator.post("/api/admin/login", json={"token": "guess"}), 401)
            assert_error(operator.post("/api/admin/login", json={"token": "guess"}), 429)


@pytest.mark.parametrize("name", ["TRACKER_ADMIN_TOKEN", "TRACKER_SECRET"])
def test_an_operator_chosen_secret_shorter_than_32_characters_is_refused_at_start(
    name: str,
) -> None:
    short = "correct-horse-battery-staple-31c"[:31]
    with pytest.raises(ConfigError, match=name) as refused:
        Config.from_env({name: short})
    assert short not in str(refused.value)  # a secret is never put in a message
    assert Config.from_env({name: short + "x"})


def test_the_admin_session_ends_for_json_and_the_live_stream_at_its_expiry(
    own_tracker: Tracker,
) -> None:
    now = [time.time()]
    app = build_app(own_tracker, own_tracker.config, clock=lambda: now[0])
    with serve_asgi(app) as url, client_at(url) as browser:
        assert browser.post("/api/admin/login", json={"token": OWN_ADMIN}).status_code == 200
        assert browser.get("/api/analytics").status_code == 200
        with browser.stream("GET", "/api/analytics/stream", timeout=30) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            now[0] += ADMIN_SESSION_S
            # The stream ends by itself, once the wait it was in is over (the read timeout
            # bounds the wait for that).
            list(lines)
        assert_error(browser.get("/api/analytics"), 401)
        assert_error(browser.post("/api/admin/logout"), 401)


def test_a_batch_mixing_users_is_422_and_stores_nothing(
    client: httpx.Client, admin: httpx.Client, serve_config: Config
) -> None:
    visitor, victim = new_user(), identified_user()
    # An anonymous visitor cannot smuggle events for an identified user into their batch,
    batch = [movement(visitor), movement(victim)]
    assert_error(client.post("/api/track", json=batch), 422, "events.1.userId")
    # nor may a user with a valid token write for anyone else in theirs.
    auth = bearer(mint_token(secret_of(serve_config), victim))
    batch = [movement(victim), movement(visitor)]
    assert_error(client.post("/api/track", json=batch, headers=auth), 422, "events.1.userId")
    assert stored_movements(admin, visitor) == []
    assert stored_movements(admin, victim) == []


# -- other visitors' data -----------------------------------------------------------------------


@contextmanager
def _visitor(serve_tracker: str, user: str) -> Iterator[httpx.Client]:
    """A browser that started a session for `user` and so holds their visitor cookie."""
    with httpx.Client(base_url=serve_tracker, timeout=30) as browser:
        response = browser.post("/api/track/session", json={"userId": user, "sessionId": "s1"})
        assert response.status_code == 200
        yield browser


def test_a_visitor_cannot_read_another_visitors_session_with_any_cookie(
    serve_tracker: str,
) -> None:
    alice, mallory = new_user(), new_user()
    with _visitor(serve_tracker, alice), _visitor(serve_tracker, mallory) as thief:
        own_cookie = thief.cookies["tracker_visitor"]
        _, _, own_proof = own_cookie.rpartition(".")
        target = {"userId": alice, "sessionId": "s1"}
        attempts = [
            own_cookie,
            # Alice's ID with Mallory's proof, a made-up proof, and no proof.
            f"{alice}.{own_proof}",
            f"{alice}.{'0' * len(own_proof)}",
            alice,
            f"{alice}.",
        ]
        for cookie in attempts:
            thief.cookies.clear()
            thief.cookies.set("tracker_visitor", cookie, path="/api/track")
            assert_error(thief.get("/api/track/session", params=target), 403)


def test_a_stranger_cannot_read_extend_or_change_a_session_by_posting_its_ids(
    serve_tracker: str, admin: httpx.Client
) -> None:
    alice = new_user()
    target = {"userId": alice, "sessionId": "s1"}
    with _visitor(serve_tracker, alice) as owner:
        assert owner.post("/api/track", json=movement(alice, path="/private")).status_code == 200
        before = admin.get("/api/track/session", params=target).json()
        with httpx.Client(base_url=serve_tracker, timeout=30) as stranger:
            sent = {**target, "deviceInfo": {"userAgent": "mallory"}}
            response = stranger.post("/api/track/session", json=sent)
            assert response.status_code == 200, response.text
            # What it sent, and nothing else: no movements, no times, no cookie.
            assert response.json() == {"success": True, "session": sent}
            assert "set-cookie" not in response.headers
            assert_error(stranger.get("/api/track/session", params=target), 403)
        after = admin.get("/api/track/session", params=target).json()
        assert after == before  # not extended (lastActivity), not changed (deviceInfo)
        # The owner, by the cookie, resumes the session as ever.
        resumed = owner.post("/api/track/session", json=target)
        assert [m["data"]["path"] for m in resumed.json()["session"]["movements"]] == ["/private"]


def test_a_stranger_who_starts_another_session_of_a_visitor_gets_no_cookie_for_them(
    serve_tracker: str,
) -> None:
    """The visitor cookie reads every session of its user: one for a new session of a user
    who has others would read those."""
    alice = new_user()
    with (
        _visitor(serve_tracker, alice),
        httpx.Client(base_url=serve_tracker, timeout=30) as stranger,
    ):
        started = stranger.post("/api/track/session", json={"userId": alice, "sessionId": "s2"})
        assert started.status_code == 200, started.text
        assert started.json()["session"]["sessionId"] == "s2"
        assert "set-cookie" not in started.headers
        target = {"userId": alice, "sessionId": "s1"}
        assert_error(stranger.get("/api/track/session", params=target), 403)


def test_a_visitor_cookie_of_other_than_ascii_bytes_counts_as_no_cookie(
    client: httpx.Client,
) -> None:
    user = new_user()
    assert client.post("/api/track/session", json={"userId": user, "sessionId": "s1"})
    client.cookies.clear()
    # Browsers send a cookie's bytes as they were set; é as one Latin-1 byte here.
    cookie = f"tracker_visitor={user}.".encode() + b"\xe9"
    response = client.get(
        "/api/track/session", params={"userId": user, "sessionId": "s1"}, headers={"Cookie": cookie}
    )
    assert_error(response, 403)


def test_visitor_cookies_and_identity_tokens_do_not_open_admin_routes(
    serve_tracker: str, serve_config: Config
) -> None:
    user = identified_user()
    token = mint_token(secret_of(serve_config), user)
    with _visitor(serve_tracker, new_user()) as browser:
        for headers in ({}, bearer(token)):
            for method, path in (("GET", "/api/analytics"), ("DELETE", f"/api/users/{user}")):
                assert_error(browser.request(method, path, headers=headers), 401)


def test_other_origins_get_no_cors_permission(client: httpx.Client) -> None:
    headers = {"Origin": "https://evil.example"}
    response = client.get("/api/analytics", headers=headers)
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/api/track",
        headers={**headers, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_a_configured_origin_may_track_cross_origin_and_others_may_not(
    make_tracker: Callable[..., Any], tmp_path: Path
) -> None:
    """With TRACKER_ALLOWED_ORIGINS, tracking requests from that origin get CORS permission
    (and the security headers); a request with no Origin is served as ever; others are 403
    and store nothing."""
    shop = "https://shop.example"
    tracker = make_tracker(
        storage=f"file://{tmp_path / 'data'}",
        allowed_origins=(shop,),
        admin_token=OWN_ADMIN,
        secret=OWN_SECRET,
        hosts=1,
    )
    user = new_user()
    with (
        serve_asgi(build_app(tracker, tracker.config)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        preflight = client.options(
            "/api/track",
            headers={
                "Origin": shop,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == shop
        for origin in (shop, None, "https://evil.example"):
            headers = {"Origin": origin} if origin else {}
            response = client.post("/api/track", json=movement(user), headers=headers)
            if origin == "https://evil.example":
                assert_error(response, 403)
            else:
                assert response.json() == {"success": True, "accepted": 1}
            assert response.headers.get("access-control-allow-origin") == (
                shop if origin == shop else None
            )
            assert response.headers["x-content-type-options"] == "nosniff"
        client.headers["Authorization"] = f"Bearer {OWN_ADMIN}"
        assert len(stored_movements(client, user)) == 2


def test_the_trackers_own_origin_is_the_host_the_browser_asked_for_whatever_the_scheme(
    own_tracker: Tracker,
) -> None:
    """Behind a balancer that ends TLS the replica sees plain HTTP, and the `Host` the browser
    sent; `X-Forwarded-Host` is not read (the replica cannot tell who set it)."""
    app = build_app(own_tracker, own_tracker.config)
    user = new_user()
    public = "https://tracker.example.com"
    attempts = {
        "same host": {"Host": "tracker.example.com", "Origin": public},
        "same host and port": {"Host": "tracker.example.com:8443", "Origin": f"{public}:8443"},
        "another port": {"Host": "tracker.example.com", "Origin": f"{public}:8443"},
        "another host": {"Host": "10.0.0.5:8000", "Origin": public},
        "forwarded host": {
            "Host": "10.0.0.5:8000",
            "X-Forwarded-Host": "tracker.example.com",
            "Origin": public,
        },
    }

    async def calls(browser: httpx.AsyncClient) -> dict[str, int]:
        statuses = {}
        for name, headers in attempts.items():
            response = await browser.post("/api/track", json=movement(user), headers=headers)
            statuses[name] = response.status_code
        return statuses

    assert asyncio.run(_over(app, "http", calls)) == {
        "same host": 200,
        "same host and port": 200,
        "another port": 403,
        "another host": 403,
        "forwarded host": 403,
    }


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("*", "list the sites' origins"),
        ("https://shop.example,*", "list the sites' origins"),
        ("https://shop.example/", "is not an origin"),
        ("shop.example", "is not an origin"),
    ],
)
def test_allowed_origins_that_could_never_match_or_match_any_site_are_refused_at_start(
    value: str, complaint: str
) -> None:
    with pytest.raises(ConfigError, match="TRACKER_ALLOWED_ORIGINS") as refused:
        Config.from_env({"TRACKER_ALLOWED_ORIGINS": value})
    assert complaint in str(refused.value)
    assert Config.from_env({"TRACKER_ALLOWED_ORIGINS": "https://shop.example"}).allowed_origins


def test_an_allowed_origin_may_make_tracking_requests_only_and_never_read_admin_routes(
    own_tracker: Tracker,
) -> None:
    """The tracked site is usually the same site as the tracker, so the admin's SameSite cookie
    goes along with its scripts' requests: CORS must not let them read the answers."""
    site = "https://www.example.com"
    user = new_user()
    with served(own_tracker, allowed_origins=(site,)) as url, client_at(url) as browser:
        assert browser.post("/api/admin/login", json={"token": OWN_ADMIN}).status_code == 200
        origin = {"Origin": site}
        for path in ("/api/track", "/api/track/session"):
            preflight = browser.options(
                path, headers={**origin, "Access-Control-Request-Method": "POST"}
            )
            assert preflight.headers["access-control-allow-origin"] == site
            assert preflight.headers["access-control-allow-credentials"] == "true"
        session = {"userId": user, "sessionId": "s1"}
        created = browser.post("/api/track/session", json=session, headers=origin)
        assert created.headers["access-control-allow-origin"] == site
        reads = [
            ("GET", "/api/analytics"),
            ("GET", f"/api/users/{user}"),
            ("GET", f"/api/users/{user}/export"),
            ("GET", f"/api/track/session?userId={user}&sessionId=s1"),
        ]
        for method, path in reads:
            response = browser.request(method, path, headers=origin)
            assert response.status_code == 200, (path, response.text)  # the cookie did open it
            assert "access-control-allow-origin" not in response.headers, path
            assert "access-control-allow-credentials" not in response.headers, path
            preflight = browser.options(
                path, headers={**origin, "Access-Control-Request-Method": method}
            )
            assert "access-control-allow-origin" not in preflight.headers, path
        login = browser.post("/api/admin/login", json={"token": OWN_ADMIN}, headers=origin)
        assert "access-control-allow-origin" not in login.headers


@pytest.mark.parametrize("path", ["/api/track", "/api/track/session"])
def test_a_cross_origin_429_lets_the_page_read_its_retry_after(
    own_tracker: Tracker, path: str
) -> None:
    app = build_app(
        own_tracker, own_tracker.config.replace(rate_limit=0.2, allowed_origins=(SHOP,))
    )

    async def calls(browser: httpx.AsyncClient) -> list[httpx.Response]:
        # Not JSON: refused once admitted, without a host call; the third is over the burst.
        return [
            await browser.post(path, content=b"{not json", headers={**JSON, "Origin": SHOP})
            for _ in range(3)
        ]

    responses = asyncio.run(_over(app, "https", calls))
    assert [response.status_code for response in responses] == [400, 400, 429]
    limited = responses[-1]
    assert limited.headers["access-control-allow-origin"] == SHOP
    assert int(limited.headers["retry-after"]) >= 1
    exposed = limited.headers["access-control-expose-headers"].lower().split(",")
    assert "retry-after" in [name.strip() for name in exposed]


# -- floods -------------------------------------------------------------------------------------


def test_a_flood_from_one_client_gets_429_while_another_client_is_served(
    make_tracker: Callable[..., Any], tmp_path: Path
) -> None:
    # A burst of 2, then one request every 5 s: what a test on a loaded machine can rely on.
    tracker = make_tracker(
        storage=f"file://{tmp_path / 'data'}",
        rate_limit=0.2,
        admin_token=OWN_ADMIN,
        secret=OWN_SECRET,
        hosts=1,
    )
    flooder, other = new_user(), new_user()
    # The server listens on 127.0.0.1; a client bound to 127.0.0.2 is another address to it.
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        serve_asgi(build_app(tracker, tracker.config)) as url,
        httpx.Client(base_url=url, timeout=30) as flood,
        httpx.Client(base_url=url, timeout=30, transport=elsewhere) as bystander,
    ):
        responses = [flood.post("/api/track", json=movement(flooder)) for _ in range(20)]
        statuses = [response.status_code for response in responses]
        assert statuses[:2] == [200, 200], statuses
        assert statuses.count(429) >= 15, statuses
        limited = responses[statuses.index(429)]
        assert_error(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # The message says the wait the header says (whole seconds).
        wait = limited.headers["retry-after"]
        assert limited.json()["error"] == f"rate limited; retry after {wait} s"
        # The flooding address is limited whichever user it writes for,
        assert_error(flood.post("/api/track", json=movement(new_user())), 429)
        # while another address writing for another user is served,
        assert bystander.post("/api/track", json=movement(other)).status_code == 200
        # but not for the flooded user: users have buckets of their own too.
        assert_error(bystander.post("/api/track", json=movement(flooder)), 429)


def test_requests_without_a_users_credentials_do_not_use_up_that_users_rate_limit(
    own_tracker: Tracker,
) -> None:
    # A burst of 2 per client address and per user, then one request every 5 s.
    user = identified_user()
    token = bearer(mint_token(OWN_SECRET, user))
    session = {"userId": user, "sessionId": "s1"}
    with served(own_tracker, rate_limit=0.2) as url:
        attempts: list[tuple[str, Callable[[httpx.Client], httpx.Response]]] = [
            ("127.0.0.2", lambda c: c.post("/api/track", json=movement(user))),
            (
                "127.0.0.3",
                lambda c: c.post(
                    "/api/track/session",
                    json=session,
                    headers=bearer(mint_token("not-the-secret", user)),
                ),
            ),
            ("127.0.0.4", lambda c: c.get("/api/track/session", params=session)),
        ]
        for address, attempt in attempts:
            with client_at(url, address) as attacker:
                statuses = [attempt(attacker).status_code for _ in range(3)]
                assert statuses[:2] in ([401, 401], [403, 403]), statuses
                assert statuses[2] == 429  # their own address's limit
        with client_at(url, "127.0.0.5") as owner:
            created = owner.post("/api/track/session", json=session, headers=token)
            assert created.status_code == 200, created.text
            tracked = owner.post("/api/track", json=movement(user), headers=token)
            assert tracked.status_code == 200, tracked.text


def test_large_batches_cost_an_address_by_their_events(own_tracker: Tracker) -> None:
    """One request may carry 500 events: counted as one request, an address at the default
    limit could make the hosts hold 25,000 events a second. A request pays a token more per 25
    events beyond its first 25, at most a full bucket (10 at 5 requests a second)."""
    user, now = new_user(), int(time.time() * 1000)
    batch = [
        {"userId": user, "sessionId": "s1", "timestamp": now, "event": "click", "eventId": f"e{i}"}
        for i in range(500)
    ]
    with served(own_tracker, rate_limit=5) as url:
        with client_at(url, "127.0.0.6") as sender:
            first = sender.post("/api/track", json={"events": batch})
            assert first.json() == {"success": True, "accepted": 500}, first.text
            assert_error(sender.post("/api/track", json={"events": batch[:26]}), 429)
        # Another address's small requests pay one token each: ten of them pass.
        with client_at(url, "127.0.0.7") as other:
            small = [movement(new_user()) | {"eventId": f"s{i}"} for i in range(10)]
            statuses = [other.post("/api/track", json=m).status_code for m in small]
            assert statuses == [200] * 10, statuses


def test_requests_that_fail_validation_are_rate_limited_too(own_tracker: Tracker) -> None:
    bad = movement(new_user()) | {"event": "teleport"}
    with served(own_tracker, rate_limit=0.2) as url, client_at(url) as flood:
        statuses = [flood.post("/api/track", json=bad).status_code for _ in range(4)]
        assert statuses == [422, 422, 429, 429]
        # Limited before the body is read: not JSON, or no session request at all.
        assert_error(flood.post("/api/track", content=b"{not json", headers=JSON), 429)
        assert_error(flood.post("/api/track/session", json={"userId": "../x"}), 429)
        assert_error(flood.post("/api/admin/login", content=b"[", headers=JSON), 429)


# -- oversized bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/track", "/api/track/session", "/api/admin/login"])
def test_a_megabyte_body_is_refused_with_413_on_every_route_that_reads_one(
    client: httpx.Client, path: str
) -> None:
    body = b'{"pad": "' + b"x" * 1_000_000 + b'"}'
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "body")


def _trickle(url: str, path: str) -> bytes:
    """Send a request's headers and the first byte of its body, then nothing more; return what
    the server answers before it closes the connection (bounded by the socket's timeout)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("path", ["/api/track", "/api/track/session", "/api/admin/login"])
def test_a_body_that_does_not_arrive_in_time_is_408_and_its_connection_closed(
    own_tracker: Tracker, path: str
) -> None:
    with served(own_tracker, body_timeout_s=0.5) as url:
        answer = _trickle(url, path)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert b"TRACKER_BODY_TIMEOUT_S" in body


def test_a_body_read_in_time_leaves_its_request_running_and_a_late_one_times_out() -> None:
    """The body's deadline ends with the read: a request whose body came in time goes on
    however long it then takes, and one whose body stalls gets `RequestTimeout`."""

    async def arriving(stall: bool) -> AsyncIterator[bytes]:
        yield b'{"a": '
        if stall:
            await asyncio.Event().wait()
        yield b"1}"

    async def scenario() -> tuple[bytes, float]:
        body = await read_limited(arriving(stall=False), timeout_s=0.05)
        await asyncio.sleep(0.1)  # past the deadline: nothing may cancel this task now
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match="TRACKER_BODY_TIMEOUT_S"):
            await read_limited(arriving(stall=True), timeout_s=0.05)
        waited = time.monotonic() - started
        await asyncio.sleep(0)  # and the task is not left cancelled
        return body, waited

    body, waited = asyncio.run(scenario())
    assert body == b'{"a": 1}'
    assert 0.04 < waited < 5


def _post_scope(path: str, client: str = "127.0.0.1", origin: str | None = None) -> dict[str, Any]:
    """The ASGI scope of a JSON `POST path` from `client` (with an `Origin` if given)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "scheme": "http",
        "http_version": "1.1",
        "headers": headers,
        "client": (client, 50000),
        "server": ("127.0.0.1", 80),
    }


@pytest.mark.parametrize("path", ["/api/track", "/api/track/session", "/api/admin/login"])
def test_a_client_gone_before_its_body_is_read_is_neither_answered_nor_an_error(
    own_tracker: Tracker, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    site = "https://shop.example"
    app = build_app(own_tracker, own_tracker.config.replace(allowed_origins=(site,)))
    # A cross-origin /api/track goes through Starlette's routing, like the other two.
    scope = _post_scope(path, origin=site)
    messages = [{"type": "http.request", "body": b'{"userId":', "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.WARNING):
        asyncio.run(app(scope, receive, send))
    assert sent == []
    assert [r.getMessage() for r in caplog.records] == []
    counted = app.state.ingress.metrics.render().decode()
    assert f'route="{path}"' not in counted


# -- requests held open -------------------------------------------------------------------------

# The routes that read a body anyone may send; a cross-origin /api/track goes through
# Starlette's routing, a same-origin one does not.
BODY_ROUTES = [
    ("/api/track", None),
    ("/api/track", SHOP),
    ("/api/track/session", None),
    ("/api/admin/login", None),
]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def _sending(body: bytes, *, complete: bool, gone: asyncio.Event | None = None) -> Receive:
    """A client that sends `body`; when not `complete`, sends no more of it, and is gone once
    `gone` is set (never, without one)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        await (gone or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    return receive


async def _call(app: Any, scope: dict[str, Any], receive: Receive) -> list[dict[str, Any]]:
    """Run one request through `app`; what it sent."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _status(sent: list[dict[str, Any]]) -> tuple[int, dict[str, str]]:
    start = sent[0]
    assert start["type"] == "http.response.start"
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers


@pytest.mark.parametrize(("path", "origin"), BODY_ROUTES)
def test_one_address_may_have_only_so_many_requests_open_and_more_are_429_at_once(
    own_tracker: Tracker, path: str, origin: str | None
) -> None:
    """A body that stalls costs one token of its address's rate limit but holds a request slot
    until TRACKER_BODY_TIMEOUT_S: the rate limit alone let one address hold hundreds."""
    config = own_tracker.config.replace(open_requests_per_client=3, allowed_origins=(SHOP,))
    app = build_app(own_tracker, config)
    counted = app.state.ingress.open_requests

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        gone = asyncio.Event()

        def stall(address: str) -> asyncio.Task[list[dict[str, Any]]]:
            receive = _sending(b'{"userId":', complete=False, gone=gone)
            return asyncio.create_task(_call(app, _post_scope(path, address, origin), receive))

        stalled = [stall("203.0.113.7") for _ in range(3)]
        await _until(lambda: counted.open("203.0.113.7") == 3)
        refused = await _call(
            app, _post_scope(path, "203.0.113.7", origin), _sending(b"{}", complete=True)
        )
        # Another address is admitted meanwhile.
        stalled.append(stall("198.51.100.1"))
        await _until(lambda: counted.open("198.51.100.1") == 1)
        gone.set()
        await asyncio.gather(*stalled)
        return refused, len(counted)

    refused, still_open = asyncio.run(scenario())
    status, headers = _status(refused)
    assert status == 429
    assert headers["retry-after"] == "1"
    assert json.loads(refused[1]["body"])["error"] == "rate limited; retry after 1 s"
    assert still_open == 0


def test_the_addresses_of_one_ipv6_network_share_their_limits(own_tracker: Tracker) -> None:
    """A /64 is one subscriber's: per address, it would hold a fresh rate-limit bucket and
    open-request count for each of its 2**64 addresses."""
    rate_limited = build_app(own_tracker, own_tracker.config.replace(rate_limit=0.2))
    open_limited = build_app(own_tracker, own_tracker.config.replace(open_requests_per_client=3))
    counted = open_limited.state.ingress.open_requests

    async def post(app: Any, address: str) -> int:
        # Not JSON: refused once admitted, without a host call.
        receive = _sending(b"{not json", complete=True)
        status, _ = _status(await _call(app, _post_scope("/api/track", address), receive))
        return status

    async def scenario() -> dict[str, list[int]]:
        statuses = {
            # A burst of 2 for the network, whichever of its addresses asks;
            "one network": [
                await post(rate_limited, f"2001:db8:1:2::{host:x}") for host in range(1, 5)
            ],
            # another network has its own;
            "next network": [await post(rate_limited, "2001:db8:1:3::1")],
            # an IPv4 client through an IPv6 socket is that IPv4 client.
            "ipv4": [await post(rate_limited, "203.0.113.7") for _ in range(2)],
            "ipv4 mapped": [await post(rate_limited, "::ffff:203.0.113.7")],
        }
        gone = asyncio.Event()
        stalled = [
            asyncio.create_task(
                _call(
                    open_limited,
                    _post_scope("/api/track/session", f"2001:db8:5:6:{host:x}::1"),
                    _sending(b"{", complete=False, gone=gone),
                )
            )
            for host in range(1, 4)
        ]
        await _until(lambda: counted.open("2001:db8:5:6::/64") == 3)
        statuses["open in one network"] = [await post(open_limited, "2001:db8:5:6:ffff::1")]
        gone.set()
        await asyncio.gather(*stalled)
        return statuses

    assert asyncio.run(scenario()) == {
        "one network": [400, 400, 429, 429],
        "next network": [400],
        "ipv4": [400, 400],
        "ipv4 mapped": [429],
        "open in one network": [429],
    }


ENDINGS = ["answered", "refused", "timed out", "client gone", "cancelled"]


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize(("path", "origin"), BODY_ROUTES)
def test_a_request_is_no_longer_counted_open_however_it_ends(
    own_tracker: Tracker, path: str, origin: str | None, ending: str
) -> None:
    config = own_tracker.config.replace(
        open_requests_per_client=1, allowed_origins=(SHOP,), body_timeout_s=0.2
    )
    app = build_app(own_tracker, config)
    counted = app.state.ingress.open_requests
    user = new_user()
    valid = {
        "/api/track": movement(user),
        "/api/track/session": {"userId": user, "sessionId": "s1"},
        "/api/admin/login": {"token": OWN_ADMIN},
    }[path]
    scope = _post_scope(path, "203.0.113.7", origin)

    async def scenario() -> list[dict[str, Any]]:
        gone = asyncio.Event()
        gone.set()
        receive = {
            "answered": _sending(json.dumps(valid).encode(), complete=True),
            "refused": _sending(b"{not json", complete=True),
            "timed out": _sending(b"{", complete=False),
            "client gone": _sending(b"{", complete=False, gone=gone),
            "cancelled": _sending(b"{", complete=False),
        }[ending]
        request = asyncio.create_task(_call(app, scope, receive))
        if ending != "cancelled":
            return await request
        # What Serve does to a request whose client went away.
        await _until(lambda: counted.open("203.0.113.7") == 1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        return []

    sent = asyncio.run(scenario())
    expected = {"answered": 200, "refused": 400, "timed out": 408}
    if ending in expected:
        assert _status(sent)[0] == expected[ending], sent
    else:
        assert sent == []
    assert counted.open("203.0.113.7") == 0
    assert len(counted) == 0


# -- hostile user IDs ---------------------------------------------------------------------------

# User IDs are free-form printable text (`tests/test_user_ids.py` tracks, reads, exports and
# erases path-like, quoted, spaced and non-ASCII ones); these are not printable text.
HOSTILE_IDS = [
    "a\x00b",
    "line\nbreak",
    "admin\u200b",  # zero-width space
    "admin\u202e",  # right-to-left override
    "a" * 129,
    "",
]


@pytest.mark.parametrize("user", HOSTILE_IDS, ids=lambda user: repr(user)[:24])
def test_user_ids_with_nul_control_or_invisible_characters_are_422_everywhere(
    client: httpx.Client, admin: httpx.Client, serve_config: Config, user: str
) -> None:
    # Even with a valid token for the ID: the rule is checked first.
    signed = bearer(mint_token(secret_of(serve_config), user))
    assert_error(client.post("/api/track", json=movement(user), headers=signed), 422, "userId")
    session = {"userId": user, "sessionId": "s1"}
    assert_error(client.post("/api/track/session", json=session), 422, "userId")
    assert_error(admin.get("/api/track/session", params=session), 422, "userId")
    if user and "/" not in user:
        # (A slash in a path segment is another route; an empty one, no route: both 404.)
        quoted = quote(user, safe="")
        for method, path in (
            ("GET", f"/api/users/{quoted}"),
            ("DELETE", f"/api/users/{quoted}"),
            ("GET", f"/api/users/{quoted}/export"),
        ):
            assert_error(admin.request(method, path), 422, "userId")


def test_an_id_with_a_trailing_newline_is_422(client: httpx.Client, admin: httpx.Client) -> None:
    # (Python's `$` also matches before a final newline.)
    user = new_user()
    for changes, field in (({"sessionId": "s1\n"}, "sessionId"), ({"eventId": "e\n"}, "eventId")):
        assert_error(client.post("/api/track", json=movement(user) | changes), 422, field)
    assert_error(client.post("/api/track", json=movement(user + "\n")), 422, "userId")
    assert admin.get(f"/api/users/{user}").json()["sessions"] == []


def test_an_encoded_slash_in_a_user_route_does_not_reach_another_users_data(
    admin: httpx.Client,
) -> None:
    # User IDs are free-form: an encoded slash is part of one ID, never a step out of its route,
    # and the answer is that (empty) user's, not the hosts' logs' or another user's.
    for path, user in (("/api/users/..%2F..%2Fhosts", "../../hosts"), ("/api/users/a%2Fb", "a/b")):
        answer = admin.get(path)
        assert answer.status_code == 200
        assert answer.json() == {"userId": user, "sessions": []}


# IDs the charset allows that would be dangerous as file names; storage never uses them so.
ODD_BUT_VALID_IDS = [".", "..", "...", "..:..", "-", "@", "CON", "nul", "a" * 128]


def test_accepted_ids_land_under_their_hashed_prefix_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    storage = FileStorage(f"file://{root}")

    async def main() -> None:
        host = UserHost("host-0", storage)
        await host.start()
        for user in ODD_BUT_VALID_IDS:
            await host.create_session(user, "s1", {"userAgent": "t"})
            await host.track(user, movement(user))
        await host.compact(force=True)
        for user in ODD_BUT_VALID_IDS:
            assert await storage.list_objects(user_key(user)), user
        await host.stop()

    asyncio.run(main())
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    user_folders = {user_key(user) for user in ODD_BUT_VALID_IDS}
    assert len(user_folders) == len(ODD_BUT_VALID_IDS)
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        key = path.relative_to(root).as_posix()
        assert key.startswith("journals/hosts/host-0/") or any(
            key.startswith(folder + "/") for folder in user_folders
        ), key
        assert not set(key.split("/")) & set(ODD_BUT_VALID_IDS), key


def test_the_python_api_refuses_hostile_ids_and_writes_nothing_for_them(tmp_path: Path) -> None:
    root = tmp_path / "data"
    storage = FileStorage(f"file://{root}")

    async def main() -> None:
        host = UserHost("host-0", storage)
        await host.start()
        for user in HOSTILE_IDS:
            calls = [
                host.track(user, movement(user)),
                host.create_session(user, "s1"),
                host.get_session(user, "s1"),
                host.export(user),
                host.erase(user),
            ]
            for call in calls:
                with pytest.raises(InvalidInput):
                    await call
        await host.stop()

    asyncio.run(main())
    assert not (root / "users").exists()


# -- stored script payloads ---------------------------------------------------------------------

XSS = {
    "path": "/<script>alert(1)</script>",
    "element": '<img src=x onerror="alert(2)">',
    "title": "</script><script>alert(3)</script>",
    "userAgent": "Mozilla/5.0 <svg onload=alert(4)>",
}


def test_script_payloads_are_stored_and_returned_as_inert_json_strings(
    client: httpx.Client, admin: httpx.Client
) -> None:
    user = new_user()
    client.post(
        "/api/track/session",
        json={"userId": user, "sessionId": "s1", "deviceInfo": {"userAgent": XSS["userAgent"]}},
    )
    view = movement(user, event="page_view", path=XSS["path"], metadata={"t": XSS["title"]})
    click = movement(user, path=XSS["path"], element=XSS["element"], coordinates={"x": 1, "y": 2})
    assert client.post("/api/track", json=[view, click]).status_code == 200

    def analytics() -> httpx.Response | None:
        # The user's own sessions come from their host; the site's aggregates from hosts'
        # shipments (about once a second), where a one-off path may rank below the top ten.
        response = admin.get("/api/analytics", params={"path": XSS["path"], "userId": user})
        sessions = response.json()["userSessions"]
        return response if sessions and sessions[0]["movements"] else None

    responses = {
        "session": client.get("/api/track/session", params={"userId": user, "sessionId": "s1"}),
        "detail": admin.get(f"/api/users/{user}"),
        "analytics": wait_for(analytics),
    }
    for name, response in responses.items():
        assert response.status_code == 200, name
        assert response.headers["content-type"] == "application/json", name
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in response.headers["content-security-policy"]
    session = responses["session"].json()
    stored = [m["data"] for m in session["movements"]]
    assert stored[0]["metadata"]["t"] == XSS["title"]
    assert (stored[1]["path"], stored[1]["element"]) == (XSS["path"], XSS["element"])
    assert session["deviceInfo"]["userAgent"] == XSS["userAgent"]
    report = responses["analytics"].json()
    assert report["heatmap"]["path"] == XSS["path"]
    assert report["userSessions"][0]["movements"][1]["data"]["element"] == XSS["element"]

    export = admin.get(f"/api/users/{user}/export")
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert export.headers["content-disposition"].startswith("attachment")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert XSS["element"] in {line.get("data", {}).get("element") for line in lines}


def test_error_messages_that_echo_input_are_json_too(client: httpx.Client) -> None:
    response = client.get("/api/track/session", params={"userId": "<script>\n", "sessionId": "s"})
    assert_error(response, 422, "userId")
    assert "<script>" in response.json()["error"]
