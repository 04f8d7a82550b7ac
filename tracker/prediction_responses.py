"""The declared shapes of the predictions routes' answers (`tracker.prediction_routes`), beside
the others of `tracker.responses`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from tracker.responses import Count, Ms, Rate


class PagePrediction(Struct, forbid_unknown_fields=True):
    path: str
    probability: Rate


class NextPageEvaluation(Struct, forbid_unknown_fields=True):
    """Top-1 and top-3 accuracy on the transitions after the split, of the model and of the
    baseline (always the pages most often viewed next)."""

    train: Count
    test: Count
    top1: Rate
    top3: Rate
    baselineTop1: Rate
    baselineTop3: Rate


class NextPageSummary(Struct, forbid_unknown_fields=True):
    contexts: Annotated[Count, Meta(description="Contexts counted: none, one page, two pages.")]
    pages: Count
    pairs: Count
    transitions: Count
    trainedThroughMs: Annotated[int, Meta(ge=0, description="The latest page view counted.")]
    evaluation: NextPageEvaluation | None


class ReliabilityRow(Struct, forbid_unknown_fields=True):
    from_: Rate = msgspec.field(name="from")
    to: Rate
    sessions: Count
    predicted: Rate
    observed: Rate


class PropensityEvaluation(Struct, forbid_unknown_fields=True):
    """AUC, Brier score and reliability on the sessions after the split; the baseline answers
    the training base rate (AUC 0.5)."""

    goal: str
    train: Count
    test: Count
    baseRate: Rate
    testRate: Rate
    auc: Rate | None
    baselineAuc: Rate
    brier: Rate | None
    baselineBrier: Rate | None
    reliability: list[ReliabilityRow]


class Evaluation(Struct, forbid_unknown_fields=True):
    splitMs: Annotated[int, Meta(ge=0, description="Trained before, tested from.")]
    evaluatedMs: Ms
    nextPage: NextPageEvaluation
    propensity: list[PropensityEvaluation]


class PropensityModel(Struct, forbid_unknown_fields=True):
    goal: str
    trainedMs: Ms
    samples: Annotated[Count, Meta(description="Ended sessions trained on.")]
    users: Count
    baseRate: Rate
    learned: Annotated[bool, Meta(description="False: too little to learn; the base rate.")]


class Trained(Struct, forbid_unknown_fields=True):
    models: list[PropensityModel]


class LiveSession(Struct, forbid_unknown_fields=True):
    userId: str
    sessionId: str
    probability: Rate
    startMs: Ms
    lastMs: Ms
    pages: Count
    entry: str
    channel: str
    device: str


class LiveSessions(PropensityModel, forbid_unknown_fields=True):
    live: Annotated[Count, Meta(description="Live sessions that have not reached the goal.")]
    sessions: list[LiveSession]
