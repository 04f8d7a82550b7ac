"""The Parquet export as Ray Data tasks: every user's stored history, read in shares spread
over the cluster, written as Hive-partitioned Parquet through a pyarrow filesystem.

The users are found by listing their folders in storage; each task reads a share of them with
the history reader (`history.stored_records`), turns them into the Arrow tables of both
tables (`tracker.parquet.columns`), writes those partitioned by day, and yields how many rows
it wrote: one pass over the histories for both tables, and no copy of the rows through Ray's
object store. The caller flushes the hosts first, so that the histories hold every
acknowledged event.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import ray

from tracker.codec import Record
from tracker.history import stored_records
from tracker.parquet.columns import PARTITION, Window, movements, sessions, user_rows
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

    window = window or Window()
    fs, root = open_destination(dest, "DEST")
    folders = asyncio.run(user_folders(open_storage(storage_url), window))
    target = Target(fs, root, f"{window_tag(window)}_{uuid.uuid4().hex[:12]}")
    replaced = delete_window(fs, root, window_tag(window))
    if not folders:
        return Exported(0, 0, replaced)
    DataContext.get_current().enable_progress_bars = progress
    parts = shares(folders, _cpus())
    items = [{"share": at, "folders": part} for at, part in enumerate(parts)]
    written = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(
            write_share,  # type: ignore[arg-type]  # Ray's type leaves out fn_kwargs
            fn_kwargs={"storage_url": storage_url, "window": window, "target": target},
            batch_size=1,
            batch_format="pyarrow",
        )
        .take_all()
    )
    return Exported(
        sum(int(row["movements"]) for row in written),
        sum(int(row["sessions"]) for row in written),
        replaced,
    )


@dataclass(frozen=True)
class Target:
    """Where an export's tasks write: the filesystem, the root, and the files' name prefix
    (the window's tag and this run's)."""

    fs: pafs.FileSystem
    root: str
    prefix: str

    def write(self, table: str, rows: pa.Table, share: int) -> None:
        """Write a share's rows of `table`, Hive-partitioned by day."""
        pads.write_dataset(
            rows,
            f"{self.root}/{table}",
            format="parquet",
            partitioning=[PARTITION],
            partitioning_flavor="hive",
            basename_template=f"{self.prefix}_{share:05d}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            filesystem=self.fs,
        )


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


def write_share(batch: pa.Table, storage_url: str, window: Window, target: Target) -> pa.Table:
    """A Ray Data task: read the histories of the users of a share (the batch's `folders`)
    and write their rows of both tables; returns how many rows it wrote of each."""
    counts: dict[str, list[int]] = {"movements": [], "sessions": []}
    for share, folders in zip(
        batch.column("share").to_pylist(), batch.column("folders").to_pylist(), strict=True
    ):
        histories = asyncio.run(_read(open_storage(storage_url), folders))
        rows = {"movements": movements(), "sessions": sessions()}
        for user_id, records in histories:
            if user_id is not None:
                user_rows(user_id, records, window, rows["movements"], rows["sessions"])
        for table, made in rows.items():
            if len(made):
                target.write(table, made.table(), share)
            counts[table].append(len(made))
    return pa.table(counts)


async def _read(storage: Storage, folders: Iterable[str]) -> list[tuple[str | None, list[Record]]]:
    semaphore = asyncio.Semaphore(READS_IN_FLIGHT)

    async def one(folder: str) -> tuple[str | None, list[Record]]:
        async with semaphore:
            return await stored_records(storage, folder)

    return list(await asyncio.gather(*(one(folder) for folder in folders)))


def run_export(storage_url: str, dest: str, window: Window) -> dict[str, int]:
    """`export_parquet` as a task of its own (the scheduler's hourly export): Ray Data's
    driver runs in the task, not in the scheduler's event loop."""
    return export_parquet(storage_url, dest, window).as_dict()


export_task = ray.remote(num_cpus=0, max_retries=0)(run_export)
