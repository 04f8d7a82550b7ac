"""A deadline for each request's line and headers on the replica's own HTTP server.

uvicorn bounds the idle time between requests (its keep-alive timeout) and the body is bounded
in the app (`TRACKER_BODY_TIMEOUT_S`), but nothing bounds the time a client takes to send a
request's headers: a client that opens connections and trickles a byte now and then holds
each one, and the file descriptor under it, for as long as it likes. The app cannot help, as
it sees a request only once its headers are complete.

Serve builds the replica's uvicorn server itself, with uvicorn's `auto` HTTP protocol.
`install` makes `auto` name a subclass of the protocol it stood for, which closes a connection
whose request headers have not all come within the deadline, counted from the connection's
start or, on a kept-alive connection, from the next request's first byte. Each replica
process serves one app, so the change is the process's to make.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn import config as uvicorn_config
from uvicorn.protocols.http.auto import AutoHTTPProtocol

# What a client whose headers came too slowly is told before its connection is closed.
_REASON = b"the request headers did not arrive in time (TRACKER_HEADER_TIMEOUT_S)\n"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_REASON), _REASON)
)


class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools, or h11 without it), with a deadline on headers.

    Both protocols make a new request cycle (`self.cycle`) once a request's headers are
    complete: a request is in its headers from its first byte until then."""

    timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._awaited_cycle: Any = None
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of a request on a kept-alive connection
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._awaited_cycle:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._awaited_cycle = self.cycle
        self._deadline = asyncio.get_running_loop().call_later(self.timeout_s, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        # (A connection upgraded to another protocol is that protocol's now.)
        if not self.transport.is_closing() and self.transport.get_protocol() is self:
            self.transport.write(_TIMED_OUT)
            self.transport.close()


def install(timeout_s: float) -> None:
    """Make uvicorn servers this process starts from now on (with the `auto` protocol, as
    Serve's are) give clients `timeout_s` to send each request's line and headers."""
    HeaderTimeoutProtocol.timeout_s = timeout_s
    uvicorn_config.HTTP_PROTOCOLS["auto"] = f"{__name__}:HeaderTimeoutProtocol"
