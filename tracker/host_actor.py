"""The host actor: a thin async shell around `UserHost` (sharded hosts, or one user's own
actor in the per-user placement) and its settings. It ships analytics deltas and alarm requests
and compacts about once a second (`ticker.py`); a per-user one leaves when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import ray
from ray.actor import ActorHandle

from tracker import links, settings
from tracker.actor_process import Started, tune_collector
from tracker.analytics import SiteStats
from tracker.analytics.outbox import AnalyticsOutbox
from tracker.config import Config
from tracker.drain import drain, orphaned_hosts
from tracker.erasure import Erasure
from tracker.errors import (
    HostBusy,
    HostRetired,
    InvalidInput,
    StorageUnavailable,
)
from tracker.host_settings import HostSettings
from tracker.memory import MB, default_host_memory_bytes, max_user_actors
from tracker.placement import (
    AGGREGATOR_NAME,
    FIRST_HOST,
    ROUTER_NAME,
    SCHEDULER_NAME,
    USER_ACTORS_NAME,
    host_name,
    is_user_actor,
    sharded_host_names,
)
from tracker.predictions.next_page import NextPageModel, OnlineNextPage
from tracker.query.index import HistoryIndex
from tracker.query.rebuild import rebuild
from tracker.query.run import Query
from tracker.schema import Observed, check_user_id
from tracker.storage import open_storage
from tracker.ticker import Ticker, each_once
from tracker.user_host import NewSession, UserHost

log = logging.getLogger(__name__)

T = TypeVar("T")

INDEX_TRIM_EVERY_MS = 60_000
# How long a starting host waits for the scheduler's settings.
SETTINGS_TIMEOUT_S = 5.0


def host_settings(config: Config) -> HostSettings:
    """The settings of a host, its memory budget as this node allows (see `memory.py`)."""
    if config.host_memory_mb:
        memory_bytes = config.host_memory_mb * MB
    else:
        memory_bytes = default_host_memory_bytes(hosts_on_node(config))
    return HostSettings.from_config(config, memory_bytes)


def hosts_on_node(config: Config) -> int:
    """How many host processes share a node's memory, as placed: sharded hosts are spread
    over the nodes alive; per-user actors may number `max_user_actors` on one."""
    if config.placement == "per-user":
        return max_user_actors(config.max_user_actors)
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    alive = len([node for node in nodes if node.get("Alive")])
    return math.ceil(config.hosts / max(1, alive))


def _encoded_wire(delta: SiteStats) -> bytes:
    return msgspec.msgpack.encode(delta.to_wire())


# A link's move passes at most: each moves what arrived for the anonymous ID during the last.
MOVE_PASSES = 3


class HostActor:
    """A host of user trackers (sharded), or of exactly one user (per-user placement)."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.per_user = is_user_actor(name)
        self.outbox = AnalyticsOutbox()
        # Its users' histories for queries (sharded hosts: per-user placement queries storage).
        self.index = HistoryIndex()
        self._index_trimmed_ms = 0
        # The next-page model's counts over this host's page views, updated as they are stored.
        self.next_pages = OnlineNextPage()
        self.host = UserHost(
            name,
            open_storage(config.storage),
            host_settings(config),
            on_track=self._observe,
            on_session=self._observe_session,
        )
        self.host.on_exposure = self._observe_exposure
        self.host.on_moved = self._index_moved
        self._ready = Started(self._start)
        self._ticker = Ticker(
            f"host {name}",
            (self._ship_analytics, self._ship_alarm_requests, self._compact, self._trim_index),
        )
        self._handles: dict[str, ActorHandle[Any]] = {}
        # One shipment of alarm requests at a time, and the users being erased: a shipment
        # that fails does not put their requests back (the scheduler would arm their alarm
        # after its erasure).
        self._shipping_alarms = asyncio.Lock()
        # Per-user placement: the user this host is for (from the calls), and whether it is
        # stopping or has stopped for good (its calls then go to the user's next host).
        self.user_id: str | None = None
        self.leaving = False
        self.retired = False
        self._left = asyncio.Event()
        self._erasure = Erasure(
            other_hosts=self._other_hosts,
            erase_here=self._erase_here,
            forget_analytics=self.outbox.forget_user,
            alarms_shipping=self._shipping_alarms,
            call_named=lambda name, method, user_id: self._to_named(name, method, user_id),
        )

    async def _erase_here(self, user_id: str) -> dict[str, Any]:
        result = await self._call(self.host.erase, user_id)
        self.index.forget(user_id)
        self.next_pages.forget(user_id)
        return result

    def _other_hosts(self) -> list[str]:
        """The hosts that may hold this host's users too: those of the sharded placement."""
        if self.per_user:
            return []
        return [name for name in sharded_host_names(self.config) if name != self.name]

    async def _to_named(self, name: str, method: str, *args: Any) -> Any:
        """Call a method of the scheduler, the aggregator or another host.

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
        self.index.track(user_id, session_id, movements, now_ms)
        self.next_pages.stored(user_id, session_id, movements)

    def _index_moved(
        self, user_id: str, session_id: str, movements: Sequence[Observed], now_ms: int
    ) -> None:
        # Moved from a linked anonymous ID: the site's live analytics and the next-page counts
        # had them when it sent them; the queries count them as the user's from now on.
        self.index.track(user_id, session_id, movements, now_ms)

    def _observe_exposure(self, user_id: str, experiment: str, variant: str, now_ms: int) -> None:
        # The index of the moment: the host's start makes a new one (`_index_stored_users`).
        self.index.exposure(user_id, experiment, variant, now_ms)

    def _observe_session(
        self,
        user_id: str,
        session_id: str,
        now_ms: int,
        session: dict[str, Any],
        known: bool,
        visit: dict[str, Any],
    ) -> None:
        self.index.session(user_id, session_id, session["startTime"], visit)
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
        if not self.per_user:
            await self._index_stored_users()
            self.next_pages.rebuild(self.index.histories())
        tune_collector()
        self._ticker.start()

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

    async def _compact(self) -> None:
        if self.retired:
            self._exit()
            return
        await self.host.compact()
        if self.per_user and self.host.idle():
            # Idle: leave (without a restart by Ray) once everything is shipped and compacted
            # to storage; `tick` raises if any of it failed, and the next round tries again.
            await self.tick()
            await self._leave()
            self._exit()

    async def _leave(self) -> None:
        """Per-user placement: stop for good. Compact and close the journal, and delete it
        when its user has nothing stored (erased, or never stored anything): its name is
        made from their ID; and free this actor's place in the count of per-user actors.
        Calls from now on are answered `HostRetired`."""
        self.leaving = True
        await self.host.stop()
        try:
            if self.user_id is not None:
                await self.host.drop_journal(self.user_id)
        finally:
            self.retired = True
            self._left.set()
            with contextlib.suppress(Exception):  # else counted until the count is checked
                await self._to_named(USER_ACTORS_NAME, "release", self.name)

    def _exit(self) -> None:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def tick(self) -> None:
        """Ship analytics and alarm requests and compact, once each, now.

        Each step runs even when another failed; the first failure is raised at the end.
        """
        await each_once((self._ship_analytics, self._ship_alarm_requests, self.host.compact))

    async def _index_stored_users(self) -> None:
        """Rebuild the query index from storage. A failure (storage down) leaves the index
        with what it read, logged, rather than keep the host from serving its users."""
        config = self.config
        self.index = HistoryIndex()
        try:
            users = await rebuild(
                self.index, self.host.storage, lambda user: host_name(user, config) == self.name
            )
        except StorageUnavailable as exc:
            log.warning("%s: the query index misses stored users: %s", self.name, exc)
            return
        log.info("%s: %d users' histories indexed for queries", self.name, users)

    async def _trim_index(self) -> None:
        """Retention, for the query index: about once a minute, events older than the
        retention period leave it (as they leave storage at the users' alarms)."""
        now = self.host.now_ms()
        if now - self._index_trimmed_ms >= INDEX_TRIM_EVERY_MS:
            self._index_trimmed_ms = now
            self.index.trim(now - self.host.settings.limits.retention_ms)

    async def query(self, query: Query[T]) -> T:
        """Run a query over this host's users' histories; its partial result."""
        await self._ready.wait()
        return query.run(self.index.histories())

    async def next_page_counts(self) -> NextPageModel:
        """The next-page model's counts over this host's users (a partial to merge)."""
        await self._ready.wait()
        return self.next_pages.model

    async def _ship_analytics(self) -> None:
        await self.outbox.ship(self._send_analytics)

    async def _send_analytics(self, delta: SiteStats) -> None:
        # Flattened and encoded in a thread: at a thousand events a second that is 10-20 ms of
        # work, which on the event loop held up every request of this host meanwhile.
        wire = await asyncio.to_thread(_encoded_wire, delta)
        await self._to_named(AGGREGATOR_NAME, "merge", wire)

    async def _ship_alarm_requests(self) -> None:
        # Held while a shipment is out: an erasure waits for it, so that the scheduler's
        # erasure comes after any request of the user that it carried.
        async with self._shipping_alarms:
            await self.host.ship_alarm_requests(self._ensure_alarms)

    async def _ensure_alarms(self, requests: dict[str, int]) -> None:
        await self._to_named(SCHEDULER_NAME, "ensure_alarms", requests)

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        await self._ready.wait()
        if self.per_user and args and isinstance(args[0], str):
            self.user_id = args[0]
        if self.retired:
            raise HostRetired(f"host {self.name} has stopped; call the user's host again")
        try:
            return await method(*args)
        except StorageUnavailable:
            if not self.leaving:
                raise
        # Its journal closed under the call. Answered once the host has left (an erasure
        # leaving has answered then): the caller ends this actor, and calls again.
        await self._left.wait()
        raise HostRetired(f"host {self.name} stopped; call the user's host again")

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

    async def track_server(
        self,
        user_id: str,
        movements: bytes,
        auto_session: str | None = None,
        device_info: Any = None,
        observe: bool = True,
    ) -> int:
        return await self._call(
            self.host.track_server, user_id, movements, auto_session, device_info, observe
        )

    async def link(self, anonymous_id: str, user_id: str) -> dict[str, Any]:
        """Link `anonymous_id` (held here) to `user_id`: the link record, the move of its
        history into the user's, then its erasure (`tracker.links`); each step safe to run
        again, so a link cut short is completed by the next call."""
        check_user_id("anonymousId", anonymous_id)
        check_user_id("userId", user_id)
        if anonymous_id == user_id:
            raise InvalidInput("anonymousId", "is the user ID itself")
        await links.claim(self.host.storage, anonymous_id, user_id)
        lines = await self._call(self.host.export, anonymous_id)
        for _ in range(MOVE_PASSES):
            for packed, device in links.moved(lines, user_id):
                await self._on_users_host(user_id, "track_server", packed, None, device, False)
            # Events sent under the anonymous ID during the move are moved too (again, the
            # rest: stored once) before it is dropped.
            again = await self._call(self.host.export, anonymous_id)
            if len(again) == len(lines):
                break
            lines = again
        else:
            # Still sending: dropped now, its latest events would be lost. What was moved stays.
            raise HostBusy(f"anonymous ID {anonymous_id!r} is still sending events; link again")
        if lines:
            await self.erase(anonymous_id)
        return {"userId": user_id, "linked": True}

    async def _on_users_host(self, user_id: str, method: str, *args: Any) -> Any:
        """Call `method` for `user_id` on their host: this one, another, or (per-user
        placement) their own actor, through the router."""
        if self.per_user:
            return await self._to_named(ROUTER_NAME, "call", user_id, method, args)
        name = host_name(user_id, self.config)
        if name == self.name:
            return await getattr(self, method)(user_id, *args)
        return await self._to_named(name, method, user_id, *args)

    async def create_session(
        self,
        user_id: str,
        session_id: str,
        device_info: Any = None,
        visit: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        # Counted in analytics by the host, as it is stored (`_observe_session`); an opted-out
        # user's is neither stored nor counted.
        return await self._call(self.host.create_session, user_id, session_id, device_info, visit)

    async def create_new_session(
        self,
        user_id: str,
        session_id: str,
        device_info: Any = None,
        visit: dict[str, Any] | None = None,
    ) -> NewSession:
        return await self._call(
            self.host.create_new_session, user_id, session_id, device_info, visit
        )

    async def get_session(self, user_id: str, session_id: str) -> dict[str, Any]:
        return await self._call(self.host.get_session, user_id, session_id)

    async def analytics(self, user_id: str) -> dict[str, Any]:
        return await self._call(self.host.analytics, user_id)

    async def export(self, user_id: str) -> list[dict[str, Any]]:
        return await self._call(self.host.export, user_id)

    async def variant(self, user_id: str, experiment: str) -> str:
        return await self._call(self.host.variant, user_id, experiment)

    async def erase(self, user_id: str) -> dict[str, Any]:
        """Erase the user everywhere: on the hosts that held them before `TRACKER_HOSTS`
        changed (first: they could write their records back), here, in the scheduler and in
        the aggregator. A per-user host then stops for good, taking its journal with it."""
        anonymous_ids = await links.linked(self.host.storage, user_id)
        for anonymous_id in anonymous_ids:  # data of theirs not moved yet (tracker.links)
            await self._on_users_host(anonymous_id, "erase")
        result = await self._erasure.run(user_id)
        await links.unlink(self.host.storage, user_id, anonymous_ids)
        if self.per_user:
            await self._leave()
        return result

    async def forget(self, user_id: str) -> dict[str, Any] | None:
        """Erase what this host holds of a user who now lives on another host (see
        `UserHost.forget`); called by that host's `erase`."""
        self.index.forget(user_id)
        self.next_pages.forget(user_id)
        return await self._call(self.host.forget, user_id)

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
