"""The predictions actor: the one place the models are served from.

- The next-page model is the merge of the hosts' online counts (`HostActor.next_page_counts`;
  in the per-user placement, counted from storage), fetched again when older than
  `PAGES_REFRESH_MS`.
- Each goal's propensity model is trained as a Ray task over the sessions of the hosts' query
  index, every `TRACKER_PREDICTIONS_TRAIN_EVERY_S`, when a goal is first asked for, and on
  demand; the same run evaluates both models (`tracker.predictions.evaluate`). An erased
  user has left the index, so the next model is trained without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray

from tracker.actors import actor_options
from tracker.clock import wall_clock_ms
from tracker.config import Config
from tracker.conversions.definitions import Match
from tracker.conversions.store import DefinitionStore
from tracker.errors import UnknownDefinition
from tracker.predictions.evaluate import ObservationsQuery
from tracker.predictions.next_page import NextPageModel
from tracker.predictions.propensity import PropensityModel
from tracker.predictions.queries import LiveQuery, NextPageQuery
from tracker.predictions.training import fit
from tracker.storage import open_storage

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from tracker.api import Tracker

log = logging.getLogger(__name__)

PREDICTIONS_NAME = "predictions"
PAGES_REFRESH_MS = 5_000
LIVE_SESSIONS = 50

_fit = ray.remote(fit)


class PredictionsActor:
    def __init__(self, config: Config, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.now_ms = now_ms
        self.pages = NextPageModel()
        self._pages_ms: int | None = None
        self.models: dict[str, PropensityModel] = {}
        self.evaluation: dict[str, Any] | None = None
        self._tracker: Tracker | None = None
        self._training = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None

    async def _hosts(self) -> Tracker:
        # Every call comes here first: the periodic training starts with the first one.
        if self._loop is None:
            self._loop = asyncio.create_task(self._train_periodically())
        if self._tracker is None:
            from tracker.api import Tracker

            # Tracker() waits for the hosts with blocking calls: off the actor's event loop.
            self._tracker = await asyncio.to_thread(Tracker, self.config, reconfigure=False)
        return self._tracker

    async def _goals(self) -> dict[str, Match]:
        found = await DefinitionStore(open_storage(self.config.storage)).read()
        return {name: goal.match for name, goal in found.goals.items()}

    async def _train_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.predictions_train_every_s)
            try:
                await self.train()
            except Exception:  # the next period tries again
                log.exception("training the predictions failed")

    # -- next page ---------------------------------------------------------------------------

    async def _refresh_pages(self) -> None:
        now = self.now_ms()
        if self._pages_ms is not None and now - self._pages_ms < PAGES_REFRESH_MS:
            return
        tracker = await self._hosts()
        query = NextPageQuery()
        if tracker.hosts:
            parts = [h.next_page_counts.remote() for h in tracker.hosts.values()]
            self.pages = query.merge(list(await asyncio.gather(*parts)))
        else:
            self.pages = await tracker.query(query)
        self._pages_ms = now

    async def next_pages(self, path: str, previous: str | None) -> list[dict[str, Any]]:
        """The likeliest pages after `path` (after `previous`), top 5."""
        await self._refresh_pages()
        return [
            {"path": p.path, "probability": p.probability}
            for p in self.pages.predict(path, previous)
        ]

    async def summary(self) -> dict[str, Any]:
        """The next-page model's size, what it was trained through, and its evaluation."""
        await self._refresh_pages()
        evaluation = None if self.evaluation is None else self.evaluation["nextPage"]
        return {**self.pages.summary(), "evaluation": evaluation}

    # -- propensity --------------------------------------------------------------------------

    async def train(self, goal: str | None = None) -> dict[str, Any]:
        """Train every goal's model (and evaluate), or only `goal`'s; what was trained."""
        async with self._training:
            goals = await self._goals()
            if goal is not None:
                if goal not in goals:
                    raise UnknownDefinition("goal", goal)
                goals = {goal: goals[goal]}
            now = self.now_ms()
            observations = await (await self._hosts()).query(ObservationsQuery(goals))
            timeout_ms = int(self.config.session_timeout_s * 1000)
            models, evaluation = await _fit.remote(observations, now, timeout_ms, goal is None)
            if evaluation is not None:
                self.models = models
                self.evaluation = {**evaluation, "evaluatedMs": now}
            else:
                self.models.update(models)
            return {name: _about(model) for name, model in models.items()}

    async def sessions(self, goal: str, limit: int = LIVE_SESSIONS) -> dict[str, Any]:
        """The live sessions that have not reached `goal`, likeliest to first."""
        goals = await self._goals()
        if goal not in goals:
            raise UnknownDefinition("goal", goal)
        if goal not in self.models:
            await self.train(goal)
        model = self.models[goal]
        timeout_ms = int(self.config.session_timeout_s * 1000)
        live = await (await self._hosts()).query(LiveQuery(goals[goal], self.now_ms(), timeout_ms))
        scored = sorted(
            zip(model.probabilities([s.features for s in live]), live, strict=True),
            key=lambda pair: -pair[0],
        )
        return {
            **_about(model),
            "live": len(live),
            "sessions": [
                {
                    "userId": s.user_id,
                    "sessionId": s.session_id,
                    "probability": p,
                    "startMs": s.start_ms,
                    "lastMs": s.last_ms,
                    "pages": int(s.features["pages"]),
                    "entry": s.features["entry"],
                    "channel": s.features["channel"],
                    "device": s.features["device"],
                }
                for p, s in scored[:limit]
            ],
        }

    async def evaluated(self) -> dict[str, Any]:
        """The last evaluation, made now if there is none yet."""
        if self.evaluation is None:
            await self.train()
        assert self.evaluation is not None
        return self.evaluation


def _about(model: PropensityModel) -> dict[str, Any]:
    return {
        "goal": model.goal,
        "trainedMs": model.trained_ms,
        "samples": model.samples,
        "users": model.users,
        "baseRate": model.base_rate,
        "learned": model.pipeline is not None,
    }


_RemotePredictions = ray.remote(PredictionsActor)


def predictions_actor(config: Config) -> ActorHandle[Any]:
    handle: ActorHandle[Any] = _RemotePredictions.options(  # type: ignore[assignment]
        **actor_options(PREDICTIONS_NAME, config)
    ).remote(config)
    return handle
