"""Counting in bounded memory: the bucket widths, saturating sums, pruning and top-N lists
every metric shares, and the bounded types of the wire form."""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

from msgspec import Meta

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
KEEP_MINUTES = 7 * 24 * 60
KEEP_HOURS = 7 * 24

KEY_CHARS = 256

# Every count saturates here: the largest integer a JSON number (the dashboard's) holds
# exactly, and far below what msgpack, the storage codec, can encode (2^64 - 1).
MAX_COUNT = 2**53
# How far ahead of the aggregator's clock a host's buckets may be (clocks of nodes differ).
CLOCK_SKEW_MS = 5 * MINUTE_MS

NUMBER = (int, float)

Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Key = Annotated[str, Meta(max_length=KEY_CHARS)]
UserHash = Annotated[int, Meta(ge=0, le=2**63 - 1)]

K = TypeVar("K", str, tuple[str, str], tuple[str, int], int)


def user_key(user_id: str) -> int:
    """A 63-bit hash of a user ID, the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def prune(counts: dict[K, int], limit: int) -> None:
    """Drop the smallest counts down to 4/5 of `limit`, so pruning is rare (amortised O(1)).

    Among equal counts the oldest keys go first: newer ones have had less time to grow.
    """
    drop = len(counts) - limit * 4 // 5
    if drop > 0:
        threshold, ties = smallest(counts.values(), drop)
        drop_smallest(counts, threshold, ties, drop)


def smallest(counts: Iterable[int], drop: int) -> tuple[int, int]:
    """For dropping the `drop` smallest of `counts`: the largest count to drop, and how many
    of the counts equal to it to drop."""
    ranked = sorted(counts)
    threshold = ranked[drop - 1]
    return threshold, drop - bisect.bisect_left(ranked, threshold)


def drop_smallest(counts: dict[K, int], threshold: int, ties: int, drop: int) -> tuple[int, int]:
    """Delete, oldest first, the counts below `threshold` and `ties` of those equal to it,
    `drop` in all; return the ties and drops that are left for a further dict."""
    if drop == 0:
        return ties, drop
    for key in [k for k, n in counts.items() if n <= threshold]:
        if counts[key] == threshold:
            if ties == 0:
                continue
            ties -= 1
        del counts[key]
        drop -= 1
        if drop == 0:
            break
    return ties, drop


def add(into: dict[K, int], counts: dict[K, int], limit: int | None = None) -> None:
    """Add `counts` into `into`, saturating; then prune `into` to `limit`, if given."""
    for key, n in counts.items():
        n += into.get(key, 0)
        into[key] = n if n <= MAX_COUNT else MAX_COUNT
    if limit is not None and len(into) > limit:
        prune(into, limit)


def saturating_sum(a: int, b: int) -> int:
    """`a + b`, saturating at `MAX_COUNT`."""
    n = a + b
    return n if n <= MAX_COUNT else MAX_COUNT


def top(counts: dict[K, int], n: int) -> list[tuple[K, int]]:
    """The `n` largest counts, largest first, ties by key."""
    return heapq.nsmallest(n, counts.items(), key=lambda kv: (-kv[1], kv[0]))


def overlapping(
    buckets: Iterable[tuple[int, Any]], width: int, lo: int, hi: int | None
) -> list[Any]:
    """The buckets (`width` wide, by start) that overlap `lo`..`hi` (inclusive)."""
    return [b for start, b in buckets if start + width > lo and (hi is None or start <= hi)]
