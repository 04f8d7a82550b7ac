"""Sessions as the propensity model sees them: features of a session's beginning, and whether
the session went on to reach a goal.

A session is read up to its `PREFIX_EVENTS`-th event, or up to its first event matching the
goal if that comes sooner; what is known then is the features, and the label is whether the
goal was reached at all. A live session is read the same way, up to now: what the model was
trained on is what it is asked about. A session whose very first event reaches the goal
leaves nothing to predict from, and is not a sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from tracker.conversions.definitions import Match
from tracker.query.events import Event, UserHistory

PREFIX_EVENTS = 5
Features = dict[str, float | str]


@dataclass(slots=True)
class Sample:
    """One session: its features, whether it reached the goal, and where it came from."""

    user_id: str
    session_id: str
    start_ms: int
    last_ms: int
    features: Features
    converted: bool


def features_of(events: Sequence[Event], returning: bool) -> Features:
    """What is known of a session from its first events: pages so far, time in session,
    events by kind, entry and last page, channel, device, and whether the visitor came before."""
    visit = events[0].visit
    pages = [e.path for e in events if e.kind == "page_view" and e.path]
    features: Features = {
        "pages": float(len(pages)),
        "distinctPages": float(len(set(pages))),
        "seconds": (events[-1].ts - events[0].ts) / 1000,
        "returning": 1.0 if returning else 0.0,
        "channel": visit.channel,
        "device": visit.device or "unknown",
        "entry": pages[0] if pages else "",
        "last": pages[-1] if pages else "",
    }
    for event in events:
        key = f"events.{event.kind}"
        features[key] = float(features.get(key, 0.0)) + 1.0
    return features


def sessions(history: UserHistory) -> Iterator[list[Event]]:
    """A user's visits' events in order, visits by their start."""
    by_visit: dict[str, list[Event]] = {}
    for event in history.ordered():
        if event.visit.session_id:  # an exposure belongs to no visit
            by_visit.setdefault(event.visit.session_id, []).append(event)
    yield from sorted(by_visit.values(), key=lambda events: events[0].ts)


def samples(histories: Iterable[UserHistory], goal: Match) -> Iterator[Sample]:
    """Every human session that is a sample for `goal`."""
    for history in histories:
        if history.bot:
            continue
        for i, events in enumerate(sessions(history)):
            hit = next((n for n, e in enumerate(events) if goal.matches(e)), None)
            cut = PREFIX_EVENTS if hit is None else min(hit, PREFIX_EVENTS)
            if cut == 0:
                continue
            yield Sample(
                history.user_id,
                events[0].visit.session_id,
                events[0].ts,
                events[-1].ts,
                features_of(events[:cut], returning=i > 0),
                hit is not None,
            )
