"""The Parquet export's two tables, declared once: their schemas, and how a user's history
becomes their rows.

A user's history is read as the NDJSON export reads it (`user_tracker.export_lines`: sessions,
then movements, each event once), so the two exports hold the same events. A movement's
`data` is flattened into a column per field; `metadata` and a custom event's `properties` are
JSON text, as their shape is the site's own. Times are UTC timestamps in milliseconds. `date`
is the partition: the UTC day of a movement's `timestamp`, of a session's `start`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from tracker.codec import Record
from tracker.user_tracker import export_lines

TIME = pa.timestamp("ms", tz="UTC")
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
PARTITION = "date"

MOVEMENTS = pa.schema(
    [
        pa.field("userId", pa.string(), nullable=False),
        pa.field("sessionId", pa.string(), nullable=False),
        pa.field("eventId", pa.string()),
        pa.field("timestamp", TIME, nullable=False),
        pa.field("receivedAt", TIME, nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("element", pa.string()),
        pa.field("x", pa.float64()),
        pa.field("y", pa.float64()),
        pa.field("duration", pa.float64()),
        pa.field("scrollX", pa.float64()),
        pa.field("scrollY", pa.float64()),
        pa.field("name", pa.string()),
        pa.field("properties", pa.string()),
        pa.field("referrer", pa.string()),
        *(pa.field(key, pa.string()) for key in UTM),
        pa.field("metadata", pa.string()),
        pa.field(PARTITION, pa.string(), nullable=False),
    ]
)

SESSIONS = pa.schema(
    [
        pa.field("userId", pa.string(), nullable=False),
        pa.field("sessionId", pa.string(), nullable=False),
        pa.field("start", TIME, nullable=False),
        pa.field("lastActivity", TIME, nullable=False),
        pa.field("referrer", pa.string()),
        pa.field("channel", pa.string()),
        *(pa.field(key, pa.string()) for key in UTM),
        pa.field("browser", pa.string()),
        pa.field("os", pa.string()),
        pa.field("device", pa.string()),
        pa.field("country", pa.string()),
        pa.field("bot", pa.bool_()),
        pa.field("userAgent", pa.string()),
        pa.field("screenResolution", pa.string()),
        pa.field("timezone", pa.string()),
        pa.field(PARTITION, pa.string(), nullable=False),
    ]
)

# Where each column is found in a line of `export_lines`: the path of keys to it.
_MOVEMENT_SOURCES: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in ("userId", "sessionId", "eventId", "timestamp", "receivedAt")},
    "event": ("event",),
    **{name: ("data", name) for name in ("path", "element", "duration", "scrollX", "scrollY")},
    "x": ("data", "coordinates", "x"),
    "y": ("data", "coordinates", "y"),
    **{name: ("data", name) for name in ("name", "properties", "referrer", "metadata")},
    **{name: ("data", "utm", name) for name in UTM},
}
_SESSION_SOURCES: dict[str, tuple[str, ...]] = {
    "userId": ("userId",),
    "sessionId": ("sessionId",),
    "start": ("startTime",),
    "lastActivity": ("lastActivity",),
    **{name: ("visit", name) for name in ("referrer", "channel", "browser", "os", "device")},
    **{name: ("visit", name) for name in ("country", "bot")},
    **{name: ("visit", "utm", name) for name in UTM},
    **{name: ("deviceInfo", name) for name in ("userAgent", "screenResolution", "timezone")},
}
# A movement's `data` fields whose shape is the site's own: JSON text.
_JSON_DATA = ("metadata", "properties")
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Window:
    """Which events an export holds: those received in `[from_ms, to_ms)` (None: no bound);
    and sessions whose first event was. By receipt, not by the event's own time, so that
    consecutive windows hold every event once, however late its device sent it."""

    from_ms: int | None = None
    to_ms: int | None = None

    def holds(self, ms: int) -> bool:
        return (self.from_ms is None or ms >= self.from_ms) and (
            self.to_ms is None or ms < self.to_ms
        )


class Rows:
    """A share of users' lines (`export_lines`) for one table, made columns in one pass of
    Arrow's own: the lines are read as nested structs, whose fields are the columns."""

    def __init__(self, schema: pa.Schema, sources: dict[str, tuple[str, ...]], day_of: str):
        self.schema = schema
        self.sources = sources
        self.day_of = day_of
        self.line_type = _nested([(sources[f.name], f.type) for f in schema if f.name in sources])
        self.lines: list[dict[str, Any]] = []

    def add(self, line: dict[str, Any]) -> None:
        self.lines.append(line)

    def __len__(self) -> int:
        return len(self.lines)

    def table(self) -> pa.Table:
        """The rows as a table of `schema`, `date` the UTC day of the column `day_of`."""
        lines = pa.array(self.lines, type=self.line_type)
        fields = [f for f in self.schema if f.name != PARTITION]
        arrays = [_field(lines, self.sources[f.name]) for f in fields]
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        days = pc.strftime(table.column(self.day_of), format="%Y-%m-%d", locale="C")
        return table.append_column(self.schema.field(PARTITION), days)


def movements() -> Rows:
    """Rows of the movements table: a movement of `export_lines` is one (its data flattened)."""
    return Rows(MOVEMENTS, _MOVEMENT_SOURCES, "timestamp")


def sessions() -> Rows:
    """Rows of the sessions table: what was derived of the visit where the stored session
    holds it (`visit`), null where it does not (a session stored before visits were
    derived); never an IP address, none is stored."""
    return Rows(SESSIONS, _SESSION_SOURCES, "start")


def _nested(paths: list[tuple[tuple[str, ...], pa.DataType]]) -> pa.StructType:
    """The struct type holding each `path` with its type."""
    tree: dict[str, Any] = {}
    for path, kind in paths:
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = kind

    def build(node: dict[str, Any]) -> pa.StructType:
        return pa.struct(
            [
                (key, build(value) if isinstance(value, dict) else value)
                for key, value in node.items()
            ]
        )

    return build(tree)


def _field(lines: pa.StructArray, path: tuple[str, ...]) -> pa.Array:
    column = pc.struct_field(lines, list(path))
    if path == ("visit", "bot"):
        # A visit derived without the bot flag is a person's; no visit at all is unknown.
        known = pc.is_valid(pc.struct_field(lines, ["visit"]))
        column = pc.if_else(known, pc.fill_null(column, False), pa.scalar(None, pa.bool_()))
    return column


def user_rows(
    user_id: str, records: Iterable[Record], window: Window, moves: Rows, starts: Rows
) -> None:
    """Add a user's history (their stored records) to the rows of both tables: the movements
    received in `window`, the sessions whose first event was."""
    for line in export_lines(user_id, records):
        if line["type"] == "movement":
            if window.holds(line["receivedAt"]):
                data = line.get("data")
                if data:
                    for key in _JSON_DATA:
                        if key in data:
                            data[key] = _json.encode(data[key]).decode()
                moves.add(line)
        elif window.holds(line["startTime"]):
            starts.add(line)
