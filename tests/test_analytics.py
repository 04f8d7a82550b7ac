"""`SiteStats`: each aggregate on hand-made events, bounds, time ranges, rage clicks, and the
property that merging shipped deltas equals observing everything in one place."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import time
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import movement

from tracker import codec
from tracker.analytics import HOUR_MS, MINUTE_MS, SessionSequences, SiteStats, site, user_key
from tracker.analytics.buckets import Hour
from tracker.analytics.counting import KEEP_HOURS, KEEP_MINUTES, KEY_CHARS, MAX_COUNT, prune
from tracker.analytics.elements import MAX_ELEMENTS
from tracker.analytics.heatmap import HEAT_BINS_X, HEAT_ROWS, MAX_HEAT_CELLS, prune_heat
from tracker.analytics.journeys import MAX_JOURNEYS
from tracker.analytics.metric import HourlyMetric, Metric, Query
from tracker.analytics.pages import MAX_PAGES
from tracker.analytics.rage import MAX_RAGE_CLICKS
from tracker.analytics.recent import MAX_RECENT_SESSIONS, RecentActivity
from tracker.analytics.scroll import SCROLL_BUCKETS
from tracker.analytics.sequences import RAGE_RADIUS_PX, RAGE_RING, RAGE_WINDOW_MS
from tracker.analytics.series import EXACT_USER_MINUTES, SERIES_MINUTES
from tracker.errors import InvalidInput
from tracker.schema import Movement

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary


def mv(
    event: str,
    path: str | None = None,
    *,
    user: str = "u1",
    session: str = "s1",
    t: int = T0,
    element: str | None = None,
    x: float | None = None,
    y: float | None = None,
    scroll_y: float | None = None,
    **metadata: Any,
) -> Movement:
    data: dict[str, Any] = {}
    if path is not None:
        data["path"] = path
    if element is not None:
        data["element"] = element
    if x is not None and y is not None:
        data["coordinates"] = {"x": x, "y": y}
    if scroll_y is not None:
        data["scrollY"] = scroll_y
    if metadata:
        data["metadata"] = metadata
    return msgspec.convert(movement(user, session, at=t, event=event, data=data), Movement)


def click(path: str, x: float, y: float, t: int, **kw: Any) -> Movement:
    return mv("click", path, element=kw.pop("element", "button#go"), x=x, y=y, t=t, **kw)


def ship(delta: SiteStats) -> SiteStats:
    """What the aggregator receives: the delta's wire form through msgpack."""
    return SiteStats.from_wire(msgspec.msgpack.decode(msgspec.msgpack.encode(delta.to_wire())))


# -- each aggregate ---------------------------------------------------------------------------


def test_page_views_are_counted_per_path_and_ranked() -> None:
    stats = SiteStats()
    views = [mv("page_view", "/a")] * 3 + [mv("page_view", "/b")] + [mv("page_view", "/c")] * 2
    stats.observe("u1", views, T0)
    report = stats.report(T0, top=2)
    assert report["topPages"] == [{"path": "/a", "count": 3}, {"path": "/c", "count": 2}]


JS_NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty"]
RTL = "\u202eevil\u202c \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \U0001f984"


def json_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for item in value.values() for k in json_keys(item)}
    if isinstance(value, list):
        return {k for item in value for k in json_keys(item)}
    return set()


def test_visitor_strings_are_values_never_keys_and_long_ones_are_cut_between_characters() -> None:
    """Paths, elements and referrers are the visitor's: in the report (JSON for a browser) they
    are only ever values, "__proto__" like any other, and kept whole up to `KEY_CHARS`
    characters (code points: an emoji is never cut in half)."""
    long_path = "/" + "\U0001f4c8" * 400
    host = SiteStats()
    batch = []
    for n, name in enumerate(JS_NAMES):
        at = T0 + 1000 * n
        batch += [
            mv("page_view", f"/{name}", session=name, t=at, referrerPath=name),
            mv("page_view", f"/{RTL}", session=name, t=at + 1),
            mv("page_view", long_path, session=name, t=at + 2),
        ]
        batch += [
            click(f"/{RTL}", 10, 10, at + 3 + i, session=name, element=name, viewportWidth=800)
            for i in range(3)
        ]
    host.observe("u1", batch, T0)
    aggregator = SiteStats()
    aggregator.merge(ship(host.take_delta()), T0)
    report = aggregator.report(T0, path=f"/{RTL}")

    keys = json_keys(msgspec.json.decode(msgspec.json.encode(report)))
    assert not keys & {*JS_NAMES, RTL, f"/{RTL}", long_path[:KEY_CHARS]}
    cut = "/" + "\U0001f4c8" * (KEY_CHARS - 1)
    assert {p["path"] for p in report["topPages"]} == {f"/{n}" for n in JS_NAMES} | {f"/{RTL}", cut}
    assert {(j["from"], j["to"]) for j in report["journeys"]} == (
        {(n, f"/{n}") for n in JS_NAMES}
        | {(f"/{RTL}", cut)}
        | {(f"/{n}", f"/{RTL}") for n in JS_NAMES}
    )
    assert {e["element"] for e in report["topElements"]} == set(JS_NAMES)
    assert {r["element"] for r in report["rageClicks"]} == set(JS_NAMES)
    assert report["heatmap"]["path"] == f"/{RTL}" and report["heatmap"]["cells"]


def test_clicks_are_counted_per_element_and_path() -> None:
    stats = SiteStats()
    stats.observe(
        "u1",
        [
            mv("click", "/a", element="#buy"),
            mv("click", "/a", element="#buy"),
            mv("click", "/b", element="#buy"),
            mv("click", "/a"),  # no element: not an element click
        ],
        T0,
    )
    assert stats.report(T0)["topElements"] == [
        {"element": "#buy", "path": "/a", "count": 2},
        {"element": "#buy", "path": "/b", "count": 1},
    ]


def test_every_movement_counts_in_total_events_and_events_by_type() -> None:
    stats = SiteStats()
    stats.observe("u1", [mv("page_view", "/"), mv("hover", "/"), mv("hover", "/")], T0)
    stats.observe("u2", [mv("form_interaction", "/f", user="u2")], T0 + 1)
    report = stats.report(T0 + 2)
    assert report["totalEvents"] == 4
    assert report["eventsByType"] == {
        "page_view": 1,
        "click": 0,
        "scroll": 0,
        "hover": 2,
        "form_interaction": 1,
        "custom": 0,
    }


def test_events_per_minute_use_the_server_receive_time_not_the_client_clock() -> None:
    stats = SiteStats()
    skewed = mv("hover", "/", t=T0 - 10 * HOUR_MS)
    stats.observe("u1", [skewed, skewed], T0 + 5_000)
    stats.observe("u2", [mv("hover", "/", user="u2")], T0 + 2 * MINUTE_MS + 1)
    series = stats.report(T0 + 2 * MINUTE_MS + 1)["eventsPerMinute"]
    assert len(series) == SERIES_MINUTES
    assert series[-3:] == [
        {"t": T0, "count": 2, "users": 1},
        {"t": T0 + MINUTE_MS, "count": 0, "users": 0},
        {"t": T0 + 2 * MINUTE_MS, "count": 1, "users": 1},
    ]


def test_active_users_are_the_distinct_users_of_the_last_five_minutes() -> None:
    stats = SiteStats()
    stats.observe("old", [mv("hover", "/", user="old")], T0)
    for i in range(3):
        stats.observe("fresh", [mv("hover", "/", user="fresh")], T0 + 10 * MINUTE_MS + i)
    stats.observe_session("new", "s9", T0 + 11 * MINUTE_MS)
    report = stats.report(T0 + 12 * MINUTE_MS)
    assert report["activeUsers"] == 2
    assert report["totalUsers"] == 3


def test_the_heatmap_bins_relative_x_and_page_y_of_clicks_on_the_path() -> None:
    stats = SiteStats()
    stats.observe(
        "u1",
        [
            click("/a", 0, 10, T0, viewportWidth=800),  # x bin 0, row 0
            click("/a", 799, 10, T0 + 5000, viewportWidth=800),  # x bin 39
            click("/a", 400, 10, T0 + 10_000, scroll_y=1000, viewportWidth=800),  # row 40
            click("/a", 400, 10, T0 + 15_000, scroll_y=1000, viewportWidth=800),
            click("/a", 900, 10, T0 + 20_000, viewportWidth=800),  # beyond the width: clamped
            click("/a", 5, 5, T0 + 25_000),  # no viewport width: not binned
            click("/a", 5, 20_000, T0 + 30_000, viewportWidth=800),  # below 10,000 px
            click("/b", 5, 5, T0 + 35_000, viewportWidth=800),
        ],
        T0,
    )
    assert stats.report(T0, path="/a")["heatmap"] == {
        "path": "/a",
        "binsX": 40,
        "binHeightPx": 25,
        "cells": [
            {"x": 0, "y": 0, "count": 1},
            {"x": 39, "y": 0, "count": 2},
            {"x": 20, "y": 40, "count": 2},
        ],
    }


def test_the_heatmap_defaults_to_the_most_clicked_path() -> None:
    stats = SiteStats()
    assert stats.report(T0)["heatmap"]["path"] is None
    stats.observe(
        "u1",
        [click("/few", 1, 1, T0, viewportWidth=100)]
        + [click("/many", 1, 1, T0 + 2000 * i, viewportWidth=100) for i in range(2)],
        T0,
    )
    heatmap = stats.report(T0)["heatmap"]
    assert heatmap["path"] == "/many"
    assert heatmap["cells"] == [{"x": 0, "y": 0, "count": 2}]


def test_a_click_on_a_vanishingly_narrow_viewport_lands_in_the_last_column() -> None:
    stats = SiteStats()
    stats.observe("u1", [click("/a", 1000, 5, T0, viewportWidth=1e-306)], T0)
    assert stats.report(T0)["heatmap"]["cells"] == [{"x": 39, "y": 0, "count": 1}]


def test_scroll_depth_counts_each_scroll_event_in_its_ten_percent_bucket() -> None:
    stats = SiteStats()
    depths = [0, 9.9, 10, 55, 99.9, 100, 130, -5]
    stats.observe("u1", [mv("scroll", "/", scrollDepth=d) for d in depths] + [mv("scroll")], T0)
    counts = {row["bucket"]: row["count"] for row in stats.report(T0)["scrollDepth"]}
    assert list(counts) == list(range(0, 101, 10))
    assert counts == {0: 3, 10: 1, 20: 0, 30: 0, 40: 0, 50: 1, 60: 0, 70: 0, 80: 0, 90: 1, 100: 2}


def test_journeys_count_page_to_page_transitions_within_each_session() -> None:
    stats = SiteStats()
    stats.observe(
        "u1",
        [
            mv("page_view", "/"),
            mv("page_view", "/"),  # a reload is not a transition
            mv("click", "/x"),  # other events do not move the session
            mv("page_view", "/pricing"),
            mv("page_view", "/", session="s2"),  # another session starts afresh
            mv("page_view", "/signup"),
        ],
        T0,
    )
    stats.observe("u2", [mv("page_view", "/app/b", user="u2", referrerPath="/app/a")], T0)
    assert stats.report(T0)["journeys"] == [
        {"from": "/", "to": "/pricing", "count": 1},
        {"from": "/app/a", "to": "/app/b", "count": 1},
        {"from": "/pricing", "to": "/signup", "count": 1},
    ]


def test_journeys_continue_across_shipped_deltas() -> None:
    host, aggregator = SiteStats(), SiteStats()
    host.observe("u1", [mv("page_view", "/a")], T0)
    aggregator.merge(ship(host.take_delta()))
    assert host.is_empty()
    host.observe("u1", [mv("page_view", "/b")], T0 + 1000)
    aggregator.merge(ship(host.take_delta()))
    assert aggregator.report(T0 + 1000)["journeys"] == [{"from": "/a", "to": "/b", "count": 1}]


# -- rage clicks ------------------------------------------------------------------------------


def test_three_clicks_within_30_px_and_one_second_are_a_rage_click() -> None:
    stats = SiteStats()
    burst = [
        click("/a", 100, 100, T0),
        click("/a", 110, 90, T0 + 300),
        click("/a", 105, 105, T0 + 600),
    ]
    stats.observe("u1", burst, T0 + 700)
    assert stats.report(T0 + 700)["rageClicks"] == [
        {
            "path": "/a",
            "element": "button#go",
            "x": 105.0,
            "y": 105.0,
            "count": 3,
            "userId": "u1",
            "timestamp": T0 + 700,
        }
    ]


@pytest.mark.parametrize(
    "clicks",
    [
        [(100, 100, 0), (100, 100, 600), (100, 100, 1200)],  # second apart from the first
        [(100, 100, 0), (140, 100, 100), (180, 100, 200)],  # 40 px apart
        [(100, 100, 0), (100, 100, 100)],  # only two
    ],
    ids=["spread-in-time", "spread-in-space", "too-few"],
)
def test_clicks_spread_in_time_or_space_are_not_rage_clicks(
    clicks: list[tuple[int, int, int]],
) -> None:
    stats = SiteStats()
    stats.observe("u1", [click("/a", x, y, T0 + dt) for x, y, dt in clicks], T0)
    assert stats.report(T0)["rageClicks"] == []


def test_clicks_on_another_path_or_in_another_session_do_not_add_up_to_rage() -> None:
    stats = SiteStats()
    stats.observe(
        "u1",
        [click("/a", 1, 1, T0), click("/b", 1, 1, T0 + 1), click("/a", 1, 1, T0 + 2, session="s2")],
        T0,
    )
    assert stats.report(T0)["rageClicks"] == []


def test_a_continuing_burst_updates_one_rage_click_even_across_deltas() -> None:
    host, aggregator = SiteStats(), SiteStats()
    host.observe("u1", [click("/a", 10, 10, T0 + 100 * i) for i in range(4)], T0)
    aggregator.merge(ship(host.take_delta()))
    host.observe("u1", [click("/a", 12, 12, T0 + 100 * i) for i in range(4, 6)], T0 + 1000)
    aggregator.merge(ship(host.take_delta()))
    host.observe("u1", [click("/a", 10, 10, T0 + 5000 + 100 * i) for i in range(3)], T0 + 6000)
    aggregator.merge(ship(host.take_delta()))
    rage = aggregator.report(T0 + 6000)["rageClicks"]
    assert [(r["count"], r["timestamp"]) for r in rage] == [(3, T0 + 6000), (6, T0 + 1000)]


def test_two_bursts_far_apart_on_one_page_are_two_rage_clicks() -> None:
    stats = SiteStats()
    spots = [(10, 10)] * 3 + [(500, 500)] * 3
    stats.observe("u1", [click("/a", x, y, T0 + 100 * i) for i, (x, y) in enumerate(spots)], T0)
    rage = stats.report(T0)["rageClicks"]
    assert sorted((r["x"], r["y"], r["count"]) for r in rage) == [(10, 10, 3), (500, 500, 3)]


def test_a_burst_is_found_among_clicks_elsewhere_until_they_push_it_out_of_the_last_eight() -> None:
    def clicks_between(others: int) -> list[Movement]:
        between = [click(f"/other{i}", 500, 500, T0) for i in range(others)]
        return [click("/a", 1, 1, T0), click("/a", 1, 1, T0), *between, click("/a", 1, 1, T0)]

    found, lost = SiteStats(), SiteStats()
    found.observe("u1", clicks_between(RAGE_RING - 2), T0)
    lost.observe("u1", clicks_between(RAGE_RING - 1), T0)
    assert [r["count"] for r in found.report(T0)["rageClicks"]] == [3]
    assert lost.report(T0)["rageClicks"] == []


def test_a_click_that_left_the_window_is_forgotten_even_if_a_later_one_is_older() -> None:
    stats = SiteStats()
    clocks = [T0, T0 + 5000, T0 + 100, T0 + 200]  # client clocks may go back
    stats.observe("u1", [click("/a", 1, 1, t) for t in clocks], T0)
    assert stats.report(T0)["rageClicks"] == []


def _near_by_definition(
    earlier: list[tuple[int, float, float, str]], t: int, x: float, y: float, path: str
) -> int:
    """What `add_click` answers, from its definition: the click itself, and those of the
    last RAGE_RING clicks kept in the window that are on its path within the radius."""
    ring: list[tuple[int, float, float, str]] = []
    for click_ in earlier:  # replay the ring as it was when this click came
        ring = [c for c in ring if abs(click_[0] - c[0]) <= RAGE_WINDOW_MS]
        ring = [*ring, click_][-RAGE_RING:]
    near = [
        c
        for c in ring
        if abs(t - c[0]) <= RAGE_WINDOW_MS
        and c[3] == path
        and (c[1] - x) ** 2 + (c[2] - y) ** 2 <= RAGE_RADIUS_PX**2
    ]
    return 1 + len(near)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            # client clocks jump back and forth, often to the window's edges
            st.one_of(st.integers(0, 2100), st.sampled_from([0, 1, 999, 1000, 1001, 2000])),
            st.sampled_from([0.0, 10.0, 20.0, 30.0, 45.0]),
            st.sampled_from([0.0, 0.5, 30.0]),
            st.sampled_from(["/a", "/a", "/b"]),
        ),
        max_size=30,
    )
)
def test_a_sessions_near_clicks_are_counted_as_defined(
    clicks: list[tuple[int, float, float, str]],
) -> None:
    sequence = SessionSequences().touch("u1", "s1")[0]
    for at, (t, x, y, path) in enumerate(clicks):
        assert sequence.add_click(t, x, y, path) == _near_by_definition(clicks[:at], t, x, y, path)


def test_only_the_last_hundred_rage_clicks_are_kept() -> None:
    stats = SiteStats()
    for i in range(150):
        burst = [click("/a", 1, 1, T0 + 10_000 * i + k, session=f"s{i}") for k in range(3)]
        stats.observe("u1", burst, T0 + i)
    rage = stats.report(T0 + 200)["rageClicks"]
    assert len(rage) == MAX_RAGE_CLICKS
    assert rage[0]["timestamp"] == T0 + 149
    assert rage[-1]["timestamp"] == T0 + 50


# -- sessions ---------------------------------------------------------------------------------


def test_sessions_count_once_whether_created_or_first_seen_in_movements() -> None:
    stats = SiteStats()
    stats.observe_session("u1", "s1", T0)
    stats.observe_session("u1", "s1", T0 + 1)  # created again
    stats.observe("u1", [mv("hover", "/"), mv("hover", "/", session="s2")], T0 + 2)
    delta = stats.take_delta()
    stats.observe("u1", [mv("hover", "/", session="s2")], T0 + 3)
    aggregator = ship(delta)
    aggregator.merge(ship(stats))
    report = aggregator.report(T0 + 4)
    assert report["totalSessions"] == 2
    assert report["recentActivity"] == [
        {
            "userId": "u1",
            "sessionId": "s2",
            "startTime": T0 + 2,
            "lastActivity": T0 + 3,
            "movementCount": 2,
        },
        {
            "userId": "u1",
            "sessionId": "s1",
            "startTime": T0,
            "lastActivity": T0 + 2,
            "movementCount": 1,
        },
    ]


def test_a_session_created_again_counts_its_user_when_it_is_created_again_not_at_its_start() -> (
    None
):
    host = SiteStats()
    aggregator = SiteStats()
    host.observe_session("u1", "s1", T0)
    aggregator.merge(ship(host.take_delta()))
    now = T0
    for _ in range(4):  # active in the same session for 80 minutes
        now += 20 * MINUTE_MS
        host.observe("u1", [mv("click", "/", t=now)], now)
        aggregator.merge(ship(host.take_delta()))
    host.observe_session("u1", "s1", now, start_ms=T0)  # a page load posts the session again
    aggregator.merge(ship(host.take_delta()))
    series = aggregator.report(now, from_ms=T0, to_ms=now)["eventsPerMinute"]
    users = {minute["t"]: minute["users"] for minute in series if minute["users"]}
    assert users == {T0 + k * 20 * MINUTE_MS: 1 for k in range(5)}
    [recent] = aggregator.report(now)["recentActivity"]
    assert (recent["startTime"], recent["lastActivity"]) == (T0, now)
    assert aggregator.report(now)["totalSessions"] == 1


def test_recent_activity_lists_the_ten_most_recent_sessions() -> None:
    stats = SiteStats()
    for i in range(30):
        stats.observe(f"u{i}", [mv("hover", "/", user=f"u{i}")], T0 + i)
    recent = stats.report(T0 + 30)["recentActivity"]
    assert [r["userId"] for r in recent] == [f"u{i}" for i in range(29, 19, -1)]


def test_recent_activity_says_which_device_a_session_was_created_on() -> None:
    device = {"userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120", "timezone": "UTC"}
    host = SiteStats()
    host.observe_session("u1", "s1", T0, device)
    host.observe_session("u2", "s2", T0 + 1)
    aggregator = SiteStats()
    aggregator.merge(ship(host.take_delta()))
    host.observe("u1", [mv("hover", "/", user="u1", session="s1")], T0 + 2)
    aggregator.merge(ship(host.take_delta()))  # a later delta without the device keeps it
    recent = {r["sessionId"]: r for r in aggregator.report(T0 + 3)["recentActivity"]}
    assert recent["s1"]["deviceInfo"] == device
    assert recent["s1"]["movementCount"] == 1
    assert "deviceInfo" not in recent["s2"]
    # Totals persisted before sessions carried a device still load.
    wire = aggregator.to_wire()
    wire["recent"] = [entry[:5] for entry in wire["recent"]]
    assert "deviceInfo" not in SiteStats.from_wire(wire).report(T0 + 3)["recentActivity"][0]


# -- time ranges ------------------------------------------------------------------------------


def test_a_time_range_sums_only_the_overlapping_hour_buckets() -> None:
    stats = SiteStats()
    for h, page in enumerate(["/h0", "/h1", "/h2"]):
        stats.observe(
            "u1", [mv("page_view", page), mv("scroll", page, scrollDepth=50)], T0 + h * HOUR_MS + 5
        )
    now = T0 + 3 * HOUR_MS
    middle = stats.report(now, from_ms=T0 + HOUR_MS + 30 * MINUTE_MS, to_ms=T0 + 2 * HOUR_MS - 1)
    assert middle["topPages"] == [{"path": "/h1", "count": 1}]
    assert middle["scrollDepth"][5] == {"bucket": 50, "count": 1}
    # Event counts come from minute buckets: the range misses /h1's minute.
    assert middle["totalEvents"] == 0
    assert middle["eventsPerMinute"][0]["t"] == T0 + HOUR_MS + 30 * MINUTE_MS
    assert len(middle["eventsPerMinute"]) == 30
    since = stats.report(now, from_ms=T0 + HOUR_MS)
    assert [p["path"] for p in since["topPages"]] == ["/h1", "/h2"]
    assert since["totalEvents"] == 4
    assert since["eventsByType"]["scroll"] == 2
    everything = stats.report(now)
    assert everything["totalEvents"] == 6
    assert len(everything["topPages"]) == 3


def test_a_range_includes_its_end_and_leaves_the_user_and_session_totals_all_time() -> None:
    stats = SiteStats()
    stats.observe("u1", [mv("page_view", "/early", user="u1")], T0)
    stats.observe("u2", [mv("page_view", "/late", user="u2", session="s2")], T0 + 2 * HOUR_MS)
    late = stats.report(T0 + 3 * HOUR_MS, from_ms=T0 + HOUR_MS, to_ms=T0 + 2 * HOUR_MS)
    assert late["topPages"] == [{"path": "/late", "count": 1}]  # received at `to`: inside
    assert late["totalEvents"] == 1
    assert (late["totalUsers"], late["totalSessions"]) == (2, 2)


def test_path_picks_the_heatmaps_page_and_filters_nothing_else() -> None:
    stats = SiteStats()
    stats.observe("u1", [click("/a", 10, 10, T0, viewportWidth=100)], T0)
    stats.observe("u1", [click("/b", 10, 10, T0 + 5000, viewportWidth=100)] * 2, T0)
    everything, only_a = stats.report(T0), stats.report(T0, path="/a")
    assert (everything["heatmap"]["path"], only_a["heatmap"]["path"]) == ("/b", "/a")
    assert only_a["heatmap"]["cells"] == [{"x": 4, "y": 0, "count": 1}]
    del everything["heatmap"], only_a["heatmap"]
    assert only_a == everything


def test_rage_clicks_are_filtered_by_the_time_range() -> None:
    stats = SiteStats()
    stats.observe("u1", [click("/a", 1, 1, T0 + k) for k in range(3)], T0)
    stats.observe("u1", [click("/b", 1, 1, T0 + 5000 + k) for k in range(3)], T0 + HOUR_MS)
    rage = stats.report(T0 + HOUR_MS, from_ms=T0 + 1)["rageClicks"]
    assert [r["path"] for r in rage] == ["/b"]


def test_a_range_that_ends_before_it_starts_is_rejected_naming_from() -> None:
    with pytest.raises(InvalidInput) as caught:
        SiteStats().report(T0, from_ms=T0, to_ms=T0 - 1)
    assert caught.value.field == "from"


# -- bounded memory ---------------------------------------------------------------------------


def test_keyed_maps_stay_bounded_when_fed_100k_distinct_paths() -> None:
    stats = SiteStats(SessionSequences(max_sessions=1000))
    for batch in range(200):
        movements = []
        for i in range(500):
            n = batch * 500 + i
            path = f"/p{n}"
            session = f"s{n // 10}"
            movements.append(mv("page_view", path, session=session))
            movements.append(
                click(path, n % 800, n % 9000, T0 + n, session=session, viewportWidth=800)
            )
        stats.observe("u1", movements, T0 + batch)
    hour = stats.hours[T0]
    assert len(hour.pages) <= MAX_PAGES
    assert len(hour.elements) <= MAX_ELEMENTS
    assert len(hour.journeys) <= MAX_JOURNEYS
    assert hour.heat_cells == sum(map(len, hour.heat.values())) <= MAX_HEAT_CELLS
    assert len(stats.metric(RecentActivity).recent) <= MAX_RECENT_SESSIONS
    assert len(stats.sequences) <= 1000
    report = stats.report(T0 + 1000)
    assert report["totalEvents"] == 200_000
    assert len(report["topPages"]) == 10


def test_heavy_keys_survive_pruning_of_light_ones() -> None:
    stats = SiteStats()
    stats.observe("u1", [mv("page_view", "/home")] * 50, T0)
    stats.observe("u1", [mv("page_view", f"/spam{i}") for i in range(20_000)], T0)
    assert stats.report(T0)["topPages"][0] == {"path": "/home", "count": 50}


def test_heat_cells_stay_under_the_cap_and_the_most_clicked_cells_survive_pruning() -> None:
    paths, columns = 37, HEAT_BINS_X
    heavy = [click("/hot", 400, 100, T0 + 2000 * i, viewportWidth=800) for i in range(5)]
    flood = [  # each in a cell of its own, once
        click(
            f"/p{n % paths}",
            n // paths % columns * 20 + 1,
            n // (paths * columns) * 25 + 1,
            T0 + 2000 * n,
            viewportWidth=800,
        )
        for n in range(3 * MAX_HEAT_CELLS)
    ]
    stats = SiteStats()
    stats.observe("u1", heavy, T0)
    for start in range(0, len(flood), 500):
        stats.observe("u1", flood[start : start + 500], T0)
        hour = stats.hours[T0]
        assert hour.heat_cells == sum(map(len, hour.heat.values())) <= MAX_HEAT_CELLS
        assert all(hour.heat.values())  # no path is left without cells
    assert stats.report(T0, path="/hot")["heatmap"]["cells"] == [{"x": 20, "y": 4, "count": 5}]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3000), st.lists(st.integers(1, 4), min_size=1, max_size=7)),
        min_size=1,
        max_size=4,
    )
)
def test_pruning_the_heatmap_prunes_all_its_cells_as_one_map_in_path_order(
    pages: list[tuple[int, list[int]]],
) -> None:
    """As `prune` on a map of (path, cell), the smallest counts first and, among equal ones,
    the first path's first cells first."""
    heat = {
        f"/p{i}": {cell: counts[cell % len(counts)] for cell in range(cells)}
        for i, (cells, counts) in enumerate(pages)
    }
    hour = Hour()
    hour.heat = {path: dict(cells) for path, cells in heat.items()}
    hour.heat_cells = sum(map(len, heat.values()))
    flat = {(path, cell): n for path, cells in heat.items() for cell, n in cells.items()}
    prune(flat, MAX_HEAT_CELLS)
    prune_heat(hour)
    assert [(p, c, n) for p, cells in hour.heat.items() for c, n in cells.items()] == [
        (p, c, n) for (p, c), n in flat.items()
    ]
    assert hour.heat_cells == len(flat)
    assert all(hour.heat.values())


def test_buckets_keep_at_most_seven_days_and_user_sets_only_for_the_last_hour() -> None:
    stats = SiteStats()
    days = 8
    for m in range(0, days * 24 * 60, 7):
        stats.observe(f"u{m % 5}", [mv("hover", "/", user=f"u{m % 5}")], T0 + m * MINUTE_MS)
    assert len(stats.series.minutes) <= KEEP_MINUTES
    assert len(stats.hours) <= KEEP_HOURS
    with_sets = [t for t, m in stats.series.minutes.items() if m.users is not None]
    assert len(with_sets) <= EXACT_USER_MINUTES
    now = T0 + days * 24 * HOUR_MS
    series = stats.report(now, from_ms=0)["eventsPerMinute"]
    assert len(series) == KEEP_MINUTES
    assert all(point["users"] == point["count"] for point in series)


# -- forgetting, shipping ---------------------------------------------------------------------


def test_forgetting_a_user_removes_them_from_active_users_sessions_and_rage_clicks() -> None:
    stats = SiteStats()
    stats.observe("gone", [click("/a", 1, 1, T0 + k, user="gone") for k in range(3)], T0)
    stats.observe("kept", [mv("hover", "/", user="kept")], T0)
    stats.forget_user("gone")
    report = stats.report(T0)
    # The all-time count is a sketch, which names nobody: the user stays counted there.
    assert (report["totalUsers"], report["activeUsers"]) == (2, 1)
    assert [r["userId"] for r in report["recentActivity"]] == ["kept"]
    assert report["rageClicks"] == []
    assert report["totalEvents"] == 4  # anonymous counters keep what they counted


def test_the_wire_form_round_trips_through_msgpack() -> None:
    stats = SiteStats()
    stats.observe_session("u1", "s1", T0)
    stats.observe(
        "u1",
        [
            mv("page_view", "/a", referrerPath="/"),
            mv("scroll", "/a", scrollDepth=40),
            *[click("/a", 5, 5, T0 + k, viewportWidth=100) for k in range(3)],
        ],
        T0 + 5,
    )
    stats.observe("u2", [mv("hover", "/", user="u2")], T0 + 2 * HOUR_MS)
    wire = stats.to_wire()
    assert ship(stats).to_wire() == wire
    assert ship(stats).report(T0 + 2 * HOUR_MS) == stats.report(T0 + 2 * HOUR_MS)


def test_a_fresh_or_drained_instance_is_empty() -> None:
    stats = SiteStats()
    assert stats.is_empty()
    stats.observe_session("u1", "s1", T0)
    assert not stats.is_empty()
    stats.take_delta()
    assert stats.is_empty()
    stats.observe("u1", [], T0)
    assert stats.is_empty()


# -- what the aggregator takes ---------------------------------------------------------------


def shipped_wire() -> dict[str, Any]:
    """A host's delta with every kind of row, as the aggregator decodes it."""
    host = SiteStats()
    host.observe_session("u1", "s1", T0, {"timezone": "UTC"})
    host.observe(
        "u1",
        [
            mv("page_view", "/a", referrerPath="/"),
            mv("scroll", "/a", scrollDepth=40),
            *[click("/a", 5, 5, T0 + k, viewportWidth=100) for k in range(3)],
        ],
        T0 + 5,
    )
    wire: dict[str, Any] = msgspec.msgpack.decode(msgspec.msgpack.encode(host.to_wire()))
    return wire


def with_scroll_of_12(w: dict[str, Any]) -> None:
    w["hours"][0][5].append(0)


def with_a_rage_time_as_text(w: dict[str, Any]) -> None:
    w["rage"][0][7] = str(w["rage"][0][7])


def with_events_past_what_encodes(w: dict[str, Any]) -> None:
    w["events"] = 2**64 - 1


def with_a_negative_page_count(w: dict[str, Any]) -> None:
    w["hours"][0][1]["/a"] = -1


def with_a_short_minute_row(w: dict[str, Any]) -> None:
    w["minutes"][0] = w["minutes"][0][:4]


def with_a_minute_off_the_minute(w: dict[str, Any]) -> None:
    w["minutes"][0][0] += 1


def with_half_a_heatmap_cell(w: dict[str, Any]) -> None:
    w["hours"][0][4]["/a"].append(3)


def with_a_heatmap_cell_off_the_map(w: dict[str, Any]) -> None:
    w["hours"][0][4]["/a"][0] = HEAT_ROWS * HEAT_BINS_X


def with_an_infinite_rage_x(w: dict[str, Any]) -> None:
    w["rage"][0][3] = float("inf")


def with_a_user_sketch_of_garbage(w: dict[str, Any]) -> None:
    w["users"] = b"\x02\x01\x07" + bytes(40)


def with_a_coarser_user_sketch(w: dict[str, Any]) -> None:
    from datasketches import hll_sketch

    w["users"] = bytes(hll_sketch(4).serialize_compact())


@pytest.mark.parametrize(
    "corrupt",
    [
        with_scroll_of_12,
        with_a_rage_time_as_text,
        with_events_past_what_encodes,
        with_a_negative_page_count,
        with_a_short_minute_row,
        with_a_minute_off_the_minute,
        with_half_a_heatmap_cell,
        with_a_heatmap_cell_off_the_map,
        with_an_infinite_rage_x,
        with_a_user_sketch_of_garbage,
        with_a_coarser_user_sketch,
    ],
)
def test_a_delta_that_merge_could_not_take_whole_is_refused_before_anything_is_merged(
    corrupt: Any,
) -> None:
    aggregator = SiteStats.from_wire(shipped_wire())
    before = aggregator.to_wire()
    wire = shipped_wire()
    corrupt(wire)
    with pytest.raises(InvalidInput, match="analytics"):
        aggregator.merge(SiteStats.decode_wire(msgspec.msgpack.encode(wire)), T0)
    with pytest.raises(InvalidInput, match="analytics"):
        aggregator.merge(SiteStats.from_wire(wire), T0)
    assert aggregator.to_wire() == before
    assert aggregator.report(T0)["totalEvents"] == 5
    codec.encode("site", {"stats": aggregator.to_wire()})


def test_rows_with_a_field_more_from_a_newer_version_are_read_without_it() -> None:
    wire = shipped_wire()
    expected = SiteStats.from_wire(wire).report(T0 + 5)
    for table in ("minutes", "hours", "recent", "rage"):
        wire[table] = [[*row, "added later"] for row in wire[table]]
    wire["added later"] = 1
    assert SiteStats.decode_wire(msgspec.msgpack.encode(wire)).report(T0 + 5) == expected


def test_all_time_users_of_four_hosts_are_counted_within_two_percent_in_bounded_bytes() -> None:
    """200,000 distinct users, each seen on two of four hosts, shipped as deltas of a few
    thousand users and merged; the totals stored and loaded back in between."""
    users = 200_000
    hosts = [SiteStats() for _ in range(4)]
    aggregator = SiteStats()
    for u in range(users):
        for host in (hosts[u % 4], hosts[(u + 1) % 4]):
            host.observe_session(f"user-{u}", "s1", T0 + u)
        if u % 10_000 == 9_999:
            for host in hosts:
                aggregator.merge(ship(host.take_delta()), T0 + u)
            aggregator = ship(aggregator)  # what the aggregator saves and loads after a restart
    total = aggregator.report(T0 + users)["totalUsers"]
    assert abs(total - users) <= users * 0.02
    stored = codec.encode("site", {"stats": aggregator.to_wire()})
    assert len(aggregator.to_wire()["users"]) <= 2**14 + 64
    loaded = SiteStats.from_wire(codec.decode("site", stored)["stats"])
    assert loaded.report(T0 + users)["totalUsers"] == total


def test_counts_saturate_so_the_totals_always_encode() -> None:
    wire = shipped_wire()
    wire["events"] = MAX_COUNT
    wire["hours"][0][1]["/a"] = MAX_COUNT
    wire["hours"][0][5][4] = MAX_COUNT
    aggregator = SiteStats()
    for _ in range(3):
        aggregator.merge(SiteStats.decode_wire(msgspec.msgpack.encode(wire)), T0)
    report = aggregator.report(T0, from_ms=T0)
    assert aggregator.report(T0)["totalEvents"] == MAX_COUNT
    assert report["topPages"] == [{"path": "/a", "count": MAX_COUNT}]
    assert report["scrollDepth"][4]["count"] == MAX_COUNT
    stored = codec.encode("site", {"stats": aggregator.to_wire()})
    assert SiteStats.from_wire(codec.decode("site", stored)["stats"]).to_wire() == (
        aggregator.to_wire()
    )


def test_totals_stored_by_an_earlier_version_still_load() -> None:
    minute, user = T0 + 3 * MINUTE_MS, user_key("u1")
    old = {  # to_wire's form as written before deltas were checked; `newest` a host's
        "newest": minute + 2 * HOUR_MS,
        "events": 3,
        "sessions": 1,
        "types": {"page_view": 1, "click": 2},
        "users": [user],
        "minutes": [[minute, 3, {"page_view": 1, "click": 2}, [user], 0]],
        "hours": [
            [
                T0,
                {"/a": 1},
                [["#go", "/a", 2]],
                [["/", "/a", 1]],
                {"/a": [41, 2]},
                [0] * SCROLL_BUCKETS,
            ]
        ],
        "recent": [["u1", "s1", minute, minute + 5, 3]],  # rows before devices were kept
        "rage": [["u1/s1/7", "/a", "#go", 30.0, 40.0, 3, "u1", minute]],
    }
    stored = codec.encode("site", {"stats": old})
    report = SiteStats.from_wire(codec.decode("site", stored)["stats"]).report(minute)
    assert report["totalEvents"] == 3 and report["activeUsers"] == 1
    assert report["totalUsers"] == 1  # the stored hashes, now in a sketch
    assert report["topElements"] == [{"element": "#go", "path": "/a", "count": 2}]
    assert report["heatmap"]["cells"] == [{"x": 1, "y": 1, "count": 2}]
    assert report["recentActivity"][0]["movementCount"] == 3
    assert report["rageClicks"][0]["timestamp"] == minute


def test_a_host_clock_hours_ahead_leaves_the_current_minutes_users_exact() -> None:
    aggregator, host, ahead = SiteStats(), SiteStats(), SiteStats()
    host.observe("u1", [mv("hover", "/")], T0)
    aggregator.merge(ship(host.take_delta()), T0)
    ahead.observe("u2", [mv("hover", "/", user="u2")], T0 + 2 * HOUR_MS)
    aggregator.merge(ship(ahead.take_delta()), T0 + 1)
    for k in range(2, 4):  # u1 again, in two more of their host's deltas
        host.observe("u1", [mv("hover", "/")], T0 + k)
        aggregator.merge(ship(host.take_delta()), T0 + k)
    report = aggregator.report(T0 + 3)
    assert report["eventsPerMinute"][-1] == {"t": T0, "count": 4, "users": 2}
    assert report["activeUsers"] == 2
    assert list(aggregator.series.minutes) == [T0] and list(aggregator.hours) == [T0]


def test_a_delta_from_far_ahead_neither_empties_the_buckets_nor_stops_expiry() -> None:
    aggregator, host = SiteStats(), SiteStats()
    host.observe("u1", [mv("hover", "/")], T0)
    aggregator.merge(ship(host.take_delta()), T0)
    crafted = SiteStats().to_wire()
    crafted["newest"] = 10**15
    aggregator.merge(SiteStats.from_wire(crafted), T0)
    far = SiteStats()
    far.observe("u2", [mv("hover", "/", user="u2")], 10**14)
    aggregator.merge(ship(far.take_delta()), T0)
    assert aggregator.report(T0)["eventsPerMinute"][-1] == {"t": T0, "count": 2, "users": 2}
    assert aggregator.newest == T0
    stale = SiteStats()
    stale.observe("u3", [mv("hover", "/", user="u3")], T0 - 8 * 24 * HOUR_MS)
    aggregator.merge(ship(stale.take_delta()), T0)  # older than the week kept: dropped
    assert list(aggregator.series.minutes) == [T0]
    now = T0
    for _ in range(8 * 24):  # expiry goes on as the aggregator's clock does
        now += HOUR_MS
        host.observe("u1", [mv("hover", "/")], now)
        aggregator.merge(ship(host.take_delta()), now)
    assert min(aggregator.series.minutes) > now - 7 * 24 * HOUR_MS
    assert len(aggregator.hours) == KEEP_HOURS
    assert sum(m.users is not None for m in aggregator.series.minutes.values()) == 1


def test_totals_stored_with_a_newest_far_ahead_expire_again() -> None:
    stored = SiteStats()
    stored.observe("u1", [mv("hover", "/")], T0)
    wire = stored.to_wire()
    # As an earlier version stored them after a crafted delta: expiry stopped, so a minute
    # more than a week old is still there.
    wire["newest"] = 10**15
    wire["minutes"].insert(0, [T0 - 8 * 24 * HOUR_MS, 1, {"hover": 1}, None, 1])
    aggregator = SiteStats.from_wire(wire)
    host = SiteStats()
    host.observe("u1", [mv("hover", "/")], T0 + MINUTE_MS)
    aggregator.merge(ship(host.take_delta()), T0 + MINUTE_MS)
    assert list(aggregator.series.minutes) == [T0, T0 + MINUTE_MS]


# -- merging is exact -------------------------------------------------------------------------

PATHS = ["/", "/a", "/b", "/app/c"]
EVENTS = ["page_view", "click", "scroll", "hover", "form_interaction"]


@st.composite
def movement_batches(draw: st.DrawFn) -> list[tuple[int, int, list[Movement]]]:
    """Steps of (clock advance ms, user index, movements): a user's batch, as a host sees it."""
    steps = []
    client = T0
    for _ in range(draw(st.integers(1, 40))):
        advance = draw(st.sampled_from([0, 300, 20_000, 70_000, 25 * MINUTE_MS, 2 * HOUR_MS]))
        user = draw(st.integers(0, 5))
        movements = []
        if draw(st.booleans()):  # a burst of clicks, which may go on in a later batch
            for _ in range(draw(st.integers(1, 4))):
                client += 100
                x, y = draw(st.sampled_from([(10, 10), (20, 25)]))
                movements.append(click("/a", x, y, client, user=f"u{user}", session="s0"))
            steps.append((advance, user, movements))
            continue
        for _ in range(draw(st.integers(0, 6))):
            client += draw(st.sampled_from([0, 100, 400, 1500]))
            event = draw(st.sampled_from(EVENTS))
            metadata: dict[str, Any] = {}
            if draw(st.booleans()):
                metadata["viewportWidth"] = draw(st.sampled_from([0, 400, 1280]))
            if event == "scroll":
                metadata["scrollDepth"] = draw(st.integers(0, 100))
            if event == "page_view" and draw(st.booleans()):
                metadata["referrerPath"] = draw(st.sampled_from(PATHS))
            coords = draw(st.sampled_from([(10, 10), (20, 25), (300, 900)]))
            movements.append(
                mv(
                    event,
                    draw(st.sampled_from([*PATHS, None])),
                    user=f"u{user}",
                    session=f"s{draw(st.integers(0, 2))}",
                    t=client,
                    element=draw(st.sampled_from(["#a", "#b", None])),
                    x=coords[0],
                    y=coords[1],
                    scroll_y=draw(st.sampled_from([None, 0, 600])),
                    **metadata,
                )
            )
        steps.append((advance, user, movements))
    return steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=movement_batches(),
    hosts=st.integers(1, 3),
    ships=st.lists(st.booleans(), min_size=40, max_size=40),
    restart_at=st.integers(0, 40),
)
def test_merging_shipped_deltas_equals_observing_everything_in_one_place(
    steps: list[tuple[int, int, list[Movement]]],
    hosts: int,
    ships: list[bool],
    restart_at: int,
) -> None:
    whole = SiteStats()
    host_stats = [SiteStats() for _ in range(hosts)]
    last_ship = [T0] * hosts
    aggregator = SiteStats()
    now = T0

    def ship_host(h: int) -> None:
        aggregator.merge(ship(host_stats[h].take_delta()), now)
        last_ship[h] = now

    for index, (advance, user, movements) in enumerate(steps):
        now += advance
        for h in range(hosts):  # the host's ticker ships at least once a minute
            if now - last_ship[h] >= MINUTE_MS:
                ship_host(h)
        host = user % hosts  # a user's sessions always go through one host
        if movements and movements[0].event == "form_interaction":
            for target in (whole, host_stats[host]):
                target.observe_session(f"u{user}", movements[0].sessionId, now)
        for target in (whole, host_stats[host]):
            target.observe(f"u{user}", movements, now)
        if ships[index]:
            ship_host(host)
        if index == restart_at:  # the aggregator restarts from its persisted state
            aggregator = ship(aggregator)
    for h in range(hosts):
        ship_host(h)

    for filters in [
        {},
        {"from_ms": T0 + HOUR_MS, "path": "/a"},
        {"from_ms": T0, "to_ms": max(T0, now - HOUR_MS), "top": 3},
    ]:
        assert aggregator.report(now, **filters) == whole.report(now, **filters)
        assert aggregator.report(now + 3 * MINUTE_MS, **filters) == whole.report(
            now + 3 * MINUTE_MS, **filters
        )


def test_stored_movements_count_as_the_movements_they_were_encoded_from() -> None:
    batch = [
        mv("page_view", "/a", t=T0),
        *(click("/a", 100 + i, 200, T0 + 100 * i, viewportWidth=1000) for i in range(4)),
        mv("scroll", "/a", t=T0 + 900, scrollDepth=55),
    ]
    stored = msgspec.msgpack.Decoder(list[codec.StoredMovement]).decode(codec.encode_blob(batch))
    from_stored, from_movements = SiteStats(), SiteStats()
    from_stored.observe_stored("u1", "s1", stored, T0)
    from_movements.observe("u1", batch, T0)

    wire = from_stored.to_wire()
    assert wire == from_movements.to_wire()
    report = from_stored.report(T0)
    assert report["rageClicks"] and report["scrollDepth"]


# -- cost -------------------------------------------------------------------------------------


def test_observe_is_a_few_microseconds_per_movement_and_report_is_well_under_a_second() -> None:
    users, per_user = 10_000, 10
    batches = []
    for u in range(users):
        user, session = f"user-{u}", f"s-{u}"
        batch = []
        for k in range(per_user):
            path = f"/page/{(u * 7 + k) % 900}"
            t = T0 + u * 50 + k * 400
            event = EVENTS[k % 5]
            if event == "click":
                batch.append(
                    click(
                        path,
                        (u * 13) % 1280,
                        (u * 31) % 9000,
                        t,
                        user=user,
                        session=session,
                        element=f"#e{u % 1500}",
                        viewportWidth=1280,
                    )
                )
            elif event == "scroll":
                batch.append(
                    mv("scroll", path, user=user, session=session, t=t, scrollDepth=u % 101)
                )
            else:
                batch.append(mv(event, path, user=user, session=session, t=t))
        batches.append((user, batch, T0 + u * 50))
    host = SiteStats()
    started = time.perf_counter()
    for user, batch, now in batches:
        host.observe(user, batch, now)
    per_movement_us = (time.perf_counter() - started) / (users * per_user) * 1e6

    # Aggregates as after a week of such traffic: every hour bucket full of distinct keys.
    wire = host.to_wire()
    full_hour = max(wire["hours"], key=lambda h: len(h[1]))
    wire["hours"] = [[T0 - i * HOUR_MS, *full_hour[1:]] for i in range(KEEP_HOURS)]
    week = SiteStats.from_wire(wire)
    started = time.perf_counter()
    report = week.report(T0 + users * 50)
    report_ms = (time.perf_counter() - started) * 1e3
    print(
        f"\nobserve: {per_movement_us:.2f} us/movement; report over a full week: {report_ms:.0f} ms"
    )
    assert abs(report["totalUsers"] - users) <= users * 0.02
    assert len(report["topPages"]) == 10
    assert per_movement_us < 100
    assert report_ms < 1000


def test_every_metric_module_is_registered_and_each_reports_keys_of_its_own() -> None:
    package = importlib.import_module("tracker.analytics")
    metrics = {
        cls
        for info in pkgutil.iter_modules(package.__path__)
        for cls in vars(importlib.import_module(f"tracker.analytics.{info.name}")).values()
        if inspect.isclass(cls)
        and cls.__module__ == f"tracker.analytics.{info.name}"
        and hasattr(cls, "report")
        and (hasattr(cls, "merge_hour") or hasattr(cls, "load"))
        and cls not in (SiteStats, Metric, HourlyMetric)
    }
    registered = [*site.METRICS, *(type(hourly) for hourly in site.HOURLY)]
    assert metrics == set(registered) and len(registered) == len(metrics)
    stats = SiteStats()
    stats.observe("u1", [mv("page_view", "/a"), click("/a", 5, 5, T0, viewportWidth=800)], T0)
    report = stats.report(T0)
    query = Query(T0, None, None, None, 10, 0, None, False, hours=list(stats.hours.values()))
    keys = [key for metric in [*stats.metrics, *site.HOURLY] for key in metric.report(query)]
    assert len(keys) == len(set(keys)) and set(keys) == set(report)
