"""Links from anonymous IDs to users (`identify`, `alias`): the durable records and the move.

Linking anonymous visitor A to user U happens in three steps, each safe to run again, so that a
link cut short by a crash is completed by the next try (a client resends an unanswered one):

1. **The link record.** `links/anonymous/<hash of A>` is created, create-only, naming U. It is
   what makes A link to one user at most: a second link of A to another user finds it and is
   refused (`AlreadyLinked`); one to U again goes on. U's own list of linked IDs,
   `links/users/<hash of U>/<hash of A>`, is written next: erasing U reads it.
2. **The move.** A's stored history (`export`) is tracked into U's, session by session, with
   the same session and event IDs, so a move run again stores nothing twice. The moved events
   are not shown to the site's analytics, which counted them when A sent them.
3. **The drop.** A's data is erased (memory, storage, alarm, analytics' mentions of A). The
   link record stays: it keeps refusing a link of A to another user.

Erasing U erases every linked anonymous ID (any data of theirs not moved yet) and the link
records. Plain functions over `ctx.storage`; the host actor runs the steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

from tracker import codec
from tracker.errors import AlreadyLinked
from tracker.schema import MAX_BATCH_EVENTS, Movement, MovementData, pack_movements
from tracker.storage import ObjectExists, ObjectMissing, Storage

LINK = "link"


def _hashed(user_id: str) -> str:
    digest = hashlib.sha256(user_id.encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:40]}"


def anonymous_key(anonymous_id: str) -> str:
    return f"links/anonymous/{_hashed(anonymous_id)}"


def user_prefix(user_id: str) -> str:
    return f"links/users/{_hashed(user_id)}"


def _user_entry(user_id: str, anonymous_id: str) -> str:
    return f"{user_prefix(user_id)}/{_hashed(anonymous_id).replace('/', '')}"


async def claim(storage: Storage, anonymous_id: str, user_id: str) -> None:
    """Step 1: record that `anonymous_id` is `user_id`'s, or raise `AlreadyLinked` if it is
    another user's. Idempotent for the same pair."""
    body = codec.encode(LINK, {"anonymousId": anonymous_id, "userId": user_id})
    try:
        await storage.put(anonymous_key(anonymous_id), body, if_absent=True)
    except ObjectExists:
        data, _etag = await storage.get(anonymous_key(anonymous_id))
        owner = codec.decode(LINK, data)["userId"]
        if owner != user_id:
            raise AlreadyLinked(
                f"anonymous ID {anonymous_id!r} is linked to another user already; "
                f"it cannot be linked to {user_id!r} too"
            ) from None
    await storage.put(_user_entry(user_id, anonymous_id), body)


async def linked(storage: Storage, user_id: str) -> list[str]:
    """The anonymous IDs linked to `user_id`."""
    found = []
    for info in await storage.list_objects(user_prefix(user_id)):
        try:
            data, _etag = await storage.get(info.key)
        except ObjectMissing:
            continue
        found.append(str(codec.decode(LINK, data, info.key)["anonymousId"]))
    return found


async def unlink(storage: Storage, user_id: str, anonymous_ids: Iterable[str]) -> None:
    """Erasure of `user_id`: their link records, once the anonymous IDs' data is erased."""
    await storage.delete([anonymous_key(a) for a in anonymous_ids])
    await storage.delete_folder(user_prefix(user_id))


def moved(
    lines: Iterable[dict[str, Any]], user_id: str
) -> list[tuple[bytes, dict[str, Any] | None]]:
    """Step 2's calls: an anonymous visitor's exported history as `user_id`'s movements, in
    batches (`pack_movements`) of one session each, with that session's device info."""
    devices: dict[str, dict[str, Any] | None] = {}
    sessions: dict[str, list[Movement]] = {}
    for line in lines:
        session_id = line["sessionId"]
        if line.get("type") == "session":
            devices[session_id] = line.get("deviceInfo")
            continue
        movement = Movement(
            userId=user_id,
            sessionId=session_id,
            timestamp=line["timestamp"],
            event=line["event"],
            data=msgspec.convert(line.get("data", {}), type=MovementData),
            eventId=line.get("eventId") or _derived_id(line),
        )
        sessions.setdefault(session_id, []).append(movement)
    calls = []
    for session_id, movements in sessions.items():
        for start in range(0, len(movements), MAX_BATCH_EVENTS):
            packed = pack_movements(movements[start : start + MAX_BATCH_EVENTS])
            calls.append((packed, devices.get(session_id)))
    return calls


def _derived_id(line: dict[str, Any]) -> str:
    """An event ID for a stored movement that has none, the same on every try of a move."""
    text = msgspec.json.encode(line, order="deterministic")
    return "mv-" + hashlib.blake2b(text, digest_size=16).hexdigest()
