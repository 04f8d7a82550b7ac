"""Segment's unmodified Node SDK (`@segment/analytics-node`) against the app on Ray Serve.

`make node-sdk` (run by `make test`) installs it into tests/node; where Node is missing the
test is skipped, saying so."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tracker.config import Config

NODE = Path(__file__).parent / "node"
SDK = NODE / "node_modules" / "@segment" / "analytics-node"


def _sdk() -> None:
    if shutil.which("node") is None:
        pytest.skip("Node is not installed: Segment's Node SDK cannot be tested here")
    if not SDK.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: `make node-sdk` cannot install Segment's Node SDK")
        subprocess.run(
            ["npm", "install", "--prefix", str(NODE), "--no-audit", "--no-fund", "--silent"],
            check=True,
            timeout=300,
        )


def test_the_unmodified_segment_node_sdk_sends_and_links(
    serve_tracker: str, serve_config: Config
) -> None:
    _sdk()
    user, anonymous = f"node_{uuid.uuid4().hex}", f"anon-{uuid.uuid4().hex}"
    sent = subprocess.run(
        ["node", str(NODE / "send.js"), serve_tracker, serve_config.write_keys[0], user, anonymous],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    assert "flushed" in sent.stdout and "error" not in sent.stderr
    admin = {"Authorization": f"Bearer {serve_config.admin_token}"}
    export = httpx.get(f"{serve_tracker}/api/users/{user}/export", headers=admin, timeout=30)
    lines = [json.loads(line) for line in export.text.splitlines()]
    moved = {
        (m["event"], m["data"].get("path") or m["data"].get("name"))
        for m in lines
        if m["type"] == "movement"
    }
    assert moved == {("page_view", "/from-node"), ("custom", "Node Event")}
    custom = [m for m in lines if m.get("event") == "custom"]
    assert custom[0]["data"]["properties"] == {"plan.name": "pro"}
