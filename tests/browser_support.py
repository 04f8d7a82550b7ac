"""Shared pieces of the real-browser tests: launching Debian's Chromium and serving an ASGI app.

Browsers cannot be downloaded where these tests run, so Playwright drives the system Chromium
(`CHROMIUM_PATH`, default /usr/bin/chromium). Apps are served by a real uvicorn on 127.0.0.1
with a port the kernel picks, so tests can run side by side.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from support import wait_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless system Chromium with the options every browser test uses."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
    )


@contextmanager
def serve_asgi(app: Any, **uvicorn_options: Any) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on 127.0.0.1; yield its base URL; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "auto"}
    options.update(uvicorn_options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), message="uvicorn to start")
        if not server.started:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_for_tracker(page: Page) -> None:
    """Wait until tracker.js has loaded (polled: the site's CSP forbids the eval that
    page.wait_for_function needs)."""
    wait_for(lambda: page.evaluate("window.tracker !== undefined"), message="tracker.js")


def wait_page_ms(page: Page, ms: float) -> None:
    """Let `ms` of page time pass, by the page's own clock (a dwell the tracker measures)."""
    end = page.evaluate("performance.now()") + ms
    wait_for(lambda: page.evaluate("end => performance.now() > end", end), interval_s=0.02)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()
