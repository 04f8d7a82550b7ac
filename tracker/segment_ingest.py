"""What the Segment routes (`/v1/batch`, `/v1/track`, `/v1/page`, `/v1/identify`,
`/v1/alias`) do: check the write key, read and map the whole batch (`tracker.segment`), then
store it through the users' hosts, durable when answered.

A batch is checked whole before anything is stored: one bad message refuses it all (400 or
413, naming `batch.<index>.<field>`). Each user's share is then committed by their host in
one call (`UserHost.track_server`), all users at once; if a host fails, the answer is 503 and
the sender resends the batch, whose messages that were stored already are recognised by their
`messageId` and stored once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker import auth, schema, segment
from tracker.body import read_json_body
from tracker.clock import wall_clock_ms
from tracker.config import Config
from tracker.dispatch import Dispatcher
from tracker.metrics import Metrics

SUCCESS = {"success": True}


class SegmentIngest:
    """The Segment routes' handler, with the ingress's dispatcher and settings."""

    def __init__(self, config: Config, dispatch: Dispatcher, metrics: Metrics) -> None:
        self.config = config
        self.dispatch = dispatch
        self.metrics = metrics

    async def handle(self, request: Request, kind: str | None) -> Response:
        """`kind`: the message type of a single-message route; None for `/v1/batch`."""
        auth.check_write_key(self.config.write_keys, request.headers.get("authorization"))
        limit = segment.MAX_BATCH_BYTES if kind is None else segment.MAX_MESSAGE_BYTES
        body = await read_json_body(
            request.headers, request.stream(), self.config.body_timeout_s, limit
        )
        now = wall_clock_ms()
        batch = segment.read_batch(schema.decode_json(body), len(body), now, kind)
        stored = await self.store(batch)
        self.metrics.events.inc(stored)
        return JSONResponse(SUCCESS)

    async def store(self, batch: segment.SegmentBatch) -> int:
        """Every user's share of `batch`, each through their host; how many were new."""
        calls: list[Awaitable[Any]] = []
        for user_id, part in batch.users.items():
            movements = part.movements
            auto = None
            unsessioned = [m for m in movements if m.sessionId == segment.AUTO_SESSION]
            if unsessioned:
                first = unsessioned[0].eventId or ""
                auto = segment.auto_session_id(user_id, first)
                for movement in unsessioned:
                    movement.sessionId = auto
            info = {"userAgent": part.user_agent} if part.user_agent else None
            for start in range(0, len(movements), schema.MAX_BATCH_EVENTS):
                packed = schema.pack_movements(movements[start : start + schema.MAX_BATCH_EVENTS])
                calls.append(self.dispatch.call(user_id, "track_server", packed, auto, info))
        stored = 0
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
            stored += int(result)
        # After the events: an anonymous visitor's events of this batch move with the rest.
        for link in batch.links:
            await self.dispatch.call(link.anonymous_id, "link", link.user_id)
        return stored
