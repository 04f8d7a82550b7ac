"""The dashboard's predictions panels in Chromium: the next pages of a chosen page, a goal's
live sessions ranked, and the evaluation beside its baselines, as the API gives them."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser
from support import now_ms, wait_for
from test_conversions_http import unique
from test_e2e_browser import open_dashboard
from test_http import new_user
from test_predictions_http import pages

from tracker.config import Config

pytestmark = pytest.mark.browser
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"


@pytest.mark.skip(
    reason="passes alone, but in the whole suite the live session is never ranked within 120 s: "
    "under investigation (docs/predictions.md)"
)
def test_the_panels_show_the_next_pages_the_ranked_sessions_and_the_evaluation(
    browser: Browser, serve_tracker: str, serve_config: Config
) -> None:
    site = f"/{unique('site')}"
    goal = unique("signup")
    admin_headers = {"Authorization": f"Bearer {serve_config.admin_token}"}
    with httpx.Client(base_url=serve_tracker, timeout=30, headers=admin_headers) as admin:
        signup = {"match": {"event": "page_view", "path": f"{site}/signup"}}
        assert admin.put(f"/api/goals/{goal}", json=signup).status_code == 200
        # The actor's first evaluation starts a Ray task (and imports scikit-learn): a slow
        # first answer there is not what this test is about.
        wait_for(
            lambda: admin.get("/api/predictions/evaluation").is_success,
            timeout_s=120,
            interval_s=1,
            message="the first evaluation",
        )
    live = new_user()
    with httpx.Client(base_url=serve_tracker, timeout=30, headers={"User-Agent": BROWSER}) as c:
        for _ in range(3):
            pages(c, new_user(), [f"{site}/home", f"{site}/cart"], now_ms() - 120_000)
        pages(c, live, [f"{site}/home"], now_ms() - 10_000)

    context, page = open_dashboard(browser, serve_tracker, serve_config)
    try:
        page.fill("[data-testid=next-page-path]", f"{site}/home")

        def predicted() -> bool:
            # The served model is refreshed from the hosts every few seconds: ask again until
            # it holds these visits.
            if f"{site}/cart\t100.0%" in page.inner_text("[data-testid=next-pages]"):
                return True
            page.press("[data-testid=next-page-path]", "Enter")
            return False

        wait_for(predicted, interval_s=0.5, message="the next pages")

        wait_for(
            lambda: goal in page.inner_text("[data-testid=propensity-goal]"),
            message="the goals to choose from",
        )
        page.select_option("[data-testid=propensity-goal]", goal)

        def ranked() -> bool:
            # The goal's first model is trained on its first request (a Ray task): under load
            # that answer may time out, and choosing the goal again asks again.
            if live in page.inner_text("[data-testid=propensity-sessions]"):
                return True
            page.select_option("[data-testid=propensity-goal]", goal)
            return False

        wait_for(ranked, timeout_s=120, interval_s=2, message="the live session ranked")
        wait_for(
            lambda: "next page top-1" in page.inner_text("[data-testid=prediction-evaluation]"),
            message="the evaluation",
        )
    finally:
        context.close()
