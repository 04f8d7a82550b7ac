"""The declared shapes of what clients send: movements (tracked events) and session requests.

The seed's `UserMovement` and `UserSession` records, with the limits the seed never enforced.
Validation is done by msgspec against these structs (C speed, unknown keys rejected by name),
plus the few rules a struct cannot say (metadata size and depth, timestamps not in the future,
paths that start with `/`).
Every failure is an `InvalidMovement` / `InvalidSession` naming the offending field.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Protocol, TypeVar

import msgspec
from msgspec import Meta, Struct

from tracker.errors import InvalidInput, InvalidMovement, InvalidSession, TooLarge
from tracker.json_text import check_json_value
from tracker.json_text import decode_json as decode_json
from tracker.visits.referrer import referrer_host

EVENT_TYPES = ("page_view", "click", "scroll", "hover", "form_interaction", "custom")
MAX_BATCH_EVENTS = 500
MAX_METADATA_BYTES = 4096
MAX_FUTURE_MS = 5 * 60 * 1000
# `(?!\n)`: Python's `$` (msgspec's) also matches before a final newline; JSON Schema's does not.
ID_PATTERN = r"^[A-Za-z0-9._:@-]+$(?!\n)"

EventType = Literal["page_view", "click", "scroll", "hover", "form_interaction", "custom"]
ID_CHARS = string.ascii_letters + string.digits + "._:@-"
Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
# User IDs are free-form, as Segment's are (`user_123`, `a+b@example.com`, `Jane Doe`): 1-128
# printable characters (`str.isprintable`: letters, marks, numbers, punctuation, symbols and the
# space), so no control character, line break, invisible format character or lone surrogate
# can reach a log line, a header or a token's signed message. Storage keys hash them.
USER_ID_RULE = "{value!r} is not 1-128 printable characters"
UserIdText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description="1-128 printable characters: no control, line-break or format characters.",
    ),
]
# A movement's IDs follow the same rule, checked for a whole batch in one pass by
# `_check_movement_ids`: msgspec's per-field regex cost twice as much as the rest of decoding.
MovementId = Annotated[
    str, Meta(min_length=1, max_length=128, extra_json_schema={"pattern": ID_PATTERN})
]
# A page path as `location.pathname` gives it. Checked for a whole batch by `bad_path` (stored
# movements, read back with the same struct, are not held to it).
PagePath = Annotated[str, Meta(max_length=2048, extra_json_schema={"pattern": "^/"})]
PATH_RULE = "{value!r} does not start with /"
# Bounds double as finiteness checks: NaN and infinities fail any comparison.
Coordinate = Annotated[float, Meta(ge=-1e7, le=1e7)]
Duration = Annotated[float, Meta(ge=0, le=1e10)]
MAX_TIMESTAMP_MS = 10**14
Timestamp = Annotated[int, Meta(ge=0, le=MAX_TIMESTAMP_MS)]

# Metadata: any JSON, nested at most MAX_METADATA_DEPTH containers deep, declared level by level
# so that msgspec checks it while decoding. Integers must fit in a signed 64-bit (msgpack,
# the storage codec, holds no more); floats must be finite.
_Finite = Annotated[float, Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
_Int = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
_Leaf = str | _Int | _Finite | bool | None
_Value4 = _Leaf | list[_Leaf] | dict[str, _Leaf]
_Value3 = _Leaf | list[_Value4] | dict[str, _Value4]
_Value2 = _Leaf | list[_Value3] | dict[str, _Value3]
Metadata = dict[str, _Value2]

CampaignValue = Annotated[str, Meta(max_length=256)]
Referrer = Annotated[str, Meta(max_length=2048)]
MAX_PROPERTIES = 20
EventName = Annotated[str, Meta(min_length=1, max_length=64)]
PropertyName = Annotated[str, Meta(min_length=1, max_length=64)]
PropertyValue = Annotated[str, Meta(max_length=256)] | _Int | _Finite | bool
Properties = Annotated[dict[PropertyName, PropertyValue], Meta(max_length=MAX_PROPERTIES)]


class Coordinates(Struct, forbid_unknown_fields=True, gc=False):
    x: Coordinate
    y: Coordinate


class Utm(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """The campaign parameters of a landing URL, the only query parameters ever stored."""

    utm_source: CampaignValue | None = None
    utm_medium: CampaignValue | None = None
    utm_campaign: CampaignValue | None = None
    utm_term: CampaignValue | None = None
    utm_content: CampaignValue | None = None


class MovementData(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    path: PagePath | None = None
    element: Annotated[str, Meta(max_length=512)] | None = None
    coordinates: Coordinates | None = None
    duration: Duration | None = None
    scrollX: Coordinate | None = None
    scrollY: Coordinate | None = None
    metadata: Metadata | None = None
    # A custom event's name and properties (`event: "custom"`).
    name: EventName | None = None
    properties: Properties | None = None
    # A page view that entered from elsewhere: its referrer (kept as its host only) and the
    # landing URL's campaign parameters.
    referrer: Referrer | None = None
    utm: Utm | None = None


class Movement(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One tracked event, in the seed's camelCase shape plus an optional idempotency key.

    Movements (and their parts) are not tracked by the cycle collector (`gc=False`): they
    never form cycles, and a host decodes hundreds of thousands per second.
    """

    userId: UserIdText
    sessionId: MovementId
    timestamp: Timestamp
    event: EventType
    data: MovementData = msgspec.field(default_factory=MovementData)
    eventId: MovementId | None = None


class Observed(Protocol):
    """What analytics, the rules and the event-ID check read of a movement: a `Movement`, or a
    stored one (`codec.StoredMovement`), whose user and session are given beside it."""

    @property
    def eventId(self) -> str | None: ...

    @property
    def event(self) -> str: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def data(self) -> MovementData: ...


class DeviceInfo(Struct, forbid_unknown_fields=True, omit_defaults=True):
    userAgent: Annotated[str, Meta(max_length=512)]
    screenResolution: Annotated[str, Meta(max_length=32)] | None = None
    timezone: Annotated[str, Meta(max_length=64)] | None = None


class SessionRequest(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Body of `POST /api/track/session`: the visit's referrer (a URL or a host; its host is
    kept), its landing URL's campaign, and whether the browser showed it is automated."""

    userId: UserIdText
    sessionId: Id
    deviceInfo: DeviceInfo | None = None
    referrer: Referrer | None = None
    utm: Utm | None = None
    automation: bool = False


class EventBatch(Struct, forbid_unknown_fields=True):
    events: list[Movement]


class IdentifyRequest(Struct, forbid_unknown_fields=True):
    """Body of `POST /api/track/identify`: link the anonymous visitor (shown by their visitor
    cookie) to a logged-in user (shown by their identity token)."""

    anonymousId: UserIdText
    userId: UserIdText
    token: Annotated[str, Meta(max_length=128)]


def identify_request_from_obj(raw: Any) -> IdentifyRequest:
    try:
        request = msgspec.convert(raw, IdentifyRequest)
    except msgspec.ValidationError as exc:
        raise field_error(exc, InvalidInput) from None
    check_user_id("anonymousId", request.anonymousId)
    check_user_id("userId", request.userId)
    return request


class LoginRequest(Struct):
    """Body of `POST /api/admin/login`."""

    token: str


_packed = msgspec.msgpack.Decoder(list[Movement])
_packer = msgspec.msgpack.Encoder()


_json_movements = msgspec.json.Decoder(Movement | list[Movement])
_json_batch = msgspec.json.Decoder(EventBatch)


_LOCATION = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


def field_error(
    exc: msgspec.ValidationError, kind: type[InvalidInput], prefix: str = ""
) -> InvalidInput:
    """Turn msgspec's message into our error, with a dotted field name such as `data.path`."""
    match = _LOCATION.match(str(exc))
    message = match.group("msg") if match else str(exc)
    path = (match.group("path") or "") if match else ""
    dotted = prefix + path.replace("[", ".").replace("]", "")
    field = ".".join(part for part in dotted.split(".") if part)
    named = _UNKNOWN.match(message) or _MISSING.match(message)
    if named:
        field = f"{field}.{named.group('name')}" if field else named.group("name")
    return kind(field or "body", message)


def check_movement(movement: Movement, now_ms: int, prefix: str = "") -> Movement:
    """All the rules, for a struct made in Python (decoding checked the declared ones)."""
    _check_movement_ids([movement], prefix)
    _check_paths([movement], prefix)
    _check_kinds([movement], prefix)
    if movement.data.metadata is not None:
        check_json_value(movement.data.metadata, f"{prefix}data.metadata", depth=1)
    return check_rules(movement, now_ms, prefix)


M = TypeVar("M", bound=Observed)

_ID_BYTES = ID_CHARS.encode()
ID_RULE = "{value!r} is not 1-128 characters of [A-Za-z0-9._:@-]"


def ids_valid(text: str) -> bool:
    return text.isascii() and not text.encode().translate(None, _ID_BYTES)


def user_id_valid(text: str) -> bool:
    """The user ID rule (`USER_ID_RULE`), but for the length, which the struct checks."""
    return text.isprintable()


def _bad_movement_id(movements: Sequence[Movement]) -> tuple[int, str, str] | None:
    """The first ID of `movements` that breaks the rule, as (index, field, value); or None."""
    users = "".join({m.userId for m in movements})
    sessions = "".join({m.sessionId for m in movements})
    events = "".join([m.eventId for m in movements if m.eventId is not None])
    if user_id_valid(users) and ids_valid(sessions + events):
        return None
    for index, movement in enumerate(movements):
        if not user_id_valid(movement.userId):
            return index, "userId", movement.userId
        for field in ("sessionId", "eventId"):
            value = getattr(movement, field)
            if value is not None and not ids_valid(value):
                return index, field, value
    return None


def _check_movement_ids(movements: Sequence[Movement], prefix: str | None) -> None:
    """Raise for the first bad ID, named `<prefix><field>`, or `events.<i>.<field>` when
    `prefix` is None (a batch)."""
    bad = _bad_movement_id(movements)
    if bad is not None:
        index, field, value = bad
        named = f"events.{index}.{field}" if prefix is None else f"{prefix}{field}"
        rule = USER_ID_RULE if field == "userId" else ID_RULE
        raise InvalidMovement(named, rule.format(value=value))


def bad_path(movements: Sequence[Observed]) -> int | None:
    """The position of the first movement whose `data.path` does not start with `/`, or None.

    The usual batch, every path good, costs no Python-level loop: joined by newlines, its paths
    all start with `/` if the text does and every newline is followed by one. A newline inside
    a path only sends the batch to the exact check."""
    paths = [m.data.path for m in movements]
    joined = "\n".join(filter(None, paths))
    if "" not in paths and (
        not joined or (joined[0] == "/" and joined.count("\n") == joined.count("\n/"))
    ):
        return None
    for index, path in enumerate(paths):
        if path is not None and not path.startswith("/"):
            return index
    return None


def _check_paths(movements: Sequence[Movement], prefix: str | None) -> None:
    """Raise for the first path that does not start with `/`, named as `_check_movement_ids`
    names an ID."""
    index = bad_path(movements)
    if index is not None:
        named = f"events.{index}." if prefix is None else prefix
        raise InvalidMovement(
            f"{named}data.path", PATH_RULE.format(value=movements[index].data.path)
        )


def _check_kinds(movements: Sequence[Movement], prefix: str | None) -> None:
    """A custom event has a name; a page view's referrer is reduced to its host here, before
    anything stores it (a referrer URL's path and query string are never kept)."""
    for index, movement in enumerate(movements):
        data = movement.data
        if movement.event == "custom" and data.name is None:
            named = f"events.{index}." if prefix is None else prefix
            raise InvalidMovement(f"{named}data.name", "a custom event needs a name (1-64 chars)")
        if data.referrer is not None:
            data.referrer = referrer_host(data.referrer)


def check_rules(movement: M, now_ms: int, prefix: str) -> M:
    """The rules no declared type says: no timestamp from the future, the metadata budget."""
    if movement.timestamp > now_ms + MAX_FUTURE_MS:
        raise InvalidMovement(
            f"{prefix}timestamp",
            f"{movement.timestamp} is more than 5 minutes ahead of the server clock",
        )
    metadata = movement.data.metadata
    if metadata is not None:
        size = len(msgspec.json.encode(metadata))
        if size > MAX_METADATA_BYTES:
            raise InvalidMovement(
                f"{prefix}data.metadata", f"{size} bytes as JSON; at most {MAX_METADATA_BYTES}"
            )
    return movement


def movement_from_obj(raw: Any, now_ms: int, prefix: str = "") -> Movement:
    """Validate one movement given as Python objects (a dict, as from JSON)."""
    if isinstance(raw, Movement):
        return check_movement(raw, now_ms, prefix)
    try:
        movement = msgspec.convert(raw, Movement)
    except msgspec.ValidationError as exc:
        data = raw.get("data") if isinstance(raw, dict) else None
        if "metadata[" in str(exc) and isinstance(data, dict):
            # msgspec does not name map keys in its path: walk the metadata to name the field.
            check_json_value(data.get("metadata"), f"{prefix}data.metadata", depth=1)
        raise field_error(exc, InvalidMovement, prefix) from None
    _check_movement_ids([movement], prefix)
    _check_paths([movement], prefix)
    _check_kinds([movement], prefix)
    return check_rules(movement, now_ms, prefix)


def movements_from_obj(raws: Any, now_ms: int) -> list[Movement]:
    """Validate a batch: a list of movements (dicts or structs), or their msgpack encoding
    (`pack_movements`); all or nothing, at most `MAX_BATCH_EVENTS`."""
    if isinstance(raws, bytes | bytearray | memoryview):
        try:
            movements = _packed.decode(raws)
        except msgspec.ValidationError:
            # Decode it as plain objects to name what is wrong (the slower path).
            return movements_from_obj(msgspec.msgpack.decode(raws), now_ms)
        except msgspec.DecodeError as exc:
            raise InvalidInput("events", f"not a msgpack array of movements: {exc}") from None
        return _checked(movements, now_ms)
    if not isinstance(raws, list | tuple):
        raise InvalidMovement("events", "expected a list of movements")
    check_count(len(raws))
    return [movement_from_obj(raw, now_ms, f"events.{i}.") for i, raw in enumerate(raws)]


def pack_movements(movements: Sequence[Movement | dict[str, Any]]) -> bytes:
    """A batch as one msgpack array: what a host decodes and validates in one pass, and one
    buffer to send between processes instead of many objects to pickle."""
    return _packer.encode(movements)


def check_count(count: int) -> None:
    if count > MAX_BATCH_EVENTS:
        raise TooLarge("events", f"{count} events; at most {MAX_BATCH_EVENTS} per batch")


def _checked(movements: list[Movement], now_ms: int, *, one: bool = False) -> list[Movement]:
    """The rules decoding did not check; errors name `events.<i>.<field>` (`<field>` if one)."""
    check_count(len(movements))
    _check_movement_ids(movements, "" if one else None)
    _check_paths(movements, "" if one else None)
    _check_kinds(movements, "" if one else None)
    horizon = now_ms + MAX_FUTURE_MS
    suspects: Iterable[int] = ()
    if max([m.timestamp for m in movements], default=0) > horizon:
        suspects = range(len(movements))
    elif any([m.data.metadata is not None for m in movements]):
        suspects = _over_budget(movements)
    for index in suspects:
        check_rules(movements[index], now_ms, "" if one else f"events.{index}.")
    return movements


def _over_budget(movements: Sequence[Observed]) -> list[int]:
    """Positions of the movements whose metadata may be over the budget: the metadata are
    measured as JSON a group at a time, and a group within the budget holds no movement
    over it (each one's JSON is part of the group's); only a group over it is measured one
    by one. Most metadata are tens of bytes: one encoder call for up to 64 movements."""
    suspects: list[int] = []
    for start in range(0, len(movements), _BUDGET_GROUP):
        group = [m.data.metadata for m in movements[start : start + _BUDGET_GROUP]]
        if len(msgspec.json.encode(group)) > MAX_METADATA_BYTES:
            suspects += [start + at for at, metadata in enumerate(group) if metadata is not None]
    return suspects


_BUDGET_GROUP = 64


def movements_from_json(body: bytes, now_ms: int) -> list[Movement]:
    """Parse `POST /api/track`'s body: one movement, a JSON array, or `{"events": [...]}`.

    Decoded and validated in one pass into structs where the body is well formed; the slower
    paths only run to name what is wrong.
    """
    decoder: msgspec.json.Decoder[Any] = _json_batch if b'"events"' in body else _json_movements
    try:
        parsed = decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return _movements_from_json_slowly(body, now_ms)
    if isinstance(parsed, Movement):
        return _checked([parsed], now_ms, one=True)
    if isinstance(parsed, EventBatch):
        parsed = parsed.events
    return _checked(parsed, now_ms)


def _movements_from_json_slowly(body: bytes, now_ms: int) -> list[Movement]:
    raw = decode_json(body, InvalidMovement, items="events")
    if isinstance(raw, dict) and "events" in raw:
        if set(raw) != {"events"}:
            extra = sorted(set(raw) - {"events"})[0]
            raise InvalidMovement(extra, "unknown field beside `events`")
        raw = raw["events"]
    if isinstance(raw, list):
        return movements_from_obj(raw, now_ms)
    return [movement_from_obj(raw, now_ms)]


def session_request_from_obj(raw: Any) -> SessionRequest:
    """Validate the body of a session creation request."""
    try:
        request = msgspec.convert(raw, SessionRequest)
    except msgspec.ValidationError as exc:
        raise field_error(exc, InvalidSession) from None
    check_user_id("userId", request.userId, InvalidSession)
    return request


def device_info_from_obj(raw: Any) -> DeviceInfo | None:
    if raw is None:
        return None
    try:
        return msgspec.convert(raw, DeviceInfo)
    except msgspec.ValidationError as exc:
        raise field_error(exc, InvalidSession, "deviceInfo.") from None


def check_user_id(field: str, value: Any, kind: type[InvalidInput] = InvalidInput) -> str:
    """A user ID: 1-128 printable characters (else raises `kind`)."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not user_id_valid(value):
        raise kind(field, USER_ID_RULE.format(value=value))
    return value


def check_id(field: str, value: Any, kind: type[InvalidInput] = InvalidInput) -> str:
    """A user or session ID: 1-128 characters of `[A-Za-z0-9._:@-]` (else raises `kind`)."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not ids_valid(value):
        raise kind(field, ID_RULE.format(value=value))
    return value
