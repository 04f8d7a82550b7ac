"""The OpenAPI document: valid, complete against the HTTP contract, and in step with msgspec."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from support import now_ms

from tracker import schema
from tracker.errors import InvalidInput
from tracker.openapi import openapi_document
from tracker.query.report import ReportPart, figures
from tracker.user_tracker import UserTracker

BASE = "urn:tracker:openapi"
ANONYMOUS = "3f1c2b9e-8a4d-4c1e-9f2a-6b7d8e9f0a1b"
ADMIN: list[dict[str, list[str]]] = [{"adminBearer": []}, {"adminCookie": []}]
INPUT = {"400", "408", "413", "415", "422"}
ADMIN_READ = {"200", "401", "422", "429", "503"}
ADMIN_WRITE = ADMIN_READ | INPUT | {"404"}

# The HTTP contract: path -> method -> the status codes the route can answer.
# (429 on the admin routes: too many failed admin authentications from one address.)
CONTRACT: dict[str, dict[str, set[str]]] = {
    "/api/track": {"post": {"200", "401", "403", "429", "503"} | INPUT},
    "/api/track/ws": {"get": {"101", "403", "429"}},
    "/api/track/session": {
        "post": {"200", "401", "403", "429", "503"} | INPUT,
        "get": {"200", "401", "403", "404", "422", "429", "503"},
    },
    "/api/track/identify": {"post": {"200", "401", "403", "409", "429", "503"} | INPUT},
    "/api/analytics": {"get": {"200", "401", "422", "429", "503"}},
    "/api/analytics/stream": {"get": {"200", "401", "429"}},
    "/api/admin/login": {"post": {"200", "401", "429"} | INPUT},
    "/api/admin/logout": {"post": {"200", "401", "429"}},
    "/api/users/{userId}": {
        "get": {"200", "401", "422", "429", "503"},
        "delete": {"200", "401", "422", "429", "503"},
    },
    "/api/users/{userId}/export": {"get": {"200", "401", "422", "429", "503"}},
    "/tracker.js": {"get": {"200", "304"}},
    "/tracker.mjs": {"get": {"200", "304"}},
    "/tracker.{asset}.js": {"get": {"200", "304", "404"}},
    "/api/users/{userId}/live": {"get": {"101", "401", "429"}},
    **{
        f"/v1/{kind}": {"post": {"200", "400", "401", "408", "413", "415", "429", "503"}}
        for kind in ("batch", "track", "page", "identify", "alias")
    },
    "/healthz": {"get": {"200"}},
    "/metrics": {"get": {"200"}},
    "/openapi.json": {"get": {"200"}},
    "/": {"get": {"200"}},
    "/long": {"get": {"200"}},
    "/form": {"get": {"200"}},
    "/app/{path}": {"get": {"200"}},
    "/analytics": {"get": {"200"}},
    "/api/goals": {"get": ADMIN_READ | {"404"}},
    "/api/goals/{name}": {"put": ADMIN_WRITE, "delete": ADMIN_READ | {"404"}},
    "/api/funnels/{name}": {
        "put": ADMIN_WRITE,
        "get": ADMIN_READ | {"404"},
        "delete": ADMIN_READ | {"404"},
    },
    "/api/retention": {"get": ADMIN_READ | {"404"}},
    "/api/conversions": {"get": ADMIN_READ | {"404"}},
    "/api/experiments/{name}": {
        "put": ADMIN_WRITE,
        "get": ADMIN_READ | {"404"},
        "delete": ADMIN_READ | {"404"},
    },
    "/api/experiments/{name}/stop": {"post": ADMIN_READ | {"404"}},
    "/api/experiments/{name}/variant": {"get": {"200", "401", "403", "404", "422", "429", "503"}},
    "/api/predictions/next": {"get": ADMIN_READ | {"404"}},
    "/api/predictions/sessions": {"get": ADMIN_READ | {"404"}},
    "/api/predictions/evaluation": {"get": ADMIN_READ | {"404"}},
    "/api/predictions/train": {"post": ADMIN_READ | {"404"}},
}
CONVERSIONS_ADMIN = [
    (path, method)
    for path, methods in CONTRACT.items()
    if path.startswith(
        ("/api/goals", "/api/funnels", "/api/retention", "/api/conversions", "/api/predictions")
    )
    or (path.startswith("/api/experiments") and not path.endswith("/variant"))
    for method in methods
]
ADMIN_ROUTES = [
    *CONVERSIONS_ADMIN,
    ("/api/analytics", "get"),
    ("/api/analytics/stream", "get"),
    ("/api/users/{userId}", "get"),
    ("/api/users/{userId}", "delete"),
    ("/api/users/{userId}/export", "get"),
    ("/api/admin/logout", "post"),
]
# Answers no cache may keep: a visitor's or the admin's data, or their cookies.
PRIVATE = [
    ("/api/track/session", "post"),
    ("/api/track/session", "get"),
    ("/api/track/identify", "post"),
    ("/api/admin/login", "post"),
    ("/api/experiments/{name}/variant", "get"),
    *ADMIN_ROUTES,
]
SUCCESS_TYPES = {
    ("/api/analytics/stream", "get"): "text/event-stream",
    ("/api/users/{userId}/export", "get"): "application/x-ndjson",
    ("/tracker.js", "get"): "application/javascript",
    ("/tracker.mjs", "get"): "application/javascript",
    ("/tracker.{asset}.js", "get"): "application/javascript",
    ("/metrics", "get"): "text/plain",
    ("/", "get"): "text/html",
    ("/app/{path}", "get"): "text/html",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def validator(document: dict[str, Any], json_pointer: str) -> Draft202012Validator:
    """A validator for the schema at `json_pointer`, resolving its refs inside the document."""
    registry: Registry[Any] = Registry().with_resource(BASE, DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"{BASE}#{json_pointer}"}, registry=registry)


def request_validator(
    document: dict[str, Any], path: str, method: str, media_type: str = "application/json"
) -> Draft202012Validator:
    return validator(
        document, pointer("paths", path, method, "requestBody", "content", media_type, "schema")
    )


def component(document: dict[str, Any], name: str) -> Draft202012Validator:
    return validator(document, pointer("components", "schemas", name))


def good_movement(**overrides: Any) -> dict[str, Any]:
    movement: dict[str, Any] = {
        "userId": ANONYMOUS,
        "sessionId": "s-1",
        "timestamp": now_ms(),
        "event": "click",
        "data": {
            "path": "/form",
            "element": "button#send",
            "coordinates": {"x": 120, "y": 48.5},
            "scrollX": 0,
            "scrollY": 300,
            "metadata": {"viewportWidth": 1280, "viewportHeight": 720, "pageHeight": 2400},
        },
        "eventId": "e-1",
    }
    movement.update(overrides)
    return movement


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert json.loads(json.dumps(document)) == document


def test_the_version_is_the_callers_and_each_call_returns_a_fresh_copy() -> None:
    first = openapi_document("9.9.9")
    assert first["info"]["version"] == "9.9.9"
    first["components"]["schemas"]["Movement"]["properties"].clear()
    assert openapi_document()["components"]["schemas"]["Movement"]["properties"]


def test_every_route_of_the_contract_is_documented_with_its_methods_and_status_codes(
    document: dict[str, Any],
) -> None:
    assert set(document["paths"]) == set(CONTRACT)
    for path, methods in CONTRACT.items():
        assert set(document["paths"][path]) == set(methods), path
        for method, statuses in methods.items():
            responses = document["paths"][path][method]["responses"]
            assert set(responses) == statuses, f"{method.upper()} {path}"


def test_every_documented_status_has_a_body_schema(document: dict[str, Any]) -> None:
    """But 304, which HTTP answers without a body."""
    named = document["components"]["responses"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status == "304":
                    assert "content" not in response, f"304 of {method.upper()} {path}"
                    continue
                if "$ref" in response:
                    response = named[response["$ref"].rsplit("/", 1)[1]]
                content = response["content"]
                assert content, f"{status} of {method.upper()} {path}"
                assert all("schema" in media for media in content.values())
            expected = SUCCESS_TYPES.get((path, method))
            if expected is not None:
                assert list(operation["responses"]["200"]["content"]) == [expected]


def test_rate_limits_and_storage_outages_tell_when_to_retry(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for name in ("RateLimited", "StorageUnavailable"):
        assert responses[name]["headers"]["Retry-After"]["required"] is True


def test_answers_with_private_data_say_that_no_cache_may_keep_them(
    document: dict[str, Any],
) -> None:
    for path, method in PRIVATE:
        headers = document["paths"][path][method]["responses"]["200"]["headers"]
        assert headers["Cache-Control"]["schema"] == {"const": "no-store"}, f"{method} {path}"
    assert "headers" not in document["paths"]["/api/track"]["post"]["responses"]["200"]


def test_admin_routes_require_the_admin_token_or_cookie(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert (schemes["adminBearer"]["type"], schemes["adminBearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["adminCookie"]["in"], schemes["adminCookie"]["name"]) == (
        "cookie",
        "tracker_admin",
    )
    assert (schemes["identityBearer"]["type"], schemes["identityBearer"]["scheme"]) == (
        "http",
        "bearer",
    )
    for path, method in [*ADMIN_ROUTES, ("/api/users/{userId}/live", "get")]:
        assert document["paths"][path][method]["security"] == ADMIN, f"{method} {path}"
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.mark.parametrize("path", ["/api/track", "/api/track/session", "/api/admin/login"])
def test_json_bodies_may_also_be_sent_as_text_plain_for_send_beacon(
    document: dict[str, Any], path: str
) -> None:
    content = document["paths"][path]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "text/plain"}
    assert content["application/json"] == content["text/plain"]


@pytest.mark.parametrize("media_type", ["application/json", "text/plain"])
def test_a_good_movement_validates_alone_in_an_array_and_in_a_batch(
    document: dict[str, Any], media_type: str
) -> None:
    body = request_validator(document, "/api/track", "post", media_type)
    movement = good_movement()
    for shape in (movement, [movement, movement], {"events": [movement]}, []):
        body.validate(shape)
    minimal = {"userId": ANONYMOUS, "sessionId": "s", "timestamp": 0, "event": "page_view"}
    body.validate(minimal)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(good_movement(color="red"), id="unknown key"),
        pytest.param(good_movement(event="teleport"), id="bad event type"),
        pytest.param(good_movement(userId="u" * 129), id="129-character userId"),
        pytest.param(good_movement(sessionId="no spaces"), id="sessionId outside the alphabet"),
        pytest.param(good_movement(data={"path": "/", "colour": 1}), id="unknown data key"),
        pytest.param(good_movement(data={"coordinates": {"x": 1}}), id="coordinates without y"),
        pytest.param(good_movement(timestamp=-1), id="negative timestamp"),
    ],
)
def test_malformed_movements_fail_the_schema_as_they_fail_the_server(
    document: dict[str, Any], bad: dict[str, Any]
) -> None:
    body = request_validator(document, "/api/track", "post")
    for shape in (bad, [bad], {"events": [bad]}):
        assert not body.is_valid(shape)
    with pytest.raises(InvalidInput):
        schema.movement_from_obj(bad, now_ms())


def test_a_batch_beside_other_keys_or_over_500_events_fails_the_schema(
    document: dict[str, Any],
) -> None:
    body = request_validator(document, "/api/track", "post")
    assert not body.is_valid({"events": [good_movement()], "userId": ANONYMOUS})
    too_many = [good_movement()] * (schema.MAX_BATCH_EVENTS + 1)
    assert not body.is_valid(too_many)
    assert not body.is_valid({"events": too_many})


def test_a_movement_msgspec_accepted_validates_against_the_schema(
    document: dict[str, Any],
) -> None:
    checked = schema.movement_from_obj(good_movement(), now_ms())
    as_sent = msgspec.to_builtins(checked)
    request_validator(document, "/api/track", "post").validate(as_sent)
    component(document, "Movement").validate(as_sent)


def test_session_requests_validate_like_msgspec_says(document: dict[str, Any]) -> None:
    body = request_validator(document, "/api/track/session", "post")
    good = {
        "userId": ANONYMOUS,
        "sessionId": "s-1",
        "deviceInfo": {"userAgent": "Firefox", "screenResolution": "1920x1080", "timezone": "UTC"},
    }
    body.validate(msgspec.to_builtins(schema.session_request_from_obj(good)))
    body.validate({"userId": ANONYMOUS, "sessionId": "s-1"})
    for bad in ({**good, "extra": 1}, {"userId": ANONYMOUS}, {**good, "deviceInfo": {}}):
        assert not body.is_valid(bad)
        with pytest.raises(InvalidInput):
            schema.session_request_from_obj(bad)


def test_a_session_the_user_tracker_returns_matches_the_session_schemas(
    document: dict[str, Any],
) -> None:
    tracker = UserTracker(ANONYMOUS)
    start = now_ms()
    info = schema.DeviceInfo(userAgent="Firefox", timezone="UTC")
    tracker.apply(tracker.create_session_record("s-1", info, start))
    movements = [schema.movement_from_obj(good_movement(eventId=f"e-{i}"), start) for i in range(3)]
    record, _, _ = tracker.track_record(movements, start + 1)
    assert record is not None
    tracker.apply(record)
    session = tracker.get_session("s-1")
    assert len(session["movements"]) == 3
    component(document, "Session").validate(session)
    component(document, "SessionResult").validate({"success": True, "session": session})
    # What a caller who does not own the user gets back for a session that exists: its request.
    sent = {"userId": ANONYMOUS, "sessionId": "s-1", "deviceInfo": {"userAgent": "Firefox"}}
    component(document, "SessionResult").validate({"success": True, "session": sent})
    assert not component(document, "SessionResult").is_valid(
        {"success": True, "session": {**sent, "movements": []}}
    )
    detail = {"userId": ANONYMOUS, "sessions": tracker.analytics()["userSessions"]}
    component(document, "UserDetail").validate(detail)
    assert not component(document, "Session").is_valid({**session, "surprise": 1})


def test_the_analytics_schema_declares_the_contracts_report_and_allows_new_fields(
    document: dict[str, Any],
) -> None:
    report: dict[str, Any] = {
        "totalSessions": 1,
        "userSessions": [],
        "recentActivity": [
            {
                "userId": ANONYMOUS,
                "sessionId": "s-1",
                "startTime": 1,
                "lastActivity": 2,
                "movementCount": 3,
                "deviceInfo": None,
            }
        ],
        "activeUsers": 1,
        "totalUsers": 1,
        "totalEvents": 3,
        "eventsPerMinute": [{"t": 60_000, "count": 3}],
        "topPages": [{"path": "/", "count": 2}],
        "topElements": [{"element": "a#home", "path": "/", "count": 1}],
        "heatmap": {
            "path": "/",
            "binsX": 40,
            "binHeightPx": 25,
            "cells": [{"x": 39, "y": 4, "count": 1}],
        },
        "scrollDepth": [{"bucket": 50, "count": 1}],
        "journeys": [{"from": "/", "to": "/form", "count": 1}],
        "rageClicks": [
            {
                "path": "/",
                "element": "a",
                "x": 1.5,
                "y": 2,
                "count": 4,
                "userId": ANONYMOUS,
                "timestamp": 5,
            }
        ],
        "eventsByType": {"page_view": 1, "click": 2},
        **figures(ReportPart(), 10),
        "range": {"from": 0, "to": 5},
        "filters": {"channel": "search"},
    }
    analytics = component(document, "Analytics")
    analytics.validate(report)
    analytics.validate({**report, "newInAFutureVersion": [1, 2]})
    declared = document["components"]["schemas"]["Analytics"]
    assert set(declared["required"]) == set(report)
    for name in report:
        broken = {key: value for key, value in report.items() if key != name}
        assert not analytics.is_valid(broken), f"{name} should be required"
    assert not analytics.is_valid({**report, "scrollDepth": [{"bucket": 55, "count": 1}]})
    assert not analytics.is_valid({**report, "totalEvents": "3"})


def test_the_analytics_parameters_say_what_the_report_does_with_them(
    document: dict[str, Any],
) -> None:
    operation = document["paths"]["/api/analytics"]["get"]
    described = {p["name"]: p["description"] for p in operation["parameters"]}
    assert "inclusive" in described["from"] and "inclusive" in described["to"]
    assert "heatmap" in described["path"] and "viewed this page" in described["path"]
    assert "`totalUsers` are all-time totals" in operation["description"]


def test_error_bodies_name_the_field_where_the_contract_says_so(
    document: dict[str, Any],
) -> None:
    def body_validator(name: str) -> Draft202012Validator:
        return validator(
            document,
            pointer("components", "responses", name, "content", "application/json", "schema"),
        )

    with_field = {"error": "Expected `str`", "field": "events.0.userId"}
    for name in ("BadRequest", "TooLarge", "Invalid"):
        body_validator(name).validate(with_field)
        assert not body_validator(name).is_valid({"error": "no field"})
    for name in (
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "UnsupportedMediaType",
        "RateLimited",
        "StorageUnavailable",
    ):
        body_validator(name).validate({"error": "nope"})
        assert not body_validator(name).is_valid({"error": "nope", "extra": True})
