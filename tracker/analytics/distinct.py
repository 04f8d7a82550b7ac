"""`DistinctUsers`: how many distinct users were ever seen, in bounded memory.

A HyperLogLog sketch (Apache DataSketches) of the users' 63-bit hashes (`counting.user_key`):
at most `MAX_BYTES` however many users, with a count within about 1.6% of the exact one (two
standard errors at `LG_K` 14; small counts, up to a few hundred, are exact). Sketches merge
without further loss, so the hosts' deltas add up in the aggregator as sets did.

A sketch holds no user ID and no hash of one, only registers derived from the hashes: a user
cannot be taken out of it, and an erased user stays counted in the all-time total, which
names nobody.
"""

from __future__ import annotations

from collections.abc import Iterable

from datasketches import hll_sketch, hll_union, tgt_hll_type

from tracker.errors import InvalidInput

LG_K = 14
# 8-bit registers: the largest of the three forms, and the fastest to update and merge.
KIND = tgt_hll_type.HLL_8
# The serialized size of a full sketch (2^LG_K registers and a 40-byte header).
MAX_BYTES = 2**LG_K + 64


class DistinctUsers:
    """A distinct count of user hashes; see the module docstring."""

    __slots__ = ("_sketch",)

    def __init__(self, sketch: hll_sketch | None = None) -> None:
        self._sketch = sketch if sketch is not None else hll_sketch(LG_K, KIND)

    def add(self, user_hash: int) -> None:
        self._sketch.update(user_hash)

    def merge(self, other: DistinctUsers) -> None:
        union = hll_union(LG_K)
        union.update(self._sketch)
        union.update(other._sketch)
        self._sketch = union.get_result(KIND)

    def count(self) -> int:
        estimate: float = self._sketch.get_estimate()
        return round(estimate)

    def is_empty(self) -> bool:
        return bool(self._sketch.is_empty())

    def to_bytes(self) -> bytes:
        return bytes(self._sketch.serialize_compact())

    @classmethod
    def from_bytes(cls, data: bytes) -> DistinctUsers:
        """The inverse of `to_bytes`; `InvalidInput` for bytes that are not such a sketch."""
        if len(data) > MAX_BYTES:
            raise InvalidInput("analytics.users", f"a sketch of {len(data)} bytes")
        try:
            sketch = hll_sketch.deserialize(data)
        except (ValueError, RuntimeError) as exc:
            raise InvalidInput("analytics.users", f"not a HyperLogLog sketch: {exc}") from None
        # A smaller one would make every total merged with it as coarse as itself.
        if sketch.lg_config_k != LG_K:
            raise InvalidInput("analytics.users", f"lg_k {sketch.lg_config_k}, expected {LG_K}")
        return cls(sketch)

    @classmethod
    def from_hashes(cls, hashes: Iterable[int]) -> DistinctUsers:
        """A sketch of exact hashes (the totals stored before sketches, or an older host's)."""
        users = cls()
        for user_hash in hashes:
            users.add(user_hash)
        return users
