"""One session's state: the seed's `UserSession`, held compactly.

A session keeps its movements as the movement blobs they arrived in (see `codec`): the very
`bytes` objects its records hold, so the records waiting for compaction cost no second copy,
and a movement costs its stored encoding (about 150 bytes) plus a share of one object per
batch. Retried events are recognised by their event ID within a window of the most recent
ones, kept as 8-byte hashes in one buffer.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from tracker import codec
from tracker.schema import MAX_BATCH_EVENTS
from tracker.seen import holds_key

# Two of the largest batches: a retry of a whole batch (the client's, or Ray's of a call to a
# restarted host) is recognised even with another batch of the session stored between. (With
# 256, a retried batch of 500 stored its first 244 events again.)
EVENT_ID_WINDOW = 2 * MAX_BATCH_EVENTS


class MovementBuffer:
    """The newest `cap` stored movements of a session, oldest dropped first."""

    __slots__ = ("blobs", "cap", "count", "skip")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.blobs: deque[bytes] = deque()
        self.count = 0  # movements held
        self.skip = 0  # movements of the first blob already dropped

    def __len__(self) -> int:
        return self.count

    def add(self, blob: bytes, count: int) -> None:
        """Append a blob of `count` movements, dropping the oldest beyond the cap."""
        self.blobs.append(blob)
        self.count += count
        excess = self.count - self.cap
        while excess > 0:
            first = codec.blob_count(self.blobs[0]) - self.skip
            if first <= excess:
                self.blobs.popleft()
                self.skip = 0
                self.count -= first
                excess -= first
            else:
                self.skip += excess
                self.count -= excess
                excess = 0

    def __iter__(self) -> Iterator[msgspec.Raw]:
        skip = self.skip
        for blob in self.blobs:
            yield from codec.blob_items(blob)[skip:]
            skip = 0

    def blob(self) -> bytes:
        """The movements held, as one movement blob."""
        if len(self.blobs) == 1 and not self.skip:
            return self.blobs[0]
        return codec.join_blob(list(self))

    def nbytes(self) -> int:
        return sum(map(len, self.blobs))


class RecentIds:
    """The most recent `capacity` event IDs, as 8-byte hashes in a ring.

    A client retries within seconds and with the same session: this window catches those
    retries cheaply. The hashes are Python's (this process's) and are never stored: a restored
    session rebuilds its window from its movements. Later resends are caught by the user's
    `seen.SeenEvents`. Two IDs of one window sharing a 64-bit hash is a
    chance of about 1 in 10^16.
    """

    __slots__ = ("capacity", "next", "ring", "whole")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ring = bytearray()
        self.next = 0
        # Whether the window holds every ID its session stored: none was overwritten, and
        # the session was not restored. Then the user's `SeenEvents` need not be asked.
        self.whole = True

    @staticmethod
    def key(event_id: str) -> bytes:
        return hash(event_id).to_bytes(8, "little", signed=True)

    @staticmethod
    def keys(event_ids: Iterable[str | None]) -> bytes:
        """The keys of `event_ids` (None skipped), joined: what `key` gives for each."""
        hashes = [hash(i) for i in event_ids if i is not None]
        return struct.pack(f"<{len(hashes)}q", *hashes)

    def holds_any(self, event_ids: Iterable[str | None]) -> bool:
        """Whether the window holds any of `event_ids` (None skipped): a batch's check in one
        step. Searching the ring costs about 1 µs per ID; a set of 256 of the window's entries
        costs about 10 µs once, so a batch of 8 IDs or more is checked against the set."""
        ring = self.ring
        if not ring:
            return False
        present = [i for i in event_ids if i is not None]
        if len(present) < 8:
            return any(RecentIds.key(i) in self for i in present)
        window = set(struct.unpack(f"<{len(ring) // 8}q", ring))
        return not window.isdisjoint(map(hash, present))

    def __contains__(self, key: bytes) -> bool:
        return holds_key(self.ring, key)

    def add(self, key: bytes) -> None:
        if len(self.ring) < self.capacity * 8:
            self.ring += key
        else:
            self.whole = False
            at = self.next * 8
            self.ring[at : at + 8] = key
            self.next = (self.next + 1) % self.capacity

    def extend(self, event_ids: Iterable[str | None]) -> None:
        """Add the keys of `event_ids` (None skipped), oldest first, as `add` one by one would."""
        keys = RecentIds.keys(event_ids)
        room = self.capacity * 8 - len(self.ring)
        if room > 0:
            self.ring += keys[:room]
            keys = keys[room:]
        self.whole = self.whole and not keys
        # The ring is full: the rest overwrite the oldest entries, from `next` on, wrapping.
        keys = keys[-self.capacity * 8 :]
        while keys:
            at = self.next * 8
            part = keys[: len(self.ring) - at]
            self.ring[at : at + len(part)] = part
            self.next = (self.next + len(part) // 8) % self.capacity
            keys = keys[len(part) :]


def kept_positions(
    event_ids: Iterable[str | None], duplicate: Callable[[str], bool]
) -> list[int] | None:
    """Which movements of a batch to keep, by their event IDs: None when all of them, else
    their positions. `duplicate(event_id)` is asked once per ID, in order, and remembers the
    IDs it lets through (so a later copy in the same batch is a duplicate too)."""
    keep: list[int] | None = None  # filled once a duplicate was found
    for index, event_id in enumerate(event_ids):
        if event_id is not None and duplicate(event_id):
            if keep is None:
                keep = list(range(index))
        elif keep is not None:
            keep.append(index)
    return keep


class SessionState:
    """One session: start, last activity, device info, movements, recent event IDs."""

    __slots__ = (
        "device_info",
        "last_activity",
        "movements",
        "recent_ids",
        "session_id",
        "start_time",
    )

    def __init__(
        self,
        session_id: str,
        start_time: int,
        device_info: dict[str, Any] | None,
        max_movements: int,
    ) -> None:
        self.session_id = session_id
        self.start_time = start_time
        self.last_activity = start_time
        self.device_info = device_info
        self.movements = MovementBuffer(max_movements)
        self.recent_ids = RecentIds(min(max_movements, EVENT_ID_WINDOW))

    def has_seen(self, event_id: str) -> bool:
        return RecentIds.key(event_id) in self.recent_ids

    def add(
        self, blob: bytes, *, fresh: bool = False, event_ids: Sequence[str | None] | None = None
    ) -> int:
        """Take a blob of movements, skipping those already seen (unless `fresh`: checked by
        the caller already); return how many were taken. `event_ids`: the blob's, when the
        caller has them decoded already."""
        if event_ids is None:
            event_ids = codec.blob_event_ids(blob)
        recent = self.recent_ids
        if fresh:
            recent.extend(event_ids)
            self.movements.add(blob, len(event_ids))
            return len(event_ids)
        key = RecentIds.key

        def duplicate(event_id: str) -> bool:
            digest = key(event_id)
            if digest in recent:
                return True
            recent.add(digest)
            return False

        keep = kept_positions(event_ids, duplicate)
        if keep is None:
            self.movements.add(blob, len(event_ids))
            return len(event_ids)
        if keep:
            self.movements.add(codec.blob_subset(blob, keep), len(keep))
        return len(keep)

    def restore(self, blob: bytes) -> None:
        """Take a snapshot's blob: the movements, and the window of their newest `capacity`
        IDs, as tracking them left it (movements without an ID take no place in it). Only IDs
        of movements the cap dropped, if the window still held any, are not restored."""
        event_ids = codec.blob_event_ids(blob)
        self.movements.add(blob, len(event_ids))
        present = [i for i in event_ids if i is not None]
        self.recent_ids.extend(present[-self.recent_ids.capacity :])
        self.recent_ids.whole = False  # the IDs of movements the cap dropped are not here
