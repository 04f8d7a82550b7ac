"""The demo site's experiment: the label of its hero button, A/B tested on visits to the shop.

Defined when storage holds no definitions at all (a fresh store), so that the demo served by
`tracker serve` runs it from the first start; an owner's own definitions are never touched.
"""

from __future__ import annotations

from tracker.conversions.definitions import Experiment, Goal, Match
from tracker.conversions.store import KEY, DefinitionStore
from tracker.storage import get_if_any

GOAL = "shop-visit"
EXPERIMENT = "hero-button"


async def define_demo(store: DefinitionStore) -> bool:
    """Define the demo's goal and experiment in a fresh store; whether it did."""
    if await get_if_any(store.storage, KEY) is not None:
        return False
    await store.put_goal(GOAL, Goal(Match("page_view", path="/app/shop*")))
    await store.put_experiment(EXPERIMENT, Experiment({"control": 50, "bold": 50}, GOAL))
    return True
