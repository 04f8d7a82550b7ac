"""Goals, funnels and experiments, kept durably: one object in storage, changed by
replace-if-unchanged writes (create-only the first time), so that concurrent changes from
several replicas neither lose each other nor break a rule across definitions (an
experiment's goal exists while the experiment does).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import msgspec

from tracker import codec
from tracker.conversions.definitions import Experiment, Funnel, Goal, check_name
from tracker.errors import InvalidDefinition, UnknownDefinition
from tracker.storage import ObjectExists, PreconditionFailed, Storage, get_if_any

KEY = "conversions/definitions"
KIND = "definitions"
# Writers that keep colliding give up after this many tries (a 503, to be retried).
MAX_TRIES = 20


class Definitions(msgspec.Struct):
    goals: dict[str, Goal] = msgspec.field(default_factory=dict)
    funnels: dict[str, Funnel] = msgspec.field(default_factory=dict)
    experiments: dict[str, Experiment] = msgspec.field(default_factory=dict)

    def goal(self, name: str) -> Goal:
        found = self.goals.get(name)
        if found is None:
            raise UnknownDefinition("goal", name)
        return found

    def funnel(self, name: str) -> Funnel:
        found = self.funnels.get(name)
        if found is None:
            raise UnknownDefinition("funnel", name)
        return found

    def experiment(self, name: str) -> Experiment:
        found = self.experiments.get(name)
        if found is None:
            raise UnknownDefinition("experiment", name)
        return found


Change = Callable[[Definitions], None]


class DefinitionStore:
    """The definitions in `storage`, read fresh on every call (they are small)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def read(self) -> Definitions:
        return (await self._read())[0]

    async def _read(self) -> tuple[Definitions, str | None]:
        found = await get_if_any(self.storage, KEY)
        if found is None:
            return Definitions(), None
        data, etag = found
        body = codec.decode(KIND, data, KEY)
        return msgspec.convert(body["definitions"], Definitions), etag

    async def change(self, change: Change) -> Definitions:
        """Apply `change` to the stored definitions, again on a fresh read if another writer
        got in first; the definitions as written."""
        for _ in range(MAX_TRIES):
            definitions, etag = await self._read()
            change(definitions)
            data = codec.encode(KIND, {"definitions": msgspec.to_builtins(definitions)})
            try:
                await self.storage.put(KEY, data, if_absent=etag is None, if_match=etag)
            except (ObjectExists, PreconditionFailed):
                continue
            return definitions
        raise PreconditionFailed(f"{KEY}: changed by others {MAX_TRIES} times in a row; retry")

    async def put_goal(self, name: str, goal: Goal) -> None:
        check_name(name)

        def put(d: Definitions) -> None:
            d.goals[name] = goal

        await self.change(put)

    async def delete_goal(self, name: str) -> None:
        def delete(d: Definitions) -> None:
            d.goal(name)
            users = sorted(e for e, x in d.experiments.items() if x.goal == name)
            if users:
                raise InvalidDefinition(
                    "name",
                    f"goal {name!r} is the goal of experiment {users[0]!r}; change that first",
                )
            del d.goals[name]

        await self.change(delete)

    async def put_funnel(self, name: str, funnel: Funnel) -> None:
        check_name(name)

        def put(d: Definitions) -> None:
            d.funnels[name] = funnel

        await self.change(put)

    async def delete_funnel(self, name: str) -> None:
        def delete(d: Definitions) -> None:
            d.funnel(name)
            del d.funnels[name]

        await self.change(delete)

    async def put_experiment(self, name: str, experiment: Experiment) -> Experiment:
        """Make or change an experiment. Its salt is drawn once, when it is made, so that
        assignments stay reproducible; a stopped experiment stays stopped."""
        check_name(name)

        def put(d: Definitions) -> None:
            if experiment.goal not in d.goals:
                raise InvalidDefinition("goal", f"no goal named {experiment.goal!r}")
            known = d.experiments.get(name)
            experiment.salt = known.salt if known else (experiment.salt or secrets.token_hex(8))
            experiment.stopped = known.stopped if known else False
            d.experiments[name] = experiment

        return (await self.change(put)).experiments[name]

    async def stop_experiment(self, name: str) -> Experiment:
        def stop(d: Definitions) -> None:
            d.experiment(name).stopped = True

        return (await self.change(stop)).experiments[name]

    async def delete_experiment(self, name: str) -> None:
        def delete(d: Definitions) -> None:
            d.experiment(name)
            del d.experiments[name]

        await self.change(delete)
