"""`AnalyticsOutbox`: shipments to a real `SiteStats` aggregator (through the wire form),
failing when a test says so, raced against erasures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support import movement

from tracker import codec
from tracker.analytics import HOUR_MS, SiteStats
from tracker.analytics.aggregator import AGGREGATE_KEY
from tracker.analytics.aggregator import Aggregator as SiteAggregator
from tracker.analytics.outbox import AnalyticsOutbox
from tracker.config import Config
from tracker.errors import StorageUnavailable
from tracker.schema import Movement
from tracker.storage import ObjectMissing, Storage

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS


def page_view(user: str) -> Movement:
    raw = movement(user, at=T0, event="page_view", data={"path": "/"})
    return msgspec.convert(raw, Movement)


class Aggregator:
    """The aggregator's side: merges what arrives; a shipment waits at `gate` while it is
    closed, then fails if `failing`."""

    def __init__(self) -> None:
        self.stats = SiteStats()
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False
        self.arrived = asyncio.Event()  # a shipment has reached the gate

    async def send(self, delta: SiteStats) -> None:
        wire = msgspec.msgpack.encode(delta.to_wire())
        self.arrived.set()
        await self.gate.wait()
        if self.failing:
            raise StorageUnavailable("the aggregator is restarting")
        self.stats.merge(SiteStats.from_wire(msgspec.msgpack.decode(wire)))

    def users(self) -> list[str]:
        report = self.stats.report(T0)
        assert report["activeUsers"] == len({r["userId"] for r in report["recentActivity"]})
        return sorted(r["userId"] for r in report["recentActivity"])


async def erase(outbox: AnalyticsOutbox, aggregator: Aggregator, user_id: str) -> None:
    """What a host does for an erasure: its own delta, then the aggregator."""
    await outbox.forget_user(user_id)
    aggregator.stats.forget_user(user_id)


def observed(*users: str) -> AnalyticsOutbox:
    outbox = AnalyticsOutbox()
    for user in users:
        outbox.delta.observe(user, [page_view(user)], T0)
    return outbox


def test_a_failed_shipment_is_sent_again_with_the_next_one() -> None:
    async def scenario() -> None:
        outbox, aggregator = observed("alice"), Aggregator()
        aggregator.failing = True
        with pytest.raises(StorageUnavailable):
            await outbox.ship(aggregator.send)
        outbox.delta.observe("bob", [page_view("bob")], T0)
        aggregator.failing = False
        await outbox.ship(aggregator.send)
        assert aggregator.users() == ["alice", "bob"]
        assert outbox.delta.is_empty()

    asyncio.run(scenario())


@pytest.mark.parametrize("fails", [True, False], ids=["failed", "landed"])
def test_a_user_erased_while_a_shipment_is_out_is_not_brought_back_by_it(fails: bool) -> None:
    async def scenario() -> None:
        outbox, aggregator = observed("alice", "bob"), Aggregator()
        aggregator.gate.clear()
        aggregator.failing = fails
        shipment = asyncio.ensure_future(outbox.ship(aggregator.send))
        await asyncio.wait_for(aggregator.arrived.wait(), timeout=5)
        erasure = asyncio.ensure_future(erase(outbox, aggregator, "alice"))
        await asyncio.sleep(0)  # the erasure starts while the shipment is out
        aggregator.gate.set()
        await asyncio.gather(shipment, return_exceptions=True)
        await asyncio.wait_for(erasure, timeout=5)
        aggregator.failing = False
        await outbox.ship(aggregator.send)  # the next tick
        assert aggregator.users() == ["bob"]

    asyncio.run(scenario())


def test_an_erasure_saved_while_an_earlier_save_is_out_is_what_storage_keeps(
    tmp_path: Path,
) -> None:
    """The aggregator's periodic save (naming alice) is out when her erasure saves the totals
    without her: storage must end with the erasure's, whichever write finishes first."""

    class HoldFirstSave:
        def __init__(self, inner: Storage) -> None:
            self.inner = inner
            self.saves = 0
            self.held = asyncio.Event()
            self.release = asyncio.Event()

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            self.saves += 1
            if self.saves == 1:
                self.held.set()
                await self.release.wait()
            return await self.inner.put(key, data, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    async def scenario() -> None:
        aggregator = SiteAggregator(Config(storage=f"file://{tmp_path}/data"), lambda: T0)
        await aggregator.start()
        storage = HoldFirstSave(aggregator.storage)
        aggregator.storage = storage  # type: ignore[assignment]
        delta = SiteStats()
        delta.observe("alice", [page_view("alice")], T0)
        aggregator.merge(delta.to_wire())
        periodic = asyncio.create_task(aggregator.save())
        await storage.held.wait()
        erasure = asyncio.create_task(aggregator.forget_user("alice"))
        # The erasure's own save must not overtake the one held: it waits for it.
        done, _ = await asyncio.wait({erasure}, timeout=0.5)
        assert not done
        storage.release.set()
        await asyncio.gather(periodic, erasure)
        data, _ = await storage.inner.get(AGGREGATE_KEY)
        kept = SiteStats.from_wire(codec.decode("site", data, AGGREGATE_KEY)["stats"])
        assert delta.report(T0)["recentActivity"] != []  # what the held save wrote
        assert kept.report(T0)["recentActivity"] == []
        assert kept.report(T0)["activeUsers"] == 0

    asyncio.run(scenario())


def test_a_delta_the_aggregator_refuses_is_dropped_and_the_hosts_later_deltas_arrive(
    tmp_path: Path,
) -> None:
    """A newer peer's delta with 12 scroll buckets: refused whole, not sent again."""

    async def scenario() -> None:
        aggregator = SiteAggregator(Config(storage=f"file://{tmp_path}/data"), lambda: T0)
        await aggregator.start()
        outbox = observed("alice")
        sent: list[bytes] = []

        async def send(delta: SiteStats) -> None:
            wire = delta.to_wire()
            if not sent:
                for hour in wire["hours"]:
                    hour[5].append(0)
            sent.append(msgspec.msgpack.encode(wire))
            aggregator.merge(sent[-1])

        await outbox.ship(send)  # refused: the aggregator answers, and the host drops it
        assert outbox.delta.is_empty()
        assert aggregator.stats.report(T0)["totalEvents"] == 0
        outbox.delta.observe("bob", [page_view("bob")], T0)
        await outbox.ship(send)
        report = aggregator.stats.report(T0)
        assert report["totalEvents"] == 1
        assert [r["userId"] for r in report["recentActivity"]] == ["bob"]
        assert len(sent) == 2

    asyncio.run(scenario())


def test_the_aggregator_keeps_saving_after_a_save_fails_unexpectedly(tmp_path: Path) -> None:
    class FailFirstPut:
        def __init__(self, inner: Storage) -> None:
            self.inner = inner
            self.puts = 0

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            self.puts += 1
            if self.puts == 1:
                raise OverflowError("can't serialize ints > 2**64 - 1")
            return await self.inner.put(key, data, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    async def scenario() -> None:
        aggregator = SiteAggregator(Config(storage=f"file://{tmp_path}/data"), lambda: T0)
        aggregator.persist_interval_s = 0.01
        storage = FailFirstPut(aggregator.storage)
        aggregator.storage = storage  # type: ignore[assignment]
        await aggregator.start()
        delta = SiteStats()
        delta.observe("alice", [page_view("alice")], T0)
        aggregator.merge(delta.to_wire())

        async def saved() -> bytes:
            while True:
                try:
                    data, _ = await storage.inner.get(AGGREGATE_KEY)
                    return data
                except ObjectMissing:
                    await asyncio.sleep(0.01)

        data = await asyncio.wait_for(saved(), timeout=10)
        assert storage.puts >= 2
        kept = SiteStats.from_wire(codec.decode("site", data, AGGREGATE_KEY)["stats"])
        assert kept.report(T0)["totalEvents"] == 1

    asyncio.run(scenario())


def test_refused_stored_totals_hold_the_aggregator_until_moved_away_and_no_count_is_lost(
    tmp_path: Path,
) -> None:
    """Stored totals that fail the checks are not overwritten: the aggregator refuses to start
    on them, a host's shipment fails and goes back into its outbox, and every call tries the
    start again. Once the object is moved away, the next shipment starts it from zero and
    brings the counts held back meanwhile."""
    from tracker.actors import AggregatorActor

    async def scenario() -> None:
        aggregator = AggregatorActor(Config(storage=f"file://{tmp_path}/data"), lambda: T0)
        storage = aggregator.aggregator.storage
        wire = SiteStats().to_wire()
        wire["events"] = -1  # no count is negative
        bad = codec.encode("site", {"stats": wire})
        await storage.put(AGGREGATE_KEY, bad)
        with pytest.raises(codec.CorruptObject, match="analytics/site"):
            await aggregator.ready()

        async def ship(delta: SiteStats) -> None:
            await aggregator.merge(msgspec.msgpack.encode(delta.to_wire()))

        outbox = observed("alice")
        with pytest.raises(codec.CorruptObject):
            await outbox.ship(ship)
        assert (await storage.get(AGGREGATE_KEY))[0] == bad  # not overwritten
        await storage.put(f"{AGGREGATE_KEY}-refused", bad)  # the operator's move
        await storage.delete([AGGREGATE_KEY])
        await outbox.ship(ship)
        report = await aggregator.report(T0, {})
        assert (report["totalEvents"], report["totalUsers"]) == (1, 1)

    asyncio.run(scenario())
