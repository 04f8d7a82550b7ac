"""The one error tree of the project.

Every error a caller can see is a `TrackerError`. Those caused by bad input also inherit the
built-in exception a Python caller would reach for (`ValueError`, `KeyError`, `PermissionError`),
so `except ValueError` works as well as `except InvalidMovement`. HTTP status codes are mapped
from these classes in exactly one place, `tracker.http_errors`.
"""

from __future__ import annotations

import math


class TrackerError(Exception):
    """Base of every error raised by the tracker."""


class InvalidInput(TrackerError, ValueError):
    """A request or record does not match the declared schema; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[str, str]]:
        return (type(self), (self.field, self.message))


class InvalidMovement(InvalidInput):
    """A movement (tracked event) is malformed."""


class InvalidSession(InvalidInput):
    """A session creation request is malformed."""


class InvalidDefinition(InvalidInput):
    """A goal, funnel or experiment definition, or a query over them, is malformed."""


class InvalidMessage(InvalidInput):
    """A Segment message is malformed or over its size (the whole batch is refused, HTTP 400 as
    Segment answers it); `field` is `batch.<index>.<field>`."""


class AlreadyLinked(TrackerError):
    """An anonymous ID is linked to another user already (HTTP 409)."""


class TooLarge(InvalidInput):
    """A body, batch or field is larger than allowed."""


class UnsupportedMediaType(TrackerError, ValueError):
    """The request body's content type is not one this route reads (HTTP 415)."""


class NotFound(TrackerError, KeyError):
    """The thing named does not exist (HTTP 404)."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownDefinition(NotFound):
    """No goal, funnel or experiment of this name is defined."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {name!r}")
        self.kind = kind
        self.name = name

    def __reduce__(self) -> tuple[type[UnknownDefinition], tuple[str, str]]:
        return (type(self), (self.kind, self.name))


class UnknownSession(NotFound):
    """No session with this ID exists for this user."""

    def __init__(self, user_id: str, session_id: str) -> None:
        super().__init__(f"no session {session_id!r} for user {user_id!r}")
        self.user_id = user_id
        self.session_id = session_id

    def __reduce__(self) -> tuple[type[UnknownSession], tuple[str, str]]:
        return (type(self), (self.user_id, self.session_id))


class Unauthorized(TrackerError, PermissionError):
    """Credentials are missing or wrong (HTTP 401)."""


class Forbidden(TrackerError, PermissionError):
    """Credentials are valid but do not allow this user or action (HTTP 403)."""


class RateLimited(TrackerError):
    """Too many requests from one client or for one user (HTTP 429)."""

    def __init__(self, retry_after_s: float) -> None:
        # Whole seconds, at least one: what a Retry-After header can say, so that the message
        # and the header agree (in tenths, a wait of 0.04 s would read "retry after 0.0s"
        # beside "Retry-After: 1").
        self.retry_after_whole_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"rate limited; retry after {self.retry_after_whole_s} s")
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[RateLimited], tuple[float]]:
        return (type(self), (self.retry_after_s,))


class UnknownAsset(NotFound):
    """No file of the browser client is served under this name (an older build's, say)."""

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 100 else f"{name[:100]}..."
        super().__init__(f"asset: no file of the browser client is named {shown!r}")
        self.name = name

    def __reduce__(self) -> tuple[type[UnknownAsset], tuple[str]]:
        return (type(self), (self.name,))

    def __str__(self) -> str:
        return str(self.args[0])


class RequestTimeout(TrackerError):
    """A request body did not arrive in the time allowed (HTTP 408)."""


class StorageUnavailable(TrackerError):
    """Object storage refused or failed a write; nothing was acknowledged (HTTP 503)."""

    retry_after_s = 1  # what the HTTP answer's Retry-After says


class HostBusy(StorageUnavailable):
    """Too many requests wait for this user's host already; this one was not sent (HTTP 503)."""


class HostRetired(StorageUnavailable):
    """This host has stopped for good (per-user placement: its user was erased, or it idled
    out); the call is to be made again, to the user's next host."""


class TooManyUserActors(StorageUnavailable):
    """Per-user placement: as many per-user actors as allowed are live; this user's was not
    started, nothing was sent (HTTP 503, `Retry-After`)."""

    retry_after_s = 10

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(
            f"{limit} per-user actors are live already (TRACKER_MAX_USER_ACTORS); the tracker "
            f"of {user_id!r} was not started, nothing was stored; retry later"
        )
        self.user_id = user_id
        self.limit = limit

    def __reduce__(self) -> tuple[type[TooManyUserActors], tuple[str, int]]:
        return (type(self), (self.user_id, self.limit))


class Fenced(StorageUnavailable):
    """A newer incarnation of this host owns its storage; this one may no longer write."""


class ConfigError(TrackerError, ValueError):
    """A configuration value is missing or malformed; the message names key and value."""
