"""Browser, OS and device type of a user agent, by ua-parser.

A parse costs microseconds to tens of microseconds; sessions of one browser share a user
agent, so parses are cached (bounded), and a session costs at most one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from ua_parser import parse

DEVICES = ("desktop", "mobile", "tablet", "bot", "other")
MAX_USER_AGENT_CHARS = 512
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "HarmonyOS"})
_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "ChromeOS", "Fedora", "FreeBSD",
     "Debian", "OpenBSD", "NetBSD", "Solaris", "Mint", "Arch Linux"}
)  # fmt: skip


class Technology(NamedTuple):
    browser: str | None
    os: str | None
    device: str


@lru_cache(maxsize=4096)
def technology(user_agent: str) -> Technology:
    """The browser and OS families (None where unknown) and the device type of `user_agent`."""
    result = parse(user_agent[:MAX_USER_AGENT_CHARS])
    browser = result.user_agent.family if result.user_agent else None
    os = result.os.family if result.os else None
    family = result.device.family if result.device else ""
    return Technology(
        None if browser == "Other" else browser,
        None if os == "Other" else os,
        _device(user_agent, os, family),
    )


def _device(user_agent: str, os: str | None, family: str) -> str:
    if family == "Spider":
        return "bot"
    android_tablet = os == "Android" and "Mobile" not in user_agent
    if "iPad" in family or "Tablet" in user_agent or android_tablet:
        return "tablet"
    if os in _MOBILE_OS or "Mobile" in user_agent:
        return "mobile"
    if os in _DESKTOP_OS:
        return "desktop"
    return "other"
