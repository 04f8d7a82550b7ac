"""Where a user lives: which named, detached host actor holds their tracker.

- `sharded` (default): a fixed set of host actors `host-0 .. host-(N-1)`; a user maps to one by
  rendezvous hashing (highest random weight), which is stable and moves only 1/N of users when N
  changes.
- `per-user`: the seed's literal shape, one actor per user, named from a hash of the user ID
  (names are bounded and safe whatever the ID).
"""

from __future__ import annotations

import hashlib

from tracker.config import Config

SCHEDULER_NAME = "scheduler"
AGGREGATOR_NAME = "aggregator"
ROUTER_NAME = "router"
# Per-user placement: the count of live per-user actors (not itself a user's: no `user-`).
USER_ACTORS_NAME = "per-user-actors"
USER_PREFIX = "user-"
HOST_PREFIX = "host-"


def sharded_host_name(index: int) -> str:
    return f"{HOST_PREFIX}{index}"


def sharded_host_index(name: str) -> int | None:
    """The index of a sharded host's name (`host-3` -> 3); None for any other name."""
    number = name.removeprefix(HOST_PREFIX)
    return int(number) if name.startswith(HOST_PREFIX) and number.isdigit() else None


# Sharded: the host that also replays the logs of hosts no longer started.
FIRST_HOST = sharded_host_name(0)


def _weight(user_id: str, index: int) -> int:
    digest = hashlib.blake2b(f"{index}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(user_id: str, hosts: int) -> int:
    """The rendezvous-hashing shard of a user among `hosts` shards."""
    if hosts == 1:
        return 0
    return max(range(hosts), key=lambda index: _weight(user_id, index))


def host_name(user_id: str, config: Config) -> str:
    """Name of the actor that holds `user_id` under the configured placement."""
    if config.placement == "per-user":
        return USER_PREFIX + hashlib.sha256(user_id.encode()).hexdigest()[:40]
    return sharded_host_name(shard_of(user_id, config.hosts))


def is_user_actor(name: str) -> bool:
    """Whether a host actor's name is a per-user one."""
    return name.startswith(USER_PREFIX)


def sharded_host_names(config: Config) -> list[str]:
    return [sharded_host_name(index) for index in range(config.hosts)]
