"""The SvelteKit example (examples/sveltekit) in Chromium, against the tracker on 127.0.0.1.

The example's Node server and the tracker's app each listen on 127.0.0.1 (the tracker allowing
the example's origin). Chromium navigates client-side, sends the contact form and logs in; the
tracker must then hold exactly one page view per navigation, no typed value, and the anonymous
visitor's events under the user identify linked it to.

`make sveltekit-example` (run by `make test`) builds the example; where it is not built and
Node is missing, the test is skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import serve_asgi, wait_for_tracker
from conftest import file_url, free_port
from playwright.sync_api import Browser, Request
from support import wait_for

from tracker.api import Tracker, connect, shutdown
from tracker.config import Config
from tracker.ingress import build_app

pytestmark = pytest.mark.browser

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sveltekit"
ADMIN = "sveltekit-admin-token-" + "a" * 24
SECRET = "sveltekit-secret-" + "s" * 24
TYPED_EMAIL = "quokka-4411@example.net"
TYPED_MESSAGE = "Zebra-Pangolin-7730"


def built_example() -> Path:
    """The example's Node server entry, building it first where it is not built."""
    entry = EXAMPLE / "build" / "index.js"
    if shutil.which("node") is None:
        pytest.skip("Node is not installed: the SvelteKit example cannot be run here")
    if not entry.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: `make sveltekit-example` cannot build the example")
        for command in (["ci", "--no-audit", "--no-fund"], ["run", "build"]):
            subprocess.run(["npm", *command, "--silent"], cwd=EXAMPLE, check=True, timeout=300)
    return entry


@pytest.fixture(scope="module")
def example(ray_session: None) -> Iterator[tuple[str, str]]:
    """The tracker (its own actors, allowing the example's origin) and the example's server
    on 127.0.0.1; yields (tracker URL, example URL)."""
    entry = built_example()
    site = f"http://127.0.0.1:{free_port()}"
    config = Config.from_env(
        {},
        storage=file_url(Path(os.environ.get("TMPDIR", "/tmp")) / f"sveltekit-{uuid.uuid4().hex}"),
        namespace=f"sveltekit-{uuid.uuid4().hex[:12]}",
        admin_token=ADMIN,
        secret=SECRET,
        hosts=1,
        rate_limit=0.0,
        allowed_origins=(site,),
    )
    tracker: Tracker = connect(config=config)
    try:
        with serve_asgi(build_app(tracker, config)) as tracker_url:
            env = {
                **os.environ,
                "HOST": "127.0.0.1",
                "PORT": site.rsplit(":", 1)[1],
                "ORIGIN": site,
                "TRACKER_URL": tracker_url,
                "TRACKER_SECRET": SECRET,
            }
            node = subprocess.Popen(["node", str(entry)], env=env, stdout=subprocess.DEVNULL)
            try:
                wait_for(lambda: answers(site), timeout_s=60, message="the example's server")
                yield tracker_url, site
            finally:
                node.terminate()
                node.wait(timeout=10)
    finally:
        shutdown(config)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def movements_of(tracker_url: str, user_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{tracker_url}/api/users/{user_id}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return [m for s in response.json()["sessions"] for m in s["movements"]]


def page_views(movements: list[dict[str, Any]]) -> list[str]:
    views = [m for m in movements if m["event"] == "page_view"]
    return [m["data"]["path"] for m in sorted(views, key=lambda m: m["timestamp"])]


def test_each_navigation_is_one_page_view_the_form_sends_no_values_and_login_links_the_visitor(
    browser: Browser, example: tuple[str, str]
) -> None:
    tracker_url, site = example
    user = f"sk_{uuid.uuid4().hex[:12]}"
    context = browser.new_context()
    page = context.new_page()
    bodies: list[str] = []

    def sent(request: Request) -> None:
        if request.url.startswith(tracker_url) and request.post_data:
            bodies.append(request.post_data)

    page.on("request", sent)
    page.goto(f"{site}/")
    wait_for_tracker(page)
    anonymous = page.evaluate("localStorage.getItem('tracking_user_id')")
    assert anonymous, "tracker.js keeps the anonymous visitor's ID"
    documents = [page.evaluate("performance.timeOrigin")]
    for name, path in (("Pricing", "/pricing"), ("About", "/about"), ("Contact", "/contact")):
        page.get_by_role("link", name=name).click()
        page.wait_for_url(f"{site}{path}")
        page.get_by_role("heading", name=name).wait_for()
    page.fill("input[name=email]", TYPED_EMAIL)
    page.fill("textarea[name=message]", TYPED_MESSAGE)
    page.get_by_role("button", name="Send").click()
    page.locator("#thanks").wait_for()
    page.get_by_role("link", name="Log in").click()
    page.wait_for_url(f"{site}/login")
    page.fill("input[name=user]", user)
    page.locator("#login").click()
    page.locator("#who").wait_for()
    documents.append(page.evaluate("performance.timeOrigin"))
    # Client-side: one document until the login form's POST loads the next.
    assert documents[0] != documents[1]
    wait_for_tracker(page)
    page.evaluate("tracker.flush()")

    expected = ["/", "/pricing", "/about", "/contact", "/login", "/"]

    def all_views() -> list[str] | None:
        views = page_views(movements_of(tracker_url, user))
        return views if len(views) >= len(expected) else None

    views = wait_for(all_views, timeout_s=60, message="the page views under the user")
    assert views == expected
    assert page_views(movements_of(tracker_url, anonymous)) == []
    stored = str(movements_of(tracker_url, user))
    for typed in (TYPED_EMAIL, TYPED_MESSAGE):
        assert typed not in stored
        assert not [body for body in bodies if typed in body]
    fields = {
        m["data"]["element"]
        for m in movements_of(tracker_url, user)
        if m["event"] == "form_interaction" and m["data"].get("path") == "/contact"
    }
    assert {"email", "message"} <= fields
    context.close()
