"""The dashboard's conversions panels in Chromium: a goal's figures, a funnel's bars with the
drop-off, the retention triangle, and an experiment whose split does not match its weights
shown with its warning. The Serve deployment is shared by the test session, so names here are
fresh; the screenshot goes to test-output/."""

from __future__ import annotations

import uuid

import httpx
import pytest
from browser_support import browser
from playwright.sync_api import Browser
from support import now_ms, wait_for
from test_e2e_browser import open_dashboard, screenshot, track

from tracker.config import Config

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, imported for pytest


def test_the_dashboard_shows_goals_funnel_bars_retention_and_an_experiments_warning(
    browser: Browser, serve_tracker: str, serve_config: Config
) -> None:
    tag = f"c{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {serve_config.admin_token}"}
    with httpx.Client(base_url=serve_tracker, timeout=30, headers=headers) as admin:
        page_view = {"event": "page_view", "path": f"/{tag}/cart"}
        paid = {"event": "custom", "name": f"{tag}-paid"}
        assert admin.put(f"/api/goals/{tag}", json={"match": page_view}).status_code == 200
        assert admin.put(f"/api/goals/{tag}-paid", json={"match": paid}).status_code == 200
        funnel = {"steps": [page_view, paid], "windowS": 600}
        assert admin.put(f"/api/funnels/{tag}", json=funnel).status_code == 200
        only_control = {"variants": {"control": 1, "new": 0}, "goal": f"{tag}-paid"}
        assert admin.put(f"/api/experiments/{tag}", json=only_control).status_code == 200
        for i in range(40):
            user = str(uuid.uuid4())
            events = [
                {"timestamp": now_ms() - 5, "event": "page_view", "data": {"path": f"/{tag}/cart"}}
            ]
            if i % 4 == 0:
                events.append(
                    {
                        "timestamp": now_ms(),
                        "event": "custom",
                        "data": {"path": "/", "name": f"{tag}-paid"},
                    }
                )
            track(serve_tracker, user, "s1", events)
            assert admin.get(f"/api/experiments/{tag}/variant", params={"userId": user}).json() == {
                "variant": "control"
            }
        # The same users now meet weights of 1:1: the split recorded is all control.
        even = {"variants": {"control": 1, "new": 1}, "goal": f"{tag}-paid"}
        assert admin.put(f"/api/experiments/{tag}", json=even).status_code == 200

    context, page = open_dashboard(browser, serve_tracker, serve_config)
    try:
        goals = page.locator("[data-testid=conversion-goals] tr", has_text=f"view /{tag}/cart")
        wait_for(lambda: goals.count() == 1, message="the goal's row")
        assert goals.first.inner_text().split("\t")[2:4] == ["40", "40"]
        funnel_box = page.locator("[data-testid=funnel]", has_text=tag)
        wait_for(lambda: funnel_box.count() == 1, message="the funnel")
        steps = funnel_box.locator("[data-testid=funnel-step]")
        assert steps.count() == 2
        assert "10 visitors" in steps.nth(1).inner_text()
        assert "75.0% dropped" in steps.nth(1).inner_text()
        fill = steps.nth(1).locator(".funnel-fill").evaluate("e => e.style.width")
        assert fill == "25%"
        assert page.locator("[data-testid=conversion-retention] tbody tr").count() >= 1
        experiment = page.locator("[data-testid=experiment]", has_text=tag)
        wait_for(lambda: experiment.count() == 1, message="the experiment")
        assert experiment.locator("[data-testid=srm-warning]").is_visible()
        assert "control (control)" in experiment.inner_text()
        page.locator("[data-testid=conversions]").scroll_into_view_if_needed()
        screenshot(page, "dashboard-conversions.png")
    finally:
        context.close()
