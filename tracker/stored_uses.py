"""Uses of users' stored data under way outside compactions (a write, an export's read), by
user: an erasure waits for them to end before it deletes, or a write landing after the
deletion would store the user again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class StoredUses:
    """A count of the uses under way per user, and a wait for a user's to end."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._ended: dict[str, asyncio.Event] = {}

    @contextlib.contextmanager
    def counted(self, user_id: str) -> Iterator[None]:
        """Around one use of the user's stored data."""
        self._counts[user_id] = self._counts.get(user_id, 0) + 1
        try:
            yield
        finally:
            left = self._counts[user_id] - 1
            if left:
                self._counts[user_id] = left
            else:
                del self._counts[user_id]
                ended = self._ended.pop(user_id, None)
                if ended is not None:
                    ended.set()

    async def ended(self, user_id: str) -> None:
        """Wait until no use of the user's stored data is under way."""
        while user_id in self._counts:
            await self._ended.setdefault(user_id, asyncio.Event()).wait()
