"""The one codec: byte-exact round trips, and objects any msgpack reader can open."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tracker import codec
from tracker.codec import CorruptObject
from tracker.errors import InvalidInput, StorageUnavailable
from tracker.schema import EVENT_TYPES, Movement, movement_from_obj

NOW = 1_700_000_000_000


def full_movement() -> Movement:
    return movement_from_obj(
        {
            "userId": "alice@example.com",
            "sessionId": "s:1",
            "timestamp": NOW,
            "event": "scroll",
            "eventId": "e.1",
            "data": {
                "path": "/long?q=ü",
                "element": "div#main > p",
                "coordinates": {"x": 1.25, "y": -3},
                "duration": 1500,
                "scrollX": 0,
                "scrollY": 1234.5,
                "metadata": {"viewportWidth": 1280, "scrollDepth": 42, "tags": ["a", None]},
            },
        },
        NOW,
    )


def test_a_blob_of_movements_round_trips_byte_exact() -> None:
    movement = full_movement()
    blob = codec.encode_blob([movement, movement])
    again = codec.decode_blob(blob, "alice@example.com", "s:1")
    assert again == [movement, movement]
    assert codec.encode_blob(again) == blob


def test_a_stored_movement_is_the_seeds_json_shape_without_what_its_place_says() -> None:
    movement = full_movement()
    blob = codec.encode_blob([movement])
    raws = codec.blob_items(blob)
    assert codec.blob_event_ids(blob) == ["e.1"]
    assert codec.movement_dict(raws[0], "alice@example.com", "s:1") == msgspec.to_builtins(movement)
    stored = msgpack.unpackb(bytes(raws[0]), raw=False)
    assert stored[:3] == ["e.1", NOW, "scroll"]
    assert "alice@example.com" not in str(stored) and "s:1" not in str(stored)
    assert codec.movement_dict(raws[0], "a", "s")["data"]["coordinates"] == {"x": 1.25, "y": -3.0}


def test_a_blob_is_the_concatenation_of_its_items_behind_an_array_header() -> None:
    for count in (0, 1, 15, 16, 300):
        blob = codec.encode_blob([full_movement()] * count)
        assert codec.join_blob(codec.blob_items(blob)) == blob


def test_stored_objects_are_readable_by_the_plain_msgpack_library() -> None:
    blob = codec.encode_blob([full_movement()])
    body = {"records": [["track", "alice", NOW, [["s:1", blob]]]]}
    data = codec.encode("segment", body)
    plain = msgpack.unpackb(data, raw=False)
    assert plain == {"v": codec.FORMAT_VERSION, "kind": "segment", **body}
    assert plain == codec.decode("segment", data)
    inner = msgpack.unpackb(plain["records"][0][3][0][1], raw=False)
    full = msgspec.to_builtins(full_movement())
    assert inner == [[full["eventId"], full["timestamp"], full["event"], full["data"]]]


def test_objects_written_by_the_plain_msgpack_library_are_decoded() -> None:
    data = msgpack.packb({"v": codec.FORMAT_VERSION, "kind": "alarms", "alarms": [["u", 5]]})
    assert codec.decode("alarms", data)["alarms"] == [["u", 5]]


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({"v": codec.FORMAT_VERSION + 1, "kind": "segment", "records": []}),
        msgpack.packb({"kind": "segment", "records": []}),
        msgpack.packb({"v": codec.FORMAT_VERSION, "kind": "chunk", "records": []}),
        msgpack.packb([1, 2, 3]),
        b"\xc1garbage",
        b"",
        codec.encode("segment", {"records": []})[:-3],
    ],
    ids=["future-version", "no-version", "other-kind", "not-a-map", "garbage", "empty", "cut"],
)
def test_unknown_versions_and_garbage_raise_corrupt_object(data: bytes) -> None:
    with pytest.raises(CorruptObject) as info:
        codec.decode("segment", data, "journals/x/log/1")
    assert isinstance(info.value, StorageUnavailable)
    assert "journals/x/log/1" in str(info.value)


finite = st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False)
ids = st.from_regex(r"\A[A-Za-z0-9._:@-]{1,128}\Z")
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), finite, st.text(max_size=20)
)
metadata = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        json_leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=6,
    ),
    max_size=4,
)
coordinates = st.fixed_dictionaries({"x": finite, "y": finite})
data = st.fixed_dictionaries(
    {},
    optional={
        "path": st.text(max_size=60).map(lambda text: "/" + text),
        "element": st.text(max_size=60),
        "coordinates": coordinates,
        "duration": st.floats(0, 1e10),
        "scrollX": finite,
        "scrollY": finite,
        "metadata": metadata,
    },
)
raw_movements = st.fixed_dictionaries(
    {
        "userId": ids,
        "sessionId": ids,
        "timestamp": st.integers(0, NOW),
        "event": st.sampled_from(EVENT_TYPES),
        "data": data,
    },
    optional={"eventId": ids},
)


@settings(max_examples=200, deadline=None)
@given(raw=raw_movements)
def test_any_valid_movement_round_trips(raw: dict[str, Any]) -> None:
    try:
        movement = movement_from_obj(raw, NOW)
    except ValueError:
        movement = None  # metadata deeper than the limit: not a valid movement
    assume(movement is not None)
    assert movement is not None
    blob = codec.encode_blob([movement])
    user, session = movement.userId, movement.sessionId
    assert codec.decode_blob(blob, user, session) == [movement]
    assert codec.encode_blob(codec.decode_blob(blob, user, session)) == blob
    (raw,) = codec.blob_items(blob)
    assert codec.decode_movement(raw, user, session) == movement
    assert msgpack.unpackb(blob, raw=False)[0][3] == codec.movement_dict(raw, user, session)["data"]
    stored = codec.decode("chunk", codec.encode("chunk", {"records": [blob]}))
    assert stored["records"] == [blob]


def test_format_1_records_and_snapshots_are_read_as_the_current_format() -> None:
    """Stores written before movements were stored compactly stay readable."""
    movement = full_movement()
    v1_movement = msgpack.packb(msgspec.to_builtins(movement))
    record = [
        "track",
        movement.userId,
        NOW,
        [["s:1", "e.1", v1_movement], ["s:2", None, v1_movement]],
    ]
    segment = msgpack.packb(
        {"v": 1, "kind": "segment", "records": [record, ["expire", "a", NOW, None]]}
    )
    records = codec.decode("segment", segment)["records"]
    assert records[1] == ["expire", "a", NOW, None]
    op, user, now, entries = records[0]
    assert (op, user, now) == ("track", movement.userId, NOW)
    assert [sid for sid, _ in entries] == ["s:1", "s:2"]
    assert codec.decode_blob(entries[0][1], movement.userId, "s:1") == [movement]
    session = ["s:1", NOW, NOW + 1, {"userAgent": "x"}, [v1_movement, v1_movement], ["e.1"]]
    snapshot = msgpack.packb({"v": 1, "kind": "snapshot", "sessions": [session], "through": 3})
    decoded = codec.decode("snapshot", snapshot)
    assert decoded["v"] == codec.FORMAT_VERSION and decoded["through"] == 3
    sid, start, last, info, blob = decoded["sessions"][0]
    assert (sid, start, last, info) == ("s:1", NOW, NOW + 1, {"userAgent": "x"})
    assert codec.decode_blob(blob, movement.userId, "s:1") == [movement, movement]
    alarms = msgpack.packb({"v": 1, "kind": "alarms", "alarms": [["u", 5]]})
    assert codec.decode("alarms", alarms)["alarms"] == [["u", 5]]
    with pytest.raises(CorruptObject):
        codec.decode(
            "segment",
            msgpack.packb(
                {"v": 1, "kind": "segment", "records": [["track", "a", 1, [["s", None, b"\xc1"]]]]}
            ),
        )


# -- the stored form, as callers send it -------------------------------------------------------


def test_entries_decode_to_what_was_encoded() -> None:
    movement = full_movement()
    entries = codec.entries_from_obj(codec.encode_entries([movement]), NOW)
    [(session_id, blob, [sent])] = entries
    assert session_id == movement.sessionId
    assert blob == codec.encode_blob([movement])
    assert (sent.eventId, sent.timestamp, sent.event, sent.data) == (
        movement.eventId,
        movement.timestamp,
        movement.event,
        movement.data,
    )


def _blob(*stored: Any) -> bytes:
    return msgpack.packb(list(stored))


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ("not a list", "entries"),
        ([("s1",)], "entries.0"),
        ([("bad id", _blob())], "entries.0.sessionId"),
        ([("s1", "not bytes")], "entries.0.movements"),
        ([("s1", b"\xc1")], "entries.0.movements"),
        ([("s1", _blob())], "entries.0.movements"),
        (
            [("s1", _blob(["e1", NOW, "click", {"path": "/", "zzz": 1}]))],
            "entries.0.movements.0.data.zzz",
        ),
        ([("s1", _blob(["e1", NOW, "clack", {}]))], "entries.0.movements.0.event"),
        (
            [
                (
                    "s1",
                    _blob(["e0", NOW, "click", {"path": "/"}], ["e1", NOW, "click", {"path": "a"}]),
                )
            ],
            "entries.0.movements.1.data.path",
        ),
        ([("s1", _blob(["e 1", NOW, "click", {}]))], "entries.0.movements.0.eventId"),
        (
            [
                ("s1", _blob(["e0", NOW, "click", {}])),
                ("s2", _blob(["e1", NOW + 10**9, "click", {}])),
            ],
            "entries.1.movements.0.timestamp",
        ),
        (
            [("s1", _blob(["e1", NOW, "click", {"metadata": {"k": "x" * 5000}}]))],
            "entries.0.movements.0.data.metadata",
        ),
        ([("s1", _blob(*[[f"e{i}", NOW, "click", {}] for i in range(501)]))], "events"),
    ],
)
def test_entries_that_fail_a_check_are_refused_naming_the_field(entries: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        codec.entries_from_obj(entries, NOW)
    assert raised.value.field == field
