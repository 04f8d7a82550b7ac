"""A visit's derived values, made once per session at ingest, in the form stored with the
session record (a small dict; absent keys are unknown), and read back as a `Visit`."""

from __future__ import annotations

from typing import Any

from tracker.query.events import Campaign, Visit
from tracker.visits.bots import is_bot
from tracker.visits.channels import channel
from tracker.visits.country import country_of
from tracker.visits.referrer import external_referrer
from tracker.visits.technology import technology

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def campaign_of(utm: dict[str, Any] | None) -> Campaign | None:
    """The campaign of `utm_*` parameters (None when none is set)."""
    if not utm:
        return None
    values = [utm.get(key) or None for key in UTM_KEYS]
    if not any(values):
        return None
    return Campaign(*values)


def derive_visit(
    *,
    user_agent: str | None = None,
    referrer: str | None = None,
    utm: dict[str, Any] | None = None,
    automation: bool = False,
    address: str | None = None,
    site_host: str | None = None,
) -> dict[str, Any]:
    """What is stored of a visit: the referrer's host (not the site's own), the campaign, the
    channel, the browser, OS and device type, the country of `address` (which is not kept)
    and whether it is a bot."""
    host = external_referrer(referrer, site_host)
    campaign = campaign_of(utm)
    derived: dict[str, Any] = {"channel": channel(host, campaign)}
    if host:
        derived["referrer"] = host
    if campaign:
        derived["utm"] = {k: v for k, v in zip(UTM_KEYS, _values(campaign), strict=True) if v}
    if user_agent:
        tech = technology(user_agent)
        derived["device"] = tech.device
        if tech.browser:
            derived["browser"] = tech.browser
        if tech.os:
            derived["os"] = tech.os
    country = country_of(address)
    if country:
        derived["country"] = country
    if is_bot(user_agent, automation):
        derived["bot"] = True
        derived["device"] = "bot"
    return derived


def _values(campaign: Campaign) -> tuple[str | None, ...]:
    return (campaign.source, campaign.medium, campaign.campaign, campaign.term, campaign.content)


def visit_of(session_id: str, start_ms: int, stored: dict[str, Any] | None) -> Visit:
    """The `Visit` of a session from its stored derived values (None: a session stored before
    they were, or one that has not been started by `create_session`: direct, unknown)."""
    if not stored:
        return Visit(session_id, start_ms)
    return Visit(
        session_id,
        start_ms,
        referrer=stored.get("referrer"),
        channel=stored.get("channel", "direct"),
        campaign=campaign_of(stored.get("utm")),
        browser=stored.get("browser"),
        os=stored.get("os"),
        device=stored.get("device"),
        country=stored.get("country"),
        bot=bool(stored.get("bot", False)),
    )


def enter(visit: Visit, referrer: str | None, utm: dict[str, Any] | None) -> None:
    """A page view of the visit that entered from elsewhere (`referrer`, already reduced to a
    host, or `utm`): the visit takes that source when it had none, as its first source wins."""
    if visit.referrer is not None or visit.campaign is not None:
        return
    campaign = campaign_of(utm)
    if referrer is None and campaign is None:
        return
    visit.referrer = referrer
    visit.campaign = campaign
    visit.channel = channel(referrer, campaign)
