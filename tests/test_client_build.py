"""The browser client as built and served: the committed files are what client/src builds,
each within its size budget, and /tracker.js and its files are served like static assets
(compressed, with an ETag, the versioned names immutable) over the real app on Ray Serve."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import brotli
import httpx
import pytest

from bench.client import BUDGETS, sizes
from bench.docs import CLIENT_FILES, CLIENT_SIZE
from tracker.client_assets import IMMUTABLE, SHORT_LIVED, ClientAssets, accepted_encodings

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "tracker" / "static"


def test_the_committed_files_are_what_the_sources_build() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the build cannot be checked here")
    if not (ROOT / "client" / "node_modules" / "esbuild").is_dir():
        pytest.skip("client/node_modules is missing: `make client-check` installs it first")
    checked = subprocess.run(
        ["node", "build.mjs", "--check"],
        cwd=ROOT / "client",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr


def test_each_built_file_is_within_its_gzipped_budget() -> None:
    found = sizes()
    assert set(found) == set(BUDGETS), "a file without a budget, or a budget without a file"
    over = {kind: s["gzip"] for kind, s in found.items() if s["gzip"] > BUDGETS[kind]}
    assert over == {}, f"over budget (gzipped bytes): {over}; budgets {BUDGETS}"


def test_the_sizes_the_docs_quote_are_those_of_the_committed_build() -> None:
    """bench/results/client.json is measured again (`python -m bench --only client`) after
    each build, so docs/tracker-js.md never quotes an older build's sizes."""
    rows = json.loads((ROOT / "bench" / "results" / "client.json").read_text())["rows"]
    measured = {r["name"]: r["details"] for r in rows if r["name"].endswith(", gzipped")}
    built = sizes()
    quoted = {kind: measured[CLIENT_SIZE.format(label)] for kind, label in CLIENT_FILES.items()}
    for kind, size in built.items():
        key = "default" if kind == "tracker.js" else kind
        assert {k: quoted[key][k] for k in size} == size, kind


def test_the_default_script_holds_no_capture_a_site_must_ask_for() -> None:
    default = (STATIC / "tracker.js").read_text()
    for marker in ("mouseover", "WebSocket", "/api/experiments/"):
        assert marker not in default, marker


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip, deflate, br, zstd", {"gzip", "deflate", "br", "zstd"}),
        ("br;q=0, gzip;q=0.5", {"gzip"}),
        ("GZIP ; q=1", {"gzip"}),
        ("gzip;q=nonsense", set()),
        ("", set()),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str, expected: set[str]) -> None:
    assert accepted_encodings(header) == expected


def test_tracker_js_is_also_served_under_its_content_hash_and_its_files_by_theirs() -> None:
    assets = ClientAssets(STATIC)
    default = assets.get("tracker.js")
    versioned = assets.get(assets.versioned_name)
    assert versioned.identity == default.identity == (STATIC / "tracker.js").read_bytes()
    assert (default.cache_control, versioned.cache_control) == (SHORT_LIVED, IMMUTABLE)
    files = [name for name in assets.assets if name not in ("tracker.js", "tracker.mjs")]
    assert len(files) == 4  # tracker.<hash>.js and the three files loaded on demand
    for name in files:
        asset = assets.get(name)
        assert asset.cache_control == IMMUTABLE
        assert name in (STATIC / "tracker.js").read_text() or name == assets.versioned_name
        assert gzip.decompress(asset.gzip) == brotli.decompress(asset.brotli) == asset.identity


@pytest.fixture
def client(serve_tracker: str) -> httpx.Client:
    return httpx.Client(base_url=serve_tracker, timeout=30)


def test_tracker_js_is_served_in_brotli_or_gzip_as_accepted_and_short_lived(
    client: httpx.Client,
) -> None:
    plain = (STATIC / "tracker.js").read_bytes()
    for accepted, encoding in (("gzip, br", "br"), ("gzip", "gzip"), ("identity", None)):
        response = client.get("/tracker.js", headers={"Accept-Encoding": accepted})
        assert response.status_code == 200
        assert response.headers.get("content-encoding") == encoding
        assert response.content == plain  # as decoded
        assert response.headers["cache-control"] == "public, max-age=300"
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["content-type"].startswith("application/javascript")
    compressed = client.get("/tracker.js", headers={"Accept-Encoding": "br"})
    assert int(compressed.headers["content-length"]) < len(plain) / 2


def test_a_copy_held_is_answered_304_and_the_versioned_url_is_immutable(
    client: httpx.Client,
) -> None:
    first = client.get("/tracker.js")
    etag = first.headers["etag"]
    again = client.get("/tracker.js", headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    assert client.get("/tracker.js", headers={"If-None-Match": '"other"'}).status_code == 200
    versioned = client.get(f"/{ClientAssets(STATIC).versioned_name}")
    assert versioned.status_code == 200
    assert versioned.content == first.content
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["etag"] == etag


def test_an_unknown_hash_is_a_404_naming_the_file(client: httpx.Client) -> None:
    response = client.get("/tracker.hover.0123456789.js")
    assert response.status_code == 404
    assert "tracker.hover.0123456789.js" in response.json()["error"]


def test_the_es_module_wrapper_is_served_as_javascript(client: httpx.Client) -> None:
    response = client.get("/tracker.mjs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "export function load" in response.text
