"""End to end in a real browser: the demo site, tracker.js, the app on Ray Serve, the dashboard.

Headless Chromium visits the demo store like a person would (clicks, scrolls, hovers, typing,
client-side navigation); the admin API must then hold those events in the right shapes, and
nothing typed into a field may have reached the server. The dashboard, signed in through its
form, must agree with the API, draw the heatmap, update live, and show visitor strings as text.

The Serve deployment is shared by the test session, so user IDs here are fresh and totals are
compared with the API at the same moment rather than assumed to start at zero. Screenshots go
to test-output/ (the README's docs/dashboard.png comes from test_dashboard_analytics.py).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from browser_support import serve_asgi, wait_for_tracker, wait_page_ms
from playwright.sync_api import Browser, BrowserContext, Page, Request
from support import now_ms, wait_for

from tracker.auth import mint_token
from tracker.config import Config
from tracker.ingress import build_app

pytestmark = pytest.mark.browser


ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"

TYPED_NAME = "Zebra-Quokka-4411"
TYPED_PASSWORD = "Secr3t-Pa55!"
XSS_ELEMENT = "<img src=x onerror=alert(1)>"
XSS_PATH = "/<script>alert(2)</script>"
VIEWPORT = {"width": 1280, "height": 800}
KPIS = {
    "activeUsers": "kpi-active-users",
    "totalUsers": "kpi-total-users",
    "totalSessions": "kpi-sessions",
    "totalEvents": "kpi-events",
}
DAY_MS = 24 * 3600 * 1000


# -- helpers ---------------------------------------------------------------------------------


def admin_get(base: str, config: Config, route: str, **params: Any) -> httpx.Response:
    response = httpx.get(
        f"{base}{route}",
        params=params,
        headers={"Authorization": f"Bearer {config.admin_token}"},
        timeout=30,
    )
    assert response.status_code in (200, 404), response.text
    return response


def movements_of(base: str, config: Config, user_id: str) -> list[dict[str, Any]]:
    response = admin_get(base, config, f"/api/users/{user_id}")
    if response.status_code == 404:
        return []
    return [m for s in response.json()["sessions"] for m in s["movements"]]


def track(
    base: str,
    user_id: str,
    session_id: str,
    events: list[dict[str, Any]],
    device: dict[str, str] | None = None,
) -> None:
    """What another client would send: a session, then its events in batches."""
    with httpx.Client(base_url=base, timeout=30) as client:
        created = client.post(
            "/api/track/session",
            json={"userId": user_id, "sessionId": session_id, "deviceInfo": device or DEVICES[0]},
        )
        assert created.status_code == 200, created.text
        for start in range(0, len(events), 400):
            chunk = events[start : start + 400]
            for event in chunk:
                event.setdefault("userId", user_id)
                event.setdefault("sessionId", session_id)
            sent = client.post("/api/track", json={"events": chunk})
            assert sent.status_code == 200, sent.text


def wait_for_path(page: Page, path: str) -> None:
    wait_for(lambda: urlparse(page.url).path == path, message=f"the page to be at {path}")


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    target = OUTPUT / name
    page.screenshot(path=str(target), full_page=full_page)
    return target


def kpi_values(page: Page) -> dict[str, int | None]:
    raw: dict[str, str | None] = page.evaluate(
        """ids => Object.fromEntries(Object.entries(ids).map(
            ([key, id]) => [key, document.getElementById(id).getAttribute('data-value')]))""",
        KPIS,
    )
    return {key: None if value is None else int(value) for key, value in raw.items()}


def open_dashboard(browser: Browser, base: str, config: Config) -> tuple[BrowserContext, Page]:
    """A fresh browser signed in through the dashboard's own login form."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/analytics")
    wait_for(lambda: page.is_visible("#login-form"), message="the login form")
    page.fill("#admin-token", config.admin_token or "")
    page.click("#login-submit")
    wait_for(lambda: page.is_visible("#app"), message="the dashboard after signing in")
    wait_for(lambda: kpi_values(page)["totalEvents"] is not None, message="the KPIs")
    return context, page


def wait_for_kpis_to_match_api(page: Page, base: str, config: Config) -> dict[str, Any]:
    """Wait until the tiles show what the API reports for the dashboard's range (last 24 h)."""
    seen: list[tuple[dict[str, int | None], dict[str, int]]] = []

    def agree() -> dict[str, Any] | None:
        report = admin_get(base, config, "/api/analytics", **{"from": now_ms() - DAY_MS}).json()
        expected = {key: int(report[key]) for key in KPIS}
        shown = kpi_values(page)
        seen.append((shown, expected))
        if shown == expected:
            return dict(report)
        page.click("#refresh-button")
        return None

    try:
        return wait_for(agree, timeout_s=30, interval_s=0.5, message="KPIs equal to the API")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last shown vs API: {seen[-1]}") from None


def live_on(page: Page) -> Callable[[], bool]:
    return lambda: "on" in (page.get_attribute("#live-indicator", "class") or "").split()


def heat_cells(page: Page) -> int:
    return int(page.evaluate("document.querySelectorAll('#heatmap .heat-cell').length"))


def show_heatmap_of(page: Page, path: str) -> int:
    page.select_option("#heatmap-path", path)
    return wait_for(
        lambda: (
            page.evaluate(
                "p => document.querySelector('#heatmap .page-path')?.textContent === p", path
            )
            and heat_cells(page)
        ),
        timeout_s=15,
        message=f"the heatmap of {path}",
    )


# -- the visit -------------------------------------------------------------------------------


@dataclass
class Visit:
    """What the browser did on the demo site, and every request body it sent."""

    user_id: str
    session_id: str
    bodies: list[tuple[str, bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def visit(browser: Browser, serve_tracker: str, serve_config: Config) -> Iterator[Visit]:
    """One visitor's tour of the demo store, ending once the API holds all of its events."""
    base = serve_tracker
    context = browser.new_context(viewport=VIEWPORT)
    requests: list[Request] = []
    context.on("request", lambda request: requests.append(request))
    page = context.new_page()
    try:
        page.goto(f"{base}/")
        wait_for_tracker(page)
        visit = Visit(
            user_id=page.evaluate("localStorage.getItem('tracking_user_id')"),
            session_id=page.evaluate("sessionStorage.getItem('tracking_session_id')"),
        )
        screenshot(page, "demo-home.png")

        # Dwell on a link past the 500 ms hover threshold, then leave it.
        page.hover("#hero-shop")
        wait_page_ms(page, 800)
        page.hover("main h1")
        page.click("#search-button")
        page.click(".product-card .add-to-cart")

        # Client-side navigation: pushState, no page load.
        page.click("#hero-shop")
        wait_for_path(page, "/app/shop")
        page.click(".chip[data-category='Tents']")
        page.click(".product-card[data-product='summit-tent'] .product-link")
        wait_for_path(page, "/app/product/summit-tent")
        page.click("#add-to-cart")
        screenshot(page, "demo-product.png")

        # A full page load of the long article; scroll with the wheel, click far down.
        page.click(".main-nav a[href='/long']")
        wait_for_path(page, "/long")
        wait_for_tracker(page)
        for _ in range(6):
            page.mouse.wheel(0, 600)
        wait_for(lambda: page.evaluate("window.scrollY") > 1500, message="the page to scroll")
        wait_page_ms(page, 400)  # past the tracker's 250 ms scroll debounce
        page.click("#back-to-top")
        screenshot(page, "demo-long.png")

        # The form: type a name and a password; neither value may ever leave the browser.
        page.click(".main-nav a[href='/form']")
        wait_for_path(page, "/form")
        wait_for_tracker(page)
        page.locator("#fullName").press_sequentially(TYPED_NAME)
        page.locator("#password").press_sequentially(TYPED_PASSWORD)
        page.select_option("#activity", "climbing")
        screenshot(page, "demo-form.png")

        # Back to the app shell and on, client-side, to the journal.
        page.click(".main-nav a[href='/app/about']")
        wait_for_path(page, "/app/about")
        wait_for_tracker(page)
        page.click("a[href='/app/journal']")
        wait_for_path(page, "/app/journal")
        # Leaving the site is the tracker's cue to send the rest (a beacon on pagehide).
        page.goto(f"{base}/healthz")

        def complete() -> bool:
            movements = movements_of(base, serve_config, visit.user_id)
            paths = {m["data"].get("path") for m in movements if m["event"] == "page_view"}
            fields = {m["data"].get("element") for m in movements}
            return {"/app/journal", "/form", "/long"} <= paths and "fullName" in fields

        wait_for(complete, timeout_s=30)
        for request in requests:
            if request.method == "POST":
                visit.bodies.append((request.url, request.post_data_buffer or b""))
        yield visit
    finally:
        context.close()


# -- the tests -------------------------------------------------------------------------------


def test_the_visit_reaches_the_api_with_the_right_shapes(
    visit: Visit, serve_tracker: str, serve_config: Config
) -> None:
    movements = movements_of(serve_tracker, serve_config, visit.user_id)
    assert {m["userId"] for m in movements} == {visit.user_id}
    assert {m["sessionId"] for m in movements} == {visit.session_id}
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for m in movements:
        by_kind.setdefault(m["event"], []).append(m["data"])

    views = {d["path"]: d for d in by_kind["page_view"]}
    assert {"/", "/app/shop", "/app/product/summit-tent", "/long", "/form"} <= set(views)
    assert {"/app/about", "/app/journal"} <= set(views)
    shop = views["/app/shop"]  # reached with pushState: time on the previous page comes along
    assert shop["metadata"]["referrerPath"] == "/"
    assert shop["duration"] > 0
    assert views["/app/journal"]["metadata"]["referrerPath"] == "/app/about"
    assert views["/"]["metadata"]["viewportWidth"] == VIEWPORT["width"]

    clicks = {d["element"]: d for d in by_kind["click"]}
    search = clicks["button#search-button.button.ghost"]
    assert search["path"] == "/"
    assert set(search["coordinates"]) == {"x", "y"}
    assert 0 < search["coordinates"]["x"] <= VIEWPORT["width"]
    assert 0 < search["coordinates"]["y"] <= VIEWPORT["height"]
    assert clicks["button#add-to-cart.button.primary.add-to-cart"]["path"] == (
        "/app/product/summit-tent"
    )
    far_down = clicks["button#back-to-top.button.ghost"]
    assert far_down["path"] == "/long"
    assert far_down["scrollY"] > 1000

    scrolls = [d for d in by_kind["scroll"] if d["path"] == "/long"]
    deepest = max(scrolls, key=lambda d: d["scrollY"])
    assert deepest["scrollY"] > 1500
    assert 0 < deepest["metadata"]["scrollDepth"] <= 100

    hover = next(d for d in by_kind["hover"] if d["element"].startswith("a#hero-shop"))
    assert hover["path"] == "/"
    assert hover["duration"] >= 500

    forms = by_kind["form_interaction"]
    assert {d["element"] for d in forms} == {"fullName", "activity"}
    assert all(d["path"] == "/form" for d in forms)
    assert {d["metadata"]["action"] for d in forms} <= {"input", "change"}
    assert all(set(d) == {"path", "element", "metadata"} for d in forms)

    # The cross-user analytics counted them too (other tests share this deployment: >=).
    mine = admin_get(serve_tracker, serve_config, "/api/analytics", userId=visit.user_id).json()
    assert [s["sessionId"] for s in mine["userSessions"]] == [visit.session_id]

    def counted() -> bool:
        report = admin_get(serve_tracker, serve_config, "/api/analytics").json()
        pages = {p["path"] for p in report["topPages"]}
        return (
            report["totalEvents"] >= len(movements)
            and report["eventsByType"]["form_interaction"] >= len(forms)
            and {"/", "/long", "/form"} <= pages
            and any(
                s["userId"] == visit.user_id and "Chrom" in s["deviceInfo"]["userAgent"]
                for s in report["recentActivity"]
                if "deviceInfo" in s
            )
        )

    wait_for(counted, timeout_s=15)


def test_nothing_typed_into_a_field_reaches_the_server(
    visit: Visit, serve_tracker: str, serve_config: Config
) -> None:
    secrets = [TYPED_NAME.encode(), TYPED_PASSWORD.encode()]
    tracked = [body for url, body in visit.bodies if url.endswith("/api/track")]
    assert tracked and all(visit.user_id.encode() in body for body in tracked)
    for url, body in visit.bodies:
        assert not any(s in body for s in secrets), f"a typed value was sent to {url}"

    storage = Path(urlparse(serve_config.storage).path)
    stored = b"".join(p.read_bytes() for p in storage.rglob("*") if p.is_file())
    assert (
        visit.user_id.encode() in stored
    )  # the visit is on storage, so the search means something
    assert not any(s in stored for s in secrets)

    answers = [
        admin_get(serve_tracker, serve_config, f"/api/users/{visit.user_id}"),
        admin_get(serve_tracker, serve_config, f"/api/users/{visit.user_id}/export"),
        admin_get(serve_tracker, serve_config, "/api/analytics", userId=visit.user_id),
        admin_get(serve_tracker, serve_config, "/api/analytics", path="/form"),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert not any(s in answer.content for s in secrets), answer.url
    password_events = [
        m
        for m in movements_of(serve_tracker, serve_config, visit.user_id)
        if "password" in json.dumps(m["data"]).lower()
    ]
    assert password_events == [], "the password field is not even reported as touched"


def test_the_dashboard_matches_the_api_draws_the_heatmap_and_updates_live(
    visit: Visit, browser: Browser, serve_tracker: str, serve_config: Config
) -> None:
    context, page = open_dashboard(browser, serve_tracker, serve_config)
    try:
        report = wait_for_kpis_to_match_api(page, serve_tracker, serve_config)
        assert report["totalEvents"] > 0
        assert show_heatmap_of(page, "/long") >= 1  # the click far down the article
        assert show_heatmap_of(page, "/") >= 2

        wait_for(live_on(page), message="the live indicator")
        page.evaluate("document.body.dataset.sameDocument = 'yes'")
        before_events = kpi_values(page)["totalEvents"] or 0
        before_live = int(page.inner_text("#live-count").replace(",", ""))
        user, session = str(uuid.uuid4()), "live-1"
        click = {
            "timestamp": now_ms(),
            "event": "click",
            "data": {"path": "/", "element": "button#live", "coordinates": {"x": 5, "y": 5}},
        }
        track(serve_tracker, user, session, [click])

        def updated() -> bool:
            live = int(page.inner_text("#live-count").replace(",", ""))
            events = kpi_values(page)["totalEvents"] or 0
            return live > before_live and events > before_events

        wait_for(updated, timeout_s=20, interval_s=0.2, message="a live update")
        assert page.evaluate("document.body.dataset.sameDocument") == "yes", "it reloaded"
        screenshot(page, "dashboard-after-visit.png")
    finally:
        context.close()


def test_visitor_strings_stay_inert_text_on_the_dashboard(
    browser: Browser, serve_tracker: str, serve_config: Config
) -> None:
    user, session = str(uuid.uuid4()), "xss-1"
    at = now_ms()
    meta = {"viewportWidth": 1280, "viewportHeight": 800, "pageHeight": 2000}
    view = {"timestamp": at, "event": "page_view", "data": {"path": XSS_PATH, "metadata": meta}}
    clicks = [  # three quick clicks on one spot: a rage click, so it shows in that table too
        {
            "timestamp": at + 100 * i,
            "event": "click",
            "data": {
                "path": XSS_PATH,
                "element": XSS_ELEMENT,
                "coordinates": {"x": 400, "y": 300},
                "metadata": meta,
            },
        }
        for i in range(1, 4)
    ]
    track(serve_tracker, user, session, [view, *clicks])
    wait_for(
        lambda: any(
            r["userId"] == user
            for r in admin_get(serve_tracker, serve_config, "/api/analytics").json()["rageClicks"]
        ),
        timeout_s=15,
    )

    context, page = open_dashboard(browser, serve_tracker, serve_config)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        wait_for(
            lambda: page.evaluate("t => document.body.textContent.includes(t)", XSS_ELEMENT),
            timeout_s=15,
            message="the element payload, as text",
        )
        page.click(f"#rage-clicks .user-link[data-user-id='{user}']")
        wait_for(
            lambda: page.evaluate(
                "t => document.getElementById('user-body').textContent.includes(t)", XSS_PATH
            ),
            timeout_s=15,
            message="the user view with the path payload, as text",
        )
        show_heatmap_of(page, XSS_PATH)
        injected = page.evaluate(
            """() => ({
                images: document.querySelectorAll('img').length,
                scripts: [...document.scripts].filter(s => !s.src).length,
                handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
            })"""
        )
        assert injected == {"images": 0, "scripts": 0, "handlers": 0}
        screenshot(page, "dashboard-xss.png", full_page=False)
        assert dialogs == []
    finally:
        context.close()
        # Out of the README screenshot that follows: the erase forgets the user's sessions.
        erased = httpx.delete(
            f"{serve_tracker}/api/users/{user}",
            headers={"Authorization": f"Bearer {serve_config.admin_token}"},
            timeout=30,
        )
        assert erased.status_code == 200, erased.text


# -- hostile visitor strings in every panel, on a tracker of their own ----------------------------

# Names a plain JavaScript object holds already: as keys of one they read or break the prototype.
JS_NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty"]
# A direction override, right-to-left scripts and an emoji: shown as sent, reordering nothing.
RTL_PATH = "/\u202eevil\u202c/\u05e9\u05dc\u05d5\u05dd/\u0645\u0631\u062d\u0628\u0627/\U0001f984"
RTL_ELEMENT = "button#\u202egnp.exe\u202c.\u05e9\u05dc\u05d5\u05dd\U0001f984"
LONG_PATH = "/" + "\U0001f4c8long" * 400  # 2001 characters; analytics keeps the first 256
KEY_CHARS = 256
HOSTILE_ADMIN = "hostile-admin-token-" + "x" * 24
HOSTILE_SECRET = "hostile-identity-secret-" + "y" * 24
PANELS = [
    "event-types",
    "chart-events",
    "top-pages",
    "top-elements",
    "heatmap",
    "journeys",
    "scroll-depth",
    "rage-clicks",
    "recent-activity",
]


def hostile_session(user: str, at: int) -> list[dict[str, Any]]:
    """A visit by `user` (session `user`): pages, clicks, a rage click, a scroll and a field,
    with visitor strings wherever a visitor may put one."""
    meta = {"viewportWidth": 1280, "viewportHeight": 800, "pageHeight": 3000}
    page = f"/{user}"
    clicks = [
        {
            "timestamp": at + 100 * i,
            "event": "click",
            "data": {"path": page, "element": user, "coordinates": {"x": 400, "y": 300}},
        }
        for i in range(1, 4)
    ]
    for click in clicks:
        click["data"]["metadata"] = meta
    return [
        # The first page view's referrer is where its journey starts: a bare name here.
        {
            "timestamp": at,
            "event": "page_view",
            "data": {"path": page, "metadata": {**meta, "referrerPath": user}},
        },
        *clicks,
        {
            "timestamp": at + 500,
            "event": "click",
            "data": {
                "path": page,
                "element": XSS_ELEMENT,
                "coordinates": {"x": 900, "y": 1200},
                "metadata": meta,
            },
        },
        {
            "timestamp": at + 600,
            "event": "scroll",
            "data": {"path": page, "scrollY": 900, "metadata": {"scrollDepth": 60}},
        },
        {
            "timestamp": at + 700,
            "event": "form_interaction",
            "data": {"path": page, "element": user, "metadata": {"action": "constructor"}},
        },
        {"timestamp": at + 800, "event": "page_view", "data": {"path": RTL_PATH}},
        {
            "timestamp": at + 900,
            "event": "click",
            "data": {
                "path": RTL_PATH,
                "element": RTL_ELEMENT,
                "coordinates": {"x": 10, "y": 10},
                "metadata": meta,
            },
        },
        {"timestamp": at + 1000, "event": "page_view", "data": {"path": LONG_PATH}},
        # Metadata is any JSON: a referrer that is an object whose toString is not a function.
        {
            "timestamp": at + 1100,
            "event": "page_view",
            "data": {"path": LONG_PATH, "metadata": {"referrerPath": {"toString": "x"}}},
        },
    ]


def panel_texts(page: Page) -> dict[str, str]:
    return dict(
        page.evaluate(
            """ids => Object.fromEntries(ids.map(id => {
                return [id, document.getElementById(id).textContent];
            }))""",
            PANELS,
        )
    )


def injected(page: Page) -> dict[str, int]:
    return dict(
        page.evaluate(
            """() => ({
                images: document.querySelectorAll('img').length,
                scripts: [...document.scripts].filter(s => !s.src).length,
                handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
            })"""
        )
    )


def test_hostile_visitor_strings_show_as_text_in_every_panel_and_a_failing_panel_fails_alone(
    browser: Browser, make_tracker: Callable[..., Any], file_storage: str
) -> None:
    t = make_tracker(
        storage=file_storage, admin_token=HOSTILE_ADMIN, secret=HOSTILE_SECRET, rate_limit=0
    )
    config = t.config
    devices = {
        "__proto__": {"userAgent": "__proto__", "screenResolution": "constructor"},
        "constructor": {"userAgent": "toString", "timezone": "\u05e9\u05dc\u05d5\u05dd/\U0001f984"},
    }
    at = now_ms() - 60_000
    with serve_asgi(build_app(t, config)) as base, httpx.Client(base_url=base, timeout=30) as c:
        for user in JS_NAMES:
            auth = {"Authorization": f"Bearer {mint_token(HOSTILE_SECRET, user)}"}
            body: dict[str, Any] = {"userId": user, "sessionId": user}
            if user in devices:
                body["deviceInfo"] = devices[user]
            created = c.post("/api/track/session", json=body, headers=auth)
            assert created.status_code == 200, created.text
            events = [{**e, "userId": user, "sessionId": user} for e in hostile_session(user, at)]
            sent = c.post("/api/track", json={"events": events}, headers=auth)
            assert sent.status_code == 200, sent.text
        t.flush()
        report = wait_for(
            lambda: (r := t.analytics()) and len(r["rageClicks"]) == 4 and r,
            timeout_s=20,
            message="the hostile traffic in the analytics",
        )
        assert {j["from"] for j in report["journeys"]} >= set(JS_NAMES)
        cut_long = LONG_PATH[:KEY_CHARS]
        assert cut_long in {p["path"] for p in report["topPages"]}

        context, page = open_dashboard(browser, base, config)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        try:
            expected = {
                "top-pages": [f"/{u}" for u in JS_NAMES] + [RTL_PATH, cut_long[:63]],
                "top-elements": [*JS_NAMES, XSS_ELEMENT, RTL_ELEMENT],
                "journeys": [*JS_NAMES, RTL_PATH[:21]],
                "rage-clicks": [*JS_NAMES, *(f"/{u}" for u in JS_NAMES)],
                "recent-activity": [
                    *JS_NAMES,
                    "Browser · constructor",
                    "\u05e9\u05dc\u05d5\u05dd/\U0001f984",
                ],
                "scroll-depth": ["60%"],
                "event-types": ["Page views", "Form fields"],
            }

            def every_panel_shows_its_strings() -> bool:
                texts = panel_texts(page)
                return all(s in texts[panel] for panel, want in expected.items() for s in want)

            try:
                wait_for(every_panel_shows_its_strings, timeout_s=20, message="every panel")
            except AssertionError:
                raise AssertionError(f"panels: {panel_texts(page)}") from None
            assert page.query_selector_all(".panel-error") == []
            # Right-to-left text and direction overrides stay inside the box that shows them.
            bidi = page.evaluate(
                """() => [...document.querySelectorAll(
                    '.bar-label, .node-label, .user-link, .data-table .visitor'
                )].map(node => getComputedStyle(node).unicodeBidi)"""
            )
            assert bidi and set(bidi) == {"isolate"}
            assert page.evaluate("document.querySelector('#chart-events svg.timeline') !== null")
            # The full strings, where a label is cut: in the tooltip, and as the picker's values.
            titles = page.evaluate(
                "[...document.querySelectorAll('#top-pages title')].map(t => t.textContent)"
            )
            assert cut_long in titles
            options = page.evaluate(
                "[...document.querySelectorAll('#heatmap-path option')].map(o => o.value)"
            )
            assert set(options) >= {f"/{u}" for u in JS_NAMES} | {RTL_PATH, cut_long}
            for user in JS_NAMES:
                assert show_heatmap_of(page, f"/{user}") >= 2
            assert show_heatmap_of(page, RTL_PATH) == 1
            users = page.evaluate(
                "[...document.querySelectorAll('#recent-activity .user-link')]"
                ".map(b => b.dataset.userId)"
            )
            assert sorted(users) == sorted(JS_NAMES)

            # The user view, opened from the table, with every one of its strings as text.
            page.click("#recent-activity .user-link[data-user-id='__proto__']")
            wait_for(
                lambda: (
                    page.evaluate("document.querySelectorAll('#user-body .timeline-item').length")
                    == 11
                ),
                timeout_s=15,
                message="the user view's timeline",
            )
            assert page.inner_text("#user-title") == "__proto__"
            body_text = page.evaluate("document.getElementById('user-body').textContent")
            for text in ["/__proto__", RTL_PATH, RTL_ELEMENT, XSS_ELEMENT, "constructor"]:
                assert text in body_text, text
            paths = page.evaluate(
                "[...document.querySelectorAll('#user-body .timeline-item .path')]"
                ".map(p => p.textContent)"
            )
            assert LONG_PATH in paths  # cut on screen by CSS, whole in the page
            page.click("#user-close")

            assert injected(page) == {"images": 0, "scripts": 0, "handlers": 0}
            assert dialogs == []
            screenshot(page, "dashboard-hostile.png")

            # A panel that fails for any reason shows so, and the panels after it still draw.
            page.evaluate(
                """() => {
                const box = document.getElementById('journeys');
                box.appendChild = function (child) {
                    if (child.tagName === 'svg') throw new Error('journeys broke');
                    return Node.prototype.appendChild.call(this, child);
                };
                for (const id of ['scroll-depth', 'rage-clicks', 'recent-activity']) {
                    document.getElementById(id).firstChild.dataset.stale = 'yes';
                }
            }"""
            )
            page.click("#refresh-button")
            wait_for(
                lambda: page.evaluate(
                    """() => document.querySelector('#journeys .panel-error') !== null
                    && ['scroll-depth', 'rage-clicks', 'recent-activity'].every(id =>
                        !document.getElementById(id).firstChild.dataset.stale)"""
                ),
                timeout_s=15,
                message="the journeys' error beside the panels drawn after it",
            )
            assert "journeys broke" in page.inner_text("#journeys .panel-error")
            assert len(page.query_selector_all(".panel-error")) == 1
        finally:
            context.close()


# -- the README screenshot: the dashboard with a few hundred events from varied visitors --------

DEVICES = [
    {
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "screenResolution": "1512x982",
        "timezone": "Europe/Berlin",
    },
    {
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 "
        "Firefox/127.0",
        "screenResolution": "1920x1080",
        "timezone": "America/New_York",
    },
    {
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "screenResolution": "390x844",
        "timezone": "Asia/Tokyo",
    },
    {
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36",
        "screenResolution": "2560x1440",
        "timezone": "Europe/Paris",
    },
]
NEXT_PAGES = {
    "/": ["/app/shop", "/app/shop", "/long", "/app/product/summit-tent", "/app/journal"],
    "/app/shop": ["/app/product/summit-tent", "/app/product/ridge-pack", "/app/cart", "/"],
    "/app/product/summit-tent": ["/app/cart", "/app/shop", "/app/cart"],
    "/app/product/ridge-pack": ["/app/cart", "/app/shop"],
    "/app/cart": ["/form", "/app/shop", "/form"],
    "/long": ["/app/shop", "/form", "/"],
    "/form": ["/", "/app/about"],
    "/app/journal": ["/long", "/app/shop"],
    "/app/about": ["/form", "/"],
}

# Where the clickable things are on each page, read from the real demo in the browser, so
# that seeded clicks land where a person's would: [tag#id.classes, page x, page y, w, h,
# in the page's main content]; main content first, as that is what people click most.
TARGETS_JS = """() => [...document.querySelectorAll(
    'a, button, input, select, textarea, summary')].filter(el => {
        const r = el.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && !el.closest('[hidden]');
    }).map(el => {
        const r = el.getBoundingClientRect();
        let d = el.tagName.toLowerCase();
        if (el.id) d += '#' + el.id;
        const c = (el.getAttribute('class') || '').trim();
        if (c) d += '.' + c.split(/\\s+/).join('.');
        return [d, r.left + scrollX, r.top + scrollY, r.width, r.height, !!el.closest('main')];
    })"""


def page_targets(browser: Browser, base: str) -> dict[str, list[list[Any]]]:
    # Opted out first, so measuring the pages tracks nothing.
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(
        "localStorage.setItem('tracking_opt_out', '1');"
        "sessionStorage.setItem('acme_cart', '{\"summit-tent\": 1, \"ridge-pack\": 2}')"
    )
    page = context.new_page()
    targets: dict[str, list[list[Any]]] = {}
    try:
        for path in NEXT_PAGES:
            page.goto(f"{base}{path}")  # waits for the load event: the deferred app has run
            found = page.evaluate(TARGETS_JS)
            height = page.evaluate("document.documentElement.scrollHeight")
            found.sort(key=lambda t: not t[5])
            targets[path] = [[*t[:5], height] for t in found if t[2] < 3000]
    finally:
        context.close()
    return targets


def a_session(
    rng: random.Random, targets: dict[str, list[list[Any]]], start_ms: int
) -> list[dict[str, Any]]:
    """One plausible visit: a walk through the store with clicks, scrolls, hovers and fields."""
    events: list[dict[str, Any]] = []
    at = start_ms
    path, previous, dwell = "/", None, None
    for _ in range(rng.randint(3, 8)):
        spots = targets[path]
        height = spots[0][5] if spots else 2000
        meta: dict[str, Any] = {"viewportWidth": 1280, "viewportHeight": 800, "pageHeight": height}
        view: dict[str, Any] = {"path": path, "metadata": dict(meta)}
        if previous:
            view["metadata"]["referrerPath"] = previous
            view["duration"] = dwell
        events.append({"timestamp": at, "event": "page_view", "data": view})
        dwell = 0
        # Popular targets get most clicks: weight by rank so the heatmap has hot spots.
        weights = [1 / (1 + i) ** 1.2 for i in range(len(spots))]
        for _ in range(rng.choice([1, 2, 2, 3, 4, 6])):
            at += rng.randint(800, 6000)
            dwell += 3000
            element, x, y, w, h, _height = rng.choices(spots, weights)[0]
            px, py = rng.gauss(x + w / 2, w / 5), rng.gauss(y + h / 2, h / 4)
            scroll_y = max(0, int(py - 400)) if py > 700 else 0
            if scroll_y:
                depth = min(100, round(100 * (scroll_y + 800) / height))
                events.append(
                    {
                        "timestamp": at - 300,
                        "event": "scroll",
                        "data": {
                            "path": path,
                            "scrollX": 0,
                            "scrollY": scroll_y,
                            "metadata": {**meta, "scrollDepth": depth},
                        },
                    }
                )
            if rng.random() < 0.4:
                hover = {"path": path, "element": element, "duration": rng.randint(550, 2500)}
                events.append({"timestamp": at - 200, "event": "hover", "data": hover})
            click = {
                "path": path,
                "element": element,
                "coordinates": {"x": round(px), "y": round(py) - scroll_y},
                "scrollX": 0,
                "scrollY": scroll_y,
                "metadata": meta,
            }
            events.append({"timestamp": at, "event": "click", "data": click})
        if path == "/long":
            for depth_px in range(0, rng.randint(1, 8) * 600, 600):
                at += 1500
                depth = min(100, round(100 * (depth_px + 800) / height))
                scroll = {
                    "path": path,
                    "scrollX": 0,
                    "scrollY": depth_px,
                    "metadata": {**meta, "scrollDepth": depth},
                }
                events.append({"timestamp": at, "event": "scroll", "data": scroll})
        if path == "/form":
            for name in rng.sample(["fullName", "email", "activity", "message"], rng.randint(1, 4)):
                at += rng.randint(1500, 5000)
                action = "change" if name == "activity" else "input"
                kind = {"fullName": "text", "activity": "select-one"}.get(name, name)
                field_meta = {"action": action, "fieldType": kind}
                data = {"path": path, "element": name, "metadata": field_meta}
                events.append({"timestamp": at, "event": "form_interaction", "data": data})
        at += rng.randint(2000, 20000)
        dwell += rng.randint(2000, 20000)
        previous, path = path, rng.choice(NEXT_PAGES[path])
    return events


def seed_traffic(
    base: str, targets: dict[str, list[list[Any]]], users: int = 12, seed: int = 7
) -> int:
    """Send `users` visitors' sessions (deterministic for a `seed`); return how many events."""
    rng = random.Random(seed)
    sent = 0
    for u in range(users):
        user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        for s in range(rng.choice([1, 1, 2])):
            events = a_session(rng, targets, now_ms() - rng.randint(60, 240) * 1000)
            if u == 3 and s == 0:  # somebody fighting the cart button
                cart = next(t for t in targets["/app/cart"] if "checkout" in t[0])
                for i in range(5):
                    rage = {
                        "path": "/app/cart",
                        "element": cart[0],
                        "coordinates": {"x": round(cart[1] + 20), "y": round(cart[2] + 10)},
                        "metadata": {"viewportWidth": 1280, "viewportHeight": 800},
                    }
                    events.append({"timestamp": now_ms() + i * 150, "event": "click", "data": rage})
            track(base, user, f"s{s}-{u}", events, DEVICES[(u + s) % len(DEVICES)])
            sent += len(events)
    return sent


def test_a_screenshot_of_the_dashboard_with_traffic_is_saved(
    visit: Visit, browser: Browser, serve_tracker: str, serve_config: Config
) -> None:
    targets = page_targets(browser, serve_tracker)
    assert all(targets[path] for path in NEXT_PAGES), "every demo page has something to click"
    before = admin_get(serve_tracker, serve_config, "/api/analytics").json()["totalEvents"]
    sent = seed_traffic(serve_tracker, targets)
    assert 200 <= sent <= 1000

    def arrived() -> bool:
        report = admin_get(serve_tracker, serve_config, "/api/analytics").json()
        return int(report["totalEvents"]) >= before + sent

    wait_for(arrived, timeout_s=20)

    context, page = open_dashboard(browser, serve_tracker, serve_config)
    try:
        wait_for(live_on(page), message="the live indicator")
        # One more visitor while the dashboard watches, so the live counter has something.
        seed_traffic(serve_tracker, targets, users=1, seed=8)
        wait_for(lambda: page.inner_text("#live-count") != "0", timeout_s=20)
        wait_for_kpis_to_match_api(page, serve_tracker, serve_config)
        assert heat_cells(page) > 20
        page.mouse.move(0, 0)
        shot = screenshot(page, "dashboard.png")
        assert shot.exists()
    finally:
        context.close()
