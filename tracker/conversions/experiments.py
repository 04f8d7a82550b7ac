"""Experiments (A/B tests): which variant a user sees, and how each variant converts.

Assignment is deterministic from the experiment's salt and the user's ID, by weight, so it can
be reproduced anywhere; the user's tracker records the first one as an exposure event and
answers it from then on (sticky even if the weights change). A stopped experiment assigns its
control variant.

Results: a variant's exposed users are those whose first exposure to the experiment was to it;
its conversions, those of them with an event matching the goal after that exposure (in the
history's order). Bots are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import msgspec

from tracker.conversions.definitions import Experiment, Match
from tracker.conversions.query import humans
from tracker.query.events import UserHistory

EXPOSURE = "exposure"


def assign(experiment: Experiment, user_id: str) -> str:
    """The variant `user_id` is assigned: a point in [0, 1) hashed from salt and ID, placed
    among the variants' cumulative weights (in their declared order)."""
    if experiment.stopped:
        return experiment.control
    digest = hashlib.sha256(f"{experiment.salt}:{user_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(experiment.variants.values())
    upto = 0.0
    chosen = experiment.control
    for name, weight in experiment.variants.items():
        if weight <= 0:
            continue
        upto += weight
        chosen = name
        if point < upto:
            break
    return chosen


class VariantCounts(msgspec.Struct):
    exposed: int = 0
    converted: int = 0


class ExperimentPartial(msgspec.Struct):
    variants: dict[str, VariantCounts]


class ExperimentQuery:
    def __init__(self, name: str, goal: Match) -> None:
        self.name = name
        self.goal = goal

    def run(self, histories: Iterable[UserHistory]) -> ExperimentPartial:
        out: dict[str, VariantCounts] = {}
        goal = self.goal.predicate()
        for history in humans(histories):
            events = history.ordered()
            start = next(
                (i for i, e in enumerate(events) if e.kind == EXPOSURE and e.name == self.name),
                None,
            )
            if start is None:
                continue
            counts = out.setdefault(events[start].variant or "", VariantCounts())
            counts.exposed += 1
            if any(goal(e) for e in events[start + 1 :]):
                counts.converted += 1
        return ExperimentPartial(out)

    def merge(self, partials: Sequence[ExperimentPartial]) -> ExperimentPartial:
        out: dict[str, VariantCounts] = {}
        for part in partials:
            for name, counts in part.variants.items():
                total = out.setdefault(name, VariantCounts())
                total.exposed += counts.exposed
                total.converted += counts.converted
        return ExperimentPartial(out)
