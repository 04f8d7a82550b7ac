"""The Parquet export as Ray Data tasks: every user's stored history, read in shares spread
over the cluster, written as Hive-partitioned Parquet through a pyarrow filesystem.

The users are found by listing their folders in storage; each task reads a share of them with
the history reader (`history.stored_records`), turns them into Arrow tables
(`tracker.parquet.columns`) and Ray Data writes those, partitioned by day. The hosts are
flushed first (`flush`), so the histories hold every acknowledged event.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray

from tracker.codec import Record
from tracker.history import stored_records
from tracker.parquet.columns import MOVEMENTS, PARTITION, SESSIONS, Rows, Window, user_rows
from tracker.parquet.destination import delete_window, open_destination, window_tag
from tracker.storage import ObjectInfo, Storage, open_storage

USERS = "users"
# A user's chunk holds records received before it was written; a window's users are those
# with a chunk written since the window began, less this much for clocks that differ (the
# host's, which stamps records, and the storage's, which stamps objects).
CLOCK_SLACK_S = 600.0
# Users a task reads at most, and how many shares the export has at least per CPU.
SHARE_USERS = 500
SHARES_PER_CPU = 2
READS_IN_FLIGHT = 16


@dataclass(frozen=True)
class Exported:
    """What an export wrote: rows of each table, and files of an earlier run replaced."""

    movements: int
    sessions: int
    replaced: int

    def as_dict(self) -> dict[str, int]:
        return {"movements": self.movements, "sessions": self.sessions, "replaced": self.replaced}


def export_parquet(
    storage_url: str, dest: str, window: Window | None = None, *, progress: bool = False
) -> Exported:
    """Export the users' histories in `storage_url` to `dest` (a folder, `file://` or `s3://`
    URL): the movements received in `window` and the sessions begun in it (everything when
    None). The window's files of an earlier export are replaced. Runs on the connected Ray."""
    from ray.data import DataContext
    from ray.data.datasource import FilenameProvider

    window = window or Window()
    fs, root = open_destination(dest, "DEST")
    folders = asyncio.run(user_folders(open_storage(storage_url), window))
    tag = window_tag(window)
    replaced = delete_window(fs, root, tag)
    DataContext.get_current().enable_progress_bars = progress
    counts: dict[str, int] = {"movements": 0, "sessions": 0}
    if folders:
        parts = shares(folders, _cpus())
        users = ray.data.from_items([{"folders": s} for s in parts], override_num_blocks=len(parts))
        for table in counts:
            rows = users.map_batches(
                read_share,  # type: ignore[arg-type]  # Ray's type leaves out fn_kwargs
                fn_kwargs={"storage_url": storage_url, "window": window, "table": table},
                batch_size=1,
                batch_format="pyarrow",
            ).materialize()
            counts[table] = rows.count()
            if counts[table]:
                rows.write_parquet(
                    f"{root}/{table}",
                    filesystem=fs,
                    partition_cols=[PARTITION],
                    filename_provider=FilenameProvider(dataset_uuid=tag),
                )
    return Exported(counts["movements"], counts["sessions"], replaced)


def _cpus() -> int:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)))


async def user_folders(storage: Storage, window: Window) -> list[str]:
    """The folders of the users with history a window may hold: all, or (a window with a
    start) those with a chunk written since it began."""
    since_s = None if window.from_ms is None else window.from_ms / 1000 - CLOCK_SLACK_S
    found: set[str] = set()
    for info in await storage.list_objects(USERS):
        parts = info.key.split("/")
        if len(parts) >= 5 and parts[3] == "chunks" and _since(info, since_s):
            found.add("/".join(parts[:3]))
    return sorted(found)


def _since(info: ObjectInfo, since_s: float | None) -> bool:
    return since_s is None or info.last_modified_s >= since_s


def shares(folders: list[str], cpus: int) -> list[list[str]]:
    """The folders dealt into shares: enough that every CPU has some, of at most
    `SHARE_USERS` users each."""
    count = max(math.ceil(len(folders) / SHARE_USERS), cpus * SHARES_PER_CPU)
    count = max(1, min(count, len(folders)))
    return [folders[at::count] for at in range(count)]


def read_share(batch: pa.Table, storage_url: str, window: Window, table: str) -> pa.Table:
    """A Ray Data task: the rows of `table` ("movements" or "sessions") of the users of a
    share (the batch's `folders`)."""
    folders = [folder for share in batch.column("folders").to_pylist() for folder in share]
    histories = asyncio.run(_read(open_storage(storage_url), folders))
    movements, sessions = Rows(MOVEMENTS), Rows(SESSIONS)
    for user_id, records in histories:
        if user_id is not None:
            user_rows(user_id, records, window, movements, sessions)
    return movements.table("timestamp") if table == "movements" else sessions.table("start")


async def _read(storage: Storage, folders: Iterable[str]) -> list[tuple[str | None, list[Record]]]:
    semaphore = asyncio.Semaphore(READS_IN_FLIGHT)

    async def one(folder: str) -> tuple[str | None, list[Record]]:
        async with semaphore:
            return await stored_records(storage, folder)

    return list(await asyncio.gather(*(one(folder) for folder in folders)))


def run_export(storage_url: str, dest: str, window: Window) -> dict[str, Any]:
    """`export_parquet` as a task of its own (the scheduler's hourly export): Ray Data's
    driver runs in the task, not in the scheduler's event loop."""
    return export_parquet(storage_url, dest, window).as_dict()


export_task = ray.remote(num_cpus=0, max_retries=0)(run_export)
