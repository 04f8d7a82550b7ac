"""`GET /api/track/ws`: tracking over a WebSocket, with the answers of `POST /api/track`.

Each text message is a body `POST /api/track` accepts plus an integer `seq` of the client's
choosing. It takes the very path of that route (`Ingress.accept`): the Origin check, the
privacy signals, the client address's rate limit and open requests, the body's limits and
schema, the user's proof and the user's rate limit, then the store. It is answered once
stored, `{"seq", "accepted"}`, or refused, `{"seq", "error", "field", "status"}` with the
status `POST /api/track` would have answered; a refused message leaves the socket open.
Messages are handled as they arrive, up to `MAX_IN_FLIGHT` of a socket at once (past that the
socket is not read until one is answered), so answers may come in another order than the
messages.

Who a message writes for is proved as for `POST /api/track`: an anonymous visitor's random
UUID needs nothing; any other user needs their identity token. Browsers set no headers on a
WebSocket, so the token comes as the handshake's `token` query parameter (a program may send
an `Authorization` header instead), and every message of the socket is checked with it.

The Origin check and one token of the client address's rate limit are taken at the
handshake too, so that a refused page or a flooding address is turned away before a socket is
opened (with the status the POST route would answer). A replica holds at most
`TRACKER_WS_MAX_SOCKETS` sockets: past it a new one is accepted and closed at once with 1013
(try again later). A socket with no message for `TRACKER_WS_IDLE_S` is closed (1000); the
HTTP server pings every socket at the protocol level and drops one whose peer stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tracker import schema
from tracker.errors import InvalidInput, InvalidMovement
from tracker.http_errors import deny, socket_error
from tracker.ratelimit import client_of

if TYPE_CHECKING:
    from tracker.handlers import Ingress

log = logging.getLogger(__name__)

# Messages of one socket being stored at once; more wait unread (the client's TCP window then
# holds them), so one socket cannot make the replica hold an unbounded number.
MAX_IN_FLIGHT = 64
MAX_SEQ = 2**53
# Close codes (RFC 6455): normal, and the server is overloaded.
CLOSE_IDLE = 1000
CLOSE_TRY_AGAIN_LATER = 1013


class Sockets:
    """The replica's open tracking sockets, up to `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def enter(self) -> bool:
        """Count one more socket; False (and not counted) when the replica holds `limit`."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


def split_message(text: str) -> tuple[int, bytes]:
    """A message's `seq`, and the body `POST /api/track` would get: the message without it."""
    message = schema.decode_json(text.encode())
    if not isinstance(message, dict):
        raise InvalidMovement("body", "expected a JSON object: a movement or {events}, with seq")
    seq = message.pop("seq", None)
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        shown = repr(seq) if len(repr(seq)) <= 32 else f"{repr(seq)[:32]}..."
        raise InvalidMovement("seq", f"{shown}: expected an integer from 0 to {MAX_SEQ}")
    return seq, msgspec.json.encode(message)


async def once(body: bytes) -> AsyncIterator[bytes]:
    yield body


class TrackSocket:
    """One tracking socket: its handshake's headers, the messages it has in flight."""

    def __init__(self, ingress: Ingress, websocket: WebSocket) -> None:
        self.ingress = ingress
        self.websocket = websocket
        self.client = client_of(websocket.scope)
        self.headers = message_headers(websocket)
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.in_flight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Read messages until the client leaves or the socket idles out; then let the
        messages in flight finish (they are stored, and answered if the client is still
        there)."""
        try:
            await self.read()
        finally:
            if self.in_flight:
                await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def read(self) -> None:
        idle_s = self.ingress.config.ws_idle_s
        while True:
            await self.slots.acquire()
            try:
                async with asyncio.timeout(idle_s):
                    message = await self.websocket.receive()
            except TimeoutError:
                self.slots.release()
                if self.in_flight:
                    continue  # waiting on the hosts is not idling
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await self.websocket.close(CLOSE_IDLE, "idle")
                return
            if message["type"] == "websocket.disconnect":
                return
            task = asyncio.create_task(self.answer(message))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def answer(self, message: MutableMapping[str, Any]) -> None:
        seq: int | None = None
        try:
            text = message.get("text")
            if text is None:
                raise InvalidInput("body", "expected a text message (JSON), not binary")
            seq, body = split_message(text)
            accepted = await self.ingress.accept(self.headers, self.client, once(body))
            reply: dict[str, Any] = {"seq": seq, "accepted": accepted}
        except Exception as exc:
            reply = socket_error(exc, seq)
        finally:
            self.slots.release()
        await self.send(reply)

    async def send(self, reply: dict[str, Any]) -> None:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            return
        # The client may have left meanwhile: what it sent is stored, and a resend stores it once.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.websocket.send_text(msgspec.json.encode(reply).decode())


def message_headers(websocket: WebSocket) -> dict[str, str]:
    """The headers every message of the socket is read with, as `POST /api/track` reads its
    own: the handshake's, a JSON body, and the `token` query parameter as the bearer."""
    headers = {name: value for name, value in websocket.headers.items() if name != "content-length"}
    headers["content-type"] = "application/json"
    token = websocket.query_params.get("token")
    if token is not None and "authorization" not in headers:
        headers["authorization"] = f"Bearer {token}"
    return headers


async def serve_socket(ingress: Ingress, websocket: WebSocket) -> None:
    """`GET /api/track/ws`, from the handshake to the close."""
    try:
        ingress.origins.check(websocket.headers)
        ingress.ip_limiter.check(client_of(websocket.scope))
    except Exception as exc:
        await deny(websocket, exc)
        return
    await websocket.accept()
    if not ingress.sockets.enter():
        await websocket.close(CLOSE_TRY_AGAIN_LATER, "too many sockets; try again later")
        return
    try:
        await TrackSocket(ingress, websocket).run()
    finally:
        ingress.sockets.leave()
