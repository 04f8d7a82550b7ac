"""The answers of the conversions routes: definitions read from storage, queries run on every
host (`run`, the fan-out given by the caller) and their merged results put in the wire's shape
(`tracker.responses`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tracker import responses as r
from tracker.conversions.experiments import ExperimentPartial, ExperimentQuery
from tracker.conversions.funnels import FunnelPartial, FunnelQuery, median_ms
from tracker.conversions.goals import GoalsPartial, GoalsQuery, rate
from tracker.conversions.query import TimeRange
from tracker.conversions.retention import Period, RetentionPartial, RetentionQuery, period_start
from tracker.conversions.stats import SRM_ALERT_P, compare, sample_ratio_p
from tracker.conversions.store import DefinitionStore
from tracker.query.run import Query

Runner = Callable[[Query[Any]], Awaitable[Any]]


class Reports:
    def __init__(self, store: DefinitionStore, run: Runner) -> None:
        self.store = store
        self.run = run

    async def goals(self, when: TimeRange) -> r.Goals:
        goals = (await self.store.read()).goals
        result: GoalsPartial = await self.run(GoalsQuery(goals, when))
        return r.Goals(
            [
                r.GoalReport(
                    name,
                    goal.match,
                    result.goals[name].visitors,
                    result.goals[name].conversions,
                    rate(result.goals[name].visitors, result.visitors),
                )
                for name, goal in sorted(goals.items())
            ],
            result.visitors,
        )

    async def funnel(self, name: str, when: TimeRange) -> r.FunnelReport:
        funnel = (await self.store.read()).funnel(name)
        result: FunnelPartial = await self.run(FunnelQuery(funnel, when))
        counts = result.visitors
        steps = [
            r.FunnelStep(
                match,
                counts[k],
                rate(counts[k], counts[0]),
                1 - rate(counts[k], counts[k - 1]) if k and counts[k - 1] else 0.0,
                median_ms(result.gaps[k - 1]) if k else None,
            )
            for k, match in enumerate(funnel.steps)
        ]
        return r.FunnelReport(name, funnel.windowS, steps)

    async def retention(self, when: TimeRange, period: Period) -> r.Retention:
        result: RetentionPartial = await self.run(RetentionQuery(when, period))
        cohorts = [
            r.Cohort(period_start(index, period), cohort.size, cohort.returning)
            for index, cohort in result.cohorts.items()
        ]
        return r.Retention(period, cohorts)

    async def experiment(self, name: str) -> r.ExperimentReport:
        definitions = await self.store.read()
        experiment = definitions.experiment(name)
        goal = definitions.goal(experiment.goal)
        result: ExperimentPartial = await self.run(ExperimentQuery(name, goal.match))
        control = experiment.control
        # Variants no longer defined still show, with weight 0, while users were exposed to them.
        names = [*experiment.variants, *sorted(set(result.variants) - set(experiment.variants))]

        def counts(variant: str) -> tuple[int, int]:
            found = result.variants.get(variant)
            return (found.converted, found.exposed) if found else (0, 0)

        variants = []
        for variant in names:
            converted, exposed = counts(variant)
            versus = compare(counts(control), (converted, exposed))
            variants.append(
                r.VariantReport(
                    variant,
                    experiment.variants.get(variant, 0.0),
                    exposed,
                    converted,
                    rate(converted, exposed),
                    versus.difference,
                    versus.ci_low,
                    versus.ci_high,
                    None if variant == control else versus.p_value,
                )
            )
        srm = sample_ratio_p([v.exposed for v in variants], [v.weight for v in variants])
        return r.ExperimentReport(
            name,
            experiment.goal,
            control,
            experiment.stopped,
            variants,
            srm,
            srm is not None and srm < SRM_ALERT_P,
        )
