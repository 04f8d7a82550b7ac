"""The Ray actors: thin async shells around `UserHost`, `AlarmScheduler` and `SiteStats`.

All are named, detached and restarted by Ray on failure (`max_restarts=-1`), in the project's
namespace. Each starts its logic on the first call and every method waits for that start, so no
request can race the recovery from storage (the seed's constructor did not wait). Each takes on
the settings of a process that connects later through `reconfigure` (`tracker.settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorDiedError, ActorUnavailableError

from tracker import codec, settings
from tracker.analytics import SiteStats
from tracker.config import Config
from tracker.errors import Fenced, InvalidInput, StorageUnavailable
from tracker.host import HostSettings, UserHost, drain, orphaned_hosts, wall_clock_ms
from tracker.outbox import AnalyticsOutbox
from tracker.placement import (
    AGGREGATOR_NAME,
    FIRST_HOST,
    ROUTER_NAME,
    SCHEDULER_NAME,
    host_name,
)
from tracker.scheduler import AlarmScheduler
from tracker.schema import Observed
from tracker.storage import ObjectMissing, open_storage
from tracker.user_tracker import Limits

log = logging.getLogger(__name__)

T = TypeVar("T")

TICK_S = 1.0
# How long a starting host waits for the scheduler's settings.
SETTINGS_TIMEOUT_S = 5.0


def host_settings(config: Config) -> HostSettings:
    return HostSettings(
        limits=Limits(
            max_movements=config.max_movements_per_session,
            session_timeout_ms=int(config.session_timeout_s * 1000),
            alarm_interval_ms=int(config.alarm_interval_s * 1000),
            retention_ms=int(config.retention_s * 1000),
        ),
        passivate_after_ms=int(config.passivate_after_s * 1000),
        compact_log_bytes=config.compact_log_bytes,
        compact_interval_ms=int(config.compact_interval_s * 1000),
        commit_linger_ms=config.commit_linger_ms,
        opt_out=frozenset(config.opt_out),
    )


def _encoded_wire(delta: SiteStats) -> bytes:
    return msgspec.msgpack.encode(delta.to_wire())


# Collections of the middle generation per full one (Python's default is 10).
FULL_COLLECTION_EVERY = 100


def tune_collector() -> None:
    """Set the cycle collector up for a server process, once it has started.

    - What is alive now is exempt from full collections (`gc.freeze`): the libraries (Ray,
      Serve, Starlette) and the recovered state are never walked again by one, which
      otherwise stalled every request of the process for 60-80 ms (measured in a host and
      in a replica; 10 ms after). Objects frozen are still freed when their last reference
      goes; only cycles among them would stay, and startup makes none that die.
    - Full collections come ten times less often. A host's state grows with every event
      (records wait for compaction, sessions keep their batches), so full collections came
      every ten middle ones: in-process, single-event `track` with 1,000 calls in flight spent
      34-39 µs per call in them (of 45-56 in the collector, 141-155 µs in all); one in ten
      leaves 4 µs (18 in the collector, 113 in all). A full collection is as long as before
      (about 0.1 s for 2,000 users), and ten times rarer.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


class _Started:
    """Run an async start once, on first use, and make every caller wait for it."""

    def __init__(self, start: Callable[[], Awaitable[None]]) -> None:
        self._start = start
        self._task: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        if self._task is None or (self._task.done() and self._task.exception() is not None):
            self._task = asyncio.ensure_future(self._start())
        await asyncio.shield(self._task)


class HostActor:
    """A host of user trackers (sharded), or of exactly one user (per-user placement)."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.per_user = name.startswith("user-")
        self.outbox = AnalyticsOutbox()
        self.host = UserHost(
            name,
            open_storage(config.storage),
            host_settings(config),
            on_track=self._observe,
            on_session=self._observe_session,
        )
        self._ready = _Started(self._start)
        self._tickers: list[asyncio.Task[None]] = []
        self._handles: dict[str, ActorHandle[Any]] = {}

    async def _to_named(self, name: str, method: str, *args: Any) -> Any:
        """Call a method of the scheduler or the aggregator.

        Their handles are looked up once (`ray.get_actor` blocks the event loop for a call to
        Ray's control store) and stay valid across restarts; a failed call forgets the handle,
        in case the name now belongs to a new actor."""
        try:
            handle = self._handles.get(name)
            if handle is None:
                handle = ray.get_actor(name, namespace=self.config.namespace)
                self._handles[name] = handle
            return await getattr(handle, method).remote(*args)
        except Exception:
            self._handles.pop(name, None)
            raise

    def _observe(
        self,
        user_id: str,
        session_id: str,
        movements: Sequence[Observed],
        now_ms: int,
        known: bool,
    ) -> None:
        self.outbox.delta.observe_stored(user_id, session_id, movements, now_ms, known=known)

    def _observe_session(
        self, user_id: str, session_id: str, now_ms: int, session: dict[str, Any], known: bool
    ) -> None:
        # Observed now, not at its start: a session created again may have started hours ago.
        self.outbox.delta.observe_session(
            user_id,
            session_id,
            now_ms,
            session.get("deviceInfo"),
            start_ms=session["startTime"],
            known=known,
        )

    def _use(self, config: Config) -> None:
        self.config = config
        self.host.reconfigure(host_settings(config))

    async def reconfigure(self, config: Config) -> None:
        """Take on `config`'s live settings; refuse a change of a fixed one (ConfigError)."""
        settings.refuse_fixed_changes(self.config, config)
        await self._ready.wait()
        self._use(config)

    async def _start(self) -> None:
        kept = await settings.load(self.host.storage, self.config)
        if kept is not None:
            self._use(kept)
        await self._take_schedulers_settings()
        if self.name == FIRST_HOST:
            await self._drain_orphans()
        await self.host.start()
        tune_collector()
        self._tickers = [
            asyncio.create_task(self._every(step))
            for step in (self._ship_analytics, self._ship_alarm_requests, self._compact)
        ]

    async def _take_schedulers_settings(self) -> None:
        """Take on the settings the scheduler holds, the opt-out list among them (which is not
        kept in storage). Without an answer in time, the host starts with what it has: a
        scheduler that hangs or restarts must not hold it up."""
        try:
            current: Config = await asyncio.wait_for(
                self._to_named(SCHEDULER_NAME, "current_config"), SETTINGS_TIMEOUT_S
            )
            settings.refuse_fixed_changes(self.config, current)
        except Exception as exc:
            log.warning("host %s: starts without the scheduler's settings: %s", self.name, exc)
            return
        self._use(current)

    async def _drain_orphans(self) -> None:
        """Replay the logs of hosts no longer started (TRACKER_HOSTS was lowered without a
        clean stop) into their users' histories, before serving anyone."""
        for name in await orphaned_hosts(self.host.storage, self.config.hosts):
            log.warning("%s: replaying the log of %s, which is no longer started", self.name, name)
            alarms = await drain(name, self.host.storage, self.host.settings)
            self.host.alarm_requests.update(alarms)

    async def _every(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` about every second, on its own: a step waiting on another actor (an
        aggregator or scheduler that hangs or restarts) holds up itself only, and never the
        compaction that keeps this host's log short."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await step()
            except Exception as exc:
                log.warning("host %s: %s failed: %s", self.name, step.__name__.strip("_"), exc)

    async def _compact(self) -> None:
        await self.host.compact()
        if self.per_user and self.host.started and not self.host.slots and not self.host.busy():
            # Idle: leave (without a restart by Ray) once everything is shipped and compacted
            # to storage; `tick` raises if any of it failed, and the next round tries again.
            await self.tick()
            await self.host.stop()
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def tick(self) -> None:
        """Ship analytics and alarm requests and compact, once each, now.

        Each step runs even when another failed; the first failure is raised at the end.
        """
        errors: list[Exception] = []
        for step in (self._ship_analytics, self._ship_alarm_requests, self.host.compact):
            try:
                await step()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    async def _ship_analytics(self) -> None:
        await self.outbox.ship(self._send_analytics)

    async def _send_analytics(self, delta: SiteStats) -> None:
        # Flattened and encoded in a thread: at a thousand events a second that is 10-20 ms of
        # work, which on the event loop held up every request of this host meanwhile.
        wire = await asyncio.to_thread(_encoded_wire, delta)
        await self._to_named(AGGREGATOR_NAME, "merge", wire)

    async def _ship_alarm_requests(self) -> None:
        requests = self.host.take_alarm_requests()
        if not requests:
            return
        try:
            await self._to_named(SCHEDULER_NAME, "ensure_alarms", requests)
        except Exception:
            self.host.alarm_requests.update(requests)
            raise

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        await self._ready.wait()
        return await method(*args)

    async def ready(self) -> str:
        await self._ready.wait()
        return self.name

    async def track(self, user_id: str, movement: Any) -> int:
        return await self._call(self.host.track, user_id, movement)

    async def track_many(self, user_id: str, movements: Sequence[Any]) -> int:
        return await self._call(self.host.track_many, user_id, movements)

    async def track_batch(
        self, items: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[int | BaseException]:
        return await self._call(self.host.track_batch, items)

    async def track_stored(self, user_id: str, entries: Sequence[Any]) -> int:
        return await self._call(self.host.track_stored, user_id, entries)

    async def track_stored_batch(
        self, items: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[int | BaseException]:
        return await self._call(self.host.track_stored_batch, items)

    async def create_session(
        self, user_id: str, session_id: str, device_info: Any = None
    ) -> dict[str, Any]:
        # Counted in analytics by the host, as it is stored (`_observe_session`); an opted-out
        # user's is neither stored nor counted.
        return await self._call(self.host.create_session, user_id, session_id, device_info)

    async def get_session(self, user_id: str, session_id: str) -> dict[str, Any]:
        return await self._call(self.host.get_session, user_id, session_id)

    async def analytics(self, user_id: str) -> dict[str, Any]:
        return await self._call(self.host.analytics, user_id)

    async def export(self, user_id: str) -> list[dict[str, Any]]:
        return await self._call(self.host.export, user_id)

    async def erase(self, user_id: str) -> dict[str, Any]:
        result = await self._call(self.host.erase, user_id)
        await self.outbox.forget_user(user_id)  # after an analytics shipment out lands
        await self._to_named(SCHEDULER_NAME, "erase", user_id)
        await self._to_named(AGGREGATOR_NAME, "forget_user", user_id)
        return result

    async def alarm(self, user_id: str) -> int | None:
        return await self._call(self.host.alarm, user_id)

    async def stats(self) -> dict[str, Any]:
        await self._ready.wait()
        return {**self.host.stats(), "pid": os.getpid()}

    async def flush(self) -> None:
        """Compact and ship pending analytics now (used by tests and clean shutdowns)."""
        await self._ready.wait()
        await self.host.compact(force=True)  # a tick compacts only when it is due
        await self.tick()

    def pid(self) -> int:
        return os.getpid()


class SchedulerActor:
    """The one alarm scheduler: fires each user's `alarm()` on the user's host when due."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.scheduler = AlarmScheduler(
            open_storage(config.storage),
            self._fire,
            fallback_interval_ms=int(config.alarm_interval_s * 1000),
            fire_timeout_s=config.alarm_timeout_s,
            group=lambda user_id: host_name(user_id, config),
        )
        self._ready = _Started(self._start)
        self._runner: asyncio.Task[None] | None = None
        # The live settings in storage, as far as this actor knows (`tracker.settings`).
        self._kept: dict[str, Any] | None = None
        # Start now rather than on the first call: after Ray restarts this actor, nothing may
        # call it for hours, and the alarms it holds must fire meanwhile. (An async actor's
        # constructor runs on its event loop.)
        self._starting = asyncio.get_running_loop().create_task(self._start_eagerly())

    async def _start_eagerly(self) -> None:
        while True:
            try:
                await self._ready.wait()
                return
            except Exception as exc:  # storage down, say: keep trying, as a call would
                log.warning("scheduler: start failed, retrying: %s", exc)
                await asyncio.sleep(TICK_S)

    async def _start(self) -> None:
        kept = await settings.load(self.scheduler.storage, self.config)
        if kept is not None:
            self._kept = settings.kept(kept)
            self._use(kept)
        await self.scheduler.start()
        self._runner = asyncio.create_task(self._run())

    def _use(self, config: Config) -> None:
        self.config = config
        self.scheduler.fallback_interval_ms = int(config.alarm_interval_s * 1000)
        self.scheduler.fire_timeout_s = config.alarm_timeout_s

    def check(self, config: Config) -> None:
        """Raise ConfigError if `config` changes a setting the running tracker cannot."""
        settings.refuse_fixed_changes(self.config, config)

    def storage_url(self) -> str:
        return self.config.storage

    async def reconfigure(self, config: Config) -> None:
        """Take on `config`'s live settings, and keep them for the actors that start later;
        refuse a change of a fixed one (ConfigError)."""
        settings.refuse_fixed_changes(self.config, config)
        await self._ready.wait()
        if settings.kept(config) != self._kept:
            await settings.save(self.scheduler.storage, config)
            self._kept = settings.kept(config)
        self._use(config)

    async def current_config(self) -> Config:
        """The settings in force (for a host that starts)."""
        await self._ready.wait()
        return self.config

    async def _run(self) -> None:
        try:
            await self.scheduler.run()
        except Fenced:
            # A newer scheduler incarnation owns the alarms; this one must stop firing.
            log.error("scheduler fenced by a newer incarnation; no longer firing alarms")

    async def _fire(self, user_id: str) -> int | None:
        handle = host_actor(host_name(user_id, self.config), self.config)
        result: int | None = await handle.alarm.remote(user_id)
        return result

    async def ready(self) -> str:
        await self._ready.wait()
        return SCHEDULER_NAME

    async def set_alarm(self, user_id: str, due_ms: int) -> None:
        await self._ready.wait()
        await self.scheduler.set_alarm(user_id, due_ms)

    async def get_alarm(self, user_id: str) -> int | None:
        await self._ready.wait()
        return self.scheduler.get_alarm(user_id)

    async def delete_alarm(self, user_id: str) -> None:
        await self._ready.wait()
        await self.scheduler.delete_alarm(user_id)

    async def erase(self, user_id: str) -> None:
        """Delete the user's alarm and every stored trace of it (right to erasure)."""
        await self._ready.wait()
        await self.scheduler.erase(user_id)

    async def ensure_alarms(self, requests: dict[str, int]) -> int:
        await self._ready.wait()
        return await self.scheduler.ensure_alarms(requests)

    async def stats(self) -> dict[str, Any]:
        await self._ready.wait()
        return {**self.scheduler.stats(), "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()


AGGREGATE_KEY = "analytics/site"
PERSIST_INTERVAL_S = 5.0


class AggregatorActor:
    """Site-wide analytics: merges the deltas hosts ship every second; persisted periodically."""

    def __init__(self, config: Config, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.storage = open_storage(config.storage)
        self.stats = SiteStats()
        self.now_ms = now_ms  # the clock deltas are merged by, whatever the hosts' clocks say
        self.dirty = False
        self.persist_interval_s = PERSIST_INTERVAL_S
        self.listeners: list[asyncio.Queue[int]] = []
        self._ready = _Started(self._start)
        self._persister: asyncio.Task[None] | None = None
        # One save at a time: an erasure's save must land after a periodic one already out
        # (which still names the erased user), not before it.
        self._saving = asyncio.Lock()

    async def _start(self) -> None:
        with contextlib.suppress(ObjectMissing):
            data, _ = await self.storage.get(AGGREGATE_KEY)
            wire = codec.decode("site", data, AGGREGATE_KEY)["stats"]
            try:
                self.stats = SiteStats.from_wire(wire)
            except InvalidInput as exc:
                raise codec.CorruptObject(f"{AGGREGATE_KEY}: {exc}") from None
        self._persister = asyncio.create_task(self._persist_forever())

    async def _persist_forever(self) -> None:
        while True:
            await asyncio.sleep(self.persist_interval_s)
            if self.dirty:
                try:
                    await self.save()
                except StorageUnavailable as exc:
                    log.warning("aggregator: cannot persist: %s", exc)
                except Exception:
                    # Not a storage outage, so a bug; this loop must outlive it all the same,
                    # or the totals would silently never be saved again.
                    log.exception("aggregator: cannot persist")

    async def save(self) -> None:
        """Persist the totals now; if that fails, they stay dirty for the next save."""
        async with self._saving:
            self.dirty = False
            try:
                await self.storage.put(
                    AGGREGATE_KEY, codec.encode("site", {"stats": self.stats.to_wire()})
                )
            except BaseException:
                self.dirty = True
                raise

    async def ready(self) -> str:
        await self._ready.wait()
        return AGGREGATOR_NAME

    async def reconfigure(self, config: Config) -> None:
        """Refuse a change of a fixed setting (ConfigError); none of the live ones is used here."""
        settings.refuse_fixed_changes(self.config, config)
        await self._ready.wait()
        self.config = config

    async def merge(self, wire: dict[str, Any] | bytes) -> None:
        """Add a host's delta: `SiteStats.to_wire`, or that encoded with msgpack.

        A delta that fails `SiteStats`'s checks (a newer or broken peer, a crafted call) is
        refused and dropped: logged, and this returns normally, so that the host does not send
        it again. Raising would make the host put it back into its next delta, which would then
        be refused too, every second, and nothing more of that host would ever arrive.
        """
        await self._ready.wait()
        try:
            if isinstance(wire, bytes):
                delta = SiteStats.decode_wire(wire)
            else:
                delta = SiteStats.from_wire(wire)
        except InvalidInput as exc:
            log.warning("aggregator: refused and dropped an analytics delta: %s", exc)
            return
        self.stats.merge(delta, self.now_ms())
        self.dirty = True
        events = delta.total_events()
        for queue in self.listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(events)

    async def report(self, now_ms: int, filters: dict[str, Any]) -> dict[str, Any]:
        await self._ready.wait()
        report: dict[str, Any] = self.stats.report(now_ms, **filters)
        return report

    async def forget_user(self, user_id: str) -> None:
        """Erasure: the stored totals must stop naming the user now, not at the next save."""
        await self._ready.wait()
        self.stats.forget_user(user_id)
        await self.save()

    async def wait_events(self, timeout_s: float) -> int:
        """Block until some events arrive (or the timeout); return how many (for live views)."""
        await self._ready.wait()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1000)
        self.listeners.append(queue)
        try:
            first = await asyncio.wait_for(queue.get(), timeout=timeout_s)
        except TimeoutError:
            return 0
        finally:
            self.listeners.remove(queue)
        total = first
        while not queue.empty():
            total += queue.get_nowait()
        return total


class PerUserRoutes:
    """Calls to per-user actors. An idle user's actor exits, so a call may race that exit; it is
    then sent again to a fresh incarnation, which recovers the user from storage."""

    RETRIES = 8

    def __init__(self, config: Config) -> None:
        self.config = config
        self._handles: OrderedDict[str, ActorHandle[Any]] = OrderedDict()

    async def call(self, user_id: str, method: str, *args: Any) -> Any:
        for attempt in range(self.RETRIES):
            handle = self._handle(user_id)
            try:
                return await getattr(handle, method).remote(user_id, *args)
            except (ActorDiedError, ActorUnavailableError):
                self._handles.pop(user_id, None)
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise StorageUnavailable(f"the tracker of {user_id!r} did not come back")

    def _handle(self, user_id: str) -> ActorHandle[Any]:
        handle = self._handles.get(user_id)
        if handle is None:
            handle = host_actor(host_name(user_id, self.config), self.config)
            self._handles[user_id] = handle
            if len(self._handles) > 10_000:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(user_id)
        return handle


class RouterActor:
    """Per-user placement: forwards a `UserHandle`'s calls to the user's own actor."""

    def __init__(self, config: Config) -> None:
        self.routes = PerUserRoutes(config)

    async def ready(self) -> str:
        return ROUTER_NAME

    async def reconfigure(self, config: Config) -> None:
        """Create users' actors with `config` from now on; refuse a change of a fixed setting."""
        settings.refuse_fixed_changes(self.routes.config, config)
        self.routes.config = config

    async def call(self, user_id: str, method: str, args: tuple[Any, ...]) -> Any:
        return await self.routes.call(user_id, method, *args)


def _options(name: str, config: Config) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": config.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 3,
        "num_cpus": 0,
        "max_concurrency": 10_000,
    }


_RemoteHost = ray.remote(HostActor)
_RemoteScheduler = ray.remote(SchedulerActor)
_RemoteAggregator = ray.remote(AggregatorActor)
_RemoteRouter = ray.remote(RouterActor)


def host_actor(
    name: str, config: Config, *, resources: dict[str, float] | None = None
) -> ActorHandle[Any]:
    """Get or create the named host actor; `resources`: custom Ray resources it needs (to
    place hosts on nodes that offer them)."""
    options = _options(name, config)
    if not name.startswith("user-"):
        options["scheduling_strategy"] = "SPREAD"
    if resources:
        options["resources"] = resources
    handle: ActorHandle[Any] = _RemoteHost.options(**options).remote(name, config)  # type: ignore[assignment]
    return handle


def scheduler_actor(config: Config) -> ActorHandle[Any]:
    options = _options(SCHEDULER_NAME, config)
    handle: ActorHandle[Any] = _RemoteScheduler.options(**options).remote(config)  # type: ignore[assignment]
    return handle


def aggregator_actor(config: Config) -> ActorHandle[Any]:
    options = _options(AGGREGATOR_NAME, config)
    handle: ActorHandle[Any] = _RemoteAggregator.options(**options).remote(config)  # type: ignore[assignment]
    return handle


def router_actor(config: Config) -> ActorHandle[Any]:
    options = _options(ROUTER_NAME, config)
    handle: ActorHandle[Any] = _RemoteRouter.options(**options).remote(config)  # type: ignore[assignment]
    return handle
