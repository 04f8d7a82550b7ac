"""The declared shapes of what the HTTP API answers, beside the request types of `schema`.

The OpenAPI document takes its response schemas from these structs (`msgspec`'s JSON Schema),
so a shape is declared once. Records the server emits exactly (sessions, results, errors)
forbid unknown fields, so that a fuzzer such as schemathesis notices any drift; the analytics
report and its parts stay open to new fields. Field names are the wire's (camelCase).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from tracker.schema import EVENT_TYPES, MAX_BATCH_EVENTS, DeviceInfo, Id, Movement, UserIdText

Count = Annotated[int, Meta(ge=0)]
Ms = Annotated[int, Meta(ge=0, description="Milliseconds since the epoch.")]
# JSON Schema's `const`: msgspec's `Literal` takes no booleans.
TrueConst = Annotated[bool, Meta(extra_json_schema={"const": True})]
FalseConst = Annotated[bool, Meta(extra_json_schema={"const": False})]

# -- tracking ----------------------------------------------------------------------------------


class Session(Struct, forbid_unknown_fields=True):
    userId: UserIdText
    sessionId: Id
    startTime: Ms
    lastActivity: Ms
    movements: list[Movement]
    deviceInfo: DeviceInfo | UnsetType = UNSET


class TrackResult(Struct, forbid_unknown_fields=True):
    success: TrueConst
    accepted: Annotated[
        int,
        Meta(
            ge=0,
            le=MAX_BATCH_EVENTS,
            description="The request's movements, all stored: now, or by an earlier try (a "
            "movement whose eventId its session already holds is not stored again); 0 when "
            "tracking is declined.",
        ),
    ]


class SessionResult(Struct, forbid_unknown_fields=True):
    success: TrueConst
    # `Session | SessionRequest`, which msgspec cannot declare (two untagged structs).
    session: Annotated[
        Any,
        Meta(
            extra_json_schema={
                "oneOf": [
                    {"$ref": "#/components/schemas/Session"},
                    {"$ref": "#/components/schemas/SessionRequest"},
                ],
                "description": "The session; or, to a caller who has not shown it owns the user "
                "(visitor cookie, identity token or admin), what it sent, when the session "
                "exists already (it is left as it is).",
            }
        ),
    ]


class Declined(Struct, forbid_unknown_fields=True):
    """The visitor declined tracking (Sec-GPC, DNT or server opt-out)."""

    success: FalseConst
    declined: TrueConst


# -- admin and service -------------------------------------------------------------------------


class Ok(Struct, forbid_unknown_fields=True):
    success: TrueConst


class UserDetail(Struct, forbid_unknown_fields=True):
    userId: UserIdText
    sessions: list[Session]


class Linked(Struct, forbid_unknown_fields=True):
    userId: UserIdText
    linked: TrueConst


class EraseResult(Struct, forbid_unknown_fields=True):
    userId: UserIdText
    erased: TrueConst
    objectsDeleted: Count


class Health(Struct, forbid_unknown_fields=True):
    status: Literal["ok"]


class Error(Struct, forbid_unknown_fields=True):
    error: str
    field: str | UnsetType = UNSET


class FieldError(Struct, forbid_unknown_fields=True):
    """An error naming the offending field, dotted (`events.3.data.path`)."""

    error: str
    field: str


# -- the analytics report (open: new figures may be added) -------------------------------------


class SessionSummary(Struct):
    userId: UserIdText
    sessionId: Id
    startTime: Ms
    lastActivity: Ms
    movementCount: Count
    deviceInfo: DeviceInfo | None = None


class MinuteCount(Struct):
    t: Ms
    count: Count


class PageCount(Struct):
    path: str
    count: Count


class ElementCount(Struct):
    element: str
    path: str
    count: Count


class HeatmapCell(Struct):
    x: Annotated[int, Meta(ge=0, description="Bin of x / viewport.")]
    y: Annotated[int, Meta(ge=0, description="Page y / binHeightPx.")]
    count: Count


class Heatmap(Struct):
    path: Annotated[
        str | None,
        Meta(
            description="The page shown: the one asked for, else the most clicked; null "
            "before any click."
        ),
    ]
    binsX: Annotated[int, Meta(ge=1)]
    binHeightPx: Annotated[int, Meta(ge=1)]
    cells: list[HeatmapCell]


class ScrollBucket(Struct):
    bucket: Literal[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    count: Count


class Journey(Struct):
    from_: str = msgspec.field(name="from")
    to: str
    count: Count


class RageClick(Struct):
    path: str
    element: str
    x: float
    y: float
    userId: UserIdText
    timestamp: Ms
    count: Count


# Every event type is named, and any other name would count the same way.
EventsByType = Annotated[
    dict[str, Count],
    Meta(
        extra_json_schema={
            "properties": {name: {"type": "integer", "minimum": 0} for name in EVENT_TYPES}
        }
    ),
]


class Analytics(Struct):
    totalSessions: Count
    userSessions: list[Session]
    recentActivity: Annotated[list[SessionSummary], Meta(max_length=10)]
    activeUsers: Count
    totalUsers: Count
    totalEvents: Count
    eventsPerMinute: list[MinuteCount]
    topPages: list[PageCount]
    topElements: list[ElementCount]
    heatmap: Heatmap
    scrollDepth: list[ScrollBucket]
    journeys: list[Journey]
    rageClicks: list[RageClick]
    eventsByType: EventsByType


RESPONSE_TYPES: tuple[type[Struct], ...] = (
    Session,
    SessionSummary,
    TrackResult,
    SessionResult,
    Declined,
    Ok,
    Error,
    FieldError,
    UserDetail,
    EraseResult,
    Health,
    Analytics,
)
