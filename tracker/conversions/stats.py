"""An experiment's statistics: each variant against control, and the sample-ratio check.

- the difference of conversion rates with a 95% confidence interval (Wald, unpooled);
- a two-sided p-value from the two-proportion z-test (pooled standard error);
- sample ratio mismatch: the chi-square test of the variants' exposed counts against the
  shares their weights promise; below `SRM_ALERT_P` the split itself is suspect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

SRM_ALERT_P = 0.001
_Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Comparison:
    difference: float  # rate of the variant minus rate of control
    ci_low: float
    ci_high: float
    p_value: float | None  # None when it cannot be computed (no exposures, or no variance)


def compare(control: tuple[int, int], variant: tuple[int, int]) -> Comparison:
    """(conversions, exposed) of control and of a variant."""
    c_conv, c_n = control
    v_conv, v_n = variant
    if not c_n or not v_n:
        return Comparison(0.0, 0.0, 0.0, None)
    p_c, p_v = c_conv / c_n, v_conv / v_n
    diff = p_v - p_c
    se = math.sqrt(p_c * (1 - p_c) / c_n + p_v * (1 - p_v) / v_n)
    pooled = (c_conv + v_conv) / (c_n + v_n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / c_n + 1 / v_n))
    p_value = float(2 * stats.norm.sf(abs(diff) / se_pooled)) if se_pooled > 0 else None
    return Comparison(diff, diff - _Z95 * se, diff + _Z95 * se, p_value)


def sample_ratio_p(exposed: Sequence[int], weights: Sequence[float]) -> float | None:
    """The chi-square p-value of `exposed` against the shares of `weights` (those of weight 0
    left out); None with fewer than two weighted variants or no exposures."""
    pairs = [(n, w) for n, w in zip(exposed, weights, strict=True) if w > 0]
    total = sum(n for n, _ in pairs)
    if len(pairs) < 2 or total == 0:
        return None
    weight = sum(w for _, w in pairs)
    expected = [total * w / weight for _, w in pairs]
    return float(stats.chisquare([n for n, _ in pairs], expected).pvalue)
