"""Generated requests against the running app, from its own OpenAPI document (schemathesis).

Every operation except the never-ending event stream gets schemathesis' examples, boundary
(coverage) and random (fuzzing) cases, valid and invalid, with the admin token where the
document accepts it. Whatever comes back must not be a server error and must match the
document: status code, content type and body schema. Most generated movements are refused (a
random user ID needs a token, a random timestamp is far ahead), so a second test posts
generated movements made acceptable: an anonymous user ID and the current time.

The document is the one `/openapi.json` serves (a test checks they are equal); it is loaded
when the module is collected because the Serve deployment does not exist yet then. (Loading
it from the running app through `schemathesis.pytest.from_fixture` is what schemathesis
offers for that, but it fails on pytest 9.) Generation is seeded: every run sends the same
requests, so a failure is a regression, not a lucky find.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tracker.config import Config
from tracker.openapi import openapi_document

# One Serve deployment for the whole test session: the fixtures must be registered once (as a
# plugin), not copied into each module, or each module would deploy its own.

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation, for the random (fuzzing) phase; the boundary phase adds its own cases.
EXAMPLES_PER_OPERATION = 100
VALID_MOVEMENT_REQUESTS = 500

DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {"seed": 1, "generation": {"max-examples": EXAMPLES_PER_OPERATION}}
    ),
).exclude(path="/api/analytics/stream")

# Status codes of the generated requests sent, by test (counted by the last test).
SENT: dict[str, Counter[int]] = {"any": Counter(), "valid": Counter()}


def admin_may_call(case: schemathesis.Case) -> bool:
    operation = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    return {"adminBearer": []} in operation.get("security", [])


def test_the_served_document_is_the_one_requests_are_generated_from(serve_tracker: str) -> None:
    assert httpx.get(f"{serve_tracker}/openapi.json", timeout=30).json() == DOCUMENT


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers_and_never_a_server_error(
    case: schemathesis.Case, serve_tracker: str, serve_config: Config
) -> None:
    headers: dict[str, str] = {}
    if admin_may_call(case):
        headers["Authorization"] = f"Bearer {serve_config.admin_token}"
    response = case.call_and_validate(base_url=serve_tracker, headers=headers, checks=CHECKS)
    SENT["any"][response.status_code] += 1


def acceptable(case: schemathesis.Case) -> schemathesis.Case:
    """The generated body with one anonymous user and timestamps of now, in whatever shape
    (one movement, an array, or `{"events": [...]}`) was generated."""
    user_id, now_ms = str(uuid.uuid4()), time.time_ns() // 1_000_000
    body = case.body
    movements = body["events"] if isinstance(body, dict) and "events" in body else body
    for movement in movements if isinstance(movements, list) else [movements]:
        movement.update(userId=user_id, timestamp=now_ms)
    return case


TRACK = schema["/api/track"]["POST"]


@given(case=TRACK.as_strategy().map(acceptable))
@settings(
    max_examples=VALID_MOVEMENT_REQUESTS,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_generated_valid_movements_are_stored_or_refused_for_their_metadata(
    case: schemathesis.Case, serve_tracker: str
) -> None:
    response = case.call_and_validate(base_url=serve_tracker, checks=CHECKS)
    SENT["valid"][response.status_code] += 1
    if response.status_code == 422:
        # Metadata size and depth, and a custom event's name, are the rules JSON Schema
        # cannot say.
        field = f".{response.json()['field']}"
        assert ".data.metadata" in field or field.endswith(".data.name"), response.text
    else:
        assert response.status_code == 200, response.text


def test_thousands_of_requests_were_generated_and_most_valid_movements_stored() -> None:
    """Guards the figures above (the generated tests must have run first, in this session)."""
    if not SENT["any"] or not SENT["valid"]:
        pytest.skip("the generated tests did not run")
    print(f"generated requests by status: {dict(SENT['any'] + SENT['valid'])}")
    assert sum(SENT["any"].values()) + sum(SENT["valid"].values()) >= 2000
    assert SENT["valid"][200] >= VALID_MOVEMENT_REQUESTS // 2
