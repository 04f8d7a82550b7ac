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
from tracker.errors import StorageUnavailable
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


def test_a_movement_round_trips_byte_exact() -> None:
    movement = full_movement()
    data = codec.encode_movement(movement)
    again = codec.decode_movement(data)
    assert again == movement
    assert codec.encode_movement(again) == data


def test_a_stored_movement_is_the_seeds_json_shape() -> None:
    movement = full_movement()
    assert codec.movement_dict(codec.encode_movement(movement)) == msgspec.to_builtins(movement)
    assert codec.movement_dict(codec.encode_movement(movement))["data"]["coordinates"] == {
        "x": 1.25,
        "y": -3.0,
    }


def test_stored_objects_are_readable_by_the_plain_msgpack_library() -> None:
    movement_bytes = codec.encode_movement(full_movement())
    body = {"records": [["track", "alice", NOW, [["s:1", "e.1", movement_bytes]]]]}
    data = codec.encode("segment", body)
    plain = msgpack.unpackb(data, raw=False)
    assert plain == {"v": codec.FORMAT_VERSION, "kind": "segment", **body}
    assert plain == codec.decode("segment", data)
    inner = msgpack.unpackb(plain["records"][0][3][0][2], raw=False)
    assert inner == msgspec.to_builtins(full_movement())


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
        "path": st.text(max_size=60),
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
    data = codec.encode_movement(movement)
    assert codec.decode_movement(data) == movement
    assert codec.encode_movement(codec.decode_movement(data)) == data
    assert msgpack.unpackb(data, raw=False) == codec.movement_dict(data)
    stored = codec.decode("chunk", codec.encode("chunk", {"records": [data]}))
    assert stored["records"] == [data]
