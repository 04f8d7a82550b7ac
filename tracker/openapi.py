"""The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.

Request bodies are msgspec's own schemas of the structs in `tracker.schema`, so the document
cannot drift from what the server accepts. Response shapes are written here. Records we emit
exactly (sessions, results, errors) are closed (`additionalProperties: false`) so a fuzzer
such as schemathesis notices any drift; the analytics report stays open to new fields.
Constraints JSON Schema cannot say (timestamps at most 5 minutes ahead, metadata at most
4 KB and 4 levels deep, one user per request) are in descriptions and answered with 422.
"""

from __future__ import annotations

import copy
from typing import Any

from tracker import schema

Json = dict[str, Any]

ADMIN: list[Json] = [{"adminBearer": []}, {"adminCookie": []}]
# `{}` makes the identity token optional: anonymous (random UUID) users need none.
IDENTIFIED: list[Json] = [{}, {"identityBearer": []}]

_ID: Json = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": schema.ID_PATTERN}
_COUNT: Json = {"type": "integer", "minimum": 0}
_MS: Json = {"type": "integer", "minimum": 0, "description": "Milliseconds since the epoch."}
_JSON_BODY_TYPES = ("application/json", "text/plain")
# A time as a query parameter: ASCII digits, at most a movement's largest timestamp.
_QUERY_MS: Json = {**_MS, "maximum": schema.MAX_TIMESTAMP_MS}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: Json, required: list[str] | None = None, *, closed: bool = True) -> Json:
    result: Json = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if closed:
        result["additionalProperties"] = False
    return result


def _array(items: Json, **bounds: int) -> Json:
    return {"type": "array", "items": items, **bounds}


def _const(value: Any) -> Json:
    return {"const": value}


# -- component schemas -------------------------------------------------------------------------


def _request_schemas() -> Json:
    """msgspec's schemas, plus the batch limit it cannot declare (too many events: 413)."""
    schemas = copy.deepcopy(schema.json_schemas())
    schemas["EventBatch"]["properties"]["events"]["maxItems"] = schema.MAX_BATCH_EVENTS
    schemas["Movement"]["description"] += (
        " `timestamp` may be at most 5 minutes ahead of the server clock; `data.metadata` at"
        f" most {schema.MAX_METADATA_BYTES} bytes as JSON and {schema.MAX_METADATA_DEPTH}"
        " levels deep. Violations are answered with 422."
    )
    return schemas


def _response_schemas() -> Json:
    session_fields: Json = {
        "userId": _ID,
        "sessionId": _ID,
        "startTime": _MS,
        "lastActivity": _MS,
    }
    session = _object(
        {**session_fields, "movements": _array(_ref("Movement")), "deviceInfo": _ref("DeviceInfo")},
        ["userId", "sessionId", "startTime", "lastActivity", "movements"],
    )
    summary = _object(
        {
            **session_fields,
            "movementCount": _COUNT,
            "deviceInfo": {"anyOf": [_ref("DeviceInfo"), {"type": "null"}]},
        },
        ["userId", "sessionId", "startTime", "lastActivity", "movementCount"],
        closed=False,
    )
    return {
        "Session": session,
        "SessionSummary": summary,
        "TrackResult": _object(
            {
                "success": _const(True),
                "accepted": {
                    **_COUNT,
                    "maximum": schema.MAX_BATCH_EVENTS,
                    "description": "The request's movements, all stored: now, or by an earlier "
                    "try (a movement whose eventId its session already holds is not stored "
                    "again); 0 when tracking is declined.",
                },
            }
        ),
        "SessionResult": _object(
            {
                "success": _const(True),
                "session": {
                    "oneOf": [_ref("Session"), _ref("SessionRequest")],
                    "description": "The session; or, to a caller who has not shown it owns "
                    "the user (visitor cookie, identity token or admin), what it sent, when "
                    "the session exists already (it is left as it is).",
                },
            }
        ),
        "Declined": {
            **_object({"success": _const(False), "declined": _const(True)}),
            "description": "The visitor declined tracking (Sec-GPC, DNT or server opt-out).",
        },
        "Ok": _object({"success": _const(True)}),
        "LoginRequest": _object({"token": {"type": "string"}}, closed=False),
        "Error": _object({"error": {"type": "string"}, "field": {"type": "string"}}, ["error"]),
        "FieldError": {
            "allOf": [_ref("Error"), {"required": ["field"]}],
            "description": "An error naming the offending field, dotted (`events.3.data.path`).",
        },
        "UserDetail": _object({"userId": _ID, "sessions": _array(_ref("Session"))}),
        "EraseResult": _object({"userId": _ID, "erased": _const(True), "objectsDeleted": _COUNT}),
        "Health": _object({"status": _const("ok")}),
        "Analytics": _analytics_schema(),
    }


_ANALYTICS_RANGE = (
    "`from` and `to` (either may be left out) select events by the time the server received "
    "them, at the granularity each figure is kept in: `topPages`, `topElements`, `heatmap`, "
    "`scrollDepth` and `journeys` sum the whole hours that overlap the range; `totalEvents`, "
    "`eventsByType` and `eventsPerMinute` the minutes that overlap it (`eventsPerMinute` "
    "without `from`: the 60 minutes up to `to`); `rageClicks` are those received within it. "
    "Buckets older than 7 days are not kept. Without a range, `totalEvents` and "
    "`eventsByType` are all-time totals and `eventsPerMinute` covers the last 60 minutes. "
    "Whatever the range, `totalSessions` and `totalUsers` are all-time totals, `activeUsers` "
    "counts the users of the last 5 minutes and `recentActivity` lists the 10 most recently "
    "active sessions."
)


def _analytics_schema() -> Json:
    def counted(**fields: Json) -> Json:
        return _object({**fields, "count": _COUNT}, closed=False)

    text: Json = {"type": "string"}
    number: Json = {"type": "number"}
    heatmap = _object(
        {
            "path": {
                "type": ["string", "null"],
                "description": "The page shown: the one asked for, else the most clicked; "
                "null before any click.",
            },
            "binsX": {"type": "integer", "minimum": 1},
            "binHeightPx": {"type": "integer", "minimum": 1},
            "cells": _array(
                counted(
                    x={"type": "integer", "minimum": 0, "description": "Bin of x / viewport."},
                    y={"type": "integer", "minimum": 0, "description": "Page y / binHeightPx."},
                )
            ),
        },
        closed=False,
    )
    by_type = {
        "type": "object",
        "properties": {name: _COUNT for name in schema.EVENT_TYPES},
        "additionalProperties": _COUNT,
    }
    return _object(
        {
            "totalSessions": _COUNT,
            "userSessions": _array(_ref("Session")),
            "recentActivity": _array(_ref("SessionSummary"), maxItems=10),
            "activeUsers": _COUNT,
            "totalUsers": _COUNT,
            "totalEvents": _COUNT,
            "eventsPerMinute": _array(counted(t=_MS)),
            "topPages": _array(counted(path=text)),
            "topElements": _array(counted(element=text, path=text)),
            "heatmap": heatmap,
            "scrollDepth": _array(counted(bucket={"enum": list(range(0, 101, 10))})),
            "journeys": _array(counted(**{"from": text, "to": text})),
            "rageClicks": _array(
                counted(path=text, element=text, x=number, y=number, userId=_ID, timestamp=_MS)
            ),
            "eventsByType": by_type,
        },
        closed=False,
    )


# -- responses, parameters, security -----------------------------------------------------------

_RETRY_AFTER: Json = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

_ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "BadRequest",
        "The body is not valid JSON, or is nested too deeply to read (field `body`).",
        "FieldError",
    ),
    401: ("Unauthorized", "Missing or wrong admin token or identity token.", "Error"),
    403: (
        "Forbidden",
        "Valid credentials, but not for this user's data; or a tracking request from a page "
        "whose Origin is neither the tracker's nor in TRACKER_ALLOWED_ORIGINS (nothing is "
        "stored).",
        "Error",
    ),
    404: ("NotFound", "No such session for this user.", "Error"),
    408: (
        "RequestTimeout",
        "The body did not all arrive within TRACKER_BODY_TIMEOUT_S (10 s by default); the "
        "connection is closed.",
        "Error",
    ),
    413: ("TooLarge", "Body over 64 KB, or more than 500 events.", "FieldError"),
    415: ("UnsupportedMediaType", "Content type is not application/json or text/plain.", "Error"),
    422: (
        "Invalid",
        "The request does not match the schema; `field` names the culprit.",
        "FieldError",
    ),
    429: (
        "RateLimited",
        "Too many requests from this client or for this user, too many open at once from "
        "this client (TRACKER_OPEN_REQUESTS_PER_CLIENT), or too many failed admin "
        "authentications from it (TRACKER_ADMIN_FAILURES_PER_MIN).",
        "Error",
    ),
    503: (
        "StorageUnavailable",
        "Storage is unavailable, or the user's host did not answer within "
        "TRACKER_HOST_TIMEOUT_S (30 s by default) or has too many requests waiting, or (per-user "
        "placement) TRACKER_MAX_USER_ACTORS per-user actors are live already: not stored, or "
        "not confirmed. Retry; an event with an `eventId` is stored once however often it is "
        "sent.",
        "Error",
    ),
}


def _error_responses() -> Json:
    responses: Json = {}
    for status, (name, description, body) in _ERRORS.items():
        response: Json = {"description": description, "content": _json(_ref(body))}
        if status in (429, 503):
            response["headers"] = {"Retry-After": _RETRY_AFTER}
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"required": True, "schema": {"type": "string"}}
            }
        responses[name] = response
    return responses


def _errors(*statuses: int) -> Json:
    return {
        str(status): {"$ref": f"#/components/responses/{_ERRORS[status][0]}"} for status in statuses
    }


def _json(body_schema: Json, *media_types: str) -> Json:
    return {media: {"schema": body_schema} for media in media_types or ("application/json",)}


# On the answers that hold a visitor's or the admin's data, or set their cookies.
_NO_STORE: Json = {
    "Cache-Control": {
        "description": "`no-store`: no cache may keep the answer.",
        "required": True,
        "schema": {"const": "no-store"},
    }
}


def _ok(description: str, content: Json, headers: Json | None = None) -> Json:
    response: Json = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return response


def _cookie_header(description: str, *, required: bool = True) -> Json:
    return {
        "Set-Cookie": {
            "description": description,
            "required": required,
            "schema": {"type": "string"},
        }
    }


def _query(name: str, value: Json, description: str, *, required: bool = False) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": value,
    }


_USER_PATH: Json = {
    "name": "userId",
    "in": "path",
    "required": True,
    "description": "The user's ID.",
    "schema": _ID,
}

_PRIVACY_HEADERS: list[Json] = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": f"`{name}: 1` declines tracking: the request is answered as declined "
        "before anything else (the body is not read), and nothing is recorded.",
        "schema": {"type": "string"},
    }
    for name in ("Sec-GPC", "DNT")
]

_SECURITY_SCHEMES: Json = {
    "adminBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (TRACKER_ADMIN_TOKEN).",
    },
    "adminCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "tracker_admin",
        "description": "Set by POST /api/admin/login.",
    },
    "identityBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "v1.<expiry>.<signature>",
        "description": "A user token minted by the site's backend; needed for any user ID "
        "that is not a random UUID.",
    },
    "visitorCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "tracker_visitor",
        "description": "Set by POST /api/track/session for an anonymous (random UUID) user "
        "ID; proves the visitor owns it. Any other user ID reads with its identity token, "
        "whatever cookie is sent.",
    },
}


# -- paths -------------------------------------------------------------------------------------


def _operation(
    tag: str,
    summary: str,
    responses: Json,
    *,
    parameters: list[Json] | None = None,
    body: Json | None = None,
    security: list[Json] | None = None,
    description: str | None = None,
) -> Json:
    operation: Json = {"tags": [tag], "summary": summary, "responses": responses}
    if description is not None:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if security is not None:
        operation["security"] = security
    return operation


def _text(media_type: str, description: str, headers: Json | None = None) -> Json:
    return _ok(description, {media_type: {"schema": {"type": "string"}}}, headers)


def _page(summary: str, parameters: list[Json] | None = None) -> Json:
    return {
        "get": _operation(
            "pages", summary, {"200": _text("text/html", "The page.")}, parameters=parameters
        )
    }


def _paths() -> Json:
    track_body = {
        "oneOf": [
            _ref("Movement"),
            _array(_ref("Movement"), maxItems=schema.MAX_BATCH_EVENTS),
            _ref("EventBatch"),
        ],
        "description": "One movement, an array of them, or {events: [...]}; all for one user.",
    }
    admin_read = _errors(401, 422, 429, 503)
    return {
        "/api/track": {
            "post": _operation(
                "tracking",
                "Record movements (text/plain is for navigator.sendBeacon).",
                {
                    "200": _ok(
                        "Stored; `accepted` counts the request's movements (0 if tracking is "
                        "declined).",
                        _json(_ref("TrackResult")),
                    ),
                    **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
                },
                parameters=_PRIVACY_HEADERS,
                body=_json(track_body, *_JSON_BODY_TYPES),
                security=IDENTIFIED,
            )
        },
        "/api/track/session": {
            "post": _operation(
                "tracking",
                "Start or resume a session; sets the visitor cookie for an anonymous visitor.",
                {
                    "200": _ok(
                        "The session, or a note that tracking is declined.",
                        _json({"oneOf": [_ref("SessionResult"), _ref("Declined")]}),
                        {
                            **_cookie_header(
                                "tracker_visitor, for an anonymous (random UUID) user ID only, "
                                "to the visitor who owns it or to one who starts the user's "
                                "first session; Secure over HTTPS; absent when declined.",
                                required=False,
                            ),
                            **_NO_STORE,
                        },
                    ),
                    **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
                },
                parameters=_PRIVACY_HEADERS,
                body=_json(_ref("SessionRequest"), *_JSON_BODY_TYPES),
                security=IDENTIFIED,
            ),
            "get": _operation(
                "tracking",
                "One session, for the visitor who owns it or the admin.",
                {
                    "200": _ok("The session.", _json(_ref("Session")), _NO_STORE),
                    **_errors(401, 403, 404, 422, 429, 503),
                },
                parameters=[
                    _query("userId", _ID, "The user's ID.", required=True),
                    _query("sessionId", _ID, "The session's ID.", required=True),
                ],
                security=[
                    {"visitorCookie": []},
                    {"identityBearer": []},
                    *ADMIN,
                ],
            ),
        },
        "/api/analytics": {
            "get": _operation(
                "analytics",
                "Cross-user analytics.",
                {"200": _ok("The report.", _json(_ref("Analytics")), _NO_STORE), **admin_read},
                parameters=[
                    _query("userId", _ID, "Also return this user's live sessions (userSessions)."),
                    _query("from", _QUERY_MS, "Start of the time range, inclusive."),
                    _query("to", _QUERY_MS, "End of the time range, inclusive."),
                    _query(
                        "path",
                        {"type": "string", "maxLength": 2048},
                        "The page the heatmap shows (default: the most clicked one in the range). "
                        "Filters nothing else.",
                    ),
                ],
                security=ADMIN,
                description=_ANALYTICS_RANGE,
            )
        },
        "/api/analytics/stream": {
            "get": _operation(
                "analytics",
                "Live updates as Server-Sent Events.",
                {
                    "200": _text(
                        "text/event-stream",
                        "`event: update` with data {events, at} at most once a second while "
                        "events arrive; a `: keepalive` comment every 15 s. Ends when the "
                        "aggregator is unavailable, or when the login session of the "
                        "tracker_admin cookie that opened it expires; an EventSource connects "
                        "again after the stream's `retry` (2 s).",
                        _NO_STORE,
                    ),
                    **_errors(401, 429),
                },
                security=ADMIN,
            )
        },
        "/api/admin/login": {
            "post": _operation(
                "admin",
                "Exchange the admin token for the tracker_admin cookie.",
                {
                    "200": _ok(
                        "Logged in.",
                        _json(_ref("Ok")),
                        {
                            **_cookie_header("tracker_admin; HttpOnly; SameSite=Strict."),
                            **_NO_STORE,
                        },
                    ),
                    **_errors(400, 401, 408, 413, 415, 422, 429),
                },
                body=_json(_ref("LoginRequest"), *_JSON_BODY_TYPES),
            )
        },
        "/api/admin/logout": {
            "post": _operation(
                "admin",
                "Clear the tracker_admin cookie.",
                {
                    "200": _ok(
                        "Logged out.",
                        _json(_ref("Ok")),
                        {**_cookie_header("Expires tracker_admin."), **_NO_STORE},
                    ),
                    **_errors(401, 429),
                },
                security=ADMIN,
            )
        },
        "/api/users/{userId}": {
            "get": _operation(
                "users",
                "One user's active sessions (not ended by the 30-minute timeout) with their "
                "movements; `/export` holds their whole stored history.",
                {"200": _ok("The user.", _json(_ref("UserDetail")), _NO_STORE), **admin_read},
                parameters=[_USER_PATH],
                security=ADMIN,
            ),
            "delete": _operation(
                "users",
                "Erase a user from memory and storage.",
                {"200": _ok("Erased.", _json(_ref("EraseResult")), _NO_STORE), **admin_read},
                parameters=[_USER_PATH],
                security=ADMIN,
            ),
        },
        "/api/users/{userId}/export": {
            "get": _operation(
                "users",
                "A user's stored history as NDJSON: session lines, then movement lines.",
                {
                    "200": _text("application/x-ndjson", "One JSON object per line.", _NO_STORE),
                    **admin_read,
                },
                parameters=[_USER_PATH],
                security=ADMIN,
            )
        },
        "/tracker.js": {
            "get": _operation(
                "service",
                "The browser client.",
                {"200": _text("application/javascript", "The script.")},
            )
        },
        "/healthz": {
            "get": _operation("service", "Liveness.", {"200": _ok("Alive.", _json(_ref("Health")))})
        },
        "/metrics": {
            "get": _operation(
                "service",
                "Prometheus metrics.",
                {"200": _text("text/plain", "Prometheus text exposition format 0.0.4.")},
            )
        },
        "/openapi.json": {
            "get": _operation(
                "service",
                "This document.",
                {"200": _ok("OpenAPI 3.1.", _json({"type": "object"}))},
            )
        },
        "/": _page("Demo site home."),
        "/long": _page("Demo long page (scrolling)."),
        "/form": _page("Demo form page."),
        "/app/{path}": _page(
            "Demo single-page-app routes (all serve the demo page).",
            [
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "description": "Any route of the demo app.",
                    "schema": {"type": "string", "minLength": 1},
                }
            ],
        ),
        "/analytics": _page("The analytics dashboard (its API calls need the admin)."),
    }


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; a fresh copy on each call, so callers may modify it."""
    document: Json = {
        "openapi": "3.1.0",
        "info": {
            "title": "tracker",
            "version": version,
            "description": "Records how people move through a website: page views, clicks, "
            "scrolls, hovers and form interactions, kept per user and shown on a dashboard.",
        },
        "paths": _paths(),
        "components": {
            "schemas": {**_request_schemas(), **_response_schemas()},
            "responses": _error_responses(),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
    # Module-level pieces are shared by several operations; the copy unshares them.
    return copy.deepcopy(document)
