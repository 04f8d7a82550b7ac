"""What the routes of the table read beside their bodies: query, path and header parameters
as msgspec types, which both check a request and describe it in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from tracker.route_table import Header
from tracker.schema import MAX_BATCH_EVENTS, MAX_TIMESTAMP_MS, Id, Movement, UserIdText

UserId = Annotated[UserIdText, Meta(description="The user's ID: 1-128 printable characters.")]
# A time as a query parameter: ASCII digits (`request_parts.time_param`), at most a movement's
# largest timestamp.
QueryMs = Annotated[int, Meta(ge=0, le=MAX_TIMESTAMP_MS)]
MovementList = Annotated[list[Movement], Meta(extra_json_schema={"maxItems": MAX_BATCH_EVENTS})]


class SessionQuery(Struct):
    userId: UserId
    sessionId: Annotated[Id, Meta(description="The session's ID.")]


# A filter of the report (docs/analytics.md): only the visits with this value.
Filter = Annotated[str, Meta(min_length=1, max_length=256)]


class AnalyticsQuery(Struct):
    userId: (
        Annotated[
            UserIdText, Meta(description="Also return this user's live sessions (userSessions).")
        ]
        | UnsetType
    ) = UNSET
    from_: (
        Annotated[QueryMs, Meta(description="Start of the time range, inclusive.")] | UnsetType
    ) = msgspec.field(default=UNSET, name="from")
    to: Annotated[QueryMs, Meta(description="End of the time range, inclusive.")] | UnsetType = (
        UNSET
    )
    path: (
        Annotated[
            str,
            Meta(
                max_length=2048,
                description="The page the heatmap shows (default: the most clicked one in the "
                "range); and a filter of the figures computed from the histories: only the "
                "visits that viewed this page.",
            ),
        ]
        | UnsetType
    ) = UNSET
    referrer: Annotated[Filter, Meta(description="Only visits from this host.")] | UnsetType = UNSET
    channel: (
        Annotated[
            Literal["direct", "search", "social", "email", "paid", "referral"],
            Meta(description="Only visits of this channel."),
        ]
        | UnsetType
    ) = UNSET
    country: (
        Annotated[str, Meta(pattern="^[A-Z]{2}$", description="Only visits from this country.")]
        | UnsetType
    ) = UNSET
    browser: Annotated[Filter, Meta(description="Only visits with this browser.")] | UnsetType = (
        UNSET
    )
    os: Annotated[Filter, Meta(description="Only visits with this OS.")] | UnsetType = UNSET
    device: (
        Annotated[
            Literal["desktop", "mobile", "tablet", "bot", "other"],
            Meta(description="Only visits on this device type."),
        ]
        | UnsetType
    ) = UNSET
    event: (
        Annotated[
            str,
            Meta(min_length=1, max_length=64, description="Only visits with this custom event."),
        ]
        | UnsetType
    ) = UNSET
    bots: (
        Annotated[
            Literal["include", "exclude"],
            Meta(description="`include`: bots' visits count too (default: left out)."),
        ]
        | UnsetType
    ) = UNSET
    compare: (
        Annotated[
            Literal["previous"],
            Meta(description="Add `previous`: the same figures for the range before."),
        ]
        | UnsetType
    ) = UNSET
    limit: (
        Annotated[str, Meta(pattern="^[0-9]{1,3}$", description="Rows per list, 1-100 (10).")]
        | UnsetType
    ) = UNSET


class UserPath(Struct):
    user_id: UserId = msgspec.field(name="userId")


class AppPath(Struct):
    rest: Annotated[str, Meta(min_length=1, description="Any route of the demo app.")] = (
        msgspec.field(name="path")
    )


class AssetPath(Struct):
    asset: Annotated[
        str,
        Meta(
            pattern=r"^([a-z]+\.)?[0-9a-f]{10}$",
            description="The content hash, after the file's name for a file loaded on demand.",
        ),
    ]


class ClientHeaders(Struct):
    accept_encoding: (
        Annotated[str, Meta(description="`br` or `gzip` are served compressed.")] | UnsetType
    ) = msgspec.field(default=UNSET, name="Accept-Encoding")
    if_none_match: (
        Annotated[str, Meta(description="The ETag of a copy held: 304 if it is current.")]
        | UnsetType
    ) = msgspec.field(default=UNSET, name="If-None-Match")


CLIENT_FILE = (
    "Compressed once at start: brotli when the client accepts it, else gzip when accepted. "
    "Caching: {cache}, with an ETag of the content."
)
CLIENT_HEADERS = {
    "ETag": Header("A hash of the file's content."),
    "Cache-Control": Header("How long caches may keep the file."),
    "Content-Encoding": Header("`br` or `gzip`, as accepted.", required=False),
}


_DECLINES = (
    "`{}: 1` declines tracking: the request is answered as declined before anything else (the "
    "body is not read), and nothing is recorded."
)
SecGpc = Annotated[str, Meta(description=_DECLINES.format("Sec-GPC"))]
_SOCKET_TOKEN = "The identity token of the messages' user, when not anonymous."
Dnt = Annotated[str, Meta(description=_DECLINES.format("DNT"))]


class SocketQuery(Struct):
    # Browsers set no Authorization header on a WebSocket.
    token: Annotated[str, Meta(max_length=128, description=_SOCKET_TOKEN)] | UnsetType = UNSET


class PrivacyHeaders(Struct):
    sec_gpc: SecGpc | UnsetType = msgspec.field(default=UNSET, name="Sec-GPC")
    dnt: Dnt | UnsetType = msgspec.field(default=UNSET, name="DNT")
