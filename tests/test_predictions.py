"""The prediction models over histories: the next-page model's counting, back-off, bounds and
merge; session samples for propensity; and the time-split evaluation, which must show both
models beating their baselines on generated traffic with structure planted in it."""

from __future__ import annotations

import pytest

from bench import traffic
from tracker.conversions.definitions import Match
from tracker.predictions import evaluate
from tracker.predictions.evaluate import ObservationsQuery
from tracker.predictions.next_page import NextPageModel, OnlineNextPage
from tracker.predictions.propensity import train
from tracker.predictions.queries import LiveQuery, NextPageQuery, SamplesQuery
from tracker.predictions.sessions import PREFIX_EVENTS, samples
from tracker.query.events import Event, UserHistory, Visit

SIGNUP = Match("page_view", path="/signup")


def journey(user_id: str, *paths: str, start: int = 0, bot: bool = False) -> UserHistory:
    visit = Visit(f"{user_id}-v", start, bot=bot)
    history = UserHistory(user_id, {visit.session_id: visit})
    for n, path in enumerate(paths):
        history.add(Event(start + n * 1000, n, "page_view", visit, path=path))
    return history


def test_the_next_page_backs_off_from_two_pages_to_one_to_the_most_frequent() -> None:
    model = NextPageModel()
    model.observe_visits(
        [journey(f"a{n}", "/pricing", "/product", "/cart") for n in range(4)]
        + [journey(f"b{n}", "/blog", "/product", "/docs") for n in range(6)]
    )
    assert [p.path for p in model.predict("/product", "/pricing")] == ["/cart"]
    assert model.predict("/product", "/pricing")[0].probability == 1.0
    after_product = model.predict("/product")
    assert [(p.path, p.probability) for p in after_product] == [("/docs", 0.6), ("/cart", 0.4)]
    # An unseen pair backs off to the last page; an unseen page to the global frequencies.
    assert model.predict("/product", "/elsewhere") == after_product
    assert [p.path for p in model.predict("/never")] == ["/product", "/docs", "/cart"]


def test_a_reload_and_a_bot_are_not_transitions() -> None:
    model = NextPageModel()
    model.observe_visits([journey("u", "/a", "/a", "/b"), journey("bot", "/a", "/c", bot=True)])
    assert model.transitions == 1
    assert model.predict("/a")[0].path == "/b"


def test_successors_past_the_bound_are_counted_as_the_rest() -> None:
    model = NextPageModel(top_n=2)
    for n in range(10):
        for _ in range(10 - n):
            model.observe(["/home"], f"/p{n}", n)
    successors = model.contexts[("/home",)]
    assert len(successors.counts) <= 2 * model.top_n
    assert successors.total == sum(range(1, 11))
    top = model.predict("/home", top=2)
    assert [p.path for p in top] == ["/p0", "/p1"]
    assert top[0].probability == pytest.approx(10 / 55)


def test_hosts_partials_merge_into_the_model_of_all_users() -> None:
    users = traffic.histories(60, seed=3)
    whole = NextPageQuery().run(users)
    merged = NextPageQuery().merge(
        [NextPageQuery().run(users[:25]), NextPageQuery().run(users[25:])]
    )
    assert merged.transitions == whole.transitions
    assert merged.contexts == whole.contexts
    assert merged.predict("/products/a", "/pricing") == whole.predict("/products/a", "/pricing")


def test_the_online_update_counts_what_a_rebuild_from_the_histories_counts() -> None:
    users = traffic.histories(40, seed=4)
    online = OnlineNextPage()
    for history in users:
        for event in history.ordered():
            if event.kind == "page_view" and event.path:
                online.page_view(history.user_id, event.visit.session_id, event.path, event.ts)
    rebuilt = OnlineNextPage()
    rebuilt.rebuild(users)
    assert online.model.transitions == rebuilt.model.transitions > 0
    assert online.model.summary() == rebuilt.model.summary()


def test_a_session_is_read_up_to_its_goal_or_its_first_events() -> None:
    long_one = journey("a", *[f"/p{n}" for n in range(9)], "/signup")
    short_one = journey("b", "/x", "/signup")
    at_once = journey("c", "/signup", "/x")
    found = {s.user_id: s for s in samples([long_one, short_one, at_once], SIGNUP)}
    assert set(found) == {"a", "b"}
    assert found["a"].converted and found["a"].features["pages"] == PREFIX_EVENTS
    assert found["b"].converted and found["b"].features["pages"] == 1
    assert found["b"].features["last"] == "/x"


def test_live_sessions_are_those_with_a_recent_event_and_no_goal_yet() -> None:
    ended = journey("ended", "/a", "/b", start=0)
    live = journey("live", "/a", "/b", start=100_000)
    converted = journey("done", "/a", "/signup", start=100_000)
    users = [ended, live, converted]
    assert [s.user_id for s in LiveQuery(SIGNUP, 110_000, 30_000).run(users)] == ["live"]
    assert [s.user_id for s in SamplesQuery(SIGNUP, 110_000, 30_000).run(users)] == ["ended"]


def test_too_few_sessions_train_a_model_that_answers_the_base_rate() -> None:
    few = list(samples([journey("a", "/x", "/signup"), journey("b", "/x", "/y")], SIGNUP))
    model = train("signup", few, 0)
    assert model.pipeline is None
    assert model.probabilities([few[0].features]) == [0.5]


def test_on_generated_traffic_both_models_beat_their_baselines() -> None:
    users = traffic.histories(1500, seed=7)
    report = evaluate.evaluate(ObservationsQuery({"signup": SIGNUP}).run(users), 30 * 60_000)
    pages = report["nextPage"]
    assert pages["test"] > 500
    assert pages["top1"] > pages["baselineTop1"] + 0.1
    assert pages["top3"] > pages["baselineTop3"]
    (signup,) = report["propensity"]
    assert signup["test"] > 200 and 0 < signup["testRate"] < 1
    assert signup["auc"] > 0.65
    assert signup["brier"] < signup["baselineBrier"]
    assert sum(row["sessions"] for row in signup["reliability"]) == signup["test"]
    text = evaluate.report_text(report)
    assert (
        f"top-1 {pages['top1']:.3f}  (most frequent next page: {pages['baselineTop1']:.3f})" in text
    )
    assert f"AUC {signup['auc']:.3f}  (base rate: 0.5)" in text


def test_on_structureless_data_the_report_says_so_rather_than_failing() -> None:
    users = [journey(f"u{n}", "/a", "/b", start=n * 10_000_000) for n in range(30)]
    report = evaluate.evaluate(ObservationsQuery({"signup": SIGNUP}).run(users), 30 * 60_000)
    (signup,) = report["propensity"]
    assert signup["auc"] is None and signup["testRate"] == 0.0
    assert report["nextPage"]["top1"] == report["nextPage"]["baselineTop1"] == 1.0
    assert "AUC n/a (one class only)" in evaluate.report_text(report)
