"""Starting and stopping what a scenario needs: Ray, Serve, the tracker, temporary storage."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracker import server
from tracker.config import Config

NUM_CPUS = 2
_shared = False


@contextlib.contextmanager
def shared_ray() -> Iterator[None]:
    """One Ray for the scenarios run inside (`--quick`: starting Ray costs seconds each time);
    their `ray_session()` then uses it instead of starting their own."""
    global _shared
    with ray_session():
        _shared = True
        try:
            yield
        finally:
            _shared = False


@contextlib.contextmanager
def ray_session(**init: Any) -> Iterator[None]:
    """A fresh local Ray with 2 CPUs, as on the target machine; shut down afterwards."""
    import ray

    if _shared:
        yield
        return

    # "local": never join a cluster someone else started on this machine (Ray would otherwise
    # connect to the one in /tmp/ray/ray_current_cluster).
    # Started as `tracker serve` starts Ray on one machine.
    os.environ.update(server.local_ray_env())
    ray.init(
        address="local", num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False, **init
    )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            from ray import serve

            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@contextlib.contextmanager
def temp_storage() -> Iterator[str]:
    """A `file://` storage URL in a fresh temporary directory (on disk: fsync costs real time)."""
    root = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
    try:
        yield f"file://{root / 'data'}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def storage_root(storage: str) -> Path:
    return Path(storage.removeprefix("file://"))


def bench_config(storage: str, **overrides: Any) -> Config:
    """A tracker configuration in a fresh namespace, rate limit off, known secrets."""
    values: dict[str, Any] = {
        "storage": storage,
        "namespace": f"bench-{uuid.uuid4().hex[:10]}",
        "rate_limit": 0.0,
        "http_host": "127.0.0.1",
        "admin_token": secrets.token_urlsafe(32),
        "secret": secrets.token_urlsafe(32),
    }
    values.update(overrides)
    return Config.from_env({}, **values)


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports that are free on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count >= 65535:
            continue
        if all(_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_serve(first_port: int, ports: int) -> None:
    """Start Serve the way `tracker serve` does (direct ingress, throughput-optimized), but
    with a range of `ports` ports, so the baseline and several replicas each get one."""
    from ray import serve

    from tracker import server

    env = server.serve_env(bench_config("file:///unused", http_port=first_port))
    env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(first_port + ports)
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "127.0.0.1", "port": 0},
        controller_options={"runtime_env": {"env_vars": env}},
    )


def http_status(port: int, path: str, timeout_s: float = 2.0) -> int | None:
    """Status of GET `path` on 127.0.0.1:`port`, or None if nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        # Nothing there, or something that does not speak HTTP (the range is probed blindly).
        return None
    finally:
        connection.close()


def ports_serving(first_port: int, ports: int, path: str) -> list[int]:
    """The ports of the range on which `path` answers 200 (each replica has its own port)."""
    return [p for p in range(first_port, first_port + ports) if http_status(p, path) == 200]


def wait_ports(first_port: int, ports: int, path: str, count: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    found: list[int] = []
    while time.monotonic() < deadline:
        found = ports_serving(first_port, ports, path)
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise RuntimeError(f"only {len(found)} of {count} replicas answer {path} after {timeout_s} s")


def host_handles(config: Config) -> list[Any]:
    """The sharded hosts of `config`'s tracker, by number."""
    import ray

    return [
        ray.get_actor(f"host-{index}", namespace=config.namespace) for index in range(config.hosts)
    ]


def settle(config: Config) -> int:
    """Compact every host now and wait for it; return the compactions the hosts have run.

    Called before each measured run, so that every run starts with an empty log and no
    compaction under way: a compaction that an earlier run's load set off (every 64 MiB of log,
    and every 120 s) then lands in no other run's window, and each run pays only for the
    compactions its own load sets off (`compactions_since`)."""
    import ray

    hosts = host_handles(config)
    ray.get([host.flush.remote() for host in hosts])
    return _compactions(hosts)


def compactions_since(config: Config, settled: int) -> int:
    """Compactions the hosts ran since `settle` returned `settled`: those of the run between."""
    return _compactions(host_handles(config)) - settled


def _compactions(hosts: list[Any]) -> int:
    import ray

    return sum(int(stats["compactions"]) for stats in ray.get([h.stats.remote() for h in hosts]))


def pid_of(actor: Any) -> int:
    """The process of an actor that has a `pid()` method (the tracker's actors do)."""
    import ray

    pid: int = ray.get(actor.pid.remote())
    return pid


def psutil() -> Any:
    """psutil, which Ray bundles (importing Ray puts its copy on the path)."""
    import importlib

    import ray  # noqa: F401

    return importlib.import_module("psutil")


def pids_matching(fragment: str) -> list[int]:
    """Processes whose command line (Ray sets it to `ray::<actor>`) contains `fragment`."""
    found = []
    for process in psutil().process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if fragment in cmdline:
            found.append(int(process.info["pid"]))
    return found


@contextlib.contextmanager
def cpu_seconds(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """CPU seconds (user and system) each process spent in the block, filled in at its end."""
    processes = {label: psutil().Process(pid) for label, pid in pids.items()}
    before = {label: _cpu(p) for label, p in processes.items()}
    spent: dict[str, float] = {}
    yield spent
    spent.update({label: _cpu(p) - before[label] for label, p in processes.items()})


def _cpu(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    return int(psutil().Process(pid).memory_info().rss)


def uss_bytes(pid: int) -> int:
    """Memory only this process holds (not shared libraries): what one more actor costs."""
    return int(psutil().Process(pid).memory_full_info().uss)
