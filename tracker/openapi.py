"""The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.

Generated from the route table (`tracker.routes.ROUTES`): paths, parameters, security and
answers come from its entries, and every schema is msgspec's own of the declared request and
response types, so the document cannot drift from what the server accepts and answers. Error
answers come from the error table (`tracker.http_errors.STATUSES`). Constraints JSON Schema
cannot say (timestamps at most 5 minutes ahead, metadata at most 4 KB and 4 levels deep, one
user per request) are in descriptions and answered with 422.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from msgspec import Struct

from tracker import auth, schema
from tracker.body import JSON_TYPES
from tracker.http_errors import STATUSES
from tracker.json_text import MAX_METADATA_DEPTH
from tracker.responses import RESPONSE_TYPES
from tracker.route_table import Answer, Caller, Route
from tracker.routes import ROUTES

Json = dict[str, Any]

_REF = "#/components/schemas/{name}"
_ADMIN: list[Json] = [{"adminBearer": []}, {"adminCookie": []}]
_SECURITY: dict[Caller, list[Json]] = {
    # `{}` makes the identity token optional: anonymous (random UUID) users need none.
    Caller.VISITOR: [{}, {"identityBearer": []}],
    Caller.OWNER: [{"visitorCookie": []}, {"identityBearer": []}, *_ADMIN],
    Caller.ADMIN: _ADMIN,
    Caller.SOURCE: [{"writeKey": []}],
}
_SECURITY_SCHEMES: Json = {
    "writeKey": {
        "type": "http",
        "scheme": "basic",
        "description": "A write key (TRACKER_WRITE_KEYS) as the user name, the password empty.",
    },
    "adminBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (TRACKER_ADMIN_TOKEN).",
    },
    "adminCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": auth.ADMIN_COOKIE,
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
        "name": auth.VISITOR_COOKIE,
        "description": "Set by POST /api/track/session for an anonymous (random UUID) user "
        "ID; proves the visitor owns it. Any other user ID reads with its identity token, "
        "whatever cookie is sent.",
    },
}
_ERROR_HEADERS: Json = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {"required": True, "schema": {"type": "string"}},
}
_NO_STORE: Json = {
    "description": "`no-store`: no cache may keep the answer.",
    "required": True,
    "schema": {"const": "no-store"},
}
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


class _Schemas:
    """msgspec's JSON Schemas of every type the table names, as components."""

    def __init__(self) -> None:
        types: list[Any] = [*RESPONSE_TYPES]
        for route in ROUTES:
            types += [*route.body, *route.ok.body]
        unique = list(dict.fromkeys(types))
        found, self.components = msgspec.json.schema_components(unique, ref_template=_REF)
        self.of = dict(zip(unique, found, strict=True))
        # What the server checks beside msgspec's types (too many events: 413, not 422).
        self.components["EventBatch"]["properties"]["events"]["maxItems"] = schema.MAX_BATCH_EVENTS
        self.components["Movement"]["description"] += (
            " `timestamp` may be at most 5 minutes ahead of the server clock; `data.metadata` at"
            f" most {schema.MAX_METADATA_BYTES} bytes as JSON and {MAX_METADATA_DEPTH}"
            " levels deep. Violations are answered with 422."
        )
        # A custom event names itself (`schema._check_kinds`).
        self.components["Movement"]["if"] = {
            "properties": {"event": {"const": "custom"}},
            "required": ["event"],
        }
        self.components["Movement"]["then"] = {
            "required": ["data"],
            "properties": {"data": {"required": ["name"]}},
        }

    def one_of(self, types: tuple[Any, ...]) -> Json:
        if len(types) == 1:
            return dict(self.of[types[0]])
        return {"oneOf": [self.of[t] for t in types]}


def _parameters(struct: type[Struct] | None, where: str) -> list[Json]:
    """One parameter per field of `struct`, named as on the wire; its description is the
    field's."""
    if struct is None:
        return []
    (ref,), components = msgspec.json.schema_components([struct], ref_template=_REF)
    declared = components[ref["$ref"].rsplit("/", 1)[1]]
    required = set(declared.get("required", ()))
    parameters = []
    for name, value in declared["properties"].items():
        value = dict(value)
        parameters.append(
            {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "description": value.pop("description"),
                "schema": value,
            }
        )
    return parameters


def document_path(route: Route) -> str:
    """The route's path as the document writes it: parameters by their wire names, without
    Starlette's convertors."""
    names: dict[str, str] = {}
    if route.path_params is not None:
        names = {f.name: f.encode_name for f in msgspec.structs.fields(route.path_params)}
    return _PATH_PARAMETER.sub(lambda m: "{" + names[m.group(1)] + "}", route.path)


# Not an error: a route that lists it answers a conditional request for a copy held.
NOT_MODIFIED = 304
_NOT_MODIFIED = "The copy the client holds (`If-None-Match`) is current; no body."


def _ok(route: Route, schemas: _Schemas) -> Json:
    answer: Answer = route.ok
    body = schemas.one_of(answer.body) if answer.body else {"type": "string"}
    response: Json = {
        "description": answer.description,
        "content": {answer.media_type: {"schema": body}},
    }
    headers: Json = {
        name: {"description": h.description, "required": h.required, "schema": {"type": "string"}}
        for name, h in answer.headers.items()
    }
    if route.private:
        headers["Cache-Control"] = _NO_STORE
    if headers:
        response["headers"] = headers
    return response


def _operation(route: Route, schemas: _Schemas) -> Json:
    responses: Json = {str(route.ok.status): _ok(route, schemas)}
    for status in route.errors:
        if status == NOT_MODIFIED:
            responses[str(status)] = {"description": _NOT_MODIFIED}
            continue
        responses[str(status)] = {"$ref": f"#/components/responses/{STATUSES[status].name}"}
    operation: Json = {"tags": [route.tag], "summary": route.summary, "responses": responses}
    if route.description is not None:
        operation["description"] = route.description
    parameters = [
        *_parameters(route.path_params, "path"),
        *_parameters(route.query, "query"),
        *_parameters(route.headers, "header"),
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        body = schemas.one_of(route.body)
        if route.body_description is not None:
            body["description"] = route.body_description
        content = {media: {"schema": body} for media in JSON_TYPES}
        operation["requestBody"] = {"required": True, "content": content}
    if route.caller in _SECURITY:
        operation["security"] = _SECURITY[route.caller]
    return operation


def _error_responses() -> Json:
    responses: Json = {}
    for entry in STATUSES.values():
        response: Json = {
            "description": entry.description,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(name=entry.body.__name__)}}
            },
        }
        if entry.documented_headers:
            response["headers"] = {name: _ERROR_HEADERS[name] for name in entry.documented_headers}
        responses[entry.name] = response
    return responses


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; a fresh copy on each call, so callers may modify it."""
    document: Json = msgspec.json.decode(_encoded(version))
    return document


@functools.cache
def _encoded(version: str) -> bytes:
    # msgspec's schemas of the whole table take tens of milliseconds: made once, and kept as
    # JSON, which decodes into a fresh copy faster than a deep copy is made.
    return msgspec.json.encode(_document(version))


def _document(version: str) -> Json:
    schemas = _Schemas()
    paths: Json = {}
    for route in ROUTES:
        paths.setdefault(document_path(route), {})[route.method.lower()] = _operation(
            route, schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tracker",
            "version": version,
            "description": "Records how people move through a website: page views, clicks, "
            "scrolls, hovers and form interactions, kept per user and shown on a dashboard.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "responses": _error_responses(),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
