"""`GET /api/users/{userId}/live`: one user's movements, sent to the admin as they are stored.

The dashboard's site-wide feed (`/api/analytics/stream`) says that events arrived; this socket
says which ones, for one user. Whenever the aggregator hears of new events (the signal the
site-wide feed waits on, at most about once a second) or 5 s have passed, the socket reads the
user's live sessions from their host and sends the movements it has not sent yet, oldest
first: `{"userId", "movements": [...], "at"}`. The first message holds what the user's live
sessions hold already. What it remembers having sent is the event IDs of the user's sessions
in memory, no more, so a socket followed for hours holds no more than the host does.

Admin only, checked at the handshake (refused with 401 as other admin routes are); with the
login cookie, the socket is closed (1008) when the cookie's session expires, as the site-wide
feed ends then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tracker import schema
from tracker.dispatch import answer_within
from tracker.errors import TrackerError
from tracker.http_errors import deny
from tracker.ratelimit import client_of

if TYPE_CHECKING:
    from tracker.handlers import Ingress

WAIT_S = 5.0
CLOSE_EXPIRED = 1008
CLOSE_UNAVAILABLE = 1011


def movement_key(movement: dict[str, Any]) -> str:
    event_id = movement.get("eventId")
    if event_id is not None:
        return f"{movement['sessionId']}\n{event_id}"
    return f"{movement['sessionId']}\n{movement['timestamp']}\n{movement['event']}"


def new_movements(sessions: list[dict[str, Any]], sent: set[str]) -> tuple[list[Any], set[str]]:
    """The movements of `sessions` whose keys are not in `sent`, oldest first, and the keys of
    every movement the sessions hold (what to remember next)."""
    held: set[str] = set()
    fresh = []
    for session in sessions:
        for movement in session["movements"]:
            key = movement_key(movement)
            held.add(key)
            if key not in sent:
                fresh.append(movement)
    fresh.sort(key=lambda m: m["timestamp"])
    return fresh, held


async def follow_user(ingress: Ingress, websocket: WebSocket) -> None:
    """Send the user's new movements until the admin leaves or their login session ends."""
    try:
        expiry = ingress.access.require_admin(
            websocket.headers, websocket.cookies, client_of(websocket.scope)
        )
        user_id = schema.check_id("userId", websocket.path_params["user_id"])
    except Exception as exc:
        await deny(websocket, exc)
        return
    await websocket.accept()
    leaving = asyncio.create_task(websocket.receive())  # the admin's close, or a disconnect
    sent: set[str] = set()
    first = True
    try:
        while not leaving.done():
            result = await ingress.dispatch.call(user_id, "analytics")
            fresh, sent = new_movements(result["userSessions"], sent)
            if fresh or first:
                message = {"userId": user_id, "movements": fresh, "at": ingress.now_ms()}
                await websocket.send_text(json.dumps(message))
                first = False
            wait_s = WAIT_S
            if expiry is not None:
                wait_s = min(wait_s, expiry - ingress.access.clock())
                if wait_s <= 0:
                    await websocket.close(CLOSE_EXPIRED, "the admin's login session expired")
                    return
            await until_events(ingress, wait_s, leaving)
    except WebSocketDisconnect:
        return
    except TrackerError as exc:
        # The host or the aggregator failed: the dashboard opens the socket again later.
        await websocket.close(CLOSE_UNAVAILABLE, str(exc)[:120])
    finally:
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await leaving


async def until_events(ingress: Ingress, wait_s: float, leaving: asyncio.Task[Any]) -> None:
    """Wait until the aggregator hears of new events, `wait_s` passes, or the admin leaves."""
    events: asyncio.Future[int] = asyncio.ensure_future(
        answer_within(
            ingress.tracker.aggregator.wait_events.remote(wait_s), ingress.config, "aggregator"
        )
    )
    await asyncio.wait({events, leaving}, return_when=asyncio.FIRST_COMPLETED)
    if not events.done():
        events.cancel()
        return
    events.result()  # an aggregator that failed raises here
