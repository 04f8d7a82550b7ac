"""One training run, as a Ray task runs it: each goal's propensity model fitted to the sessions
that had ended by then, and, when asked, the time-split evaluation of both models over the same
observations."""

from __future__ import annotations

from typing import Any

from tracker.predictions.evaluate import Observations, evaluate
from tracker.predictions.propensity import PropensityModel, train


def fit(
    observations: Observations, now_ms: int, timeout_ms: int, evaluated: bool
) -> tuple[dict[str, PropensityModel], dict[str, Any] | None]:
    """The models of every goal in `observations`, and their evaluation if `evaluated`."""
    ended_by = now_ms - timeout_ms
    models = {
        goal: train(goal, [s for s in found if s.last_ms <= ended_by], now_ms)
        for goal, found in observations.samples.items()
    }
    return models, evaluate(observations, timeout_ms) if evaluated else None
