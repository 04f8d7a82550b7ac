"""What the conversions routes do (`/api/goals`, `/api/funnels`, `/api/retention`,
`/api/experiments`): definitions changed in storage, reports computed on every host
(`tracker.conversions.reports`), and each user's variant asked of their tracker.

A mixin of `handlers.Ingress`, which holds the collaborators named below.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from tracker import responses as r
from tracker import schema
from tracker.conversions.definitions import check_name, experiment_from, funnel_from, goal_from
from tracker.conversions.query import DAY_MS, TimeRange
from tracker.conversions.reports import Reports
from tracker.conversions.store import DefinitionStore
from tracker.errors import Forbidden, InvalidDefinition
from tracker.query.run import Query
from tracker.storage import open_storage

if TYPE_CHECKING:
    from tracker.api import Tracker
    from tracker.config import Config
    from tracker.dispatch import Dispatcher
    from tracker.ratelimit import RateLimiter

# The range a report covers when `from` is left out: the 30 days up to `to`.
DEFAULT_RANGE_MS = 30 * DAY_MS
PERIODS = ("day", "week")


def answer(body: msgspec.Struct) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


class ConversionHandlers:
    tracker: Tracker
    config: Config
    dispatch: Dispatcher
    ip_limiter: RateLimiter
    user_limiter: RateLimiter

    if TYPE_CHECKING:

        def now_ms(self) -> int: ...

        async def json_body(self, request: Request) -> Any: ...

        @staticmethod
        def time_param(name: str, value: str) -> int: ...

        @staticmethod
        def client_of(scope: Scope) -> str: ...

        def may_read(self, request: Request, user_id: str) -> bool: ...

    @functools.cached_property
    def definitions(self) -> DefinitionStore:
        return DefinitionStore(open_storage(self.config.storage))

    @functools.cached_property
    def reports(self) -> Reports:
        return Reports(self.definitions, self._fan_out)

    async def _fan_out(self, query: Query[Any]) -> Any:
        return await self.tracker.query(query)

    def _range(self, request: Request) -> TimeRange:
        params = request.query_params
        to = self.time_param("to", params["to"]) if params.get("to") else self.now_ms()
        start = self.time_param("from", params["from"]) if params.get("from") else None
        return TimeRange.checked(max(0, to - DEFAULT_RANGE_MS) if start is None else start, to)

    # -- goals -------------------------------------------------------------------------------

    async def put_goal(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        goal = goal_from(await self.json_body(request))
        await self.definitions.put_goal(name, goal)
        return answer(r.Ok(True))

    async def goals(self, request: Request) -> Response:
        return answer(await self.reports.goals(self._range(request)))

    async def delete_goal(self, request: Request) -> Response:
        await self.definitions.delete_goal(check_name(request.path_params["name"]))
        return answer(r.Ok(True))

    # -- funnels -----------------------------------------------------------------------------

    async def put_funnel(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        await self.definitions.put_funnel(name, funnel_from(await self.json_body(request)))
        return answer(r.Ok(True))

    async def funnel(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        return answer(await self.reports.funnel(name, self._range(request)))

    async def delete_funnel(self, request: Request) -> Response:
        await self.definitions.delete_funnel(check_name(request.path_params["name"]))
        return answer(r.Ok(True))

    # -- retention ---------------------------------------------------------------------------

    async def retention(self, request: Request) -> Response:
        period = request.query_params.get("period") or "week"
        if period not in PERIODS:
            raise InvalidDefinition("period", f"{period[:32]!r} is not day or week")
        when = self._range(request)
        return answer(await self.reports.retention(when, cast(Literal["day", "week"], period)))

    # -- experiments -------------------------------------------------------------------------

    async def put_experiment(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        goals = (await self.definitions.read()).goals
        experiment = experiment_from(await self.json_body(request), goals)
        await self.definitions.put_experiment(name, experiment)
        return answer(r.Ok(True))

    async def stop_experiment(self, request: Request) -> Response:
        await self.definitions.stop_experiment(check_name(request.path_params["name"]))
        return answer(r.Ok(True))

    async def experiment(self, request: Request) -> Response:
        name = check_name(request.path_params["name"])
        return answer(await self.reports.experiment(name))

    async def delete_experiment(self, request: Request) -> Response:
        await self.definitions.delete_experiment(check_name(request.path_params["name"]))
        return answer(r.Ok(True))

    async def definitions_list(self, request: Request) -> Response:
        found = await self.definitions.read()
        return answer(r.Definitions(found.goals, found.funnels, found.experiments))

    async def variant(self, request: Request) -> Response:
        """The user's variant, for the visitor who owns the user (their cookie or identity
        token, as for sessions) or the admin."""
        self.ip_limiter.check(self.client_of(request.scope))
        name = check_name(request.path_params["name"])
        user_id = schema.check_id("userId", request.query_params.get("userId"))
        if not self.may_read(request, user_id):
            raise Forbidden("only the visitor who owns this user, or the admin")
        self.user_limiter.check(user_id)
        chosen: str = await self.dispatch.call(user_id, "variant", name)
        return answer(r.VariantAnswer(chosen))
