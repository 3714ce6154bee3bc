"""A study's report: results.csv (one row per arm), runs.csv (one row per arm and seed), results.md
(mean ± std over seeds, paired difference to stage 2 alone with its 95% interval, the references),
curves.csv and curves.png (val loss over training per run and per arm) and swept.png (metrics against the
swept value)."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genie.masking.collators import get_masked_pretrain_collator
from genie.masking.schedules import training_progress
from genie.model.config import GenieConfig
from genie.studies.earlier import CURVE_COLUMNS, CURVES_CSV, SCORES, EarlierCell
from genie.studies.runs import RunTask
from genie.studies.spec import LABELS, LOWER_IS_BETTER, METRICS, Arm, StudySpec
from genie.studies.stats import (PairedDifference, detection_power, equivalence_power, holm, mean_std,
                                 paired_difference, seeds_needed)
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.run_logging import read_metrics

CURVE_KEY = "val/tf_cross_entropy"  # the in-training evaluation drawn in curves.png


@dataclass(frozen=True)
class Cell:
    """One arm at one seed, and the stage-2 run (with its evaluation) that scores it; or, where the store
    lacks that run, its scores in an earlier report (`earlier`)."""
    arm: Arm
    seed: int
    task: RunTask
    earlier: EarlierCell | None = None

    def metrics(self) -> dict[str, float]:
        if self.earlier is not None:
            return dict(self.earlier.scores)
        report = json.loads(self.task.eval_json.read_text())
        rollout = report["rollout"]
        values = {"cross_entropy": report["cross_entropy"], "accuracy": report["accuracy"],
                  "rollout_accuracy_h1": rollout["accuracy_per_horizon"][0], "rollout_accuracy": rollout["accuracy"],
                  "copy_previous_accuracy": report["copy_previous_accuracy"],
                  "copy_rollout_accuracy_h1": rollout["copy_accuracy_per_horizon"][0],
                  "unigram_cross_entropy": report["unigram_cross_entropy"], "num_windows": report["num_windows"],
                  "num_tokens": report["num_tokens"]}
        # The rest of SCORES are the dynamics scores: NaN in an evaluation made before they existed, or without
        # actions. SCORES orders runs.csv's columns, by which an earlier report is read.
        values |= {key: math.nan if report.get(key) is None else report[key] for key in SCORES if key not in values}
        return {key: values[key] for key in SCORES}

    def curve(self) -> list[tuple[int, float]]:
        """(stage-2 step, val CE) of the run's in-training evaluations."""
        if self.earlier is not None:
            return list(self.earlier.curve)
        return [(r["step"], r[CURVE_KEY]) for r in read_metrics(self.task.folder / "metrics.jsonl") if CURVE_KEY in r]


NO_TEST = "none: one seed allows no test"
NOT_MEASURED = "none: not measured"


def verdict(diff: PairedDifference, lower_is_better: bool, p_adjusted: float | None = None) -> str:
    """helps / hurts when the difference is significant at 5% (by `p_adjusted`, e.g. Holm's, when given;
    else when its 95% interval excludes 0), else no difference; no verdict at all from one seed (no test
    is possible) or on a score that was not measured (nan)."""
    if diff.pairs < 2:
        return NO_TEST
    if math.isnan(diff.mean):
        return NOT_MEASURED
    significant = diff.excludes_zero() if p_adjusted is None else diff.pairs > 1 and p_adjusted < 0.05
    if not significant:
        return "no difference"
    return "helps" if (diff.mean < 0) == lower_is_better else "hurts"


def equivalence(diff: PairedDifference, margin: float, p_adjusted: float | None = None) -> str:
    """The reading of a contrast with an equivalence margin m: "equivalent within ±m" when its 95% interval lies
    inside (-m, +m); else "different" when it is significant at 5% (by `p_adjusted`, e.g. Holm's, when given; else
    when its 95% interval excludes 0); else "inconclusive" (an interval that includes 0 but reaches past the
    margin shows neither an effect nor its absence). No reading from one seed or a score not measured."""
    if diff.pairs < 2:
        return NO_TEST
    if math.isnan(diff.mean):
        return NOT_MEASURED
    if -margin < diff.low and diff.high < margin:
        return f"equivalent within ±{margin:g}"
    significant = diff.excludes_zero() if p_adjusted is None else p_adjusted < 0.05
    return "different" if significant else "inconclusive"


def arm_rows(spec: StudySpec, cells: list[Cell], values: dict[tuple[str, int], dict[str, float]]
             ) -> list[dict[str, Any]]:
    """Per arm (the pretrained arms, then their baselines and controls): mean and std of every metric;
    for a pretrained arm, the paired difference to the comparator of the declared primary contrast on
    every metric, and on the primary metric its p-value, Holm-adjusted across the arms, and verdict.
    `values`: each (arm name, seed)'s metrics."""
    arms = list({c.arm.name: c.arm for c in cells if c.arm.pretrained}.values())
    others = list({c.name: c for arm in arms for c in spec.comparators(arm).values()}.values())
    rows, primary_diffs = [], []
    for arm in arms + others:
        row: dict[str, Any] = {"arm": arm.name, "role": arm.role, "value": arm.value, "stage1_steps": arm.stage1_steps,
                               "stage2_steps": arm.stage2_steps, "stage2_data": arm.data_label, "seeds": len(spec.seeds),
                               "masked_fraction": mean_masked_fraction(arm, spec.model_config) if arm.pretrained else None}
        comparator = spec.comparators(arm)[spec.primary_versus] if arm.pretrained else None
        for metric, _, _ in METRICS:
            per_seed = {s: values[(arm.name, s)][metric] for s in spec.seeds}
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(list(per_seed.values()))
            if comparator is not None:
                diff = paired_difference(per_seed, {s: values[(comparator.name, s)][metric] for s in spec.seeds})
                row |= {f"{metric}_diff": diff.mean, f"{metric}_diff_low": diff.low, f"{metric}_diff_high": diff.high}
                if metric == spec.primary_metric:
                    primary_diffs.append((row, diff))
        row["baseline"] = comparator.name if comparator else ""
        rows.append(row)
    for (row, diff), p_holm in zip(primary_diffs, holm([d.p for _, d in primary_diffs])):
        row |= {"p": diff.p, "p_holm": p_holm,
                "verdict": verdict(diff, LOWER_IS_BETTER[spec.primary_metric], p_holm)}
        margin = spec.margin_for(row["arm"])
        if margin is not None:
            row |= {"margin": margin, "equivalence": equivalence(diff, margin, p_holm)}
    return rows


def contrast_rows(spec: StudySpec, values: dict[tuple[str, int], dict[str, float]]) -> list[dict[str, Any]]:
    """Every pretrained arm against every comparator (baselines and controls) on the primary metric."""
    metric, rows = spec.primary_metric, []
    for arm in spec.arm_list():
        per_seed = {s: values[(arm.name, s)][metric] for s in spec.seeds}
        for kind, comparator in spec.comparators(arm).items():
            diff = paired_difference(per_seed, {s: values[(comparator.name, s)][metric] for s in spec.seeds})
            rows.append({"arm": arm.name, "versus": kind, "comparator": comparator.name, "diff": diff.mean,
                         "low": diff.low, "high": diff.high, "p": diff.p})
    return rows


def write_report(spec: StudySpec, cells: list[Cell], output_dir: Path, note: str | None = None) -> str:
    """results.md, the CSVs and the plots of `cells`; `note` (e.g. that the report is partial) is set in bold
    under the title."""
    from genie.studies.plots import plot_curves, plot_swept  # matplotlib only when a report is drawn

    output_dir.mkdir(parents=True, exist_ok=True)
    values = {(c.arm.name, c.seed): c.metrics() for c in cells}  # each eval.json read once
    rows = arm_rows(spec, cells, values)
    _write_csv(output_dir / "results.csv", rows)
    _write_csv(output_dir / "runs.csv", [{"arm": c.arm.name, "seed": c.seed, "run": c.task.folder.name}
                                         | values[(c.arm.name, c.seed)] for c in cells])
    contrasts = contrast_rows(spec, values)
    _write_csv(output_dir / "contrasts.csv", contrasts)
    curves = {(c.arm.name, c.seed): c.curve() for c in cells}
    _write_csv(output_dir / CURVES_CSV, [{"arm": arm, "seed": seed, "step": step, "val_cross_entropy": ce}
                                         for (arm, seed), points in curves.items() for step, ce in points],
               list(CURVE_COLUMNS))
    text = markdown(spec, rows, values[(cells[0].arm.name, cells[0].seed)], contrasts)
    if spec.pilot:
        text += "\n".join(["", *pilot_sizing_lines(spec, values)])
    if note:
        title, rest = text.split("\n", 1)
        text = f"{title}\n\n**{note}**\n{rest}"
    (output_dir / "results.md").write_text(text)
    plot_curves(spec, cells, curves, output_dir / "curves.png")
    plot_swept(spec, rows, output_dir / "swept.png", values[(cells[0].arm.name, cells[0].seed)])
    return text


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    fields = fields or list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _interval(row: dict[str, Any], metric: str) -> str:
    if f"{metric}_diff" not in row:
        return "(comparator)"
    low, high = row[f"{metric}_diff_low"], row[f"{metric}_diff_high"]
    span = "n/a" if math.isnan(low) else f"{low:+.4f}, {high:+.4f}"
    return f"{row[f'{metric}_diff']:+.4f} [{span}]"


COMPARATOR_WORDS = {"equal_total_steps": "stage 2 alone for the same total steps",
                    "equal_stage2_steps": "stage 2 alone for the same stage-2 steps",
                    "autoregressive_stage1": "stage 1 replaced by autoregressive training (same data and steps)"}


def setting_lines(spec: StudySpec, reference: dict[str, float]) -> list[str]:
    training = ", ".join(f"{k} {v}" for k, v in spec.training_arguments().items() if k != "checkpointing_steps")
    stage1_data = (f"stage 1 trains on {spec.stage1_train_data_dir or 'the train split'}"
                   f"{' without its action labels' if not spec.stage1_actions else ''}")
    compared = "; ".join(COMPARATOR_WORDS[k] for k in spec.baselines + spec.controls)
    overrides = "; ".join(f"{k} {old} -> {new}" for k, (old, new) in spec.overrides.items())
    return [f"Setting: `{spec.genie_config}`, seeds {spec.seeds}, stride {spec.stride}; stage 1 then stage 2 from its "
            f"weights ({stage1_data}), compared with: {compared} ({training}). Scored on {reference['num_windows']} "
            f"val windows ({reference['num_tokens']} tokens) with the challenge's metric (genie/evaluation/loop.py). "
            "Mean ± std over seeds; Δ = arm − comparator, paired by seed, with its 95% t interval (negative Δ CE "
            "and positive Δ accuracy are better)." + (f" Command-line overrides of the study file: {overrides}."
                                                        if overrides else ""), "",
            f"**Primary contrast** (declared in the study file): {LABELS[spec.primary_metric]} of each arm vs "
            f"{COMPARATOR_WORDS[spec.primary_versus]}; "
            + ("the verdict (helps / hurts / no difference) is the paired t test's p-value, Holm-corrected across "
               "the arms, at 5%." if len(spec.seeds) > 1 else "no verdict: a paired test needs at least 2 seeds.")
            + (MARGIN_WORDS if spec.has_margins else "") + (PILOT_WORDS if spec.pilot else ""), ""]


MARGIN_WORDS = (" Equivalence, where the study file declares a margin m (in the metric's units): \"equivalent within "
                "±m\" when the 95% interval lies inside ±m (two one-sided tests at 2.5% each; this reading comes first), "
                "else \"different\" when the verdict is helps or hurts, else \"inconclusive\" (an interval that includes 0 is not evidence of no "
                "effect).")
PILOT_WORDS = " The study file declares this study a pilot: it may have fewer seeds than it needs for a conclusion."


def markdown(spec: StudySpec, rows: list[dict[str, Any]], reference: dict[str, float],
             contrasts: list[dict[str, Any]]) -> str:
    lines = [f"# {spec.title or spec.name}", "", spec.question, "", *setting_lines(spec, reference),
             *primary_table(spec, rows),
             "All-token scores; Δ against the primary comparator. Masked = the fraction of tokens stage 1 really "
             "masked, mean over its steps.", "",
             "| arm | steps (s1+s2) | masked | CE | Δ CE [95% CI] | accuracy | Δ accuracy [95% CI] "
             "| rollout acc h1 | Δ rollout h1 [95% CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        masked = "-" if row["masked_fraction"] is None else f"{row['masked_fraction']:.3f}"
        cols = [row["arm"], f"{row['stage1_steps']}+{row['stage2_steps']}", masked,
                f"{row['cross_entropy_mean']:.4f} ± {row['cross_entropy_std']:.4f}", _interval(row, "cross_entropy"),
                f"{row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f}", _interval(row, "accuracy"),
                f"{row['rollout_accuracy_h1_mean']:.4f} ± {row['rollout_accuracy_h1_std']:.4f}",
                _interval(row, "rollout_accuracy_h1")]
        lines.append("| " + " | ".join(cols) + " |")
    lines += [f"| unigram of the train split's tokens (reference) | - | - | {reference['unigram_cross_entropy']:.4f} | | | | | |",
              f"| most frequent token (reference) | - | - | - | | {reference['unigram_accuracy']:.4f} | | | |",
              f"| copy the previous frame (reference) | - | - | - | | {reference['copy_previous_accuracy']:.4f} | | "
              f"{reference['copy_rollout_accuracy_h1']:.4f} | |", "", *dynamics_table(rows, reference)]
    lines += contrast_table(spec, contrasts) + summary_lines(spec, rows, reference)
    return "\n".join(lines) + "\n"


def primary_table(spec: StudySpec, rows: list[dict[str, Any]]) -> list[str]:
    """The primary contrast per arm; with declared margins, an equivalence column (a study without one keeps
    the table it always had)."""
    metric, margins = spec.primary_metric, spec.has_margins
    lines = [f"| arm | {LABELS[metric]} | Δ vs {spec.primary_versus} [95% CI] | p | p (Holm) | verdict |"
             + (" equivalence (margin) |" if margins else ""), "|---|---|---|---|---|---|" + ("---|" if margins else "")]
    for row in (r for r in rows if r["baseline"]):
        reading = f" {row.get('equivalence', 'no margin declared')} |" if margins else ""
        lines.append(f"| {row['arm']} | {row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f} | "
                     f"{_interval(row, metric)} | {row['p']:.3g} | {row['p_holm']:.3g} | {row['verdict']} |{reading}")
    return lines + [""]


def pilot_sizing_lines(spec: StudySpec, values: dict[tuple[str, int], dict[str, float]]) -> list[str]:
    """What a pilot is run for: the paired sd of each arm's primary contrast, and the seeds its full study
    needs at that sd. With a margin m: 80% power to find a true difference of m (paired t at 5% over the
    number of arms, Holm's first step), and an 80% chance to read "equivalent within ±m" when the arms do
    not differ. The sd of a 3-seed pilot is itself uncertain: these counts are a floor to plan from."""
    metric, arms = spec.primary_metric, spec.arm_list()
    if len(spec.seeds) < 2:
        return [f"Seeds for the full study: none computed; a paired sd needs 2 seeds, and this report has "
                f"{len(spec.seeds)}.", ""]
    alpha = 0.05 / len(arms)
    lines = [f"Seeds for the full study, from this pilot's paired sd of the primary contrast ({LABELS[metric]} vs "
             f"{spec.primary_versus}, {len(spec.seeds)} seeds; genie/studies/stats.py):", "",
             f"| arm | paired sd | seeds for 80% power to find ±m (paired t at {alpha:.3g}) "
             "| seeds for an 80% chance of \"equivalent within ±m\" at no difference |", "|---|---|---|---|"]
    for arm in arms:
        comparator = spec.comparators(arm)[spec.primary_versus]
        sd = paired_difference({s: values[(arm.name, s)][metric] for s in spec.seeds},
                               {s: values[(comparator.name, s)][metric] for s in spec.seeds}).std
        margin = spec.margin_for(arm.name)
        if math.isnan(sd) or margin is None or sd == 0:
            why = "not measured" if math.isnan(sd) else "no margin declared" if margin is None else "sd 0"
            lines.append(f"| {arm.name} | {sd:.4f} | {why} | {why} |")
            continue
        counts = [seeds_needed(lambda n: detection_power(sd, margin, n, alpha)),
                  seeds_needed(lambda n: equivalence_power(sd, margin, n))]
        lines.append(f"| {arm.name} | {sd:.4f} | " + " | ".join(
            f"{n} (m = {margin:g})" if n else "> 1000" for n in counts) + " |")
    return lines + [""]


def contrast_table(spec: StudySpec, contrasts: list[dict[str, Any]]) -> list[str]:
    """Each arm against every comparator on the primary metric (secondary contrasts: not corrected)."""
    kinds = spec.baselines + spec.controls
    if len(kinds) < 2:
        return []
    lines = [f"Every contrast on the primary metric ({LABELS[spec.primary_metric]}): Δ [95% CI], uncorrected; only "
             f"the contrast vs {spec.primary_versus} is primary.", "",
             "| arm | " + " | ".join(f"vs {k}" for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    by_arm: dict[str, dict[str, str]] = {}
    for c in contrasts:
        span = "n/a" if math.isnan(c["low"]) else f"{c['low']:+.4f}, {c['high']:+.4f}"
        by_arm.setdefault(c["arm"], {})[c["versus"]] = f"{c['diff']:+.4f} [{span}]"
    lines += [f"| {arm} | " + " | ".join(cells[k] for k in kinds) + " |" for arm, cells in by_arm.items()]
    return lines + [""]


def dynamics_table(rows: list[dict[str, Any]], reference: dict[str, float]) -> list[str]:
    """The scores on the tokens that change from the previous frame (copying scores 0 there), where the
    arms differ if they differ at all, and action sensitivity."""
    lines = [f"Dynamics: the {reference['changed_fraction']:.1%} of scored tokens that differ from the previous "
             "frame (copying the previous frame scores 0 on them), and action sensitivity (CE with shuffled actions "
             "minus CE with the true ones; 0 for a model that ignores its actions).", "",
             "| arm | CE changed | Δ CE changed [95% CI] | accuracy changed | Δ accuracy changed [95% CI] "
             "| action sensitivity | Δ action sensitivity [95% CI] |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cols = [row["arm"]]
        for metric in ("changed_cross_entropy", "changed_accuracy", "action_sensitivity"):
            cols += [f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}", _interval(row, metric)]
        lines.append("| " + " | ".join(cols) + " |")
    lines += [f"| unigram (CE) / most frequent token (accuracy), reference | "
              f"{reference['changed_unigram_cross_entropy']:.4f} | | {reference['changed_unigram_accuracy']:.4f} | | | |",
              ""]
    return lines


def summary_lines(spec: StudySpec, rows: list[dict[str, Any]], reference: dict[str, float]) -> list[str]:
    """The plain-words findings the numbers support (the study's reading interprets them)."""
    metric, lower = spec.primary_metric, LOWER_IS_BETTER[spec.primary_metric]
    arms = [r for r in rows if r["baseline"]]
    comparators = [r for r in rows if not r["baseline"]]
    best = (min if lower else max)(arms, key=lambda r: r[f"{metric}_mean"])
    spread = max(r[f"{metric}_std"] for r in comparators)
    counts = {v: sum(r["verdict"] == v for r in arms) for v in ("helps", "no difference", "hurts")}
    verdicts = (f"Verdicts over {len(arms)} arms (Holm-corrected): {counts['helps']} help, {counts['no difference']} "
                f"no difference, {counts['hurts']} hurt" if len(spec.seeds) > 1 else
                f"No verdicts: a paired test needs at least 2 seeds, and this study has {len(spec.seeds)}")
    difference = best.get(f"{metric}_diff", math.nan)
    ahead = difference < 0 if lower else difference > 0  # False for NaN: nothing measured to be ahead
    label = ("Best pretrained arm on the primary metric" if ahead else
             "No pretrained arm is ahead of its comparator on the primary metric; the least behind")
    return [f"- {label}: **{best['arm']}**, Δ {_interval(best, metric)} vs "
            f"{best['baseline']} (Holm p {best['p_holm']:.3g}): {best['verdict']}.",
            f"- {verdicts}. Largest seed std of the primary metric among the comparators: {spread:.4f}.",
            *reference_lines(rows, reference)]


# What an arm's means must beat to have learned the dynamics: on all tokens, and on the tokens that change
# (where copying the previous frame scores 0, so the unigram and the most frequent token are the bar).
REFERENCE_CHECKS = (  # (what, the arm's field, the reference's field, lower is better)
    ("the unigram's CE on all tokens", "cross_entropy_mean", "unigram_cross_entropy", True),
    ("the most frequent token's accuracy on all tokens", "accuracy_mean", "unigram_accuracy", False),
    ("copying the previous frame's accuracy on all tokens", "accuracy_mean", "copy_previous_accuracy", False),
    ("the unigram's CE on the changed tokens", "changed_cross_entropy_mean", "changed_unigram_cross_entropy", True),
    ("the most frequent token's accuracy on the changed tokens", "changed_accuracy_mean", "changed_unigram_accuracy",
     False),
)


def reference_failures(row: dict[str, Any], reference: dict[str, float]) -> list[str]:
    """The references (REFERENCE_CHECKS) an arm's mean does not beat; empty when it beats them all. A score
    not measured (NaN: e.g. runs scored before the changed-token metrics existed) is not judged."""
    failures = []
    for name, field, ref, lower in REFERENCE_CHECKS:
        value, bar = row.get(field, math.nan), reference.get(ref, math.nan)
        if not (math.isnan(value) or math.isnan(bar) or (value < bar if lower else value > bar)):
            failures.append(name)
    return failures


def reference_lines(rows: list[dict[str, Any]], reference: dict[str, float]) -> list[str]:
    """One line per group of arms that fail the same references (or one line saying every arm beats them)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        groups.setdefault(tuple(reference_failures(row, reference)), []).append(row["arm"])
    if list(groups) == [()]:
        return ["- Every arm beats all five references (where measured): the unigram (CE), the most frequent token "
                "and copying the previous frame (accuracy) on all tokens, and the unigram and the most frequent "
                "token on the tokens that change."]
    changed_only = {name for name, field, _, _ in REFERENCE_CHECKS if field.startswith("changed_")}
    lines = [f"- {', '.join(arms)}: {'does' if len(arms) == 1 else 'do'} NOT beat {' or '.join(failed)}: "
             f"{'it has' if len(arms) == 1 else 'they have'} not learned the dynamics"
             + (" of the tokens that change." if set(failed) <= changed_only else ".")
             for failed, arms in groups.items() if failed]
    passed = groups.get((), [])
    verb = "beats" if len(passed) == 1 else "beat"
    return lines + ([f"- {', '.join(passed)}: {verb} all five references (where measured)."] if passed else [])


def mean_masked_fraction(arm: Arm, config: GenieConfig, batch_size: int = 8, seed: int = 0) -> float:
    """The fraction of tokens stage 1 really masks, averaged over its steps (patterns, prompt frames,
    the lattice and the visible first frame all lower it below the nominal ratio)."""
    collator = get_masked_pretrain_collator(MaskedPretrainConfig(**arm.stage1), config)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(batch_size, config.T, config.S, dtype=torch.long)  # no change: the dynamics pattern is uniform
    ratios = [collator.mask_ratio(training_progress(step, arm.stage1_steps)) for step in range(arm.stage1_steps)]
    fractions = [collator.build_mask(tokens, ratio, generator).float().mean().item() for ratio in ratios]
    return sum(fractions) / len(fractions)
