"""The Parquet export on the test session's Ray: `tracker export-parquet` run as a process,
read back with DuckDB, Ray Data and the snippets of docs/export.md, and compared event for
event with the NDJSON export; an export to S3 (the moto server); the scheduler's hourly export,
and an erasure that leaves no trace of the user in any Parquet file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import ray
from conftest import S3_BUCKET, file_url
from support import movement, now_ms

from tracker.api import Tracker, connect, shutdown
from tracker.config import Config
from tracker.parquet.columns import Window
from tracker.parquet.destination import open_destination, parquet_files, window_tag
from tracker.parquet.hours import HOUR_MS
from tracker.parquet.job import export_parquet

DOC = Path(__file__).parent.parent / "docs" / "export.md"
USERS = ("alice", "bob")


def history(user: str) -> list[dict[str, Any]]:
    """A few movements of each kind, in two sessions; a page view carries metadata."""
    at = now_ms() - 60_000
    return [
        movement(user, "s1", at=at, event="page_view", eventId=f"{user}-0",
                 data={"path": "/", "metadata": {"title": "Home", "tags": ["a", 1]}}),
        movement(user, "s1", at=at + 1, eventId=f"{user}-1"),
        movement(user, "s1", at=at + 2, event="scroll", eventId=f"{user}-2",
                 data={"path": "/", "scrollX": 0, "scrollY": 640.5}),
        movement(user, "s2", at=at + 3, event="page_view", eventId=f"{user}-3",
                 data={"path": "/pricing"}),
        movement(user, "s2", at=at + 4, event="hover", eventId=f"{user}-4",
                 data={"path": "/pricing", "element": "a#buy", "duration": 120}),
    ]  # fmt: skip


def track(t: Tracker, users: tuple[str, ...] = USERS) -> None:
    for user in users:
        handle = t.user(user)
        ray.get(handle.create_session.remote("s1", {"userAgent": "Mozilla/5.0 (X11; Linux)"}))
        assert ray.get(handle.track_many.remote(history(user))) == 5


def cli(t: Tracker, *args: str) -> subprocess.CompletedProcess[str]:
    """`tracker ARGS` against the test session's cluster and `t`'s tracker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env |= {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "TRACKER_NAMESPACE": t.config.namespace,
        "TRACKER_STORAGE": t.config.storage,
    }
    return subprocess.run(
        [sys.executable, "-m", "tracker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class Exported:
    tracker: Tracker
    dest: Path
    answer: dict[str, Any]
    ndjson: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def exported(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """Two users' events, acknowledged but not flushed (they are in the host's journal),
    exported by `tracker export-parquet`; and their NDJSON export (`tracker export`)."""
    root = tmp_path_factory.mktemp("parquet")
    config = Config.from_env(
        {}, storage=file_url(root / "data"), namespace=f"t-{uuid.uuid4().hex[:12]}"
    )
    t = connect(config=config)
    try:
        track(t)
        dest = root / "export"
        done = cli(t, "export-parquet", str(dest))
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        out = root / "alice.ndjson"
        done = cli(t, "export", "alice", "-o", str(out))
        assert done.returncode == 0, done.stderr
        ndjson = {"alice": [json.loads(line) for line in out.read_text().splitlines()]}
        # bob's as the command would write it (a process of its own costs seconds).
        ndjson["bob"] = json.loads(json.dumps(ray.get(t.user("bob").export.remote())))
        yield Exported(t, dest, answer, ndjson)
    finally:
        shutdown(config)


def ndjson_movements(exported: Exported) -> list[tuple[Any, ...]]:
    rows = []
    for lines in exported.ndjson.values():
        for line in lines:
            if line["type"] == "movement":
                data = line.get("data", {})
                rows.append(
                    (
                        line["userId"],
                        line["sessionId"],
                        line["eventId"],
                        line["timestamp"],
                        line["receivedAt"],
                        line["event"],
                        data.get("path"),
                        data.get("element"),
                        data.get("coordinates", {}).get("x"),
                        data.get("scrollY"),
                        data.get("duration"),
                        data.get("metadata"),
                    )
                )
    return sorted(rows, key=lambda row: row[2])


def test_the_command_exports_every_acknowledged_event_as_the_ndjson_export_holds_it(
    exported: Exported,
) -> None:
    assert exported.answer == {
        "dest": str(exported.dest),
        "movements": 10,
        "sessions": 4,
        "replaced": 0,
    }
    found = duckdb.sql(
        f"""
        SELECT userId, sessionId, eventId, epoch_ms(timestamp), epoch_ms(receivedAt), event,
               path, element, x, scrollY, duration, metadata
        FROM read_parquet('{exported.dest}/movements/*/*.parquet', hive_partitioning = true)
        ORDER BY eventId
        """
    ).fetchall()
    parquet = [(*row[:11], None if row[11] is None else json.loads(row[11])) for row in found]
    assert parquet == ndjson_movements(exported)
    assert len(parquet) == 10


def test_sessions_are_exported_as_the_ndjson_export_holds_them(exported: Exported) -> None:
    found = duckdb.sql(
        f"""
        SELECT userId, sessionId, epoch_ms(start), epoch_ms(lastActivity), userAgent,
               strftime(start, '%Y-%m-%d') = CAST(date AS VARCHAR)
        FROM read_parquet('{exported.dest}/sessions/*/*.parquet', hive_partitioning = true)
        ORDER BY userId, sessionId
        """
    ).fetchall()
    expected = sorted(
        (
            line["userId"],
            line["sessionId"],
            line["startTime"],
            line["lastActivity"],
            line.get("deviceInfo", {}).get("userAgent"),
            True,
        )
        for lines in exported.ndjson.values()
        for line in lines
        if line["type"] == "session"
    )
    assert found == expected


def test_ray_data_reads_the_export_back_partitioned_by_day(exported: Exported) -> None:
    rows = ray.data.read_parquet(str(exported.dest / "movements")).take_all()
    assert sorted(row["eventId"] for row in rows) == [row[2] for row in ndjson_movements(exported)]
    for row in rows:
        assert row["date"] == row["timestamp"].strftime("%Y-%m-%d")
    days = {p.name for p in (exported.dest / "movements").iterdir()}
    assert days == {f"date={row['date']}" for row in rows}


def doc_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_docs_duckdb_query_and_pandas_snippet_run_on_the_export(exported: Exported) -> None:
    snippets = doc_snippets()
    assert len(snippets) == 2
    scope: dict[str, Any] = {"dest": str(exported.dest)}
    for snippet in snippets:
        exec(snippet, scope)
    assert scope["pages"] == [("/", 2, 2), ("/pricing", 2, 2)]
    click_days = {
        datetime.fromtimestamp(row[3] / 1000, UTC).strftime("%Y-%m-%d")
        for row in ndjson_movements(exported)
        if row[5] == "click"
    }
    assert scope["clicks_per_day"].to_dict() == dict.fromkeys(click_days, 2)


def test_an_export_to_s3_reads_histories_from_s3_and_a_window_exported_again_replaces_its_files(
    make_tracker: Any, s3_storage: str
) -> None:
    t = make_tracker(storage=s3_storage)
    before = now_ms()
    track(t, ("carol",))
    t.flush()
    dest = f"s3://{S3_BUCKET}/export-{uuid.uuid4().hex}"
    window = Window(before - HOUR_MS, now_ms() + 1)
    first = export_parquet(t.config.storage, dest, window)
    assert (first.movements, first.sessions, first.replaced) == (5, 2, 0)
    fs, root = open_destination(dest)
    files = parquet_files(fs, root)
    assert files and all(Path(f).name.startswith(f"{window_tag(window)}_") for f in files)
    again = export_parquet(t.config.storage, dest, window)
    assert (again.movements, again.replaced) == (5, len(files))
    rows = ray.data.read_parquet(f"{root}/movements", filesystem=fs).take_all()
    assert sorted(row["eventId"] for row in rows) == [f"carol-{i}" for i in range(5)]


def test_the_scheduler_exports_the_hour_that_ended_and_erasure_and_retention_rewrite_it(
    make_tracker: Any, tmp_path: Path
) -> None:
    dest = tmp_path / "hourly"
    t = make_tracker(storage=file_url(tmp_path / "data"), export_dest=str(dest))
    first_hour = now_ms() // HOUR_MS * HOUR_MS
    track(t)
    last_hour = now_ms() // HOUR_MS * HOUR_MS
    exported: list[int] = []
    for hour in sorted({first_hour, last_hour}):  # the test may straddle an hour's end
        exported += ray.get(t.scheduler.export_due.remote(hour + HOUR_MS + 1000))
    assert exported == sorted({first_hour, last_hour})
    assert ray.get(t.scheduler.export_due.remote(last_hour + HOUR_MS + 2000)) == []

    def users() -> list[tuple[str, int]]:
        return duckdb.sql(
            f"""SELECT userId, count(*) FROM read_parquet('{dest}/movements/*/*.parquet')
            GROUP BY userId ORDER BY userId"""
        ).fetchall()

    assert users() == [("alice", 5), ("bob", 5)]
    files = [Path(p) for p in parquet_files(*open_destination(str(dest)))]
    assert files and all(re.match(r"\d{8}T\d{6}Z-\d{8}T\d{6}Z_", f.name) for f in files)

    ray.get(t.user("alice").erase.remote())
    assert users() == [("bob", 5)]
    for path in dest.rglob("*"):
        if path.is_file():
            assert b"alice" not in path.read_bytes(), path
    for path in dest.rglob("*.parquet"):
        assert set(pq.read_table(path).column("userId").to_pylist()) == {"bob"}

    # Retention reaches the export after the next hour's run: here, a second of it.
    connect(config=t.config.replace(retention_s=1.0))
    next_run = last_hour + 2 * HOUR_MS + 1000
    assert ray.get(t.scheduler.export_due.remote(next_run)) == [last_hour + HOUR_MS]
    assert list(dest.rglob("*.parquet")) == []
