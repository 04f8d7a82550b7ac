"""tracker: records how people move through a website, per user, on Ray.

The public surface is small: `connect()` returns a `Tracker`; `Tracker.user(id)` returns a
handle whose methods follow Ray's `.remote(...)` convention; errors live in `tracker.errors`;
configuration in `tracker.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.config import Config
from tracker.errors import (
    Fenced,
    Forbidden,
    InvalidInput,
    InvalidMovement,
    InvalidSession,
    RateLimited,
    StorageUnavailable,
    TooLarge,
    TrackerError,
    Unauthorized,
    UnknownSession,
)

if TYPE_CHECKING:
    from tracker.api import Tracker, UserHandle, connect

__all__ = [
    "Config",
    "Fenced",
    "Forbidden",
    "InvalidInput",
    "InvalidMovement",
    "InvalidSession",
    "RateLimited",
    "StorageUnavailable",
    "TooLarge",
    "Tracker",
    "TrackerError",
    "Unauthorized",
    "UnknownSession",
    "UserHandle",
    "connect",
]


def __getattr__(name: str) -> Any:
    # Ray is imported only when the API is used, so the domain modules stay light to import.
    if name in ("connect", "Tracker", "UserHandle"):
        from tracker import api

        return getattr(api, name)
    raise AttributeError(name)
