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

from tracker.conversions.definitions import Experiment, Funnel, Goal, Match
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


class SocketAck(Struct, forbid_unknown_fields=True):
    """A tracking socket's message, stored: `accepted` as POST /api/track counts it."""

    seq: int
    accepted: Count


class SocketError(Struct, forbid_unknown_fields=True):
    """A tracking socket's message, refused: `seq` is null when the message had none."""

    seq: int | None
    error: str
    field: str | None
    status: int
    retryAfter: int | UnsetType = UNSET


class LiveMovements(Struct, forbid_unknown_fields=True):
    """A message of a user's live view: movements stored since the last one, oldest first."""

    userId: str
    movements: list[Movement]
    at: Annotated[int, Meta(description="When it was sent, ms since the epoch.")]


# -- the figures computed from the histories (docs/analytics.md) ------------------------------

# A list's last row may sum the rows past the limit: its name is "(other)", and `other` true.
OtherFlag = Annotated[bool, Meta(description="This row counts the rest of the list.")]


class SourceRow(Struct):
    source: str
    visitors: Count
    other: OtherFlag | UnsetType = UNSET


class ChannelRow(Struct):
    channel: str
    visitors: Count
    other: OtherFlag | UnsetType = UNSET


class CampaignRow(Struct):
    source: str | None
    medium: str | None
    campaign: str | None
    visitors: Count
    other: OtherFlag | UnsetType = UNSET


class NameRow(Struct):
    name: str
    visitors: Count
    other: OtherFlag | UnsetType = UNSET


class PathRow(Struct):
    path: str
    visitors: Count
    other: OtherFlag | UnsetType = UNSET


class PropertyValue(Struct):
    value: str
    count: Count
    other: OtherFlag | UnsetType = UNSET


class CustomEventRow(Struct):
    name: str
    count: Count
    visitors: Count
    properties: dict[str, list[PropertyValue]]


class VisitDuration(Struct):
    median: Annotated[float, Meta(ge=0, description="ms")]
    mean: Annotated[float, Meta(ge=0, description="ms")]


class Bots(Struct):
    visitors: Count
    events: Count


class Range(Struct):
    from_: Ms = msgspec.field(name="from")
    to: Ms


Share = Annotated[float, Meta(ge=0, le=1)]


class Figures(Struct):
    """The figures of a range, from the users' histories."""

    visitors: Count
    visits: Count
    pageviews: Count
    referrers: list[SourceRow]
    channels: list[ChannelRow]
    campaigns: list[CampaignRow]
    browsers: list[NameRow]
    os: list[NameRow]
    devices: list[NameRow]
    countries: list[NameRow]
    entryPages: list[PathRow]
    exitPages: list[PathRow]
    customEvents: list[CustomEventRow]
    bounceRate: Share
    visitDuration: VisitDuration
    pagesPerVisit: Annotated[float, Meta(ge=0)]
    bots: Bots
    range: Range


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
    visitors: Count
    visits: Count
    pageviews: Count
    referrers: list[SourceRow]
    channels: list[ChannelRow]
    campaigns: list[CampaignRow]
    browsers: list[NameRow]
    os: list[NameRow]
    devices: list[NameRow]
    countries: list[NameRow]
    entryPages: list[PathRow]
    exitPages: list[PathRow]
    customEvents: list[CustomEventRow]
    bounceRate: Share
    visitDuration: VisitDuration
    pagesPerVisit: Annotated[float, Meta(ge=0)]
    bots: Bots
    range: Range
    filters: Annotated[dict[str, str], Meta(description="The filters applied.")]
    previous: (
        Annotated[Figures, Meta(description="With `compare=previous`: the range before.")]
        | UnsetType
    ) = UNSET


# -- conversions: goals, funnels, retention, experiments ---------------------------------------

Rate = Annotated[float, Meta(ge=0, le=1)]


class GoalReport(Struct, forbid_unknown_fields=True):
    name: str
    match: Match
    visitors: Annotated[Count, Meta(description="Distinct users with a matching event.")]
    conversions: Annotated[Count, Meta(description="Matching events.")]
    conversionRate: Annotated[Rate, Meta(description="`visitors` over all users in the range.")]


class Goals(Struct, forbid_unknown_fields=True):
    goals: list[GoalReport]
    visitors: Annotated[Count, Meta(description="Every user with an event in the range.")]


class FunnelStep(Struct, forbid_unknown_fields=True):
    match: Match
    visitors: Count
    conversion: Annotated[Rate, Meta(description="`visitors` over the first step's.")]
    dropoff: Annotated[
        Rate, Meta(description="The previous step's visitors lost here, as a share.")
    ]
    medianMsFromPrevious: Annotated[float, Meta(ge=0)] | None


class FunnelReport(Struct, forbid_unknown_fields=True):
    name: str
    windowS: int
    steps: list[FunnelStep]


class Cohort(Struct, forbid_unknown_fields=True):
    start: Annotated[Ms, Meta(description="The period's first ms (UTC).")]
    size: Count
    returning: list[Count]


class Retention(Struct, forbid_unknown_fields=True):
    period: Literal["day", "week"]
    cohorts: list[Cohort]


class VariantReport(Struct, forbid_unknown_fields=True):
    name: str
    weight: Annotated[float, Meta(ge=0)]
    exposed: Count
    converted: Count
    rate: Rate
    difference: Annotated[float, Meta(description="`rate` minus control's.")]
    ciLow: float
    ciHigh: float
    pValue: Annotated[float, Meta(ge=0, le=1)] | None


class ExperimentReport(Struct, forbid_unknown_fields=True):
    name: str
    goal: str
    control: str
    stopped: bool
    variants: list[VariantReport]
    sampleRatioP: Annotated[float, Meta(ge=0, le=1)] | None
    sampleRatioMismatch: Annotated[
        bool, Meta(description="`sampleRatioP` below 0.001: the split itself is suspect.")
    ]


class Definitions(Struct, forbid_unknown_fields=True):
    goals: dict[str, Goal]
    funnels: dict[str, Funnel]
    experiments: dict[str, Experiment]


class VariantAnswer(Struct, forbid_unknown_fields=True):
    variant: str


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
    SocketAck,
    SocketError,
    LiveMovements,
    Goals,
    FunnelReport,
    Retention,
    ExperimentReport,
    Definitions,
    VariantAnswer,
)
