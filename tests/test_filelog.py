"""Frames: byte-exact round trips, and a torn tail ends the reading without an error."""

from __future__ import annotations

import zlib

from tracker.filelog import HEADER, frame, frames


def test_frames_round_trip_byte_exact() -> None:
    payloads = [b"\x81\xa7records\x90", b"x" * 70_000, b"\x00"]
    assert frames(b"".join(frame(p) for p in payloads)) == payloads


def test_a_frame_is_its_length_and_checksum_then_the_payload() -> None:
    data = frame(b"abc")
    length, crc = HEADER.unpack_from(data)
    assert (length, data[HEADER.size :]) == (3, b"abc")
    assert crc == zlib.crc32(b"abc", zlib.crc32(b"\x00\x00\x00\x03"))


def test_reading_stops_at_a_torn_tail() -> None:
    whole = frame(b"one") + frame(b"two")
    last = frame(b"three")
    for cut in range(len(last)):
        assert frames(whole + last[:cut]) == [b"one", b"two"]
    assert frames(whole + last[:-1] + b"E") == [b"one", b"two"]
    assert frames(whole + bytes(HEADER.size)) == [b"one", b"two"]  # zeros are no empty frame
    assert frames(b"") == []
