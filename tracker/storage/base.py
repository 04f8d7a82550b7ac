"""What object storage is to the tracker: the interface every backend implements, its
errors and records, and the checks and conditional writes built on that interface alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tracker.errors import Fenced, StorageUnavailable


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


@dataclass(frozen=True)
class Put:
    """One write of `put_all`, with `put`'s conditions."""

    key: str
    data: bytes
    if_absent: bool = False
    if_match: str | None = None


# `read_tail`'s choice of the listed objects to read, given the checkpoint's data (None when
# there is no checkpoint) and the listing.
Pick = Callable[[bytes | None, list[ObjectInfo]], list[ObjectInfo]]


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


def gone(exc: ObjectMissing) -> StorageUnavailable:
    """The error of a read that found a listed object deleted."""
    # Deleted between the listing and the read (an erasure, retention): the caller may try
    # again, and will not find it listed.
    return StorageUnavailable(f"{exc.args[0]} was deleted while it was read; try again")


def check_key(key: str) -> None:
    """Refuse (ValueError) a key that could name something outside the storage's root."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise ValueError(f"unsafe storage key {key!r}")
