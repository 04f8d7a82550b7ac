"""Object storage: one small async interface (`base.Storage`), opened by URL.

- `file://path` -> `FileStorage` (`files`): plain files, each write fsynced before it is
  acknowledged.
- anything else (`s3://bucket/prefix`, `gs://`, `az://`, `memory://`) -> `ObstoreStorage`
  (`object_store`) over obstore.

Both give the two conditional writes the journal needs for fencing: create-only
(`if_absent=True`) and replace-if-unchanged (`if_match=etag`); `put_fenced` adds the journal's
check that no newer owner exists once a write has landed.
"""

from __future__ import annotations

from urllib.parse import urlparse

from tracker.errors import ConfigError
from tracker.storage.base import (
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    Pick,
    PreconditionFailed,
    Put,
    Storage,
    get_if_any,
    put_fenced,
)
from tracker.storage.batch import GET_CONCURRENCY, PUT_CONCURRENCY, put_all, read_tail
from tracker.storage.files import (
    FileStorage,
    fsync_dir,
    local_path,
    local_root,
    make_folders,
    write_all,
)
from tracker.storage.object_store import ObstoreStorage

__all__ = [
    "GET_CONCURRENCY",
    "PUT_CONCURRENCY",
    "FileStorage",
    "ObjectExists",
    "ObjectInfo",
    "ObjectMissing",
    "ObstoreStorage",
    "Pick",
    "PreconditionFailed",
    "Put",
    "Storage",
    "fsync_dir",
    "get_if_any",
    "local_path",
    "local_root",
    "make_folders",
    "open_storage",
    "put_all",
    "put_fenced",
    "read_tail",
    "write_all",
]


def open_storage(url: str) -> Storage:
    """Open the storage named by `url` (`file://...`, `s3://...`, `memory://`, ...)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStorage(url)
    if not parsed.scheme:
        raise ConfigError(f"TRACKER_STORAGE={url!r}: expected a URL with a scheme")
    return ObstoreStorage(url)
