"""Summary statistics of a study: mean ± std over seeds, and paired differences with a t interval."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from scipy import stats


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class PairedDifference:
    """arm - baseline, paired by seed: the mean difference and its 95% t interval (nan with one pair)."""
    mean: float
    std: float
    low: float
    high: float
    pairs: int

    def excludes_zero(self) -> bool:
        return self.pairs > 1 and (self.low > 0 or self.high < 0)


def paired_difference(arm: dict[int, float], baseline: dict[int, float], confidence: float = 0.95
                      ) -> PairedDifference:
    """Difference arm[seed] - baseline[seed] over the seeds both have, with the Student-t interval of
    its mean (scipy's paired t test: mean ± t_{n-1} * sd / sqrt(n))."""
    seeds = sorted(set(arm) & set(baseline))
    if not seeds:
        raise ValueError("no seed is shared by the arm and its baseline")
    diffs = [arm[s] - baseline[s] for s in seeds]
    mean, std = mean_std(diffs)
    if len(seeds) < 2:
        return PairedDifference(mean, std, float("nan"), float("nan"), len(seeds))
    if std == 0.0:  # every pair differs by the same amount: the interval is that point
        return PairedDifference(mean, std, mean, mean, len(seeds))
    result = stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds])
    interval = result.confidence_interval(confidence)
    return PairedDifference(mean, std, float(interval.low), float(interval.high), len(seeds))
