"""The `tracker` command, run as a process: its help, its argument and configuration errors,
identity tokens minted with the configured or the stored secret, and a user's data exported
from a running cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from support import movement

from tracker.auth import verify_token
from tracker.errors import TrackerError
from tracker.storage import local_root

SECRET = "s" * 32


def tracker(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `tracker ARGS` with the `TRACKER_*` variables `env` (no others), and `RAY_ADDRESS`
    only if `env` gives it."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "RAY_ADDRESS"
    }
    return subprocess.run(
        [sys.executable, "-m", "tracker.cli", *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_names_every_command() -> None:
    done = tracker("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: tracker ")
    for command in ("serve", "token", "export", "export-parquet", "erase", "status", "predictions"):
        assert command in done.stdout


def test_a_missing_or_unknown_command_or_argument_is_an_error_naming_it() -> None:
    cases = [
        ((), "the following arguments are required: command"),
        (("track",), "invalid choice: 'track'"),
        (("token",), "the following arguments are required: user_id"),
        (("token", "alice", "--ttl-s", "a day"), "argument --ttl-s: invalid float value"),
        (("erase", "alice", "--force"), "unrecognized arguments: --force"),
        (("export-parquet",), "the following arguments are required: dest"),
    ]
    for args, message in cases:
        done = tracker(*args)
        assert done.returncode == 2, args
        assert message in done.stderr, (args, done.stderr)
        assert done.stdout == ""


def test_a_bad_setting_stops_the_command_with_its_name_and_value() -> None:
    done = tracker("token", "alice", TRACKER_HOSTS="0")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "tracker: TRACKER_HOSTS=0: must be at least 1\n"


def test_a_parquet_export_to_a_window_or_place_it_cannot_use_is_refused_naming_it() -> None:
    done = tracker("export-parquet", "out", "--from", "yesterday")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("tracker: --from='yesterday': expected an ISO 8601 date")
    done = tracker("export-parquet", "gs://bucket/x")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("tracker: DEST='gs://bucket/x': expected a local folder")


def test_a_token_is_minted_for_the_user_with_the_configured_secret_and_lifetime() -> None:
    before = time.time()
    done = tracker("token", "alice", "--ttl-s", "60", TRACKER_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert before + 59 <= verify_token(SECRET, "alice", token) <= time.time() + 61
    with pytest.raises(TrackerError):
        verify_token(SECRET, "bob", token)


def test_with_local_storage_and_no_secret_tokens_use_the_secret_stored_there(
    file_storage: str,
) -> None:
    first = tracker("token", "alice", TRACKER_STORAGE=file_storage)
    second = tracker("token", "alice", TRACKER_STORAGE=file_storage)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    secret = (local_root(file_storage) / ".secrets" / "secret").read_text().strip()
    for done in (first, second):
        assert verify_token(secret, "alice", done.stdout.strip()) > time.time()


def test_with_shared_storage_and_no_secret_no_token_is_minted() -> None:
    done = tracker("token", "alice", TRACKER_STORAGE="s3://bucket/prefix")
    assert (done.returncode, done.stdout) == (2, "")
    assert "TRACKER_SECRET" in done.stderr and "s3://" in done.stderr


def test_export_writes_a_users_history_from_the_running_cluster(
    make_tracker: Any, file_storage: str, tmp_path: Path
) -> None:
    t = make_tracker(storage=file_storage)
    user = t.user("alice")
    ray.get(user.create_session.remote("s1", None))
    assert ray.get(user.track_many.remote([movement(eventId=f"e{i}") for i in range(3)])) == 3
    output = tmp_path / "alice.ndjson"
    done = tracker(
        "export",
        "alice",
        "-o",
        str(output),
        RAY_ADDRESS=ray.get_runtime_context().gcs_address,
        TRACKER_NAMESPACE=t.config.namespace,
        TRACKER_STORAGE=file_storage,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    exported = [line["eventId"] for line in lines if line["type"] == "movement"]
    assert exported == ["e0", "e1", "e2"]


def test_predictions_evaluate_reports_both_models_from_the_running_cluster(
    make_tracker: Any, file_storage: str
) -> None:
    import asyncio

    from tracker.conversions.definitions import goal_from
    from tracker.conversions.store import DefinitionStore
    from tracker.storage import open_storage

    t = make_tracker(storage=file_storage)
    signup = goal_from({"match": {"event": "page_view", "path": "/signup"}})
    asyncio.run(DefinitionStore(open_storage(file_storage)).put_goal("signup", signup))
    start = int(time.time() * 1000) - 3_600_000
    for n in range(6):
        user = t.user(f"visitor-{n}")
        ray.get(user.create_session.remote("s1", None))
        paths = ["/", "/pricing", "/signup"] if n % 2 else ["/", "/blog"]
        views = [
            movement(f"visitor-{n}", event="page_view", at=start + n * 60_000 + i, data={"path": p})
            | {"eventId": f"e{i}"}
            for i, p in enumerate(paths)
        ]
        ray.get(user.track_many.remote(views))
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "TRACKER_NAMESPACE": t.config.namespace,
        "TRACKER_STORAGE": file_storage,
    }
    done = tracker("predictions", "evaluate", "--json", **env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["nextPage"]["train"] + found["nextPage"]["test"] == 9
    assert [goal["goal"] for goal in found["propensity"]] == ["signup"]
