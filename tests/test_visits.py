"""What is derived of a visit: referrer host, channel, campaign, technology, country, bots."""

from __future__ import annotations

import pytest

from tracker.query.events import Campaign
from tracker.visits.bots import is_bot
from tracker.visits.channels import channel
from tracker.visits.country import country_of
from tracker.visits.derive import derive_visit, enter, visit_of
from tracker.visits.referrer import external_referrer, referrer_host
from tracker.visits.technology import technology

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize(
    ("sent", "host"),
    [
        ("https://news.ycombinator.com/item?id=1&secret=x", "news.ycombinator.com"),
        ("news.ycombinator.com", "news.ycombinator.com"),
        ("https://www.Google.com/search?q=private", "google.com"),
        ("http://example.org:8080/path#frag", "example.org"),
        ("", None),
        ("about:blank", None),
    ],
)
def test_a_referrer_is_reduced_to_its_host_without_path_or_query(sent: str, host: str) -> None:
    assert referrer_host(sent) == host


def test_a_referrer_from_the_site_itself_is_dropped() -> None:
    assert external_referrer("http://127.0.0.1:8000/pricing", "127.0.0.1:8000") is None
    assert external_referrer("https://shop.example/a", "https://shop.example") is None
    assert external_referrer("https://blog.example/a", "https://shop.example") == "blog.example"


@pytest.mark.parametrize(
    ("referrer", "campaign", "expected"),
    [
        (None, None, "direct"),
        ("google.com", None, "search"),
        ("google.co.uk", None, "search"),
        ("duckduckgo.com", None, "search"),
        ("news.ycombinator.com", None, "social"),
        ("t.co", None, "social"),
        ("reddit.co", None, "referral"),
        ("mail.google.com", None, "email"),
        ("blog.example", None, "referral"),
        (None, Campaign(source="newsletter"), "email"),
        (None, Campaign(source="spring", medium="email"), "email"),
        ("google.com", Campaign(source="google", medium="cpc"), "paid"),
        (None, Campaign(source="fb", medium="social"), "social"),
        (None, Campaign(source="partner"), "referral"),
    ],
)
def test_channels_follow_the_written_rules(
    referrer: str | None, campaign: Campaign | None, expected: str
) -> None:
    assert channel(referrer, campaign) == expected


@pytest.mark.parametrize(
    ("agent", "browser", "os", "device"),
    [
        (FIREFOX_LINUX, "Firefox", "Linux", "desktop"),
        (SAFARI_IPHONE, "Mobile Safari", "iOS", "mobile"),
        (SAFARI_IPAD, "Mobile Safari", "iOS", "tablet"),
        ("something nobody knows", None, None, "other"),
    ],
)
def test_browser_os_and_device_come_from_the_user_agent(
    agent: str, browser: str | None, os: str | None, device: str
) -> None:
    tech = technology(agent)
    assert (tech.browser, tech.os, tech.device) == (browser, os, device)


def test_the_country_comes_from_a_public_address_and_none_from_a_private_one() -> None:
    assert country_of("81.2.69.160") == "GB"
    assert country_of("8.8.8.8") == "US"
    assert country_of("127.0.0.1") is None
    assert country_of("10.1.2.3") is None
    assert country_of("not an address") is None


def test_crawlers_headless_browsers_and_automated_browsers_are_bots() -> None:
    assert is_bot(GOOGLEBOT)
    assert is_bot(HEADLESS)
    assert is_bot(FIREFOX_LINUX, automation=True)
    assert not is_bot(FIREFOX_LINUX)
    assert not is_bot(None)


def test_a_derived_visit_keeps_the_country_and_never_the_address() -> None:
    derived = derive_visit(
        user_agent=SAFARI_IPHONE,
        referrer="https://www.google.com/search?q=x",
        utm={"utm_source": "spring", "utm_medium": "cpc"},
        address="81.2.69.160",
    )
    assert derived == {
        "channel": "paid",
        "referrer": "google.com",
        "utm": {"utm_source": "spring", "utm_medium": "cpc"},
        "browser": "Mobile Safari",
        "os": "iOS",
        "device": "mobile",
        "country": "GB",
    }
    assert "81.2.69.160" not in repr(derived)


def test_a_bots_visit_is_flagged_and_its_device_is_bot() -> None:
    derived = derive_visit(user_agent=HEADLESS)
    assert derived["bot"] is True and derived["device"] == "bot"


def test_a_session_stored_before_derivations_reads_as_a_direct_visit_of_unknown_origin() -> None:
    visit = visit_of("s1", 5, None)
    assert (visit.channel, visit.referrer, visit.browser) == ("direct", None, None)
    assert not visit.bot


def test_a_page_view_entering_from_elsewhere_gives_a_sourceless_visit_its_source() -> None:
    visit = visit_of("s1", 5, {"channel": "direct"})
    enter(visit, "news.ycombinator.com", None)
    assert (visit.referrer, visit.channel) == ("news.ycombinator.com", "social")
    enter(visit, "google.com", None)  # the first source wins
    assert visit.referrer == "news.ycombinator.com"
