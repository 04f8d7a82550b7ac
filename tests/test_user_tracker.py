"""`UserTracker`, the seed's per-user logic, as a plain class: no Ray, no storage, no clock."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import support
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker import codec
from tracker.codec import Record
from tracker.errors import InvalidMovement, UnknownSession
from tracker.schema import Movement, movement_from_obj
from tracker.seen import CAPACITY, RESEND_MS, SeenEvents, pair_key
from tracker.session import RecentIds
from tracker.user_tracker import Limits, UserTracker, export_lines

T0 = 1_700_000_000_000
MINUTE = 60_000


def movement(user: str = "alice", session: str = "s1", at: int = T0, **extra: Any) -> Movement:
    """A click of `user` in `session` at `at`, parsed as the tracker receives it."""
    return movement_from_obj(support.movement(user, session, at=at, **extra), now_ms=at)


def track(tracker: UserTracker, movements: list[Movement], now: int = T0) -> int:
    record, new, _ = tracker.track_record(movements, now)
    if record is not None:
        tracker.apply(record)
    return new


def create(tracker: UserTracker, session: str, now: int = T0, info: Any = None) -> None:
    tracker.apply(tracker.create_session_record(session, info, now))


def expire(tracker: UserTracker, now: int) -> bool:
    record = tracker.expire_record(now)
    if record is not None:
        tracker.apply(record)
    return record is not None


def test_a_created_session_comes_back_in_the_seeds_camel_case_shape() -> None:
    tracker = UserTracker("alice")
    create(tracker, "s1", info={"userAgent": "pytest", "timezone": "UTC"})
    assert tracker.get_session("s1") == {
        "userId": "alice",
        "sessionId": "s1",
        "startTime": T0,
        "lastActivity": T0,
        "movements": [],
        "deviceInfo": {"userAgent": "pytest", "timezone": "UTC"},
    }


def test_an_unknown_session_raises_unknown_session_which_is_a_key_error() -> None:
    tracker = UserTracker("alice")
    with pytest.raises(UnknownSession) as info:
        tracker.get_session("nope")
    assert isinstance(info.value, KeyError)
    assert "nope" in str(info.value)


def test_tracking_creates_the_session_implicitly_and_keeps_the_movement_as_sent() -> None:
    tracker = UserTracker("alice")
    m = movement(at=T0 - 5, data={"path": "/a", "metadata": {"k": [1, "x"]}})
    assert track(tracker, [m], now=T0) == 1
    session = tracker.get_session("s1")
    assert session["startTime"] == T0 and session["lastActivity"] == T0
    assert session["movements"] == [msgspec.to_builtins(m)]
    assert session["movements"][0]["data"] == {"path": "/a", "metadata": {"k": [1, "x"]}}
    assert "deviceInfo" not in session


def test_tracking_moves_last_activity_forward_but_never_back() -> None:
    tracker = UserTracker("alice")
    track(tracker, [movement()], now=T0 + 10)
    track(tracker, [movement()], now=T0 + 5)
    assert tracker.get_session("s1")["lastActivity"] == T0 + 10


def test_the_cap_drops_the_oldest_movements_first() -> None:
    tracker = UserTracker("alice")
    for i in range(1005):
        track(tracker, [movement(at=T0 + i)], now=T0 + i)
    stamps = [m["timestamp"] for m in tracker.get_session("s1")["movements"]]
    assert stamps == [T0 + i for i in range(5, 1005)]


def test_analytics_counts_sessions_and_lists_the_ten_most_recent_first() -> None:
    tracker = UserTracker("alice")
    for i in range(12):
        create(tracker, f"s{i}", now=T0 + (i * 7919) % 12)  # activity times out of order
    analytics = tracker.analytics()
    assert set(analytics) == {"totalSessions", "userSessions", "recentActivity"}
    assert analytics["totalSessions"] == 12
    assert len(analytics["userSessions"]) == 12
    recent = [s["lastActivity"] for s in analytics["recentActivity"]]
    assert recent == sorted(recent, reverse=True)
    assert recent == list(range(T0 + 11, T0 + 1, -1))


def test_sessions_expire_after_thirty_minutes_of_inactivity_and_not_before() -> None:
    tracker = UserTracker("alice")
    create(tracker, "old", now=T0)
    create(tracker, "new", now=T0 + 10 * MINUTE)
    assert not expire(tracker, T0 + 30 * MINUTE)
    assert set(tracker.sessions) == {"old", "new"}
    assert expire(tracker, T0 + 30 * MINUTE + 1)
    assert set(tracker.sessions) == {"new"}
    with pytest.raises(UnknownSession):
        tracker.get_session("old")


def test_analytics_count_sessions_past_the_timeout_as_ended_without_removing_them() -> None:
    tracker = UserTracker("alice")
    create(tracker, "idle", now=T0)
    create(tracker, "busy", now=T0 + 20 * MINUTE)
    at = T0 + 30 * MINUTE + 1  # "idle" timed out; its alarm has not run yet
    analytics = tracker.analytics(at)
    assert analytics["totalSessions"] == 1
    assert [s["sessionId"] for s in analytics["userSessions"]] == ["busy"]
    assert [s["sessionId"] for s in analytics["recentActivity"]] == ["busy"]
    assert set(tracker.sessions) == {"idle", "busy"}  # a read ends nothing
    assert tracker.analytics(T0 + 30 * MINUTE)["totalSessions"] == 2  # not past it yet
    assert expire(tracker, at)  # what the alarm then does agrees
    assert tracker.analytics(at) == analytics


def test_recreating_a_session_keeps_its_movements_and_replaces_device_info() -> None:
    tracker = UserTracker("alice")
    create(tracker, "s1", info={"userAgent": "a"})
    track(tracker, [movement()], now=T0 + 1)
    create(tracker, "s1", now=T0 + 2, info={"userAgent": "b"})
    session = tracker.get_session("s1")
    assert session["deviceInfo"] == {"userAgent": "b"}
    assert len(session["movements"]) == 1
    assert session["startTime"] == T0 and session["lastActivity"] == T0 + 2


def test_event_ids_are_counted_once_within_a_batch_and_across_calls() -> None:
    tracker = UserTracker("alice")
    batch = [movement(eventId="e1"), movement(eventId="e1"), movement(eventId="e2"), movement()]
    assert track(tracker, batch) == 3
    assert track(tracker, [movement(eventId="e2"), movement(eventId="e3")]) == 1
    record, new, _ = tracker.track_record([movement(eventId="e1")], T0)
    assert (record, new) == (None, 0)
    assert len(tracker.get_session("s1")["movements"]) == 4


def test_a_movement_for_another_user_is_rejected_naming_its_position() -> None:
    tracker = UserTracker("alice")
    with pytest.raises(InvalidMovement) as info:
        tracker.track_record([movement(), movement(user="mallory")], T0)
    assert info.value.field == "events.1.userId"
    assert tracker.is_empty()


def test_a_snapshot_restores_into_an_equal_tracker() -> None:
    tracker = UserTracker("alice", Limits(max_movements=3))
    create(tracker, "s1", info={"userAgent": "x"})
    track(tracker, [movement(eventId=f"e{i}") for i in range(5)], now=T0 + 1)
    track(tracker, [movement(session="s2")], now=T0 + 2)
    copy = UserTracker("alice", Limits(max_movements=3))
    stored = msgspec.msgpack.encode([tracker.snapshot(), tracker.seen.to_stored()])
    copy.restore(*msgspec.msgpack.decode(stored))
    assert copy.snapshot() == tracker.snapshot()
    assert copy.seen.to_stored() == tracker.seen.to_stored()
    assert copy.analytics() == tracker.analytics()
    # The restored tracker still knows which events it holds, and, like the original, those
    # the cap evicted.
    assert track(copy, [movement(eventId="e4")]) == 0
    assert track(copy, [movement(eventId="e0")]) == track(tracker, [movement(eventId="e0")]) == 0


def test_a_restored_session_remembers_as_many_event_ids_as_the_live_one() -> None:
    tracker = UserTracker("alice")
    track(tracker, [movement(eventId="e1")])
    track(tracker, [movement(at=T0 + 1 + i) for i in range(300)])  # movements without an ID
    copy = UserTracker("alice")
    copy.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(tracker.snapshot())))
    assert track(tracker, [movement(eventId="e1")]) == 0
    assert track(copy, [movement(eventId="e1")]) == 0  # a retry, after a restart as before


def test_export_lines_hold_every_movement_even_those_the_cap_dropped() -> None:
    tracker = UserTracker("alice", Limits(max_movements=2))
    records: list[Record] = [tracker.create_session_record("s1", {"userAgent": "x"}, T0)]
    for i in range(5):
        record, _, _ = tracker.track_record([movement(at=T0 + i, eventId=f"e{i}")], T0 + i)
        assert record is not None
        records.append(record)
    for record in records:
        tracker.apply(record)
    lines = list(export_lines("alice", records + records[1:3]))
    assert lines[0] == {
        "type": "session",
        "userId": "alice",
        "sessionId": "s1",
        "startTime": T0,
        "lastActivity": T0 + 4,
        "deviceInfo": {"userAgent": "x"},
    }
    assert [line["timestamp"] for line in lines[1:]] == [T0 + i for i in range(5)]
    assert len(tracker.get_session("s1")["movements"]) == 2


# -- properties -------------------------------------------------------------------------------

sessions = st.sampled_from(["s1", "s2", "s3"])
event_ids = st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(30)]))
movements = st.builds(
    lambda session, offset, event_id: movement(
        session=session, at=T0 + offset, **({"eventId": event_id} if event_id else {})
    ),
    sessions,
    st.integers(0, 10_000),
    event_ids,
)
batches = st.lists(
    st.tuples(st.lists(movements, min_size=1, max_size=6), st.integers(0, 10_000)), max_size=15
)


def records_of(tracker: UserTracker, calls: list[tuple[list[Movement], int]]) -> list[Record]:
    """Apply the calls as the host does, returning the records it would have logged."""
    records = []
    for batch, offset in calls:
        record, _, _ = tracker.track_record(batch, T0 + offset)
        if record is not None:
            tracker.apply(record)
            records.append(record)
    return records


@settings(max_examples=60, deadline=None)
@given(calls=batches, cap=st.integers(1, 8))
def test_the_cap_is_never_exceeded_and_keeps_the_newest(
    calls: list[tuple[list[Movement], int]], cap: int
) -> None:
    tracker = UserTracker("alice", Limits(max_movements=cap))
    accepted: dict[str, list[bytes]] = {}
    for record in records_of(tracker, calls):
        for session_id, blob in record[3]:
            accepted.setdefault(session_id, []).extend(bytes(r) for r in codec.blob_items(blob))
    for session_id, state in tracker.sessions.items():
        assert len(state.movements) <= cap
        assert [bytes(m) for m in state.movements] == accepted[session_id][-cap:]


@settings(max_examples=60, deadline=None)
@given(calls=batches)
def test_applying_the_same_records_twice_with_event_ids_is_the_same_as_once(
    calls: list[tuple[list[Movement], int]],
) -> None:
    with_ids = [([m for m in batch if m.eventId is not None], offset) for batch, offset in calls]
    once = UserTracker("alice")
    records = records_of(once, with_ids)
    twice = UserTracker("alice")
    for record in records + records:
        twice.apply(record)
    assert twice.snapshot() == once.snapshot()


@settings(max_examples=60, deadline=None)
@given(
    creations=st.lists(st.tuples(st.text("abcdef", min_size=1, max_size=4), st.integers(0, 99))),
    calls=batches,
)
def test_analytics_invariants_hold(
    creations: list[tuple[str, int]], calls: list[tuple[list[Movement], int]]
) -> None:
    tracker = UserTracker("alice")
    for session_id, offset in creations:
        create(tracker, session_id, now=T0 + offset)
    records_of(tracker, calls)
    analytics = tracker.analytics()
    assert analytics["totalSessions"] == len(analytics["userSessions"]) == len(tracker.sessions)
    recent = [s["lastActivity"] for s in analytics["recentActivity"]]
    assert len(recent) == min(10, len(tracker.sessions))
    assert recent == sorted(recent, reverse=True)
    everyone = sorted((s["lastActivity"] for s in analytics["userSessions"]), reverse=True)
    assert recent == everyone[:10]


@settings(max_examples=80, deadline=None)
@given(
    capacity=st.integers(1, 6),
    groups=st.lists(st.lists(st.one_of(st.none(), st.integers(0, 40).map(str)), max_size=14)),
)
def test_a_window_extended_by_a_batch_holds_what_adding_one_by_one_holds(
    capacity: int, groups: list[list[str | None]]
) -> None:
    extended, added = RecentIds(capacity), RecentIds(capacity)
    for group in groups:
        extended.extend(group)
        for event_id in group:
            if event_id is not None:
                added.add(RecentIds.key(event_id))
        for event_id in map(str, range(41)):
            key = RecentIds.key(event_id)
            assert (key in extended) == (key in added), (event_id, group)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 12),
    window=st.lists(st.integers(0, 60).map(str), max_size=40),
    batch=st.lists(st.one_of(st.none(), st.integers(0, 60).map(str)), max_size=20),
)
def test_a_batch_is_found_in_a_window_exactly_when_one_of_its_ids_is(
    capacity: int, window: list[str], batch: list[str | None]
) -> None:
    recent = RecentIds(capacity)
    recent.extend(window)
    # Below 8 IDs the ring is searched, from 8 on a set of it is made: both ways are drawn.
    expected = any(i is not None and RecentIds.key(i) in recent for i in batch)
    assert recent.holds_any(batch) == expected


_id_pairs = st.tuples(
    st.sampled_from(["s1", "s1", "s1", "s2"]),
    st.one_of(st.none(), st.integers(0, 30).map(lambda n: f"e{n}")),
)


@settings(max_examples=150, deadline=None)
@given(
    cap=st.integers(1, 12),
    calls=st.lists(
        st.one_of(
            st.lists(_id_pairs, min_size=1, max_size=20),
            # Batches without a repeated ID, most of them in one session: the whole-batch
            # check of the window (8 IDs or more) decides them.
            st.lists(_id_pairs, min_size=1, max_size=20, unique_by=lambda pair: pair[1]),
        ),
        max_size=8,
    ),
)
def test_the_host_path_keeps_exactly_the_movements_not_seen_in_the_window(
    cap: int, calls: list[list[tuple[str, str | None]]]
) -> None:
    """What the host does (a stored batch's record, applied fresh with its decoded movements)
    keeps a movement unless its session stored its ID before (the cap on its movements makes
    no difference), or earlier in the batch: checked against that definition, batch by batch.
    The session's own window holds its last `cap` IDs."""
    tracker = UserTracker("alice", Limits(max_movements=cap))
    seen: dict[str, list[str]] = {}  # every ID each session kept, oldest first
    for number, call in enumerate(calls):
        batch = [
            movement(session=s, at=T0 + number, **({"eventId": e} if e else {})) for s, e in call
        ]
        in_batch: dict[str, set[str]] = {}
        expected: dict[str, list[str | None]] = {}
        for session_id, event_id in call:
            if event_id is not None and (
                event_id in in_batch.setdefault(session_id, set())
                or event_id in seen.get(session_id, [])
            ):
                continue
            expected.setdefault(session_id, []).append(event_id)
            if event_id is not None:
                in_batch[session_id].add(event_id)
        entries = [
            (sid, codec.encode_blob(group), group)
            for sid, group in codec.group_by_session(batch).items()
        ]
        tracked = tracker.track_stored_record(entries, T0 + number)
        kept = {sid: [m.eventId for m in moved] for sid, moved in tracked.kept}
        assert kept == expected
        assert tracked.new == sum(map(len, expected.values()))
        if tracked.record is not None:
            tracker.apply(tracked.record, fresh=True, decoded=tracked.kept)
        for session_id, ids in expected.items():
            seen.setdefault(session_id, []).extend(i for i in ids if i is not None)
        for session_id, state in tracker.sessions.items():
            # The window was extended with the decoded movements' IDs, not the blob's
            # read again: it must hold the last `cap` IDs kept, and no other.
            window = seen.get(session_id, [])[-cap:]
            for n in range(31):
                key = RecentIds.key(f"e{n}")
                assert (key in state.recent_ids) == (f"e{n}" in window)


def test_a_retried_largest_batch_is_recognised_whole_even_after_another_one() -> None:
    """A batch of the largest size, retried (by the client, or by Ray after a host restart)
    with another such batch of the session stored in between, stores nothing again."""
    from tracker.schema import MAX_BATCH_EVENTS

    tracker = UserTracker("alice")

    def batch(name: str) -> list[Movement]:
        return [movement(eventId=f"{name}-{n}") for n in range(MAX_BATCH_EVENTS)]

    assert track(tracker, batch("a")) == MAX_BATCH_EVENTS
    assert track(tracker, batch("b")) == MAX_BATCH_EVENTS
    assert track(tracker, batch("a")) == 0
    assert track(tracker, batch("b")) == 0
    assert len(tracker.get_session("s1")["movements"]) == 2 * MAX_BATCH_EVENTS


def test_a_users_record_of_stored_events_forgets_them_after_a_day_and_beyond_its_capacity() -> None:
    seen = SeenEvents()
    first = [pair_key("s1", f"e{n}") for n in range(10)]
    seen.add(first, T0)
    seen.add([pair_key("s1", "an hour later")], T0 + 3600_000)
    seen.trim(T0 + RESEND_MS)
    assert seen.holds_any(first) and seen.holds(first[-1])  # a resend's whole horizon
    seen.trim(T0 + RESEND_MS + 3600_000 + 1)  # a day and an hour after the first ten
    assert not seen.holds_any(first) and not seen.holds(first[0])
    assert seen.count == 1 and seen.holds(pair_key("s1", "an hour later"))
    many = [pair_key("s2", f"e{n}") for n in range(CAPACITY + 10)]
    seen.add(many, T0 + RESEND_MS)
    assert seen.count == CAPACITY == seen.nbytes() // 8
    assert not any(seen.holds(key) for key in many[:10])
    assert all(seen.holds(key) for key in many[10:20] + many[-10:])
    assert not seen.holds(pair_key("s1", "an hour later"))


def test_an_event_is_recognised_in_its_own_session_only() -> None:
    tracker = UserTracker("alice", Limits(max_movements=2))
    track(tracker, [movement(eventId=f"e{n}") for n in range(10)])
    track(tracker, [movement(session="s2", eventId="e0")])  # another session's e0: new
    tracker.apply(["expire", "alice", T0 + Limits().session_timeout_ms + 10, None])
    assert tracker.is_empty()
    assert track(tracker, [movement(eventId=f"e{n}") for n in range(10)]) == 0
    assert track(tracker, [movement(session="s3", eventId="e0")]) == 1
