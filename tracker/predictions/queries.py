"""The predictions' queries over the hosts' histories (`tracker.query.run.Query`): each host
answers a partial over its own users, and the partials merge.

- `NextPageQuery`: the next-page counts of the histories (where hosts do not keep them online).
- `SamplesQuery`: the ended sessions of a goal, to train its propensity model on.
- `LiveQuery`: the live sessions that have not reached the goal yet, to rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tracker.conversions.definitions import Match
from tracker.predictions.next_page import NextPageModel
from tracker.predictions.sessions import Sample, samples
from tracker.query.events import UserHistory


class NextPageQuery:
    def run(self, histories: Iterable[UserHistory]) -> NextPageModel:
        model = NextPageModel()
        model.observe_visits(histories)
        return model

    def merge(self, partials: Sequence[NextPageModel]) -> NextPageModel:
        out = NextPageModel()
        for part in partials:
            out.merge(part)
        return out


class SamplesQuery:
    """Sessions of `goal` that ended (no event for `timeout_ms`) by `now_ms`."""

    def __init__(self, goal: Match, now_ms: int, timeout_ms: int) -> None:
        self.goal = goal
        self.ended_by = now_ms - timeout_ms

    def run(self, histories: Iterable[UserHistory]) -> list[Sample]:
        return [s for s in samples(histories, self.goal) if s.last_ms <= self.ended_by]

    def merge(self, partials: Sequence[list[Sample]]) -> list[Sample]:
        return [s for part in partials for s in part]


class LiveQuery(SamplesQuery):
    """Sessions with an event within `timeout_ms` of `now_ms` that have not reached `goal`."""

    def run(self, histories: Iterable[UserHistory]) -> list[Sample]:
        return [
            s
            for s in samples(histories, self.goal)
            if s.last_ms > self.ended_by and not s.converted
        ]
