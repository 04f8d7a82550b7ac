"""A host stays within its memory budget whatever visitors send: a flood of new sessions for one
user, then of new users, driven in-process as the HTTP replica's calls arrive (many at once,
tracking coalesced), while the host's RSS is watched. Everything acknowledged is stored."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import movement

from tracker import codec
from tracker.actor_process import tune_collector
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.history import user_key
from tracker.host_settings import HostSettings
from tracker.memory import (
    MB,
    MIN_USER_ACTORS,
    USER_ACTOR_BYTES,
    default_host_memory_bytes,
    max_user_actors,
    node_memory_bytes,
    process_rss_bytes,
)
from tracker.schema import movement_from_obj
from tracker.storage import open_storage
from tracker.user_host import UserHost

SESSIONS = 100_000
# New users cost an activation each (a read of their folder) and a history chunk: 30,000 keep
# the test near a minute on a loaded machine, and would grow an unbounded host by about
# 180 MB (6 KB a user), past the budget below, as the sessions' records alone would.
USERS = 100_000
# What the replica sends a host at once: `dispatch.MAX_COALESCED` requests per call.
AT_ONCE = 256
# The host's budget above what the test process holds before the flood.
HEADROOM = 100 * MB


@pytest.fixture
def fast_root(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory-backed files where the system has them: the flood writes tens of
    thousands of users' histories, and a disk's fsyncs would take minutes. Files there are not
    part of the process's RSS."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm) as folder:
        yield Path(folder)


def test_a_host_flooded_with_sessions_and_users_stays_within_its_memory_budget(
    fast_root: Path,
) -> None:
    storage = open_storage(f"file://{fast_root}")
    budget = process_rss_bytes() + HEADROOM
    peak = 0

    def watch() -> None:
        nonlocal peak
        peak = max(peak, process_rss_bytes())

    async def ticker(host: UserHost) -> None:
        # What the host actor does every second: compact when due, ship alarm requests.
        while True:
            await asyncio.sleep(1)
            await host.compact()
            host.take_alarm_requests()

    async def scenario() -> tuple[UserHost, list[str]]:
        host = UserHost("host-0", storage, HostSettings(memory_bytes=budget))
        await host.start()
        tune_collector()  # as the host actor does once started
        tick = asyncio.create_task(ticker(host))
        # One visitor (one address, one user) creating a new session with every request.
        for start in range(0, SESSIONS, AT_ONCE):
            calls = (
                host.create_session("flood", f"s{n}", {"userAgent": "x" * 100})
                for n in range(start, min(start + AT_ONCE, SESSIONS))
            )
            await asyncio.gather(*calls)
            watch()
        # New users, one event each, as the replica coalesces them.
        users = [uuid.uuid4().hex for _ in range(USERS)]
        now = host.now_ms()
        for start in range(0, USERS, AT_ONCE):
            items = [
                (user, codec.encode_entries([movement_from_obj(event(user, now), now)]))
                for user in users[start : start + AT_ONCE]
            ]
            assert await host.track_stored_batch(items) == [1] * len(items)
            watch()
        tick.cancel()
        assert host.shed > 0
        await host.stop()
        return host, users

    host, users = asyncio.run(scenario())
    assert peak < budget, f"RSS peaked at {peak // MB} MB, over the {budget // MB} MB budget"
    assert len(host.slots) < USERS

    # Every acknowledged session and event is in the users' stored histories.
    stored = stored_records(fast_root)
    flood = stored.pop(user_key("flood"))
    assert {r[3][0] for r in flood if r[0] == "session"} == {f"s{n}" for n in range(SESSIONS)}
    assert set(stored) == {user_key(user) for user in users}
    assert all(len(records) == 1 and records[0][0] == "track" for records in stored.values())


def event(user: str, now: int) -> dict[str, object]:
    """`user`'s first page view."""
    return movement(user, at=now, event="page_view", data={"path": "/"}, eventId=f"{user}-1")


def stored_records(root: Path) -> dict[str, list[codec.Record]]:
    """Every user's history (chunks, in order), read straight from the files, by user folder."""
    records: dict[str, list[codec.Record]] = {}
    for chunk in sorted((root / "users").glob("*/*/chunks/*")):
        folder = chunk.parent.parent.relative_to(root).as_posix()
        data = codec.decode("chunk", chunk.read_bytes(), folder)
        records.setdefault(folder, []).extend(data["records"])
    return records


def test_the_memory_bounds_default_to_shares_of_the_nodes_memory() -> None:
    node = node_memory_bytes()
    assert node > 0 and 0 < process_rss_bytes() < node
    # One host per node shares it with Ray's processes, the replica, scheduler and aggregator.
    assert default_host_memory_bytes(1) == node // 3
    assert default_host_memory_bytes(4) == node // 6
    assert max_user_actors(0) == max(MIN_USER_ACTORS, node // 4 // USER_ACTOR_BYTES)
    assert max_user_actors(5) == 5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRACKER_HOST_MEMORY_MB", "-1"),
        ("TRACKER_MAX_USER_ACTORS", "-1"),
        ("TRACKER_MAX_SESSIONS_PER_USER", "0"),
    ],
)
def test_a_memory_bound_out_of_range_is_refused_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})
