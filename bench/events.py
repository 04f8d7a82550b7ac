"""Valid movements for the Python-handle and in-process scenarios (the HTTP ones send JSON)."""

from __future__ import annotations

import itertools
import random
import time
import uuid
from typing import Any

from tracker import codec
from tracker.schema import Movement, movement_from_obj


def user_ids(count: int) -> list[str]:
    """Anonymous visitors: random UUIDs, as tracker.js makes them."""
    return [str(uuid.uuid4()) for _ in range(count)]


class Movements:
    """Movement dicts like tracker.js sends: a click with coordinates and page facts."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count(1)
        self._data: list[dict[str, Any]] = []

    def one(self, user_id: str, session: str | None = None) -> dict[str, Any]:
        return {
            "userId": user_id,
            "sessionId": session or f"s-{user_id[:8]}",
            "timestamp": time.time_ns() // 1_000_000,
            "event": "click",
            "data": {
                "path": f"/products/{random.randrange(50)}",
                "element": "button#buy",
                "coordinates": {"x": random.randrange(1280), "y": random.randrange(3000)},
                "metadata": {"viewportWidth": 1280, "viewportHeight": 800},
            },
            "eventId": f"{self.prefix}-{next(self.counter)}",
        }

    def batch(self, user_id: str, count: int, session: str | None = None) -> list[dict[str, Any]]:
        """`count` movements, cheaper to make than `one` each: the client must not be what
        limits a batch benchmark (the event data repeats; every eventId is still new)."""
        if not self._data:
            self._data = [self.one("x")["data"] for _ in range(64)]
        ts = time.time_ns() // 1_000_000
        session = session or f"s-{user_id[:8]}"
        data = self._data
        return [
            {
                "userId": user_id,
                "sessionId": session,
                "timestamp": ts,
                "event": "click",
                "data": data[n % 64],
                "eventId": f"{self.prefix}-{n}",
            }
            for n in itertools.islice(self.counter, count)
        ]


def encoded_size(movement: dict[str, Any]) -> int:
    """Bytes of a movement's own msgpack encoding, every field included (`codec.encoded_size`):
    what one event weighs, whatever the tracker stores of it."""
    valid: Movement = movement_from_obj(movement, time.time_ns() // 1_000_000)
    return codec.encoded_size(valid)


def stored_size(movement: dict[str, Any]) -> int:
    """Bytes of a movement as the tracker stores it (without the IDs its place gives it)."""
    valid: Movement = movement_from_obj(movement, time.time_ns() // 1_000_000)
    (raw,) = codec.blob_items(codec.encode_blob([valid]))
    return len(raw)


def stored_request_size(movements: list[dict[str, Any]]) -> int:
    """Bytes of one request's movements in the stored form (format 2) the tracker logs, keeps
    and writes to history: per session one msgpack array of `[eventId, timestamp, event,
    data]`, the user and session said once by the record that holds it, not by each movement."""
    now = time.time_ns() // 1_000_000
    valid = [movement_from_obj(movement, now) for movement in movements]
    return sum(len(blob) for _, blob in codec.encode_entries(valid))
