"""Summary statistics of a study: mean ± std over seeds, paired differences with a t interval and
p-value, Holm's correction across the arms of one contrast, and the power of a paired design at a
given sd (what sizes a study's seeds from its pilot)."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import integrate, stats


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; nan for both when a value is nan: a score
    not measured, which the statistics module cannot take)."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def mean_interval(values: list[float], confidence: float = 0.95) -> dict[str, float | None]:
    """Mean and its Student-t interval, mean ± t_{n-1} * sd / sqrt(n) (None where there are too few values)."""
    if not values:
        return {"mean": None, "low": None, "high": None}
    mean, std = mean_std(values)
    if len(values) < 2:
        return {"mean": mean, "low": None, "high": None}
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * std / len(values) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half}


@dataclass(frozen=True)
class PairedDifference:
    """arm - baseline, paired by seed: the mean difference, its 95% t interval and the paired t test's
    two-sided p-value (nan with one pair)."""
    mean: float
    std: float
    low: float
    high: float
    pairs: int
    p: float = float("nan")

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
        return PairedDifference(mean, std, mean, mean, len(seeds), 1.0 if mean == 0.0 else 0.0)
    result = stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds])
    interval = result.confidence_interval(confidence)
    return PairedDifference(mean, std, float(interval.low), float(interval.high), len(seeds), float(result.pvalue))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the k-th smallest of m is multiplied by
    m - k + 1, made non-decreasing, capped at 1. nan stays nan and does not count towards m."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = [float("nan")] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


def detection_power(paired_sd: float, effect: float, seeds: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t test at level `alpha` to find a true mean difference `effect`
    with `seeds` pairs whose differences have sd `paired_sd` (noncentral t)."""
    df, shift = seeds - 1, abs(effect) * seeds ** 0.5 / paired_sd
    critical = stats.t.ppf(1 - alpha / 2, df)
    # The lower tail as the upper tail of the mirrored law: scipy's nct.cdf far below a large shift is NaN
    # (e.g. 3 pairs, shift 7.5), where this is a finite number near 0.
    return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift))


def equivalence_power(paired_sd: float, margin: float, seeds: int, confidence: float = 0.95) -> float:
    """Chance that the `confidence` t interval of the mean paired difference lies inside (-margin, +margin)
    when the true difference is 0 (what reads "equivalent within ±margin"). Exact for normal differences:
    the mean and the sample sd are independent, so it integrates over the sd's scaled chi-square law."""
    df = seeds - 1
    half_width_per_sd = stats.t.ppf((1 + confidence) / 2, df) / seeds ** 0.5
    mean_sd = paired_sd / seeds ** 0.5

    def inside(chi2: float) -> float:  # P(|mean| < margin - half width) for one value of the sample sd
        room = margin - half_width_per_sd * paired_sd * (chi2 / df) ** 0.5
        return (2 * stats.norm.cdf(room / mean_sd) - 1) * stats.chi2.pdf(chi2, df)

    # Integrated up to the sd at which the interval alone is as wide as the margin (room 0); beyond, 0.
    largest = df * (margin / (half_width_per_sd * paired_sd)) ** 2
    return float(integrate.quad(inside, 0, largest, limit=200)[0])


def seeds_needed(power_at, target: float = 0.8, most: int = 1000) -> int | None:
    """The fewest seeds (>= 2) at which `power_at(seeds)` reaches `target`; None if not within `most`."""
    return next((n for n in range(2, most + 1) if power_at(n) >= target), None)
