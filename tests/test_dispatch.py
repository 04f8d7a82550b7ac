"""How the HTTP replica calls the tracker's actors: tracking requests grouped into calls to a
host, and what a client sees when a host does not answer or an actor fails.

The hosts are real `UserHost`s on file storage in this process, behind a stand-in for Ray's
actor handle that can hold their calls (a host that does not answer) or fail them as Ray does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ray.exceptions import ActorDiedError, ActorUnavailableError, OutOfMemoryError, RayTaskError
from support import eventually, movement, now_ms

from tracker.api import Tracker
from tracker.config import Config
from tracker.dispatch import (
    MAX_CALL_BYTES,
    MAX_COALESCED,
    MAX_IN_FLIGHT,
    MAX_QUEUED,
    MAX_QUEUED_BYTES,
    Dispatcher,
    HostQueue,
)
from tracker.errors import HostBusy, StorageUnavailable, UnknownSession
from tracker.ingress import build_app
from tracker.placement import host_name, sharded_host_names
from tracker.schema import Movement, movements_from_obj
from tracker.storage import open_storage
from tracker.user_host import UserHost

T = TypeVar("T")
WAIT_S = 10.0  # the longest any condition here is waited for


def queued(sizes: list[int]) -> HostQueue:
    queue = HostQueue(handle=None)  # type: ignore[arg-type]  # `take` never calls the host
    loop = asyncio.get_running_loop()
    for index, size in enumerate(sizes):
        # Two sessions' blobs: a request's size is the sum of its blobs'.
        entries = [("s1", b"x" * (size // 2)), ("s2", b"x" * (size - size // 2))]
        queue.add(f"user-{index}", entries, loop.create_future())
    return queue


def test_a_call_takes_the_oldest_requests_that_fit_in_ray_inline_arguments() -> None:
    async def scenario() -> None:
        third = MAX_CALL_BYTES // 3
        queue = queued([third, third, third, third + 1, 10])
        futures = list(queue.futures)
        items, taken = queue.take()
        assert [user for user, _ in items] == ["user-0", "user-1", "user-2"]
        assert taken == futures[:3]
        items, taken = queue.take()  # a third plus one more byte would not fit beside it
        assert [user for user, _ in items] == ["user-3", "user-4"]
        assert taken == futures[3:]
        assert queue.take() == ([], [])

    asyncio.run(scenario())


def test_a_request_larger_than_the_budget_goes_alone_and_many_small_ones_are_capped() -> None:
    async def scenario() -> None:
        queue = queued([MAX_CALL_BYTES * 2, 1])
        assert [user for user, _ in queue.take()[0]] == ["user-0"]
        assert [user for user, _ in queue.take()[0]] == ["user-1"]
        many = queued([1] * (MAX_COALESCED + 5))
        assert len(many.take()[0]) == MAX_COALESCED
        assert len(many.take()[0]) == 5

    asyncio.run(scenario())


def test_requests_whose_clients_are_gone_are_dropped_unsent() -> None:
    async def scenario() -> None:
        queue = queued([10, 20, 30, 40])
        queue.futures[0].cancel()
        queue.futures[2].cancel()
        items, futures = queue.take()
        assert [user for user, _ in items] == ["user-1", "user-3"]
        assert not any(future.done() for future in futures)
        assert (queue.items, queue.bytes) == ([], 0)
        # Dropped ones do not count towards a call's limits either.
        queue = queued([1] * (MAX_COALESCED + 5))
        for future in queue.futures[:5]:
            future.cancel()
        assert len(queue.take()[0]) == MAX_COALESCED
        assert queue.take() == ([], [])

    asyncio.run(scenario())


def test_a_full_queue_refuses_a_request_until_waiting_ones_are_gone() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        entries = [("s1", b"x")]
        queue = queued([1] * MAX_QUEUED)
        with pytest.raises(HostBusy, match="not stored, retry later"):
            queue.add("late", entries, loop.create_future())
        queue.futures[7].cancel()  # a client gone makes room
        queue.add("late", entries, loop.create_future())
        assert len(queue.items) == MAX_QUEUED
        assert queue.items[-1][0] == "late"
        # The bytes are capped too; a lone request of any size is taken.
        half = MAX_QUEUED_BYTES // 2
        queue = queued([half, half])
        with pytest.raises(HostBusy):
            queue.add("late", entries, loop.create_future())
        assert len(queued([MAX_QUEUED_BYTES * 2]).items) == 1

    asyncio.run(scenario())


# -- a host that does not answer -------------------------------------------------------------


class Handle:
    """Ray's actor handle, standing in: `handle.method.remote(*args)` runs the target's method
    as a task of this loop. `hold()` holds every call until `release()`, as a host that stops
    answering does; `fail` raises an error in place of every call."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.started = 0  # calls begun (held ones included)
        self.running = 0  # calls not ended
        self.fail: BaseException | None = None
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __getattr__(self, name: str) -> Any:
        handle = self

        class Method:
            def remote(self, *args: Any) -> asyncio.Future[Any]:
                return asyncio.ensure_future(handle._run(name, args))

        return Method()

    async def _run(self, name: str, args: tuple[Any, ...]) -> Any:
        self.started += 1
        self.running += 1
        try:
            await self._open.wait()
            if self.fail is not None:
                raise self.fail
            return await getattr(self.target, name)(*args)
        finally:
            self.running -= 1


class Rig:
    """What `Dispatcher` and the app take of a `Tracker`: its config and actor handles."""

    def __init__(self, config: Config, hosts: dict[str, Handle], aggregator: Handle) -> None:
        self.config = config
        self.hosts = hosts
        self.aggregator = aggregator

    @property
    def tracker(self) -> Tracker:
        return cast(Tracker, self)

    def host(self, user_id: str) -> Handle:
        return self.hosts[host_name(user_id, self.config)]


@asynccontextmanager
async def rig(storage: str, **settings: Any) -> AsyncIterator[Rig]:
    config = Config(
        storage=storage, admin_token="admin-token", secret="secret", rate_limit=0, **settings
    )
    hosts = {name: UserHost(name, open_storage(storage)) for name in sharded_host_names(config)}
    for host in hosts.values():
        await host.start()
    handles = {name: Handle(host) for name, host in hosts.items()}
    try:
        yield Rig(config, handles, aggregator=Handle(object()))
    finally:
        for handle in handles.values():
            handle.release()
        await eventually(lambda: all(handle.running == 0 for handle in handles.values()), WAIT_S)
        for host in hosts.values():
            await host.stop()


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT_S)


ADMIN = {"Authorization": "Bearer admin-token"}


@asynccontextmanager
async def served(
    r: Rig, *, headers: dict[str, str] | None = None, **transport: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app over the rig's stand-ins, and an HTTP client on it (in-process, through ASGI;
    `transport` options such as the `client` address go to the transport)."""
    app = build_app(r.tracker, r.config)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, **transport), base_url="http://t", headers=headers
    ) as client:
        yield app, client


def user_on(config: Config, host: str) -> str:
    while True:
        user = str(uuid.uuid4())
        if host_name(user, config) == host:
            return user


def clicks(user_id: str, n: int = 1) -> list[Movement]:
    now = now_ms()
    movements = movements_from_obj([movement(user_id, at=now) for _ in range(n)], now)
    for each in movements:
        each.eventId = uuid.uuid4().hex
    return movements


def test_a_host_that_does_not_answer_gets_its_users_a_503_in_time_and_no_more_calls(
    file_storage: str,
) -> None:
    async def scenario() -> None:
        async with rig(file_storage, host_timeout_s=0.2) as r:
            dispatch = Dispatcher(r.tracker)
            user = user_on(r.config, "host-0")
            host = r.host(user)
            host.hold()
            for _ in range(3):  # rounds of requests, each answered 503 in its time
                started = time.monotonic()
                results = await within(
                    asyncio.gather(
                        *(dispatch.track(user, clicks(user)) for _ in range(20)),
                        return_exceptions=True,
                    )
                )
                assert all(isinstance(result, StorageUnavailable) for result in results)
                assert "TRACKER_HOST_TIMEOUT_S" in str(results[0])
                assert time.monotonic() - started < 5
            # The calls that carried the first ones are still out, and no more were sent.
            assert host.started == host.running == MAX_IN_FLIGHT
            # Once the host answers, the late answers are dropped and new requests served.
            host.release()
            assert await within(dispatch.track(user, clicks(user))) == 1

    asyncio.run(scenario())


def test_users_of_a_stuck_host_are_refused_at_once_while_other_hosts_serve(
    file_storage: str,
) -> None:
    async def scenario() -> None:
        async with rig(file_storage, hosts=2) as r:
            dispatch = Dispatcher(r.tracker)
            stuck, other = user_on(r.config, "host-0"), user_on(r.config, "host-1")
            host = r.host(stuck)
            host.hold()
            waiting = []
            for _ in range(MAX_IN_FLIGHT):  # one request in each call
                waiting.append(asyncio.ensure_future(dispatch.track(stuck, clicks(stuck))))
                await eventually(lambda: host.started == len(waiting), WAIT_S)
            waiting += [
                asyncio.ensure_future(dispatch.track(stuck, clicks(stuck)))
                for _ in range(MAX_QUEUED)
            ]
            await eventually(lambda: len(dispatch._queues["host-0"].items) == MAX_QUEUED, WAIT_S)
            with pytest.raises(HostBusy):
                await within(dispatch.track(stuck, clicks(stuck)))
            assert await within(dispatch.track(other, clicks(other))) == 1
            # Clients that leave make room (Serve cancels their requests).
            for request in waiting[-3:]:
                request.cancel()
            late = asyncio.ensure_future(dispatch.track(stuck, clicks(stuck)))
            await asyncio.sleep(0)
            assert not late.done()
            host.release()
            assert await within(late) == 1
            answered = await within(asyncio.gather(*waiting[:-3]))
            assert answered == [1] * (len(waiting) - 3)
            assert all(request.cancelled() for request in waiting[-3:])

    asyncio.run(scenario())


def test_other_calls_to_a_host_that_does_not_answer_are_answered_503_in_time(
    file_storage: str,
) -> None:
    async def scenario() -> None:
        async with rig(file_storage, host_timeout_s=0.2) as r:
            dispatch = Dispatcher(r.tracker)
            user = user_on(r.config, "host-0")
            await dispatch.call(user, "create_session", "s1", None)
            r.host(user).hold()
            with pytest.raises(StorageUnavailable, match="TRACKER_HOST_TIMEOUT_S"):
                await within(dispatch.call(user, "get_session", "s1"))

    asyncio.run(scenario())


def metric(app: Any, name: str) -> float:
    text = app.state.ingress.metrics.render().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def test_a_tracking_request_answered_503_by_a_stuck_host_is_not_counted_as_stored(
    file_storage: str,
) -> None:
    async def scenario() -> None:
        async with rig(file_storage, host_timeout_s=0.2) as r, served(r) as (app, client):
            user = user_on(r.config, "host-0")
            event = {
                "userId": user,
                "sessionId": "s1",
                "timestamp": time.time_ns() // 1_000_000,
                "event": "click",
                "eventId": "e-1",
            }
            host = r.host(user)
            host.hold()
            response = await within(client.post("/api/track", json=event))
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            host.release()  # the late answer: stored, after its request was answered
            await eventually(lambda: host.running == 0, WAIT_S)
            assert metric(app, "tracker_events_accepted_total") == 0
            response = await within(client.post("/api/track", json=event))  # a retry
            assert response.json() == {"success": True, "accepted": 1}
            stored = await within(
                client.get(
                    "/api/users/" + user + "/export",
                    headers=ADMIN,
                )
            )
            assert stored.text.count('"e-1"') == 1

    asyncio.run(scenario())


# -- Ray's failures ----------------------------------------------------------------------------


def raised_in_actor(cause: Exception) -> RayTaskError:
    """What awaiting a call gives when the actor's method raised `cause`, as Ray builds it."""
    error: RayTaskError = RayTaskError("method", "traceback", cause).as_instanceof_cause()
    return error


def test_ray_failures_of_a_host_are_answered_503_and_its_own_errors_come_back_as_they_are(
    file_storage: str,
) -> None:
    async def scenario() -> None:
        async with rig(file_storage) as r:
            dispatch = Dispatcher(r.tracker)
            user = user_on(r.config, "host-0")
            host = r.host(user)
            for failure in (
                OutOfMemoryError("the host's worker was killed for memory"),
                ActorUnavailableError("unreachable", b"0" * 16),
                ActorDiedError(),
                raised_in_actor(ActorDiedError()),  # a call the host made in turn failed
            ):
                host.fail = failure
                with pytest.raises(StorageUnavailable, match="host unavailable"):
                    await within(dispatch.track(user, clicks(user)))
                with pytest.raises(StorageUnavailable, match="host unavailable"):
                    await within(dispatch.call(user, "get_session", "s1"))
            host.fail = raised_in_actor(UnknownSession(user, "s1"))
            with pytest.raises(UnknownSession) as raised:
                await within(dispatch.call(user, "get_session", "s1"))
            assert not isinstance(raised.value, RayTaskError)  # Ray's traceback stays out

            async with served(r) as (_app, client):
                host.fail = OutOfMemoryError("the host's worker was killed for memory")
                now = time.time_ns() // 1_000_000
                event = {"userId": user, "sessionId": "s1", "timestamp": now, "event": "click"}
                response = await within(client.post("/api/track", json=event))
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"

    asyncio.run(scenario())


def test_analytics_answer_503_when_the_aggregator_is_down(file_storage: str) -> None:
    async def scenario() -> None:
        async with rig(file_storage) as r, served(r, headers=ADMIN) as (_app, client):
            for failure in (ActorDiedError(), ActorUnavailableError("restarting", b"0" * 16)):
                r.aggregator.fail = failure
                response = await within(client.get("/api/analytics"))
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                # The live stream has answered 200 already: it ends, for the browser to
                # connect again after its `retry`, instead of breaking the connection.
                response = await within(client.get("/api/analytics/stream"))
                assert response.status_code == 200
                assert response.text == "retry: 2000\n\n"

    asyncio.run(scenario())


def test_analytics_answer_503_in_time_when_the_aggregator_does_not_answer(
    file_storage: str,
) -> None:
    async def scenario() -> None:
        async with (
            rig(file_storage, host_timeout_s=0.2) as r,
            served(r, headers=ADMIN) as (_app, client),
        ):
            r.aggregator.hold()
            response = await within(client.get("/api/analytics"))
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            r.aggregator.release()
            await eventually(lambda: r.aggregator.running == 0, WAIT_S)

    asyncio.run(scenario())


def test_tracking_through_an_untrusted_proxy_is_logged_once(
    file_storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """All visitors behind a balancer the server does not trust share one rate limit: the
    operator is told, once, which address to add to FORWARDED_ALLOW_IPS."""

    async def scenario() -> None:
        async with (
            rig(file_storage) as r,
            served(r, client=("10.0.1.5", 40000)) as (_app, client),
        ):
            for visitor in ("203.0.113.9", "203.0.113.10"):
                user = str(uuid.uuid4())
                now = time.time_ns() // 1_000_000
                event = {"userId": user, "sessionId": "s1", "timestamp": now, "event": "click"}
                response = await within(
                    client.post("/api/track", json=event, headers={"X-Forwarded-For": visitor})
                )
                assert response.status_code == 200, response.text

    with caplog.at_level(logging.WARNING, logger="tracker.handlers"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("tracking requests from 10.0.1.5 carry")
    assert "FORWARDED_ALLOW_IPS" in warnings[0]
