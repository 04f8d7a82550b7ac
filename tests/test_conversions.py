"""Goals, funnels, retention and experiments over hand-built histories: the counting rules,
their edge cases, the merge across hosts, and the definitions' checks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tracker.conversions.definitions import (
    Experiment,
    Match,
    experiment_from,
    funnel_from,
    goal_from,
)
from tracker.conversions.experiments import ExperimentQuery, assign
from tracker.conversions.funnels import FunnelQuery, median_ms
from tracker.conversions.goals import GoalsQuery
from tracker.conversions.query import DAY_MS, TimeRange, merged
from tracker.conversions.retention import RetentionQuery, period_of, period_start
from tracker.conversions.stats import compare, sample_ratio_p
from tracker.errors import InvalidDefinition
from tracker.query.events import Event, UserHistory, Visit

S = 1000
# 2026-01-05 is a Monday.
MONDAY = 1_767_571_200_000
ALL = TimeRange(0, 10**14)


class Builder:
    """A user's history, events added in the order received."""

    def __init__(self, user_id: str, *, bot: bool = False) -> None:
        self.visit = Visit("v1", 0, bot=bot)
        self.history = UserHistory(user_id, {"v1": self.visit})

    def add(self, ts: int, kind: str, **fields: Any) -> Builder:
        seq = len(self.history.events)
        self.history.add(Event(ts, seq, kind, self.visit, **fields))
        return self

    def view(self, ts: int, path: str) -> Builder:
        return self.add(ts, "page_view", path=path)

    def custom(self, ts: int, name: str) -> Builder:
        return self.add(ts, "custom", name=name)

    def click(self, ts: int, element: str) -> Builder:
        return self.add(ts, "click", element=element)


def page(path: str) -> Match:
    return Match("page_view", path=path)


def funnel(*paths: str, window_s: int = 60) -> Any:
    return funnel_from(
        {"steps": [{"event": "page_view", "path": p} for p in paths], "windowS": window_s}
    )


def steps_reached(histories: list[UserHistory], f: Any, when: TimeRange = ALL) -> list[int]:
    return FunnelQuery(f, when).run(histories).visitors


# -- definitions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"match": {"event": "page_view"}}, "match.path"),
        ({"match": {"event": "page_view", "path": "cart"}}, "match.path"),
        ({"match": {"event": "custom", "name": "x", "path": "/"}}, "match.path"),
        ({"match": {"event": "scroll", "path": "/"}}, "match.event"),
        ({"match": {"event": "click", "element": "a", "extra": 1}}, "match.extra"),
        ({}, "match"),
    ],
)
def test_a_goal_with_a_bad_match_is_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        goal_from(body)
    assert caught.value.field == field


@pytest.mark.parametrize("count", [1, 11])
def test_a_funnel_of_one_or_eleven_steps_is_refused(count: int) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        funnel(*[f"/p{i}" for i in range(count)])
    assert caught.value.field == "steps"


def test_a_funnel_step_with_a_bad_match_names_its_index() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        funnel_from({"steps": [{"event": "page_view", "path": "/a"}, {"event": "click"}]})
    assert caught.value.field == "steps.1.element"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variants": {"control": 0, "new": 0}, "goal": "buy"}, "variants"),
        ({"variants": {"control": -1, "new": 1}, "goal": "buy"}, "variants.control"),
        ({"variants": {}, "goal": "buy"}, "variants"),
        ({"variants": {"bad name": 1}, "goal": "buy"}, "variants.bad name"),
        ({"variants": {"control": 1}, "goal": "nope"}, "goal"),
        ({"variants": {"control": 1}, "goal": "a" * 65}, "goal"),
    ],
)
def test_a_bad_experiment_is_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        experiment_from(body, {"buy"})
    assert caught.value.field == field


def test_a_range_over_a_year_is_refused_and_a_year_is_not() -> None:
    TimeRange.checked(0, 366 * DAY_MS)
    with pytest.raises(InvalidDefinition, match="over a year") as caught:
        TimeRange.checked(0, 366 * DAY_MS + 1)
    assert caught.value.field == "to"
    with pytest.raises(InvalidDefinition):
        TimeRange.checked(10, 5)


def test_a_path_match_ending_in_a_star_is_a_prefix() -> None:
    user = Builder("u").view(1, "/app/cart").view(2, "/app").view(3, "/apple")
    events = user.history.ordered()
    assert [page("/app/*").matches(e) for e in events] == [True, False, False]
    assert [page("/app*").matches(e) for e in events] == [True, True, True]
    assert [page("/app").matches(e) for e in events] == [False, True, False]


# -- goals -------------------------------------------------------------------------------------


def test_goals_count_visitors_once_and_every_matching_event() -> None:
    goals = {
        "cart": goal_from({"match": {"event": "page_view", "path": "/cart"}}),
        "signup": goal_from({"match": {"event": "custom", "name": "signup"}}),
    }
    a = Builder("a").view(10, "/cart").view(20, "/cart").custom(30, "signup")
    b = Builder("b").view(10, "/").view(500, "/cart")  # the second view is out of range
    c = Builder("c").view(1000, "/cart")  # no event in the range at all
    bot = Builder("bot", bot=True).view(10, "/cart")
    result = GoalsQuery(goals, TimeRange(0, 100)).run(
        [a.history, b.history, c.history, bot.history]
    )
    assert result.visitors == 2
    assert (result.goals["cart"].visitors, result.goals["cart"].conversions) == (1, 2)
    assert (result.goals["signup"].visitors, result.goals["signup"].conversions) == (1, 1)


def test_goals_merged_from_hosts_equal_goals_over_all_users() -> None:
    goals = {"buy": goal_from({"match": {"event": "click", "element": "button#buy"}})}
    users = [Builder(f"u{i}").click(i, "button#buy" if i % 3 else "a").history for i in range(30)]
    query = GoalsQuery(goals, ALL)
    whole = query.run(users)
    total = merged(query, [users[:7], users[7:20], users[20:]])
    assert total == whole
    assert total.goals["buy"].visitors == 20


# -- funnels -----------------------------------------------------------------------------------


def test_a_funnel_counts_each_visitor_once_per_step() -> None:
    a = Builder("a").view(0, "/a").view(1 * S, "/b").view(2 * S, "/a").view(3 * S, "/b")
    b = Builder("b").view(0, "/a")
    c = Builder("c").view(0, "/b").view(1 * S, "/c")  # never starts
    assert steps_reached([a.history, b.history, c.history], funnel("/a", "/b", "/c")) == [2, 1, 0]


def test_steps_must_follow_in_order() -> None:
    user = Builder("u").view(0, "/a").view(1 * S, "/c").view(2 * S, "/b")
    assert steps_reached([user.history], funnel("/a", "/b", "/c")) == [1, 1, 0]


def test_events_with_equal_timestamps_follow_the_order_received() -> None:
    forward = Builder("f").view(5 * S, "/a").view(5 * S, "/b")
    backward = Builder("r").view(5 * S, "/b").view(5 * S, "/a")
    assert steps_reached([forward.history], funnel("/a", "/b")) == [1, 1]
    assert steps_reached([backward.history], funnel("/a", "/b")) == [1, 0]


def test_a_step_at_the_window_bound_counts_and_one_ms_later_does_not() -> None:
    at_bound = Builder("in").view(0, "/a").view(60 * S, "/b")
    past = Builder("out").view(0, "/a").view(60 * S + 1, "/b")
    assert steps_reached([at_bound.history], funnel("/a", "/b", window_s=60)) == [1, 1]
    assert steps_reached([past.history], funnel("/a", "/b", window_s=60)) == [1, 0]


def test_the_window_runs_from_the_first_step_not_the_previous_one() -> None:
    user = Builder("u").view(0, "/a").view(50 * S, "/b").view(100 * S, "/c")
    assert steps_reached([user.history], funnel("/a", "/b", "/c", window_s=60)) == [1, 1, 0]


def test_a_later_attempt_restarts_the_window() -> None:
    user = Builder("u").view(0, "/a").view(100 * S, "/a").view(150 * S, "/b")
    assert steps_reached([user.history], funnel("/a", "/b", window_s=60)) == [1, 1]


def test_attempts_start_inside_the_range_but_later_steps_may_fall_after_it() -> None:
    before = Builder("early").view(0, "/a").view(20 * S, "/b")
    after = Builder("late").view(30 * S, "/a").view(70 * S, "/b")
    result = steps_reached(
        [before.history, after.history], funnel("/a", "/b"), TimeRange(10 * S, 50 * S)
    )
    assert result == [1, 1]


def test_the_median_time_between_steps_is_over_the_visitors_who_reached_them() -> None:
    users = [
        Builder("a").view(0, "/a").view(10 * S, "/b"),
        Builder("b").view(0, "/a").view(20 * S, "/b"),
        Builder("c").view(0, "/a").view(40 * S, "/b"),
        Builder("d").view(0, "/a").view(50 * S, "/b"),
        Builder("e").view(0, "/a"),
    ]
    part = FunnelQuery(funnel("/a", "/b"), ALL).run([u.history for u in users])
    assert median_ms(part.gaps[0]) == 30 * S
    assert median_ms([]) is None


def test_the_median_takes_the_earliest_attempt_that_reached_the_step() -> None:
    # The first attempt reaches /b after 40 s; a later one faster, but the earliest counts.
    user = Builder("u").view(0, "/a").view(30 * S, "/a").view(40 * S, "/b")
    part = FunnelQuery(funnel("/a", "/b"), ALL).run([user.history])
    assert part.gaps == [[40 * S]]


def test_bots_are_left_out_of_funnels() -> None:
    bot = Builder("bot", bot=True).view(0, "/a").view(1, "/b")
    assert steps_reached([bot.history], funnel("/a", "/b")) == [0, 0]


def test_funnels_merged_from_hosts_equal_the_funnel_over_all_users() -> None:
    users = [
        Builder(f"u{i}")
        .view(0, "/a")
        .view(i * S, "/b" if i % 2 else "/x")
        .view(i * S + 1, "/c")
        .history
        for i in range(40)
    ]
    query = FunnelQuery(funnel("/a", "/b", "/c", window_s=30), ALL)
    whole = query.run(users)
    total = merged(query, [users[:13], users[13:]])
    assert total.visitors == whole.visitors == [40, 15, 15]
    assert sorted(total.gaps[0]) == sorted(whole.gaps[0])


# -- retention ---------------------------------------------------------------------------------


def test_iso_weeks_start_on_monday_at_midnight_utc() -> None:
    week = period_of(MONDAY, "week")
    assert period_start(week, "week") == MONDAY
    assert period_of(MONDAY - 1, "week") == week - 1
    assert period_of(MONDAY + 7 * DAY_MS - 1, "week") == week


def test_a_cohort_is_the_visitors_whose_first_event_ever_is_in_its_period() -> None:
    day = period_of(MONDAY, "day")
    new = (
        Builder("new")
        .view(MONDAY + 5, "/")
        .view(MONDAY + DAY_MS, "/")
        .view(MONDAY + 3 * DAY_MS, "/")
    )
    old = Builder("old").view(MONDAY - 10 * DAY_MS, "/").view(MONDAY + 1, "/")
    other = Builder("other").view(MONDAY + DAY_MS + 3, "/").view(MONDAY + DAY_MS + 4, "/")
    when = TimeRange(MONDAY, MONDAY + 3 * DAY_MS)
    result = RetentionQuery(when, "day").run([new.history, old.history, other.history])
    assert sorted(result.cohorts) == [day, day + 1]
    assert (result.cohorts[day].size, result.cohorts[day].returning) == (1, [1, 0, 1])
    assert (result.cohorts[day + 1].size, result.cohorts[day + 1].returning) == (1, [0, 0])


def test_weekly_retention_counts_a_visitor_once_per_week() -> None:
    user = (
        Builder("u").view(MONDAY, "/").view(MONDAY + 8 * DAY_MS, "/").view(MONDAY + 9 * DAY_MS, "/")
    )
    when = TimeRange(MONDAY, MONDAY + 20 * DAY_MS)
    result = RetentionQuery(when, "week").run([user.history])
    assert [(c.size, c.returning) for c in result.cohorts.values()] == [(1, [1, 0])]


def test_retention_merged_from_hosts_equals_retention_over_all_users() -> None:
    users = [
        Builder(f"u{i}")
        .view(MONDAY + (i % 5) * DAY_MS, "/")
        .view(MONDAY + (i % 7) * DAY_MS + 1, "/")
        .history
        for i in range(50)
    ]
    query = RetentionQuery(TimeRange(MONDAY, MONDAY + 10 * DAY_MS), "day")
    assert merged(query, [users[:20], users[20:]]) == query.merge([query.run(users)])


# -- experiments -------------------------------------------------------------------------------


def test_assignment_is_deterministic_by_weight_and_a_stopped_experiment_gives_control() -> None:
    experiment = Experiment({"control": 1, "new": 3}, "buy", salt="s1")
    first = [assign(experiment, f"user-{i}") for i in range(4000)]
    assert first == [assign(experiment, f"user-{i}") for i in range(4000)]
    assert 0.7 < first.count("new") / 4000 < 0.8
    resalted = Experiment({"control": 1, "new": 3}, "buy", salt="s2")
    assert first != [assign(resalted, f"user-{i}") for i in range(4000)]
    stopped = Experiment({"control": 1, "new": 3}, "buy", salt="s1", stopped=True)
    assert {assign(stopped, f"user-{i}") for i in range(100)} == {"control"}
    assert Experiment({"a": 1, "b": 0}, "buy").control == "a"


def test_a_variant_of_weight_zero_is_never_assigned() -> None:
    experiment = Experiment({"control": 1, "off": 0, "new": 1}, "buy", salt="x")
    assert {assign(experiment, f"u{i}") for i in range(500)} == {"control", "new"}


def test_experiment_results_count_goals_reached_after_the_first_exposure_only() -> None:
    buy = Match("custom", name="buy")
    before = Builder("before").custom(0, "buy").add(1, "exposure", name="e", variant="new")
    after = Builder("after").add(0, "exposure", name="e", variant="new").custom(0, "buy")
    twice = (
        Builder("twice")
        .add(0, "exposure", name="e", variant="control")
        .add(1, "exposure", name="e", variant="new")
        .custom(2, "buy")
    )
    other = Builder("other").add(0, "exposure", name="f", variant="new").custom(1, "buy")
    bot = Builder("bot", bot=True).add(0, "exposure", name="e", variant="new").custom(1, "buy")
    result = ExperimentQuery("e", buy).run([u.history for u in (before, after, twice, other, bot)])
    assert {k: (v.exposed, v.converted) for k, v in result.variants.items()} == {
        "new": (2, 1),
        "control": (1, 1),
    }


def test_the_two_proportion_test_and_interval_match_the_textbook_figures() -> None:
    # 200/1000 against 250/1000: z = 0.05 / sqrt(0.225 * 0.775 * 0.002), two-sided.
    result = compare((200, 1000), (250, 1000))
    z = 0.05 / math.sqrt(0.225 * 0.775 * 0.002)
    assert result.difference == pytest.approx(0.05)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.00742, abs=1e-5)
    half = 1.959964 * (0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000) ** 0.5
    assert (result.ci_low, result.ci_high) == pytest.approx((0.05 - half, 0.05 + half))
    assert compare((0, 0), (1, 2)).p_value is None


def test_a_split_far_from_its_weights_has_a_tiny_sample_ratio_p_value() -> None:
    assert sample_ratio_p([5000, 5050], [50, 50]) > 0.1
    p = sample_ratio_p([5000, 5600], [50, 50])
    assert p is not None and p < 0.001
    assert sample_ratio_p([100, 0], [1, 0]) is None
