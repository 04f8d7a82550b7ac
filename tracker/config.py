"""Configuration, read once from the environment (`TRACKER_*`) into one typed object.

`Config.from_env()` reads the process environment; keyword overrides (as `tracker.connect`
takes them) win over it. Units are in the names: `_S` seconds, `_MS` milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from tracker.errors import ConfigError

Placement = Literal["sharded", "per-user"]
PLACEMENTS: tuple[Placement, ...] = ("sharded", "per-user")

NAMESPACE = "tracker"
# The schemes of a Parquet export's destination ("": a local folder's path).
EXPORTS = ("", "file", "s3")
# The fewest characters an operator-chosen admin token or secret may have: a short one could be
# guessed, or its HMACs forged, offline.
MIN_SECRET_CHARS = 32
# The Ray actor options the tracker sets itself, which `ray_actor_options` may not change: its
# actors are found by name in its namespace, outlive their creator, and are restarted by Ray.
TRACKER_ACTOR_OPTIONS = frozenset(
    ("name", "namespace", "lifetime", "get_if_exists", "max_restarts", "max_task_retries")
)
# What a browser's `Origin` header holds: a scheme, a host and maybe a port, nothing else.
_ORIGIN = re.compile(r"https?://[^\s/?#@]+")


@dataclass(frozen=True)
class Config:
    """Everything the tracker can be told. Defaults are the embedded single-machine setup."""

    storage: str = "file://./data"
    placement: Placement = "sharded"
    # One host per 2-core machine is the fastest there (docs/benchmarks.md); raise it with the
    # machines. Lowering it later is safe: host-0 replays the logs of hosts no longer started.
    hosts: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    admin_token: str | None = None
    secret: str | None = None
    allowed_origins: tuple[str, ...] = ()
    rate_limit: float = 50.0
    # Failed admin authentications (a wrong admin token, as a bearer or at login) one client
    # address may make a minute, in a burst, before HTTP 429 (0: no limit).
    admin_failures_per_min: float = 10.0
    # Requests one client address may have open at once on the routes that read a body (0: no
    # limit; none either when rate_limit is 0). The rate limit alone let one address hold
    # about rate_limit * body_timeout_s of the replica's 1,000 request slots with bodies that
    # never finish: 600 at the defaults, so two addresses held them all.
    open_requests_per_client: int = 32
    # Time a client has to send a request's whole body: a trickling body holds one of the
    # replica's request slots (Serve's max_ongoing_requests) for as long as it lasts.
    body_timeout_s: float = 10.0
    # Time a client has to send a request's line and headers on the replica's own HTTP port: a
    # connection trickling them holds a socket and a file descriptor for as long as it lasts.
    header_timeout_s: float = 10.0
    # How long the HTTP replica waits for a host's answer before it answers 503: a host that
    # does not answer must not hold the replica's request slots (docs/serving.md).
    host_timeout_s: float = 30.0
    # Tracking sockets one HTTP replica holds open; past it a new one is closed with 1013. Half
    # of the replica's 1,000 request slots (each socket holds one), so that sockets cannot take
    # the slots of the POST routes.
    ws_max_sockets: int = 500
    # A tracking socket with no message for this long is closed.
    ws_idle_s: float = 60.0
    max_movements_per_session: int = 1000
    # Sessions of one user held in memory; past it the one idle longest leaves memory (its
    # history stays stored, and an event for it starts it again).
    max_sessions_per_user: int = 100
    # What one host process may hold, RSS (0: derived from the node, `memory.py`): above it
    # the host passivates its least recently used users.
    host_memory_mb: int = 0
    # Per-user placement: live per-user actors, one process each, about 50 MB (0: derived
    # from the node's memory, `memory.py`). Past it a new user's call is answered 503.
    max_user_actors: int = 0
    session_timeout_s: float = 30 * 60
    alarm_interval_s: float = 60 * 60
    # How long the scheduler waits for a user's alarm() before retrying it later; the call is
    # not cancelled, and that user's alarm is not fired again until it ends.
    alarm_timeout_s: float = 30.0
    retention_s: float = 30 * 24 * 3600
    passivate_after_s: float = 15 * 60
    compact_log_bytes: int = 64 * 1024 * 1024
    compact_interval_s: float = 120.0
    # How long a busy host's commit waits for more records to share its write (0: never).
    commit_linger_ms: float = 1.0
    # How often the predictions actor trains the propensity models and evaluates both models
    # again (they also train when a goal is first asked for, and on demand).
    predictions_train_every_s: float = 60 * 60
    namespace: str = NAMESPACE
    # Where the scheduler exports each hour's events as Parquet (None: no hourly export): a
    # local folder, file://path or s3://bucket/prefix (tracker.parquet).
    export_dest: str | None = None
    opt_out: tuple[str, ...] = field(default_factory=tuple)
    # Ray options for the tracker's actors, as `ray.remote(...).options()` takes them (a JSON
    # object in the environment): `runtime_env`, `resources`, `memory`, ... They apply when
    # an actor is created; running actors keep the ones they were created with.
    ray_actor_options: dict[str, Any] = field(default_factory=dict)
    # Keys a server-side source (Segment's SDKs, `/v1/*`) presents as its HTTP Basic user name
    # (`tracker write-key` makes one); none: the Segment routes answer 401.
    write_keys: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read `TRACKER_<FIELD>` for every field, then apply keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = f"TRACKER_{f.name.upper()}"
            if key in env and env[key] != "":
                values[f.name] = _cast(key, env[key], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"TRACKER_{f.name.upper()}={value!r}: expected a finite number")
        for names, allowed, expected in _BOUNDS:
            for name in names:
                if not allowed(getattr(self, name)):
                    raise ConfigError(f"TRACKER_{name.upper()}={getattr(self, name)!r}: {expected}")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"TRACKER_PLACEMENT={self.placement!r}: expected one of {PLACEMENTS}")
        self._validate_secrets()
        self._validate_origins()
        if self.export_dest is not None and urlparse(self.export_dest).scheme not in EXPORTS:
            raise ConfigError(
                f"TRACKER_EXPORT_DEST={self.export_dest!r}: expected a local folder, "
                "file://path or s3://bucket/prefix"
            )
        self._validate_actor_options()
        if "://" not in self.storage:
            raise ConfigError(
                f"TRACKER_STORAGE={self.storage!r}: expected a URL such as file://./data "
                "or s3://bucket/prefix"
            )

    def _validate_secrets(self) -> None:
        for at, key in enumerate(self.write_keys):
            # Never the key itself: it is a secret. `tracker write-key` makes 32 characters.
            if len(key) < MIN_SECRET_CHARS or ":" in key or not key.isprintable():
                raise ConfigError(
                    f"TRACKER_WRITE_KEYS: key {at + 1} ({len(key)} characters) is too easy to "
                    f"guess or not a Basic user name; expected at least {MIN_SECRET_CHARS} "
                    "printable characters without ':' (`tracker write-key` makes one)"
                )
        for name in ("admin_token", "secret"):
            value = getattr(self, name)
            # Never the value itself: it is a secret. Generated ones are 43 characters.
            if value and len(value) < MIN_SECRET_CHARS:
                raise ConfigError(
                    f"TRACKER_{name.upper()}: {len(value)} characters, too easy to guess; "
                    f"expected at least {MIN_SECRET_CHARS} (or leave it unset to have one "
                    "generated)"
                )

    def _validate_origins(self) -> None:
        for origin in self.allowed_origins:
            if origin == "*":
                raise ConfigError(
                    "TRACKER_ALLOWED_ORIGINS='*': list the sites' origins instead; any origin "
                    "would let every site's pages send events in your visitors' names"
                )
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"TRACKER_ALLOWED_ORIGINS: {origin!r} is not an origin; expected "
                    "scheme://host[:port] with no path, such as https://shop.example"
                )

    def _validate_actor_options(self) -> None:
        if not isinstance(self.ray_actor_options, dict):
            raise ConfigError(
                f"TRACKER_RAY_ACTOR_OPTIONS={self.ray_actor_options!r}: expected an object of "
                "Ray actor options"
            )
        for name in self.ray_actor_options:
            if name in TRACKER_ACTOR_OPTIONS:
                raise ConfigError(
                    f"TRACKER_RAY_ACTOR_OPTIONS: {name!r} is set by the tracker itself (its "
                    f"actors are found by name and restarted by Ray); expected other options, "
                    "such as runtime_env or resources"
                )

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# The numeric settings' bounds: (settings, whether a value is allowed, what the error says is
# expected). Zero or less would make a busy loop of every alarm (interval), end every session at
# once (timeout), or delete all snapshotted history at each alarm (retention).
_BOUNDS: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (
        (
            "alarm_timeout_s",
            "session_timeout_s",
            "alarm_interval_s",
            "retention_s",
            "passivate_after_s",
            "compact_interval_s",
            "compact_log_bytes",
            "predictions_train_every_s",
        ),
        lambda value: value > 0,
        "must be > 0",
    ),
    (
        ("rate_limit", "open_requests_per_client", "admin_failures_per_min"),
        lambda value: value >= 0,
        "must be >= 0",
    ),
    (
        ("body_timeout_s", "header_timeout_s", "host_timeout_s", "ws_idle_s"),
        lambda value: 0 < value <= 3600,
        "expected more than 0, at most 3600",
    ),
    (
        ("hosts", "max_movements_per_session", "max_sessions_per_user", "ws_max_sockets"),
        lambda value: value >= 1,
        "must be at least 1",
    ),
    (("commit_linger_ms",), lambda value: 0 <= value <= 100, "expected 0 to 100"),
    (
        ("host_memory_mb", "max_user_actors"),
        lambda value: value >= 0,
        "must be >= 0 (0: derived from the node's memory)",
    ),
)


def _cast(key: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind.startswith("dict"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
    except ValueError as exc:
        raise ConfigError(f"{key}={raw!r}: expected {kind}") from exc
    return raw
