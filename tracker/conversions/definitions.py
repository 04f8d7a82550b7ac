"""What a site owner defines: goals, funnels and experiments, checked when they are made.

A bad definition raises `InvalidDefinition` naming the field (HTTP 422). Names are
`[A-Za-z0-9_-]{1,64}`; a funnel has 2 to 10 steps; an experiment's weights sum to a positive
number and its goal must exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from tracker.errors import InvalidDefinition
from tracker.query.events import Event
from tracker.schema import field_error

NAME_RULE = "{value!r} is not 1-64 characters of [A-Za-z0-9_-]"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MIN_STEPS = 2
MAX_STEPS = 10
MAX_VARIANTS = 10
MAX_WINDOW_S = 366 * 86400
CONTROL = "control"

Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="[A-Za-z0-9_-]{1,64}")]
MatchEvent = Literal["page_view", "custom", "click"]


class Match(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Which events count: page views of a path (`*` at its end: a prefix), custom events of a
    name, or clicks on an element."""

    event: MatchEvent
    path: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    name: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    element: Annotated[str, Meta(min_length=1, max_length=512)] | None = None

    def matches(self, event: Event) -> bool:
        return self.predicate()(event)

    def predicate(self) -> Callable[[Event], bool]:
        """`matches` as one small function, for scans over many events."""
        kind = self.event
        if kind == "page_view":
            path = self.path or ""
            if path.endswith("*"):
                prefix = path[:-1]
                return lambda e: e.kind == kind and e.path is not None and e.path.startswith(prefix)
            return lambda e: e.kind == kind and e.path == path
        if kind == "custom":
            name = self.name
            return lambda e: e.kind == kind and e.name == name
        element = self.element
        return lambda e: e.kind == kind and e.element == element


# What a match of each event reads: exactly this one field, and no other.
_MATCH_FIELD = {"page_view": "path", "custom": "name", "click": "element"}


def check_match(match: Match, field: str) -> Match:
    wanted = _MATCH_FIELD[match.event]
    for name in ("path", "name", "element"):
        given = getattr(match, name) is not None
        if name == wanted and not given:
            raise InvalidDefinition(f"{field}.{name}", f"a {match.event} match needs `{name}`")
        if name != wanted and given:
            raise InvalidDefinition(
                f"{field}.{name}", f"a {match.event} match reads `{wanted}` only"
            )
    if match.event == "page_view" and not (match.path or "").startswith("/"):
        raise InvalidDefinition(f"{field}.path", f"{match.path!r} does not start with /")
    return match


class Goal(Struct, forbid_unknown_fields=True):
    match: Match


class Funnel(Struct, forbid_unknown_fields=True):
    steps: list[Match]
    windowS: Annotated[int, Meta(ge=1, le=MAX_WINDOW_S)] = 86400


class Experiment(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Variants by weight and the goal that counts as a conversion. `salt` makes assignment
    reproducible (drawn when the experiment is first made, kept on later changes);
    `stopped` experiments assign their control variant."""

    variants: dict[str, float]
    goal: Name
    salt: str = ""
    stopped: bool = False

    @property
    def control(self) -> str:
        """The variant named `control`, or else the first one."""
        return CONTROL if CONTROL in self.variants else next(iter(self.variants))


def check_name(name: str, field: str = "name") -> str:
    if not _NAME.fullmatch(name):
        raise InvalidDefinition(field, NAME_RULE.format(value=name))
    return name


def _decode(data: bytes | Any, kind: type[Any]) -> Any:
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            return msgspec.json.decode(data, type=kind)
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise field_error(exc, InvalidDefinition) from None
    except msgspec.DecodeError as exc:
        raise InvalidDefinition("body", f"not JSON ({exc})") from None


def goal_from(data: bytes | Any) -> Goal:
    """A goal from its JSON (or decoded JSON), checked."""
    goal: Goal = _decode(data, Goal)
    check_match(goal.match, "match")
    return goal


def funnel_from(data: bytes | Any) -> Funnel:
    """A funnel from its JSON (or decoded JSON), checked: 2 to 10 steps, each a match."""
    funnel: Funnel = _decode(data, Funnel)
    if not MIN_STEPS <= len(funnel.steps) <= MAX_STEPS:
        raise InvalidDefinition(
            "steps", f"{len(funnel.steps)} steps; a funnel has {MIN_STEPS} to {MAX_STEPS}"
        )
    for i, step in enumerate(funnel.steps):
        check_match(step, f"steps.{i}")
    return funnel


def experiment_from(data: bytes | Any, goals: set[str] | dict[str, Any]) -> Experiment:
    """An experiment from its JSON (or decoded JSON), checked against the goals there are."""
    experiment: Experiment = _decode(data, Experiment)
    if not 1 <= len(experiment.variants) <= MAX_VARIANTS:
        raise InvalidDefinition(
            "variants", f"{len(experiment.variants)} variants; give 1 to {MAX_VARIANTS}"
        )
    for name, weight in experiment.variants.items():
        check_name(name, f"variants.{name}")
        if not (math.isfinite(weight) and weight >= 0):
            raise InvalidDefinition(f"variants.{name}", f"weight {weight!r} is not 0 or more")
    total = sum(experiment.variants.values())
    if not total > 0:
        raise InvalidDefinition("variants", f"the weights sum to {total}; give a positive sum")
    if experiment.goal not in goals:
        raise InvalidDefinition("goal", f"no goal named {experiment.goal!r}")
    return experiment
