"""A user's recent event IDs, kept with their snapshot: the dedupe window of client resends.

tracker.js resends a batch it got no answer for during up to `RESEND_MS` (24 hours). By then
the session may have ended and left memory, the user may have been passivated, or the batch
may be older than the window a session keeps in memory (`session.RecentIds`). So each user
also keeps the (session, event ID) pairs they stored during the last `RESEND_MS`, hashed to
64 bits: a stable hash (blake2b), because the record is stored and read by other processes.

The pairs are kept in hourly buckets of packed hashes, oldest first. A bucket is dropped
once it is older than `RESEND_MS` plus its hour, and the oldest pairs are dropped beyond
`CAPACITY` (a day of a busy visitor's events). Memory and snapshot cost: 8 bytes per pair,
so at most 80 KB per user, and a few hundred bytes for a visitor with a few dozen events a
day. A new event is mistaken for a stored one (and dropped) only if its hash equals one of
at most `CAPACITY` others: a chance of at most 10,000 / 2^64, about 1 in 10^15.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from typing import Any

RESEND_MS = 24 * 3600 * 1000
BUCKET_MS = 3600 * 1000
CAPACITY = 10_000
# From this many hashes asked at once, one set of the stored ones is cheaper than a search
# of the buckets per hash (as in `session.RecentIds`).
SET_FROM = 8


def pair_key(session_id: str, event_id: str) -> bytes:
    """The stored hash of one event of a session (IDs never hold a NUL character)."""
    return blake2b(f"{session_id}\0{event_id}".encode(), digest_size=8).digest()


def pair_keys(session_id: str, event_ids: Iterable[str | None]) -> list[bytes]:
    """The keys of a session's `event_ids` (None skipped)."""
    return [pair_key(session_id, i) for i in event_ids if i is not None]


def holds_key(packed: bytes | bytearray, key: bytes) -> bool:
    """Whether `packed`, 8-byte keys end to end, holds `key` as one of them."""
    at = packed.find(key)
    while at >= 0:
        if not at % 8:
            return True
        at = packed.find(key, at + 1)  # straddling two entries: not one of them
    return False


class SeenEvents:
    """The hashes of a user's events stored during the last `RESEND_MS`, at most `CAPACITY`."""

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        # (hour start in ms, packed keys), oldest first.
        self.buckets: list[tuple[int, bytearray]] = []
        self.count = 0

    def __bool__(self) -> bool:
        return self.count > 0

    def holds(self, key: bytes) -> bool:
        return any(holds_key(packed, key) for _, packed in self.buckets)

    def holds_any(self, keys: Sequence[bytes]) -> bool:
        if not self.count or not keys:
            return False
        if len(keys) < SET_FROM:
            return any(self.holds(key) for key in keys)
        stored: set[int] = set()
        for _, packed in self.buckets:
            stored.update(struct.unpack(f"<{len(packed) // 8}Q", packed))
        return not stored.isdisjoint(int.from_bytes(key, "little") for key in keys)

    def add(self, keys: Sequence[bytes], now_ms: int) -> None:
        """Remember `keys`, stored at `now_ms`; forget what is too old or beyond capacity."""
        if not keys:
            return
        hour = now_ms - now_ms % BUCKET_MS
        if self.buckets and self.buckets[-1][0] >= hour:
            self.buckets[-1][1].extend(b"".join(keys))
        else:
            self.buckets.append((hour, bytearray(b"".join(keys))))
        self.count += len(keys)
        self.trim(now_ms)

    def trim(self, now_ms: int) -> None:
        """Forget the buckets older than `RESEND_MS` plus their hour, then the oldest keys
        beyond `CAPACITY`."""
        cutoff = now_ms - RESEND_MS - BUCKET_MS
        while self.buckets and self.buckets[0][0] < cutoff:
            self.count -= len(self.buckets.pop(0)[1]) // 8
        while self.count > CAPACITY:
            packed = self.buckets[0][1]
            excess = self.count - CAPACITY
            if len(packed) // 8 <= excess:
                self.buckets.pop(0)
                self.count -= len(packed) // 8
            else:
                del packed[: excess * 8]
                self.count -= excess

    def nbytes(self) -> int:
        return 8 * self.count

    def to_stored(self) -> list[list[Any]]:
        """What a snapshot keeps: `[hour start, packed keys]` per bucket, oldest first."""
        return [[hour, bytes(packed)] for hour, packed in self.buckets]

    @classmethod
    def from_stored(cls, stored: Iterable[Sequence[Any]]) -> SeenEvents:
        seen = cls()
        for hour, packed in stored:
            seen.buckets.append((int(hour), bytearray(packed[: len(packed) // 8 * 8])))
            seen.count += len(packed) // 8
        return seen
