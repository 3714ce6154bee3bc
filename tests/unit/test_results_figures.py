"""The figures results/README.md quotes for issue 34, recomputed from the committed runs.csv files: a
reading that drifts from its data fails here."""
import csv
import statistics

import pytest
from scipy import stats

from tests.conftest import REPO_ROOT

README = " ".join((REPO_ROOT / "results" / "README.md").read_text().split())  # line breaks as spaces


def runs(study):
    return {(r["arm"], int(r["seed"])): r for r in csv.DictReader((REPO_ROOT / "results" / study / "runs.csv").open())}


def interval(pairs, metric, digits):
    """'mean [low, high]' of the paired differences (95% t), as the page writes it (Unicode minus)."""
    diffs = [float(a[metric]) - float(b[metric]) for a, b in pairs]
    mean, half = statistics.fmean(diffs), stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    text = f"{mean:+.{digits}f} [{mean - half:+.{digits}f}, {mean + half:+.{digits}f}]"
    return text.replace("-", "−")


def arms(study, first, second, seeds):
    table = runs(study)
    return [(table[(first, s)], table[(second, s)]) for s in seeds]


def fraction(f, role):
    name = {"P": "", "S+": "stage 2 only, 250 steps, ", "S": "stage 2 only, 150 steps, ",
            "control": "autoregressive stage 1, 100+150 steps, "}[role]
    return f"{name}train_segment_fraction={f}"


@pytest.mark.parametrize("study, first, second, metric, digits", [
    ("label_scarce_atari", fraction(0.02, "P"), fraction(0.02, "S+"), "changed_accuracy", 4),
    ("label_scarce_atari", fraction(0.02, "S+"), fraction(0.02, "S"), "changed_cross_entropy", 3),
    ("label_scarce_atari", fraction(0.02, "control"), fraction(0.02, "S+"), "changed_cross_entropy", 3),
    ("label_scarce", fraction(0.02, "control"), fraction(0.02, "S+"), "changed_cross_entropy", 3),
    ("label_scarce", fraction(0.02, "P"), fraction(0.02, "S"), "changed_cross_entropy", 3),
    ("label_scarce", fraction(1.0, "P"), fraction(1.0, "S"), "changed_cross_entropy", 3),
])
def test_the_quoted_paired_intervals_recompute(study, first, second, metric, digits):
    assert interval(arms(study, first, second, range(5)), metric, digits) in README


def test_the_pooled_atari_all_token_interval_and_the_one_run_below_the_unigram():
    pooled = (arms("label_scarce_atari", fraction(0.02, "P"), fraction(0.02, "S+"), range(5))
              + arms("label_scarce_atari_replication", fraction(0.02, "P"), fraction(0.02, "S+"), range(5, 10)))
    assert interval(pooled, "cross_entropy", 3) in README
    below = [(arm, seed, f"{float(r['changed_cross_entropy']):.3f} vs {float(r['changed_unigram_cross_entropy']):.3f}")
             for study in ("label_scarce", "label_scarce_atari", "label_scarce_atari_replication")
             for (arm, seed), r in runs(study).items()
             if float(r["changed_cross_entropy"]) < float(r["changed_unigram_cross_entropy"])]
    assert below == [(fraction(0.02, "control"), 1, "6.786 vs 6.831")] and "seed 1, 6.786 vs 6.831" in README
