"""The predictions routes' entries of the route table (`tracker.routes.ROUTES` takes them in,
tag `predictions`): the next page, live sessions ranked by a goal's propensity, the models'
evaluation, and training on demand. Every one is the admin's."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

from tracker import prediction_responses as r
from tracker.conversion_routes import Spec
from tracker.conversions.definitions import Name

MAX_PATH = 2048
MAX_LIVE = 500

SitePath = Annotated[str, Meta(min_length=1, max_length=MAX_PATH, pattern="^/")]


class NextQuery(Struct):
    path: Annotated[SitePath, Meta(description="The page the visitor is on.")] | UnsetType = UNSET
    previous: (
        Annotated[SitePath, Meta(description="The page viewed before `path`, if any.")] | UnsetType
    ) = UNSET


class SessionsQuery(Struct):
    goal: Annotated[Name, Meta(description="A goal's name.")]
    limit: Annotated[int, Meta(ge=1, le=MAX_LIVE, description="At most (50).")] | UnsetType = UNSET


class TrainQuery(Struct):
    goal: Annotated[Name, Meta(description="Only this goal's model.")] | UnsetType = UNSET


SPECS: tuple[Spec, ...] = (
    Spec(
        "/api/predictions/next",
        "GET",
        "next_pages",
        "The likeliest next pages after `path` (top 5), or without `path` the model's summary.",
        "The predictions, likeliest first; or the summary, with the last evaluation.",
        (list[r.PagePrediction], r.NextPageSummary),
        query=NextQuery,
        path_params=None,
        description="Counted from every visit's page views as they are stored; the two pages "
        "before are used where they have been seen often enough, else the last one, else the "
        "pages most often viewed next.",
    ),
    Spec(
        "/api/predictions/sessions",
        "GET",
        "predicted_sessions",
        "Live sessions that have not reached the goal, ranked by the probability that they do.",
        "The goal's model and the live sessions, likeliest first.",
        (r.LiveSessions,),
        query=SessionsQuery,
        path_params=None,
        description="The goal's model is trained first if it has not been yet. A session is "
        "live while its last event is within `TRACKER_SESSION_TIMEOUT_S`. Bots are left out.",
    ),
    Spec(
        "/api/predictions/evaluation",
        "GET",
        "predictions_evaluation",
        "The models' time-split evaluation against their baselines.",
        "The last evaluation (made now if there is none yet).",
        (r.Evaluation,),
        path_params=None,
    ),
    Spec(
        "/api/predictions/train",
        "POST",
        "train_predictions",
        "Train the propensity models now (and evaluate both models), or one goal's model.",
        "What was trained.",
        (r.Trained,),
        query=TrainQuery,
        path_params=None,
    ),
)
