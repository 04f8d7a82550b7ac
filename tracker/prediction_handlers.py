"""What the predictions routes do (`/api/predictions/...`): ask the predictions actor
(`tracker.prediction_actor`), which holds the models, and answer in the declared shapes.

A mixin of `handlers.Ingress`, which holds the collaborators named below.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tracker import prediction_responses as r
from tracker.conversions.definitions import check_name
from tracker.dispatch import answer_within
from tracker.errors import InvalidDefinition
from tracker.prediction_actor import LIVE_SESSIONS, predictions_actor
from tracker.prediction_routes import MAX_LIVE, MAX_PATH

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from tracker.config import Config

ACTOR = "predictions"


def _answer(value: Any, kind: Any) -> Response:
    body = msgspec.json.encode(msgspec.convert(value, kind))
    return Response(body, media_type="application/json")


def _site_path(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("/") or len(value) > MAX_PATH:
        raise InvalidDefinition(name, f"{value[:64]!r} is not a site path (/..., at most 2048)")
    return value


def _limit(value: str | None) -> int:
    if value is None:
        return LIVE_SESSIONS
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIVE:
        raise InvalidDefinition("limit", f"{value[:32]!r} is not 1 to {MAX_LIVE}")
    return int(value)


class PredictionHandlers:
    config: Config

    @functools.cached_property
    def predictions(self) -> ActorHandle[Any]:
        return predictions_actor(self.config)

    async def _ask(self, method: str, *args: Any) -> Any:
        call = getattr(self.predictions, method).remote(*args)
        return await answer_within(call, self.config, ACTOR)

    async def next_pages(self, request: Request) -> Response:
        params = request.query_params
        path = _site_path("path", params.get("path"))
        previous = _site_path("previous", params.get("previous"))
        if path is None:
            if previous is not None:
                raise InvalidDefinition("path", "`previous` is given without `path`")
            return _answer(await self._ask("summary"), r.NextPageSummary)
        return _answer(await self._ask("next_pages", path, previous), list[r.PagePrediction])

    async def predicted_sessions(self, request: Request) -> Response:
        params = request.query_params
        goal = check_name(params.get("goal") or "", "goal")
        limit = _limit(params.get("limit"))
        return _answer(await self._ask("sessions", goal, limit), r.LiveSessions)

    async def predictions_evaluation(self, request: Request) -> Response:
        return _answer(await self._ask("evaluated"), r.Evaluation)

    async def train_predictions(self, request: Request) -> Response:
        goal = request.query_params.get("goal")
        trained = await self._ask("train", None if goal is None else check_name(goal, "goal"))
        return _answer({"models": list(trained.values())}, r.Trained)
