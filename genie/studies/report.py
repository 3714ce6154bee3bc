"""A study's report: results.csv (one row per arm), runs.csv (one row per arm and seed), results.md
(mean ± std over seeds, paired difference to stage 2 alone with its 95% interval, the references),
curves.png (val loss over training per arm) and swept.png (metrics against the swept value)."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genie.data.collators import get_masked_pretrain_collator
from genie.model.config import GenieConfig
from genie.studies.runs import RunTask
from genie.studies.spec import Arm, StudySpec
from genie.studies.stats import PairedDifference, mean_std, paired_difference
from genie.training.masked_pretrain_config import MaskedPretrainConfig

# (column, label, lower is better)
METRICS = (("cross_entropy", "teacher-forced CE (nats/token)", True),
           ("accuracy", "teacher-forced accuracy", False),
           ("rollout_accuracy_h1", "rollout accuracy, horizon 1", False),
           ("rollout_accuracy", "rollout accuracy, mean over horizons", False),
           ("changed_cross_entropy", "CE on the tokens that change (nats/token)", True),
           ("changed_accuracy", "accuracy on the tokens that change", False),
           ("action_sensitivity", "action sensitivity (nats/token)", False))
PRIMARY = "cross_entropy"


@dataclass(frozen=True)
class Cell:
    """One arm at one seed, and the stage-2 run (with its evaluation) that scores it."""
    arm: Arm
    seed: int
    task: RunTask

    def metrics(self) -> dict[str, float]:
        report = json.loads(self.task.eval_json.read_text())
        rollout = report["rollout"]
        values = {"cross_entropy": report["cross_entropy"], "accuracy": report["accuracy"],
                  "rollout_accuracy_h1": rollout["accuracy_per_horizon"][0], "rollout_accuracy": rollout["accuracy"],
                  "copy_previous_accuracy": report["copy_previous_accuracy"],
                  "copy_rollout_accuracy_h1": rollout["copy_accuracy_per_horizon"][0],
                  "unigram_cross_entropy": report["unigram_cross_entropy"], "num_windows": report["num_windows"],
                  "num_tokens": report["num_tokens"]}
        # The dynamics scores (NaN in an evaluation made before they existed, or without actions).
        for key in ("changed_cross_entropy", "changed_accuracy", "action_sensitivity", "unigram_accuracy",
                    "changed_unigram_cross_entropy", "changed_unigram_accuracy", "changed_fraction"):
            values[key] = math.nan if report.get(key) is None else report[key]
        return values


def verdict(diff: PairedDifference, lower_is_better: bool) -> str:
    """helps / hurts when the 95% interval of the paired difference excludes 0, else no difference."""
    if not diff.excludes_zero():
        return "no difference"
    better = diff.high < 0 if lower_is_better else diff.low > 0
    return "helps" if better else "hurts"


def arm_rows(spec: StudySpec, cells: list[Cell], values: dict[tuple[str, int], dict[str, float]]
             ) -> list[dict[str, Any]]:
    """Per arm: mean and std of every metric; for pretrained arms the paired difference to the
    stage-2-only arm of the same budget and its verdict. `values`: each (arm name, seed)'s metrics."""
    arms = list({c.arm.name: c.arm for c in cells if c.arm.pretrained}.values())
    baselines = list({b.name: b for b in map(spec.baseline_for, arms)}.values())
    rows = []
    for arm in arms + baselines:
        row: dict[str, Any] = {"arm": arm.name, "value": arm.value, "stage1_steps": arm.stage1_steps,
                               "stage2_steps": arm.stage2_steps, "seeds": len(spec.seeds),
                               "masked_fraction": mean_masked_fraction(arm, spec.model_config) if arm.pretrained else None}
        baseline = spec.baseline_for(arm) if arm.pretrained else None
        for metric, _, lower in METRICS:
            per_seed = {s: values[(arm.name, s)][metric] for s in spec.seeds}
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(list(per_seed.values()))
            if baseline is not None:
                diff = paired_difference(per_seed, {s: values[(baseline.name, s)][metric] for s in spec.seeds})
                row |= {f"{metric}_diff": diff.mean, f"{metric}_diff_low": diff.low, f"{metric}_diff_high": diff.high}
                if metric == PRIMARY:
                    row["verdict"] = verdict(diff, lower)
        row["baseline"] = baseline.name if baseline else ""
        rows.append(row)
    return rows


def write_report(spec: StudySpec, cells: list[Cell], output_dir: Path) -> str:
    from genie.studies.plots import plot_curves, plot_swept  # matplotlib only when a report is drawn

    output_dir.mkdir(parents=True, exist_ok=True)
    values = {(c.arm.name, c.seed): c.metrics() for c in cells}  # each eval.json read once
    rows = arm_rows(spec, cells, values)
    _write_csv(output_dir / "results.csv", rows)
    _write_csv(output_dir / "runs.csv", [{"arm": c.arm.name, "seed": c.seed, "run": c.task.folder.name}
                                         | values[(c.arm.name, c.seed)] for c in cells])
    text = markdown(spec, rows, values[(cells[0].arm.name, cells[0].seed)])
    (output_dir / "results.md").write_text(text)
    plot_curves(spec, cells, output_dir / "curves.png")
    plot_swept(spec, rows, output_dir / "swept.png")
    return text


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _interval(row: dict[str, Any], metric: str) -> str:
    if f"{metric}_diff" not in row:
        return "(baseline)"
    low, high = row[f"{metric}_diff_low"], row[f"{metric}_diff_high"]
    span = "n/a" if math.isnan(low) else f"{low:+.4f}, {high:+.4f}"
    return f"{row[f'{metric}_diff']:+.4f} [{span}]"


def markdown(spec: StudySpec, rows: list[dict[str, Any]], reference: dict[str, float]) -> str:
    training = ", ".join(f"{k} {v}" for k, v in spec.training_arguments().items() if k != "checkpointing_steps")
    lines = [f"# {spec.title or spec.name}", "", spec.question, "",
             f"Setting: `{spec.genie_config}`, seeds {spec.seeds}; stage 1 then stage 2 from its weights, vs stage 2 "
             f"alone from scratch for {'the same total' if spec.baseline == 'equal_total_steps' else 'the same stage-2'}"
             f" number of steps ({training}). Scored on {reference['num_windows']} val windows "
             f"({reference['num_tokens']} tokens) with the challenge's metric (genie/evaluation/report.py). "
             "Mean ± std over seeds; Δ = arm − stage 2 alone, paired by seed, with its 95% t interval "
             "(negative Δ CE and positive Δ accuracy are better). Verdict on CE: helps / hurts when the interval "
             "excludes 0.", "",
             "Masked = the fraction of tokens stage 1 really masked, mean over its steps.", "",
             "| arm | steps (s1+s2) | masked | CE | Δ CE [95% CI] | verdict | accuracy | Δ accuracy [95% CI] "
             "| rollout acc h1 | Δ rollout h1 [95% CI] |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        masked = "-" if row["masked_fraction"] is None else f"{row['masked_fraction']:.3f}"
        cols = [row["arm"], f"{row['stage1_steps']}+{row['stage2_steps']}", masked,
                f"{row['cross_entropy_mean']:.4f} ± {row['cross_entropy_std']:.4f}", _interval(row, "cross_entropy"),
                row.get("verdict", "-"), f"{row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f}",
                _interval(row, "accuracy"),
                f"{row['rollout_accuracy_h1_mean']:.4f} ± {row['rollout_accuracy_h1_std']:.4f}",
                _interval(row, "rollout_accuracy_h1")]
        lines.append("| " + " | ".join(cols) + " |")
    lines += [f"| unigram of the training tokens (reference) | - | - | {reference['unigram_cross_entropy']:.4f} | | | | | | |",
              f"| most frequent token (reference) | - | - | - | | | {reference['unigram_accuracy']:.4f} | | | |",
              f"| copy the previous frame (reference) | - | - | - | | | {reference['copy_previous_accuracy']:.4f} | | "
              f"{reference['copy_rollout_accuracy_h1']:.4f} | |", "", *dynamics_table(rows, reference)]
    lines += summary_lines(rows, reference)
    return "\n".join(lines) + "\n"


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


def summary_lines(rows: list[dict[str, Any]], reference: dict[str, float]) -> list[str]:
    """The plain-words findings the numbers support (the study's reading interprets them)."""
    arms = [r for r in rows if r["baseline"]]
    baselines = [r for r in rows if not r["baseline"]]
    best = min(arms, key=lambda r: r["cross_entropy_mean"])
    not_learned = [r["arm"] for r in rows if not learned_something(r, reference)]
    spread = max(r["cross_entropy_std"] for r in baselines)
    counts = {v: sum(r["verdict"] == v for r in arms) for v in ("helps", "no difference", "hurts")}
    return [f"- Best pretrained arm by CE: **{best['arm']}**, Δ CE {_interval(best, 'cross_entropy')} vs "
            f"{best['baseline']}: {best['verdict']}.",
            f"- Verdicts over {len(arms)} arms: {counts['helps']} help, {counts['no difference']} no difference, "
            f"{counts['hurts']} hurt. Seed std of CE for stage 2 alone: {spread:.4f}. With {len(arms)} arms each "
            f"tested at 95%, about {0.05 * len(arms):.1f} 'helps' or 'hurts' verdicts are expected by chance alone.",
            "- Every arm beats all three references on the teacher-forced metric (CE below the unigram's, accuracy "
            "above the most frequent token's and above copying the previous frame)." if not not_learned else
            f"- {', '.join(not_learned)}: does NOT beat all three references on the teacher-forced metric (CE below "
            "the unigram's, accuracy above the most frequent token's and above copying): it has not learned the "
            "dynamics."]


def learned_something(row: dict[str, Any], reference: dict[str, float]) -> bool:
    """An arm learned something only if its mean beats all three trivial references at once."""
    return (row["cross_entropy_mean"] < reference["unigram_cross_entropy"]
            and row["accuracy_mean"] > reference["unigram_accuracy"]
            and row["accuracy_mean"] > reference["copy_previous_accuracy"])


def mean_masked_fraction(arm: Arm, config: GenieConfig, batch_size: int = 8, seed: int = 0) -> float:
    """The fraction of tokens stage 1 really masks, averaged over its steps (patterns, prompt frames,
    the lattice and the visible first frame all lower it below the nominal ratio)."""
    collator = get_masked_pretrain_collator(MaskedPretrainConfig(**arm.stage1), config, arm.stage1_steps)
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, config.T, config.S)
    fractions = [collator.build_mask(shape, collator.mask_ratio(step), generator).float().mean().item()
                 for step in range(arm.stage1_steps)]
    return sum(fractions) / len(fractions)
