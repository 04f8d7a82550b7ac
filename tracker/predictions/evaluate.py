"""An honest evaluation of both models: a time-split hold-out. Everything is trained on what
happened before a time T and tested on what happened from T on, as the models are used (they
predict what comes after what they were trained on).

- Next page: each transition from T on is a test case; top-1 and top-3 accuracy of the model
  (given the two pages before) against the baseline that always answers the pages most often
  viewed next, counted over the same training transitions.
- Propensity: sessions that ended before T train, sessions that started from T on test; the
  area under the ROC curve (the base rate's is 0.5), the Brier score against that of the
  training base rate, and a reliability table (predicted against observed, by tenths).

T is the time by which `TRAIN_SHARE` of the page views had happened, unless given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.conversions.definitions import Match
from tracker.predictions.next_page import NextPageModel, visit_pages
from tracker.predictions.propensity import train
from tracker.predictions.sessions import Sample, samples
from tracker.query.events import UserHistory

TRAIN_SHARE = 0.7
BINS = 10
Pages = list[tuple[int, str]]


@dataclass
class Observations:
    """What the evaluation reads of the histories: each visit's page views, and each goal's
    session samples. A host's partial; partials merge by joining."""

    visits: list[Pages] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)


class ObservationsQuery:
    def __init__(self, goals: Mapping[str, Match]) -> None:
        self.goals = dict(goals)

    def run(self, histories: Iterable[UserHistory]) -> Observations:
        users = list(histories)
        return Observations(
            list(visit_pages(users)),
            {name: list(samples(users, goal)) for name, goal in self.goals.items()},
        )

    def merge(self, partials: Sequence[Observations]) -> Observations:
        out = Observations(samples={name: [] for name in self.goals})
        for part in partials:
            out.visits += part.visits
            for name, found in part.samples.items():
                out.samples.setdefault(name, []).extend(found)
        return out


def split_time(visits: Sequence[Pages], share: float = TRAIN_SHARE) -> int:
    """The time by which `share` of the page views had happened."""
    times = sorted(ts for pages in visits for ts, _ in pages)
    return times[min(len(times) - 1, int(len(times) * share))] if times else 0


def next_page(visits: Sequence[Pages], split_ms: int) -> dict[str, Any]:
    """Top-1 and top-3 accuracy of the model and of the most-frequent-next-page baseline."""
    model = NextPageModel()
    model.observe_pages(visits, before_ms=split_ms)
    baseline = [p.path for p in model.most_frequent(top=3)]
    cases, hits_model, hits_base = 0, [0, 0], [0, 0]
    for pages in visits:
        for i in range(1, len(pages)):
            ts, actual = pages[i]
            if ts < split_ms:
                continue
            previous = pages[i - 2][1] if i >= 2 else None
            guessed = [p.path for p in model.predict(pages[i - 1][1], previous, top=3)]
            cases += 1
            for hits, guesses in ((hits_model, guessed), (hits_base, baseline)):
                hits[0] += actual in guesses[:1]
                hits[1] += actual in guesses[:3]
    return {
        "train": model.transitions,
        "test": cases,
        "top1": _share(hits_model[0], cases),
        "top3": _share(hits_model[1], cases),
        "baselineTop1": _share(hits_base[0], cases),
        "baselineTop3": _share(hits_base[1], cases),
    }


def propensity(
    goal: str, every: Sequence[Sample], split_ms: int, timeout_ms: int
) -> dict[str, Any]:
    """AUC, Brier score and reliability of the model against the training base rate."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    training = [s for s in every if s.last_ms + timeout_ms <= split_ms]
    test = [s for s in every if s.start_ms >= split_ms]
    model = train(goal, training, split_ms)
    predicted = model.probabilities([s.features for s in test])
    outcomes = [int(s.converted) for s in test]
    return {
        "goal": goal,
        "train": len(training),
        "test": len(test),
        "baseRate": model.base_rate,
        "testRate": _share(sum(outcomes), len(outcomes)),
        "auc": float(roc_auc_score(outcomes, predicted)) if len(set(outcomes)) == 2 else None,
        "baselineAuc": 0.5,
        "brier": float(brier_score_loss(outcomes, predicted)) if test else None,
        "baselineBrier": (
            float(brier_score_loss(outcomes, [model.base_rate] * len(test))) if test else None
        ),
        "reliability": reliability(predicted, outcomes),
    }


def reliability(predicted: Sequence[float], outcomes: Sequence[int]) -> list[dict[str, Any]]:
    """By tenths of predicted probability: sessions, mean predicted, observed rate."""
    bins: list[list[tuple[float, int]]] = [[] for _ in range(BINS)]
    for p, y in zip(predicted, outcomes, strict=True):
        bins[min(BINS - 1, int(p * BINS))].append((p, y))
    return [
        {
            "from": i / BINS,
            "to": (i + 1) / BINS,
            "sessions": len(cell),
            "predicted": sum(p for p, _ in cell) / len(cell),
            "observed": sum(y for _, y in cell) / len(cell),
        }
        for i, cell in enumerate(bins)
        if cell
    ]


def evaluate(
    observations: Observations, timeout_ms: int, split_ms: int | None = None
) -> dict[str, Any]:
    """Both evaluations (every goal's propensity) at `split_ms`, or at `split_time`."""
    split = split_time(observations.visits) if split_ms is None else split_ms
    return {
        "splitMs": split,
        "nextPage": next_page(observations.visits, split),
        "propensity": [
            propensity(name, found, split, timeout_ms)
            for name, found in sorted(observations.samples.items())
        ],
    }


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def report_text(result: dict[str, Any]) -> str:
    """The evaluation for a terminal: each model beside its baseline."""
    pages = result["nextPage"]
    lines = [
        f"time split at {result['splitMs']} ms: trained before, tested from",
        f"next page: {pages['train']} transitions trained, {pages['test']} tested",
        f"  top-1 {pages['top1']:.3f}  (most frequent next page: {pages['baselineTop1']:.3f})",
        f"  top-3 {pages['top3']:.3f}  (most frequent next pages: {pages['baselineTop3']:.3f})",
    ]
    if not result["propensity"]:
        lines.append("propensity: no goal is defined")
    for goal in result["propensity"]:
        auc = "n/a (one class only)" if goal["auc"] is None else f"{goal['auc']:.3f}"
        brier = "n/a" if goal["brier"] is None else f"{goal['brier']:.4f}"
        base = "n/a" if goal["baselineBrier"] is None else f"{goal['baselineBrier']:.4f}"
        lines += [
            f"propensity of {goal['goal']}: {goal['train']} sessions trained, "
            f"{goal['test']} tested (base rate {goal['baseRate']:.3f}, "
            f"test rate {goal['testRate']:.3f})",
            f"  AUC {auc}  (base rate: 0.5)",
            f"  Brier {brier}  (base rate: {base})",
        ]
        for row in goal["reliability"]:
            lines.append(
                f"    predicted {row['from']:.1f}-{row['to']:.1f}: {row['sessions']} sessions, "
                f"mean {row['predicted']:.3f}, observed {row['observed']:.3f}"
            )
    return "\n".join(lines)
