"""Privacy (GDPR / CCPA) end to end, over HTTP and the `tracker` command: erasure leaves no
stored object naming the user, export returns everything stored, retention removes old
history, opt-outs and browser privacy signals store nothing, and client IPs are never stored.

The app is the real one (`tracker.ingress.build_app`) on uvicorn over the tracker's actors in
the session's Ray, with local-file storage this module reads byte by byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import support
from browser_support import serve_asgi
from conftest import file_url, holders, user_traces
from support import wait_for

from tracker.analytics import user_key as analytics_key
from tracker.api import Tracker, connect, shutdown
from tracker.config import Config
from tracker.errors import UnknownSession
from tracker.history import user_key
from tracker.ingress import build_app
from tracker.placement import shard_of
from tracker.storage import local_root

ADMIN = "privacy-admin-token-0123456789abcdef"
SECRET = "privacy-secret-0123456789abcdef012"
OPTED_OUT = str(uuid.uuid4())
CAP = 20  # movements per session kept in memory
RETENTION_S = 2.0
CLIENT_IP = "127.0.0.3"
CLI_TIMEOUT_S = 120


@dataclass
class Rig:
    tracker: Tracker
    url: str
    root: Path
    clients: list[str]

    @property
    def config(self) -> Config:
        return self.tracker.config


@pytest.fixture(scope="module")
def rig(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    config = Config.from_env(
        {},
        storage=file_url(tmp_path_factory.mktemp("privacy") / "data"),
        namespace=f"privacy-{uuid.uuid4().hex[:12]}",
        rate_limit=0,
        admin_token=ADMIN,
        secret=SECRET,
        opt_out=(OPTED_OUT,),
        max_movements_per_session=CAP,
        session_timeout_s=1,
        retention_s=RETENTION_S,
    )
    t = connect(config=config)
    app = build_app(t, config)
    clients: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        """The app, noting each request's client address (to prove which one it saw)."""
        if scope["type"] == "http" and scope.get("client"):
            clients.append(scope["client"][0])
        await app(scope, receive, send)

    with serve_asgi(recording) as url:
        yield Rig(t, url, local_root(config.storage), clients)
    shutdown(config)


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def movement(user: str, i: int, **data: Any) -> dict[str, Any]:
    """`user`'s click number `i` on the pricing page, with `data` on top."""
    pricing = {"path": "/pricing", "element": "button#buy", "coordinates": {"x": 5, "y": 9}}
    return support.movement(user, data=pricing | data, eventId=f"{user[:8]}-{i}")


def visit(
    client: httpx.Client, url: str, user: str, events: int, first: int = 0, **headers: str
) -> None:
    """A visitor's session and `events` clicks (a rage-click burst), all acknowledged; event
    IDs are numbered from `first`."""
    response = client.post(
        f"{url}/api/track/session",
        json={"userId": user, "sessionId": "s1", "deviceInfo": {"userAgent": "pytest"}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    for start in range(first, first + events, 10):
        batch = [movement(user, i) for i in range(start, min(first + events, start + 10))]
        response = client.post(f"{url}/api/track", json=batch, headers=headers)
        assert response.status_code == 200, response.text


def traces(user: str) -> list[bytes]:
    """What would name the user in storage: the ID, the folder hash, the analytics hash."""
    return user_traces(user, analytics_key(user).to_bytes(8, "big"))


def export_lines(client: httpx.Client, url: str, user: str) -> list[dict[str, Any]]:
    response = client.get(f"{url}/api/users/{user}/export", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def aggregate_persisted_with(rig: Rig, user: str) -> bool:
    path = rig.root / "analytics" / "site"
    return path.exists() and analytics_key(user).to_bytes(8, "big") in path.read_bytes()


def cli(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    """`tracker ...` as a user runs it: a separate process joining the session's Ray."""
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "TRACKER_STORAGE": rig.config.storage,
        "TRACKER_NAMESPACE": rig.config.namespace,
        "TRACKER_ADMIN_TOKEN": ADMIN,
        "TRACKER_SECRET": SECRET,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tracker.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# -- erasure ---------------------------------------------------------------------------------------


def test_erasure_over_http_leaves_no_stored_object_naming_the_user(rig: Rig) -> None:
    victim, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    with httpx.Client(timeout=30) as client:
        for user in (victim, bystander):
            visit(client, rig.url, user, 30)
        rig.tracker.flush()  # history chunks and snapshots, as well as the log
        for user in (victim, bystander):
            visit(client, rig.url, user, 5, first=30)  # and some in the log only
        wait_for(lambda: ray.get(rig.tracker.scheduler.get_alarm.remote(victim)), timeout_s=30)
        wait_for(lambda: aggregate_persisted_with(rig, victim), timeout_s=30, interval_s=0.2)
        assert len(holders(rig.root, traces(victim))) >= 4  # chunks, log, alarms, aggregate

        response = client.delete(f"{rig.url}/api/users/{victim}", headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.text
        assert response.json()["erased"] is True

        assert holders(rig.root, traces(victim)) == []
        assert not (rig.root / user_key(victim)).exists()
        assert ray.get(rig.tracker.scheduler.get_alarm.remote(victim)) is None
        report = client.get(f"{rig.url}/api/analytics", headers=ADMIN_HEADERS).json()
        assert victim not in json.dumps(report)
        # Nothing of theirs in memory either; and looking them up writes nothing.
        detail = client.get(f"{rig.url}/api/users/{victim}", headers=ADMIN_HEADERS)
        assert detail.json() == {"userId": victim, "sessions": []}
        session = client.get(
            f"{rig.url}/api/track/session",
            params={"userId": victim, "sessionId": "s1"},
            headers=ADMIN_HEADERS,
        )
        assert session.status_code == 404
        rig.tracker.flush()
        assert holders(rig.root, traces(victim)) == []
        # The bystander keeps everything.
        assert (
            len([x for x in export_lines(client, rig.url, bystander) if x["type"] == "movement"])
            == 35
        )


def test_tracker_erase_on_the_command_line_erases_the_user(rig: Rig) -> None:
    user = str(uuid.uuid4())
    with httpx.Client(timeout=30) as client:
        visit(client, rig.url, user, 12)
    rig.tracker.flush()
    assert holders(rig.root, traces(user))
    done = cli(rig, "erase", user)
    assert json.loads(done.stdout.strip().splitlines()[-1])["erased"] is True
    assert holders(rig.root, traces(user)) == []
    assert ray.get(rig.tracker.scheduler.get_alarm.remote(user)) is None


def test_erasure_in_the_per_user_placement_leaves_no_journal_named_by_the_user(
    make_tracker: Any, tmp_path: Path
) -> None:
    """The user's own host has a journal named by their hash (`journals/hosts/user-<hash>/`,
    its epochs and start segment): the erasure deletes it as the host stops for good. A read
    afterwards starts the host again, which claims a journal; idle, it leaves, and takes the
    journal with it, since the user has nothing stored."""
    storage = file_url(tmp_path / "data")
    t = make_tracker(
        storage=storage, placement="per-user", passivate_after_s=0.5, compact_interval_s=0.5
    )
    user = str(uuid.uuid4())
    handle = t.user(user)
    ray.get(handle.create_session.remote("s1", {"userAgent": "pytest"}))
    assert ray.get(handle.track_many.remote([movement(user, i) for i in range(5)])) == 5
    assert holders(storage, user_traces(user))
    assert ray.get(handle.erase.remote())["erased"] is True
    assert holders(storage, user_traces(user, *(f"{user[:8]}-{i}" for i in range(5)))) == []
    with pytest.raises(UnknownSession):
        ray.get(handle.get_session.remote("s1"))
    wait_for(lambda: holders(storage, user_traces(user)) == [], timeout_s=60, interval_s=0.2)


def test_erasure_reaches_the_host_that_held_the_user_before_the_host_count_was_raised(
    make_tracker: Any, tmp_path: Path
) -> None:
    """`TRACKER_HOSTS` goes from 1 to 2 without a clean stop (the actors are killed: the
    count cannot change under running ones): host-0's log still holds the user's first events
    when host-1, their host now, erases them. Without the erasure reaching host-0, what it
    replays would be written back."""
    from tracker.api import shutdown

    storage = file_url(tmp_path / "data")
    before = make_tracker(storage=storage, hosts=1)
    user = next(u for u in (str(uuid.uuid4()) for _ in range(100)) if shard_of(u, 2) == 1)
    assert ray.get(before.user(user).track_many.remote([movement(user, i) for i in range(3)])) == 3
    shutdown(before.config)  # a crash: nothing compacted, no clean stop
    after = make_tracker(storage=storage, hosts=2, namespace=before.config.namespace)
    handle = after.user(user)
    assert ray.get(handle.track_many.remote([movement(user, i) for i in range(3, 6)])) == 3
    assert ray.get(handle.erase.remote())["erased"] is True
    after.flush()  # both hosts compact
    assert holders(storage, user_traces(user, *(f"{user[:8]}-{i}" for i in range(6)))) == []


# -- export ----------------------------------------------------------------------------------------


def test_export_over_http_and_the_cli_returns_every_stored_event_beyond_the_memory_cap(
    rig: Rig, tmp_path: Path
) -> None:
    user = str(uuid.uuid4())
    events = 3 * CAP
    with httpx.Client(timeout=30) as client:
        visit(client, rig.url, user, events)
        session = client.get(
            f"{rig.url}/api/track/session",
            params={"userId": user, "sessionId": "s1"},
            headers=ADMIN_HEADERS,
        ).json()
        assert len(session["movements"]) == CAP
        lines = export_lines(client, rig.url, user)
    sessions = [x for x in lines if x["type"] == "session"]
    movements = [x for x in lines if x["type"] == "movement"]
    assert [s["sessionId"] for s in sessions] == ["s1"]
    assert sessions[0]["deviceInfo"] == {"userAgent": "pytest"}
    assert sorted(m["eventId"] for m in movements) == sorted(
        f"{user[:8]}-{i}" for i in range(events)
    )
    out = tmp_path / "export.ndjson"
    done = cli(rig, "export", user, "-o", str(out))
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    assert f"export {user}" in done.stderr  # the progress bar


# -- retention -------------------------------------------------------------------------------------


def alarm_now(rig: Rig, user: str) -> None:
    """Make the user's alarm due now and wait until it has run (and re-armed)."""
    scheduler = rig.tracker.scheduler
    due = time.time_ns() // 1_000_000
    ray.get(scheduler.set_alarm.remote(user, due))
    wait_for(
        lambda: ray.get(scheduler.get_alarm.remote(user)) != due,
        timeout_s=30,
        interval_s=0.1,
    )


def session_of(client: httpx.Client, rig: Rig, user: str) -> httpx.Response:
    return client.get(
        f"{rig.url}/api/track/session",
        params={"userId": user, "sessionId": "s1"},
        headers=ADMIN_HEADERS,
    )


def test_the_alarm_removes_sessions_and_history_older_than_the_retention(rig: Rig) -> None:
    user = str(uuid.uuid4())
    chunks = rig.root / user_key(user) / "chunks"
    with httpx.Client(timeout=30) as client:
        visit(client, rig.url, user, 10)
        rig.tracker.flush()
        assert any(chunks.iterdir())
        wait_for(
            lambda: all(time.time() - p.stat().st_mtime > RETENTION_S for p in chunks.iterdir()),
            timeout_s=10,
            interval_s=0.2,
        )
        # The first alarm ends the idle session; once that is compacted, the next one deletes
        # the history older than the retention.
        alarm_now(rig, user)
        rig.tracker.flush()
        alarm_now(rig, user)
        lines = export_lines(client, rig.url, user)
        assert [x for x in lines if x["type"] == "movement"] == []
        assert session_of(client, rig, user).status_code == 404


def test_a_batch_resent_after_its_session_ended_is_accepted_but_neither_stored_nor_counted(
    rig: Rig,
) -> None:
    """tracker.js resends an unanswered batch for up to a day; this one holds more events
    than a session keeps in memory here (`CAP`)."""
    user = str(uuid.uuid4())
    batch = [movement(user, i) for i in range(CAP + 10)]
    with httpx.Client(timeout=30) as client:
        response = client.post(f"{rig.url}/api/track", json=batch)
        assert response.json()["accepted"] == len(batch)

        def ended() -> bool:
            alarm_now(rig, user)
            return session_of(client, rig, user).status_code == 404

        wait_for(ended, timeout_s=30, interval_s=0.2)  # idle past the timeout: ended, dropped
        rig.tracker.flush()

        def counted() -> int:
            report = client.get(f"{rig.url}/api/analytics", headers=ADMIN_HEADERS).json()
            return int(report["totalEvents"])

        before = counted()
        response = client.post(f"{rig.url}/api/track", json=batch)
        assert response.status_code == 200
        assert response.json()["accepted"] == len(batch)  # answered as stored, as retries are
        rig.tracker.flush()
        assert session_of(client, rig, user).status_code == 404  # nothing stored again
        assert counted() == before


# -- consent signals and opt-out -------------------------------------------------------------------


DECLINING = {"gpc": {"Sec-GPC": "1"}, "dnt": {"DNT": "1"}, "opt-out-list": {}}


@pytest.mark.parametrize("signal", list(DECLINING))
def test_declined_tracking_is_answered_200_and_stores_nothing(rig: Rig, signal: str) -> None:
    headers = DECLINING[signal]
    user = OPTED_OUT if signal == "opt-out-list" else str(uuid.uuid4())
    with httpx.Client(timeout=30) as client:
        response = client.post(
            f"{rig.url}/api/track/session",
            json={"userId": user, "sessionId": "s1", "deviceInfo": {"userAgent": "pytest"}},
            headers=headers,
        )
        assert response.status_code == 200
        assert response.json()["success"] is False
        batch = [movement(user, i) for i in range(5)]
        response = client.post(f"{rig.url}/api/track", json=batch, headers=headers)
        assert response.status_code == 200
        assert response.json() == {"success": True, "accepted": 0}
        assert export_lines(client, rig.url, user) == []
    rig.tracker.flush()
    assert holders(rig.root, traces(user)) == []
    assert ray.get(rig.tracker.scheduler.get_alarm.remote(user)) is None


@pytest.mark.parametrize("signal", ["gpc", "dnt"])
def test_a_declining_request_is_answered_so_before_it_is_read_authorized_or_limited(
    rig: Rig, signal: str
) -> None:
    headers = DECLINING[signal]
    # Malformed, for a user who needs a token and has none, and past a burst of 2 requests.
    bad = movement("someone@example.com", 0) | {"event": "teleport"}
    app = build_app(rig.tracker, rig.config.replace(rate_limit=0.2))
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            tracked = client.post("/api/track", json=bad, headers=headers)
            assert tracked.status_code == 200, tracked.text
            assert tracked.json() == {"success": True, "accepted": 0}
            session = client.post(
                "/api/track/session",
                content=b"{not json",
                headers={**headers, "Content-Type": "application/json"},
            )
            assert session.status_code == 200, session.text
            assert session.json() == {"success": False, "declined": True}
    with httpx.Client(timeout=30) as admin:
        assert export_lines(admin, rig.url, "someone@example.com") == []


# -- client addresses ------------------------------------------------------------------------------


def test_client_ip_addresses_are_never_stored(rig: Rig) -> None:
    user = str(uuid.uuid4())
    transport = httpx.HTTPTransport(local_address=CLIENT_IP)
    with httpx.Client(timeout=30, transport=transport) as client:
        visit(client, rig.url, user, 20)
    assert CLIENT_IP in rig.clients  # the app did see this address
    rig.tracker.flush()
    wait_for(lambda: aggregate_persisted_with(rig, user), timeout_s=30, interval_s=0.2)
    assert holders(rig.root, traces(user))  # the visit is stored...
    assert holders(rig.root, [CLIENT_IP.encode()]) == []  # ... its address is not
