"""Shared pieces of the real-browser tests: Debian's Chromium, an ASGI app served on 127.0.0.1
(both from `bench.browser`, which the page-cost benchmark shares), and waiting on a page.

Apps are served by a real uvicorn with a port the kernel picks, so tests can run side by side.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from support import wait_for

from bench.browser import chromium_path, launch_chromium, serve_asgi

__all__ = [
    "chromium_path",
    "launch_chromium",
    "serve_asgi",
    "wait_for_tracker",
    "wait_page_ms",
]


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
