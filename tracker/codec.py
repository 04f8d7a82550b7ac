"""The one codec: msgpack, with a format version on every stored object.

Stored objects are msgpack maps `{"v": FORMAT_VERSION, "kind": ..., ...}` so any msgpack reader
can open them.

A movement is stored without what its place already says: its user and session are known from
the record or session that holds it, so a *stored movement* is the msgpack array
`[eventId, timestamp, event, data]` (`data` a map, as sent). A batch of one session's movements
is kept as one msgpack array of stored movements (a *movement blob*): made with one encoder
call when the batch is validated, then the same bytes go into the log and the user's history
chunks, and the same items (concatenated) into memory and snapshots.

Records are what the journal logs and the user tracker replays: `[op, user_id, now_ms, payload]`
with op one of `session`, `track`, `expire`, `erase`; a `track` payload is a list of
`[session_id, movement_blob]`. A host's log also holds `alarm` records, whose payload is the
due time of an alarm the host has yet to hand to the scheduler; no user tracker sees them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from tracker.errors import InvalidMovement, StorageUnavailable
from tracker.schema import (
    ID_RULE,
    MAX_FUTURE_MS,
    MAX_METADATA_BYTES,
    PATH_RULE,
    EventType,
    Movement,
    MovementData,
    MovementId,
    Observed,
    Timestamp,
    bad_path,
    check_count,
    check_id,
    check_rules,
    field_error,
    ids_valid,
)
from tracker.visits.referrer import referrer_host

FORMAT_VERSION = 2

Record = list[Any]


class StoredMovement(msgspec.Struct, array_like=True, gc=False):
    eventId: str | None
    timestamp: int
    event: str
    data: MovementData


class SentMovement(msgspec.Struct, array_like=True, gc=False):
    """A stored movement as a caller sends it (`track_stored`): the declared types of a
    `Movement` are checked while decoding, as they are for one sent as JSON."""

    eventId: MovementId | None
    timestamp: Timestamp
    event: EventType
    data: MovementData


# One session's part of a `track` record: its ID, its movement blob, and the blob's movements
# decoded (what the event-ID check and analytics read).
Entry = tuple[str, bytes, Sequence[Observed]]


class _EventIdOnly(msgspec.Struct, array_like=True, gc=False):
    # Trailing fields are skipped (not decoded): enough to find a movement's idempotency key.
    eventId: str | None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_stored = msgspec.msgpack.Decoder(StoredMovement)
_stored_list = msgspec.msgpack.Decoder(list[StoredMovement])
_raw_list = msgspec.msgpack.Decoder(list[msgspec.Raw])
_ids = msgspec.msgpack.Decoder(list[_EventIdOnly])
_sent_list = msgspec.msgpack.Decoder(list[SentMovement])


class CorruptObject(StorageUnavailable):
    """A stored object cannot be decoded, or has a format version this code does not know."""


# -- movements ---------------------------------------------------------------------------------


def encode_blob(movements: Sequence[Movement]) -> bytes:
    """One session's movements as a movement blob (see the module docstring)."""
    buffer = bytearray()
    _encoder.encode_into([(m.eventId, m.timestamp, m.event, m.data) for m in movements], buffer)
    # Copied to a bytes object of the exact size: a blob lives in memory for long, and
    # `encode` returns its working buffer (at least 1 KB, a third too large for big batches).
    return bytes(buffer)


def group_by_session(movements: Iterable[Movement]) -> dict[str, list[Movement]]:
    """Movements by session ID, sessions in the order they first appear."""
    groups: dict[str, list[Movement]] = {}
    for movement in movements:
        group = groups.get(movement.sessionId)
        if group is None:
            groups[movement.sessionId] = [movement]
        else:
            group.append(movement)
    return groups


def encode_entries(movements: Sequence[Movement]) -> list[tuple[str, bytes]]:
    """A user's movements in the stored form: `(session_id, blob)` per session, sessions in the
    order they first appear (what `track_stored` takes; made where the batch was validated)."""
    return [(sid, encode_blob(group)) for sid, group in group_by_session(movements).items()]


def entries_from_obj(raw: Any, now_ms: int) -> list[Entry]:
    """Validate movements sent in the stored form: a list of `(session_id, blob)`.

    Each blob is decoded once, with the declared types checked, and the rules a type cannot
    say checked after (IDs, timestamps ahead of the clock, the metadata budget); errors name
    `entries.<i>.<field>`. All or nothing, at most `MAX_BATCH_EVENTS` movements.
    """
    if not isinstance(raw, list | tuple):
        raise InvalidMovement("entries", "expected a list of [sessionId, movement blob]")
    entries: list[Entry] = []
    count = 0
    for index, item in enumerate(raw):
        if not (isinstance(item, list | tuple) and len(item) == 2):
            raise InvalidMovement(f"entries.{index}", "expected [sessionId, movement blob]")
        session_id, blob = item
        prefix = f"entries.{index}."
        check_id(f"{prefix}sessionId", session_id, InvalidMovement)
        movements = _decode_sent(prefix, blob)
        count += len(movements)
        check_count(count)
        _check_sent(prefix, blob, movements, now_ms)
        entries.append((session_id, blob, movements))
    return entries


def _decode_sent(prefix: str, blob: Any) -> list[SentMovement]:
    """The movements of one sent blob, their declared types checked."""
    if not isinstance(blob, bytes):
        raise InvalidMovement(f"{prefix}movements", "expected a movement blob (bytes)")
    try:
        movements = _sent_list.decode(blob)
    except msgspec.ValidationError as exc:
        error = field_error(exc, InvalidMovement, f"{prefix}movements.")
        raise InvalidMovement(_SENT_FIELD.sub(_field_name, error.field), error.message) from None
    except msgspec.DecodeError as exc:
        raise InvalidMovement(f"{prefix}movements", f"not a movement blob: {exc}") from None
    if not movements:
        raise InvalidMovement(f"{prefix}movements", "a movement blob holds one or more")
    return movements


def _check_sent(prefix: str, blob: bytes, movements: list[SentMovement], now_ms: int) -> None:
    """The rules a type cannot say, for one sent blob: each check runs on the whole batch at
    once, and movement by movement only where the batch fails it."""
    event_ids = "".join([m.eventId for m in movements if m.eventId is not None])
    if not ids_valid(event_ids):
        for at, movement in enumerate(movements):
            if movement.eventId is not None and not ids_valid(movement.eventId):
                raise InvalidMovement(
                    f"{prefix}movements.{at}.eventId", ID_RULE.format(value=movement.eventId)
                )
    bad = bad_path(movements)
    if bad is not None:
        raise InvalidMovement(
            f"{prefix}movements.{bad}.data.path",
            PATH_RULE.format(value=movements[bad].data.path),
        )
    if max([m.timestamp for m in movements]) > now_ms + MAX_FUTURE_MS:
        for at, movement in enumerate(movements):
            check_rules(movement, now_ms, f"{prefix}movements.{at}.")
    _check_sent_kinds(prefix, movements)
    if any([m.data.metadata is not None for m in movements]):
        # The metadata budget is in JSON bytes, at most 6 per msgpack byte (a control
        # character escaped as \u00XX): only a movement of more than a sixth of the budget
        # as encoded can be over it, and only that one is measured as JSON.
        for at, raw in enumerate(blob_items(blob)):
            if len(raw) * 6 > MAX_METADATA_BYTES:
                check_rules(movements[at], now_ms, f"{prefix}movements.{at}.")


def _check_sent_kinds(prefix: str, movements: list[SentMovement]) -> None:
    """What the schema's pass makes sure of (a custom event's name, a referrer reduced to
    its host), for blobs stored as sent."""
    for at, movement in enumerate(movements):
        data = movement.data
        if movement.event == "custom" and data.name is None:
            raise InvalidMovement(
                f"{prefix}movements.{at}.data.name", "a custom event needs a name"
            )
        if data.referrer is not None and data.referrer != referrer_host(data.referrer):
            raise InvalidMovement(f"{prefix}movements.{at}.data.referrer", "expected a host")


# msgspec names an array-like struct's fields by position: name them as a `Movement` does.
_SENT_FIELD = re.compile(r"(movements\.\d+\.)([0-3])\b")
_SENT_NAMES = ("eventId", "timestamp", "event", "data")


def _field_name(match: re.Match[str]) -> str:
    return match.group(1) + _SENT_NAMES[int(match.group(2))]


def decode_stored(blob: bytes) -> list[StoredMovement]:
    """A blob's movements, decoded without their user and session."""
    return _stored_list.decode(blob)


def blob_items(blob: bytes) -> list[msgspec.Raw]:
    """A blob's stored movements, each as its raw bytes."""
    return _raw_list.decode(blob)


def blob_event_ids(blob: bytes) -> list[str | None]:
    """The event IDs of a blob's movements (the rest of each is skipped, not decoded)."""
    return [head.eventId for head in _ids.decode(blob)]


def blob_subset(blob: bytes, positions: Sequence[int]) -> bytes:
    """A blob of the movements of `blob` at `positions` (copied as they are, not re-encoded)."""
    items = blob_items(blob)
    return join_blob([items[i] for i in positions])


def join_blob(items: Sequence[msgspec.Raw | bytes]) -> bytes:
    """A blob of the given stored movements (as `blob_items` gives them)."""
    count = len(items)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 1 << 16:
        header = struct.pack(">BH", 0xDC, count)
    else:
        header = struct.pack(">BI", 0xDD, count)
    return header + b"".join(bytes(item) for item in items)


def blob_count(blob: bytes) -> int:
    """How many movements a blob holds (read from its array header)."""
    first = blob[0]
    if first & 0xF0 == 0x90:
        return first & 0x0F
    if first == 0xDC:
        return int.from_bytes(blob[1:3], "big")
    if first == 0xDD:
        return int.from_bytes(blob[1:5], "big")
    raise CorruptObject(f"not a movement blob (starts with {first:#x})")


def decode_blob(blob: bytes, user_id: str, session_id: str) -> list[Movement]:
    return [_movement(s, user_id, session_id) for s in _stored_list.decode(blob)]


def decode_movement(data: bytes | memoryview, user_id: str, session_id: str) -> Movement:
    """One stored movement, with the user and session its place gives it."""
    return _movement(_stored.decode(data), user_id, session_id)


def _movement(s: StoredMovement, user_id: str, session_id: str) -> Movement:
    return Movement(
        userId=user_id,
        sessionId=session_id,
        timestamp=s.timestamp,
        event=s.event,  # type: ignore[arg-type]  # checked when it was first validated
        data=s.data,
        eventId=s.eventId,
    )


def movement_dict(data: bytes | memoryview, user_id: str, session_id: str) -> dict[str, Any]:
    """The seed's JSON shape of a stored movement."""
    result: dict[str, Any] = msgspec.to_builtins(decode_movement(data, user_id, session_id))
    return result


def encoded_size(movement: Movement) -> int:
    """Bytes of a movement's own msgpack encoding, with every field: what an event weighs."""
    return len(_encoder.encode(movement))


# -- stored objects ----------------------------------------------------------------------------


def encode(kind: str, body: dict[str, Any]) -> bytes:
    """Encode a stored object of `kind` with the current format version."""
    return _encoder.encode({"v": FORMAT_VERSION, "kind": kind, **body})


def decode(kind: str, data: bytes, key: str = "") -> dict[str, Any]:
    """Decode a stored object, checking its kind and format version (older ones are upgraded)."""
    try:
        obj = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptObject(f"{key or kind}: not msgpack ({exc})") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise CorruptObject(f"{key or kind}: expected a {kind!r} object")
    if obj.get("v") == 1:
        try:
            return _from_version_1(obj)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            raise CorruptObject(f"{key or kind}: bad format 1 object ({exc})") from None
    if obj.get("v") != FORMAT_VERSION:
        raise CorruptObject(f"{key or kind}: unknown format version {obj.get('v')!r}")
    return obj


# -- format 1 ----------------------------------------------------------------------------------
# Format 1 stored each movement as the msgpack map of all its fields: a `track` payload was a
# list of `[session_id, event_id, movement]`, and a snapshot's session
# `[session_id, start, last, device_info, [movement, ...], [event_id, ...]]`. Objects of other
# kinds did not change.

_movement_v1 = msgspec.msgpack.Decoder(Movement)


def _from_version_1(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] in ("segment", "chunk"):
        obj["records"] = [_record_from_version_1(r) for r in obj["records"]]
    elif obj["kind"] == "snapshot":
        obj["sessions"] = [
            [sid, start, last, info, encode_blob([_movement_v1.decode(m) for m in movements])]
            for sid, start, last, info, movements, _event_ids in obj["sessions"]
        ]
    obj["v"] = FORMAT_VERSION
    return obj


def _record_from_version_1(record: Record) -> Record:
    if record[0] != "track":
        return record
    by_session: dict[str, list[Movement]] = {}
    for session_id, _event_id, data in record[3]:
        by_session.setdefault(session_id, []).append(_movement_v1.decode(data))
    return [*record[:3], [[sid, encode_blob(ms)] for sid, ms in by_session.items()]]
