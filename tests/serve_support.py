"""The tracker served by Ray Serve in the test session's Ray, as `tracker serve` serves it.

Serve runs once per Ray cluster and its HTTP switches are fixed when it starts, so there is one
deployment per test session; conftest.py registers this module as a plugin, so a test just
names the fixtures:

    def test_x(serve_tracker: str, serve_config: Config) -> None:
        httpx.get(f"{serve_tracker}/healthz")

`serve_config` has file storage in a temporary directory, a fresh namespace, no rate limits
(tests of them build apps of their own), a short header timeout (for the test of it) and known
secrets; override the fixture (session-scoped, in a conftest) to change it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from conftest import file_url, free_port

from tracker.config import Config

# Short, so that the test of the deadline is quick; long enough for any client that sends its
# headers at once, as every other test's does.
SERVE_HEADER_TIMEOUT_S = 3.0


@pytest.fixture(scope="session")
def serve_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The configuration the session's Serve deployment runs with."""
    return Config.from_env(
        {},
        storage=file_url(tmp_path_factory.mktemp("serve") / "data"),
        namespace=f"serve-{uuid.uuid4().hex[:12]}",
        rate_limit=0.0,
        admin_failures_per_min=0.0,
        header_timeout_s=SERVE_HEADER_TIMEOUT_S,
        http_host="127.0.0.1",
        http_port=free_port(),
        admin_token=secrets.token_urlsafe(32),
        secret=secrets.token_urlsafe(32),
        write_keys=(secrets.token_urlsafe(24),),
    )


@pytest.fixture(scope="session")
def serve_tracker(ray_session: None, serve_config: Config) -> Iterator[str]:
    """Deploy the Serve app with `serve_config`, wait for /healthz, yield its base URL; at the
    end shut Serve down and kill the tracker's actors."""
    from tracker import server
    from tracker.api import shutdown

    url = server.run(serve_config, block=False)
    try:
        yield url
    finally:
        server.stop()
        shutdown(serve_config)
