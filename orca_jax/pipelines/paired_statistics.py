"""Paired comparisons over seeds, for the reproduction's claims.

Within a seed, both conditions of a claim train on the same instances from the same
initialisation, so the per-seed difference removes what the seed changes in both; the
claim's interval is the t interval of those differences (n - 1 degrees of freedom).
"""

from __future__ import annotations

import math
import statistics

from scipy import stats

APPEARS, REVERSED, INCONCLUSIVE = "appears", "reversed", "inconclusive"


def paired_difference(better: list[float], worse: list[float], confidence: float = 0.95) -> dict:
    """`{"per_seed", "difference", "ci95"}`: the differences better - worse seed by seed, their
    mean and the two-sided t interval of the mean (None with fewer than two seeds)."""
    if len(better) != len(worse) or not better:
        raise ValueError(f"paired values needed: {len(better)} vs {len(worse)}")
    differences = [b - w for b, w in zip(better, worse)]
    mean = statistics.fmean(differences)
    interval = None
    if len(differences) > 1:
        half = stats.t.ppf((1 + confidence) / 2, len(differences) - 1) * statistics.stdev(differences) / math.sqrt(
            len(differences))
        interval = [mean - half, mean + half]
    return {"per_seed": differences, "difference": mean, "ci95": interval}


def verdict(interval: list[float] | None) -> str:
    """"appears" only when the interval excludes 0 in the claim's direction (better - worse > 0),
    "reversed" when it excludes 0 the other way, else "inconclusive"."""
    if interval is None:
        return INCONCLUSIVE
    low, high = interval
    return APPEARS if low > 0 else REVERSED if high < 0 else INCONCLUSIVE
