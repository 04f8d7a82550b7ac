"""`GET /api/track/ws`: tracking over a WebSocket, through the real app on uvicorn over the
tracker's actors in the session's Ray (and once through Ray Serve), with a `websockets` client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import ray
from browser_support import serve_asgi
from conftest import file_url
from fault_support import event_ids, movement
from playwright.sync_api import Browser
from support import eventually, now_ms, wait_for
from test_e2e_browser import open_dashboard
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tracker.api import Tracker, connect, shutdown
from tracker.auth import mint_token
from tracker.config import Config
from tracker.handlers import Ingress
from tracker.ingress import build_app
from tracker.placement import host_name

ADMIN = "socket-admin-token-0123456789abcdef0123"
SECRET = "socket-secret-0123456789abcdef0123456"
SOCKET = "/api/track/ws"


def ws_url(base: str, **query: str) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return base.replace("http://", "ws://") + SOCKET + (f"?{params}" if params else "")


@pytest.fixture(scope="module")
def tracker(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracker]:
    """The module's tracker; each test serves its own app over it, with its own settings."""
    config = Config.from_env(
        {},
        storage=file_url(tmp_path_factory.mktemp("socket") / "data"),
        namespace=f"socket-{uuid.uuid4().hex[:12]}",
        rate_limit=0,
        admin_token=ADMIN,
        secret=SECRET,
        host_timeout_s=10.0,
    )
    yield connect(config=config)
    shutdown(config)


@contextmanager
def socket_app(tracker: Tracker, **overrides: Any) -> Iterator[tuple[Tracker, str, Ingress]]:
    """The app over `tracker` on uvicorn, its settings changed by `overrides`: (tracker,
    base URL, ingress)."""
    app = build_app(tracker, dataclasses.replace(tracker.config, **overrides))
    with serve_asgi(app) as url:
        yield tracker, url, app.state.ingress


@asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[ClientConnection]:
    async with ws_connect(url, open_timeout=30, **options) as ws:
        yield ws


async def send(ws: ClientConnection, seq: int, body: dict[str, Any]) -> None:
    await ws.send(json.dumps({**body, "seq": seq}))


async def reply(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(60):
        answer: dict[str, Any] = json.loads(await ws.recv())
    return answer


async def replies(ws: ClientConnection, n: int) -> dict[int, dict[str, Any]]:
    """The next `n` answers, by seq."""
    found: dict[int, dict[str, Any]] = {}
    for _ in range(n):
        answer = await reply(ws)
        found[answer["seq"]] = answer
    return found


def stored_ids(t: Any, user: str) -> list[str]:
    return event_ids(ray.get(t.user(user).export.remote()))


def test_each_message_is_answered_with_its_seq_once_its_events_are_stored(
    tracker: Tracker,
) -> None:
    user = str(uuid.uuid4())
    with socket_app(tracker) as (t, url, _):

        async def scenario() -> dict[int, dict[str, Any]]:
            async with opened(ws_url(url)) as ws:
                await send(ws, 1, movement(user, "a", 1))
                await send(ws, 2, {"events": [movement(user, "b", 2), movement(user, "c", 3)]})
                return await replies(ws, 2)

        answers = asyncio.run(scenario())
        assert answers == {1: {"seq": 1, "accepted": 1}, 2: {"seq": 2, "accepted": 2}}
        # Answered once durable: the export, read from the host, holds them already.
        assert sorted(stored_ids(t, user)) == ["a", "b", "c"]


def test_a_client_that_reconnects_and_resends_what_was_not_answered_loses_and_doubles_nothing(
    tracker: Tracker,
) -> None:
    user = str(uuid.uuid4())
    sent = [movement(user, f"e{i}", i) for i in range(40)]
    with socket_app(tracker) as (t, url, _):

        async def scenario() -> None:
            unanswered = dict(enumerate(sent))
            async with opened(ws_url(url)) as ws:
                for seq, body in unanswered.items():
                    await send(ws, seq, body)
                # The connection drops after a few answers, the others still on their way.
                for seq in await replies(ws, 5):
                    del unanswered[seq]
            async with opened(ws_url(url)) as ws:
                for seq, body in unanswered.items():
                    await send(ws, seq, body)
                answers = await replies(ws, len(unanswered))
            assert set(answers) == set(unanswered)
            assert all(a["accepted"] == 1 for a in answers.values())

        asyncio.run(scenario())
        stored = stored_ids(t, user)
        assert sorted(stored) == sorted(m["eventId"] for m in sent)
        assert len(stored) == len(set(stored))


def test_bad_messages_are_answered_with_the_field_at_fault_and_leave_the_socket_open(
    tracker: Tracker,
) -> None:
    user = str(uuid.uuid4())
    with socket_app(tracker) as (t, url, _):

        async def scenario() -> list[dict[str, Any]]:
            async with opened(ws_url(url)) as ws:
                answers = []
                for bad in (
                    "not json",
                    "[1, 2]",
                    json.dumps(movement(user, "x", 1)),  # no seq
                    json.dumps({**movement(user, "x", 1), "seq": "7"}),
                    json.dumps({**movement(user, "x", 1), "seq": -1}),
                    json.dumps({**movement(user, "x", 1, "s1"), "event": "teleport", "seq": 8}),
                    json.dumps({**movement("someone-known", "x", 1), "seq": 9}),
                ):
                    await ws.send(bad)
                    answers.append(await reply(ws))
                await ws.send(b"\x00binary")
                answers.append(await reply(ws))
                await send(ws, 10, movement(user, "good", 2))
                answers.append(await reply(ws))
                return answers

        answers = asyncio.run(scenario())
        fields = [(a["seq"], a.get("field"), a.get("status")) for a in answers[:-1]]
        assert fields == [
            (None, "body", 400),
            (None, "body", 422),
            (None, "seq", 422),
            (None, "seq", 422),
            (None, "seq", 422),
            (8, "event", 422),
            (9, None, 401),
            (None, "body", 400),
        ]
        assert all(a["error"] for a in answers[:-1])
        assert answers[-1] == {"seq": 10, "accepted": 1}
        assert stored_ids(t, user) == ["good"]


def test_an_identified_user_writes_with_the_token_given_at_the_handshake(
    tracker: Tracker,
) -> None:
    with socket_app(tracker) as (t, url, _):
        token = mint_token(SECRET, "member-7")
        other = mint_token(SECRET, "member-8")

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            async with opened(ws_url(url, token=token)) as ws:
                await send(ws, 1, movement("member-7", "m1", 1))
                mine = await reply(ws)
            async with opened(ws_url(url, token=other)) as ws:
                await send(ws, 2, movement("member-7", "m2", 2))
                theirs = await reply(ws)
            return mine, theirs

        mine, theirs = asyncio.run(scenario())
        assert mine == {"seq": 1, "accepted": 1}
        assert theirs["seq"] == 2 and theirs["status"] == 401
        assert stored_ids(t, "member-7") == ["m1"]


def test_a_page_of_another_site_is_refused_at_the_handshake(
    tracker: Tracker,
) -> None:
    with socket_app(tracker, allowed_origins=("https://shop.example",)) as (_, url, _):

        async def scenario() -> int:
            try:
                async with opened(ws_url(url), origin="https://evil.example"):  # type: ignore[arg-type]
                    return 101
            except InvalidStatus as refused:
                return refused.response.status_code

        assert asyncio.run(scenario()) == 403

        async def allowed() -> dict[str, Any]:
            async with opened(ws_url(url), origin="https://shop.example") as ws:  # type: ignore[arg-type]
                await send(ws, 1, movement(str(uuid.uuid4()), "ok", 1))
                return await reply(ws)

        assert asyncio.run(allowed()) == {"seq": 1, "accepted": 1}


def test_a_socket_opened_with_do_not_track_stores_nothing(
    tracker: Tracker,
) -> None:
    user = str(uuid.uuid4())
    with socket_app(tracker) as (t, url, _):

        async def scenario() -> dict[str, Any]:
            async with opened(ws_url(url), additional_headers={"DNT": "1"}) as ws:
                await send(ws, 1, movement(user, "dnt", 1))
                return await reply(ws)

        assert asyncio.run(scenario()) == {"seq": 1, "accepted": 0}
        assert stored_ids(t, user) == []


def test_a_flood_from_one_socket_is_rate_limited_per_message_and_the_socket_stays_open(
    tracker: Tracker,
) -> None:
    user = str(uuid.uuid4())
    with socket_app(tracker, rate_limit=5.0) as (t, url, _):

        async def scenario() -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
            async with opened(ws_url(url)) as ws:
                for seq in range(60):
                    await send(ws, seq, movement(user, f"f{seq}", seq))
                answers = await replies(ws, 60)
                limited = [a for a in answers.values() if "error" in a]
                # The socket is still open: once the bucket refills, a message goes through.
                await asyncio.sleep(limited[0]["retryAfter"] if limited else 0)
                await send(ws, 100, movement(user, "after", 100))
                return answers, await reply(ws)

        answers, after = asyncio.run(scenario())
        limited = [a for a in answers.values() if "error" in a]
        accepted = [seq for seq, a in answers.items() if a.get("accepted") == 1]
        assert limited and accepted
        assert all(a["status"] == 429 and a["retryAfter"] >= 1 for a in limited)
        assert len(accepted) + len(limited) == 60
        assert after == {"seq": 100, "accepted": 1}
        assert sorted(stored_ids(t, user)) == sorted([f"f{seq}" for seq in accepted] + ["after"])


def test_a_full_replica_closes_new_sockets_with_1013_and_an_idle_socket_is_closed(
    tracker: Tracker,
) -> None:
    with socket_app(tracker, ws_max_sockets=2, ws_idle_s=2.0) as (_, url, _):

        async def scenario() -> tuple[int | None, list[int | None]]:
            async with opened(ws_url(url)) as first, opened(ws_url(url)) as second:
                async with opened(ws_url(url)) as third:
                    with pytest.raises(ConnectionClosed):
                        await reply(third)
                    full = third.close_code
                closes = []
                for ws in (first, second):
                    with pytest.raises(ConnectionClosed):
                        await reply(ws)  # nothing comes but the idle close
                    closes.append(ws.close_code)
            return full, closes

        full, closes = asyncio.run(scenario())
        assert full == 1013
        assert closes == [1000, 1000]


def rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_a_thousand_idle_sockets_are_held_then_closed_and_leave_nothing_behind(
    tracker: Tracker,
) -> None:
    n = 1000
    with socket_app(tracker, ws_max_sockets=n, ws_idle_s=20.0) as (_, url, ingress):
        sockets = ingress.sockets

        async def scenario() -> tuple[int, int | None]:
            before = rss_kb()
            clients: list[ClientConnection] = []
            try:
                for _ in range(0, n, 100):  # in bounded rounds, as a crowd arrives
                    crowd = (
                        ws_connect(ws_url(url), open_timeout=60, compression=None)
                        for _ in range(100)
                    )
                    clients += await asyncio.gather(*crowd)
                await eventually(lambda: sockets.open == n, timeout_s=60, interval_s=0.05)
                held_kb = rss_kb() - before
                async with opened(ws_url(url)) as extra:
                    with pytest.raises(ConnectionClosed):
                        await reply(extra)
                # Each is closed for idling, and none is left counted.
                await eventually(
                    lambda: all(c.close_code is not None for c in clients) and sockets.open == 0,
                    timeout_s=120,
                    interval_s=0.1,
                )
                assert {c.close_code for c in clients} == {1000}
                return held_kb, extra.close_code
            finally:
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

        held_kb, full = asyncio.run(scenario())
        assert full == 1013
        # Both ends of every socket live in this process, without compression (its zlib
        # contexts cost about 45 KB a side, docs/realtime.md): under 100 KB a pair.
        assert held_kb < n * 100, f"{held_kb} KB for {n} sockets"
        print(f"{held_kb / n:.0f} KB per pair of idle sockets")


def test_events_sent_while_their_host_is_killed_are_each_stored_once_after_resends(
    tracker: Tracker,
) -> None:
    user = str(uuid.uuid4())
    window = 20
    with socket_app(tracker) as (t, url, _):
        host = t.hosts[host_name(user, t.config)]
        pid = ray.get(host.pid.remote())

        async def scenario() -> set[int]:
            pending = {i: movement(user, f"k{i}", i) for i in range(200)}
            refused: set[int] = set()
            killed = False
            async with opened(ws_url(url)) as ws:
                for _ in range(100):  # bounded: each round answers its whole window
                    if not pending:
                        break
                    batch = list(pending.items())[:window]
                    for seq, body in batch:
                        await send(ws, seq, body)
                    for seq, answer in (await replies(ws, len(batch))).items():
                        if answer.get("accepted") == 1:
                            del pending[seq]
                        else:
                            assert answer["status"] == 503, answer
                            refused.add(seq)
                    if len(pending) <= 160 and not killed:
                        os.kill(pid, signal.SIGKILL)  # mid-stream, with more to come
                        killed = True
            assert not pending, f"{len(pending)} events never acknowledged"
            return refused

        asyncio.run(scenario())
        assert ray.get(host.pid.remote()) != pid
        stored = stored_ids(t, user)
        assert sorted(stored) == sorted(f"k{i}" for i in range(200))
        assert len(stored) == len(set(stored))


def test_the_serve_deployment_answers_the_socket_on_the_public_port(
    serve_tracker: str, serve_config: Config
) -> None:
    user = str(uuid.uuid4())

    async def scenario() -> dict[int, dict[str, Any]]:
        async with opened(ws_url(serve_tracker)) as ws:
            await send(ws, 1, movement(user, "served", 1))
            await send(ws, 2, {**movement(user, "late", 2), "timestamp": now_ms() + 3_600_000})
            return await replies(ws, 2)

    answers = asyncio.run(scenario())
    assert answers[1] == {"seq": 1, "accepted": 1}
    assert answers[2]["field"] == "timestamp" and answers[2]["status"] == 422


# -- the admin's live view of one user ------------------------------------------------------------


def live_url(base: str, user: str) -> str:
    return base.replace("http://", "ws://") + f"/api/users/{user}/live"


def test_the_admin_follows_one_user_and_gets_each_of_their_new_movements_once(
    tracker: Tracker,
) -> None:
    user, other = str(uuid.uuid4()), str(uuid.uuid4())
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with socket_app(tracker) as (_, url, _):

        async def scenario() -> list[dict[str, Any]]:
            async with opened(ws_url(url)) as ws:
                await send(ws, 1, movement(user, "before", 1))
                await reply(ws)
                async with opened(live_url(url, user), additional_headers=admin) as live:
                    first = await reply(live)
                    await send(ws, 2, movement(other, "someone-else", 2))
                    await send(
                        ws, 3, {"events": [movement(user, "l1", 3), movement(user, "l2", 4)]}
                    )
                    await replies(ws, 2)
                    later = [await reply(live)]
                    while sum(len(m["movements"]) for m in later) < 2:
                        later.append(await reply(live))
                    return [first, *later]

        messages = asyncio.run(scenario())
        assert [m["eventId"] for m in messages[0]["movements"]] == ["before"]
        assert [m["eventId"] for msg in messages[1:] for m in msg["movements"]] == ["l1", "l2"]
        assert all(msg["userId"] == user for msg in messages)


def test_only_the_admin_may_follow_a_user(tracker: Tracker) -> None:
    user = str(uuid.uuid4())
    with socket_app(tracker) as (_, url, _):

        async def status(headers: dict[str, str]) -> int:
            try:
                async with opened(live_url(url, user), additional_headers=headers):
                    return 101
            except InvalidStatus as refused:
                return refused.response.status_code

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "tracker_admin=x"}):
            assert asyncio.run(status(headers)) == 401, headers


@pytest.mark.browser
def test_the_dashboard_panel_follows_a_user_live_in_chromium(
    tracker: Tracker, browser: Browser
) -> None:
    user = str(uuid.uuid4())
    with socket_app(tracker) as (_, url, _):
        context, page = open_dashboard(browser, url, tracker.config)
        try:
            page.fill("[data-testid=live-user-id]", user)
            page.click("[data-testid=live-user] button[type=submit]")
            wait_for(
                lambda: "following" in page.inner_text("[data-testid=live-user-status]"),
                message="the live view to open",
            )
            # (Playwright's own loop runs in this thread: the event goes over HTTP.)
            posted = httpx.post(f"{url}/api/track", json=movement(user, "seen-live", 1))
            assert posted.status_code == 200, posted.text
            rows = "[data-testid=live-user-list] li"
            wait_for(lambda: page.locator(rows).count() == 1, message="the movement's row")
            assert page.get_attribute(rows, "data-event-id") == "seen-live"
            assert "click" in page.inner_text(rows)
        finally:
            context.close()
