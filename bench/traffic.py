"""Generated demo traffic with structure planted in it, as users' histories.

- Page sequences: each page has a preferred next page (taken `PREFERRED` of the time), and two
  pages back matter too: a visitor who came to a product from `/pricing` goes on to `/app/cart`
  far more often than one who came from the blog.
- A goal (`signup`: a page view of `/signup`) is reached more by sessions with certain
  features: visitors from search, returning visitors, and those who saw `/pricing` early.

The same seed gives the same traffic; times run over `DAYS` days from `start_ms`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tracker.query.events import Event, UserHistory, Visit

DAYS = 28
DAY_MS = 86_400_000
PREFERRED = 0.6
PAGES = [
    "/",
    "/pricing",
    "/docs",
    "/blog/launch",
    "/products/a",
    "/products/b",
    "/products/c",
    "/app/cart",
    "/app/checkout",
]
NEXT = {
    "/": "/products/a",
    "/pricing": "/products/b",
    "/docs": "/docs",
    "/blog/launch": "/products/c",
    "/products/a": "/products/b",
    "/products/b": "/products/c",
    "/products/c": "/",
    "/app/cart": "/app/checkout",
    "/app/checkout": "/",
}
GOAL_PATH = "/signup"
CHANNELS = ["direct", "search", "social", "referral"]
DEVICES = ["desktop", "mobile"]


def _next(rng: random.Random, before: str | None, page: str) -> str:
    if page.startswith("/products/") and before == "/pricing" and rng.random() < 0.8:
        return "/app/cart"
    if rng.random() < PREFERRED:
        return NEXT[page]
    return rng.choice(PAGES)


def _converts(rng: random.Random, channel: str, returning: bool, pages: list[str]) -> bool:
    score = 0.04
    score += 0.25 if channel == "search" else 0.0
    score += 0.2 if returning else 0.0
    score += 0.3 if "/pricing" in pages[:4] else 0.0
    return rng.random() < score


def _visit(
    rng: random.Random, user: UserHistory, session_id: str, start: int, returning: bool
) -> Iterator[Event]:
    channel = rng.choice(CHANNELS)
    visit = Visit(session_id, start, channel=channel, device=rng.choice(DEVICES))
    user.visits[session_id] = visit
    pages = [rng.choice(["/", "/", "/pricing", "/blog/launch", "/docs"])]
    for _ in range(rng.randint(2, 9)):
        pages.append(_next(rng, pages[-2] if len(pages) > 1 else None, pages[-1]))
    if _converts(rng, channel, returning, pages):
        pages.append(GOAL_PATH)
    ts = start
    for path in pages:
        yield Event(ts, 0, "page_view", visit, path=path)
        if rng.random() < 0.5:
            yield Event(ts + 1_000, 0, "click", visit, path=path, element="a.next")
        ts += rng.randint(5_000, 60_000)


def histories(users: int, seed: int = 1, start_ms: int = 1_700_000_000_000) -> list[UserHistory]:
    """`users` visitors' histories: one to three visits each, over `DAYS` days."""
    rng = random.Random(seed)
    out = []
    for n in range(users):
        user = UserHistory(f"user-{n}")
        first = start_ms + rng.randrange(DAYS * DAY_MS)
        for v in range(rng.choice([1, 1, 2, 3])):
            start = first + v * rng.randrange(DAY_MS // 2, 4 * DAY_MS)
            for event in _visit(rng, user, f"{user.user_id}-s{v}", start, returning=v > 0):
                event.seq = len(user.events)
                user.add(event)
        out.append(user)
    return out
