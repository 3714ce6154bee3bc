"""Equivalence margins and seed checks of a study file (docs/studies.md), and the committed reports: their
CSVs recompute byte for byte from their runs.csv."""
import csv
import io
import math

import pytest
import yaml

from genie.errors import ConfigError
from genie.studies import report
from genie.studies.spec import load_study
from genie.studies.stats import PairedDifference, detection_power, equivalence_power, seeds_needed
from tests.conftest import REPO_ROOT

TEN_SEEDS = list(range(10))
STUDY = {"name": "tiny", "title": "tiny", "question": "q", "genie_config": "configs/small.json", "seeds": TEN_SEEDS,
         "stage1_steps": 3, "stage2_steps": 4, "stage1": {"initial_mask_ratio": 0.8, "final_mask_ratio": 0.1},
         "grid": {"mask_schedule": ["cosine", "exponential"]},
         "primary": {"metric": "changed_cross_entropy", "versus": "equal_total_steps"}}


def study_file(tmp_path, **changes):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY | changes))  # writes nan and inf as YAML's .nan and .inf
    return path


def primary(**extra):
    return {"primary": STUDY["primary"] | extra}


@pytest.mark.parametrize("low, high, p_holm, expected", [
    (-0.10, 0.12, 0.4, "equivalent within ±0.15"),     # inside the margin, includes 0
    (0.02, 0.10, 0.01, "equivalent within ±0.15"),     # inside the margin and excludes 0: the margin says it is small
    (-0.40, -0.20, 0.01, "different"),                 # outside the margin, significant
    (0.05, 0.30, 0.01, "different"),                   # straddles +0.15, excludes 0, significant
    (-0.30, 0.10, 0.3, "inconclusive"),                # includes 0 and reaches past -0.15: not "no effect"
    (-0.20, 0.20, 0.9, "inconclusive"),                # wider than the margin on both sides
    (-0.15, 0.10, 0.5, "inconclusive"),                # touching the margin is not inside it
    (0.01, 0.30, 0.08, "inconclusive"),                # 95% interval excludes 0 but Holm's p does not reach 5%
])
def test_equivalence_reads_the_interval_against_the_margin(low, high, p_holm, expected):
    diff = PairedDifference((low + high) / 2, 0.1, low, high, 10, p_holm)
    assert report.equivalence(diff, 0.15, p_holm) == expected


def test_equivalence_without_holm_uses_the_interval_and_refuses_one_seed_or_nan():
    assert report.equivalence(PairedDifference(0.3, 0.1, 0.2, 0.4, 10), 0.15) == "different"
    assert report.equivalence(PairedDifference(0.1, 0.1, -0.1, 0.3, 10), 0.15) == "inconclusive"
    assert report.equivalence(PairedDifference(0.0, 0.0, math.nan, math.nan, 1), 0.15) == report.NO_TEST
    assert report.equivalence(PairedDifference(math.nan, math.nan, math.nan, math.nan, 10), 0.15) == report.NOT_MEASURED


@pytest.mark.parametrize("changes, message", [
    (primary(margin=0), "primary.margin 0 must be a positive finite number in the units of changed_cross_entropy"),
    (primary(margin=-0.1), "primary.margin -0.1 must be a positive finite number"),
    (primary(margin=float("nan")), "primary.margin nan must be a positive finite number"),
    (primary(margin=float("inf")), "primary.margin inf must be a positive finite number"),
    (primary(margin="0.15"), "primary.margin '0.15' must be a positive finite number"),
    (primary(margin=True), "primary.margin True must be a positive finite number"),
    (primary(margins={"mask_schedule=cosine": 0}), "primary.margins['mask_schedule=cosine'] 0 must be a positive"),
    (primary(margins={"cosine": 0.1}), "primary.margins names 'cosine', which is not an arm of this study; name one "
                                       "of ['mask_schedule=cosine', 'mask_schedule=exponential']"),
    (primary(margins=[0.1]), "primary.margins [0.1] must map arm names to margins"),
    (primary(margn=0.1), "primary {'margn': 0.1, 'metric': 'ch"),  # cut to 80 characters; ends with the keys
    (primary(margn=0.1), "versus: one of ['equal_total_steps']} (optional: margin, margins)"),
    (primary(margin=0.15) | {"seeds": [0, 1, 2, 3, 4]}, "the primary contrast has 5 seeds, fewer than 10 (an "
                                                         "equivalence margin needs 10); add seeds, or set pilot: true"),
    ({"min_seeds": 12}, "the primary contrast has 10 seeds, fewer than 12 (min_seeds 12); add seeds, or set pilot"),
    ({"min_seeds": 1}, "min_seeds 1 must be an integer >= 2"),
    ({"min_seeds": "10"}, "min_seeds '10' has the wrong type"),
    ({"pilot": "yes"}, "pilot 'yes' must be true or false"),
])
def test_a_wrong_margin_or_seed_count_is_one_line(tmp_path, changes, message):
    with pytest.raises(ConfigError) as info:
        load_study(study_file(tmp_path, **changes))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_margins_override_the_study_wide_one_and_a_pilot_may_run_few_seeds(tmp_path):
    spec = load_study(study_file(tmp_path, **primary(margin=0.15, margins={"mask_schedule=cosine": 0.3})))
    assert spec.margin_for("mask_schedule=cosine") == 0.3 and spec.margin_for("mask_schedule=exponential") == 0.15
    pilot = load_study(study_file(tmp_path, **primary(margin=0.15), seeds=[0, 1], min_seeds=10, pilot=True))
    assert pilot.seeds == [0, 1] and pilot.pilot
    assert load_study(study_file(tmp_path, min_seeds=10)).margin_for("mask_schedule=cosine") is None


def fake_values(spec, shift):
    """Every arm at every seed: changed CE 4.0 for the comparators; the arms 4.0 + shift[arm] + a seed wobble."""
    names = [a.name for a in spec.arm_list()]
    comparators = {c.name for a in spec.arm_list() for c in spec.comparators(a).values()}
    metrics = [m for m, _, _ in report.METRICS]
    values = {}
    for seed in spec.seeds:
        wobble = 0.01 * (seed % 3 - 1)
        for name in names:
            values[(name, seed)] = {m: 4.0 + shift[name] + wobble for m in metrics}
        for name in comparators:
            values[(name, seed)] = {m: 4.0 for m in metrics}
    return values


def test_the_primary_table_shows_equivalence_only_when_a_margin_is_declared(tmp_path):
    shift = {"mask_schedule=cosine": 0.01, "mask_schedule=exponential": 0.5}
    plain = load_study(study_file(tmp_path))
    with_margin = load_study(study_file(tmp_path, **primary(margin=0.15)))
    cells = [report.Cell(arm, seed, None) for arm in plain.arm_list() for seed in plain.seeds]
    plain_rows = report.arm_rows(plain, cells, fake_values(plain, shift))
    rows = report.arm_rows(with_margin, cells, fake_values(with_margin, shift))
    assert [r.get("equivalence") for r in rows[:2]] == ["equivalent within ±0.15", "different"]
    assert "equivalence" not in plain_rows[0] and "equivalence (margin)" not in "".join(
        report.primary_table(plain, plain_rows))
    table = report.primary_table(with_margin, rows)
    assert table[0].endswith("| verdict | equivalence (margin) |") and table[2].endswith("| equivalent within ±0.15 |")


@pytest.mark.parametrize("seeds", [2, 3, 4, 5, 8])
def test_detection_power_matches_a_simulation_where_the_shift_is_large(seeds):
    """At a paired sd far below the effect (the (j) pilot's 0.04 against 0.15) scipy's noncentral t gave NaN
    for 4 seeds and more, and seeds_needed skipped those counts; the power is finite, rises with the seeds,
    and agrees with a seeded simulation of the paired t test."""
    import numpy as np
    from scipy import stats

    power = detection_power(0.04, 0.15, seeds, alpha=0.01)
    diffs = np.random.default_rng(0).normal(0.15, 0.04, size=(100_000, seeds))
    t = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / seeds ** 0.5)
    assert abs(np.mean(np.abs(t) > stats.t.ppf(0.995, seeds - 1)) - power) < 0.01
    assert power <= detection_power(0.04, 0.15, seeds + 1, alpha=0.01)


def test_seeds_needed_counts_the_first_sufficient_seed_count():
    assert seeds_needed(lambda n: detection_power(0.04, 0.15, n, alpha=0.01)) == 4  # 0.806; was 5 (NaN at 4)


@pytest.mark.parametrize("seeds, simulated", [(10, 0.43), (13, 0.67), (16, 0.82), (20, 0.93)])
def test_equivalence_power_matches_the_simulation_in_docs_studies(seeds, simulated):
    """docs/studies.md's 20,000-draw simulation at paired sd 0.17 and margin 0.15; the exact integral agrees
    to its rounding and with a seeded simulation of the report's own reading (95% t interval inside ±m)."""
    import numpy as np
    from scipy import stats

    exact = equivalence_power(0.17, 0.15, seeds)
    assert abs(exact - simulated) < 0.006
    diffs = np.random.default_rng(0).normal(0.0, 0.17, size=(20_000, seeds))
    half = stats.t.ppf(0.975, seeds - 1) * diffs.std(axis=1, ddof=1) / seeds ** 0.5
    assert abs(np.mean(np.abs(diffs.mean(axis=1)) + half < 0.15) - exact) < 0.01


def test_seed_counts_are_the_issues_known_answers():
    """Issue 34: at paired sd 0.17, 13 seeds resolve 0.15 nats with 80% power (paired t at 5%), 120 at sd
    0.58; an 80% chance to read "equivalent within ±0.15" at no difference takes 16 (docs/studies.md)."""
    assert seeds_needed(lambda n: detection_power(0.17, 0.15, n)) == 13
    assert seeds_needed(lambda n: detection_power(0.58, 0.15, n)) == 120
    assert seeds_needed(lambda n: equivalence_power(0.17, 0.15, n)) == 16
    assert detection_power(0.17, 0.15, 13) >= 0.8 > detection_power(0.17, 0.15, 12)
    assert seeds_needed(lambda n: 0.0, most=50) is None


def test_a_pilot_report_sizes_the_full_studys_seeds_from_its_paired_sd(tmp_path):
    """Paired differences -0.17, 0, +0.17 over 3 seeds: sd 0.17, so 16 seeds for equivalence within ±0.15,
    and for detection the paired t at 5% over the 2 arms (Holm's first step) needs more than at 5%."""
    spec = load_study(study_file(tmp_path, **primary(margin=0.15), seeds=[0, 1, 2], min_seeds=16, pilot=True))
    values = fake_values(spec, {"mask_schedule=cosine": 0.0, "mask_schedule=exponential": 0.0})
    for seed, diff in zip(spec.seeds, (-0.17, 0.0, 0.17)):
        values[("mask_schedule=cosine", seed)]["changed_cross_entropy"] = 4.0 + diff
    lines = report.pilot_sizing_lines(spec, values)
    detection = seeds_needed(lambda n: detection_power(0.17, 0.15, n, alpha=0.025))
    assert detection == 15  # more than the 13 of a single contrast at 5%
    assert lines[2].endswith("(paired t at 0.025) | seeds for an 80% chance of \"equivalent within ±m\" at no "
                             "difference |")
    assert lines[4] == f"| mask_schedule=cosine | 0.1700 | {detection} (m = 0.15) | 16 (m = 0.15) |"
    assert lines[5] == "| mask_schedule=exponential | 0.0100 | 3 (m = 0.15) | 2 (m = 0.15) |"
    one_seed = load_study(study_file(tmp_path, **primary(margin=0.15), seeds=[0], min_seeds=16, pilot=True))
    assert "a paired sd needs 2 seeds" in report.pilot_sizing_lines(one_seed, values)[0]


def rebuilt_csvs(study):
    """results.csv and contrasts.csv of results/<study>/, recomputed from its runs.csv as write_report writes them."""
    spec = load_study(REPO_ROOT / "configs" / "studies" / f"{study}.yaml")
    runs = list(csv.DictReader((REPO_ROOT / "results" / study / "runs.csv").open()))
    spec.seeds = sorted({int(r["seed"]) for r in runs})  # a partial report (--seeds) has fewer than the file
    numbers = {k: (lambda v: int(v)) for k in ("num_windows", "num_tokens")}
    values = {(r["arm"], int(r["seed"])): {k: numbers.get(k, float)(v) for k, v in r.items()
                                           if k not in ("arm", "seed", "run")} for r in runs}
    arms = {c.name: c for a in spec.arm_list() for c in [a, *spec.comparators(a).values()]}
    cells = [report.Cell(arms[r["arm"]], int(r["seed"]), None) for r in runs]
    texts = {}
    for name, rows in (("results.csv", report.arm_rows(spec, cells, values)),
                       ("contrasts.csv", report.contrast_rows(spec, values))):
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
        texts[name] = out.getvalue()
    return texts


@pytest.mark.parametrize("study", sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/runs.csv")))
def test_every_committed_report_recomputes_from_its_runs_csv(study):
    for name, text in rebuilt_csvs(study).items():
        assert text == (REPO_ROOT / "results" / study / name).read_bytes().decode(), f"results/{study}/{name}"
