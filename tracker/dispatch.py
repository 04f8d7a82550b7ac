"""Calling users' trackers from an async server (the HTTP replica), fast.

`Dispatcher` resolves a user to their host actor and awaits the call. Tracking calls for the
sharded placement are *coalesced*: while `MAX_IN_FLIGHT` `track_stored_batch` calls to a host are in
flight, the requests that arrive for that host queue up and go together in the next call. One
actor call then carries many requests (measured here: about 1,500 req/s with one call per
request, about 2,600 with coalescing), and the host commits them together anyway.

In the per-user placement an idle user's actor exits; a call that races the exit is sent again
to the new incarnation, which recovers the user from storage.

A host that stops answering must not hold the replica's requests (Serve admits a bounded number
per replica, `/healthz` and other hosts' users included): a request waits at most
`host_timeout_s` for its answer, and one that finds `MAX_QUEUED` requests or
`MAX_QUEUED_BYTES` already waiting for its host is refused at once (`HostBusy`). Both are
answered 503, so that a stuck host's users fail fast while the others are served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from ray.actor import ActorHandle
from ray.exceptions import RayError, RayTaskError

from tracker.actors import PerUserRoutes
from tracker.api import Tracker
from tracker.codec import encode_entries
from tracker.config import Config
from tracker.errors import HostBusy, StorageUnavailable
from tracker.metrics import Metrics
from tracker.placement import host_name
from tracker.schema import Movement

Entries = list[tuple[str, bytes]]

MAX_COALESCED = 256
# And at most this many bytes of movement blobs per call: Ray passes a larger argument
# through the object store (its inline limit is 100 KiB), which costs the raylet, the sender
# and the host a copy and a round of bookkeeping each.
MAX_CALL_BYTES = 90 * 1024
# Calls in flight per host. With one, a request arriving just after a call left waits for that
# call's whole round trip before its own starts; with two, it goes at once, and the host's
# journal commits both together anyway.
MAX_IN_FLIGHT = 2
# Requests waiting for one host besides those in flight, and their movement blobs. A host that
# answers leaves tens waiting at most (2,600 requests/s, calls of a few ms); one that has stopped
# would collect requests until they held all the replica's request slots (Serve's
# max_ongoing_requests), and every other route waited behind them. Past either limit a request
# is refused at once: 512 requests are two full calls; 4 MiB, about 45 full calls' worth of
# blobs, only large batches (up to 64 KB each) come near.
MAX_QUEUED = 2 * MAX_COALESCED
MAX_QUEUED_BYTES = 4 * 1024 * 1024

T = TypeVar("T")


class HostQueue:
    """Pending tracking requests for one host, and how many calls to it are in flight.

    A request whose future is done already (cancelled with its client, or past its time limit)
    is dropped unsent when it comes up."""

    def __init__(self, handle: ActorHandle[Any]) -> None:
        self.handle = handle
        self.items: list[tuple[str, Entries]] = []
        self.sizes: list[int] = []
        self.futures: list[asyncio.Future[int]] = []
        self.bytes = 0
        self.in_flight = 0

    def add(self, user_id: str, entries: Entries, future: asyncio.Future[int]) -> None:
        """Queue a request, or raise `HostBusy` when `MAX_QUEUED` requests or
        `MAX_QUEUED_BYTES` wait already (one request alone is always taken)."""
        size = sum(len(blob) for _, blob in entries)
        if self.items and self._full(size):
            self._drop_done()
            if self.items and self._full(size):
                raise HostBusy(
                    f"{len(self.items)} requests ({self.bytes} bytes) wait for this user's "
                    "host already; not stored, retry later"
                )
        self.items.append((user_id, entries))
        self.sizes.append(size)
        self.futures.append(future)
        self.bytes += size

    def take(self) -> tuple[list[tuple[str, Entries]], list[asyncio.Future[int]]]:
        """The oldest requests that fit in one call (at least one, however large)."""
        self._drop_done()
        count = total = 0
        for size in self.sizes[:MAX_COALESCED]:
            total += size
            if count and total > MAX_CALL_BYTES:
                break
            count += 1
        items, futures = self.items[:count], self.futures[:count]
        self.bytes -= sum(self.sizes[:count])
        del self.items[:count], self.futures[:count], self.sizes[:count]
        return items, futures

    def _full(self, size: int) -> bool:
        return len(self.items) >= MAX_QUEUED or self.bytes + size > MAX_QUEUED_BYTES

    def _drop_done(self) -> None:
        """Forget the requests whose futures are done. Run by `take`, and by `add` when the
        queue is full: while the host does not answer, `take` does not run."""
        if all(not future.done() for future in self.futures):
            return
        live = [index for index, future in enumerate(self.futures) if not future.done()]
        self.items = [self.items[index] for index in live]
        self.sizes = [self.sizes[index] for index in live]
        self.futures = [self.futures[index] for index in live]
        self.bytes = sum(self.sizes)


class Dispatcher:
    def __init__(self, tracker: Tracker, metrics: Metrics | None = None) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.config = tracker.config
        self._queues: dict[str, HostQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.per_user = PerUserRoutes(self.config) if self.config.placement == "per-user" else None

    # -- tracking, coalesced ---------------------------------------------------------------

    async def track(self, user_id: str, movements: Sequence[Movement]) -> int:
        # Validated already; sent in the stored form, which the host checks and logs as it is.
        entries = encode_entries(movements)
        if self.per_user is not None:
            result: int = await self.call(user_id, "track_stored", entries)
            return result
        name = host_name(user_id, self.config)
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = HostQueue(self.tracker.hosts[name])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        queue.add(user_id, entries, future)
        self._send_more(queue)
        # A bare timer, as `body.read_limited` has (`asyncio.timeout` costs more per request).
        # The call carrying the request is not cancelled: Ray would not stop it on the host, and
        # its slot stays taken until it ends, so that a host that does not answer gets no more
        # than MAX_IN_FLIGHT calls; the requests behind it time out (or are refused) meanwhile.
        # An answer that comes after the 503 finds the future done and is dropped: the request
        # is not counted as stored. (If that late call did store its events, a retry finds them
        # stored, and they are never counted: the metric may miss events, never count a 503.)
        timer = loop.call_later(self.config.host_timeout_s, _expire, future, self.config)
        try:
            return await future
        finally:
            timer.cancel()

    def _send_more(self, queue: HostQueue) -> None:
        if queue.items and queue.in_flight < MAX_IN_FLIGHT:
            queue.in_flight += 1
            task = asyncio.create_task(self._send(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, queue: HostQueue) -> None:
        # Takes what has queued by the time the task runs: the requests of this loop tick too.
        items, futures = queue.take()
        try:
            if not items:
                return
            started = time.perf_counter()
            try:
                results = await queue.handle.track_stored_batch.remote(items)
                if self.metrics is not None:
                    self.metrics.observe_host_call(len(items), started)
            except RayError as exc:
                results = [actor_error(exc, "host")] * len(items)
            except Exception as exc:
                results = [exc] * len(items)
            for future, result in zip(futures, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            queue.in_flight -= 1
            self._send_more(queue)

    # -- everything else -------------------------------------------------------------------

    async def call(self, user_id: str, method: str, *args: Any) -> Any:
        """Call `method(user_id, *args)` on the user's tracker and await the result, at most
        `host_timeout_s` (then `StorageUnavailable`; the call itself is not stopped).

        Errors raised by the tracker come back as themselves, without Ray's remote traceback
        (which must not reach an HTTP client); Ray's own failures as `actor_error` maps them.
        """
        return await answer_within(self._call(user_id, method, *args), self.config, "host")

    async def _call(self, user_id: str, method: str, *args: Any) -> Any:
        if self.per_user is not None:
            return await self.per_user.call(user_id, method, *args)
        handle = self.tracker.hosts[host_name(user_id, self.config)]
        return await getattr(handle, method).remote(user_id, *args)


async def answer_within(call: Awaitable[T], config: Config, actor: str) -> T:
    """Await a call to an actor (`actor` names it) for at most `host_timeout_s`, then raise
    `StorageUnavailable` (the call itself is not stopped); Ray's failures as `actor_error`
    maps them."""
    timeout = asyncio.timeout(config.host_timeout_s)
    try:
        async with timeout:
            return await call
    except RayError as exc:
        raise actor_error(exc, actor) from None
    except TimeoutError:
        if not timeout.expired():
            raise
        raise _timed_out(config, actor) from None


def actor_error(exc: RayError, actor: str) -> Exception:
    """What a failed call to an actor (`actor` names it) means to the replica's caller.

    An error the actor raised comes back as itself. Ray's failures (the actor died or cannot be
    reached, a process was killed for memory, an object was lost), also when they ended a call
    the actor made in turn, become `StorageUnavailable`: the call may or may not have run, and
    a retry is what helps (an HTTP 503, not a 500 for a whole coalesced batch)."""
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        if isinstance(cause, RayError):
            return actor_error(cause, actor)
        if isinstance(cause, Exception):
            return cause
    return StorageUnavailable(f"{actor} unavailable: {exc}")


def _timed_out(config: Config, actor: str = "host") -> StorageUnavailable:
    return StorageUnavailable(
        f"no answer from the {actor} within {config.host_timeout_s:g} s (TRACKER_HOST_TIMEOUT_S)"
    )


def _expire(future: asyncio.Future[int], config: Config) -> None:
    if not future.done():
        future.set_exception(_timed_out(config))
