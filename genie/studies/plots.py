"""A study's pictures: val loss over training per arm, and the metrics against the swept value."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from genie.training.run_logging import read_metrics  # noqa: E402
from genie.studies.spec import StudySpec  # noqa: E402

CURVE_KEY = "val/tf_cross_entropy"


def plot_curves(spec: StudySpec, cells: list, path: Path) -> None:
    """Stage-2 val CE against total optimizer steps (stage-1 steps included), mean over seeds, per arm;
    stage 2 alone in black."""
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        offset = cell.arm.stage1_steps
        for record in read_metrics(cell.task.folder / "metrics.jsonl"):
            if CURVE_KEY in record:
                curves[cell.arm.name][record["step"] + offset].append(record[CURVE_KEY])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    pretrained = {c.arm.name: c.arm.pretrained for c in cells}
    for k, (name, points) in enumerate(curves.items()):
        steps = sorted(points)
        style = {"color": f"C{k % 10}"} if pretrained[name] else {"color": "black", "linewidth": 2}
        ax.plot(steps, [np.mean(points[s]) for s in steps], marker=".", label=name, **style)
    ax.set(xlabel="total optimizer steps (stage 1 + stage 2)", ylabel="val teacher-forced CE (nats/token)",
           title=f"{spec.name}: stage-2 val loss (in-training eval), mean over {len(spec.seeds)} seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_swept(spec: StudySpec, rows: list[dict[str, Any]], path: Path) -> None:
    """Left: CE per arm (mean ± std) against the swept value, stage 2 alone beside it. Right: the paired
    difference to stage 2 alone with its 95% interval."""
    arms = [r for r in rows if r["baseline"]]
    baselines = {r["arm"]: r for r in rows if not r["baseline"]}
    values = [r["value"] if r["value"] is not None else r["arm"] for r in arms]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    x = np.asarray(values, dtype=float) if numeric else np.arange(len(arms))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.errorbar(x, [r["cross_entropy_mean"] for r in arms], [r["cross_entropy_std"] for r in arms],
                  fmt="o-" if numeric else "o",
                  capsize=3, label="stage 1 + stage 2")
    base = [baselines[r["baseline"]] for r in arms]
    left.errorbar(x, [b["cross_entropy_mean"] for b in base], [b["cross_entropy_std"] for b in base],
                  fmt="s--" if numeric else "s",
                  color="black", capsize=3, label="stage 2 alone (its baseline)")
    left.set(ylabel="teacher-forced CE (nats/token)", title="CE, mean ± std over seeds")
    left.legend(fontsize=8)
    diff = np.array([r["cross_entropy_diff"] for r in arms])
    low = np.array([r["cross_entropy_diff_low"] for r in arms])
    high = np.array([r["cross_entropy_diff_high"] for r in arms])
    right.errorbar(x, diff, np.nan_to_num(np.vstack([diff - low, high - diff])), fmt="o", capsize=4)
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set(ylabel="Δ CE vs stage 2 alone (< 0: pretraining helps)", title="paired difference, 95% interval")
    for ax in (left, right):
        ax.set_xlabel(spec.swept or "arm")
        if not numeric:
            ax.set_xticks(x, [str(v) for v in values], rotation=20, ha="right", fontsize=8)
    fig.suptitle(spec.title or spec.name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
