"""The report's filters and options, read from query parameters (strings) and checked: a bad
value is an `InvalidInput` naming its parameter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from tracker.errors import InvalidInput
from tracker.query.events import Visit
from tracker.visits.channels import CHANNELS
from tracker.visits.technology import DEVICES

DAY_MS = 24 * 3600 * 1000
DEFAULT_RANGE_MS = 30 * DAY_MS
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_FILTER_CHARS = 256
_COUNTRY = re.compile(r"^[A-Z]{2}$(?!\n)")
# The filters on what was derived of a visit, by parameter and `Visit` attribute.
VISIT_FILTERS = ("referrer", "channel", "country", "browser", "os", "device")
FILTERS = ("path", *VISIT_FILTERS, "event")


@dataclass(frozen=True)
class Filters:
    """Which visits a report counts: all set filters must hold (they combine). `path`: the
    visit viewed that page; `event`: it had that custom event; the others: what was derived
    of the visit. `bots`: whether bots' visits count."""

    path: str | None = None
    referrer: str | None = None
    channel: str | None = None
    country: str | None = None
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    event: str | None = None
    bots: bool = False

    def visit_matches(self, visit: Visit) -> bool:
        if visit.bot and not self.bots:
            return False
        for name in VISIT_FILTERS:
            wanted = getattr(self, name)
            if wanted is not None and getattr(visit, name) != wanted:
                return False
        return True

    def active(self) -> dict[str, str]:
        return {name: value for name in FILTERS if (value := getattr(self, name)) is not None}


@dataclass(frozen=True)
class ReportOptions:
    """A report's range (`from_ms` to `to_ms`, inclusive), filters, comparison and list size."""

    from_ms: int
    to_ms: int
    filters: Filters
    compare: bool = False
    limit: int = DEFAULT_LIMIT

    def previous(self) -> ReportOptions:
        """The preceding range of equal length (cut at the epoch; empty before it)."""
        length = self.to_ms - self.from_ms + 1
        start = max(0, self.from_ms - length)
        return replace(self, from_ms=start, to_ms=max(start, self.from_ms - 1))


def filter_value(name: str, value: str) -> str:
    """One filter's value, checked."""
    if name == "path":
        if not value.startswith("/") or len(value) > 2048:
            raise InvalidInput("path", f"{value[:64]!r} is not a page path (/..., ≤ 2048 chars)")
    elif not value or len(value) > MAX_FILTER_CHARS:
        raise InvalidInput(name, f"expected 1-{MAX_FILTER_CHARS} characters")
    elif name == "channel" and value not in CHANNELS:
        raise InvalidInput("channel", f"{value!r} is not one of {', '.join(CHANNELS)}")
    elif name == "device" and value not in DEVICES:
        raise InvalidInput("device", f"{value!r} is not one of {', '.join(DEVICES)}")
    elif name == "country" and not _COUNTRY.match(value):
        raise InvalidInput("country", f"{value!r} is not a two-letter country code (GB)")
    elif name == "event" and len(value) > 64:
        raise InvalidInput("event", "a custom event's name has at most 64 characters")
    return value


def report_options(
    params: Mapping[str, str], now_ms: int, from_ms: int | None, to_ms: int | None
) -> ReportOptions:
    """The options of `GET /api/analytics`: `from`/`to` already read (default: the 30 days up to
    now), the filters, `bots=include`, `compare=previous`, `limit` (1-100, default 10)."""
    values = {name: filter_value(name, params[name]) for name in FILTERS if params.get(name)}
    bots = params.get("bots", "exclude")
    if bots not in ("include", "exclude"):
        raise InvalidInput("bots", f"{bots[:32]!r} is not include or exclude")
    compare = params.get("compare")
    if compare not in (None, "", "previous"):
        raise InvalidInput("compare", f"{compare[:32]!r} is not previous")
    limit_text = params.get("limit") or str(DEFAULT_LIMIT)
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise InvalidInput("limit", f"{limit_text[:32]!r} is not a number from 1 to {MAX_LIMIT}")
    end = now_ms if to_ms is None else to_ms
    start = max(0, end - DEFAULT_RANGE_MS + 1) if from_ms is None else from_ms
    if start > end:
        raise InvalidInput("from", f"{start} is after to ({end})")
    return ReportOptions(
        start,
        end,
        Filters(**values, bots=bots == "include"),
        compare=compare == "previous",
        limit=int(limit_text),
    )
