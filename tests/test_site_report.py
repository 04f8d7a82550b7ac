"""The site report end to end: sessions with referrer, campaign and automation over real HTTP
(Ray Serve), custom events, the report's filters, comparison and bots; and over the Python
API, with the hosts' index rebuilt from storage when a new set of actors starts."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
import support

from tracker.config import Config

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


@pytest.fixture
def admin(serve_tracker: str, serve_config: Config) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {serve_config.admin_token}"}
    with httpx.Client(base_url=serve_tracker, timeout=30, headers=headers) as c:
        yield c


@pytest.fixture
def window() -> tuple[int, int]:
    """A 10-minute range of event times days ago, that no other test's events fall in (the
    deployment is shared by the session's tests)."""
    start = support.now_ms() - random.randint(2, 20) * DAY_MS - random.randint(0, 10**6)
    return start, start + 10 * MINUTE_MS - 1


def visitor(
    base: str,
    window: tuple[int, int],
    events: list[tuple[str, dict[str, Any]]],
    headers: dict[str, str] | None = None,
    **session: Any,
) -> str:
    """A new anonymous visitor who starts a session (`session`: the body's extra fields) and
    sends `events`, one a minute from the window's start. Returns their ID."""
    user = str(uuid.uuid4())
    with httpx.Client(base_url=base, timeout=30, headers=headers) as c:
        started = c.post("/api/track/session", json={"userId": user, "sessionId": "s1", **session})
        assert started.status_code == 200, started.text
        sent = [
            support.movement(user, "s1", at=window[0] + i * MINUTE_MS, event=kind, data=data)
            for i, (kind, data) in enumerate(events)
        ]
        assert c.post("/api/track", json=sent).json()["accepted"] == len(sent)
    return user


def report(admin: httpx.Client, window: tuple[int, int], **params: str) -> dict[str, Any]:
    response = admin.get("/api/analytics", params={"from": window[0], "to": window[1], **params})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_sources_technology_country_bots_and_custom_events_reach_the_report(
    serve_tracker: str, admin: httpx.Client, window: tuple[int, int]
) -> None:
    paid = visitor(
        serve_tracker,
        window,
        [
            ("page_view", {"path": "/"}),
            ("page_view", {"path": "/pricing"}),
            ("custom", {"name": "signup", "properties": {"plan": "pro", "seats": 3}}),
        ],
        # The test's client is the trusted proxy (127.0.0.1) of a visitor in Great Britain.
        headers={"X-Forwarded-For": "81.2.69.160"},
        deviceInfo={"userAgent": FIREFOX},
        referrer="https://www.google.com/search?q=very+private",
        utm={"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring"},
    )
    visitor(
        serve_tracker, window, [("page_view", {"path": "/blog"})], deviceInfo={"userAgent": IPHONE}
    )
    visitor(
        serve_tracker,
        window,
        [("page_view", {"path": "/"}), ("page_view", {"path": "/x"})],
        deviceInfo={"userAgent": FIREFOX},
        automation=True,
    )
    r = support.wait_for(
        lambda: (found := report(admin, window)) and found["visitors"] == 2 and found,
        timeout_s=30,
    )
    assert r["channels"] == [
        {"channel": "direct", "visitors": 1},
        {"channel": "paid", "visitors": 1},
    ]
    assert r["referrers"] == [{"source": "google.com", "visitors": 1}]
    assert r["campaigns"] == [
        {"source": "google", "medium": "cpc", "campaign": "spring", "visitors": 1}
    ]
    assert r["countries"] == [{"name": "GB", "visitors": 1}]
    assert r["browsers"] == [
        {"name": "Firefox", "visitors": 1},
        {"name": "Mobile Safari", "visitors": 1},
    ]
    assert r["devices"] == [{"name": "desktop", "visitors": 1}, {"name": "mobile", "visitors": 1}]
    assert r["bots"] == {"visitors": 1, "events": 2}
    assert r["bounceRate"] == 0.5 and r["pagesPerVisit"] == 1.5
    assert r["visitDuration"] == {"median": MINUTE_MS, "mean": MINUTE_MS}
    assert r["entryPages"] == [{"path": "/", "visitors": 1}, {"path": "/blog", "visitors": 1}]
    assert r["customEvents"] == [
        {
            "name": "signup",
            "count": 1,
            "visitors": 1,
            "properties": {
                "plan": [{"value": "pro", "count": 1}],
                "seats": [{"value": "3", "count": 1}],
            },
        }
    ]
    # Only the host of the referrer and the country are stored: no address, no search terms.
    export = admin.get(f"/api/users/{paid}/export").text
    assert "google.com" in export and '"country":"GB"' in export
    assert "81.2.69.160" not in export and "private" not in export


def test_filters_narrow_the_report_and_combine(
    serve_tracker: str, admin: httpx.Client, window: tuple[int, int]
) -> None:
    visitor(
        serve_tracker,
        window,
        [("page_view", {"path": "/"}), ("custom", {"name": "signup"})],
        deviceInfo={"userAgent": FIREFOX},
        referrer="news.ycombinator.com",
    )
    visitor(
        serve_tracker,
        window,
        [("page_view", {"path": "/docs", "referrer": "https://duckduckgo.com/?q=x"})],
        deviceInfo={"userAgent": IPHONE},
    )
    support.wait_for(lambda: report(admin, window)["visitors"] == 2, timeout_s=30)
    cases = {
        (("channel", "social"),): 1,
        (("channel", "search"),): 1,  # entered from a page view's referrer
        (("referrer", "duckduckgo.com"),): 1,
        (("browser", "Firefox"),): 1,
        (("os", "iOS"),): 1,
        (("device", "mobile"),): 1,
        (("path", "/docs"),): 1,
        (("event", "signup"),): 1,
        (("event", "signup"), ("device", "mobile")): 0,
        (("channel", "social"), ("browser", "Firefox"), ("path", "/")): 1,
        (("country", "GB"),): 0,
    }
    for filters, visitors in cases.items():
        assert report(admin, window, **dict(filters))["visitors"] == visitors, filters
    narrowed = report(admin, window, channel="social")
    assert narrowed["filters"] == {"channel": "social"}
    assert narrowed["browsers"] == [{"name": "Firefox", "visitors": 1}]
    assert narrowed["customEvents"][0]["name"] == "signup"


def test_comparison_adds_the_previous_range_and_bots_can_be_included(
    serve_tracker: str, admin: httpx.Client, window: tuple[int, int]
) -> None:
    length = window[1] - window[0] + 1
    earlier = (window[0] - length, window[1] - length)
    # Without a user agent of a browser (deviceInfo), httpx's own would make each a bot.
    browser = {"deviceInfo": {"userAgent": FIREFOX}}
    visitor(serve_tracker, earlier, [("page_view", {"path": "/"})], **browser)
    visitor(serve_tracker, earlier, [("page_view", {"path": "/"})], **browser)
    visitor(serve_tracker, window, [("page_view", {"path": "/"})], **browser)
    visitor(serve_tracker, window, [("page_view", {"path": "/"})], **browser, automation=True)
    r = support.wait_for(
        lambda: (
            (found := report(admin, window, compare="previous"))
            and found["previous"]["visitors"] == 2
            and found
        ),
        timeout_s=30,
    )
    assert r["visitors"] == 1
    assert r["previous"]["range"] == {"from": earlier[0], "to": earlier[1]}
    assert report(admin, window, bots="include")["visitors"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"channel": "radio"}, "channel"),
        ({"country": "Britain"}, "country"),
        ({"device": "watch"}, "device"),
        ({"bots": "maybe"}, "bots"),
        ({"compare": "year"}, "compare"),
        ({"limit": "1000"}, "limit"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(
    admin: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = admin.get("/api/analytics", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "data.name"),
        ({"name": ""}, "data.name"),
        ({"name": "x" * 65}, "data.name"),
        ({"name": "buy", "properties": {"nested": {"a": 1}}}, "data.properties"),
        ({"name": "buy", "properties": {f"k{i}": i for i in range(21)}}, "data.properties"),
    ],
)
def test_a_bad_custom_event_is_a_422_naming_the_field(
    serve_tracker: str, data: dict[str, Any], field: str
) -> None:
    user = str(uuid.uuid4())
    sent = support.movement(user, "s1", event="custom", data=data)
    response = httpx.post(f"{serve_tracker}/api/track", json=sent, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_a_session_with_an_unknown_utm_key_is_a_422_naming_it(serve_tracker: str) -> None:
    body = {"userId": str(uuid.uuid4()), "sessionId": "s1", "utm": {"utm_id": "1"}}
    response = httpx.post(f"{serve_tracker}/api/track/session", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "utm.utm_id"


def test_python_custom_events_count_and_a_new_set_of_actors_rebuilds_the_index(
    make_tracker: Any, file_storage: str
) -> None:
    from tracker.api import connect, shutdown

    t = make_tracker(storage=file_storage, hosts=2)
    for name in ("alice", "bob", "carol"):
        handle = t.user(name)
        ray.get(handle.create_session.remote("s1", {"userAgent": FIREFOX}))
        ray.get(handle.track_event.remote("s1", "purchase", {"amount": 30, "gift": name == "bob"}))
    before = t.analytics(event="purchase")
    assert before["visitors"] == 3 and before["customEvents"][0]["count"] == 3
    assert before["browsers"] == [{"name": "Firefox", "visitors": 3}]
    t.flush()
    shutdown(t.config)
    again = connect(config=t.config)
    assert again.analytics(event="purchase")["customEvents"] == before["customEvents"]
    ray.get(again.user("bob").erase.remote())
    assert again.analytics(event="purchase")["visitors"] == 2


def test_the_per_user_placement_answers_the_report_from_storage(
    make_tracker: Any, file_storage: str
) -> None:
    # The scan reads what the users' actors have compacted: every second here.
    t = make_tracker(storage=file_storage, placement="per-user", compact_interval_s=1.0)
    for name in ("dora", "emil"):
        handle = t.user(name)
        ray.get(handle.create_session.remote("s1", {"userAgent": IPHONE}))
        ray.get(handle.track_event.remote("s1", "signup", None))
    report = support.wait_for(
        lambda: (found := t.analytics(event="signup")) and found["visitors"] == 2 and found,
        timeout_s=60,
    )
    assert report["devices"] == [{"name": "mobile", "visitors": 2}]
