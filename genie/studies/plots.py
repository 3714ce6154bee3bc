"""A study's pictures: val loss over training per arm, and the metrics against the swept value."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from genie.studies.spec import LABELS, LOWER_IS_BETTER, Arm, StudySpec  # noqa: E402


def plot_curves(spec: StudySpec, cells: list, cell_curves: dict[tuple[str, int], list[tuple[int, float]]],
                path: Path) -> None:
    """Stage-2 val CE against total optimizer steps (stage-1 steps included), mean over the seeds that have
    a curve, per arm, baseline (dashed) and control (dotted). `cell_curves`: (arm name, seed) -> its
    (stage-2 step, val CE) points (none for a cell an earlier report scored without its curve)."""
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        for step, ce in cell_curves[(cell.arm.name, cell.seed)]:
            curves[cell.arm.name][step + cell.arm.stage1_steps].append(ce)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    arms = {c.arm.name: c.arm for c in cells}
    for name, points in curves.items():
        steps = sorted(points)
        style = curve_style(arms[name], list(arms.values()))
        ax.plot(steps, [np.mean(points[s]) for s in steps], label=name, **style)
    drawn = sorted({seed for (_, seed), points in cell_curves.items() if points})
    over = (f"{len(drawn)} seeds" if len(drawn) == len(spec.seeds) else f"the {len(drawn)} seeds with a curve, {drawn}"
            if drawn else "no seed: no run here has a curve")
    ax.set(xlabel="total optimizer steps (stage 1 + stage 2)", ylabel="val teacher-forced CE (nats/token)",
           title=f"{spec.name}: stage-2 val CE (in-training eval),\nmean over {over}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: it hides no curve
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Masked arms that share a colour, in order; none is a baseline's (s, ^) or the control's (D) marker, and
# the first is the one marker of arms that each have their own colour.
ARM_MARKERS = ("o", "X", "P", "*", "h", "p")


def curve_style(arm: Arm, arms: list[Arm]) -> dict[str, Any]:
    """How `arm`'s curve is drawn among `arms`: the line style tells the role (solid: arm, dashed: stage 2
    alone, dotted: control); the colour tells the stage-2 data when arms differ in it (a label-scarce study),
    else each curve has its own; arms that share a colour and role (two mask patterns at one label fraction)
    differ by their marker."""
    by_data = len({a.data_label for a in arms}) > 1
    colour_of = (lambda a: a.data_label) if by_data else (lambda a: a.name)
    colours = list(dict.fromkeys(colour_of(a) for a in arms))
    if arm.role == "arm":
        siblings = [a.name for a in arms if a.role == "arm" and colour_of(a) == colour_of(arm)]
        linestyle, marker = "-", ARM_MARKERS[siblings.index(arm.name) % len(ARM_MARKERS)]
    elif arm.role == "baseline" and arm.stage2_steps != max(a.stage2_steps for a in arms):
        linestyle, marker = "-.", "^"  # the shorter of two baselines
    else:
        linestyle, marker = {"baseline": ("--", "s"), "control": (":", "D")}[arm.role]
    return {"color": f"C{colours.index(colour_of(arm)) % 10}", "linestyle": linestyle, "marker": marker,
            "markersize": 4}


# The trivial references drawn beside a primary metric: (report key, label).
REFERENCES = {"cross_entropy": [("unigram_cross_entropy", "unigram (reference)")],
              "changed_cross_entropy": [("changed_unigram_cross_entropy", "unigram (reference)")],
              "accuracy": [("unigram_accuracy", "most frequent token"), ("copy_previous_accuracy", "copy previous frame")],
              "changed_accuracy": [("changed_unigram_accuracy", "most frequent token")]}


def plot_swept(spec: StudySpec, rows: list[dict[str, Any]], path: Path, reference: dict[str, float]) -> None:
    """Left: the primary metric per arm (mean ± std) against the swept value, each comparator (baselines,
    control) and the trivial references beside it. Right: the primary contrast's paired difference with
    its 95% interval."""
    metric = spec.primary_metric
    arms = {a.name: a for a in spec.arm_list()}
    by_name = {r["arm"]: r for r in rows}
    arm_rows = [r for r in rows if r["baseline"]]
    values = [r["value"] if r["value"] is not None else r["arm"] for r in arm_rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    x = np.asarray(values, dtype=float) if numeric else np.arange(len(arm_rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [("stage 1 + stage 2", arm_rows, {"fmt": "o-" if numeric else "o"})]
    styles = {"equal_total_steps": {"fmt": "s--", "color": "black"}, "equal_stage2_steps": {"fmt": "^:", "color": "C3"},
              "autoregressive_stage1": {"fmt": "D-.", "color": "grey"}}
    for kind in spec.baselines + spec.controls:
        comparator_rows = [by_name[spec.comparators(arms[r["arm"]])[kind].name] for r in arm_rows]
        series.append((f"{kind.replace('_', ' ')} ({'control' if kind in spec.controls else 'stage 2 alone'})",
                       comparator_rows, styles[kind] | ({} if numeric else {"fmt": styles[kind]["fmt"][0]})))
    for offset, (label, series_rows, style) in enumerate(series):
        shift = 0 if numeric else (offset - (len(series) - 1) / 2) * 0.08  # categories: side by side
        left.errorbar(x + shift, [r[f"{metric}_mean"] for r in series_rows], [r[f"{metric}_std"] for r in series_rows],
                      capsize=3, label=label, **style)
    for k, (key, label) in enumerate(REFERENCES.get(metric, [])):
        if reference.get(key) is not None:
            left.axhline(reference[key], color="black", linestyle=(0, (1, 3 + 2 * k)), linewidth=1, label=label)
    left.set(ylabel=LABELS[metric], title="mean ± std over seeds")
    left.legend(fontsize=8)
    diff = np.array([r[f"{metric}_diff"] for r in arm_rows])
    low, high = np.array([r[f"{metric}_diff_low"] for r in arm_rows]), np.array([r[f"{metric}_diff_high"] for r in arm_rows])
    right.errorbar(x, diff, np.nan_to_num(np.vstack([diff - low, high - diff])), fmt="o", capsize=4)
    right.axhline(0.0, color="black", linewidth=0.8)
    better = "< 0" if LOWER_IS_BETTER[metric] else "> 0"
    right.set(ylabel=f"Δ vs {spec.primary_versus} ({better}: pretraining helps)",
              title="primary contrast: paired difference, 95% interval")
    for ax in (left, right):
        ax.set_xlabel(spec.swept or "arm")
        if numeric and x.min() > 0 and x.max() / x.min() >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(x, [str(v) for v in values], rotation=20, ha="right", fontsize=8)
    fig.suptitle(spec.title or spec.name, fontsize=10, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
