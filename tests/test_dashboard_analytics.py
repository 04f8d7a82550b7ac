"""The dashboard's site panels in Chromium: sources and campaigns, technology, countries,
engagement and custom events agree with the API; clicking a row filters every panel; the
comparison shows deltas. Screenshots go to test-output/ (and docs/dashboard.png with
TRACKER_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page
from support import now_ms, wait_for

from tracker.config import Config

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"
MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
WIN_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
# (user agent, address, referrer, campaign, pages, custom events)
VISITORS: list[tuple[str, str, str | None, dict[str, str] | None, list[str], list[str]]] = [
    (MAC_CHROME, "81.2.69.160", "https://www.google.com/search?q=tents", None, ["/", "/form"], []),
    (WIN_FIREFOX, "8.8.8.8", "https://news.ycombinator.com/item?id=1", None, ["/"], []),
    (
        IPHONE,
        "81.2.69.160",
        None,
        {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"},
        ["/", "/long", "/form"],
        ["signup"],
    ),
    (MAC_CHROME, "2.16.6.1", "duckduckgo.com", None, ["/long"], []),
    (
        WIN_FIREFOX,
        "8.8.8.8",
        None,
        {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "tents"},
        ["/", "/form"],
        ["signup", "signup"],
    ),
    (IPHONE, "1.1.1.1", "t.co", None, ["/"], []),
]


def seed(base: str) -> None:
    for agent, address, referrer, utm, pages, custom in VISITORS:
        user = str(uuid.uuid4())
        body: dict[str, Any] = {
            "userId": user,
            "sessionId": "s1",
            "deviceInfo": {"userAgent": agent},
        }
        if referrer:
            body["referrer"] = referrer
        if utm:
            body["utm"] = utm
        at = now_ms() - 120_000
        events = [
            {"event": "page_view", "timestamp": at + i * 20_000, "data": {"path": path}}
            for i, path in enumerate(pages)
        ] + [
            {
                "event": "custom",
                "timestamp": at + 50_000,
                "data": {"name": name, "properties": {"plan": "pro"}},
            }
            for name in custom
        ]
        for event in events:
            event.update(userId=user, sessionId="s1")
        with httpx.Client(base_url=base, timeout=30, headers={"X-Forwarded-For": address}) as c:
            assert c.post("/api/track/session", json=body).status_code == 200
            assert c.post("/api/track", json=events).status_code == 200


def api(base: str, config: Config, **params: Any) -> dict[str, Any]:
    response = httpx.get(
        f"{base}/api/analytics",
        params={"from": now_ms() - 24 * 3600 * 1000, **params},
        headers={"Authorization": f"Bearer {config.admin_token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rows(page: Page, panel: str) -> list[list[str]]:
    shown: list[list[str]] = page.evaluate(
        """panel => [...document.querySelectorAll(
            `[data-testid="${panel}"] table:first-of-type tbody tr`)].map(
            tr => [...tr.querySelectorAll('td')].map(td => td.textContent))""",
        panel,
    )
    return shown


def test_the_site_panels_agree_with_the_api_and_filter_by_clicked_rows(
    browser: Browser, serve_tracker: str, serve_config: Config
) -> None:
    seed(serve_tracker)
    wait_for(lambda: api(serve_tracker, serve_config, channel="paid")["visitors"] >= 1)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{serve_tracker}/analytics")
        page.fill("#admin-token", serve_config.admin_token or "")
        page.click("#login-submit")
        wait_for(lambda: page.is_visible("[data-testid=engagement]"), message="the site panels")
        expected = api(serve_tracker, serve_config)
        channels = [[r["channel"], str(r["visitors"])] for r in expected["channels"]]
        wait_for(lambda: rows(page, "sources") == channels, message="the channels of the API")
        countries = [[r["name"], str(r["visitors"])] for r in expected["countries"]]
        assert rows(page, "countries") == countries
        assert ["GB", "2"] in countries
        assert page.inner_text("[data-testid=custom-events]").count("signup") == 1
        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / "dashboard-site-panels.png"), full_page=True)

        # A click on a channel filters every panel, as the API does with that filter.
        page.click('[data-testid=sources] tr[data-value="email"]')
        wait_for(lambda: page.is_visible('.filter-chip[data-filter="channel"]'))
        narrowed = api(serve_tracker, serve_config, channel="email")
        browsers = [[r["name"], str(r["visitors"])] for r in narrowed["browsers"]]
        wait_for(lambda: rows(page, "technology") == browsers, message="the filtered browsers")
        assert rows(page, "technology") == [["Mobile Safari", "1"]]
        # A second filter combines with the first; removing the chips widens again.
        page.click('[data-testid=custom-events] tr[data-value="signup"]')
        wait_for(lambda: page.is_visible('.filter-chip[data-filter="event"]'))
        page.click('.filter-chip[data-filter="channel"] .chip-remove')
        page.click('.filter-chip[data-filter="event"] .chip-remove')
        wait_for(lambda: rows(page, "sources") == channels, message="the unfiltered channels")

        # The comparison with the previous range shows a delta on each figure.
        page.check("[data-testid=compare-previous]")
        wait_for(lambda: page.locator("[data-testid=delta]").count() == 5, message="deltas")
        assert "+" in page.inner_text("[data-testid=engagement]")
        page.mouse.move(0, 0)
        shot = OUTPUT / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("TRACKER_UPDATE_SCREENSHOTS") == "1":
            README_SCREENSHOT.write_bytes(shot.read_bytes())
    finally:
        context.close()
