"""Frames files: a journal's commits appended to one local file, each fsynced where it lands.

A frame is a header `>II` (payload length, CRC32 of the length bytes and the payload) followed
by the payload. A commit appends one frame and fdatasyncs it, then checks the fence; a refused
or failed frame is truncated away again. After a crash, the file may end in a frame that was
never acknowledged: short, or failing its CRC (a partly written or zero-filled tail). Reading
stops there.

A `FrameFile` is written by one task at a time and is never reused after a failure: the
journal continues in a new file, so the frames of one file always hold consecutive positions
and nothing is appended behind a tail of unknown state (nor through a descriptor whose fsync
error may have been swallowed).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib

from tracker.errors import Fenced, StorageUnavailable
from tracker.storage import ObjectExists, fsync_dir, make_folders, write_all

HEADER = struct.Struct(">II")


def frame(payload: bytes) -> bytes:
    """One frame holding `payload`."""
    return header(payload) + payload


def header(payload: bytes) -> bytes:
    """The header of the frame holding `payload`."""
    return HEADER.pack(len(payload), _crc(len(payload), payload))


def frames(data: bytes) -> list[bytes]:
    """The payloads of the whole frames at the start of `data`, up to a torn tail."""
    found: list[bytes] = []
    offset = 0
    view = memoryview(data)
    while offset + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, offset)
        payload = view[offset + HEADER.size : offset + HEADER.size + length]
        if len(payload) < length or _crc(length, payload) != crc:
            break
        found.append(bytes(payload))
        offset += HEADER.size + length
    return found


def read_from(path: str, offset: int) -> bytes:
    """The bytes of the file at `path` from `offset` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _crc(length: int, payload: bytes | memoryview) -> int:
    # The length is covered too: a zero-filled tail would otherwise read as an empty frame.
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big")))


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


class FrameFile:
    """One frames file, created on its first append. Its methods block: call them in a thread."""

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self.key = key
        self._fd: int | None = None
        self._size = 0
        self._closed = False
        # Held while appending, so that `close` waits for an append still running in its
        # thread (its task cancelled) rather than pull the descriptor from under it.
        self._lock = threading.Lock()

    def append_fenced(self, payload: bytes, fence: str) -> None:
        """Append a frame of `payload` durably, then check that the file `fence` does not exist.

        Raises `Fenced` if it does, and `StorageUnavailable` if the write, the sync or the
        check fails; either way the data is truncated away again (as far as possible) and the
        file is closed for good.
        """
        with self._lock:
            if self._closed:
                raise StorageUnavailable(f"{self.key} is closed")
            try:
                fd = self._fd if self._fd is not None else self._create()
                # Header and payload in one system call, without copying the payload (commits
                # run to megabytes, and a copy of each one is memory the allocator keeps).
                head = header(payload)
                written = os.writev(fd, [head, payload])
                if written < len(head) + len(payload):  # short (full disk, signal): the rest
                    write_all(fd, (head + payload)[written:])
                os.fdatasync(fd)
                fenced = _exists(fence)
            except OSError as exc:
                self._abandon()
                raise StorageUnavailable(f"cannot write {self.key}: {exc.strerror or exc}") from exc
            if fenced:
                self._abandon()
                raise Fenced(f"{fence} exists")
            self._size += HEADER.size + len(payload)

    def _create(self) -> int:
        folder = os.path.dirname(self.path)
        make_folders(folder)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ObjectExists(f"{self.key} already exists") from None
        self._fd = fd
        # Once, so that the file's name is as durable as the frames synced into it.
        fsync_dir(folder)
        return fd

    def _abandon(self) -> None:
        """Cut the file back to its acknowledged frames and close it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
                os.fdatasync(self._fd)
        self._close()

    def close(self) -> None:
        """Close the file (once an append still running is done); it takes no more frames."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
