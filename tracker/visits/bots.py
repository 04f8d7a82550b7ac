"""Whether a visit is a bot: a known crawler or automation by its user agent (crawlerdetect,
plus headless browsers), or automation the browser itself showed (`navigator.webdriver`, a
headless signal: tracker.js sends `automation`)."""

from __future__ import annotations

from functools import lru_cache

from crawlerdetect import CrawlerDetect

_detector = CrawlerDetect()
_AUTOMATION = ("HeadlessChrome", "PhantomJS", "Electron/", "Puppeteer", "Playwright")


@lru_cache(maxsize=4096)
def crawler(user_agent: str) -> bool:
    return bool(_detector.isCrawler(user_agent)) or any(mark in user_agent for mark in _AUTOMATION)


def is_bot(user_agent: str | None, automation: bool = False) -> bool:
    """A visit is a bot when its browser says it is automated or its user agent is a crawler's
    or a headless browser's. A visit without a user agent is not taken for one."""
    return automation or (bool(user_agent) and crawler(user_agent or ""))
