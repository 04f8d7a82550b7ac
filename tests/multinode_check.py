"""Cluster-level fault scenarios, each in its own process with its own local Ray cluster
(`ray.cluster_utils.Cluster`): the test session shares one Ray, which must not be stopped.

    python tests/multinode_check.py nodes STORAGE_URL    # head + 2 worker nodes, one removed
    python tests/multinode_check.py restart STORAGE_URL  # the whole cluster stopped, a new one

Both drive a bounded load through the Python API (`fault_support.Load`) while the fault
happens, read every user's history back and print one JSON object on the last line of standard
output: the scenario's figures and what was checked. tests/test_faults.py runs them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import asdict
from typing import Any

import ray
from fault_support import Load, anonymous_users, event_ids, figures, ray_sender
from ray.cluster_utils import Cluster

from tracker import actors
from tracker.api import Tracker, connect
from tracker.config import Config
from tracker.placement import host_name, sharded_host_names

USERS = 12
DEADLINE_S = 120.0
HOST_SLOT = "tracker_host_slot"


def start_cluster(workers: int) -> tuple[Cluster, list[Any]]:
    """A head node and `workers` worker nodes, one CPU each, and this driver connected. Worker
    nodes offer the resource `HOST_SLOT`, which the multi-node scenario's hosts ask for."""
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1, resources={HOST_SLOT: 100}) for _ in range(workers)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster, nodes


def actor_info(handle: Any) -> dict[str, Any]:
    """Where an actor lives and how often it was restarted (Ray's debugging API)."""
    from ray._private import state

    info: dict[str, Any] = state.actors(actor_id=handle._actor_id.hex())
    return info


def node_of(handle: Any) -> str:
    return str(actor_info(handle)["Address"]["NodeID"])


async def exported(t: Tracker, users: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for user in users:
        lines: list[dict[str, Any]] = await t.user(user).export.remote()
        found[user] = event_ids(lines)
    return found


def nodes(storage: str) -> dict[str, Any]:
    """Hosts on the worker nodes only; the node of host-0 is removed while events flow, and
    Ray restarts host-0 on the other worker node."""
    started = time.monotonic()
    cluster, workers = start_cluster(2)
    config = Config.from_env(
        {}, storage=storage, namespace=f"nodes-{uuid.uuid4().hex[:8]}", hosts=2
    )  # one host per worker node
    # Created here (connect() then finds them by name) so as to ask for a worker node.
    for name in sharded_host_names(config):
        actors.host_actor(name, config, resources={HOST_SLOT: 1})
    t = connect(config=config)
    victim = t.hosts["host-0"]
    doomed = next(node for node in workers if node.node_id == node_of(victim))
    users = anonymous_users(USERS)
    moved = [u for u in users if host_name(u, config) == "host-0"]
    cluster_s = time.monotonic() - started

    async def scenario() -> dict[str, Any]:
        send = ray_sender(t)
        load = Load(send, users, 400, deadline_s=DEADLINE_S)
        task = asyncio.create_task(load.run())
        await load.reached(120)
        removing_at = time.monotonic()
        await asyncio.to_thread(cluster.remove_node, doomed)
        removed_at = time.monotonic()
        probe = Load(send, moved, 5 * len(moved), concurrency=len(moved), deadline_s=DEADLINE_S)
        await asyncio.gather(task, probe.run())
        found = await exported(t, users)
        result = figures(
            "node removed (head + 2 workers)",
            [load, probe],
            found,
            probe.recovered_after(removed_at),
            note=f"Python API; {len(moved)} of {USERS} users' host moved to the other worker "
            f"node; recover s: node gone ({removed_at - removing_at:.1f} s to remove) to first "
            "acknowledgement",
        )
        return {
            "figures": asdict(result),
            "moved_users": len(moved),
            "host_node_after": node_of(victim),
            "host_restarts": actor_info(victim)["NumRestarts"],
            "removed_node": doomed.node_id,
            "worker_nodes": [node.node_id for node in workers],
            "cluster_start_s": round(cluster_s, 2),
        }

    result = asyncio.run(scenario())
    ray.shutdown()
    cluster.shutdown()
    return result


def restart(storage: str) -> dict[str, Any]:
    """Events and alarms, then the whole cluster killed with requests in flight; a new cluster
    over the same storage must have every acknowledged event and every pending alarm."""
    config = Config.from_env({}, storage=storage, namespace=f"restart-{uuid.uuid4().hex[:8]}")
    users = anonymous_users(USERS)
    cluster, _ = start_cluster(0)
    t = connect(config=config)

    async def before() -> tuple[list[Load], dict[str, int]]:
        send = ray_sender(t)
        first = Load(send, users, 300, deadline_s=DEADLINE_S)
        await first.run()
        # Every user's first alarm is armed by their host within a tick of their first event.
        deadline = time.monotonic() + 30
        alarms: dict[str, int] = {}
        while len(alarms) < len(users) and time.monotonic() < deadline:
            due = await asyncio.gather(*(t.scheduler.get_alarm.remote(u) for u in users))
            alarms = {u: d for u, d in zip(users, due, strict=True) if d is not None}
            await asyncio.sleep(0.1)
        # More events; the cluster is stopped while some are in flight (never acknowledged).
        second = Load(send, users, 3000, deadline_s=DEADLINE_S)
        task = asyncio.create_task(second.run())
        await second.reached(150)
        task.cancel()
        return [first, second], alarms

    loads, alarms = asyncio.run(before())
    ray.shutdown()
    cluster.shutdown()

    restarted_at = time.monotonic()
    cluster, _ = start_cluster(0)
    t = connect(config=config)

    async def after() -> dict[str, Any]:
        alarms_after = await asyncio.gather(*(t.scheduler.get_alarm.remote(u) for u in users))
        found = await exported(t, users)
        # Service on the new cluster: one more batch per user, all acknowledged.
        probe = Load(ray_sender(t), users, 5 * USERS, concurrency=USERS, deadline_s=DEADLINE_S)
        await probe.run()
        back = sum(alarms.get(u) == due for u, due in zip(users, alarms_after, strict=True))
        result = figures(
            "whole cluster stopped, new cluster started",
            loads,
            found,
            probe.recovered_after(restarted_at),
            note=f"Python API; stopped with requests in flight; {back} of {len(alarms)} pending "
            "alarms back; recover s: new cluster starting to its first acknowledgement",
        )
        return {
            "figures": asdict(result),
            "alarms_before": [alarms.get(u) for u in users],
            "alarms_after": alarms_after,
            "probe_acknowledged": probe.acknowledged,
            "probe_sent": probe.sent,
        }

    result = asyncio.run(after())
    ray.shutdown()
    cluster.shutdown()
    return result


SCENARIOS = {"nodes": nodes, "restart": restart}

if __name__ == "__main__":
    mode, storage_url = sys.argv[1], sys.argv[2]
    print(json.dumps(SCENARIOS[mode](storage_url)), flush=True)
