"""The one codec: msgpack, with a format version on every stored object.

Stored objects are msgpack maps `{"v": FORMAT_VERSION, "kind": ..., ...}` so any msgpack reader
can open them. A movement is kept (in memory and on storage) as the msgpack encoding of its
`schema.Movement`, made once when it is validated and never again: the same bytes go into the
log, the user's history chunks, snapshots and memory.

Records are what the journal logs and the user tracker replays: `[op, user_id, now_ms, payload]`
with op one of `session`, `track`, `expire`, `erase`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tracker.errors import StorageUnavailable
from tracker.schema import Movement

FORMAT_VERSION = 1

Record = list[Any]

_encoder = msgspec.msgpack.Encoder()
_movement_decoder = msgspec.msgpack.Decoder(Movement)
_decoder = msgspec.msgpack.Decoder()


class CorruptObject(StorageUnavailable):
    """A stored object cannot be decoded, or has a format version this code does not know."""


def encode_movement(movement: Movement) -> bytes:
    return _encoder.encode(movement)


def decode_movement(data: bytes) -> Movement:
    return _movement_decoder.decode(data)


def movement_dict(data: bytes) -> dict[str, Any]:
    """The seed's JSON shape of a stored movement."""
    result: dict[str, Any] = msgspec.to_builtins(_movement_decoder.decode(data))
    return result


def encode(kind: str, body: dict[str, Any]) -> bytes:
    """Encode a stored object of `kind` with the current format version."""
    return _encoder.encode({"v": FORMAT_VERSION, "kind": kind, **body})


def decode(kind: str, data: bytes, key: str = "") -> dict[str, Any]:
    """Decode a stored object, checking its kind and format version."""
    try:
        obj = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptObject(f"{key or kind}: not msgpack ({exc})") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise CorruptObject(f"{key or kind}: expected a {kind!r} object")
    if obj.get("v") != FORMAT_VERSION:
        raise CorruptObject(f"{key or kind}: unknown format version {obj.get('v')!r}")
    return obj
