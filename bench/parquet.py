"""The Parquet export (`tracker export-parquet`) beside a DuckDB `COPY` of the same events.

The tracker takes 1,000,000 events (100,000 with `--quick`) of 1,000 users through its hosts,
which flush them into the users' histories; that part is not timed. The same histories are
written as NDJSON, as `tracker export` writes each user's. Then, timed: the export of every
user's history to Parquet, partitioned by day (Ray Data tasks reading the histories, as the
command runs them), and DuckDB's `COPY` of the NDJSON file to one Parquet file. The row is the
export's events/s over DuckDB's.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
import ray

from bench.cluster import bench_config, ray_session, storage_root, temp_storage
from bench.events import Movements, user_ids
from bench.report import Row
from tracker.api import Tracker, connect, shutdown
from tracker.history import stored_records
from tracker.parquet.columns import Window
from tracker.parquet.job import export_parquet, user_folders
from tracker.schema import MAX_BATCH_EVENTS
from tracker.storage import open_storage
from tracker.user_tracker import export_lines

USERS = 1000
IN_FLIGHT = 16


def run(quick: bool) -> list[Row]:
    events = 100_000 if quick else 1_000_000
    with ray_session(), temp_storage() as storage:
        config = bench_config(storage)
        t = connect(config=config)
        work = Path(tempfile.mkdtemp(prefix="tracker-bench-parquet-"))
        try:
            ingest(t, events)
            t.flush()
            lines = write_ndjson(storage, work / "events.ndjson")
            began = time.perf_counter()
            exported = export_parquet(storage, str(work / "export"))
            export_s = time.perf_counter() - began
            duckdb_s = duckdb_copy(work / "events.ndjson", work / "duckdb.parquet")
        finally:
            shutdown(config)
            shutil.rmtree(work, ignore_errors=True)
    assert exported.movements == events == lines, (exported, events, lines)
    return [
        Row(
            name="parquet: export of every history, events/s",
            value=events / export_s,
            unit="events/s",
            baseline="DuckDB COPY of the same events as NDJSON to Parquet, same run",
            baseline_value=events / duckdb_s,
            details={
                "events": events,
                "users": USERS,
                "sessions": exported.sessions,
                "export_s": round(export_s, 2),
                "duckdb_s": round(duckdb_s, 2),
                "storage": storage_root(storage).name,
            },
        )
    ]


def ingest(t: Tracker, events: int) -> None:
    """`events` movements of `USERS` users, in the largest batches a call takes."""
    made = Movements()
    users = user_ids(USERS)
    per_user = events // USERS
    calls = [
        (user, min(MAX_BATCH_EVENTS, per_user - sent))
        for user in users
        for sent in range(0, per_user, MAX_BATCH_EVENTS)
    ]
    inflight: list[ray.ObjectRef[int]] = []
    for user, count in calls:
        if len(inflight) >= IN_FLIGHT:
            done, inflight = ray.wait(inflight, num_returns=IN_FLIGHT // 2)
            ray.get(done)
        inflight.append(t.user(user).track_many.remote(made.batch(user, count)))
    ray.get(inflight)


def write_ndjson(storage: str, path: Path) -> int:
    """Every user's history as `tracker export` writes it; returns the movements written."""
    encoder = msgspec.json.Encoder()
    movements = 0

    async def histories() -> list[tuple[str | None, list[object]]]:
        opened = open_storage(storage)
        folders = await user_folders(opened, Window())
        return [await stored_records(opened, folder) for folder in folders]

    with path.open("wb") as out:
        for user_id, records in asyncio.run(histories()):
            if user_id is None:
                continue
            for line in export_lines(user_id, records):
                if line["type"] == "movement":
                    out.write(encoder.encode(line) + b"\n")
                    movements += 1
    return movements


def duckdb_copy(source: Path, target: Path) -> float:
    """Seconds DuckDB takes to copy the NDJSON file `source` to the Parquet file `target`."""
    import duckdb

    connection = duckdb.connect()
    began = time.perf_counter()
    connection.execute(
        f"COPY (SELECT * FROM read_ndjson_auto('{source}')) TO '{target}' (FORMAT parquet)"
    )
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed
