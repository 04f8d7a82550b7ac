"""Segment's messages (the HTTP tracking API's `track`, `page`, `identify`, `alias`) in our model.

A server-side source (`segment-analytics-python`, `@segment/analytics-node`, or anything that
speaks Segment's HTTP tracking API) sends batches of messages. `read_batch` checks a whole
batch and turns it into movements grouped by user, or raises for the first bad message,
naming `batch.<index>.<field>`: a batch is taken whole or not at all.

The mapping (docs/segment.md):

- `userId`, else `anonymousId`, is the user (free-form, as ours are);
- `context.sessionId` is the session; without one, the user's current session (idle less
  than the session timeout) or a new one, which the host chooses (`AUTO_SESSION`);
- `page` is a `page_view` at `properties.path` (else `context.page.path`, else the path of
  `properties.url`); its referrer is kept as a host only, its campaign from `context.campaign`;
- `track` is a `custom` event named `event`, with `properties` flattened (below);
- `messageId` is the event ID (a message ID outside our ID alphabet becomes a stable hash of
  it, and a message without one gets a hash of its content, so a resent batch counts once);
- `timestamp` is when it happened, corrected for the sender's clock by `sentAt` as Segment
  does; `context.userAgent` is the session's device;
- `identify` with both IDs, and `alias`, link an anonymous ID to a user (`Link`);
  `identify`'s traits are not kept.

Nested `properties` are flattened with dotted keys (`{"order": {"id": 1}}` is `order.id`);
an array or a null is kept as its JSON text. At most 20 properties after flattening.

Domain logic only: no HTTP, no Ray.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

from tracker.errors import InvalidInput, InvalidMessage
from tracker.schema import (
    MAX_BATCH_EVENTS,
    MAX_FUTURE_MS,
    MAX_PROPERTIES,
    Movement,
    check_user_id,
    ids_valid,
    movements_from_obj,
    pack_movements,
)

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MESSAGE_TYPES = ("track", "page", "identify", "alias")
# The session of movements sent without `context.sessionId`: the host puts them in the user's
# current session, or starts this one (`auto_session_id`).
AUTO_SESSION = "segment-auto"
_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}


@dataclass(frozen=True)
class Link:
    """An anonymous ID to be linked to a user (`identify` with both IDs, or `alias`)."""

    index: int
    anonymous_id: str
    user_id: str


@dataclass
class UserPart:
    """One user's share of a batch: movements, and the device of the sessions it starts."""

    movements: list[Movement] = field(default_factory=list)
    user_agent: str | None = None


@dataclass
class SegmentBatch:
    users: dict[str, UserPart] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(part.movements) for part in self.users.values()) + len(self.links)


def read_batch(raw: Any, size: int, now_ms: int, kind: str | None = None) -> SegmentBatch:
    """Check `raw` (decoded JSON of `size` bytes) and map it. `kind` is the message type of a
    single-message route (`/v1/track`, ...); None for `/v1/batch`."""
    if not isinstance(raw, dict):
        raise InvalidMessage("body", "expected a JSON object")
    if kind is not None:
        if size > MAX_MESSAGE_BYTES:
            raise InvalidMessage("body", f"{size} bytes; at most {MAX_MESSAGE_BYTES} per message")
        return _map([{**raw, "type": kind}], now_ms, raw.get("sentAt"), "")
    if size > MAX_BATCH_BYTES:
        raise InvalidMessage("body", f"{size} bytes; at most {MAX_BATCH_BYTES} per batch")
    messages = raw.get("batch")
    if not isinstance(messages, list):
        raise InvalidMessage("batch", "expected an array of messages")
    for index, message in enumerate(messages):
        length = len(msgspec.json.encode(message))
        if length > MAX_MESSAGE_BYTES:
            raise InvalidMessage(
                f"batch.{index}", f"{length} bytes; at most {MAX_MESSAGE_BYTES} per message"
            )
    return _map(messages, now_ms, raw.get("sentAt"), "batch.")


def _map(messages: list[Any], now_ms: int, sent_at: Any, prefix: str) -> SegmentBatch:
    batch = SegmentBatch()
    pending: list[dict[str, Any]] = []
    origin: list[int] = []
    for index, message in enumerate(messages):
        named = f"{prefix}{index}." if prefix else ""
        if not isinstance(message, dict):
            raise InvalidMessage(named.rstrip(".") or "body", "expected a JSON object")
        kind = message.get("type")
        if kind not in MESSAGE_TYPES:
            raise InvalidMessage(
                f"{named}type", f"{kind!r} is not one of {', '.join(MESSAGE_TYPES)}"
            )
        if kind == "alias":
            batch.links.append(_alias(message, index, named))
            continue
        user_id = _user(message, named)
        if kind == "identify":
            anonymous = message.get("anonymousId")
            if message.get("userId") is not None and anonymous is not None:
                anonymous_id = check_user_id(
                    f"{named}anonymousId", _text(anonymous), InvalidMessage
                )
                if anonymous_id != user_id:
                    batch.links.append(Link(index, anonymous_id, user_id))
            continue
        context = _object(message.get("context"), f"{named}context")
        part = batch.users.setdefault(user_id, UserPart())
        pending.append(_movement(message, kind, user_id, context, now_ms, sent_at, named))
        origin.append(index)
        agent = context.get("userAgent")
        if isinstance(agent, str) and agent:
            part.user_agent = agent[:512]
    for start in range(0, len(pending), MAX_BATCH_EVENTS):
        group = pending[start : start + MAX_BATCH_EVENTS]
        for movement in _checked(group, origin[start:], now_ms, prefix):
            batch.users[movement.userId].movements.append(movement)
    return batch


def _checked(
    movements: list[dict[str, Any]], origin: list[int], now_ms: int, prefix: str
) -> list[Movement]:
    """The movements validated in one pass (the schema's batch check); an error names the
    message it came from, `batch.<index>.<field>`."""
    try:
        try:
            return movements_from_obj(pack_movements(movements), now_ms)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            # Not msgpack-able (an integer past 64 bits, half a surrogate pair): the slower
            # path names the field.
            return movements_from_obj(movements, now_ms)
    except InvalidInput as exc:
        at, _, rest = exc.field.removeprefix("events.").partition(".")
        index = origin[int(at)] if at.isdigit() else 0
        named = f"{prefix}{index}.{rest}" if prefix else rest or "body"
        raise InvalidMessage(named, exc.message) from None


def _alias(message: dict[str, Any], index: int, named: str) -> Link:
    previous = message.get("previousId")
    if previous is None:
        raise InvalidMessage(f"{named}previousId", "an alias needs the previous (anonymous) ID")
    if message.get("userId") is None:
        raise InvalidMessage(f"{named}userId", "an alias needs the user ID")
    anonymous_id = check_user_id(f"{named}previousId", _text(previous), InvalidMessage)
    user_id = check_user_id(f"{named}userId", _text(message["userId"]), InvalidMessage)
    if anonymous_id == user_id:
        raise InvalidMessage(f"{named}previousId", "is the user ID itself")
    return Link(index, anonymous_id, user_id)


def _user(message: dict[str, Any], named: str) -> str:
    for name in ("userId", "anonymousId"):
        value = message.get(name)
        if value is not None:
            return check_user_id(f"{named}{name}", _text(value), InvalidMessage)
    raise InvalidMessage(f"{named}userId", "a message needs a userId or an anonymousId")


def _text(value: Any) -> Any:
    """Segment's SDKs send IDs as strings, and numbers as they were given."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidMessage(name, "expected a JSON object")
    return value


def _movement(
    message: dict[str, Any],
    kind: str,
    user_id: str,
    context: dict[str, Any],
    now_ms: int,
    sent_at: Any,
    named: str,
) -> dict[str, Any]:
    properties = _object(message.get("properties"), f"{named}properties")
    page = _object(context.get("page"), f"{named}context.page")
    if kind == "page":
        data = _page_data(properties, page, context, named)
        event = "page_view"
    else:
        name = message.get("event")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise InvalidMessage(
                f"{named}event", "a track message needs an event name of 1-64 chars"
            )
        data = {"name": name, "properties": flatten(properties, f"{named}properties")}
        path = page.get("path")
        if isinstance(path, str) and path.startswith("/"):
            data["path"] = path
        event = "custom"
    timestamp = _timestamp(message, now_ms, message.get("sentAt", sent_at), named)
    return {
        "userId": user_id,
        "sessionId": _session(context, named),
        "timestamp": timestamp,
        "event": event,
        "data": data,
        "eventId": event_id(message),
    }


def _page_data(
    properties: dict[str, Any], page: dict[str, Any], context: dict[str, Any], named: str
) -> dict[str, Any]:
    path = properties.get("path", page.get("path"))
    url = properties.get("url", page.get("url"))
    if path is None and isinstance(url, str):
        path = urlsplit(url).path or "/"
    if path is None:
        raise InvalidMessage(f"{named}properties.path", "a page message needs a path (or a url)")
    if not isinstance(path, str):
        raise InvalidMessage(f"{named}properties.path", "expected a string")
    # A path only: its query string (which may hold personal data) is not kept.
    data: dict[str, Any] = {"path": path.split("?", 1)[0]}
    referrer = properties.get("referrer", page.get("referrer"))
    if isinstance(referrer, str) and referrer:
        host = urlsplit(referrer if "//" in referrer else f"//{referrer}").hostname
        if host:
            data["referrer"] = host
    utm = campaign(_object(context.get("campaign"), f"{named}context.campaign"), named)
    if utm:
        data["utm"] = utm
    title = properties.get("title", page.get("title"))
    name = properties.get("name")
    metadata = {k: v for k, v in (("title", title), ("name", name)) if isinstance(v, str)}
    if metadata:
        data["metadata"] = metadata
    return data


def campaign(raw: dict[str, Any], named: str) -> dict[str, str]:
    """`context.campaign` as `utm_*` parameters (Segment names them without the prefix)."""
    utm: dict[str, str] = {}
    for key, value in raw.items():
        target = _CAMPAIGN.get(key)
        if target is None or value is None:
            continue
        if not isinstance(value, str):
            raise InvalidMessage(f"{named}context.campaign.{key}", "expected a string")
        utm[target] = value
    return utm


def flatten(properties: dict[str, Any], name: str) -> dict[str, Any]:
    """Nested objects as dotted keys; arrays and nulls as their JSON text."""
    if all(type(value) in _FLAT for value in properties.values()):
        flat = properties
    else:
        flat = {}
        for key, value in properties.items():
            _walk(flat, value, key)
    if len(flat) > MAX_PROPERTIES:
        raise InvalidMessage(
            name, f"{len(flat)} properties once flattened; at most {MAX_PROPERTIES}"
        )
    return flat


_FLAT = (str, bool, int, float)


def _walk(flat: dict[str, Any], value: Any, key: str) -> None:
    if isinstance(value, dict) and value:
        for inner, item in value.items():
            _walk(flat, item, f"{key}.{inner}")
    elif isinstance(value, str | bool | int | float):
        flat[key] = value
    else:
        flat[key] = msgspec.json.encode(value).decode()


def _session(context: dict[str, Any], named: str) -> str:
    raw = _text(context.get("sessionId"))
    if raw is None:
        return AUTO_SESSION
    if not isinstance(raw, str) or not raw:
        raise InvalidMessage(f"{named}context.sessionId", "expected a string or an integer")
    return raw if len(raw) <= 128 and ids_valid(raw) else _hashed("s", raw)


def event_id(message: dict[str, Any]) -> str:
    """The movement's event ID: `messageId` where it follows our ID rule, else a stable hash of
    it (or, without one, of the whole message), so that a resent message counts once."""
    raw = message.get("messageId")
    if isinstance(raw, str) and raw and len(raw) <= 128 and ids_valid(raw):
        return raw
    if raw is None:
        return _hashed("c", msgspec.json.encode(message, order="deterministic").decode())
    return _hashed("m", str(raw))


def _hashed(kind: str, text: str) -> str:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{kind}-{digest}"


def auto_session_id(user_id: str, first_event_id: str) -> str:
    """The session a host starts for movements sent without a session, when the user has no
    current one: the same for a resent batch, so that its movements dedupe."""
    return _hashed("seg", f"{user_id}\n{first_event_id}")


def _timestamp(message: dict[str, Any], now_ms: int, sent_at: Any, named: str) -> int:
    """When it happened: `timestamp` (or `originalTimestamp`), shifted by the sender's clock
    error when `sentAt` says what its clock read at sending; the time received without one."""
    name = "timestamp" if message.get("timestamp") is not None else "originalTimestamp"
    raw = message.get(name)
    if raw is None:
        return now_ms
    at = _iso_ms(raw, f"{named}{name}")
    if sent_at is not None:
        at = now_ms - (_iso_ms(sent_at, f"{named}sentAt") - at)
    if at > now_ms + MAX_FUTURE_MS:
        raise InvalidMessage(f"{named}{name}", f"{raw!r} is more than 5 minutes ahead")
    return max(at, 0)


def _iso_ms(raw: Any, name: str) -> int:
    if not isinstance(raw, str):
        raise InvalidMessage(name, "expected an ISO 8601 date and time")
    parsed = _parsed_iso(raw)
    if isinstance(parsed, str):
        raise InvalidMessage(name, f"{raw[:64]!r} {parsed}")
    return parsed


@functools.lru_cache(maxsize=4096)
def _parsed_iso(raw: str) -> int | str:
    """`raw` in ms since the epoch, or what is wrong with it. Cached: a batch's `sentAt` is
    read for each of its messages, and an SDK stamps many messages alike."""
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return "is not an ISO 8601 date and time"
    if parsed.tzinfo is None:
        return "has no time zone"
    return int(parsed.timestamp() * 1000)


class SegmentMessageBody(msgspec.Struct, omit_defaults=True):
    """A Segment message as `/v1/track`, `/v1/page`, `/v1/identify` and `/v1/alias` take it
    (and `/v1/batch` in `batch`, with its `type`). Other fields are read as Segment reads them
    or ignored; the routes check each message as `read_batch` says."""

    type: str | None = None
    userId: str | int | None = None
    anonymousId: str | int | None = None
    previousId: str | int | None = None
    event: str | None = None
    messageId: str | None = None
    timestamp: str | None = None
    sentAt: str | None = None
    properties: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None


class SegmentBatchBody(msgspec.Struct, omit_defaults=True):
    """The body of `/v1/batch`."""

    batch: list[SegmentMessageBody]
    sentAt: str | None = None
    context: dict[str, Any] | None = None
