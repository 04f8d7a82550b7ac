"""Fault injection under load: while a bounded load generator sends tracked events, a host is
SIGKILLed, the scheduler is killed, storage goes away, a zombie host keeps writing, a node is
removed, the whole cluster is stopped. After each, every acknowledged event must be found.

Each scenario prints its figures (events sent, acknowledged, found afterwards, lost, refusals
retried, time to recover); with TRACKER_RECORD_FAULTS=1 it also writes them, with the time and
the machine, as its row of bench/results/faults.json, and docs/reliability.md's table is
refilled from that file (`bench.docs`). The module prints the rows of its run as a table at the
end. Rerun with `TRACKER_RECORD_FAULTS=1 .venv/bin/pytest -m faults -s`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from browser_support import serve_asgi
from conftest import free_port
from fault_support import (
    Figures,
    Load,
    Retry,
    anonymous_users,
    event_ids,
    figures,
    http_sender,
    movement,
)
from support import wait_for

from bench import docs
from bench.report import machine, merge
from tracker.actors import HostActor
from tracker.errors import Fenced, StorageUnavailable
from tracker.ingress import build_app
from tracker.placement import host_name
from tracker.storage import local_root

pytestmark = pytest.mark.faults

ADMIN = "faults-admin-token-0123456789abcdef"
SECRET = "faults-secret-0123456789abcdef0123"
SCRIPT = Path(__file__).with_name("multinode_check.py")
SCRIPT_TIMEOUT_S = 240
RESULTS: list[Figures] = []
OUTAGES = {"s3": "S3 server stopped", "file": "data directory unwritable"}


@pytest.fixture(scope="module", autouse=True)
def figures_table() -> Iterator[None]:
    yield
    if RESULTS:
        rows = [asdict(result) for result in RESULTS]
        print("\n\nFault injection under load\n\n" + docs.fault_table(rows) + "\n")


def report(result: Figures) -> Figures:
    """Print `result`; with TRACKER_RECORD_FAULTS=1, also make it its scenario's row of the
    results file and of the docs (not by default: `make test` leaves the tree as it found it)."""
    RESULTS.append(result)
    print("\n" + result.to_json())
    if os.environ.get("TRACKER_RECORD_FAULTS") != "1":
        return result
    run = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    merge("faults", "scenario", {**asdict(result), "run": run})
    docs.refresh()
    return result


# -- the HTTP rig: the real app on uvicorn over the tracker's actors -------------------------------


def overrides(**extra: Any) -> dict[str, Any]:
    return {"rate_limit": 0, "admin_token": ADMIN, "secret": SECRET, **extra}


@asynccontextmanager
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


async def exported(c: httpx.AsyncClient, url: str, users: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for user in users:
        response = await c.get(
            f"{url}/api/users/{user}/export", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert response.status_code == 200, response.text
        found[user] = event_ids(json.loads(line) for line in response.text.splitlines())
    return found


def users_on_every_host(t: Any, n: int) -> list[str]:
    users = anonymous_users(n)
    while {host_name(u, t.config) for u in users} != set(t.hosts):
        users = anonymous_users(n)
    return users


async def pid_of(handle: Any) -> int:
    pid: int = await handle.pid.remote()
    return pid


def steady_load(send: Any, users: list[str]) -> Load:
    """Load that goes on until stopped: at most 3000 events, paced."""
    return Load(send, users, 3000, pace_s=0.02)


def probe(send: Any, users: list[str]) -> Load:
    """One batch per user, sent right after a fault (or its end) to time the recovery."""
    return Load(send, users, 5 * len(users), concurrency=len(users))


async def finish(load: Load, task: asyncio.Task[None], more: int = 100) -> None:
    """Let `more` events through after the fault, then stop the load and wait for it."""
    await load.reached(min(load.acknowledged + more, load.events))
    load.stop()
    await task


# -- a host process SIGKILLed ----------------------------------------------------------------------


def test_acknowledged_events_survive_a_host_sigkilled_under_load(
    make_tracker: Callable[..., Any], file_storage: str
) -> None:
    t = make_tracker(**overrides(storage=file_storage))
    users = users_on_every_host(t, 12)
    victims = [u for u in users if host_name(u, t.config) == "host-0"]
    host = t.hosts["host-0"]

    async def scenario(url: str) -> Figures:
        async with client() as c:
            send = http_sender(c, url)
            load = steady_load(send, users)
            task = asyncio.create_task(load.run())
            await load.reached(200)
            pid = await pid_of(host)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            after = probe(send, victims)
            await after.run()
            await finish(load, task)
            assert await pid_of(host) != pid
            found = await exported(c, url, users)
        return figures(
            "host SIGKILLed",
            [load, after],
            found,
            after.recovered_after(killed_at),
            note=f"HTTP; {len(victims)} of {len(users)} users on the killed host; "
            "recover s: kill to first acknowledgement for them",
        )

    with serve_asgi(build_app(t, t.config)) as url:
        result = report(asyncio.run(scenario(url)))
    assert result.acknowledged == result.sent
    assert result.lost == 0
    assert result.recover_s is not None


# -- the scheduler killed --------------------------------------------------------------------------


def test_alarms_pending_when_the_scheduler_is_killed_fire_after_it_restarts(
    make_tracker: Callable[..., Any], file_storage: str
) -> None:
    t = make_tracker(**overrides(storage=file_storage, session_timeout_s=1, alarm_interval_s=2))
    users = users_on_every_host(t, 8)
    scheduler = t.scheduler
    alarm_delay_ms = 3000

    async def scenario(url: str) -> Figures:
        async with client() as c:
            send = http_sender(c, url)
            load = steady_load(send, users)
            task = asyncio.create_task(load.run())
            await load.reached(100)
            # Hosts arm each user's first alarm within a tick of their first event...
            deadline = time.monotonic() + 30
            while None in await asyncio.gather(*(scheduler.get_alarm.remote(u) for u in users)):
                assert time.monotonic() < deadline, "first alarms not armed"
                await asyncio.sleep(0.1)
            # ... and here set due a little after the kill: pending when the scheduler dies.
            due = time.time_ns() // 1_000_000 + alarm_delay_ms
            await asyncio.gather(*(scheduler.set_alarm.remote(u, due) for u in users))
            pid = await pid_of(scheduler)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            # (`pid` answers once Ray has restarted the process; it does not start the
            # scheduler's own work.)
            assert await pid_of(scheduler) != pid
            restarted_s = time.monotonic() - killed_at
            # Activity after the kill for every user: only an alarm run after it can end it.
            after = probe(send, users)
            await after.run()
            await finish(load, task)
            # Nobody calls the scheduler from here on: it must start firing by itself.
            expired: set[str] = set()
            deadline = time.monotonic() + 60
            while len(expired) < len(users) and time.monotonic() < deadline:
                for user in set(users) - expired:
                    response = await c.get(
                        f"{url}/api/track/session",
                        params={"userId": user, "sessionId": "s1"},
                        headers={"Authorization": f"Bearer {ADMIN}"},
                    )
                    if response.status_code == 404:
                        expired.add(user)
                await asyncio.sleep(0.2)
            all_fired_s = time.monotonic() - killed_at
            assert expired == set(users), f"{len(expired)} of {len(users)} sessions ended"
            found = await exported(c, url, users)
        result = figures(
            "scheduler SIGKILLed",
            [load, after],
            found,
            all_fired_s,
            note=f"HTTP; process back in {restarted_s:.1f} s; recover s: kill until alarms "
            f"had ended all {len(users)} users' idle sessions (due "
            f"{alarm_delay_ms / 1000:.0f} s after the kill, then every 2 s)",
        )
        return result

    with serve_asgi(build_app(t, t.config)) as url:
        result = report(asyncio.run(scenario(url)))
    stats = ray.get(scheduler.stats.remote())
    assert stats["fired"] >= len(users)
    assert result.lost == 0


# -- the aggregator hung ---------------------------------------------------------------------------


def test_a_hung_aggregator_holds_up_neither_compaction_nor_alarm_requests(
    make_tracker: Callable[..., Any], file_storage: str
) -> None:
    """A host whose analytics shipment never lands keeps compacting its log and sending its
    users' first alarms to the scheduler (the three ran in one loop, which the shipment held)."""
    from tracker.placement import AGGREGATOR_NAME

    class HungAggregator:  # defined here: Ray's workers cannot import a test module
        """Stands in for the aggregator under its name: takes every delta and never answers."""

        def __init__(self) -> None:
            self.merges = 0
            self.release = asyncio.Event()

        async def merge(self, wire: bytes) -> None:
            self.merges += 1
            await self.release.wait()

        async def forget_user(self, user_id: str) -> None:
            await self.release.wait()

        async def report(self, *args: Any) -> dict[str, Any]:
            await self.release.wait()
            return {}

        def merges_received(self) -> int:
            return self.merges

    t = make_tracker(storage=file_storage, hosts=1, compact_interval_s=0.2)
    first, second = anonymous_users(2)
    ray.get(t.user(first).track_many.remote([movement(first, "a-1", 1)]))
    ray.kill(t.aggregator, no_restart=True)
    hung: Any = None

    def replaced() -> bool:
        nonlocal hung
        try:
            hung = (
                ray.remote(HungAggregator)
                .options(
                    name=AGGREGATOR_NAME,
                    namespace=t.config.namespace,
                    lifetime="detached",
                    num_cpus=0,
                    max_concurrency=100,
                )
                .remote()
            )
        except ValueError:  # the killed actor's name is not free yet
            return False
        return True

    wait_for(replaced)
    ray.get(t.user(first).track_many.remote([movement(first, "a-2", 2)]))
    wait_for(lambda: ray.get(hung.merges_received.remote()) >= 1)  # a shipment is out, stuck
    host = t.hosts[host_name(first, t.config)]
    ray.get(t.user(first).track_many.remote([movement(first, "a-3", 3)]))
    ray.get(t.user(second).track_many.remote([movement(second, "b-1", 1)]))
    assert ray.get(host.stats.remote())["logBytes"] > 0
    wait_for(lambda: ray.get(host.stats.remote())["logBytes"] == 0, timeout_s=20)
    wait_for(lambda: ray.get(t.scheduler.get_alarm.remote(second)) is not None, timeout_s=20)
    assert ray.get(hung.merges_received.remote()) == 1  # still the one shipment, still out


# -- storage outage --------------------------------------------------------------------------------


class S3Server:
    """A moto S3 server of this test's own, on a port of its own, that can be stopped and
    started again: moto keeps its buckets in the process, so they come back with it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._make = lambda: ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.server = self._make()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = self._make()
        self.server.start()


@contextmanager
def s3_outage_rig(
    make_tracker: Callable[..., Any],
) -> Iterator[tuple[Any, Callable[[], None], Callable[[], None]]]:
    """A tracker whose actors use an S3 server that this test stops and starts."""
    import boto3

    s3 = S3Server()
    bucket = f"outage-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    # The session's Ray gives its workers the session's S3 endpoint; the tracker's actors get
    # this one instead.
    settings = overrides(
        storage=f"s3://{bucket}/data",
        namespace=f"t-{uuid.uuid4().hex[:12]}",
        ray_actor_options={"runtime_env": {"env_vars": {"AWS_ENDPOINT_URL": s3.endpoint}}},
    )
    t = make_tracker(**settings)
    try:
        yield t, s3.stop, s3.start
    finally:
        s3.stop()


@contextmanager
def file_outage_rig(
    make_tracker: Callable[..., Any], file_storage: str
) -> Iterator[tuple[Any, Callable[[], None], Callable[[], None]]]:
    """A tracker on local files whose data directory this test makes unwritable: read-only
    for an ordinary user, immutable (`chattr +i`) for root, whom permissions do not stop."""
    t = make_tracker(**overrides(storage=file_storage))
    root = local_root(file_storage)
    as_root = os.geteuid() == 0

    def protect(on: bool) -> None:
        if as_root:
            flag = "+i" if on else "-i"
            subprocess.run(["chattr", "-R", flag, str(root)], check=True, capture_output=True)
        else:
            subprocess.run(["chmod", "-R", "a-w" if on else "u+w", str(root)], check=True)

    if as_root:
        try:
            protect(True)
            protect(False)
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot make {root} immutable here: {exc}")
    try:
        yield t, lambda: protect(True), lambda: protect(False)
    finally:
        protect(False)


@pytest.mark.parametrize("backend", ["s3", "file"])
def test_a_storage_outage_is_answered_503_and_service_resumes_by_itself(
    make_tracker: Callable[..., Any], file_storage: str, s3_endpoint: str, backend: str
) -> None:
    rig = (
        s3_outage_rig(make_tracker)
        if backend == "s3"
        else file_outage_rig(make_tracker, file_storage)
    )
    with rig as (t, fail, restore):
        users = users_on_every_host(t, 10)

        async def scenario(url: str) -> Figures:
            async with client() as c:
                send = http_sender(c, url)
                load = steady_load(send, users)
                task = asyncio.create_task(load.run())
                await load.reached(150)
                await asyncio.to_thread(fail)
                failed_at = time.monotonic()
                refused_before = load.refused
                deadline = time.monotonic() + 30
                while load.refused < refused_before + 20 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                restoring_at = time.monotonic()
                outage_s = restoring_at - failed_at
                await asyncio.to_thread(restore)
                restored_at = time.monotonic()
                after = probe(send, users)
                await after.run()
                await finish(load, task)
                found = await exported(c, url, users)
            assert load.refused >= refused_before + 20, "no 503s during the outage"
            # Nothing sent while storage was down was acknowledged.
            during = [s for s, e, _ in load.successes if s >= failed_at and e <= restoring_at]
            assert during == []
            return figures(
                f"storage outage ({OUTAGES[backend]})",
                [load, after],
                found,
                after.recovered_after(restored_at),
                note=f"HTTP; storage down {outage_s:.1f} s, every request sent meanwhile "
                "answered 503 + Retry-After; recover s: storage back to first acknowledgement",
            )

        with serve_asgi(build_app(t, t.config)) as url:
            result = report(asyncio.run(scenario(url)))
    assert result.lost == 0
    assert result.acknowledged == result.sent
    assert result.recover_s is not None


# -- a zombie host ---------------------------------------------------------------------------------


def test_a_zombie_host_is_fenced_under_load_and_the_data_stays_the_new_incarnations(
    make_tracker: Callable[..., Any], file_storage: str
) -> None:
    """The named host keeps running (the zombie) while a new incarnation of it starts on the
    same storage; clients move to the new one when the zombie refuses them."""
    from tracker.api import connect, shutdown

    t = make_tracker(storage=file_storage, hosts=1, compact_interval_s=0.2)
    zombie = t.hosts["host-0"]
    users = anonymous_users(8)
    state: dict[str, Any] = {"handle": zombie, "new": None, "fenced": 0}

    async def send(user: str, batch: list[dict[str, Any]]) -> None:
        handle = state["handle"]
        try:
            await handle.track_many.remote(user, batch)
        except Fenced as exc:
            state["fenced"] += 1
            state.setdefault("fenced_at", time.monotonic())
            state["handle"] = state["new"]
            raise Retry("fenced") from exc
        except StorageUnavailable as exc:
            raise Retry(str(exc)) from exc

    async def start(handle: Any) -> None:
        # A start can collide with the zombie's compaction and fail; the next call retries it.
        deadline = time.monotonic() + 60
        while True:
            try:
                await handle.ready.remote()
                return
            except StorageUnavailable:
                if time.monotonic() > deadline:
                    raise

    async def scenario() -> Figures:
        load = Load(send, users, 5000, pace_s=0.02)
        task = asyncio.create_task(load.run())
        await load.reached(150)
        new = (
            ray.remote(HostActor)
            .options(num_cpus=0, max_concurrency=1000)
            .remote("host-0", t.config)
        )
        state["new"] = new
        await start(new)
        deadline = time.monotonic() + 60
        while not state["fenced"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await finish(load, task)
        assert state["fenced"], "the zombie was never refused"
        # The zombie's own writes, sent after it was fenced, are refused too, and so is its
        # compaction.
        for user in users:
            with pytest.raises(StorageUnavailable):
                await zombie.track_many.remote(user, [movement(user, f"zombie-{user}", 0)])
        with pytest.raises(StorageUnavailable):
            await zombie.flush.remote()
        assert (await zombie.stats.remote())["fenced"]
        sessions = {u: await new.get_session.remote(u, "s1") for u in users}
        # A third incarnation, from storage alone, has the new incarnation's data exactly.
        ray.kill(new, no_restart=True)
        shutdown(t.config)
        third = connect(config=t.config)
        found: dict[str, list[str]] = {}
        for user in users:
            found[user] = event_ids(await third.user(user).export.remote())
            assert f"zombie-{user}" not in found[user]
            assert await third.user(user).get_session.remote("s1") == sessions[user]
        return figures(
            "zombie host fenced",
            [load],
            found,
            load.recovered_after(state["fenced_at"]),
            note=f"Python API; {state['fenced']} zombie writes refused under load and "
            f"{len(users)} after; recover s: first refusal to first acknowledgement",
        )

    result = report(asyncio.run(scenario()))
    assert result.lost == 0


# -- fewer hosts after a crash ---------------------------------------------------------------------


def test_lowering_tracker_hosts_after_a_crash_keeps_every_acknowledged_event(
    make_tracker: Callable[..., Any], file_storage: str
) -> None:
    """The tracker's actors die, three hosts with acknowledged events in their logs only, and
    the tracker comes back with TRACKER_HOSTS=1: host-0 replays the other two logs before it
    serves anyone."""
    from tracker.api import shutdown

    never = {"compact_interval_s": 3600.0, "compact_log_bytes": 1 << 30}
    before = make_tracker(storage=file_storage, hosts=3, **never)
    # Random IDs, four per host: each of the three logs holds acknowledged events.
    users: list[str] = []
    for host in before.hosts:
        users += [u for u in anonymous_users(200) if host_name(u, before.config) == host][:4]
    assert {host_name(user, before.config) for user in users} == set(before.hosts)
    sent = {user: [f"{user}-{i}" for i in range(5)] for user in users}
    ray.get(
        [
            before.user(user).track_many.remote([movement(user, e, i) for i, e in enumerate(ids)])
            for user, ids in sent.items()
        ]
    )
    shutdown(before.config)  # a crash: nothing compacted, no clean stop

    after = make_tracker(storage=file_storage, hosts=1, **never)
    for user, ids in sent.items():
        session = ray.get(after.user(user).get_session.remote("s1"))
        assert sorted(m["eventId"] for m in session["movements"]) == sorted(ids)


# -- several nodes, and the whole cluster: each in a process with a Ray cluster of its own ---------


def run_script(mode: str, storage: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), mode, storage],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        env=env,
        cwd=SCRIPT.parent.parent,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    return result


def test_removing_a_node_moves_its_users_with_all_their_acknowledged_data(
    file_storage: str,
) -> None:
    outcome = run_script("nodes", file_storage)
    result = report(Figures(**outcome["figures"]))
    assert outcome["removed_node"] in outcome["worker_nodes"]
    assert outcome["host_node_after"] != outcome["removed_node"]
    assert outcome["host_restarts"] >= 1
    assert outcome["moved_users"] > 0
    assert result.acknowledged == result.sent
    assert result.lost == 0


def test_a_new_cluster_over_the_same_storage_has_all_acknowledged_state_and_pending_alarms(
    file_storage: str,
) -> None:
    outcome = run_script("restart", file_storage)
    result = report(Figures(**outcome["figures"]))
    assert None not in outcome["alarms_before"]
    assert outcome["alarms_after"] == outcome["alarms_before"]
    assert outcome["probe_acknowledged"] == outcome["probe_sent"] > 0
    assert result.acknowledged > 0
    assert result.lost == 0
