"""Where a Parquet export goes: a pyarrow filesystem and root for a destination URL, the
files of one export window, and rewriting the files that hold rows which must go.

A destination is a local folder (a path, or `file://path`) or `s3://bucket/prefix`, reached
with the same `AWS_*` settings as the tracker's own S3 storage (endpoint, region,
credentials). The export's files are named after their window (`window_tag`), so a window
exported again replaces exactly its own files.

Erasure and retention reach the export by rewriting files (`drop_rows`): each file that may
hold a row to drop (by its row groups' statistics) is read, and written again without those
rows under a hidden temporary name that then replaces it; a file left empty is deleted.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tracker.errors import ConfigError
from tracker.parquet.columns import MOVEMENTS, SESSIONS, Window
from tracker.storage import local_root

TABLES = {"movements": MOVEMENTS, "sessions": SESSIONS}
SUFFIX = ".parquet"


def open_destination(url: str, setting: str = "TRACKER_EXPORT_DEST") -> tuple[pafs.FileSystem, str]:
    """The filesystem and root folder of a destination (`setting` names it in errors)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        root = local_root(url) if parsed.scheme else os.path.expanduser(url)
        return pafs.LocalFileSystem(), os.path.abspath(root)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"{setting}={url!r}: expected s3://bucket/prefix")
        return _s3(), f"{parsed.netloc}{parsed.path}".rstrip("/")
    raise ConfigError(
        f"{setting}={url!r}: expected a local folder, file://path or s3://bucket/prefix"
    )


def _s3() -> pafs.S3FileSystem:
    """S3 as the tracker's storage reaches it: the `AWS_*` variables."""
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT") or None
    scheme = "https"
    if endpoint is not None:
        parsed = urlparse(endpoint)
        scheme = parsed.scheme or "https"
        endpoint = parsed.netloc or endpoint
    return pafs.S3FileSystem(
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        endpoint_override=endpoint,
        scheme=scheme,
    )


def window_tag(window: Window) -> str:
    """The name shared by the files of an export window: `all`, or its bounds in UTC
    (`20261207T0900Z-20261207T1000Z`), so that exporting it again replaces them."""
    if window.from_ms is None and window.to_ms is None:
        return "all"

    def stamp(ms: int | None) -> str:
        if ms is None:
            return "open"
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")

    return f"{stamp(window.from_ms)}-{stamp(window.to_ms)}"


def parquet_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """Every Parquet file of the export under `root` (both tables, every partition)."""
    found: list[str] = []
    for table in TABLES:
        selector = pafs.FileSelector(f"{root}/{table}", recursive=True, allow_not_found=True)
        found.extend(
            info.path
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(SUFFIX)
        )
    return sorted(found)


def delete_window(fs: pafs.FileSystem, root: str, tag: str) -> int:
    """Delete the files an earlier export of the window `tag` wrote; return how many."""
    doomed = [
        path for path in parquet_files(fs, root) if posixpath.basename(path).startswith(f"{tag}_")
    ]
    for path in doomed:
        fs.delete_file(path)
    return len(doomed)


# A file's test of whether it may hold rows to drop, from its Parquet metadata; and the mask
# of the rows to keep, over a table read from it.
MayHold = Callable[[pq.FileMetaData], bool]
Keep = Callable[[pa.Table], pa.ChunkedArray]


def drop_rows(fs: pafs.FileSystem, root: str, may_hold: MayHold, keep: Keep) -> int:
    """Rewrite every export file holding rows that `keep` drops, without them; delete a file
    left with none. Returns how many files were rewritten or deleted."""
    changed = 0
    for path in parquet_files(fs, root):
        with fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            if not may_hold(parquet.metadata):
                continue
            table = parquet.read()
        mask = keep(table)
        if pc.all(mask).as_py():
            continue
        kept = table.filter(mask)
        changed += 1
        if kept.num_rows == 0:
            fs.delete_file(path)
            continue
        folder, name = posixpath.split(path)
        temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        with fs.open_output_stream(temporary) as sink:
            pq.write_table(kept, sink)
        fs.move(temporary, path)
    return changed


def erase_user(fs: pafs.FileSystem, root: str, user_id: str) -> int:
    """Rewrite the export without any row of `user_id`; return how many files changed."""

    def may_hold(metadata: pq.FileMetaData) -> bool:
        return _may_hold(metadata, "userId", lambda low, high: low <= user_id <= high)

    return drop_rows(
        fs, root, may_hold, lambda table: pc.not_equal(table.column("userId"), user_id)
    )


def drop_before(fs: pafs.FileSystem, root: str, cutoff_ms: int) -> int:
    """Retention: rewrite the export without movements received, and sessions last active,
    before `cutoff_ms`; return how many files changed."""
    cutoff = pa.scalar(cutoff_ms, type=MOVEMENTS.field("receivedAt").type)

    def column(table: pa.Table | pq.FileMetaData) -> str:
        # A movements file has `receivedAt`, a sessions file `lastActivity`.
        return "receivedAt" if "receivedAt" in table.schema.names else "lastActivity"

    def may_hold(metadata: pq.FileMetaData) -> bool:
        return _may_hold(metadata, column(metadata), lambda low, _high: low < cutoff.value)

    return drop_rows(
        fs, root, may_hold, lambda table: pc.greater_equal(table.column(column(table)), cutoff)
    )


def _may_hold(metadata: pq.FileMetaData, name: str, test: Callable[..., bool]) -> bool:
    """Whether some row group's statistics of column `name` pass `test(min, max)`: a group
    without statistics may hold anything."""
    names = metadata.schema.names
    if name not in names:
        return False
    at = names.index(name)
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(at).statistics
        if stats is None or not stats.has_min_max:
            return True
        low, high = stats.min, stats.max
        if isinstance(low, datetime):
            low, high = _ms(low), _ms(high)
        if test(low, high):
            return True
    return False


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)
