"""The browser tracker (tracker/static/tracker.js) in a real Chromium, against a recording server.

The server here is not the tracker backend: it serves tracker.js and a test page under the
production Content-Security-Policy, answers like the HTTP contract, and records every request.
Bodies are validated with the real schema (`tracker.schema`), and like the backend it refuses a
batch that mixes users (422) and a user who is not anonymous without a bearer token (401), so an
event the backend would refuse fails these tests too.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from browser_support import serve_asgi, wait_for_tracker, wait_page_ms
from playwright.sync_api import Browser, BrowserContext, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from support import wait_for

from tracker.auth import is_anonymous
from tracker.errors import InvalidInput
from tracker.schema import movements_from_json, session_request_from_obj

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parent.parent / "tracker" / "static"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SLOW = {"flush": "60000", "hover": "60000"}  # sent on a full batch, flush() or hiding only
# The events the site's pages saved for later (each page under a key of its own), all of them.
SAVED = """Object.keys(localStorage)
  .filter(k => k === 'tracking_pending' || k.startsWith('tracking_pending.'))
  .flatMap(k => JSON.parse(localStorage.getItem(k)))"""
NOTHING_SAVED = f"({SAVED}).length === 0"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tracker test page</title>
<link rel="stylesheet" href="/test.css">
<script src="/tracker.js" defer {attributes}></script>
</head>
<body>
<nav><a id="shop-link" class="nav" href="/shop">Shop</a>
<a id="next-page" href="/page2?{query}">Next page</a></nav>
<button id="buy" class="btn primary" type="button">Buy</button>
<button id="signup" type="button" data-tracker-event="signup" data-tracker-prop-plan="pro"
 data-tracker-prop-source="hero"><span>Sign up</span></button>
<svg id="chart" width="200" height="100"><circle class="dot big" cx="50" cy="50" r="40"/></svg>
<form id="signup">
<input name="fullName" type="text">
<input id="email" type="email">
<input name="password" type="password">
<input name="card" autocomplete="cc-number">
</form>
<div class="tall"></div>
</body>
</html>
"""
CSS = """
body { margin: 40px; font: 16px sans-serif; }
button, input { display: block; margin: 8px 0; }
.tall { height: 4000px; }
"""


# The built files of the client: tracker.js and those it loads on demand.
BUILT = re.compile(r"tracker(\.[a-z]+\.[0-9a-f]{10})?\.js")
# What the client sends beyond today's schema, by the contract of the analytics server (the
# session's and an entering page view's referrer and campaign, the session's automation flag,
# custom events): checked here as that contract states, then left out of what the schema
# checks.
ADDITIONS = ("referrer", "utm", "automation")
UTM_KEYS = {"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"}


def require(condition: bool, field: str, value: Any) -> None:
    if not condition:
        raise InvalidInput(field, f"not as the contract says: {value!r}")


def check_additions(fields: dict[str, Any]) -> None:
    referrer = fields.get("referrer")
    ok = referrer is None or (isinstance(referrer, str) and 0 < len(referrer) <= 2048)
    require(ok, "referrer", referrer)
    utm = fields.get("utm", {})
    require(isinstance(utm, dict) and set(utm) <= UTM_KEYS, "utm", utm)
    require(all(isinstance(v, str) and len(v) <= 256 for v in utm.values()), "utm", utm)
    require(fields.get("automation") in (None, True, False), "automation", fields)


def without_additions(raw: dict[str, Any]) -> dict[str, Any]:
    check_additions(raw)
    return {k: v for k, v in raw.items() if k not in ADDITIONS}


def check_custom(event: dict[str, Any]) -> None:
    data = event["data"]
    require(isinstance(data["name"], str) and 1 <= len(data["name"]) <= 64, "data.name", data)
    properties = data.get("properties", {})
    require(isinstance(properties, dict) and len(properties) <= 20, "data.properties", data)
    flat = all(isinstance(v, str | int | float | bool) for v in properties.values())
    require(flat, "data.properties", data)


def checked_events(body: bytes) -> list[dict[str, Any]]:
    """The batch's events, each checked: by today's schema, or, for what the client sends
    beyond it (custom events, an entering page view's referrer and campaign), by the
    contract."""
    raw = json.loads(body)
    events: list[dict[str, Any]] = raw["events"] if isinstance(raw, dict) else raw
    kept = []
    for event in events:
        if event.get("event") == "custom":
            check_custom(event)
            continue
        data = event.get("data", {})
        check_additions(data)
        kept.append({**event, "data": {k: v for k, v in data.items() if k not in ADDITIONS}})
    if kept:
        movements_from_json(json.dumps({"events": kept}).encode(), int(time.time() * 1000))
    return events


@dataclass
class Recorded:
    path: str
    content_type: str
    body: bytes
    authorization: str | None
    cookie: str | None
    at: float
    status: int

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[dict[str, Any]]:
        raw = self.json()
        return list(raw["events"]) if isinstance(raw, dict) else list(raw)


@dataclass
class Recorder:
    """Everything the browser sent, and the answers to give to `/api/track` (next first)."""

    requests: list[Recorded] = field(default_factory=list)
    track_answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    variant_asks: list[tuple[str, str]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # the client's files the page loaded
    # WebSocket: each message as received, and how many to leave unanswered, closing the socket
    socket_messages: list[dict[str, Any]] = field(default_factory=list)
    socket_drops: int = 0
    sockets: int = 0  # opened
    refuse_additions: bool = False  # as a server older than the client does
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, recorded: Recorded) -> None:
        with self.lock:
            self.requests.append(recorded)

    def snapshot(self, path: str | None = None) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def batches(self) -> list[Recorded]:
        return self.snapshot("/api/track")

    def events(self, accepted_only: bool = True) -> list[dict[str, Any]]:
        return [
            event
            for batch in self.batches()
            if batch.status == 200 or not accepted_only
            for event in batch.events()
        ]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == kind]


def recording_app(recorder: Recorder) -> Starlette:
    async def record(request: Request, status: int) -> None:
        recorder.add(
            Recorded(
                path=request.url.path,
                content_type=request.headers.get("content-type", ""),
                body=await request.body(),
                authorization=request.headers.get("authorization"),
                cookie=request.headers.get("cookie"),
                at=time.monotonic(),
                status=status,
            )
        )

    async def session(request: Request) -> Response:
        raw = json.loads(await request.body())
        if recorder.refuse_additions and set(ADDITIONS) & set(raw):
            await record(request, 422)
            return JSONResponse({"error": "unknown field", "field": "automation"}, 422)
        try:
            created = session_request_from_obj(without_additions(raw))
        except (ValueError, InvalidInput) as exc:
            recorder.rejected.append(f"session: {exc}")
            await record(request, 422)
            return JSONResponse({"error": str(exc)}, status_code=422)
        await record(request, 200)
        response = JSONResponse({"success": True, "session": {"sessionId": created.sessionId}})
        response.set_cookie("tracker_visitor", created.sessionId, httponly=True, samesite="lax")
        return response

    async def track(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media not in ("application/json", "text/plain"):
            await record(request, 415)
            return JSONResponse({"error": "unsupported media type"}, status_code=415)
        body = await request.body()
        try:
            events = checked_events(body)
        except InvalidInput as exc:
            recorder.rejected.append(f"track: {exc}")
            await record(request, 422)
            return JSONResponse({"error": exc.message, "field": exc.field}, status_code=422)
        users = {e["userId"] for e in events}
        if len(users) > 1:
            recorder.rejected.append(f"track: one request for several users {sorted(users)}")
            await record(request, 422)
            return JSONResponse({"error": "all events of one request must be for one user"}, 422)
        anonymous = not events or is_anonymous(events[0]["userId"])
        if not anonymous and not request.headers.get("authorization", "").startswith("Bearer "):
            recorder.rejected.append(f"track: {sorted(users)} without a token")
            await record(request, 401)
            return JSONResponse({"error": "an identity token is required"}, 401)
        with recorder.lock:
            status, headers = recorder.track_answers.pop(0) if recorder.track_answers else (200, {})
        await record(request, status)
        if status != 200:
            return JSONResponse({"error": "scripted"}, status_code=status, headers=headers)
        return JSONResponse({"success": True, "accepted": len(events)})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        with recorder.lock:
            recorder.sockets += 1
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                with recorder.lock:
                    recorder.socket_messages.append(message)
                    drop = recorder.socket_drops > 0
                    recorder.socket_drops -= drop
                if drop:  # a connection lost before the answer
                    await websocket.close(1011)
                    return
                seq = message["seq"]
                batch = {k: v for k, v in message.items() if k != "seq"}
                try:
                    events = checked_events(json.dumps(batch).encode())
                except InvalidInput as exc:
                    recorder.rejected.append(f"socket: {exc}")
                    refusal = {"seq": seq, "error": exc.message, "field": exc.field}
                    await websocket.send_json(refusal)
                    continue
                await websocket.send_json({"seq": seq, "accepted": len(events)})
        except WebSocketDisconnect:
            return

    async def page(request: Request) -> Response:
        params = request.query_params
        hover = params.get("hover", "100")
        attributes = {
            "data-flush-interval-ms": params.get("flush", "100"),
            "data-hover-ms": None if hover == "off" else hover,
            "data-user-id": params.get("user"),
            "data-token": params.get("token"),
            "data-websocket": "" if "ws" in params else None,
            "data-experiments": "" if "experiments" in params else None,
        }
        html = PAGE.format(
            attributes=" ".join(f'{k}="{v}"' for k, v in attributes.items() if v is not None),
            query=urlencode(dict(params)),
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    async def done(request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>done</title><p>done</p>")

    async def sentinel(request: Request) -> Response:
        await record(request, 200)
        return PlainTextResponse("ok")

    async def script(request: Request) -> Response:
        name = request.url.path.lstrip("/")
        if not BUILT.fullmatch(name):
            return PlainTextResponse("no such file", status_code=404)
        if name != "tracker.js":
            with recorder.lock:
                recorder.scripts.append(name)
        return Response((STATIC / name).read_bytes(), media_type="text/javascript")

    async def identify(request: Request) -> Response:
        await record(request, 200)
        linked = json.loads(await request.body())
        return JSONResponse({"userId": linked["userId"], "linked": True})

    async def variant(request: Request) -> Response:
        await record(request, 200)
        with recorder.lock:
            recorder.variant_asks.append(
                (request.path_params["name"], request.query_params.get("userId", ""))
            )
        return JSONResponse({"variant": f"{request.path_params['name']}-b"})

    async def stylesheet(request: Request) -> Response:
        return Response(CSS, media_type="text/css")

    return Starlette(
        routes=[
            Route("/api/track/session", session, methods=["POST"]),
            Route("/api/track", track, methods=["POST"]),
            WebSocketRoute("/api/track/ws", socket),
            Route("/sentinel", sentinel, methods=["POST"]),
            Route("/api/track/identify", identify, methods=["POST"]),
            Route("/api/experiments/{name}/variant", variant),
            Route("/tracker.js", script),
            Route("/tracker.{asset}.js", script),
            Route("/test.css", stylesheet),
            Route("/done", done),
            Route("/{path:path}", page),
        ]
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def base_url(recorder: Recorder) -> Iterator[str]:
    with serve_asgi(recording_app(recorder)) as url:
        yield url
    assert recorder.rejected == [], "the tracker sent something the schema refuses"


@pytest.fixture
def context(browser: Browser, base_url: str) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    yield context
    context.close()


def open_page(context: BrowserContext, base_url: str, path: str = "/page", **params: str) -> Page:
    page = context.new_page()
    page.goto(f"{base_url}{path}?{urlencode(params)}")
    wait_for_tracker(page)
    return page


def wait_for_events(
    recorder: Recorder, kind: str, count: int = 1, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        found = recorder.of(kind)
        return found if len(found) >= count else None

    try:
        return wait_for(enough, timeout_s=timeout_s, message=f"{count} {kind} event(s)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; got {[e['event'] for e in recorder.events()]}") from None


def hide(page: Page) -> None:
    page.evaluate(
        """() => {
        Object.defineProperty(
            document, 'visibilityState', {get: () => 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    )


def leave_and_settle(page: Page, recorder: Recorder, base_url: str) -> None:
    """Navigate away (the tracker's last chance to send) and wait until a later request lands."""
    page.goto(f"{base_url}/done")
    page.evaluate("fetch('/sentinel', {method: 'POST'})")
    wait_for(lambda: recorder.snapshot("/sentinel"), message="the sentinel request")


def test_the_session_is_created_before_any_event_and_events_carry_its_cookie(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    first = recorder.snapshot()[0]
    assert first.path == "/api/track/session"
    assert first.content_type.startswith("application/json")
    session = first.json()
    assert session["userId"] == page.evaluate("localStorage.getItem('tracking_user_id')")
    assert session["sessionId"] == page.evaluate("sessionStorage.getItem('tracking_session_id')")
    assert session["deviceInfo"]["userAgent"]
    assert re.fullmatch(r"\d+x\d+", session["deviceInfo"]["screenResolution"])
    assert session["deviceInfo"]["timezone"]
    batch = recorder.batches()[0]
    assert batch.content_type.startswith("application/json")
    assert f"tracker_visitor={session['sessionId']}" in (batch.cookie or "")
    view = recorder.of("page_view")[0]
    assert (view["userId"], view["sessionId"]) == (session["userId"], session["sessionId"])
    assert view["data"]["path"] == "/page"
    assert view["data"]["metadata"]["viewportWidth"] == 1000
    assert UUID4.match(view["eventId"])


def test_an_identified_user_sends_its_token_as_a_bearer_header(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    open_page(context, base_url, user="alice@example.org", token="s3cret")
    wait_for_events(recorder, "page_view")
    assert recorder.snapshot("/api/track/session")[0].json()["userId"] == "alice@example.org"
    assert {r.authorization for r in recorder.snapshot()} == {"Bearer s3cret"}
    assert {e["userId"] for e in recorder.events()} == {"alice@example.org"}


def test_identify_switches_user_and_starts_a_session_for_it(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    assert page.evaluate("tracker.identify('bob', 'tok-b')") is True
    assert page.evaluate("tracker.identify('no spaces allowed', 'x')") is False
    page.click("#buy")
    click = wait_for_events(recorder, "click")[0]
    assert click["userId"] == "bob"
    sessions = recorder.snapshot("/api/track/session")
    assert [s.json()["userId"] for s in sessions][-1] == "bob"
    assert sessions[-1].authorization == "Bearer tok-b"


def sent_as(recorder: Recorder) -> list[tuple[str, str, str | None]]:
    """(event, userId, Authorization header) of every accepted event, in the order sent."""
    return [
        (e["event"], e["userId"], batch.authorization)
        for batch in recorder.batches()
        if batch.status == 200
        for e in batch.events()
    ]


def on_load(context: BrowserContext, script: str) -> None:
    """Run `script` as soon as tracker.js has started (deferred scripts run before
    DOMContentLoaded), while its first session request is still out."""
    context.add_init_script(f"document.addEventListener('DOMContentLoaded', () => {{ {script} }});")


def test_identify_while_the_first_request_is_out_sends_each_users_events_apart(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    on_load(context, "tracker.identify('alice', 'tok-a'); document.getElementById('buy').click()")
    page = open_page(context, base_url, **SLOW)
    anonymous = page.evaluate("localStorage.getItem('tracking_user_id')")
    page.evaluate("tracker.flush()")
    wait_for_events(recorder, "click")
    assert sent_as(recorder) == [
        ("page_view", anonymous, None),
        ("click", "alice", "Bearer tok-a"),
    ]


def test_events_recorded_before_logging_out_go_with_the_old_users_token(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    on_load(context, "document.getElementById('buy').click(); tracker.identify(null)")
    page = open_page(context, base_url, user="bob", token="tok-b", **SLOW)
    anonymous = page.evaluate("localStorage.getItem('tracking_user_id')")
    page.evaluate("tracker.flush()")
    wait_for_events(recorder, "click")
    page.click("#buy")
    page.evaluate("tracker.flush()")
    wait_for_events(recorder, "click", count=2)
    assert sent_as(recorder) == [
        ("page_view", "bob", "Bearer tok-b"),
        ("click", "bob", "Bearer tok-b"),
        ("click", anonymous, None),
    ]


def saved_click(user_id: str) -> dict[str, Any]:
    return {
        "userId": user_id,
        "sessionId": str(uuid.uuid4()),
        "timestamp": int(time.time() * 1000) - 60_000,
        "event": "click",
        "data": {"path": "/before", "element": "button#old", "coordinates": {"x": 1, "y": 2}},
        "eventId": str(uuid.uuid4()),
    }


def test_saved_events_of_other_users_go_apart_and_only_with_their_own_token(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    other_visitor, carol = saved_click(str(uuid.uuid4())), saved_click("carol")
    page = context.new_page()
    page.goto(f"{base_url}/done")
    page.evaluate(
        "saved => localStorage.setItem('tracking_pending', JSON.stringify(saved))",
        [other_visitor, carol],
    )
    page = open_page(context, base_url)
    anonymous = page.evaluate("localStorage.getItem('tracking_user_id')")
    wait_for_events(recorder, "page_view")
    assert sent_as(recorder) == [
        ("click", other_visitor["userId"], None),
        ("page_view", anonymous, None),
    ]
    # carol's token is not known here: her event waits for a page that knows it
    assert page.evaluate(SAVED) == [carol]
    page.evaluate("tracker.identify('carol', 'tok-c')")
    wait_for_events(recorder, "click", count=2)
    assert sent_as(recorder)[2:] == [("click", "carol", "Bearer tok-c")]
    assert recorder.of("click")[1]["eventId"] == carol["eventId"]


def test_a_click_reports_viewport_coordinates_scroll_and_an_element_descriptor(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    page.evaluate("window.scrollTo(0, 30)")
    box = page.locator("#buy").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 5, box["y"] + 4)
    click = wait_for_events(recorder, "click")[0]
    data = click["data"]
    assert data["element"] == "button#buy.btn.primary"
    assert data["path"] == "/page"
    assert data["coordinates"] == {"x": round(box["x"] + 5), "y": round(box["y"] + 4)}
    assert (data["scrollX"], data["scrollY"]) == (0, 30)
    metadata = data["metadata"]
    assert (metadata["viewportWidth"], metadata["viewportHeight"]) == (1000, 700)
    assert metadata["pageHeight"] > 4000


def test_a_click_on_an_svg_element_is_described_by_a_string(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    page.click("#chart circle")
    click = wait_for_events(recorder, "click")[0]
    assert click["data"]["element"] == "circle.dot.big"


def test_a_scroll_reports_position_and_depth_once_it_settles(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    page.evaluate(
        """async () => {
        for (const y of [200, 400, 600, 800]) {
            window.scrollTo(0, y);
            await new Promise(requestAnimationFrame);
        }
    }"""
    )
    scroll = wait_for(
        lambda: [e for e in recorder.of("scroll") if e["data"]["scrollY"] == 800],
        message="a scroll event at y=800",
    )[0]
    data = scroll["data"]
    metadata = data["metadata"]
    expected_depth = round((800 + metadata["viewportHeight"]) / metadata["pageHeight"] * 100)
    assert data["scrollX"] == 0
    assert metadata["scrollDepth"] == expected_depth
    assert 0 < metadata["scrollDepth"] < 100


def test_dwelling_over_a_link_reports_a_hover_with_its_duration(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, hover="100")
    page.hover("#shop-link")
    wait_page_ms(page, 150)
    page.mouse.move(5, 600)
    hover = wait_for_events(recorder, "hover")[0]
    assert hover["data"]["element"] == "a#shop-link.nav"
    assert hover["data"]["duration"] >= 100
    assert hover["data"]["path"] == "/page"


def test_typing_reports_the_field_but_never_its_value_nor_password_or_card_fields(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    secrets = {
        "input[name=password]": "Hunter2-Password",
        "input[name=card]": "4111111111111111",
        "input[name=fullName]": "Ada Lovelace Secret",
        "#email": "ada.secret@example.org",
    }
    for selector, text in secrets.items():
        page.type(selector, text)
    wait_for_events(recorder, "form_interaction", count=2)
    leave_and_settle(page, recorder, base_url)
    fields = [e["data"]["element"] for e in recorder.of("form_interaction")]
    assert sorted(fields) == ["email", "fullName"]
    assert all(
        e["data"]["metadata"]["action"] in ("input", "change")
        for e in recorder.of("form_interaction")
    )
    for request in recorder.snapshot():
        for text in secrets.values():
            assert text.encode() not in request.body


def test_clicks_and_hovers_on_password_and_card_fields_are_not_reported(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, hover="50")
    for selector in ("input[name=password]", "input[name=card]", "input[name=fullName]"):
        page.hover(selector)
        wait_page_ms(page, 100)
        page.click(selector)
    page.mouse.move(5, 600)
    wait_for_events(recorder, "click")
    wait_for_events(recorder, "hover")
    leave_and_settle(page, recorder, base_url)
    assert [e["data"]["element"] for e in recorder.of("click")] == ["input"]
    assert [e["data"]["element"] for e in recorder.of("hover")] == ["input"]


def test_text_is_cut_between_characters_so_an_emoji_at_the_limit_keeps_its_batch(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """Half of a surrogate pair is not text: the server refuses the batch holding one, and the
    tracker drops a refused batch. Descriptors are cut at 512 UTF-16 units."""
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    page.evaluate(
        """() => {
        const cut = document.createElement('button');
        cut.id = 'cut';  // "button#cut." is 11 units: the emoji spans units 511 and 512
        cut.className = 'x'.repeat(500) + '\\u{1F600}';
        cut.textContent = 'cut';
        const lone = document.createElement('button');
        lone.id = 'lone\\ud83d';  // half a pair, as a script may set it
        lone.textContent = 'lone';
        const field = document.createElement('input');
        field.name = 'n'.repeat(511) + '\\u{1F600}';
        document.body.prepend(cut, lone, field);
    }"""
    )
    page.click("#cut")
    page.click("button[id^=lone]")
    page.type("input[name^=nnn]", "x")
    clicks = wait_for_events(recorder, "click", count=2)
    assert [c["data"]["element"] for c in clicks] == [
        "button#cut." + "x" * 500,
        "button#lone\ufffd",
    ]
    typed = wait_for_events(recorder, "form_interaction")[0]
    assert typed["data"]["element"] == "n" * 511


def test_events_are_sent_in_batches(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    for _ in range(3):
        page.click("#buy")
    page.evaluate("tracker.flush()")
    clicks = wait_for_events(recorder, "click", count=3)
    batch = next(b for b in recorder.batches() if any(e["event"] == "click" for e in b.events()))
    assert [e["event"] for e in batch.events()] == ["click"] * 3
    assert len({e["eventId"] for e in clicks}) == 3


def test_twenty_queued_events_are_sent_without_waiting_for_the_interval(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    for _ in range(20):
        page.click("#buy")
    wait_for_events(recorder, "click", count=20)
    assert max(len(b.events()) for b in recorder.batches()) == 20


def test_hiding_the_page_sends_the_queue_as_a_text_plain_beacon(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    page.click("#buy")
    page.click("#chart circle")
    hide(page)
    beacon = wait_for(
        lambda: [b for b in recorder.batches() if b.content_type.startswith("text/plain")],
        message="a text/plain beacon",
    )[0]
    assert [e["data"]["element"] for e in beacon.events()] == [
        "button#buy.btn.primary",
        "circle.dot.big",
    ]


def test_closing_the_page_delivers_what_was_queued(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    page.click("#buy")
    page.close()
    assert wait_for_events(recorder, "click")[0]["data"]["element"] == "button#buy.btn.primary"


def test_fields_named_like_object_properties_are_reported_when_the_page_closes(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """A field's report waits a second for more typing, or goes when the page does, whatever
    the field is called."""
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    names = ["__proto__", "constructor", "toString"]
    page.evaluate(
        """names => document.body.prepend(...names.map(name => {
            const field = document.createElement('input');
            field.name = name;
            return field;
        }))""",
        names,
    )
    for name in names:
        page.type(f"input[name={name}]", "x")
    page.close()
    typed = wait_for_events(recorder, "form_interaction", count=3)
    assert sorted(e["data"]["element"] for e in typed) == sorted(names)


def clicks_delivered(recorder: Recorder) -> set[str]:
    return {e["eventId"] for e in recorder.of("click")}


def test_leaving_while_the_server_asks_to_wait_keeps_the_queue_for_the_next_page(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """A beacon sent meanwhile would be refused too (503), and nobody would see it."""
    # The second answer is for the beacon, or else for the next page's first batch.
    recorder.track_answers.extend([(503, {"Retry-After": "60"}), (503, {"Retry-After": "1"})])
    page = open_page(context, base_url, **SLOW)
    wait_for(recorder.batches, message="the first, refused, batch")
    page.click("#buy")
    page.goto(f"{base_url}/done")
    assert recorder.batches()[1:] == []
    saved = page.evaluate(SAVED)
    assert [e["event"] for e in saved] == ["page_view", "click"]
    page.goto(f"{base_url}/page2")
    wait_for_events(recorder, "page_view", count=2)
    assert clicks_delivered(recorder) == {saved[1]["eventId"]}


def test_hiding_the_page_offline_keeps_the_queue_for_the_next_page(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    context.set_offline(True)
    page.click("#buy")
    hide(page)
    context.set_offline(False)
    saved = page.evaluate(SAVED)
    assert [e["event"] for e in saved] == ["click"]
    page.goto(f"{base_url}/page2")
    wait_for(lambda: saved[0]["eventId"] in clicks_delivered(recorder), message="the click")


def test_what_exceeds_the_keepalive_budget_on_hide_is_kept_for_the_next_page(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """An identified user's events go by keepalive fetch, which browsers refuse past 64 KB out
    in all; more than that is queued when a burst of clicks is followed by hiding at once."""
    page = open_page(context, base_url, user="alice", token="tok-a", **SLOW)
    wait_for_events(recorder, "page_view")
    page.evaluate(
        """() => {
        const wide = document.createElement('button');
        wide.className = 'w'.repeat(480);
        document.body.prepend(wide);
        for (let i = 0; i < 250; i++) wide.click();
        Object.defineProperty(
            document, 'visibilityState', {get: () => 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    )
    page.goto(f"{base_url}/done")
    page.goto(f"{base_url}/page2?user=alice&token=tok-a")
    wait_for(lambda: len(clicks_delivered(recorder)) == 250, message="all 250 clicks")


def test_saved_events_delivered_later_from_the_page_are_not_sent_again_by_the_next(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    recorder.track_answers.append((503, {"Retry-After": "1"}))
    page = open_page(context, base_url, **SLOW)
    wait_for(recorder.batches, message="the first, refused, batch")
    page.click("#buy")
    hide(page)  # saved, as the server asked to wait
    assert len(page.evaluate(SAVED)) == 2
    wait_for_events(recorder, "click")  # the retry, from the page still there
    wait_for(
        lambda: page.evaluate(NOTHING_SAVED),
        message="the delivered events to leave the saved ones",
    )
    page.reload()
    wait_for_events(recorder, "page_view", count=2)
    leave_and_settle(page, recorder, base_url)
    ids = [e["eventId"] for e in recorder.events()]
    assert len(ids) == len(set(ids)) == 3


def test_tabs_leaving_while_the_server_asks_to_wait_keep_each_others_events(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    recorder.track_answers.extend([(503, {"Retry-After": "60"})] * 2)
    first = open_page(context, base_url, **SLOW)
    wait_for(recorder.batches, message="the first tab's batch")
    second = open_page(context, base_url, **SLOW)
    wait_for(lambda: recorder.batches()[1:], message="the second tab's batch")
    refused = {e["eventId"] for batch in recorder.batches() for e in batch.events()}
    assert len(refused) == 2
    hide(first)
    hide(second)
    open_page(context, base_url)
    wait_for(
        lambda: refused <= {e["eventId"] for e in recorder.of("page_view")},
        message="both tabs' page views",
    )


@pytest.mark.parametrize(
    "signal",
    [
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})",
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
        "Object.defineProperty(window, 'doNotTrack', {get: () => '1'})",
    ],
    ids=["global-privacy-control", "navigator-do-not-track", "window-do-not-track"],
)
def test_nothing_at_all_is_sent_under_a_privacy_signal(
    context: BrowserContext, base_url: str, recorder: Recorder, signal: str
) -> None:
    context.add_init_script(signal)
    page = open_page(context, base_url)
    page.click("#buy")
    page.type("input[name=fullName]", "Ada")
    page.evaluate("window.scrollTo(0, 500)")
    page.evaluate("tracker.flush()")
    assert page.evaluate("tracker.isEnabled()") is False
    assert page.evaluate("tracker.optIn()") is False
    leave_and_settle(page, recorder, base_url)
    assert [r.path for r in recorder.snapshot()] == ["/sentinel"]


def test_nothing_more_is_sent_after_opt_out_even_after_a_reload(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    page.evaluate("tracker.optOut()")
    page.click("#buy")
    page.evaluate("tracker.flush()")
    page.reload()
    wait_for_tracker(page)
    assert page.evaluate("tracker.isEnabled()") is False
    page.click("#buy")
    leave_and_settle(page, recorder, base_url)
    assert [e["event"] for e in recorder.events()] == ["page_view"]
    assert len(recorder.snapshot("/api/track/session")) == 1

    page = open_page(context, base_url)
    assert page.evaluate("tracker.optIn()") is True
    page.click("#buy")
    wait_for_events(recorder, "click")


BLOCKED_STORAGE = """Object.defineProperty(window, 'localStorage', {
    configurable: true,
    get() { throw new DOMException('The operation is insecure.', 'SecurityError'); },
});"""


def opt_out_cookie(context: BrowserContext) -> list[dict[str, Any]]:
    return [dict(c) for c in context.cookies() if c["name"] == "tracker_optout"]


def test_opting_out_holds_across_a_reload_where_local_storage_is_blocked(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    context.add_init_script(BLOCKED_STORAGE)
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    page.evaluate("tracker.optOut()")
    [cookie] = opt_out_cookie(context)
    assert (cookie["value"], cookie["path"], cookie["sameSite"]) == ("1", "/", "Lax")
    assert cookie["expires"] > time.time() + 300 * 24 * 3600
    page.reload()
    wait_for_tracker(page)
    assert page.evaluate("tracker.isEnabled()") is False
    page.click("#buy")
    page.evaluate("tracker.flush()")
    leave_and_settle(page, recorder, base_url)
    assert [e["event"] for e in recorder.events()] == ["page_view"]
    assert len(recorder.snapshot("/api/track/session")) == 1

    page = open_page(context, base_url)
    assert page.evaluate("tracker.optIn()") is True
    assert opt_out_cookie(context) == []
    page.click("#buy")
    wait_for_events(recorder, "click")


def test_the_opt_out_cookie_alone_stops_tracking_and_opting_in_clears_both_records(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """The cookie may be all that is left of an opt-out made where storage was blocked."""
    context.add_cookies([{"name": "tracker_optout", "value": "1", "url": base_url}])
    page = open_page(context, base_url)
    assert page.evaluate("tracker.isEnabled()") is False
    page.evaluate("tracker.optOut()")  # with storage: kept in both
    assert page.evaluate("localStorage.getItem('tracking_opt_out')") == "1"
    assert page.evaluate("tracker.optIn()") is True
    assert page.evaluate("localStorage.getItem('tracking_opt_out')") is None
    assert opt_out_cookie(context) == []
    page.click("#buy")
    wait_for_events(recorder, "click")


def test_a_page_in_a_srcdoc_frame_reports_a_path_that_starts_with_a_slash(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    page.evaluate(
        """() => {
        const frame = document.createElement('iframe');
        frame.srcdoc = '<script src="/tracker.js" data-flush-interval-ms="100"></script>';
        document.body.append(frame);
    }"""
    )
    views = wait_for_events(recorder, "page_view", count=2)
    assert sorted(v["data"]["path"] for v in views) == ["/page", "/srcdoc"]


def test_opting_out_in_one_tab_stops_the_others(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    first = open_page(context, base_url, **SLOW)
    other = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view", count=2)
    first.evaluate("tracker.optOut()")
    wait_for(lambda: other.evaluate("tracker.isEnabled()") is False, message="the other tab")
    other.click("#buy")
    other.evaluate("tracker.flush()")
    hide(other)
    leave_and_settle(other, recorder, base_url)
    assert [e["event"] for e in recorder.events()] == ["page_view", "page_view"]


def test_opting_in_again_in_one_tab_starts_the_others(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """Consent is the visitor's, for the whole site: opting in again in one tab starts the tabs
    that stopped when they opted out, and those that opened while opted out."""
    first = open_page(context, base_url, **SLOW)
    other = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view", count=2)
    first.evaluate("tracker.optOut()")
    wait_for(lambda: other.evaluate("tracker.isEnabled()") is False, message="the other tab")
    late = open_page(context, base_url, **SLOW)
    assert late.evaluate("tracker.isEnabled()") is False
    assert first.evaluate("tracker.optIn()") is True
    for page in (other, late):
        wait_for(lambda p=page: p.evaluate("tracker.isEnabled()") is True, message="a tab")
        page.click("#buy")
        page.evaluate("tracker.flush()")
    clicks = wait_for_events(recorder, "click", count=2)
    assert len(clicks) == 2


@pytest.mark.parametrize("send", ["tracker.flush()", "hide"])
def test_a_tab_sends_nothing_once_another_opted_out_even_before_it_is_told(
    context: BrowserContext, base_url: str, recorder: Recorder, send: str
) -> None:
    """A `storage` event reaches the other tabs some time later; the flag is already set."""
    page = open_page(context, base_url, **SLOW)
    wait_for_events(recorder, "page_view")
    page.click("#buy")
    # as another tab's optOut() does: a tab gets no `storage` event for its own writes
    page.evaluate("localStorage.setItem('tracking_opt_out', '1')")
    if send == "hide":
        hide(page)
    else:
        page.evaluate(send)
    assert page.evaluate("tracker.isEnabled()") is False
    leave_and_settle(page, recorder, base_url)
    assert [e["event"] for e in recorder.events()] == ["page_view"]


def test_spa_navigation_reports_a_page_view_with_the_previous_pages_duration(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    wait_page_ms(page, 120)
    page.evaluate("history.pushState({}, '', '/app/next')")
    page.evaluate("history.replaceState({}, '', '/app/next#same-path')")
    views = wait_for_events(recorder, "page_view", count=2)
    assert views[1]["data"]["path"] == "/app/next"
    assert views[1]["data"]["duration"] >= 120
    assert views[1]["data"]["metadata"]["referrerPath"] == "/page"

    page.go_back()
    views = wait_for_events(recorder, "page_view", count=3)
    assert views[2]["data"]["path"] == "/page"
    assert views[2]["data"]["metadata"]["referrerPath"] == "/app/next"
    assert len(views) == 3


def test_following_a_link_carries_the_time_on_the_previous_page(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    wait_page_ms(page, 120)
    page.click("#next-page")
    views = wait_for_events(recorder, "page_view", count=2)
    assert views[1]["data"]["path"] == "/page2"
    assert views[1]["data"]["duration"] >= 120
    assert views[1]["data"]["metadata"]["referrerPath"] == "/page"
    assert views[1]["sessionId"] == views[0]["sessionId"]
    assert "a#next-page" in [e["data"]["element"] for e in recorder.of("click")]


def test_a_batch_refused_with_503_is_retried_after_retry_after_with_the_same_ids(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    recorder.track_answers.append((503, {"Retry-After": "1"}))
    open_page(context, base_url)
    view = wait_for_events(recorder, "page_view")[0]
    refused, accepted = recorder.batches()[:2]
    assert refused.status == 503
    assert view["eventId"] in {e["eventId"] for e in refused.events()}
    assert accepted.at - refused.at >= 0.9


def test_retries_of_a_server_that_keeps_refusing_back_off_beyond_its_retry_after(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """Each 503 asks for one second; the third retry waits longer than that (the client's own
    back-off has grown past it), so an outage does not have every visitor retry every second."""
    recorder.track_answers.extend([(503, {"Retry-After": "1"})] * 3)
    open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    batches = recorder.batches()
    assert [b.status for b in batches[:3]] == [503, 503, 503]
    assert batches[3].at - batches[2].at >= 1.9  # the third back-off: 2-4 s


def test_a_batch_refused_as_invalid_is_dropped_not_retried(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    recorder.track_answers.append((422, {}))
    page = open_page(context, base_url)
    refused = wait_for(recorder.batches, message="the first batch")[0]
    page.click("#buy")
    page.evaluate("tracker.flush()")
    wait_for_events(recorder, "click")
    refused_ids = {e["eventId"] for e in refused.events()}
    assert refused_ids.isdisjoint(e["eventId"] for e in recorder.events())


def test_ids_are_uuid4_without_crypto_random_uuid(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    context.add_init_script("delete Crypto.prototype.randomUUID")
    open_page(context, base_url)
    view = wait_for_events(recorder, "page_view")[0]
    for key in ("userId", "sessionId", "eventId"):
        assert UUID4.match(view[key]), (key, view[key])


# -- what the client sends beyond the movements of old: where visits come from, automation,
# custom events, identify, experiments, the WebSocket; and the files loaded on demand ----------


def test_a_visit_from_another_site_sends_the_referrers_host_and_the_campaign_only(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = context.new_page()
    query = "utm_source=news&utm_medium=email&utm_campaign=spring&email=ada%40secret.example"
    page.goto(f"{base_url}/page?{query}", referer="https://news.example.org/item?id=secret-42")
    wait_for_tracker(page)
    view = wait_for_events(recorder, "page_view")[0]
    campaign = {"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring"}
    assert view["data"]["referrer"] == "news.example.org"
    assert view["data"]["utm"] == campaign
    session = recorder.snapshot("/api/track/session")[0].json()
    assert (session["referrer"], session["utm"]) == ("news.example.org", campaign)
    page.evaluate("history.pushState({}, '', '/app/next')")
    views = wait_for_events(recorder, "page_view", count=2)
    assert "referrer" not in views[1]["data"] and "utm" not in views[1]["data"]
    for request in recorder.snapshot():
        assert b"secret" not in request.body


def test_a_referrer_of_the_same_site_is_not_sent(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = context.new_page()
    page.goto(f"{base_url}/page", referer=f"{base_url}/elsewhere")
    wait_for_tracker(page)
    view = wait_for_events(recorder, "page_view")[0]
    assert "referrer" not in view["data"] and "utm" not in view["data"]
    assert view["data"]["metadata"]["referrerPath"] == "/elsewhere"
    session = recorder.snapshot("/api/track/session")[0].json()
    assert "referrer" not in session and "utm" not in session


def test_headless_chromium_driven_by_playwright_says_it_is_automated(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    assert recorder.snapshot("/api/track/session")[0].json()["automation"] is True


def test_a_browser_without_automation_signals_sends_no_automation_flag(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    context.add_init_script(
        """Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false});
        Object.defineProperty(Navigator.prototype, 'userAgent', {
            get: () => 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36'
        });"""
    )
    open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    assert "automation" not in recorder.snapshot("/api/track/session")[0].json()


def test_track_records_a_custom_event_and_refuses_what_the_server_would(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    properties = {"plan": "pro", "seats": 3, "trial": True}
    assert page.evaluate("p => tracker.track('purchase', p)", properties) is True
    refused = [
        "tracker.track('', {})",
        "tracker.track('x'.repeat(65))",
        "tracker.track('nested', {a: {b: 1}})",
        "tracker.track('infinite', {n: Infinity})",
        "tracker.track('many', Object.fromEntries([...Array(21).keys()].map(k => ['k' + k, k])))",
        "tracker.track(42)",
    ]
    for call in refused:
        assert page.evaluate(call) is False, call
    custom = wait_for_events(recorder, "custom")
    page.evaluate("tracker.flush()")
    leave_and_settle(page, recorder, base_url)
    assert [(e["data"]["name"], e["data"]["properties"]) for e in recorder.of("custom")] == [
        ("purchase", properties)
    ]
    assert custom[0]["data"]["path"] == "/page"


def test_a_click_on_an_element_with_data_tracker_event_sends_a_custom_event(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    page.click("#signup span")
    custom = wait_for_events(recorder, "custom")[0]
    assert custom["data"]["name"] == "signup"
    assert custom["data"]["properties"] == {"plan": "pro", "source": "hero"}
    assert [e["data"]["element"] for e in recorder.of("click")] == ["span"]


def test_identify_links_the_anonymous_visitor_with_its_cookie_then_tracks_as_the_user(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    anonymous = page.evaluate("localStorage.getItem('tracking_user_id')")
    assert page.evaluate("tracker.identify('alice', 'tok-a')") is True
    linked = wait_for(lambda: recorder.snapshot("/api/track/identify"), message="identify")[0]
    assert linked.json() == {"anonymousId": anonymous, "userId": "alice", "token": "tok-a"}
    assert "tracker_visitor=" in (linked.cookie or "")
    page.click("#buy")
    assert wait_for_events(recorder, "click")[0]["userId"] == "alice"


def test_variant_asks_once_per_page_and_loads_the_experiments_file_only_then(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, user="alice", token="tok-a", hover="off")
    wait_for_events(recorder, "page_view")
    assert recorder.scripts == []
    variants = page.evaluate(
        "Promise.all([tracker.variant('hero'), tracker.variant('hero'), tracker.variant('cta')])"
    )
    assert variants == ["hero-b", "hero-b", "cta-b"]
    assert recorder.variant_asks == [("hero", "alice"), ("cta", "alice")]
    asks = recorder.snapshot("/api/experiments/hero/variant")
    assert asks[0].authorization == "Bearer tok-a"
    assert [name.split(".")[1] for name in recorder.scripts] == ["experiments"]


def test_variant_fails_while_tracking_is_off_so_the_site_shows_its_control(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    page = open_page(context, base_url)
    shown = page.evaluate("tracker.variant('hero').then(v => v, () => 'control')")
    assert shown == "control"
    assert recorder.variant_asks == []


def test_hovers_are_a_file_of_their_own_loaded_only_when_the_site_asks(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, hover="off")
    page.hover("#shop-link")
    wait_page_ms(page, 700)
    page.mouse.move(5, 600)
    page.click("#buy")
    wait_for_events(recorder, "click")
    leave_and_settle(page, recorder, base_url)
    assert recorder.of("hover") == []
    assert recorder.scripts == []


def socket_events(recorder: Recorder) -> list[dict[str, Any]]:
    with recorder.lock:
        return [e for m in recorder.socket_messages for e in m["events"]]


def test_events_go_over_the_websocket_while_it_is_open(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, ws="1", **SLOW)
    wait_for(lambda: recorder.sockets, message="a socket")
    for _ in range(3):
        page.click("#buy")
    wait_for(
        lambda: len([e for e in socket_events(recorder) if e["event"] == "click"]) == 3,
        message="three clicks over the socket",
    )
    seqs = [m["seq"] for m in recorder.socket_messages]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["event"] for e in recorder.of("click")] == []  # none by fetch
    assert any(name.split(".")[1] == "websocket" for name in recorder.scripts)


def test_a_batch_unanswered_when_the_socket_closes_is_sent_again_and_stored_once(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    page = open_page(context, base_url, ws="1", **SLOW)
    wait_for(lambda: recorder.sockets, message="a socket")
    wait_for(
        lambda: [
            e for e in socket_events(recorder) + recorder.events() if e["event"] == "page_view"
        ],
        message="the page view",
    )
    sent_before = len(recorder.socket_messages)
    recorder.socket_drops = 1
    page.click("#buy")
    page.evaluate("tracker.flush()")
    dropped = wait_for(
        lambda: recorder.socket_messages[sent_before:], message="the dropped message"
    )[0]
    [click] = [e for e in dropped["events"] if e["event"] == "click"]

    def delivered() -> list[str]:
        # after the dropped message: by a new socket's message, or by fetch
        later = [e for m in recorder.socket_messages[sent_before + 1 :] for e in m["events"]]
        return [e["eventId"] for e in later + recorder.events() if e["event"] == "click"]

    wait_for(lambda: delivered(), message="the click sent again", timeout_s=20)
    leave_and_settle(page, recorder, base_url)
    assert delivered() == [click["eventId"]]


def test_a_server_that_refuses_the_sessions_additions_gets_the_session_asked_again_without(
    context: BrowserContext, base_url: str, recorder: Recorder
) -> None:
    """A replica not yet upgraded knows nothing of the referrer, campaign and automation flag."""
    recorder.refuse_additions = True
    open_page(context, base_url)
    wait_for_events(recorder, "page_view")
    refused, accepted = recorder.snapshot("/api/track/session")[:2]
    assert (refused.status, refused.json()["automation"]) == (422, True)
    assert accepted.status == 200
    assert "automation" not in accepted.json()
