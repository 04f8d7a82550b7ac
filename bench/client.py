"""tracker.js on the host page: the size of each built file against its budget, and what the
script costs a page, in Chromium.

The cost is measured on a small shop (a single-page app that renders its views, 200 products,
a form) by one scripted visit: load, scroll, 20 clicks, a form filled in and sent, two SPA
navigations. The same visit runs with and without tracker.js, alternately, in the same run;
the figure is the main thread's scripting time (`Performance.getMetrics`' `ScriptDuration`,
over a CDP session) with it against without it, and the long tasks seen (over 50 ms; a
long animation frame names the scripts that ran in it, so a long one is pinned on tracker.js
or not).
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bench.browser import launch_chromium, serve_asgi
from bench.report import Row
from tracker.client_assets import ClientAssets

STATIC = Path(__file__).parent.parent / "tracker" / "static"
KB = 1024
# Gzipped bytes each built file is to take: the default script, and each file a site loads
# on demand (the rows' targets).
TARGETS = {
    "tracker.js": 4 * KB,
    "hover": 1 * KB,
    "websocket": 1 * KB,
    "experiments": 1 * KB,
}
# What tests/test_client_build.py lets them take: the targets, but for the default script,
# which does not meet its target yet (docs/tracker-js.md): it may not grow past this.
BUDGETS = {**TARGETS, "tracker.js": 6.5 * KB}
SCRIPT_RATIO_TARGET = 1.10
LONG_TASK_MS = 50
# tracker.js's default: the visit sends as a site's visitors do.
FLUSH_INTERVAL_MS = 2000
PRODUCTS = 200

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="/app.js" defer></script>
{tracker}
</head><body>
<nav><a href="{base}/" data-route>Home</a> <a href="{base}/products" data-route>Products</a>
<a href="{base}/about" data-route>About</a></nav>
<main id="view"></main>
<form id="contact"><input name="name"><input name="email" type="email">
<textarea name="note"></textarea><button id="send" type="submit">Send</button></form>
</body></html>
"""
# The shop's own script: renders each view (200 products on two of them), routes with the
# History API, counts what goes in the cart.
APP_JS = """
(() => {
  const view = document.getElementById('view');
  let cart = 0;
  function render() {
    const title = document.createElement('h1');
    title.textContent = location.pathname;
    const list = document.createElement('ul');
    const count = location.pathname.endsWith('/about') ? 20 : PRODUCTS;
    for (let i = 0; i < count; i++) {
      const item = document.createElement('li');
      item.style.height = '40px';
      const button = document.createElement('button');
      button.className = 'add product-' + i;
      button.textContent = 'Add product ' + i;
      item.append('Product ' + i + ' ', button);
      list.append(item);
    }
    view.replaceChildren(title, list);
  }
  document.addEventListener('click', (e) => {
    const link = e.target.closest('a[data-route]');
    if (link) {
      e.preventDefault();
      history.pushState({}, '', link.getAttribute('href'));
      render();
    } else if (e.target.closest('button.add')) {
      cart += 1;
      document.title = 'Shop (' + cart + ')';
    }
  });
  document.getElementById('contact').addEventListener('submit', (e) => e.preventDefault());
  window.addEventListener('popstate', render);
  render();
})();
""".replace("PRODUCTS", str(PRODUCTS))
# Collects long tasks and long animation frames (with the scripts that ran in them) from the
# start of the page.
OBSERVE_LONG_TASKS = """
window.__long = {tasks: [], frames: []};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__long.tasks.push(e.duration);
}).observe({type: 'longtask', buffered: true});
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    window.__long.frames.push({duration: e.duration, scripts: e.scripts.map(
      (s) => ({source: s.sourceURL, invoker: s.invoker, duration: s.duration}))});
  }
}).observe({type: 'long-animation-frame', buffered: true});
"""


@dataclass
class Received:
    """What the host page's tracker sent."""

    events: int = 0
    sessions: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class Visit:
    """One scripted visit's figures."""

    script_ms: float
    long_tasks_ms: list[float] = field(default_factory=list)
    # Scripts of tracker.js that ran more than 50 ms within one long animation frame.
    tracker_long_scripts: list[dict[str, Any]] = field(default_factory=list)
    events_sent: int = 0


def host_app(received: Received) -> Starlette:
    """The shop under /with/ (carrying tracker.js) and /without/, tracker.js's files, and
    tracking routes that take everything."""
    assets = ClientAssets(STATIC)

    async def page(request: Request) -> Response:
        variant = request.path_params["variant"]
        hover = " data-hover" if "hover" in request.query_params else ""
        tag = f'<script src="/tracker.js"{hover} defer></script>' if variant == "with" else ""
        return HTMLResponse(HOST_PAGE.format(tracker=tag, base=f"/{variant}"))

    async def app_js(request: Request) -> Response:
        return Response(APP_JS, media_type="text/javascript")

    async def client_file(request: Request) -> Response:
        asset = assets.get(request.url.path.lstrip("/"))
        return Response(asset.identity, media_type="text/javascript")

    async def session(request: Request) -> Response:
        received.sessions += 1
        return JSONResponse({"success": True})

    async def track(request: Request) -> Response:
        body = json.loads(await request.body())
        received.events += len(body["events"])
        for event in body["events"]:
            received.kinds[event["event"]] = received.kinds.get(event["event"], 0) + 1
        return JSONResponse({"success": True, "accepted": len(body["events"])})

    return Starlette(
        routes=[
            Route("/app.js", app_js),
            Route("/tracker.js", client_file),
            Route("/tracker.{asset}.js", client_file),
            Route("/api/track/session", session, methods=["POST"]),
            Route("/api/track", track, methods=["POST"]),
            Route("/{variant:str}/{rest:path}", page),
        ]
    )


@contextmanager
def host_site() -> Iterator[tuple[str, Received]]:
    received = Received()
    with serve_asgi(host_app(received)) as url:
        yield url, received


def scripted_visit(page: Page, url: str) -> None:
    """Load, scroll, 20 clicks, a form, two SPA navigations."""
    page.goto(url)
    page.wait_for_load_state("load")
    for _ in range(10):
        page.mouse.wheel(0, 600)
    page.evaluate("window.scrollTo(0, 0)")
    for i in range(20):
        page.click(f"button.product-{i * 7}")
    for name, text in (("name", "Ada"), ("email", "ada@example.org"), ("note", "Hello")):
        page.fill(f"[name={name}]", "")
        page.type(f"[name={name}]", text)
    page.click("#send")
    page.click("a[href$='/products']")
    page.click("a[href$='/about']")


def measure(
    browser: Browser, base_url: str, with_tracker: bool, settle: Callable[[], None]
) -> Visit:
    """One scripted visit in a fresh context; `settle` lets the tracker send its last batch
    (and is called the same without it)."""
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        context.add_init_script(OBSERVE_LONG_TASKS)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        variant = "with" if with_tracker else "without"
        scripted_visit(page, f"{base_url}/{variant}/")
        settle()
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        long = page.evaluate("window.__long")
        tracker_scripts = [
            script
            for frame in long["frames"]
            for script in frame["scripts"]
            if "/tracker" in script["source"] and script["duration"] > LONG_TASK_MS
        ]
        return Visit(
            script_ms=metrics["ScriptDuration"] * 1000,
            long_tasks_ms=long["tasks"],
            tracker_long_scripts=tracker_scripts,
        )
    finally:
        context.close()


def sizes() -> dict[str, dict[str, int]]:
    """Bytes of each built file as it is, gzipped (level 9) and in brotli, by file kind."""
    assets = ClientAssets(STATIC)
    found: dict[str, dict[str, int]] = {}
    for name, asset in assets.assets.items():
        parts = name.split(".")
        if name == assets.versioned_name or name.endswith(".mjs"):
            continue
        kind = "tracker.js" if name == "tracker.js" else parts[1]
        found[kind] = {
            "bytes": len(asset.identity),
            "gzip": len(gzip.compress(asset.identity, compresslevel=9, mtime=0)),
            "brotli": len(asset.brotli),
        }
    return found


def _size_rows() -> list[Row]:
    rows = []
    for kind, size in sizes().items():
        budget = TARGETS[kind]
        label = "default script" if kind == "tracker.js" else f"{kind} file"
        rows.append(
            Row(
                name=f"client: {label}, gzipped",
                value=size["gzip"],
                unit="B",
                target=f"<= {budget:,.0f} B",
                met=size["gzip"] <= budget,
                details={**size, "target": budget, "budget": BUDGETS[kind]},
            )
        )
    return rows


def run(quick: bool) -> list[Row]:
    visits = 2 if quick else 6
    with sync_playwright() as playwright, host_site() as (url, received):
        browser = launch_chromium(playwright)
        try:
            # Two flush intervals: the tracker's last batch goes out (the same wait without it).
            def settle() -> None:
                time.sleep(FLUSH_INTERVAL_MS / 1000 * 2)

            measure(browser, url, True, settle)  # warm the server and the browser's caches
            measure(browser, url, False, settle)
            sent_before = received.events
            with_tracker: list[Visit] = []
            without: list[Visit] = []
            for _ in range(visits):
                with_tracker.append(measure(browser, url, True, settle))
                without.append(measure(browser, url, False, settle))
            events = (received.events - sent_before) / visits
        finally:
            browser.close()
    script_with = statistics.median(v.script_ms for v in with_tracker)
    script_without = statistics.median(v.script_ms for v in without)
    ratio = script_with / script_without
    tracker_long = [s for v in with_tracker for s in v.tracker_long_scripts]
    return [
        Row(
            name="client: page scripting time with tracker.js",
            value=round(script_with, 1),
            unit="ms",
            baseline="the same visit without it",
            baseline_value=round(script_without, 1),
            target=f"<= {SCRIPT_RATIO_TARGET:.2f}x",
            met=ratio <= SCRIPT_RATIO_TARGET,
            details={
                "visits": visits,
                "events_sent_per_visit": events,
                "script_ms_with": [round(v.script_ms, 1) for v in with_tracker],
                "script_ms_without": [round(v.script_ms, 1) for v in without],
            },
        ),
        Row(
            name="client: long tasks of tracker.js (over 50 ms)",
            value=len(tracker_long),
            unit="",
            target="0",
            met=not tracker_long,
            details={
                "long_tasks_ms_with": [t for v in with_tracker for t in v.long_tasks_ms],
                "long_tasks_ms_without": [t for v in without for t in v.long_tasks_ms],
                "tracker_long_scripts": tracker_long,
            },
        ),
        *_size_rows(),
    ]
