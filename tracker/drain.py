"""The drain of orphaned hosts: logs that no host of the current count replays.

Lowering `TRACKER_HOSTS` without a clean stop leaves hosts numbered past the new count whose
logs still hold acknowledged commits. The first host finds them (`orphaned_hosts`) and drains
each (`drain`) before it serves anyone, so that those events reach their users' histories.
"""

from __future__ import annotations

from tracker.clock import NowMs, wall_clock_ms
from tracker.host import HOSTS, HostRuntime
from tracker.host_settings import HostSettings
from tracker.journal import LOG, holds_commits, journal_prefix
from tracker.placement import sharded_host_index, sharded_host_name
from tracker.storage import Storage

JOURNALS = journal_prefix(HOSTS)


async def orphaned_hosts(storage: Storage, hosts: int) -> list[str]:
    """Hosts numbered `hosts` or higher whose logs still hold commits, in number order.

    They are what lowering `TRACKER_HOSTS` without a clean stop leaves: no host of the new count
    replays those logs, so their acknowledged events would reach no user's history."""
    found: set[int] = set()
    for info in await storage.list_objects(JOURNALS):
        name, _, rest = info.key.removeprefix(f"{JOURNALS}/").partition("/")
        index = sharded_host_index(name)
        if index is None or index < hosts:
            continue
        # A drained (or cleanly stopped) log holds its start segment only.
        if rest.startswith(f"{LOG}/") and holds_commits(rest):
            found.add(index)
    return [sharded_host_name(index) for index in sorted(found)]


async def drain(
    name: str,
    storage: Storage,
    settings: HostSettings,
    *,
    now_ms: NowMs = wall_clock_ms,
) -> dict[str, int]:
    """Move an orphaned host's logged commits into its users' histories and empty its log.

    A host of that name is started (it claims the log, which fences any incarnation still
    running) and stopped cleanly. The users' next hosts find the events in their histories,
    after what those hosts wrote themselves. Returns the alarms those users need."""
    orphan = HostRuntime(name, storage, settings, now_ms=now_ms)
    await orphan.start()
    # Taken before the stop, whose compaction would log them again: the log would then
    # still hold records, and be drained again at every start.
    alarms = orphan.take_alarm_requests()
    await orphan.stop()
    return alarms
