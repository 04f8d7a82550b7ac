"""Goals: did visitors reach what the owner cares about?

Over a range, for each goal: `visitors`, the distinct users with a matching event in it;
`conversions`, the matching events; `conversionRate`, `visitors` over all users with any
event in it. Bots are left out of all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from tracker.conversions.definitions import Goal
from tracker.conversions.query import TimeRange, humans
from tracker.query.events import UserHistory


class GoalCounts(msgspec.Struct):
    visitors: int = 0
    conversions: int = 0


class GoalsPartial(msgspec.Struct):
    visitors: int  # every user with an event in the range
    goals: dict[str, GoalCounts]


class GoalsQuery:
    def __init__(self, goals: Mapping[str, Goal], when: TimeRange) -> None:
        self.goals = dict(goals)
        self.when = when

    def run(self, histories: Iterable[UserHistory]) -> GoalsPartial:
        out = GoalsPartial(0, {name: GoalCounts() for name in self.goals})
        tests = {name: goal.match.predicate() for name, goal in self.goals.items()}
        for history in humans(histories):
            events = list(self.when.events(history))
            if not events:
                continue
            out.visitors += 1
            for name, test in tests.items():
                hits = sum(1 for e in events if test(e))
                if hits:
                    counts = out.goals[name]
                    counts.visitors += 1
                    counts.conversions += hits
        return out

    def merge(self, partials: Sequence[GoalsPartial]) -> GoalsPartial:
        out = GoalsPartial(0, {name: GoalCounts() for name in self.goals})
        for part in partials:
            out.visitors += part.visitors
            for name, counts in part.goals.items():
                total = out.goals.setdefault(name, GoalCounts())
                total.visitors += counts.visitors
                total.conversions += counts.conversions
        return out


def rate(part: int, whole: int) -> float:
    """`part / whole`, 0 for an empty whole."""
    return part / whole if whole else 0.0
