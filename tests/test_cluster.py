"""Joining a long-lived cluster (`ray start --head`), and starting a Ray of one's own.

Each test runs the tracker in processes of its own (`tracker serve`, programs calling
`tracker.connect()`, the command line), with a home and a Ray temporary folder of its own, so
that neither the machine's Ray token nor its record of the last `ray start` cluster is used
or changed; the test session's Ray is not involved.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from support import wait_for

from tracker.cluster import cluster_address

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 180.0

# A program on the cluster. `connect`: tracks an event through `tracker.connect()` (which hands
# its settings to the running actors), then one through the user's running host actor itself.
# `host`: only the latter, leaving the running settings alone. Prints what each call answered.
TRACK = """
import json, sys, time, ray, tracker
from tracker.cluster import init_ray
from tracker.config import Config
from tracker.placement import host_name
mode, user, event = sys.argv[1:]
def movement(event_id):
    return {"userId": user, "sessionId": "s1", "timestamp": int(time.time() * 1000),
            "event": "click", "data": {"path": "/"}, "eventId": event_id}
answers = {}
config = Config.from_env()
if mode == "connect":
    answers["handle"] = ray.get(tracker.connect().user(user).track.remote(movement(event)))
else:
    init_ray(config.namespace, "connect", log_to_driver=False)
host = ray.get_actor(host_name(user, config), namespace=config.namespace)
answers["host"] = ray.get(host.track.remote(user, movement(event + "-host")))
print(json.dumps(answers))
"""


@dataclass
class Machine:
    """A home and a Ray temporary folder of their own, and the environment that uses them."""

    root: Path
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            env={**self.env, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )

    def track(self, mode: str, user: str, event: str, **env: str) -> dict[str, int]:
        done = self.run(sys.executable, "-c", TRACK, mode, user, event, **env)
        assert done.returncode == 0, done.stderr[-3000:]
        result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


@pytest.fixture
def machine() -> Iterator[Machine]:
    # Short: Ray's socket paths under it must stay within the 107 bytes a socket path may take.
    root = Path(tempfile.mkdtemp(prefix="trk-", dir="/tmp"))
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TRACKER_"))}
    env.update(
        HOME=str(root / "home"),
        RAY_TMPDIR=str(root),
        TRACKER_STORAGE=f"file://{root / 'data'}",
        TRACKER_RATE_LIMIT="0",
        TRACKER_ADMIN_TOKEN=secrets.token_urlsafe(32),
        TRACKER_SECRET=secrets.token_urlsafe(32),
    )
    yield Machine(root, env)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ray_start(machine: Machine) -> Iterator[str]:
    """`ray start --head` with a token on the machine (so with token authentication, as Ray
    sets it up by default), stopped at the end; yields the cluster's address."""
    generated = machine.run(str(BIN / "ray"), "get-auth-token", "--generate")
    assert generated.returncode == 0, generated.stderr
    log = open(machine.root / "ray-start.log", "w")  # noqa: SIM115 (closed at the end)
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={free_port()}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=machine.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    record = machine.root / "ray" / "ray_current_cluster"
    try:
        wait_for(lambda: record.exists() and record.read_text().strip(), timeout_s=120)
        yield record.read_text().strip()
    finally:
        # Killed at once: `ray start --block` does not stop on SIGTERM, and nothing of the
        # cluster needs keeping (the Ray workers exit with their raylet).
        stop_group(head, grace_s=0)
        log.close()


def stop_group(
    process: subprocess.Popen[str] | subprocess.Popen[bytes], grace_s: float = 15.0
) -> None:
    """End a process started in a session of its own, and what it started there: asked first
    (SIGTERM) for up to `grace_s`, then killed."""
    if grace_s:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]


def serve(machine: Machine, **env: str) -> Served:
    """`tracker serve` in a session of its own, once /healthz answers."""
    port = free_port()
    log = open(machine.root / f"serve-{port}.log", "wb")  # noqa: SIM115 (the process owns it)
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", "serve"],
        env={**machine.env, "TRACKER_HTTP_PORT": str(port), **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, (machine.root / f"serve-{port}.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout_s=START_TIMEOUT_S, interval_s=0.5)
    except BaseException:
        stop_group(process)
        raise
    return Served(url, process)


def test_a_redeploy_on_a_ray_start_cluster_applies_new_settings_to_the_running_actors(
    machine: Machine, ray_start: str
) -> None:
    """Joined with nothing but RAY_ADDRESS (the cluster wants a token, found in the home);
    a `tracker serve` started later with other settings changes what the running host does,
    for HTTP and for programs; a setting that cannot change is refused; a process without
    the token is told where to put it."""
    joined = {"RAY_ADDRESS": ray_start}
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    assert machine.track("connect", alice, "a1", **joined) == {"handle": 1, "host": 1}

    served = serve(machine, TRACKER_SESSION_TIMEOUT_S="1", TRACKER_OPT_OUT=bob, **joined)
    try:
        admin = {"Authorization": f"Bearer {machine.env['TRACKER_ADMIN_TOKEN']}"}
        with httpx.Client(base_url=served.url, headers=admin, timeout=30) as client:
            # alice's session was started before, with a timeout of half an hour; the running
            # host now ends it after a second idle.
            def sessions() -> list[object]:
                response = client.get(f"/api/users/{alice}")
                assert response.status_code == 200, response.text
                found: list[object] = response.json()["sessions"]
                return found

            wait_for(lambda: sessions() == [])
            event = {
                "userId": bob,
                "sessionId": "s1",
                "timestamp": int(time.time() * 1000),
                "event": "click",
                "data": {"path": "/"},
            }
            assert client.post("/api/track", json=event).json() == {"success": True, "accepted": 0}
            assert client.get(f"/api/users/{bob}").json()["sessions"] == []
        # bob's events are dropped by the running host itself, whoever sends them.
        assert machine.track("host", bob, "b1", **joined) == {"host": 0}
        status = machine.run(sys.executable, "-m", "tracker.cli", "status", **joined)
        assert status.returncode == 0, status.stderr[-3000:]
        assert json.loads(status.stdout)["placement"] == "sharded"
    finally:
        stop_group(served.process)

    refused = machine.run(
        sys.executable, "-m", "tracker.cli", "serve", TRACKER_PLACEMENT="per-user", **joined
    )
    assert refused.returncode == 2
    assert "TRACKER_PLACEMENT='per-user'" in refused.stderr
    assert "'sharded'" in refused.stderr

    # Without the token, the error says where to put it.
    tokenless = machine.run(
        sys.executable, "-m", "tracker.cli", "status", HOME=str(machine.root / "other"), **joined
    )
    assert tokenless.returncode == 2
    assert f"RAY_ADDRESS={ray_start!r}: could not join" in tokenless.stderr
    assert "set RAY_AUTH_TOKEN" in tokenless.stderr


def test_connect_starts_a_ray_of_its_own_at_once_despite_the_record_of_a_dead_cluster(
    machine: Machine,
) -> None:
    """A cluster `ray start` made and that then died leaves its address behind; Ray's own
    discovery would wait for it, and fail."""
    dead_cluster_record(machine.root)
    started = time.monotonic()
    assert machine.track("connect", str(uuid.uuid4()), "e1") == {"handle": 1, "host": 1}
    assert time.monotonic() - started < RUN_TIMEOUT_S


def dead_cluster_record(temp_root: Path) -> str:
    record = temp_root / "ray" / "ray_current_cluster"
    record.parent.mkdir(exist_ok=True)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    record.write_text(address)
    return address


def test_serve_joins_a_cluster_only_when_told_to_and_ignores_any_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        alive = f"127.0.0.1:{listening.getsockname()[1]}"
        (tmp_path / "ray").mkdir()
        (tmp_path / "ray" / "ray_current_cluster").write_text(alive)
        assert cluster_address("serve", environ={}) is None
        assert cluster_address("serve", environ={"RAY_ADDRESS": "10.0.0.5:6379"}) == (
            "10.0.0.5:6379"
        )
        # A program joins the cluster `ray start` runs here, while it runs.
        assert cluster_address("connect", environ={}) == alive


def test_connect_and_the_command_line_ignore_the_record_of_a_dead_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    dead_cluster_record(tmp_path)
    assert cluster_address("connect", environ={}) is None  # so it starts its own
    assert cluster_address("command", "10.0.0.5:6379", environ={}) == "10.0.0.5:6379"
