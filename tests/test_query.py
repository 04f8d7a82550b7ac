"""The query index (histories kept per host, rebuilt from storage, trimmed, forgetting) and the
site report over it: each figure, each filter, combined filters, merging hosts' parts."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from support import movement, run

from tracker import codec
from tracker.errors import InvalidInput
from tracker.history import user_key
from tracker.query.filters import Filters, ReportOptions, report_options
from tracker.query.index import HistoryIndex
from tracker.query.rebuild import rebuild
from tracker.query.report import OTHER, PART_ROWS, SiteReport, figures
from tracker.schema import Movement
from tracker.storage import Storage
from tracker.user_tracker import UserTracker

T0 = 1_700_000_000_000
GOOGLE = {"channel": "search", "referrer": "google.com", "browser": "Firefox", "os": "Linux",
          "device": "desktop", "country": "GB"}  # fmt: skip
HN = {"channel": "social", "referrer": "news.ycombinator.com", "browser": "Chrome",
      "os": "Android", "device": "mobile", "country": "US"}  # fmt: skip
BOT = {"channel": "direct", "browser": "HeadlessChrome", "device": "bot", "bot": True}


def mv(event: str, at: int, path: str | None = "/", **data: Any) -> Movement:
    if path is not None:
        data["path"] = path
    return msgspec.convert(movement("x", "x", at=at, event=event, data=data), Movement)


def visit(
    index: HistoryIndex, user: str, session: str, derived: dict[str, Any], *events: Movement
) -> None:
    index.session(user, session, events[0].timestamp if events else T0, derived)
    index.track(user, session, list(events), T0)


def report(index: HistoryIndex, limit: int = 10, **filters: Any) -> dict[str, Any]:
    options = ReportOptions(T0 - 1000, T0 + 3_600_000, Filters(**filters), limit=limit)
    query = SiteReport(options)
    return figures(query.merge([query.run(index.histories())]), limit)


@pytest.fixture
def site() -> HistoryIndex:
    """Three visitors: alice came from Google twice (a bounce, then two pages and a sign-up),
    bob from Hacker News (a page and a click), and a headless browser."""
    index = HistoryIndex()
    visit(index, "alice", "a1", GOOGLE, mv("page_view", T0, "/"))
    visit(
        index, "alice", "a2", GOOGLE,
        mv("page_view", T0 + 10_000, "/"),
        mv("page_view", T0 + 20_000, "/pricing"),
        mv("custom", T0 + 30_000, None, name="signup", properties={"plan": "pro", "n": 2}),
    )  # fmt: skip
    visit(
        index, "bob", "b1", HN,
        mv("page_view", T0 + 5_000, "/blog"),
        mv("click", T0 + 9_000, "/blog", element="a#more"),
    )  # fmt: skip
    visit(index, "crawler", "c1", BOT, mv("page_view", T0, "/"), mv("page_view", T0 + 1, "/x"))
    return index


def test_sources_technology_and_countries_count_visitors_not_visits(site: HistoryIndex) -> None:
    r = report(site)
    assert r["visitors"] == 2 and r["visits"] == 3 and r["pageviews"] == 4
    assert r["referrers"] == [
        {"source": "google.com", "visitors": 1},
        {"source": "news.ycombinator.com", "visitors": 1},
    ]
    assert r["channels"] == [
        {"channel": "search", "visitors": 1},
        {"channel": "social", "visitors": 1},
    ]
    assert r["browsers"] == [{"name": "Chrome", "visitors": 1}, {"name": "Firefox", "visitors": 1}]
    assert r["devices"] == [{"name": "desktop", "visitors": 1}, {"name": "mobile", "visitors": 1}]
    assert r["countries"] == [{"name": "GB", "visitors": 1}, {"name": "US", "visitors": 1}]


def test_engagement_counts_bounces_entries_exits_and_durations(site: HistoryIndex) -> None:
    r = report(site)
    # a1 is the only bounce: b1 had a click, a2 two pages.
    assert r["bounceRate"] == pytest.approx(1 / 3)
    assert r["pagesPerVisit"] == pytest.approx(4 / 3)
    assert r["visitDuration"] == {"median": 4_000, "mean": pytest.approx((0 + 20_000 + 4_000) / 3)}
    assert {"path": "/", "visitors": 1} in r["entryPages"]
    assert {"path": "/blog", "visitors": 1} in r["entryPages"]
    assert {"path": "/pricing", "visitors": 1} in r["exitPages"]


def test_custom_events_count_events_visitors_and_property_values(site: HistoryIndex) -> None:
    assert report(site)["customEvents"] == [
        {
            "name": "signup",
            "count": 1,
            "visitors": 1,
            "properties": {
                "n": [{"value": "2", "count": 1}],
                "plan": [{"value": "pro", "count": 1}],
            },
        }
    ]


def test_bots_are_left_out_and_counted_apart_unless_included(site: HistoryIndex) -> None:
    r = report(site)
    assert r["bots"] == {"visitors": 1, "events": 2}
    assert {"name": "bot", "visitors": 1} not in r["devices"]
    included = report(site, bots=True)
    assert included["visitors"] == 3
    assert {"name": "bot", "visitors": 1} in included["devices"]


@pytest.mark.parametrize(
    ("name", "value", "visitors"),
    [
        ("referrer", "google.com", ["alice"]),
        ("channel", "social", ["bob"]),
        ("country", "GB", ["alice"]),
        ("browser", "Chrome", ["bob"]),
        ("os", "Linux", ["alice"]),
        ("device", "mobile", ["bob"]),
        ("path", "/pricing", ["alice"]),
        ("event", "signup", ["alice"]),
    ],
)
def test_each_filter_narrows_every_figure(
    site: HistoryIndex, name: str, value: str, visitors: list[str]
) -> None:
    r = report(site, **{name: value})
    assert r["visitors"] == len(visitors)
    countries = {"alice": "GB", "bob": "US"}
    assert r["countries"] == [{"name": countries[v], "visitors": 1} for v in visitors]


def test_a_path_filter_keeps_only_the_visits_that_viewed_the_page(site: HistoryIndex) -> None:
    r = report(site, path="/pricing")
    assert r["visits"] == 1 and r["pageviews"] == 2 and r["bounceRate"] == 0


def test_filters_combine(site: HistoryIndex) -> None:
    assert report(site, channel="search", country="GB")["visitors"] == 1
    assert report(site, channel="search", country="US")["visitors"] == 0
    assert report(site, channel="social", path="/blog")["visits"] == 1


def test_hosts_parts_merge_into_what_one_host_would_answer(site: HistoryIndex) -> None:
    """A user lives on one host: splitting the users between hosts changes nothing."""
    options = ReportOptions(T0 - 1000, T0 + 3_600_000, Filters())
    query = SiteReport(options)
    histories = list(site.histories())
    parts = [query.run(histories[:1]), query.run(histories[1:])]
    assert figures(query.merge(parts), 10) == figures(query.run(histories), 10)


def test_lists_are_bounded_with_the_rest_counted_as_other() -> None:
    index = HistoryIndex()
    for n in range(PART_ROWS + 50):
        derived = {"channel": "referral", "referrer": f"site{n}.example"}
        visit(index, f"u{n}", "s", derived, mv("page_view", T0))
    part = SiteReport(ReportOptions(T0, T0, Filters())).run(index.histories())
    assert len(part.lists["referrers"]) == PART_ROWS + 1
    rows = figures(part, 5)["referrers"]
    assert len(rows) == 6
    assert rows[-1] == {"source": OTHER, "visitors": PART_ROWS + 45, "other": True}


def test_the_previous_range_is_as_long_and_ends_where_the_range_starts() -> None:
    options = ReportOptions(1000, 1999, Filters())
    previous = options.previous()
    assert (previous.from_ms, previous.to_ms) == (0, 999)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"channel": "tv"}, "channel"),
        ({"device": "fridge"}, "device"),
        ({"country": "gb"}, "country"),
        ({"path": "pricing"}, "path"),
        ({"bots": "yes"}, "bots"),
        ({"compare": "last-year"}, "compare"),
        ({"limit": "0"}, "limit"),
        ({"event": "e" * 65}, "event"),
        ({"browser": "b" * 300}, "browser"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        report_options(params, T0, None, None)
    assert caught.value.field == field


def test_erased_users_are_forgotten_and_retention_trims_old_events(site: HistoryIndex) -> None:
    site.forget("bob")
    assert report(site)["visitors"] == 1
    dropped = site.trim(T0 + 15_000)
    assert dropped == 4  # two of alice's, and the crawler's two
    assert [e.path for e in site.users["alice"].ordered()] == ["/pricing", None]
    assert "crawler" not in site.users


def test_the_index_rebuilt_from_storage_holds_what_was_committed(storage: Storage) -> None:
    """What a host's index gets from its commits, it gets again from the histories' chunks
    when it starts: the same report; and only for the users it is given."""
    tracker = UserTracker("alice")
    live = HistoryIndex()
    records = [tracker.create_session_record("a1", {"userAgent": "x"}, T0, GOOGLE)]
    live.session("alice", "a1", T0, GOOGLE)
    blob = codec.encode_blob([mv("page_view", T0), mv("custom", T0 + 5, None, name="buy")])
    records.append(["track", "alice", T0, [["a1", blob]]])
    live.track("alice", "a1", codec.decode_stored(blob), T0)
    other = ["session", "bob", T0, ["b1", None, HN]]

    async def store() -> None:
        for user, chunk in (("alice", records), ("bob", [other])):
            data = codec.encode("chunk", {"user": user, "records": chunk, "applied": {}})
            await storage.put(f"{user_key(user)}/chunks/{1:012d}", data)

    run(store())
    rebuilt = HistoryIndex()
    assert run(rebuild(rebuilt, storage, lambda user: user == "alice")) == 1
    assert list(rebuilt.users) == ["alice"]
    assert report(rebuilt) == report(live)


def test_an_unreadable_history_is_left_out_of_the_rebuilt_index(storage: Storage) -> None:
    """A corrupt chunk must not keep a host from starting: its user alone is left out."""

    async def store() -> None:
        good = codec.encode(
            "chunk",
            {
                "user": "alice",
                "records": [["session", "alice", T0, ["a1", None, GOOGLE]]],
                "applied": {},
            },
        )
        await storage.put(f"{user_key('alice')}/chunks/{1:012d}", good)
        await storage.put(f"{user_key('bob')}/chunks/{1:012d}", b"not msgpack at all")

    run(store())
    rebuilt = HistoryIndex()
    assert run(rebuild(rebuilt, storage, lambda _user: True)) == 1
    assert list(rebuilt.users) == ["alice"]


@pytest.mark.parametrize(
    ("event", "data", "field"),
    [
        ("custom", {}, "data.name"),
        ("page_view", {"path": "/", "referrer": "https://x.example/a?private=1"}, "data.referrer"),
    ],
)
def test_blobs_stored_as_sent_are_held_to_the_schemas_custom_and_referrer_rules(
    event: str, data: dict[str, Any], field: str
) -> None:
    blob = msgspec.msgpack.encode([["e1", T0, event, data]])
    with pytest.raises(InvalidInput) as caught:
        codec.entries_from_obj([["s1", blob]], T0)
    assert caught.value.field == f"entries.0.movements.0.{field}"
