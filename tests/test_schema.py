"""The declared shapes and limits of what clients send; every error names its field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tracker.errors import InvalidInput, InvalidMovement, InvalidSession, TooLarge
from tracker.schema import (
    MAX_BATCH_EVENTS,
    decode_json,
    movement_from_obj,
    movements_from_json,
    movements_from_obj,
    pack_movements,
    session_request_from_obj,
)

NOW = 1_700_000_000_000


def raw(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "userId": "alice",
        "sessionId": "s1",
        "timestamp": NOW,
        "event": "click",
        "data": {"path": "/", "coordinates": {"x": 1, "y": 2}},
    }
    return {**base, **changes}


def field_of(movement: Any) -> str:
    with pytest.raises(InvalidMovement) as info:
        movements_from_obj(movement if isinstance(movement, list) else [movement], NOW)
    return info.value.field


def test_a_well_formed_movement_is_accepted_as_sent() -> None:
    full = raw(
        event="scroll",
        eventId="e-1",
        data={
            "path": "/a",
            "element": "button#go",
            "coordinates": {"x": 1.5, "y": -2},
            "duration": 12,
            "scrollX": 0,
            "scrollY": 300,
            "metadata": {"viewportWidth": 800, "title": None, "tags": ["a", True]},
        },
    )
    movement = movement_from_obj(full, NOW)
    assert movement.userId == "alice" and movement.eventId == "e-1"
    assert movement.data.coordinates is not None and movement.data.coordinates.x == 1.5


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"data": {"coordinates": {"x": "left", "y": 2}}}, "data.coordinates.x"),
        ({"data": {"coordinates": {"x": 1}}}, "data.coordinates.y"),
        ({"event": "teleport"}, "event"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"userId": None}, "userId"),
        ({"data": {"bogus": 1}}, "data.bogus"),
    ],
)
def test_errors_name_the_offending_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMovement) as info:
        movement_from_obj(raw(**changes), NOW)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_an_unknown_key_is_rejected_by_name() -> None:
    with pytest.raises(InvalidMovement) as info:
        movement_from_obj(raw(colour="red"), NOW)
    assert info.value.field == "colour"
    assert "colour" in str(info.value)


def test_an_unknown_key_beside_events_is_named() -> None:
    with pytest.raises(InvalidMovement) as info:
        movements_from_json(b'{"events": [], "extra": 1}', NOW)
    assert info.value.field == "extra"


def test_errors_in_a_batch_name_the_event_by_position() -> None:
    batch = [raw(), raw(), raw(), raw(userId=None)]
    assert field_of(batch) == "events.3.userId"
    assert field_of([raw(), raw(data={"coordinates": {"x": "a", "y": 1}})]) == (
        "events.1.data.coordinates.x"
    )


def test_rules_checked_after_parsing_name_the_event_in_a_batch() -> None:
    assert field_of([raw(), raw(timestamp=NOW + 10 * 60_000)]) == "events.1.timestamp"
    deep: dict[str, Any] = {"a": {"b": {"c": {"d": {}}}}}
    assert field_of([raw(data={"metadata": deep})]) == "events.0.data.metadata.a.b.c.d"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"path": "/" + "p" * 2047}, None),
        ({"path": "/" + "p" * 2048}, "data.path"),
        ({"element": "e" * 512}, None),
        ({"element": "e" * 513}, "data.element"),
        ({"metadata": {"k": "v" * 4000}}, None),
        ({"metadata": {"k": "v" * 4100}}, "data.metadata"),
        ({"metadata": {"a": {"b": {"c": {"d": 1}}}}}, None),
        ({"metadata": {"a": {"b": {"c": {"d": {}}}}}}, "data.metadata.a.b.c.d"),
        ({"metadata": {"a": [[[[]]]]}}, "data.metadata.a.0.0.0"),
        ({"metadata": {"a": float("nan")}}, "data.metadata.a"),
        ({"metadata": {"a": [1, float("inf")]}}, "data.metadata.a.1"),
        ({"coordinates": {"x": float("nan"), "y": 0}}, "data.coordinates.x"),
        ({"coordinates": {"x": 0, "y": float("-inf")}}, "data.coordinates.y"),
        ({"duration": float("nan")}, "data.duration"),
        ({"scrollY": float("inf")}, "data.scrollY"),
    ],
)
def test_data_limits(data: dict[str, Any], field: str | None) -> None:
    if field is None:
        movement_from_obj(raw(data=data), NOW)
        return
    with pytest.raises(InvalidMovement) as info:
        movement_from_obj(raw(data=data), NOW)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("A-z_0.9:x@y", True),
        ("has space", False),
        ("slash/y", False),
        ("dot..dot", True),
        ("ünïcode", False),
        ("nul\0", False),
    ],
)
def test_session_and_event_ids_are_at_most_128_characters_of_a_safe_set(
    value: str, ok: bool
) -> None:
    for key in ("sessionId", "eventId"):
        if ok:
            movement_from_obj(raw(**{key: value}), NOW)
        else:
            with pytest.raises(InvalidMovement) as info:
                movement_from_obj(raw(**{key: value}), NOW)
            assert info.value.field == key


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("user_123", True),
        ("a+b@example.com", True),
        ("Jane Doe", True),
        ("ünïcode 名前 ✓", True),
        ("slash/../y?q=1#f", True),
        ('<script>"quote\\', True),
        ("a" * 128, True),
        ("é" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("nul\0", False),
        ("line\nbreak", False),
        ("tab\there", False),
        ("del\x7f", False),
        ("zero\u200bwidth", False),
        ("line\u2028sep", False),
        ("lone\ud800surrogate", False),
    ],
)
def test_user_ids_are_1_to_128_printable_characters(value: str, ok: bool) -> None:
    checks = [
        lambda: movement_from_obj(raw(userId=value), NOW),
        lambda: session_request_from_obj({"userId": value, "sessionId": "s"}),
    ]
    if "\ud800" not in value:  # msgpack holds UTF-8 text only: no lone surrogate is packed
        checks.append(lambda: movements_from_obj(pack_movements([raw(userId=value)]), NOW))
    for check in checks:
        if ok:
            check()
        else:
            with pytest.raises(InvalidInput) as info:
                check()
            assert info.value.field.endswith("userId")


def test_timestamps_more_than_five_minutes_ahead_are_rejected() -> None:
    movement_from_obj(raw(timestamp=NOW + 5 * 60_000), NOW)
    with pytest.raises(InvalidMovement) as info:
        movement_from_obj(raw(timestamp=NOW + 5 * 60_000 + 1), NOW)
    assert info.value.field == "timestamp"


def test_a_batch_of_more_than_500_events_is_too_large() -> None:
    assert len(movements_from_obj([raw()] * MAX_BATCH_EVENTS, NOW)) == MAX_BATCH_EVENTS
    with pytest.raises(TooLarge) as info:
        movements_from_obj([raw()] * (MAX_BATCH_EVENTS + 1), NOW)
    assert info.value.field == "events"
    assert isinstance(info.value, InvalidInput)


def test_a_body_may_be_one_movement_a_list_or_an_events_object() -> None:
    import json

    one = json.dumps(raw()).encode()
    assert len(movements_from_json(one, NOW)) == 1
    assert len(movements_from_json(json.dumps([raw(), raw()]).encode(), NOW)) == 2
    assert len(movements_from_json(json.dumps({"events": [raw()] * 3}).encode(), NOW)) == 3
    with pytest.raises(InvalidInput) as info:
        movements_from_json(b"{not json", NOW)
    assert info.value.field == "body"


def test_session_requests_name_the_bad_device_info_field() -> None:
    request = session_request_from_obj(
        {"userId": "u", "sessionId": "s", "deviceInfo": {"userAgent": "x", "timezone": "UTC"}}
    )
    assert request.deviceInfo is not None and request.deviceInfo.timezone == "UTC"
    with pytest.raises(InvalidSession) as info:
        session_request_from_obj({"userId": "u", "sessionId": "s", "deviceInfo": {"os": "x"}})
    assert info.value.field == "deviceInfo.os"
    with pytest.raises(InvalidSession) as info:
        session_request_from_obj({"userId": "u", "sessionId": "s", "deviceInfo": {}})
    assert info.value.field == "deviceInfo.userAgent"


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        ([raw(), raw(), raw(eventId="bad id")], "events.2.eventId"),
        ([raw(), raw(sessionId="s\n")], "events.1.sessionId"),
        ([raw(userId="line\nbreak")], "events.0.userId"),
        (
            [raw(data={"metadata": {"a": {"b": {"c": {"d": {}}}}}})],
            "events.0.data.metadata.a.b.c.d",
        ),
        ([raw(data={"metadata": {"n": float("nan")}})], "events.0.data.metadata.n"),
        ([raw(), raw(timestamp=NOW + 10 * 60_000)], "events.1.timestamp"),
        ([raw(), raw(event="teleport")], "events.1.event"),
    ],
    ids=["event-id", "session-newline", "user-newline", "deep", "nan", "future", "event"],
)
def test_a_packed_batch_is_checked_like_a_list_and_names_the_field(
    batch: list[dict[str, Any]], field: str
) -> None:
    assert field_of(batch) == field
    with pytest.raises(InvalidMovement) as info:
        movements_from_obj(pack_movements(batch), NOW)
    assert info.value.field == field


@pytest.mark.parametrize("path", ["", "home", "__proto__", "https://example.com/", " /a", "\n/a"])
def test_a_path_that_does_not_start_with_a_slash_is_refused_naming_its_field(path: str) -> None:
    bad = raw(event="page_view", data={"path": path})
    with pytest.raises(InvalidMovement) as info:
        movement_from_obj(bad, NOW)
    assert info.value.field == "data.path"
    assert repr(path) in info.value.message
    assert field_of([raw(), raw(), bad]) == "events.2.data.path"
    for body in (msgspec.json.encode([raw(), bad]), msgspec.json.encode({"events": [raw(), bad]})):
        with pytest.raises(InvalidMovement) as info:
            movements_from_json(body, NOW)
        assert info.value.field == "events.1.data.path"
    with pytest.raises(InvalidMovement) as info:
        movements_from_json(msgspec.json.encode(bad), NOW)
    assert info.value.field == "data.path"
    with pytest.raises(InvalidMovement) as info:
        movements_from_obj(pack_movements([raw(), bad]), NOW)
    assert info.value.field == "events.1.data.path"


@pytest.mark.parametrize("paths", [["/a\nb", "/"], ["/a", "/b\n"], ["/\n/"], ["/\u05d0\U0001f600"]])
def test_paths_starting_with_a_slash_are_accepted_whatever_follows(paths: list[str]) -> None:
    batch = [raw(data={"path": path}) for path in paths] + [raw(data={})]
    assert [m.data.path for m in movements_from_obj(batch, NOW)] == [*paths, None]
    assert len(movements_from_json(msgspec.json.encode(batch), NOW)) == len(batch)


def test_a_packed_batch_decodes_to_the_same_movements_as_the_list() -> None:
    batch = [raw(eventId=f"e{i}", data={"metadata": {"k": [i, {"x": None}]}}) for i in range(40)]
    assert movements_from_obj(pack_movements(batch), NOW) == movements_from_obj(batch, NOW)


def test_bytes_that_are_not_a_packed_batch_are_a_clear_error() -> None:
    with pytest.raises(InvalidInput) as info:
        movements_from_obj(b"\xc1", NOW)
    assert info.value.field == "events"
    with pytest.raises(TooLarge):
        movements_from_obj(pack_movements([raw()] * (MAX_BATCH_EVENTS + 1)), NOW)


def test_a_json_body_in_any_of_its_three_shapes_gives_the_same_movements() -> None:
    one = raw(eventId="e1")
    expected = movements_from_obj([one], NOW)
    assert movements_from_json(msgspec.json.encode(one), NOW) == expected
    assert movements_from_json(msgspec.json.encode([one]), NOW) == expected
    assert movements_from_json(msgspec.json.encode({"events": [one]}), NOW) == expected
    # An "events" key inside metadata does not make a movement a batch.
    inner = raw(data={"metadata": {"events": 3}})
    assert movements_from_json(msgspec.json.encode(inner), NOW)[0].data.metadata == {"events": 3}


@pytest.mark.parametrize("shape", ["packed", "json"])
def test_the_metadata_budget_holds_for_each_movement_of_a_large_batch(shape: str) -> None:
    """Metadata are measured a group at a time: groups of many movements are over the budget
    though no movement is, and the one movement over it is still found and named."""

    def check(batch: list[dict[str, Any]]) -> list[Any]:
        if shape == "packed":
            return movements_from_obj(pack_movements(batch), NOW)
        return movements_from_json(msgspec.json.encode(batch), NOW)

    batch = [raw(eventId=f"e{i}", data={"metadata": {"k": "v" * 1000}}) for i in range(130)]
    assert len(check(batch)) == 130
    batch[100] = raw(data={"metadata": {"k": "v" * 4100}})
    with pytest.raises(InvalidMovement) as info:
        check(batch)
    assert info.value.field == "events.100.data.metadata"
    # A timestamp too far ahead later in the batch: the first movement that breaks a rule
    # is the one named.
    batch[120] = raw(timestamp=NOW + 10 * 60_000)
    with pytest.raises(InvalidMovement) as info:
        check(batch)
    assert info.value.field == "events.100.data.metadata"
    batch[100] = raw()
    with pytest.raises(InvalidMovement) as info:
        check(batch)
    assert info.value.field == "events.120.timestamp"


# A string cut inside a surrogate pair, as a browser's JSON.stringify sends it: valid JSON.
HALF_PAIR = "\\ud83d"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"userId": "u", "data": {"element": "x%s"}}', "data.element"),
        (b'[{}, {"data": {"path": "%s"}}]', "events.1.data.path"),
        (b'{"events": [{"data": {"metadata": {"k": ["%s"]}}}]}', "events.0.data.metadata.k.0"),
        (b'{"data": {"metadata": {"%s": 1}}}', "data.metadata"),
        (b'[1e999, "%s"]', "events.1"),
    ],
    ids=["value", "in-an-array", "in-an-events-object", "a-key", "beside-a-huge-number"],
)
def test_half_a_surrogate_pair_is_refused_naming_its_field_not_as_invalid_json(
    body: bytes, field: str
) -> None:
    with pytest.raises(InvalidMovement) as info:
        movements_from_json(body % HALF_PAIR.encode(), NOW)
    assert info.value.field == field
    assert "surrogate" in info.value.message


def test_a_whole_surrogate_pair_is_text() -> None:
    element = "x" * 10 + "\U0001f600"
    body = msgspec.json.encode(raw(data={"element": element})).replace(
        "\U0001f600".encode(), b"\\ud83d\\ude00"
    )
    assert movements_from_json(body, NOW)[0].data.element == element


@pytest.mark.parametrize("route_body", ["movements", "anything"])
def test_json_nested_too_deeply_to_read_is_an_invalid_body(route_body: str) -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    with pytest.raises(InvalidInput) as info:
        if route_body == "movements":
            movements_from_json(deep, NOW)
        else:
            decode_json(deep)
    assert type(info.value) is InvalidInput
    assert info.value.field == "body"


def test_integers_too_long_for_python_are_read_as_infinity_and_named_by_their_field() -> None:
    huge = b"9" * 5000
    body = msgspec.json.encode(raw(data={"metadata": {"n": 0}})).replace(b'"n":0', b'"n":' + huge)
    with pytest.raises(InvalidMovement) as info:
        movements_from_json(body, NOW)
    assert info.value.field == "data.metadata.n"
    assert decode_json(b"[-" + huge + b"]") == [float("-inf")]
    # Up to the limit they stay integers, refused by the 64-bit bound with their field.
    with pytest.raises(InvalidMovement) as info:
        movements_from_json(body.replace(huge, b"9" * 30), NOW)
    assert (info.value.field, info.value.message) == (
        "data.metadata.n",
        f"{'9' * 30} does not fit in a signed 64-bit integer",
    )


def test_a_session_request_with_a_number_beyond_a_double_names_the_field_like_a_movement() -> None:
    for number in (b"1e999", b"9" * 5000):
        raw_request = decode_json(b'{"userId": "u", "sessionId": "s", "x": %s}' % number)
        with pytest.raises(InvalidSession) as info:
            session_request_from_obj(raw_request)
        assert info.value.field == "x"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b'{"n": NaN}',
        b"[Infinity]",
        # A number beyond a double first sends the body to Python's decoder, which must refuse
        # what is broken later in it as msgspec would have.
        b'{"userId": 1e999, "sessionId": }',
        b"[1e999, NaN]",
        b'{"x": 1e999, "y": "\xff"}',
    ],
)
def test_what_is_not_json_for_either_decoder_is_an_invalid_body(body: bytes) -> None:
    for decode in (decode_json, lambda body: movements_from_json(body, NOW)):
        with pytest.raises(InvalidInput) as info:
            decode(body)
        assert type(info.value) is InvalidInput
        assert info.value.field == "body"
        assert info.value.message.startswith("not valid JSON")
