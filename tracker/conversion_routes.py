"""The conversions routes' entries of the route table (`tracker.routes.ROUTES` takes them in):
goals, funnels, retention and experiments, and what they read beside their bodies.

Every one is the admin's but a user's variant, which the visitor who owns the user may ask
too (their visitor cookie or identity token, as for sessions).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from tracker import responses as r
from tracker.conversions.definitions import Experiment as ExperimentBody
from tracker.conversions.definitions import Funnel, Goal, Name
from tracker.schema import MAX_TIMESTAMP_MS, Id

QueryMs = Annotated[int, Meta(ge=0, le=MAX_TIMESTAMP_MS)]
RANGE = (
    "`from` and `to` select events by their timestamps, both ends inclusive; without `to`, "
    "up to now; without `from`, the 30 days up to `to`. A range over a year (366 days) is "
    "refused (422, field `to`). Bots are left out."
)


class NamePath(Struct):
    name: Name


class RangeQuery(Struct):
    from_: Annotated[QueryMs, Meta(description="Start, inclusive.")] | UnsetType = msgspec.field(
        default=UNSET, name="from"
    )
    to: Annotated[QueryMs, Meta(description="End, inclusive.")] | UnsetType = UNSET


class RetentionQuery(RangeQuery):
    period: (
        Annotated[
            Literal["day", "week"],
            Meta(description="UTC days, or ISO weeks from Monday (the default)."),
        ]
        | UnsetType
    ) = UNSET


class VariantQuery(Struct):
    userId: Annotated[Id, Meta(description="The user's ID.")]


class Spec(NamedTuple):
    """One route, as `tracker.routes.Route` takes it (tag `conversions`, private answers)."""

    path: str
    method: str
    handler: str
    summary: str
    answer: str
    answers: tuple[Any, ...]
    body: tuple[Any, ...] = ()
    query: type[Struct] | None = None
    path_params: type[Struct] | None = NamePath
    description: str | None = None
    admin: bool = True


OK = (r.Ok,)
GOAL = "/api/goals/{name}"
FUNNEL = "/api/funnels/{name}"
EXPERIMENT = "/api/experiments/{name}"

SPECS: tuple[Spec, ...] = (
    Spec(GOAL, "PUT", "put_goal", "Define (or change) a goal.", "Stored.", OK, (Goal,)),
    Spec(
        "/api/goals",
        "GET",
        "goals",
        "Every goal's visitors, conversions and conversion rate.",
        "The goals, and every visitor in the range.",
        (r.Goals,),
        query=RangeQuery,
        path_params=None,
        description=RANGE,
    ),
    Spec(GOAL, "DELETE", "delete_goal", "Remove a goal (not an experiment's).", "Gone.", OK),
    Spec(FUNNEL, "PUT", "put_funnel", "Define (or change) a funnel.", "Stored.", OK, (Funnel,)),
    Spec(
        FUNNEL,
        "GET",
        "funnel",
        "A funnel's visitors at each step, conversion, drop-off and median time.",
        "The funnel.",
        (r.FunnelReport,),
        query=RangeQuery,
        description=RANGE,
    ),
    Spec(FUNNEL, "DELETE", "delete_funnel", "Remove a funnel.", "Gone.", OK),
    Spec(
        "/api/retention",
        "GET",
        "retention",
        "Retention cohorts by first visit.",
        "The cohorts, oldest first.",
        (r.Retention,),
        query=RetentionQuery,
        path_params=None,
        description=RANGE,
    ),
    Spec(
        "/api/conversions",
        "GET",
        "definitions_list",
        "Every goal, funnel and experiment defined.",
        "The definitions.",
        (r.Definitions,),
        path_params=None,
    ),
    Spec(
        EXPERIMENT,
        "PUT",
        "put_experiment",
        "Define (or change) an experiment: variants by weight, and its goal.",
        "Stored.",
        OK,
        (ExperimentBody,),
        description="The experiment's `salt` is drawn when it is made (or taken from the "
        "body then) and kept on later changes; `stopped` is set by `/stop` only.",
    ),
    Spec(EXPERIMENT + "/stop", "POST", "stop_experiment", "Stop an experiment.", "Stopped.", OK),
    Spec(
        EXPERIMENT,
        "GET",
        "experiment",
        "An experiment's results per variant, against control, and its sample-ratio check.",
        "The results.",
        (r.ExperimentReport,),
    ),
    Spec(EXPERIMENT, "DELETE", "delete_experiment", "Remove an experiment.", "Gone.", OK),
    Spec(
        EXPERIMENT + "/variant",
        "GET",
        "variant",
        "The user's variant: as first assigned (recorded as an exposure), or a stopped "
        "experiment's control.",
        "The variant.",
        (r.VariantAnswer,),
        query=VariantQuery,
        admin=False,
    ),
)
