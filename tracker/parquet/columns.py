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

# The keys of a movement's `data` that are columns of their own, as they are; the others
# (`coordinates`, `utm`, and the JSON ones) are spread below.
_PLAIN_DATA = ("path", "element", "duration", "scrollX", "scrollY", "name", "referrer")
_JSON_DATA = ("metadata", "properties")
# What a session row reads of the stored session as it is, and of what was derived of it.
_DERIVED = ("referrer", "channel", "browser", "os", "device", "country", "bot")
_DEVICE = ("userAgent", "screenResolution", "timezone")
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
    """A share of users' rows, as columns, for one table."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.columns: dict[str, list[Any]] = {
            name: [] for name in schema.names if name != PARTITION
        }

    def add(self, row: dict[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(row.get(name))

    def table(self, day_of: str) -> pa.Table:
        """The rows as a table of `schema`, `date` the UTC day of the column `day_of`."""
        arrays = [
            pa.array(self.columns[f.name], type=f.type) for f in self.schema if f.name != PARTITION
        ]
        fields = [f for f in self.schema if f.name != PARTITION]
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        days = pc.strftime(table.column(day_of), format="%Y-%m-%d", locale="C")
        return table.append_column(self.schema.field(PARTITION), days)


def movement_row(line: dict[str, Any]) -> dict[str, Any]:
    """One movement of `export_lines` as a row of `MOVEMENTS`."""
    data: dict[str, Any] = line.get("data") or {}
    row = {
        "userId": line["userId"],
        "sessionId": line["sessionId"],
        "eventId": line.get("eventId"),
        "timestamp": line["timestamp"],
        "receivedAt": line["receivedAt"],
        "event": line["event"],
    }
    for key in _PLAIN_DATA:
        row[key] = data.get(key)
    for key in _JSON_DATA:
        value = data.get(key)
        row[key] = None if value is None else _json.encode(value).decode()
    coordinates = data.get("coordinates") or {}
    row["x"] = coordinates.get("x")
    row["y"] = coordinates.get("y")
    row.update(_utm(data.get("utm")))
    return row


def session_row(line: dict[str, Any]) -> dict[str, Any]:
    """One session of `export_lines` as a row of `SESSIONS`: what was derived of the visit
    where the stored session holds it (`visit`), null where it does not (a session stored
    before visits were derived); never an IP address: none is stored."""
    row = {
        "userId": line["userId"],
        "sessionId": line["sessionId"],
        "start": line["startTime"],
        "lastActivity": line["lastActivity"],
    }
    visit: dict[str, Any] | None = line.get("visit")
    for key in _DERIVED:
        row[key] = None if visit is None else visit.get(key)
    if visit is not None:
        row["bot"] = bool(visit.get("bot", False))
    row.update(_utm(None if visit is None else visit.get("utm")))
    device: dict[str, Any] = line.get("deviceInfo") or {}
    for key in _DEVICE:
        row[key] = device.get(key)
    return row


def _utm(campaign: Any) -> dict[str, Any]:
    """The `utm_*` columns of a campaign as stored (a map of the parameters set)."""
    if not isinstance(campaign, dict):
        return dict.fromkeys(UTM)
    return {key: campaign.get(key) for key in UTM}


def user_rows(
    user_id: str, records: Iterable[Record], window: Window, movements: Rows, sessions: Rows
) -> None:
    """Add a user's history (their stored records) to the rows of both tables: the movements
    received in `window`, the sessions whose first event was."""
    for line in export_lines(user_id, records):
        if line["type"] == "movement":
            if window.holds(line["receivedAt"]):
                movements.add(movement_row(line))
        elif window.holds(line["startTime"]):
            sessions.add(session_row(line))
