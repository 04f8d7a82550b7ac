"""The Parquet export's parts without a cluster: a user's history as rows of the two declared
tables, the files of an export window, the rewrites that erasure and retention make, and the
hours an hourly export owes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tracker import codec
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.parquet.columns import MOVEMENTS, SESSIONS, Window, movements, sessions, user_rows
from tracker.parquet.destination import (
    delete_window,
    drop_before,
    erase_user,
    open_destination,
    parquet_files,
    window_tag,
)
from tracker.parquet.hours import HOUR_MS, ExportHours
from tracker.schema import Movement, MovementData

DAY_MS = 24 * HOUR_MS
T0 = 1_796_000_000_000  # 2026-11-30T00:53:20Z


def track(user: str, session: str, received_ms: int, *movements: dict[str, Any]) -> list[Any]:
    """A stored `track` record of `user`'s movements in `session`, received at `received_ms`."""
    decoded = [
        msgspec.convert({"userId": user, "sessionId": session, **m}, Movement) for m in movements
    ]
    return ["track", user, received_ms, [[session, codec.encode_blob(decoded)]]]


def started(
    user: str, session: str, received_ms: int, visit: dict[str, Any] | None = None
) -> list[Any]:
    """A stored `session` record, with what was derived of the visit if `visit` is given."""
    payload: list[Any] = [session, {"userAgent": "Firefox"}]
    return ["session", user, received_ms, payload if visit is None else [*payload, visit]]


def rows_of(user: str, records: list[Any], window: Window | None = None) -> tuple[Any, Any]:
    moves, starts = movements(), sessions()
    user_rows(user, records, window or Window(), moves, starts)
    return moves.table().to_pylist(), starts.table().to_pylist()


def test_every_field_a_movement_may_carry_has_a_column() -> None:
    columns = set(MOVEMENTS.names)
    spread = {"coordinates": {"x", "y"}, "utm": {"utm_source"}}
    for name in MovementData.__struct_fields__:
        assert spread.get(name, {name}) <= columns, f"data.{name} has no column"


def test_a_movements_data_is_flattened_into_columns_and_json_text() -> None:
    records = [
        started("alice", "s1", T0),
        track(
            "alice",
            "s1",
            T0 + 5,
            {
                "eventId": "e1",
                "timestamp": T0 - DAY_MS,
                "event": "click",
                "data": {
                    "path": "/pricing",
                    "element": "button#buy",
                    "coordinates": {"x": 10.5, "y": 20},
                    "metadata": {"plan": "pro", "seats": [1, 2]},
                },
            },
        ),
    ]
    movements, sessions = rows_of("alice", records)
    (row,) = movements
    assert row["userId"] == "alice" and row["sessionId"] == "s1" and row["eventId"] == "e1"
    assert row["event"] == "click" and row["path"] == "/pricing"
    assert row["element"] == "button#buy" and (row["x"], row["y"]) == (10.5, 20.0)
    assert json.loads(row["metadata"]) == {"plan": "pro", "seats": [1, 2]}
    assert row["timestamp"].timestamp() * 1000 == T0 - DAY_MS
    assert row["receivedAt"].timestamp() * 1000 == T0 + 5
    assert row["date"] == "2026-11-29"  # the event's own day, not the day it arrived
    assert row["scrollX"] is None and row["properties"] is None and row["utm_source"] is None
    (session,) = sessions
    assert session["userAgent"] == "Firefox"
    assert session["bot"] is None and session["channel"] is None  # nothing derived was stored
    assert session["start"].timestamp() * 1000 == T0
    assert session["lastActivity"].timestamp() * 1000 == T0 + 5


def test_a_sessions_row_carries_what_was_derived_of_its_visit() -> None:
    visit = {
        "channel": "paid",
        "referrer": "news.example",
        "utm": {"utm_source": "newsletter", "utm_campaign": "winter"},
        "browser": "Firefox",
        "os": "Linux",
        "device": "desktop",
        "country": "FR",
    }
    _, sessions = rows_of("alice", [started("alice", "s1", T0, visit)])
    (row,) = sessions
    assert {k: row[k] for k in (*visit, "bot") if k != "utm"} == {
        **{k: v for k, v in visit.items() if k != "utm"},
        "bot": False,
    }
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == (
        "newsletter",
        None,
        "winter",
    )


def test_a_window_holds_the_movements_received_in_it_and_the_sessions_begun_in_it() -> None:
    click = {"timestamp": T0, "event": "click"}
    records = [
        started("alice", "s1", T0),
        track("alice", "s1", T0 + 10, {**click, "eventId": "early"}),
        started("alice", "s2", T0 + HOUR_MS),
        track("alice", "s1", T0 + HOUR_MS + 10, {**click, "eventId": "late"}),
    ]
    movements, sessions = rows_of("alice", records, Window(T0 + HOUR_MS, T0 + 2 * HOUR_MS))
    assert [m["eventId"] for m in movements] == ["late"]
    assert [s["sessionId"] for s in sessions] == ["s2"]
    movements, sessions = rows_of("alice", records, Window(None, T0 + HOUR_MS))
    assert [m["eventId"] for m in movements] == ["early"]
    assert [s["sessionId"] for s in sessions] == ["s1"]


def test_an_event_stored_twice_is_one_row() -> None:
    click = {"eventId": "e1", "timestamp": T0, "event": "click"}
    records = [track("alice", "s1", T0, click), track("alice", "s1", T0 + 1, click)]
    movements, _ = rows_of("alice", records)
    assert len(movements) == 1


def write_export(
    root: Path, users: dict[str, int], received_ms: int = T0, tag: str = "all"
) -> None:
    """An export under `root` of each user's `n` clicks, received at `received_ms`: one file
    per user in each table."""
    fs = pafs.LocalFileSystem()
    for user, count in users.items():
        records = [started(user, "s1", received_ms)] + [
            track(user, "s1", received_ms, {"eventId": f"e{i}", "timestamp": T0, "event": "click"})
            for i in range(count)
        ]
        rows = {"movements": movements(), "sessions": sessions()}
        user_rows(user, records, Window(), rows["movements"], rows["sessions"])
        for table, made in rows.items():
            data = made.table()
            folder = root / table / "date=2026-11-30"
            fs.create_dir(str(folder), recursive=True)
            pq.write_table(
                data.drop_columns(["date"]), str(folder / f"{tag}_{user}_{received_ms}.parquet")
            )


def every_row(root: Path) -> list[dict[str, Any]]:
    fs = pafs.LocalFileSystem()
    return [row for path in parquet_files(fs, str(root)) for row in pq.read_table(path).to_pylist()]


def test_erasing_a_user_rewrites_the_files_holding_them_and_deletes_those_left_empty(
    tmp_path: Path,
) -> None:
    write_export(tmp_path, {"alice": 3, "bob": 2})
    bobs = sorted(p for p in parquet_files(pafs.LocalFileSystem(), str(tmp_path)) if "bob" in p)
    before = {p: Path(p).stat().st_mtime_ns for p in bobs}
    changed = erase_user(pafs.LocalFileSystem(), str(tmp_path), "alice")
    assert changed == 2  # alice's movements file and sessions file, both emptied
    rows = every_row(tmp_path)
    assert rows and {row["userId"] for row in rows} == {"bob"}
    assert {p: Path(p).stat().st_mtime_ns for p in bobs} == before  # not rewritten
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"alice" not in path.read_bytes(), path


def test_a_file_shared_by_users_keeps_the_others_rows_after_an_erasure(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    moves = movements()
    for user in ("alice", "bob", "carol"):
        records = [track(user, "s1", T0, {"eventId": "e", "timestamp": T0, "event": "click"})]
        user_rows(user, records, Window(), moves, sessions())
    folder = tmp_path / "movements" / "date=2026-11-30"
    folder.mkdir(parents=True)
    pq.write_table(moves.table(), str(folder / "all_x.parquet"))
    assert erase_user(fs, str(tmp_path), "bob") == 1
    assert [r["userId"] for r in every_row(tmp_path)] == ["alice", "carol"]
    assert b"bob" not in (folder / "all_x.parquet").read_bytes()
    assert [p.name for p in folder.iterdir()] == ["all_x.parquet"]  # no temporary file left
    assert erase_user(fs, str(tmp_path), "dave") == 0


def test_retention_drops_the_rows_received_before_the_cutoff(tmp_path: Path) -> None:
    write_export(tmp_path, {"old": 2}, received_ms=T0)
    write_export(tmp_path, {"new": 2}, received_ms=T0 + 10 * DAY_MS)
    changed = drop_before(pafs.LocalFileSystem(), str(tmp_path), T0 + DAY_MS)
    assert changed == 2
    assert {row["userId"] for row in every_row(tmp_path)} == {"new"}
    assert drop_before(pafs.LocalFileSystem(), str(tmp_path), T0 + DAY_MS) == 0


def test_exporting_a_window_again_replaces_only_that_windows_files(tmp_path: Path) -> None:
    tag = window_tag(Window(T0, T0 + HOUR_MS))
    write_export(tmp_path, {"alice": 1}, tag=tag)
    write_export(tmp_path, {"bob": 1}, tag=window_tag(Window(T0 + HOUR_MS, T0 + 2 * HOUR_MS)))
    assert delete_window(pafs.LocalFileSystem(), str(tmp_path), tag) == 2
    assert {row["userId"] for row in every_row(tmp_path)} == {"bob"}


def test_a_windows_files_are_named_after_its_bounds_in_utc() -> None:
    assert window_tag(Window()) == "all"
    hour = 1_796_000_400_000 // HOUR_MS * HOUR_MS
    assert window_tag(Window(hour, hour + HOUR_MS)) == "20261130T010000Z-20261130T020000Z"
    assert window_tag(Window(hour, None)) == "20261130T010000Z-open"


def test_a_destination_is_a_folder_a_file_url_or_s3_and_nothing_else(tmp_path: Path) -> None:
    assert open_destination(str(tmp_path))[1] == str(tmp_path)
    assert open_destination(f"file://{tmp_path}")[1] == str(tmp_path)
    with pytest.raises(ConfigError, match=r"TRACKER_EXPORT_DEST='gs://b/x'"):
        open_destination("gs://b/x")
    with pytest.raises(ConfigError, match="TRACKER_EXPORT_DEST='memory://'"):
        Config.from_env({"TRACKER_EXPORT_DEST": "memory://"})
    assert Config.from_env({"TRACKER_EXPORT_DEST": "s3://b/x"}).export_dest == "s3://b/x"


def test_the_first_hourly_export_owes_the_hour_that_just_ended() -> None:
    now = T0 // HOUR_MS * HOUR_MS + 90_000
    assert ExportHours().due(now) == [now - 90_000 - HOUR_MS]


def test_hours_missed_are_owed_oldest_first_and_an_hour_done_is_not_owed_again() -> None:
    hour = T0 // HOUR_MS * HOUR_MS
    hours = ExportHours(done_ms=hour - 3 * HOUR_MS)
    assert hours.due(hour + 5) == [hour - 2 * HOUR_MS, hour - HOUR_MS]
    hours.done(hour - 2 * HOUR_MS)
    hours.done(hour - HOUR_MS)
    assert hours.due(hour + HOUR_MS - 1) == []
    assert hours.due(hour + HOUR_MS) == [hour]


def test_a_long_outage_owes_only_the_latest_hours() -> None:
    hour = T0 // HOUR_MS * HOUR_MS
    due = ExportHours(done_ms=hour - 1000 * HOUR_MS, max_catch_up=3).due(hour)
    assert due == [hour - 3 * HOUR_MS, hour - 2 * HOUR_MS, hour - HOUR_MS]


def test_the_tables_schemas_are_the_documented_ones() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "export.md").read_text()
    for schema in (MOVEMENTS, SESSIONS):
        for field in schema:
            assert f"| `{field.name}` | {doc_type(field.type)} |" in doc, field.name


def doc_type(kind: pa.DataType) -> str:
    return {"string": "string", "double": "double", "bool": "boolean"}.get(
        str(kind), "timestamp (ms, UTC)"
    )
