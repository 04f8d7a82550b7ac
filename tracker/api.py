"""The Python API for programs on the cluster: `connect()`, `Tracker`, `UserHandle`.

    import ray, tracker
    t = tracker.connect()                      # joins (or starts) Ray, creates the actors
    user = t.user("3f1c...")                   # a handle on one user's tracker
    ray.get(user.create_session.remote("s1", {"userAgent": "cli"}))
    ray.get(user.track.remote({"userId": "3f1c...", "sessionId": "s1", ...}))

Every method of a `UserHandle` follows Ray's handle convention: `.remote(...)` returns an
ObjectRef (await it, or `ray.get` it). Both placements behave the same. Movements without an
`eventId` get one here, so Ray's automatic retry of a call to a restarted host never counts an
event twice. `track_many` validates its batch here and sends it in the stored form, which the
host logs as it comes (a batch that does not pass goes as sent, for the host to name the error).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec
import ray
from ray import ObjectRef
from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayError, RayTaskError

from tracker.actors import (
    aggregator_actor,
    host_actor,
    live_hosts,
    router_actor,
    running_user_actors,
    scheduler_actor,
    user_actors_actor,
)
from tracker.clock import wall_clock_ms
from tracker.cluster import init_ray
from tracker.codec import encode_entries
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.placement import SCHEDULER_NAME, host_name, sharded_host_names
from tracker.query.filters import FILTERS, report_options
from tracker.query.index import HistoryIndex
from tracker.query.rebuild import rebuild
from tracker.query.run import Query, fan_out
from tracker.query.site import site_figures
from tracker.schema import movements_from_obj, pack_movements
from tracker.settings import same_storage
from tracker.storage import open_storage

P = TypeVar("P")
# What `Tracker.analytics` passes on as `GET /api/analytics`'s parameters.
REPORT_PARAMS = frozenset({*FILTERS, "bots", "compare", "limit"}) - {"path"}

_PREPARED = {"track", "track_many", "track_event"}


def connect(
    address: str | None = None, *, config: Config | None = None, **overrides: Any
) -> Tracker:
    """Return a `Tracker` bound to a running Ray, starting a local Ray when none is running.

    The cluster is `address`, else `RAY_ADDRESS`, else the one `ray start` made on this machine
    if it still runs (`tracker.cluster`). Configuration is read from the environment
    (`TRACKER_*`), then keyword overrides apply (`connect(storage="s3://bucket/prefix",
    placement="per-user")`; `ray_actor_options={"runtime_env": {...}, "resources": {...}}` gives
    the tracker's actors Ray options of yours, as they are created). The scheduler, the
    aggregator and (sharded placement) the host actors are created if they do not exist yet;
    running ones take on this configuration (`tracker.settings`).
    """
    config = config or Config.from_env(**overrides)
    if not ray.is_initialized():
        init_ray(config.namespace, "connect", address, log_to_driver=False)
    return Tracker(config)


def _prepared(method: str, user_id: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """The call to make: event IDs added (where missing or null, as the HTTP app does);
    `track_many` in the stored form when it validates; `track_event(session_id, name,
    properties)` as the `track` of a custom event, now."""
    if method == "track_event":
        session_id, name, *rest = args
        data: dict[str, Any] = {"name": name}
        if rest and rest[0] is not None:
            data["properties"] = rest[0]
        movement = {
            "userId": user_id,
            "sessionId": session_id,
            "timestamp": wall_clock_ms(),
            "event": "custom",
            "data": data,
            "eventId": uuid.uuid4().hex,
        }
        return "track", (movement,)
    if method == "track" and args and isinstance(args[0], dict):
        return method, (_with_id(args[0]), *args[1:])
    if method == "track_many" and len(args) == 1 and isinstance(args[0], list | tuple):
        movements = [_with_id(m) if isinstance(m, dict) else m for m in args[0]]
        try:
            checked = movements_from_obj(pack_movements(movements), wall_clock_ms())
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
            return method, (movements,)  # the host names what is wrong
        if any(m.userId != user_id for m in checked):
            return method, (movements,)
        return "track_stored", (encode_entries(checked),)
    return method, args


def _no_id(movement: dict[str, Any]) -> bool:
    return movement.get("eventId") is None


def _with_id(movement: dict[str, Any]) -> dict[str, Any]:
    """The movement with an event ID (a new one where missing), so that a retry stores it once."""
    return {**movement, "eventId": uuid.uuid4().hex} if _no_id(movement) else movement


class _Method:
    __slots__ = ("_handle", "_name")

    def __init__(self, handle: UserHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any) -> ObjectRef[Any]:
        owner = self._handle
        method = self._name
        if method in _PREPARED:
            method, args = _prepared(method, owner.user_id, args)
        if owner.per_user:
            # The user's own actor may have exited while idle: the router resends the call.
            ref: ObjectRef[Any] = owner.host.call.remote(owner.user_id, method, args)
            return ref
        result: ObjectRef[Any] = getattr(owner.host, method).remote(owner.user_id, *args)
        return result


class UserHandle:
    """One user's tracker. Methods: track, track_many, track_event, create_session,
    get_session, analytics, export, erase, variant (an experiment's variant for the user);
    each with `.remote(...)` returning an ObjectRef."""

    def __init__(
        self, config: Config, user_id: str, host: ActorHandle[Any], *, per_user: bool = False
    ) -> None:
        self.config = config
        self.user_id = user_id
        self.host = host
        self.per_user = per_user
        self.track = _Method(self, "track")
        self.track_many = _Method(self, "track_many")
        self.track_event = _Method(self, "track_event")
        self.create_session = _Method(self, "create_session")
        self.get_session = _Method(self, "get_session")
        self.analytics = _Method(self, "analytics")
        self.export = _Method(self, "export")
        self.erase = _Method(self, "erase")
        self.variant = _Method(self, "variant")
        # This user is an anonymous ID: link it to a user (`Tracker.alias`).
        self.link = _Method(self, "link")


class Tracker:
    """Entry point on a connected Ray: users' handles, site analytics and status.

    The running actors take on `config`'s live settings, and a change of one that cannot
    change while they run is refused with a ConfigError (`tracker.settings`); with
    `reconfigure=False` they keep theirs, and only the refusal applies.
    """

    def __init__(self, config: Config, *, reconfigure: bool = True) -> None:
        self.config = config
        refuse_fixed_changes(config)
        self.scheduler = scheduler_actor(config)
        self.aggregator = aggregator_actor(config)
        self.hosts: dict[str, ActorHandle[Any]] = {}
        self.router: ActorHandle[Any] | None = None
        actors = [self.scheduler, self.aggregator]
        if config.placement == "sharded":
            self.hosts = {name: host_actor(name, config) for name in sharded_host_names(config)}
            actors += self.hosts.values()
        else:
            self.router = router_actor(config)
            actors += [self.router, user_actors_actor(config)]
        if not reconfigure:
            ray.get([actor.ready.remote() for actor in actors])
            return
        _get_plain([actor.reconfigure.remote(config) for actor in actors])
        refs: list[ObjectRef[Any]] = [
            a.reconfigure.remote(config) for a in running_user_actors(config)
        ]
        for ref in refs:
            # One that left since it was listed (idle) starts with the settings kept.
            with contextlib.suppress(RayActorError):
                _get_plain([ref])

    def user(self, user_id: str) -> UserHandle:
        """A handle on `user_id`'s tracker (the user is activated on its first call)."""
        if self.router is not None:
            return UserHandle(self.config, user_id, self.router, per_user=True)
        return UserHandle(self.config, user_id, self.hosts[host_name(user_id, self.config)])

    def alias(self, anonymous_id: str, user_id: str) -> dict[str, Any]:
        """Link an anonymous visitor to a user (at login, say): the visitor's sessions and
        history move into the user's, once, and erasing the user erases them too
        (`tracker.links`). Raises `AlreadyLinked` if the anonymous ID is another user's."""
        result: dict[str, Any] = ray.get(self.user(anonymous_id).link.remote(user_id))
        return result

    def analytics(self, **filters: Any) -> dict[str, Any]:
        """Site-wide analytics: `from_ms`, `to_ms` and `path` as `SiteStats.report` takes them,
        and the report's filters and options as `GET /api/analytics` takes them (strings:
        `channel="search"`, `compare="previous"`, `bots="include"`, `limit="20"`)."""
        now_ms = wall_clock_ms()
        params = {k: str(filters.pop(k)) for k in list(filters) if k in REPORT_PARAMS}
        if "path" in filters:
            params["path"] = filters["path"]
        options = report_options(params, now_ms, filters.get("from_ms"), filters.get("to_ms"))
        ref: Any = self.aggregator.report.remote(now_ms, filters)
        result: dict[str, Any] = ray.get(ref)
        # In a thread of its own: the caller may be running an event loop (a notebook, or
        # Playwright's synchronous API), where `asyncio.run` is refused.
        with ThreadPoolExecutor(1) as pool:
            figures = pool.submit(asyncio.run, site_figures(self.query, options)).result()
        result.update(figures)
        return result

    def track_batch(
        self, items: Sequence[tuple[str, Sequence[dict[str, Any]]]]
    ) -> list[int | BaseException]:
        """Many users' movements at once (a bulk load): `(user_id, movements)` pairs, sent as
        one call per host for all its users. Each pair is all-or-nothing on its own; the
        result is, per pair, its count or its error."""
        if self.router is not None:
            refs = [self.user(u).track_many.remote(list(ms)) for u, ms in items]
            return list(ray.get(refs))
        by_host: dict[str, list[int]] = {}
        for position, (user_id, _movements) in enumerate(items):
            by_host.setdefault(host_name(user_id, self.config), []).append(position)
        sent = {
            host: self.hosts[host].track_batch.remote(
                [(items[i][0], [_with_id(m) for m in items[i][1]]) for i in positions]
            )
            for host, positions in by_host.items()
        }
        results: list[int | BaseException] = [0] * len(items)
        for host, positions in by_host.items():
            answers: list[int | BaseException] = ray.get(sent[host])
            for position, answer in zip(positions, answers, strict=True):
                results[position] = answer
        return results

    async def query(self, query: Query[P]) -> P:
        """Run a query over every user's history: on each host, over the users it holds, and
        merged; in the per-user placement, over what storage holds (`tracker.query.rebuild`)."""
        if self.router is None:
            return await fan_out(self.hosts.values(), query)
        index = HistoryIndex()
        await rebuild(index, open_storage(self.config.storage), lambda _user: True)
        return query.merge([query.run(index.histories())])

    def flush(self) -> None:
        """Ship every host's pending analytics and compact now, so that users' histories hold
        every acknowledged event (exports, tests, clean shutdowns)."""
        ray.get([h.flush.remote() for h in live_hosts(self.config)])

    def status(self) -> dict[str, Any]:
        """Hosts, users in memory, users set aside (their history cannot be written: see each
        host's `setAsideUsers`), pending alarms; live per-user actors (per-user placement)."""
        hosts: list[dict[str, Any]] = ray.get([h.stats.remote() for h in self.hosts.values()])
        ref: Any = self.scheduler.stats.remote()
        scheduler: dict[str, Any] = ray.get(ref)
        extra: dict[str, Any] = {}
        if self.router is not None:
            count: Any = user_actors_actor(self.config).count.remote()
            extra["userActors"] = ray.get(count)
        return {
            "placement": self.config.placement,
            "storage": self.config.storage,
            "hosts": list(hosts),
            "activeUsers": sum(h["activeUsers"] for h in hosts),
            "setAsideUsers": sum(h["setAside"] for h in hosts),
            "pendingAlarms": scheduler["pendingAlarms"],
            "scheduler": scheduler,
            **extra,
        }


def refuse_fixed_changes(config: Config) -> None:
    """Raise ConfigError if `config` changes a setting the running tracker cannot take on.

    Asks the running scheduler, if any, before any actor is created with `config`: a new
    host's actor, say, would already have been started with a changed number of hosts."""
    try:
        running = ray.get_actor(SCHEDULER_NAME, namespace=config.namespace)
    except ValueError:
        _refuse_another_namespace(config)
        return
    _get_plain([running.check.remote(config)])


# How long a running tracker of another namespace has to say which storage it uses.
OTHER_NAMESPACE_TIMEOUT_S = 10.0


def _refuse_another_namespace(config: Config) -> None:
    """Refuse a new namespace over the storage of a tracker running in another one: its new
    actors would take the storage over from the running ones (actors are found by namespace,
    so a changed TRACKER_NAMESPACE looks like this)."""
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["name"] != SCHEDULER_NAME or entry["namespace"] == config.namespace:
            continue
        try:
            other = ray.get_actor(SCHEDULER_NAME, namespace=entry["namespace"])
            asked: Any = other.storage_url.remote()
            storage: str = ray.get(asked, timeout=OTHER_NAMESPACE_TIMEOUT_S)
        except (ValueError, RayError):
            continue  # gone, or not answering: not a running tracker to protect
        if same_storage(storage, config.storage):
            raise ConfigError(
                f"TRACKER_NAMESPACE={config.namespace!r}: the tracker running over "
                f"TRACKER_STORAGE={config.storage!r} on this cluster has "
                f"{entry['namespace']!r}, and this setting cannot change while it runs; stop "
                "the tracker's actors first (a full restart, docs/deploy.md section 9)"
            )


def _get_plain(refs: list[ObjectRef[Any]]) -> None:
    try:
        ray.get(refs)
    except ConfigError as exc:
        raise _plain(exc) from None


def _plain(error: BaseException) -> BaseException:
    """A ConfigError raised in an actor as itself, without the actor's traceback (its message
    is what a caller shows); any other error as it is."""
    if isinstance(error, RayTaskError) and isinstance(error, ConfigError):
        return ConfigError(str(error.cause))
    return error


def shutdown(config: Config) -> None:
    """Kill every actor of this configuration's namespace (tests and teardown scripts).

    State is in storage; the next `connect()` recovers it.
    """
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == config.namespace:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(entry["name"], namespace=config.namespace), no_restart=True)
