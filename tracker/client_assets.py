"""The browser client's files (`tracker.js`, the files it loads on demand, `tracker.mjs`), read
and compressed once, and how one is chosen for a request.

The build (`client/build.mjs`) writes them into `tracker/static/`: the files a site loads on
demand carry a hash of their content in their names (`tracker.hover.<hash>.js`), so they never
change under a URL; `tracker.js` itself keeps its name, so that the snippet on a site stays the
same, and is also served under `tracker.<hash>.js`. Each file is kept as it is, gzipped and in
brotli, with an ETag of its content.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import brotli

from tracker.errors import UnknownAsset

# What the build writes: `tracker.js`, `tracker.mjs`, `tracker.<name>.<hash>.js`.
_BUILT = re.compile(r"^tracker(\.[a-z]+\.[0-9a-f]{10})?\.(js|mjs)$")
HASH_CHARS = 10
# The short-lived names: a site's snippet names these, and an upgrade reaches its visitors
# within this time.
SHORT_LIVED_S = 300
SHORT_LIVED = f"public, max-age={SHORT_LIVED_S}"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPE = "application/javascript"


@dataclass(frozen=True)
class Asset:
    """One file in each encoding it is served in, with its ETag and caching."""

    name: str
    identity: bytes
    gzip: bytes
    brotli: bytes
    etag: str
    cache_control: str

    def encoded(self, accept_encoding: str) -> tuple[bytes, str | None]:
        """The body for a client that sent `accept_encoding`, and its Content-Encoding."""
        accepted = accepted_encodings(accept_encoding)
        if "br" in accepted:
            return self.brotli, "br"
        if "gzip" in accepted:
            return self.gzip, "gzip"
        return self.identity, None

    def matches(self, if_none_match: str) -> bool:
        """Whether an `If-None-Match` names this file's content (weak or strong, or `*`)."""
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


def accepted_encodings(header: str) -> frozenset[str]:
    """The content codings an `Accept-Encoding` header accepts (those with q > 0)."""
    accepted = set()
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding and q > 0:
            accepted.add(coding.strip().lower())
    return frozenset(accepted)


def _asset(name: str, content: bytes, cache_control: str) -> Asset:
    # mtime=0: the same bytes on every replica and every start, so caches agree.
    gzipped = gzip.compress(content, compresslevel=9, mtime=0)
    compressed = brotli.compress(content, mode=brotli.MODE_TEXT)
    etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
    return Asset(name, content, gzipped, compressed, etag, cache_control)


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:HASH_CHARS]


class ClientAssets:
    """The client's built files in `directory`, by the URL name each is served under."""

    def __init__(self, directory: Path) -> None:
        self.assets: dict[str, Asset] = {}
        for path in sorted(directory.iterdir()):
            if not _BUILT.match(path.name):
                continue
            content = path.read_bytes()
            versioned = path.name != "tracker.js" and path.name != "tracker.mjs"
            self.assets[path.name] = _asset(
                path.name, content, IMMUTABLE if versioned else SHORT_LIVED
            )
            if path.name == "tracker.js":
                self.versioned_name = f"tracker.{content_hash(content)}.js"
                self.assets[self.versioned_name] = _asset(self.versioned_name, content, IMMUTABLE)

    def get(self, name: str) -> Asset:
        """The file served as `/<name>`, or `UnknownAsset` (404)."""
        asset = self.assets.get(name)
        if asset is None:
            raise UnknownAsset(name)
        return asset
