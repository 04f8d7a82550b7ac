"""Experiment assignment held in the user's tracker (`UserHost.variant`, no Ray): sticky,
durable across a new incarnation, passivation, retention and a change of host; a stopped
experiment's control; and the definitions kept in storage."""

from __future__ import annotations

import asyncio

import pytest
from support import movement, run
from test_host import MINUTE, Clock, started

from tracker.conversions.definitions import Experiment, experiment_from, funnel_from, goal_from
from tracker.conversions.demo import EXPERIMENT as DEMO_EXPERIMENT
from tracker.conversions.demo import define_demo
from tracker.conversions.experiments import assign
from tracker.conversions.store import DefinitionStore
from tracker.errors import InvalidDefinition, UnknownDefinition
from tracker.storage import Storage

BUY = {"match": {"event": "custom", "name": "buy"}}


async def define(storage: Storage, weights: dict[str, float] | None = None) -> Experiment:
    store = DefinitionStore(storage)
    await store.put_goal("buy", goal_from(BUY))
    body = {"variants": weights or {"control": 50, "new": 50}, "goal": "buy"}
    return await store.put_experiment("hero", experiment_from(body, {"buy"}))


def test_the_first_assignment_is_recorded_and_later_ones_repeat_it(storage: Storage) -> None:
    clock = Clock()

    async def scenario() -> None:
        experiment = await define(storage)
        host = await started(storage, clock)
        users = [f"user-{i}" for i in range(20)]
        first = {u: await host.variant(u, "hero") for u in users}
        assert first == {u: assign(experiment, u) for u in users}
        assert set(first.values()) == {"control", "new"}
        assert {u: await host.variant(u, "hero") for u in users} == first
        exposures = [line for line in await host.export("user-0") if line["type"] == "exposure"]
        assert [(e["experiment"], e["variant"]) for e in exposures] == [("hero", first["user-0"])]

    run(scenario())


def test_an_assignment_survives_a_new_incarnation_passivation_and_new_weights(
    storage: Storage,
) -> None:
    clock = Clock()

    async def scenario() -> None:
        await define(storage)
        host = await started(storage, clock, passivate_after_ms=MINUTE)
        users = [f"user-{i}" for i in range(30)]
        first = {u: await host.variant(u, "hero") for u in users}
        # New weights would send everyone to `new`: those assigned keep what they had.
        await define(storage, {"control": 0, "new": 1})
        again = await started(storage, clock, passivate_after_ms=MINUTE)  # the old one vanishes
        assert {u: await again.variant(u, "hero") for u in users} == first
        await again.compact(force=True)
        clock.advance(2 * MINUTE)
        await again.compact(force=True)
        assert not again.slots  # passivated: activation reads the snapshot
        assert {u: await again.variant(u, "hero") for u in users} == first
        assert await again.variant("someone-new", "hero") == "new"

    run(scenario())


def test_an_assignment_moves_with_its_user_to_another_host(storage: Storage) -> None:
    clock = Clock()

    async def scenario() -> None:
        await define(storage)
        old = await started(storage, clock)
        chosen = await old.variant("alice", "hero")
        await old.compact(force=True)
        await define(storage, {"control": 1, "new": 0} if chosen == "new" else {"new": 1})
        other = await started(storage, clock, name="host-1")
        assert await other.variant("alice", "hero") == chosen

    run(scenario())


def test_a_stopped_experiment_answers_its_control_and_records_nothing(storage: Storage) -> None:
    clock = Clock()

    async def scenario() -> None:
        await define(storage, {"control": 0, "new": 1})
        await DefinitionStore(storage).stop_experiment("hero")
        host = await started(storage, clock)
        assert await host.variant("alice", "hero") == "control"
        assert await host.export("alice") == []

    run(scenario())


def test_an_erased_user_is_assigned_afresh(storage: Storage) -> None:
    clock = Clock()

    async def scenario() -> None:
        await define(storage)
        host = await started(storage, clock)
        await host.track("alice", movement(at=clock()))
        await host.variant("alice", "hero")
        await host.erase("alice")
        assert await host.export("alice") == []
        assert "hero" not in (await host._slot("alice")).tracker.assignments

    run(scenario())


def test_an_unknown_experiment_is_named_in_the_error(storage: Storage) -> None:
    async def scenario() -> None:
        host = await started(storage, Clock())
        with pytest.raises(UnknownDefinition, match="no experiment named 'nope'"):
            await host.variant("alice", "nope")

    run(scenario())


def test_definitions_are_kept_in_storage_and_rules_across_them_hold(storage: Storage) -> None:
    async def scenario() -> None:
        experiment = await define(storage)
        store = DefinitionStore(storage)
        await store.put_funnel("checkout", funnel_from({"steps": [BUY["match"], BUY["match"]]}))
        read = await DefinitionStore(storage).read()
        assert set(read.goals) == {"buy"} and set(read.funnels) == {"checkout"}
        assert read.experiment("hero").salt == experiment.salt != ""
        # Changing an experiment keeps its salt, so that assignments stay reproducible.
        changed = await define(storage, {"control": 1, "new": 3})
        assert changed.salt == experiment.salt
        with pytest.raises(InvalidDefinition) as caught:
            await store.delete_goal("buy")
        assert caught.value.field == "name"
        await store.delete_experiment("hero")
        await store.delete_goal("buy")
        with pytest.raises(UnknownDefinition):
            await store.delete_goal("buy")
        with pytest.raises(InvalidDefinition) as bad_name:
            await store.put_goal("no spaces", goal_from(BUY))
        assert bad_name.value.field == "name"

    run(scenario())


def test_concurrent_changes_to_definitions_lose_none(storage: Storage) -> None:
    async def scenario() -> None:
        store = DefinitionStore(storage)
        await asyncio.gather(*(store.put_goal(f"g{i}", goal_from(BUY)) for i in range(8)))
        assert set((await store.read()).goals) == {f"g{i}" for i in range(8)}

    run(scenario())


def test_the_demos_experiment_is_defined_in_a_fresh_store_only(storage: Storage) -> None:
    async def scenario() -> None:
        store = DefinitionStore(storage)
        assert await define_demo(store)
        read = await store.read()
        assert read.experiment(DEMO_EXPERIMENT).goal in read.goals
        await store.delete_experiment(DEMO_EXPERIMENT)
        assert not await define_demo(store)
        assert DEMO_EXPERIMENT not in (await store.read()).experiments

    run(scenario())
