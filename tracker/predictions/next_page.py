"""The next page given the last one or two: a sparse Markov model with back-off.

Counts of transitions are kept per context: the last two pages of a visit, the last page, and
the empty context (how often each page is viewed next at all). A prediction reads the longest
context with enough support (`MIN_SUPPORT` transitions) and backs off to a shorter one. Each
context keeps its `top_n` most frequent successors; the rest are counted in `other`, so the
probabilities stay honest (they sum to at most 1) while memory stays bounded. The number of
contexts is bounded too: past `max_contexts`, the least supported ones are dropped.

Counts merge by addition, so a host's partial over its own users merges exactly with the
others' (the top-N pruning makes a merged count a lower bound, never an invention).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from tracker.query.events import UserHistory
from tracker.schema import Observed

Context = tuple[str, ...]
TOP = 5
MIN_SUPPORT = 3
TOP_N = 20
MAX_CONTEXTS = 50_000


@dataclass(slots=True)
class Successors:
    """What followed one context: the top successors' counts, and the rest's total."""

    counts: dict[str, int] = field(default_factory=dict)
    other: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.other

    def prune(self, top_n: int) -> None:
        if len(self.counts) <= top_n:
            return
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.counts = dict(ranked[:top_n])
        self.other += sum(count for _, count in ranked[top_n:])


@dataclass
class NextPageModel:
    """Transition counts by context (mergeable), and the predictions read from them."""

    top_n: int = TOP_N
    max_contexts: int = MAX_CONTEXTS
    contexts: dict[Context, Successors] = field(default_factory=dict)
    transitions: int = 0
    through_ms: int = 0  # the latest page view counted

    def observe(self, before: Sequence[str], page: str, ts: int) -> None:
        """`page` was viewed after the pages `before` (most recent last) in one visit."""
        self.transitions += 1
        self.through_ms = max(self.through_ms, ts)
        for length in range(min(len(before), 2) + 1):
            context = tuple(before[len(before) - length :])
            successors = self.contexts.get(context)
            if successors is None:
                successors = self.contexts[context] = Successors()
            successors.counts[page] = successors.counts.get(page, 0) + 1
            # Pruned at twice the bound, so that the sort runs once per top_n new pages.
            if len(successors.counts) > 2 * self.top_n:
                successors.prune(self.top_n)
        if len(self.contexts) > 2 * self.max_contexts:
            self._bound_contexts()

    def observe_visits(self, histories: Iterable[UserHistory]) -> None:
        """Every transition in these users' visits."""
        self.observe_pages(visit_pages(histories))

    def observe_pages(
        self, visits: Iterable[Sequence[tuple[int, str]]], before_ms: int | None = None
    ) -> None:
        """Every transition in these visits' page views (those before `before_ms`)."""
        for pages in visits:
            for i, (ts, path) in enumerate(pages):
                if before_ms is not None and ts >= before_ms:
                    break
                if i:
                    self.observe([p for _, p in pages[max(0, i - 2) : i]], path, ts)

    def merge(self, other: NextPageModel) -> None:
        for context, theirs in other.contexts.items():
            mine = self.contexts.setdefault(context, Successors())
            for page, count in theirs.counts.items():
                mine.counts[page] = mine.counts.get(page, 0) + count
            mine.other += theirs.other
            mine.prune(self.top_n)
        self.transitions += other.transitions
        self.through_ms = max(self.through_ms, other.through_ms)
        if len(self.contexts) > self.max_contexts:
            self._bound_contexts()

    def _bound_contexts(self) -> None:
        ranked = sorted(self.contexts.items(), key=lambda kv: (len(kv[0]) > 0, -kv[1].total))
        self.contexts = dict(ranked[: self.max_contexts])

    def predict(self, path: str, previous: str | None = None, top: int = TOP) -> list[Prediction]:
        """The likeliest next pages after `path` (viewed after `previous`, when known)."""
        candidates = [(previous, path), (path,)] if previous else [(path,)]
        for context in candidates:
            successors = self.contexts.get(context)
            if successors is not None and successors.total >= MIN_SUPPORT:
                return _ranked(successors, top)
        return self.most_frequent(top)

    def most_frequent(self, top: int = TOP) -> list[Prediction]:
        """The pages most often viewed next, whatever came before: the baseline."""
        successors = self.contexts.get(())
        return [] if successors is None else _ranked(successors, top)

    def summary(self) -> dict[str, int]:
        by_length = [0, 0, 0]
        for context in self.contexts:
            by_length[len(context)] += 1
        return {
            "contexts": len(self.contexts),
            "pages": by_length[1],
            "pairs": by_length[2],
            "transitions": self.transitions,
            "trainedThroughMs": self.through_ms,
        }


@dataclass(frozen=True, slots=True)
class Prediction:
    path: str
    probability: float


def _ranked(successors: Successors, top: int) -> list[Prediction]:
    total = successors.total
    ranked = sorted(successors.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [Prediction(page, count / total) for page, count in ranked]


def visit_pages(histories: Iterable[UserHistory]) -> Iterator[list[tuple[int, str]]]:
    """Each human visit's page views in order, as (timestamp, path), a reload of the same
    page counted once."""
    for history in histories:
        if history.bot:
            continue
        by_visit: dict[str, list[tuple[int, str]]] = {}
        for event in history.ordered():
            if event.kind != "page_view" or event.path is None:
                continue
            pages = by_visit.setdefault(event.visit.session_id, [])
            if not pages or pages[-1][1] != event.path:
                pages.append((event.ts, event.path))
        yield from by_visit.values()


# Sessions whose last pages are remembered for the online update: past this, the ones seen
# least recently are forgotten (a session's next page then starts a new context).
MAX_OPEN_SESSIONS = 100_000


class OnlineNextPage:
    """A host's model, updated as page views are stored: per page view, the session's last
    two pages are looked up and a few counts incremented."""

    def __init__(self) -> None:
        self.model = NextPageModel()
        self._last: dict[tuple[str, str], tuple[str, ...]] = {}

    def page_view(self, user_id: str, session_id: str, path: str, ts: int) -> None:
        key = (user_id, session_id)
        before = self._last.pop(key, ())
        if before and before[-1] == path:
            self._last[key] = before
            return
        if before:
            self.model.observe(before, path, ts)
        self._last[key] = (*before[-1:], path)
        if len(self._last) > MAX_OPEN_SESSIONS:
            del self._last[next(iter(self._last))]

    def stored(self, user_id: str, session_id: str, movements: Sequence[Observed]) -> None:
        """A session's movements as stored: its page views, in order."""
        for movement in movements:
            if movement.event == "page_view" and movement.data.path:
                self.page_view(user_id, session_id, movement.data.path, movement.timestamp)

    def forget(self, user_id: str) -> None:
        """An erased user's open sessions' last pages (the counts hold no user)."""
        for key in [k for k in self._last if k[0] == user_id]:
            del self._last[key]

    def rebuild(self, histories: Iterable[UserHistory]) -> None:
        """Start again from these histories (a host's index when it starts)."""
        self.model = NextPageModel()
        self._last.clear()
        self.model.observe_visits(histories)
