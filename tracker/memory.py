"""Memory: what a process holds (RSS), what the node has, and the budgets derived from it.

RSS is read from `/proc/self/statm` (one small file read, about 10 µs), so a host can check it
every few hundred calls; where there is no `/proc`, it reads as 0 and no budget applies.
"""

from __future__ import annotations

import math
import os

MB = 1024 * 1024
# A per-user actor is a whole Ray worker process: about 50 MB USS measured (docs/architecture.md),
# counted with some room.
USER_ACTOR_BYTES = 60 * MB
# However small the node, the per-user placement may run this many users at once.
MIN_USER_ACTORS = 16
# A host's share of the node: the node's memory over its hosts plus two, for Ray's own
# processes, the HTTP replica, the scheduler and the aggregator.
OTHER_SHARES = 2
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss_bytes() -> int:
    """This process's resident set size, or 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def node_memory_bytes() -> int:
    """The physical memory of this node."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def default_host_memory_bytes(hosts_on_node: int) -> int:
    """A host's budget when `TRACKER_HOST_MEMORY_MB` is 0: the node's memory over the hosts on
    it plus `OTHER_SHARES`."""
    return node_memory_bytes() // (max(1, hosts_on_node) + OTHER_SHARES)


def max_user_actors(configured: int) -> int:
    """`TRACKER_MAX_USER_ACTORS`, or (0) a quarter of the node's memory in per-user actors."""
    if configured:
        return configured
    return max(MIN_USER_ACTORS, math.floor(node_memory_bytes() / 4 / USER_ACTOR_BYTES))
