"""A referrer reduced to its host, and same-site referrers dropped.

A referrer arrives as a URL (`document.referrer`) or as a bare host; only the host is kept, so
no path or query string of another site is ever stored.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

MAX_REFERRER_CHARS = 2048
MAX_HOST_CHARS = 253
# A scheme and then anything but a port: `about:blank`, unlike `localhost:8000`.
_HOSTLESS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d+(?:/|$))")


def referrer_host(value: str | None) -> str | None:
    """The host of a referrer URL or host, lower case and without a leading `www.`; None when
    there is none (empty, or a URL without a host such as `about:blank`)."""
    if not value:
        return None
    text = value.strip()
    if "//" not in text:
        if _HOSTLESS.match(text):  # `about:blank`, `data:...`: a URL without a host
            return None
        text = f"//{text}"
    try:
        host = urlsplit(text).hostname
    except ValueError:  # a bracketed address that is not one
        return None
    if not host or len(host) > MAX_HOST_CHARS:
        return None
    host = host.rstrip(".")
    return host.removeprefix("www.") or None


def same_site(referrer: str | None, site_host: str | None) -> bool:
    """Whether a referrer host (as `referrer_host` gives it) is the site's own host."""
    return referrer is not None and referrer == _site(site_host)


@lru_cache(maxsize=64)
def _site(site_host: str | None) -> str | None:
    """A site's own host: few of them, asked on every session."""
    return referrer_host(site_host)


def external_referrer(value: str | None, site_host: str | None) -> str | None:
    """The referrer's host, or None when there is none or it is the site itself."""
    host = referrer_host(value)
    return None if same_site(host, site_host) else host
