"""Local files as object storage, with fsync: each object written to a temporary name,
synced, then published by rename (overwrite) or hard link (create-only), and the folder
synced, so an acknowledged write survives a crash of the process or the machine. obstore's
local store does not fsync, which is why local files have their own implementation. Every
file under the root whose name does not start with "." is an object, including the
journal's frames files (`tracker.filelog`), which the journal appends to in place through
`FileStorage.path`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from tracker.errors import StorageUnavailable
from tracker.storage.base import (
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    Pick,
    PreconditionFailed,
    Put,
    check_key,
    gone,
)


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


class FileStorage:
    """Local files with fsync; see the module docstring for the write protocol."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = local_root(url).resolve()

    def path(self, key: str) -> str:
        """The file holding `key` (which is checked to stay under the root)."""
        check_key(key)
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
            raise gone(exc) from None

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
