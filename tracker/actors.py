"""The Ray actors: thin async shells around `UserHost`, `AlarmScheduler` and `Aggregator`.

All are named, detached and restarted by Ray on failure (`max_restarts=-1`), in the project's
namespace. Each starts its logic on the first call and every method waits for that start, so no
request can race the recovery from storage (the seed's constructor did not wait). Each takes on
the settings of a process that connects later through `reconfigure` (`tracker.settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorDiedError, ActorUnavailableError

from tracker import settings
from tracker.actor_process import Started
from tracker.analytics.aggregator import Aggregator
from tracker.clock import wall_clock_ms
from tracker.config import Config
from tracker.errors import (
    Fenced,
    HostRetired,
    StorageUnavailable,
    TooManyUserActors,
)
from tracker.host_actor import HostActor
from tracker.memory import max_user_actors
from tracker.parquet.hourly import HourlyExport
from tracker.placement import (
    AGGREGATOR_NAME,
    ROUTER_NAME,
    SCHEDULER_NAME,
    USER_ACTORS_NAME,
    host_name,
    is_user_actor,
    sharded_host_names,
)
from tracker.scheduler import AlarmScheduler
from tracker.storage import open_storage
from tracker.ticker import TICK_S
from tracker.user_actor_count import UserActorCount

log = logging.getLogger(__name__)

# How often the scheduler looks for an hour to export (`TRACKER_EXPORT_DEST`).
EXPORT_CHECK_S = 60.0


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
        self.per_user = PerUserRoutes(config) if config.placement == "per-user" else None
        self.exports = HourlyExport(self.scheduler.storage, self._flush_hosts)
        self._ready = Started(self._start)
        self._runner: asyncio.Task[None] | None = None
        self._exporter: asyncio.Task[None] | None = None
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
        self._exporter = asyncio.create_task(self._export_hourly())

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

    async def _export_hourly(self) -> None:
        """Export the hours due, about once a minute (`TRACKER_EXPORT_DEST`)."""
        while True:
            try:
                await self.export_due(wall_clock_ms())
            except Exception as exc:  # storage or the cluster down: the hour stays due
                log.warning("scheduler: hourly Parquet export failed, retrying: %s", exc)
            await asyncio.sleep(EXPORT_CHECK_S)

    async def export_due(self, now_ms: int) -> list[int]:
        """Export the hours due at `now_ms` to `TRACKER_EXPORT_DEST`; return their starts."""
        await self._ready.wait()
        return await self.exports.run_due(self.config, now_ms)

    async def _flush_hosts(self) -> None:
        await asyncio.gather(*(host.flush.remote() for host in live_hosts(self.config)))

    async def _fire(self, user_id: str) -> int | None:
        if self.per_user is not None:
            # Started within the count of live per-user actors, like any other call.
            due: int | None = await self.per_user.call(user_id, "alarm")
            return due
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
        """Delete the user's alarm and every stored trace of it (right to erasure), the
        hourly Parquet export's rows included."""
        await self._ready.wait()
        await self.scheduler.erase(user_id)
        await self.exports.erase(self.config, user_id)

    async def ensure_alarms(self, requests: dict[str, int]) -> int:
        await self._ready.wait()
        return await self.scheduler.ensure_alarms(requests)

    async def stats(self) -> dict[str, Any]:
        await self._ready.wait()
        return {**self.scheduler.stats(), "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()


class AggregatorActor:
    """The `Aggregator` as an actor: started on the first call, which every call waits for."""

    def __init__(self, config: Config, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.aggregator = Aggregator(config, now_ms)
        self._ready = Started(self.aggregator.start)

    async def ready(self) -> str:
        await self._ready.wait()
        return AGGREGATOR_NAME

    async def reconfigure(self, config: Config) -> None:
        """Refuse a change of a fixed setting (ConfigError); none of the live ones is used here."""
        settings.refuse_fixed_changes(self.config, config)
        await self._ready.wait()
        self.config = config

    async def merge(self, wire: dict[str, Any] | bytes) -> None:
        await self._ready.wait()
        self.aggregator.merge(wire)

    async def report(self, now_ms: int, filters: dict[str, Any]) -> dict[str, Any]:
        await self._ready.wait()
        return self.aggregator.report(now_ms, filters)

    async def forget_user(self, user_id: str) -> None:
        await self._ready.wait()
        await self.aggregator.forget_user(user_id)

    async def wait_events(self, timeout_s: float) -> int:
        await self._ready.wait()
        return await self.aggregator.wait_events(timeout_s)


class UserActorsActor:
    """Per-user placement: the one `UserActorCount`, asked before a user's actor is started
    (`PerUserRoutes`). Restarted, it counts the per-user actors named in the namespace."""

    def __init__(self, config: Config) -> None:
        self.namespace = config.namespace
        self.counted = UserActorCount(max_user_actors(config.max_user_actors), self._named)

    def _named(self) -> set[str]:
        # A call to Ray's control store, blocking; made when the count is full only.
        return {
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == self.namespace and is_user_actor(entry["name"])
        }

    async def ready(self) -> str:
        return USER_ACTORS_NAME

    async def admit(self, name: str) -> bool:
        return self.counted.admit(name)

    async def reconfigure(self, config: Config) -> None:
        """Admit up to `config`'s bound from now on. Actors over a lowered bound are not
        stopped: new ones wait until enough have left."""
        self.counted.limit = max_user_actors(config.max_user_actors)

    async def release(self, name: str) -> None:
        """The per-user actor `name` is exiting."""
        self.counted.release(name)

    async def count(self) -> int:
        return len(self.counted.live)


class PerUserRoutes:
    """Calls to per-user actors. An idle user's actor exits, so a call may race that exit; it is
    then sent again to a fresh incarnation, which recovers the user from storage. A user's actor
    is started only within the count `UserActorsActor` keeps (else `TooManyUserActors`)."""

    RETRIES = 8

    def __init__(self, config: Config) -> None:
        self.config = config
        self._handles: OrderedDict[str, ActorHandle[Any]] = OrderedDict()
        self._count = user_actors_actor(config)

    async def call(self, user_id: str, method: str, *args: Any) -> Any:
        for attempt in range(self.RETRIES):
            handle = await self._handle(user_id)
            try:
                return await getattr(handle, method).remote(user_id, *args)
            except (ActorDiedError, ActorUnavailableError):
                self._handles.pop(user_id, None)
            except HostRetired:
                # Stopped for good and leaving: end it now, so that a new one takes the call.
                self._handles.pop(user_id, None)
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise StorageUnavailable(f"the tracker of {user_id!r} did not come back")

    async def _handle(self, user_id: str) -> ActorHandle[Any]:
        handle = self._handles.get(user_id)
        if handle is None:
            name = host_name(user_id, self.config)
            if not await self._count.admit.remote(name):
                raise TooManyUserActors(user_id, max_user_actors(self.config.max_user_actors))
            handle = host_actor(name, self.config)
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


def actor_options(name: str, config: Config) -> dict[str, Any]:
    """The named actor's Ray options: the tracker's, then the operator's
    (`Config.ray_actor_options`), which `Config.validate` keeps off the tracker's own."""
    return {
        "name": name,
        "namespace": config.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 3,
        "num_cpus": 0,
        "max_concurrency": 10_000,
        **config.ray_actor_options,
    }


_RemoteHost = ray.remote(HostActor)
_RemoteScheduler = ray.remote(SchedulerActor)
_RemoteAggregator = ray.remote(AggregatorActor)
_RemoteRouter = ray.remote(RouterActor)
_RemoteUserActors = ray.remote(UserActorsActor)


def host_actor(
    name: str, config: Config, *, resources: dict[str, float] | None = None
) -> ActorHandle[Any]:
    """Get or create the named host actor; `resources`: custom Ray resources it needs (to
    place hosts on nodes that offer them)."""
    options = actor_options(name, config)
    if not is_user_actor(name):
        options.setdefault("scheduling_strategy", "SPREAD")
    if resources:
        options["resources"] = {**options.get("resources", {}), **resources}
    handle: ActorHandle[Any] = _RemoteHost.options(**options).remote(name, config)  # type: ignore[assignment]
    return handle


def scheduler_actor(config: Config) -> ActorHandle[Any]:
    options = actor_options(SCHEDULER_NAME, config)
    handle: ActorHandle[Any] = _RemoteScheduler.options(**options).remote(config)  # type: ignore[assignment]
    return handle


def aggregator_actor(config: Config) -> ActorHandle[Any]:
    options = actor_options(AGGREGATOR_NAME, config)
    handle: ActorHandle[Any] = _RemoteAggregator.options(**options).remote(config)  # type: ignore[assignment]
    return handle


def user_actors_actor(config: Config) -> ActorHandle[Any]:
    options = actor_options(USER_ACTORS_NAME, config)
    handle: ActorHandle[Any] = _RemoteUserActors.options(**options).remote(config)  # type: ignore[assignment]
    return handle


def router_actor(config: Config) -> ActorHandle[Any]:
    options = actor_options(ROUTER_NAME, config)
    handle: ActorHandle[Any] = _RemoteRouter.options(**options).remote(config)  # type: ignore[assignment]
    return handle


def running_user_actors(config: Config) -> list[ActorHandle[Any]]:
    """The per-user placement's actors running now (each leaves when idle)."""
    if config.placement != "per-user":
        return []
    found: list[ActorHandle[Any]] = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == config.namespace and entry["name"].startswith("user-"):
            with contextlib.suppress(ValueError):
                found.append(ray.get_actor(entry["name"], namespace=config.namespace))
    return found


def live_hosts(config: Config) -> list[ActorHandle[Any]]:
    """Every host that may hold committed events not yet in users' histories: the sharded
    hosts, or the per-user actors running now."""
    if config.placement == "per-user":
        return running_user_actors(config)
    return [host_actor(name, config) for name in sharded_host_names(config)]
