"""Does masked pretraining help, and with which mask-ratio schedule?

For each schedule in {cosine, linear, exponential} and each seed: stage 1 (masked pretraining,
`--stage1_steps`) then stage 2 (autoregressive, `--stage2_steps`) from its weights. Beside them,
stage 2 alone from scratch for the same total number of steps. Every arm is scored with the
temporally teacher-forced metric on the same val windows, next to the unigram and
copy-previous-frame references. Writes results.csv, results.md and ablation.png to --output_dir.
A rerun skips arms that already finished (their eval.json exists).

    python scripts/schedule_ablation.py                           # default budget: ~20-25 min on 2 CPU cores
    python scripts/schedule_ablation.py --genie_config configs/genie_35m.json --stage1_steps 20000 \
        --stage2_steps 20000 --seeds 0,1,2 --train_data_dir D --val_data_dir V --stride 15   # on a GPU
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from genie.cli import parse, run_cli  # noqa: E402
from genie.config import ConfigError, GenieConfig  # noqa: E402
from genie.eval_report import evaluate_checkpoint, json_safe  # noqa: E402
from genie.evaluation import EvalOptions  # noqa: E402
from genie.masked_pretrain_config import MaskedPretrainConfig  # noqa: E402
from genie.run_logging import read_metrics  # noqa: E402
from genie.schedules import MASK_SCHEDULES  # noqa: E402
from genie.stages import HandOffArguments, run_autoregressive, run_masked_pretrain  # noqa: E402
from genie.training_args import TrainingArguments  # noqa: E402

SCRATCH = "scratch"


@dataclass
class AblationArguments:
    output_dir: str = "results/schedule_ablation"
    genie_config: str = "configs/small.json"
    train_data_dir: str | None = None
    val_data_dir: str | None = None
    stride: int = 1
    schedules: str = field(default="cosine,linear,exponential", metadata={"help": "Comma-separated."})
    seeds: str = field(default="0,1,2", metadata={"help": "Comma-separated seeds; mean ± std is over these."})
    stage1_steps: int = 400
    stage2_steps: int = 400
    initial_mask_ratio: float = 0.8
    final_mask_ratio: float = 0.1
    mask_all_frames: bool = False
    batch_size: int = 8
    learning_rate: float = 1e-3
    eval_every_n_steps: int = 100
    max_eval_steps: int = 4
    final_eval_examples: int = 256
    mixed_precision: str = "no"

    def schedule_list(self) -> list[str]:
        names = [s.strip() for s in self.schedules.split(",") if s.strip()]
        unknown = [s for s in names if s not in MASK_SCHEDULES]
        if unknown or not names:
            raise ConfigError(f"--schedules {self.schedules!r}: unknown {unknown}; choose from {MASK_SCHEDULES}")
        return names

    def seed_list(self) -> list[int]:
        try:
            return [int(s) for s in self.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {self.seeds!r} must be comma-separated integers") from None


def stage_arguments(args: AblationArguments, seed: int, steps: int, out: Path) -> TrainingArguments:
    """The training arguments every arm shares; each run folder is replaced if a killed arm left one."""
    return TrainingArguments(
        genie_config=args.genie_config, output_dir=str(out), seed=seed, max_train_steps=steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, lr_scheduler_type="cosine",
        num_warmup_steps=min(20, steps // 10), eval_every_n_steps=args.eval_every_n_steps,
        max_eval_steps=args.max_eval_steps, checkpointing_steps=10 ** 9, log_every_n_steps=25, stride=args.stride,
        mixed_precision=args.mixed_precision, overwrite_output_dir=True, train_data_dir=args.train_data_dir,
        val_data_dir=args.val_data_dir)


def run_arm(args: AblationArguments, arm: str, seed: int, root: Path) -> dict:
    """Train one arm (resumably) and return its final evaluation."""
    arm_dir = root / "arms" / f"{arm}-seed{seed}"
    result_path = arm_dir / "eval.json"
    if result_path.is_file():
        print(f"[skip] {arm} seed {seed}: already finished")
        return json.loads(result_path.read_text())
    hand_off = HandOffArguments()
    if arm == SCRATCH:
        stage2_steps = args.stage1_steps + args.stage2_steps
    else:
        stage1_dir = arm_dir / "stage1"
        if not (stage1_dir / "masked_pretrain_final" / "model.safetensors").is_file():
            masking = MaskedPretrainConfig(mask_schedule=arm, initial_mask_ratio=args.initial_mask_ratio,
                                           final_mask_ratio=args.final_mask_ratio, mask_all_frames=args.mask_all_frames)
            run_masked_pretrain(stage_arguments(args, seed, args.stage1_steps, stage1_dir), masking)
        hand_off.masked_pretrain_checkpoint = str(stage1_dir / "masked_pretrain_final")
        stage2_steps = args.stage2_steps
    stage2_dir = arm_dir / "stage2"
    run_autoregressive(stage_arguments(args, seed, stage2_steps, stage2_dir), hand_off)

    metrics = evaluate_checkpoint(stage2_dir / "final_model", args.train_data_dir, args.val_data_dir, EvalOptions(),
                                  batch_size=16, max_examples=args.final_eval_examples, stride=args.stride)
    metrics = json_safe(metrics | {"arm": arm, "seed": seed})
    result_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_results(args: AblationArguments, results: list[dict], root: Path) -> str:
    arms = [s for s in args.schedule_list()] + [SCRATCH]
    rows = []
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        ce, acc = mean_std([r["cross_entropy"] for r in runs]), mean_std([r["accuracy"] for r in runs])
        rows.append({"arm": arm, "seeds": len(runs), "tf_cross_entropy_mean": ce[0], "tf_cross_entropy_std": ce[1],
                     "tf_accuracy_mean": acc[0], "tf_accuracy_std": acc[1]})
    ref = results[0]
    with (root / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["unigram_cross_entropy", "copy_previous_accuracy"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "unigram_cross_entropy": ref["unigram_cross_entropy"],
                             "copy_previous_accuracy": ref["copy_previous_accuracy"]})
    label = {SCRATCH: f"stage 2 only, {args.stage1_steps + args.stage2_steps} steps"}
    lines = [
        "# Mask-ratio schedule ablation",
        "",
        f"Config `{args.genie_config}`; seeds {args.seed_list()}; stage 1 {args.stage1_steps} steps "
        f"(mask ratio {args.initial_mask_ratio} -> {args.final_mask_ratio}) then stage 2 {args.stage2_steps} steps, "
        f"vs stage 2 only for {args.stage1_steps + args.stage2_steps} steps. Batch {args.batch_size}, "
        f"lr {args.learning_rate} (cosine). Metric: temporally teacher-forced cross-entropy (nats/token, sum over "
        f"factors) and token accuracy on {ref['num_windows']} val windows ({ref['num_tokens']} tokens); "
        "mean ± std over seeds.",
        "",
        "| arm | cross-entropy | accuracy |",
        "|---|---|---|",
    ]
    for row in rows:
        name = label.get(row["arm"], f"{row['arm']} pretraining + stage 2")
        lines.append(f"| {name} | {row['tf_cross_entropy_mean']:.4f} ± {row['tf_cross_entropy_std']:.4f} | "
                     f"{row['tf_accuracy_mean']:.4f} ± {row['tf_accuracy_std']:.4f} |")
    lines += [f"| unigram of train tokens (reference) | {ref['unigram_cross_entropy']:.4f} | "
              f"{ref['unigram_accuracy']:.4f} |",
              f"| copy previous frame (reference) | - | {ref['copy_previous_accuracy']:.4f} |", ""]
    best = min(rows, key=lambda r: r["tf_cross_entropy_mean"])
    scratch = next(r for r in rows if r["arm"] == SCRATCH)
    pretrained = [r for r in rows if r["arm"] != SCRATCH]
    best_pre = min(pretrained, key=lambda r: r["tf_cross_entropy_mean"])
    gap = scratch["tf_cross_entropy_mean"] - best_pre["tf_cross_entropy_mean"]
    noise = max(scratch["tf_cross_entropy_std"], best_pre["tf_cross_entropy_std"])
    verdict = ("helped" if gap > 2 * noise and gap > 0 else "hurt" if -gap > 2 * noise and gap < 0
               else "made no difference beyond the seed-to-seed spread")
    lines.append(f"Best arm: {best['arm']}. Best pretrained arm ({best_pre['arm']}) vs stage 2 only at equal total steps: "
                 f"{gap:+.4f} nats (positive = pretraining better); at this budget masked pretraining {verdict}.")
    text = "\n".join(lines) + "\n"
    (root / "results.md").write_text(text)
    plot(args, root)
    return text


def plot(args: AblationArguments, root: Path) -> None:
    fig, (ax_ratio, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    seed = args.seed_list()[0]
    for arm in args.schedule_list():
        records = read_metrics(root / "arms" / f"{arm}-seed{seed}" / "stage1" / "metrics.jsonl")
        points = [(r["step"], r["mask_ratio"]) for r in records if "mask_ratio" in r]
        ax_ratio.plot(*zip(*points), label=arm)
    ax_ratio.set(xlabel="stage-1 optimizer step", ylabel="mask ratio (as logged)", title="mask-ratio schedules")
    ax_ratio.legend()
    for arm in args.schedule_list() + [SCRATCH]:
        for k, s in enumerate(args.seed_list()):
            arm_dir = root / "arms" / f"{arm}-seed{s}"
            offset = 0 if arm == SCRATCH else args.stage1_steps
            points = []
            if arm != SCRATCH:
                points += [(r["step"], r["val/tf_cross_entropy"]) for r in read_metrics(arm_dir / "stage1" / "metrics.jsonl")
                           if "val/tf_cross_entropy" in r]
            points += [(r["step"] + offset, r["val/tf_cross_entropy"]) for r in read_metrics(arm_dir / "stage2" / "metrics.jsonl")
                       if "val/tf_cross_entropy" in r]
            color = {"cosine": "C0", "linear": "C1", "exponential": "C2", SCRATCH: "k"}.get(arm, None)
            ax_loss.plot(*zip(*points), color=color, alpha=0.8, linestyle="-" if k == 0 else "--",
                         label=arm if k == 0 else None)
    ax_loss.axvline(args.stage1_steps, color="grey", linewidth=0.8)
    ax_loss.set(xlabel="total optimizer steps (stage 1 + stage 2)", ylabel="val teacher-forced CE (nats/token)",
                title="val loss per arm (dashed: other seeds)")
    ax_loss.legend()
    fig.tight_layout()
    fig.savefig(root / "ablation.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    (args,) = parse([AblationArguments], __doc__.split("\n")[0], argv)
    GenieConfig.from_json_file(args.genie_config)  # fail fast on a bad config
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    results = [run_arm(args, arm, seed, root) for arm in args.schedule_list() + [SCRATCH] for seed in args.seed_list()]
    text = write_results(args, results, root)
    print(text)
    return text


if __name__ == "__main__":
    run_cli(main)
