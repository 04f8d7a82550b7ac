"""Request bodies read as JSON text: what msgspec refuses but is valid JSON (numbers beyond a
double or 64 bits, text holding half a surrogate pair) read with Python's `json`, so that the
schema, not the decoder, names the field that is wrong."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import msgspec

from tracker.errors import InvalidInput, InvalidMovement

# Metadata nests at most this many containers deep (`schema.Metadata` declares it too).
MAX_METADATA_DEPTH = 4
# Longer integers are read as floats (infinity past a double's range), which every field refuses
# by name: Python's int() refuses more digits than its limit (4300 by default, 640 at least).
MAX_INT_DIGITS = 640


def decode_json(body: bytes, kind: type[InvalidInput] = InvalidInput, items: str = "") -> Any:
    """A request body as Python objects, for the schema to validate and name what is wrong.

    Valid JSON that msgspec refuses is read with Python's `json` instead: numbers beyond a
    double (`1e999`) or beyond 64 bits then reach the schema, which names their field; a string
    holding half a UTF-16 surrogate pair (what a browser's `JSON.stringify` makes of a string
    cut inside a pair) is refused as a `kind` error naming the field, with `items` the name of a
    top-level array's elements (`events.3.data.element`). A body that is not JSON, or nested
    deeper than the decoder goes, is an `InvalidInput` of `body`.
    """
    try:
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:  # and its ValidationError: a number beyond a double
            try:
                raw = _python_json(body)
            except ValueError as python_exc:  # a body that is not JSON either way
                reason = python_exc if isinstance(exc, msgspec.ValidationError) else exc
                raise InvalidInput("body", f"not valid JSON: {reason}") from None
        field = _not_text(raw, items if isinstance(raw, list) else "")
    except RecursionError:
        raise InvalidInput("body", "JSON nested too deeply to read") from None
    if field is not None:
        raise kind(field, "holds half a UTF-16 surrogate pair, which is not text")
    return raw


def _python_json(body: bytes) -> Any:
    return json.loads(body.decode(), parse_int=_json_int, parse_constant=_not_a_json_constant)


def _json_int(text: str) -> int | float:
    return int(text) if len(text) <= MAX_INT_DIGITS else float(text)


def _not_a_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _not_text(value: Any, field: str) -> str | None:
    """The dotted name of the first string of `value` (named `field`) that is not Unicode text:
    a key's container is named, as a key cannot be shown in an error message."""
    if isinstance(value, str):
        return None if _is_text(value) else field or "body"
    pairs: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, list):
        pairs = enumerate(value)
    elif isinstance(value, dict):
        pairs = value.items()
    for key, item in pairs:
        if isinstance(key, str) and not _is_text(key):
            return field or "body"
        found = _not_text(item, f"{field}.{key}" if field else str(key))
        if found is not None:
            return found
    return None


def _is_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_json_value(value: Any, field: str, depth: int) -> None:
    if isinstance(value, dict | list):
        _check_json_container(value, field, depth)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMovement(field, f"{value!r} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        # msgpack, the storage codec, holds integers of at most 64 bits (signed, here).
        if not -(2**63) <= value < 2**63:
            raise InvalidMovement(field, f"{value} does not fit in a signed 64-bit integer")
    elif value is not None and not isinstance(value, str | int | bool):
        raise InvalidMovement(field, f"{type(value).__name__} is not a JSON value")


def _check_json_container(value: dict[Any, Any] | list[Any], field: str, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise InvalidMovement(field, f"nested deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, f"{field}.{index}", depth + 1)
        return
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidMovement(field, f"key {key!r} is not a string")
        check_json_value(item, f"{field}.{key}", depth + 1)
