"""What many test modules share: the time and a movement as a client sends them, running a
coroutine from a plain test, waiting on a condition (from a plain test or inside the event
loop), and the `storage` fixture (registered as a plugin by conftest)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from tracker.storage import Storage, open_storage

T = TypeVar("T")


def now_ms() -> int:
    """The wall-clock time in ms since the epoch, as movements are stamped."""
    return time.time_ns() // 1_000_000


def movement(
    user: str = "alice",
    session: str = "s1",
    *,
    at: int | None = None,
    event: str = "click",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A movement as a client posts it: `user`'s `event` in `session` at `at` (ms since the
    epoch, now if not given) with `data` (a click on a button if not given), and any other
    top-level `fields` (`eventId`, say)."""
    return {
        "userId": user,
        "sessionId": session,
        "timestamp": now_ms() if at is None else at,
        "event": event,
        "data": (
            {"path": "/", "element": "button#go", "coordinates": {"x": 10, "y": 20}}
            if data is None
            else data
        ),
        **fields,
    }


def run(awaitable: Awaitable[T]) -> T:
    """Run `awaitable` to its end in a new event loop (from a test that is not async)."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def wait_for(
    condition: Callable[[], T | None],
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after
    `timeout_s`, naming what was waited for (`message`). For conditions on other processes,
    threads or a browser page."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {message} (last value: {last!r})"
            )
        time.sleep(interval_s)


async def eventually(
    condition: Callable[[], T | None],
    timeout_s: float = 30.0,
    interval_s: float = 0.001,
    message: str = "condition",
) -> T:
    """Let the event loop run until `condition()` returns something truthy, and return that;
    fail after `timeout_s`, naming what was waited for (`message`). For conditions on tasks
    of the running loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {message} (last value: {last!r})"
            )
        await asyncio.sleep(interval_s)


@pytest.fixture
def storage(storage_url: str) -> Storage:
    """Storage behind `storage_url`: a test using it runs once over local files and once
    over S3."""
    return open_storage(storage_url)
