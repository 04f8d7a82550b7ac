"""Settings on a running tracker: which the actors take on live, which need a full restart.

The host, scheduler and aggregator actors are detached. They outlive the process that created
them, and Ray restarts one that fails with the `Config` it was first created with. So every
process that connects (an HTTP replica as Serve starts it, `tracker.connect()`) hands its own
`Config` to the running actors (`reconfigure`):

- a change to a setting of `FIXED` is refused with a `ConfigError` naming it, old and new: the
  actors own their storage, and a user's host follows from the placement and the number of
  hosts, so none of these can change under running actors (nor can the namespace; actors are
  found by it, so `tracker.api` refuses a new one over the storage of a tracker running in
  another);
- the settings of `LIVE` are applied at once, and kept in storage (`save`), where an actor that
  starts or restarts later finds them (`load`), whatever it was created with. All but the
  opt-out list: an opted-out user must leave nothing in storage, so a host that starts asks
  the scheduler for the settings it holds instead.

The other settings belong to the HTTP replicas, which Serve replaces on every redeploy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tracker import codec
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.storage import Storage, get_if_any, local_path

FIXED = ("storage", "placement", "hosts")
LIVE = (
    "max_movements_per_session",
    "session_timeout_s",
    "alarm_interval_s",
    "alarm_timeout_s",
    "retention_s",
    "passivate_after_s",
    "compact_log_bytes",
    "compact_interval_s",
    "commit_linger_ms",
    "max_sessions_per_user",
    "host_memory_mb",
    "max_user_actors",
    "opt_out",
    "export_dest",
)
KEY = "settings"
# Live, but not kept in storage (see the module docstring).
NOT_KEPT = ("opt_out",)


def refuse_fixed_changes(running: Config, new: Config) -> None:
    """Raise `ConfigError` if `new` changes a setting the running tracker cannot take on."""
    for name in FIXED:
        old_value, new_value = getattr(running, name), getattr(new, name)
        if name == "storage" and same_storage(old_value, new_value):
            continue
        if name == "hosts" and running.placement == new.placement == "per-user":
            continue  # not used by that placement
        if old_value != new_value:
            raise ConfigError(
                f"TRACKER_{name.upper()}={new_value!r}: the running tracker has "
                f"{old_value!r}, and this setting cannot change while it runs; stop the "
                "tracker's actors first (a full restart, docs/deploy.md section 9)"
            )


def same_storage(a: str, b: str) -> bool:
    """Whether two storage URLs name the same storage (`tracker serve` makes a relative file
    URL absolute)."""
    root_a, root_b = local_path(a), local_path(b)
    if root_a is None or root_b is None:
        return a == b
    return root_a.resolve() == root_b.resolve()


def kept(config: Config) -> dict[str, Any]:
    """The live settings of `config` that are kept in storage."""
    return {name: getattr(config, name) for name in LIVE if name not in NOT_KEPT}


def applied(config: Config, values: dict[str, Any]) -> Config:
    """`config` with the kept settings of `values` (those `kept` returned)."""
    known = {name: values[name] for name in LIVE if name in values and name not in NOT_KEPT}
    changed = dataclasses.replace(config, **known)
    changed.validate()
    return changed


async def save(storage: Storage, config: Config) -> None:
    """Keep `config`'s live settings for the actors that start later (see `NOT_KEPT`)."""
    await storage.put(KEY, codec.encode("settings", {"live": kept(config)}))


async def load(storage: Storage, config: Config) -> Config | None:
    """`config` with the settings last saved in `storage`; None if none were saved."""
    found = await get_if_any(storage, KEY)
    if found is None:
        return None
    return applied(config, codec.decode("settings", found[0], KEY)["live"])
