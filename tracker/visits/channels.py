"""The channel of a visit: direct, search, social, email, paid or referral.

The rules, in order (docs/analytics.md):

1. paid: `utm_medium` names paid traffic (`cpc`, `ppc`, `paid`, `paidsearch`, `paid_social`,
   `display`, `banner`, `cpm`, `cpv`, `affiliate`);
2. email: `utm_medium` or `utm_source` is `email` or `newsletter`, or the referrer is a webmail;
3. search: the referrer is a search engine, or `utm_medium` is `organic`;
4. social: the referrer is a social network, or `utm_medium` is `social`;
5. referral: any other referrer, or any other campaign;
6. direct: neither a referrer nor a campaign.
"""

from __future__ import annotations

from tracker.query.events import Campaign

CHANNELS = ("direct", "search", "social", "email", "paid", "referral")

PAID_MEDIUMS = frozenset(
    {"cpc", "ppc", "paid", "paidsearch", "paid_search", "paid_social", "paidsocial", "display",
     "banner", "cpm", "cpv", "affiliate"}
)  # fmt: skip
EMAIL_TAGS = frozenset({"email", "e-mail", "newsletter", "mail"})
SEARCH_ENGINES = (
    "google.", "bing.com", "duckduckgo.com", "yahoo.", "yandex.", "baidu.com", "ecosia.org",
    "qwant.com", "search.brave.com", "startpage.com", "kagi.com", "naver.com", "seznam.cz",
    "ask.com", "aol.com",
)  # fmt: skip
SOCIAL_NETWORKS = (
    "facebook.com", "fb.com", "instagram.com", "t.co", "twitter.com", "x.com", "linkedin.com",
    "lnkd.in", "reddit.com", "news.ycombinator.com", "youtube.com", "tiktok.com",
    "pinterest.com", "mastodon.social", "bsky.app", "threads.net", "vk.com", "weibo.com",
    "quora.com", "tumblr.com", "discord.com", "telegram.org", "t.me", "whatsapp.com",
)  # fmt: skip
WEBMAILS = (
    "mail.google.com", "outlook.live.com", "outlook.office.com", "mail.yahoo.com",
    "mail.proton.me", "app.fastmail.com",
)  # fmt: skip


def _listed(host: str, names: tuple[str, ...]) -> bool:
    """Whether `host` is one of `names` or under one: `google.` matches any Google domain
    (`google.co.uk`, `www.google.de`), `t.co` matches `t.co` but not `reddit.co`."""
    for name in names:
        if name.endswith("."):
            if host.startswith(name) or f".{name}" in host:
                return True
        elif host == name or host.endswith(f".{name}"):
            return True
    return False


def channel(referrer: str | None, campaign: Campaign | None) -> str:
    """The channel of a visit from its referrer host and campaign (see the module's rules)."""
    medium = (campaign.medium or "").lower() if campaign else ""
    source = (campaign.source or "").lower() if campaign else ""
    if medium in PAID_MEDIUMS:
        return "paid"
    if medium in EMAIL_TAGS or source in EMAIL_TAGS or (referrer and _listed(referrer, WEBMAILS)):
        return "email"
    if medium == "organic" or (referrer and _listed(referrer, SEARCH_ENGINES)):
        return "search"
    if medium == "social" or (referrer and _listed(referrer, SOCIAL_NETWORKS)):
        return "social"
    if referrer or campaign:
        return "referral"
    return "direct"
