"""Object storage: one small async interface, opened by URL.

- `file://path` -> `FileStorage`: plain files, written to a temporary name, fsynced, then
  published by rename (overwrite) or hard link (create-only), and the directory fsynced, so an
  acknowledged write survives a crash of the process or the machine. obstore's local store does
  not fsync, which is why local files have their own small implementation. Every file under
  the root whose name does not start with "." is an object, including the journal's frames
  files (`tracker.filelog`), which the journal appends to in place through `FileStorage.path`.
- anything else (`s3://bucket/prefix`, `gs://`, `az://`, `memory://`) -> `ObstoreStorage` over
  obstore, with endpoint and credentials from the usual environment variables (`AWS_*`).

Both give the two conditional writes the journal needs for fencing: create-only
(`if_absent=True`) and replace-if-unchanged (`if_match=etag`); `put_fenced` adds the journal's
check that no newer owner exists once a write has landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeGuard
from urllib.parse import urlparse

from tracker.errors import ConfigError, Fenced, StorageUnavailable


class ObjectExists(StorageUnavailable):
    """A create-only write found the key already taken."""


class PreconditionFailed(StorageUnavailable):
    """A replace-if-unchanged write found the object changed (or gone)."""


class ObjectMissing(KeyError):
    """No object under this key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified_s: float


class Storage(Protocol):
    """What the tracker needs from object storage, and nothing more."""

    url: str

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        """Write `data`; return the new ETag. Raise ObjectExists / PreconditionFailed."""
        ...

    async def get(self, key: str) -> tuple[bytes, str]:
        """Return (data, etag), or raise ObjectMissing."""
        ...

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object under the folder `prefix` (whole path segments), sorted by key."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete these keys; missing ones are fine."""
        ...

    async def delete_folder(self, prefix: str) -> int:
        """Delete everything under the folder `prefix`, and the folder: its objects and
        whatever interrupted writes left there. Return how many objects were deleted.
        For erasure: no write into the folder may be under way."""
        ...


def open_storage(url: str) -> Storage:
    """Open the storage named by `url` (`file://...`, `s3://...`, `memory://`, ...)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStorage(url)
    if not parsed.scheme:
        raise ConfigError(f"TRACKER_STORAGE={url!r}: expected a URL with a scheme")
    return ObstoreStorage(url)


def local_root(url: str) -> Path:
    """`file://./data` -> ./data (relative to the working directory); `file:///x` -> /x."""
    parsed = urlparse(url)
    return Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)


def local_path(storage_url: str) -> Path | None:
    """The directory of a `file://` storage URL (relative to the working directory unless
    absolute: `file://./data` -> ./data, `file:///abs` -> /abs); None for any other scheme."""
    if urlparse(storage_url).scheme != "file":
        return None
    return local_root(storage_url)


async def get_if_any(storage: Storage, key: str) -> tuple[bytes, str] | None:
    """`storage.get(key)`, or None when there is no such object."""
    try:
        return await storage.get(key)
    except ObjectMissing:
        return None


async def put_fenced(storage: Storage, key: str, data: bytes, fence_key: str) -> str:
    """Create `key` (create-only), then check that `fence_key` does not exist; return the ETag.

    Raises ObjectExists if `key` is taken, and `Fenced` if the fence object exists once `key`
    has been written: the write landed but must not count, and the caller deletes it.
    """
    etag = await storage.put(key, data, if_absent=True)
    try:
        await storage.get(fence_key)
    except ObjectMissing:
        return etag
    raise Fenced(f"{fence_key} exists")


@dataclass(frozen=True)
class Put:
    """One write of `put_all`, with `put`'s conditions."""

    key: str
    data: bytes
    if_absent: bool = False
    if_match: str | None = None


async def put_all(storage: Storage, puts: Sequence[Put]) -> list[str | Exception]:
    """Make these writes, concurrently; return each one's ETag or error, in order.

    For a group of a compaction's chunks or snapshots (the host sizes the groups and how many
    are in flight). On file storage the group is one thread hop, its files written one after
    another, each synced on its own: a hop per write cost 0.3-0.4 ms of CPU, about as much as
    the write. Elsewhere, and for a `FileStorage` whose `put` is overridden (a wrapper that
    must see every write), each goes through `put`, at most `PUT_CONCURRENCY` at a time.
    """
    if _plain_files(storage, "put"):
        return await asyncio.to_thread(storage.put_each, puts)
    semaphore = asyncio.Semaphore(PUT_CONCURRENCY)

    async def one(put: Put) -> str:
        async with semaphore:
            return await storage.put(
                put.key, put.data, if_absent=put.if_absent, if_match=put.if_match
            )

    results = await asyncio.gather(*(one(p) for p in puts), return_exceptions=True)
    return [_outcome(r) for r in results]


def _plain_files(storage: Storage, *methods: str) -> TypeGuard[FileStorage]:
    """Whether `storage` is a `FileStorage` whose `methods` are its own: then several calls
    may be made in one thread hop. A subclass overriding one (a wrapper that must see every
    call) gets each call through it."""
    return isinstance(storage, FileStorage) and all(
        getattr(type(storage), name) is getattr(FileStorage, name) for name in methods
    )


def _outcome(result: str | BaseException) -> str | Exception:
    if isinstance(result, Exception):
        return result
    if isinstance(result, BaseException):  # cancelled, interrupted: not a write's outcome
        raise result
    return result


PUT_CONCURRENCY = 32
# Reads `read_tail` has in flight at once (a user's chunks past their snapshot are few: a
# snapshot is written once they add up to the user's live state).
GET_CONCURRENCY = 16

# `read_tail`'s choice of the listed objects to read, given the checkpoint's data (None when
# there is no checkpoint) and the listing.
Pick = Callable[[bytes | None, list[ObjectInfo]], list[ObjectInfo]]


async def read_tail(
    storage: Storage, key: str | None, prefix: str, pick: Pick
) -> tuple[tuple[bytes, str] | None, list[ObjectInfo], list[tuple[ObjectInfo, bytes]]]:
    """A checkpoint and what was logged after it: read `key` (None when it is missing, or not
    asked for), list `prefix`, then read the listed objects `pick` chooses. Returns the
    checkpoint's data and ETag, the listing, and the picked objects' data in `pick`'s order.

    For a returning user's activation (their snapshot, then their history chunks past it).
    On file storage it is one thread hop: the three hops it took before cost 0.9 ms, where
    the reads themselves take 0.1. Elsewhere, and for a `FileStorage` whose reads are
    overridden, the checkpoint and the listing are asked for together, then the picked
    objects, at most `GET_CONCURRENCY` at a time: a round trip each on S3.
    """
    if _plain_files(storage, "get", "list_objects"):
        return await asyncio.to_thread(storage.read_tail_each, key, prefix, pick)
    try:
        return await _read_tail(storage, key, prefix, pick)
    except ObjectMissing as exc:
        raise _gone(exc) from None


async def _read_tail(
    storage: Storage, key: str | None, prefix: str, pick: Pick
) -> tuple[tuple[bytes, str] | None, list[ObjectInfo], list[tuple[ObjectInfo, bytes]]]:
    found, listed = await asyncio.gather(
        get_if_any(storage, key) if key is not None else _nothing(),
        storage.list_objects(prefix),
    )
    picked = pick(None if found is None else found[0], listed)
    semaphore = asyncio.Semaphore(GET_CONCURRENCY)

    async def one(info: ObjectInfo) -> tuple[ObjectInfo, bytes]:
        async with semaphore:
            data, _ = await storage.get(info.key)
            return info, data

    return found, listed, list(await asyncio.gather(*(one(info) for info in picked)))


async def _nothing() -> None:
    return None


def _gone(exc: ObjectMissing) -> StorageUnavailable:
    # Deleted between the listing and the read (an erasure, retention): the caller may try
    # again, and will not find it listed.
    return StorageUnavailable(f"{exc.args[0]} was deleted while it was read; try again")


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise ValueError(f"unsafe storage key {key!r}")


class FileStorage:
    """Local files with fsync; see the module docstring for the write protocol."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = local_root(url).resolve()

    def path(self, key: str) -> str:
        """The file holding `key` (which is checked to stay under the root)."""
        _check_key(key)
        return f"{self.root}/{key}"

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        return await asyncio.to_thread(self._put, key, data, if_absent, if_match)

    def put_each(self, puts: Sequence[Put]) -> list[str | Exception]:
        """`put_all`'s writes, one after another in the calling thread (blocking)."""
        results: list[str | Exception] = []
        for put in puts:
            try:
                results.append(self._put(put.key, put.data, put.if_absent, put.if_match))
            except Exception as exc:  # this write's outcome; the others go on
                results.append(exc)
        return results

    def _put(self, key: str, data: bytes, if_absent: bool, if_match: str | None) -> str:
        folder, name = os.path.split(self.path(key))
        try:
            # One descriptor of the folder serves the temporary file, the publishing, the
            # lock and the folder's fsync: no path is looked up twice.
            dir_fd, fd, tmp = self._temporary(folder)
            try:
                try:
                    try:
                        write_all(fd, data)
                        os.fsync(fd)
                        # Publishing keeps the inode, size and mtime: the ETag is known already.
                        etag = _stat_etag(os.fstat(fd))
                    finally:
                        os.close(fd)
                    if if_absent:
                        try:
                            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                        except FileExistsError:
                            raise ObjectExists(f"{key} already exists") from None
                    else:
                        if if_match is not None:
                            # The folder itself is locked (until closed): a lock file would
                            # keep an emptied folder from going.
                            fcntl.flock(dir_fd, fcntl.LOCK_EX)
                            if _file_etag(name, dir_fd) != if_match:
                                raise PreconditionFailed(f"{key} changed since it was read")
                        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                finally:
                    # Also when the write failed (a full disk): a hidden partial file would
                    # outlive an erasure of the folder's objects, and keep the folder.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp, dir_fd=dir_fd)
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return etag
        except StorageUnavailable:
            raise
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc.strerror or exc}") from exc

    @staticmethod
    def _temporary(folder: str) -> tuple[int, int, str]:
        """Open `folder` and create a temporary file in it: (folder fd, file fd, file name).
        The folder is made only when missing (again, if a delete removed it as empty in
        between, even after it was opened)."""
        attempts = 3
        while True:
            tmp = f".tmp-{uuid.uuid4().hex}"
            try:
                dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                    return dir_fd, os.open(tmp, flags, 0o600, dir_fd=dir_fd), tmp
                except BaseException:
                    os.close(dir_fd)
                    raise
            except FileNotFoundError:
                attempts -= 1
                if not attempts:
                    raise
                with contextlib.suppress(FileNotFoundError):  # a parent pruned meanwhile
                    make_folders(folder)

    async def get(self, key: str) -> tuple[bytes, str]:
        return await asyncio.to_thread(self._get, key)

    def _get(self, key: str) -> tuple[bytes, str]:
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                etag = _stat_etag(os.fstat(f.fileno()))
                return f.read(), etag
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc.strerror or exc}") from exc

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[ObjectInfo]:
        # `os.scandir` walked by hand: `os.walk` and `Path` cost 5x as much for a user's few
        # chunks, and a returning user's activation waits for this listing.
        found: list[ObjectInfo] = []
        folders = [(self.path(prefix) if prefix else str(self.root), prefix)]
        while folders:
            folder, key = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                # A missing folder is empty (so is one deleted while listed), and so is a
                # "folder" under an object's key: S3 lists nothing under it either.
                continue
            except OSError as exc:
                # One that cannot be read must not look empty: its objects exist.
                raise StorageUnavailable(f"cannot list {prefix}: {exc.strerror or exc}") from exc
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                name = f"{key}/{entry.name}" if key else entry.name
                try:
                    if entry.is_dir():
                        if not entry.is_symlink():
                            folders.append((entry.path, name))
                        continue
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # deleted since the folder was read
                except OSError as exc:
                    raise StorageUnavailable(f"cannot list {name}: {exc.strerror or exc}") from exc
                found.append(ObjectInfo(name, st.st_size, st.st_mtime))
        found.sort(key=lambda info: info.key)
        return found

    def read_tail_each(
        self, key: str | None, prefix: str, pick: Pick
    ) -> tuple[tuple[bytes, str] | None, list[ObjectInfo], list[tuple[ObjectInfo, bytes]]]:
        """`read_tail`'s reads, one after another in the calling thread (blocking)."""
        found = None
        if key is not None:
            with contextlib.suppress(ObjectMissing):
                found = self._get(key)
        listed = self._list(prefix)
        picked = pick(None if found is None else found[0], listed)
        try:
            return found, listed, [(info, self._get(info.key)[0]) for info in picked]
        except ObjectMissing as exc:
            raise _gone(exc) from None

    async def delete(self, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = Path(self.path(key))
            try:
                path.unlink()
                parents.add(path.parent)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageUnavailable(f"cannot delete {key}: {exc.strerror or exc}") from exc
        for parent in parents:
            with contextlib.suppress(FileNotFoundError):  # pruned by a concurrent delete
                fsync_dir(parent)
        self._prune(parents)

    async def delete_folder(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_folder, prefix)

    def _delete_folder(self, prefix: str) -> int:
        objects = self._list(prefix)
        self._delete([info.key for info in objects])
        # What a crash left: the temporary file of a write it interrupted (hidden, so not an
        # object, and not deleted above) holds the data, and its folder's name the user's.
        top = Path(self.path(prefix))
        if not top.is_dir():
            return len(objects)
        try:
            for folder, _dirs, files in os.walk(top, topdown=False):
                for name in files:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(folder)
            with contextlib.suppress(FileNotFoundError):  # pruned by a concurrent delete
                fsync_dir(top.parent)
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete {prefix}: {exc.strerror or exc}") from exc
        self._prune({top.parent})
        return len(objects)

    def _prune(self, folders: set[Path]) -> None:
        """Remove the folders a delete left empty, up to the root: a folder's name can be
        personal data too (a user's is a hash of their ID), and S3 keeps no empty folders."""
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()
                except OSError:  # not empty (or gone already)
                    break
                folder = folder.parent


def _stat_etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _file_etag(name: str, dir_fd: int) -> str | None:
    try:
        return _stat_etag(os.stat(name, dir_fd=dir_fd))
    except FileNotFoundError:
        return None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a write may be short (a full disk, a signal); the rest must follow
        view = view[os.write(fd, view) :]


def make_folders(path: str) -> None:
    """`os.makedirs(path, exist_ok=True)`, each folder it makes synced into its parent: a
    file synced into a new folder is lost in a crash of the machine with that folder, if the
    folder's own entry was not synced (and the log that held the same records is gone)."""
    missing = []
    path = os.path.abspath(path)  # the walk up ends at "/" (a relative one would not end)
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        fsync_dir(os.path.dirname(folder))


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ObstoreStorage:
    """S3 and the other object stores obstore speaks, configured from the environment."""

    def __init__(self, url: str) -> None:
        import obstore.store

        self.url = url
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT", "")
        client: Any = {"timeout": "10s", "connect_timeout": "3s"}
        if endpoint.startswith("http://"):
            client["allow_http"] = True
        retry: Any = {"max_retries": 2, "retry_timeout": timedelta(seconds=5)}
        try:
            self._store: Any = obstore.store.from_url(
                url, client_options=client, retry_config=retry
            )
        except Exception as exc:
            raise ConfigError(f"TRACKER_STORAGE={url!r}: {exc}") from exc

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        _check_key(key)
        mode: Any = "overwrite"
        if if_absent:
            mode = "create"
        elif if_match is not None:
            mode = {"e_tag": if_match}
        try:
            result = await obstore.put_async(self._store, key, data, mode=mode)
        except AlreadyExistsError:
            raise ObjectExists(f"{key} already exists") from None
        except PreconditionError:
            raise PreconditionFailed(f"{key} changed since it was read") from None
        except Exception as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc}") from exc
        return str(result.get("e_tag") or "")

    async def get(self, key: str) -> tuple[bytes, str]:
        import obstore
        from obstore.exceptions import NotFoundError

        _check_key(key)
        try:
            result = await obstore.get_async(self._store, key)
            data = await result.bytes_async()
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(key) from None
        except Exception as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        return bytes(data), str(result.meta.get("e_tag") or "")

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        import obstore

        try:
            found: list[ObjectInfo] = []
            stream = obstore.list(self._store, prefix=prefix)
            async for batch in stream:
                for meta in batch:
                    found.append(
                        ObjectInfo(
                            str(meta["path"]), int(meta["size"]), meta["last_modified"].timestamp()
                        )
                    )
        except Exception as exc:
            raise StorageUnavailable(f"cannot list {prefix}: {exc}") from exc
        found.sort(key=lambda info: info.key)
        return found

    async def delete(self, keys: list[str]) -> None:
        import obstore

        if not keys:
            return
        try:
            await obstore.delete_async(self._store, keys)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StorageUnavailable(f"cannot delete: {exc}") from exc

    async def delete_folder(self, prefix: str) -> int:
        # An object store keeps no folders, and a write that did not complete left nothing.
        objects = await self.list_objects(prefix)
        await self.delete([info.key for info in objects])
        return len(objects)
