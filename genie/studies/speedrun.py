"""Time to dynamics: how many steps, training windows and training seconds a recipe needs before the
model predicts the tokens that change (changed-token CE and accuracy targets on a fixed val subset).

Each (variant, seed) trains once into `<output>/runs/` with a checkpoint every `eval_every` steps; every
checkpoint is then scored with the one evaluation of genie/evaluation (teacher-forced, MaskGIT
samples, no rollouts) on the first `eval_windows` val windows. Steps to a target are exact for a seed;
seconds are steps x seconds per step, the latter timed in one process, alternating each variant with
the baseline round by round (ABBA) at one thread, so that the machine's load cancels out of the ratio.
Evaluation time is recorded on its own and never counted as training.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genie.checkpointing.run_folder import is_run_folder, step_folders
from genie.data import open_dataset, resolve_data_dirs
from genie.data.sources import DataOptions
from genie.errors import ConfigError, RunStopped, check_flag
from genie.evaluation.loop import evaluate_checkpoint
from genie.evaluation.scores import EvalOptions, unigram_log_probs
from genie.model.config import GenieConfig
from genie.studies.runs import code_version
from genie.studies.speedrun_recipes import MAIN_JOB, TRACKS, VARIANTS, Track, Variant
from genie.studies.stats import mean_interval
from genie.training.arguments import TrainingArguments
from genie.training.curriculum import FrameCurriculum
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.stages import HandOffArguments, run_autoregressive, run_masked_pretrain


@dataclass
class SpeedrunSettings:
    world: str
    variants: list[str]
    seeds: list[int]
    output_dir: Path
    data_dir: str | None = None
    genie_config: str | None = None  # overrides the world's (the smoke test's tiny model)
    eval_every: int = 50
    eval_windows: int = 64
    timing_steps: int = 5
    timing_rounds: int = 6
    steps: int | None = None  # the main job's stage-2 steps instead of 800: every variant's stages scale with it

    def __post_init__(self) -> None:
        for name in ("eval_every", "eval_windows", "timing_steps", "timing_rounds"):
            check_flag(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        check_flag(self.steps is None or self.steps >= 1, "steps", self.steps, "must be >= 1")
        check_flag(bool(self.variants), "variants", "", "must name at least one variant")
        check_flag(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds,
                   "must list distinct seeds (3 or more for a result)")

    def world_spec(self) -> Track:
        if self.world not in TRACKS:
            raise ConfigError(f"--world {self.world!r} is unknown; choose one of {', '.join(TRACKS)}")
        world = TRACKS[self.world]
        data_dir = self.data_dir or world.data_dir
        if world.recorded and not (data_dir and (Path(data_dir) / "train").is_dir()):
            raise ConfigError(f"--world {self.world} needs --data_dir: a folder with train/ and val/ recorded by "
                              "scripts/record_atari.py --seed 0 (e.g. by scripts/atari.sh)")
        return dataclasses.replace(world, data_dir=data_dir, genie_config=self.genie_config or world.genie_config)

    def variant(self, name: str) -> Variant:
        if name not in VARIANTS:
            raise ConfigError(f"--variants: {name!r} is unknown; choose from {', '.join(VARIANTS)}")
        variant = VARIANTS[name]
        if self.genie_config:  # an explicit model config (e.g. the smoke test's tiny one) wins over the variant's
            variant = dataclasses.replace(variant, genie_config=None)
        if self.steps is None:
            return variant
        # Every variant in proportion: a batch-8 recipe keeps twice the main job's steps, a short one its share.
        scale = self.steps / VARIANTS["main_job"].steps
        stage1 = max(1, round(variant.stage1_steps * scale)) if variant.stage1_steps else 0
        return dataclasses.replace(variant, steps=max(1, round(variant.steps * scale)), stage1_steps=stage1)


def training_arguments(world: Track, variant: Variant, seed: int, output_dir: Path, stage1: bool,
                       checkpoint_every: int) -> TrainingArguments:
    """The flags of one stage of a speedrun run: the main job's, the variant's, cheap in-training evaluation."""
    data = {}
    if world.data_dir:
        data = {"train_data_dir": str(Path(world.data_dir) / "train"), "val_data_dir": str(Path(world.data_dir) / "val")}
    flags = stage_flags(variant, stage1)
    if world.builtin_world:
        flags["builtin_world"] = world.builtin_world
    steps = variant.stage1_steps if stage1 else variant.steps
    return TrainingArguments(genie_config=variant.genie_config or world.genie_config, seed=seed,
                             output_dir=str(output_dir),
                             max_train_steps=steps, checkpointing_steps=steps if stage1 else checkpoint_every,
                             eval_every_n_steps=10 ** 9, max_eval_steps=1, eval_loss_only=True,
                             log_every_n_steps=max(1, min(50, steps)), **data, **flags)


def run_key(world: Track, variant: Variant, seed: int, settings: SpeedrunSettings) -> str:
    """A folder name that changes with anything that changes the run's result, the code that trains and
    scores it included (as a study's runs: genie.studies.runs.code_version)."""
    import hashlib

    trained_on = {"genie_config": world.genie_config, "data_dir": world.data_dir,  # not the targets: they score
                  "code": code_version()}
    if world.builtin_world:
        trained_on["builtin_world"] = world.builtin_world
    recipe = {k: v for k, v in dataclasses.asdict(variant).items() if k != "genie_config" or v is not None}
    identity = json.dumps([trained_on, recipe, seed, settings.eval_every], sort_keys=True, default=str)
    return f"seed{seed}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"


def train_run(world: Track, name: str, variant: Variant, seed: int, settings: SpeedrunSettings) -> Path:
    """Train a variant at a seed (stage 1 first if it has one) unless its folder already holds the finished
    run; a run stopped before (a kill, a signal) continues from its newest checkpoint. Returns the stage-2
    run folder, which has a step_N/ every eval_every steps."""
    root = run_root(world, name, variant, seed, settings)
    stage2 = root / "stage2"
    if (stage2 / "final_model" / "model.safetensors").is_file():
        return stage2
    hand_off = None
    if variant.stage1_steps:
        stage1 = root / "stage1"
        if not (stage1 / "masked_pretrain_final" / "model.safetensors").is_file():
            args = training_arguments(world, variant, seed, stage1, True, settings.eval_every)
            finish(run_masked_pretrain(continuing(args, stage1), MaskedPretrainConfig(**variant.stage1)), stage1)
        hand_off = HandOffArguments(masked_pretrain_checkpoint=str(stage1))
    args = training_arguments(world, variant, seed, stage2, False, settings.eval_every)
    finish(run_autoregressive(continuing(args, stage2), hand_off), stage2)
    return stage2


def run_root(world: Track, name: str, variant: Variant, seed: int, settings: SpeedrunSettings) -> Path:
    return settings.output_dir / "runs" / name / run_key(world, variant, seed, settings)


def continuing(args: TrainingArguments, folder: Path) -> TrainingArguments:
    """Resume a run folder left by a stopped or killed speedrun (exactly, from its newest checkpoint)."""
    if is_run_folder(folder):
        args.resume_from_checkpoint = "latest"
    return args


def finish(result: dict[str, Any], folder: Path) -> None:
    if "stopped_by" in result:  # a stop request saved a checkpoint: the run is not done, nothing is scored
        raise RunStopped(f"the speedrun stopped on {result['stopped_by']} during {folder}; run the same command "
                         "again to continue (finished runs and scores are kept)")


SCORED = ("changed_cross_entropy", "changed_accuracy", "cross_entropy", "accuracy", "changed_unigram_cross_entropy",
          "unigram_cross_entropy", "changed_unigram_accuracy", "changed_fraction")


def score_run(world: Track, stage2: Path, settings: SpeedrunSettings) -> list[dict[str, Any]]:
    """Every step_N/ of a stage-2 run scored on the first eval_windows val windows (teacher-forced
    metric with MaskGIT samples, no rollouts); cached in the run folder, so a rerun only scores what is new."""
    cache = stage2.parent / "scores.jsonl"  # beside the run folder, which holds only what a run writes
    scores = {r["step"]: r for r in map(json.loads, cache.read_text().splitlines())} if cache.is_file() else {}
    data = (Path(world.data_dir) / "train", Path(world.data_dir) / "val") if world.data_dir else (None, None)
    options = EvalOptions(rollout=False, action_sensitivity=False, seed=0)
    unigram = None  # the training tokens' unigram, read once for all checkpoints of the run
    for folder in reversed(step_folders(stage2)):
        step = int(folder.name.split("_")[1])
        if step in scores:
            continue
        if unigram is None:
            config = GenieConfig.from_json_file(folder / "config.json")
            train_dir = resolve_data_dirs(*data, config, DataOptions().with_world_of(folder))[0]  # the run's world
            unigram = unigram_log_probs(open_dataset(train_dir, config).frame_arrays(), config.image_vocab_size)
        start = time.perf_counter()
        report = evaluate_checkpoint(folder, *data, options=options, batch_size=16, max_examples=settings.eval_windows,
                                     stride=world.stride, log_probs=unigram)
        scores[step] = {"step": step, **{k: report.get(k) for k in SCORED}, "num_windows": report["num_windows"],
                        "eval_seconds": time.perf_counter() - start}
        with cache.open("a") as f:
            f.write(json.dumps(scores[step]) + "\n")
    return [scores[s] for s in sorted(scores)]


def first_reached(points: list[dict[str, Any]], targets: tuple[tuple[str, str, float | str], ...]
                  ) -> dict[str, int | None]:
    """The first scored step at which each target holds (None: never), and 'all' for every target at once.
    A target's value may name a reference scored with the point (e.g. the changed-token unigram's CE)."""
    def holds(point, metric, sense, value):
        bar = point.get(value) if isinstance(value, str) else value
        if point[metric] is None or bar is None:
            return False
        return point[metric] <= bar if sense == "<=" else point[metric] >= bar

    reached = {target_name(t): next((p["step"] for p in points if holds(p, *t)), None) for t in targets}
    reached["all"] = next((p["step"] for p in points if all(holds(p, *t) for t in targets)), None)
    return reached


def target_name(target: tuple[str, str, float | str]) -> str:
    metric, sense, value = target
    return f"{metric} {sense} {value if isinstance(value, str) else format(value, 'g')}"


def step_function(world: Track, variant: Variant, stage1: bool, folder: Path, steps: int, frames: int | None = None):
    """A Trainer for one stage of `variant` (in a scratch run folder) and a function that takes `steps`
    optimizer steps with it: what the timing alternates. `frames`: every step on windows of that many
    frames (a curriculum phase), else on all T."""
    from genie.studies.timing import stepping_trainer
    from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective
    from genie.training.stages import initial_model

    args = training_arguments(world, variant, 0, folder, stage1, 10 ** 9)
    args.max_train_steps, args.checkpointing_steps, args.overwrite_output_dir = 10 ** 6, 10 ** 9, True
    # The timed steps are the first of 10**6: a curriculum's first half covers them all.
    args.curriculum_frames, args.curriculum_fractions = (str(frames), "0.5") if frames else ("", "")
    config, model, _ = initial_model(args)
    objective = (MaskedPretrainObjective(config, MaskedPretrainConfig(**variant.stage1),
                                         changed_token_loss_weight=args.changed_token_loss_weight) if stage1
                 else AutoregressiveObjective(config, args.changed_token_loss_weight, args.dynamics_mask_focus))
    return stepping_trainer(args, objective, model, steps)


def seconds_per_step(world: Track, variants: dict[str, Variant], settings: SpeedrunSettings) -> dict[str, Any]:
    """Seconds per optimizer step of every stage of every variant, each timed ABBA against the first
    variant's stage 2 (the baseline) in this process at one thread; the baseline's own figure is the
    median over all its rounds."""
    import tempfile

    import torch

    from genie.studies.timing import compare_abba, machine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    k, timings = settings.timing_steps, {}
    try:
        with tempfile.TemporaryDirectory(dir=settings.output_dir) as scratch:
            baseline_name, baseline = next(iter(variants.items()))
            reference, reference_step = step_function(world, baseline, False, Path(scratch) / "reference", k)
            baseline_rounds = []
            for name, variant in variants.items():
                stages = (["stage1"] if variant.stage1_steps else []) + [key for key, _, _ in stage2_phases(variant)]
                for stage in stages:
                    frames = int(stage.split("@")[1]) if "@" in stage else None
                    trainer, step = step_function(world, variant, stage == "stage1", Path(scratch) / f"{name}-{stage}",
                                                  k, frames)
                    timing = compare_abba(step, reference_step, settings.timing_rounds)
                    trainer.close()
                    timings[f"{name}/{stage}"] = {"s_per_step": timing["ours_s"] / k,
                                                  "baseline_s_per_step": timing["reference_s"] / k,
                                                  "speed_vs_baseline": timing["ratio"],
                                                  "speed_vs_baseline_range": [timing["ratio_min"], timing["ratio_max"]]}
                    baseline_rounds.append(timing["reference_s"] / k)
            reference.close()
    finally:
        torch.set_num_threads(threads)
    return {"baseline": f"{baseline_name}/stage2", "steps_per_round": k, "rounds": settings.timing_rounds,
            "machine": machine() | {"threads": 1}, "stages": timings}


def stage_flags(variant: Variant, stage1: bool) -> dict[str, Any]:
    """The training flags of one stage: stage 1 always trains with the main job's, stage 2 with the variant's
    over them."""
    return {**MAIN_JOB, **({} if stage1 else variant.stage2)}


def windows_per_step(variant: Variant, stage1: bool = False) -> int:
    flags = stage_flags(variant, stage1)
    return flags["per_device_train_batch_size"] * flags.get("gradient_accumulation_steps", 1)


def training_windows(variant: Variant, step: int) -> int:
    """Windows trained on up to stage-2 `step`, each stage at its own batch."""
    return variant.stage1_steps * windows_per_step(variant, stage1=True) + step * windows_per_step(variant)


def stage2_phases(variant: Variant) -> list[tuple[str, int, int]]:
    """(timing key, first step, end step) of each window length of stage 2: 'stage2@F' for a curriculum's
    F-frame phase, 'stage2' for the full windows."""
    flags = {**MAIN_JOB, **variant.stage2}
    curriculum = FrameCurriculum.from_flags(flags.get("curriculum_frames", ""), flags.get("curriculum_fractions", ""))
    ends = [*curriculum.phase_ends(variant.steps), variant.steps]
    keys = [f"stage2@{frames}" for frames in curriculum.frames] + ["stage2"]
    return list(zip(keys, [0, *ends[:-1]], ends))


def training_seconds(variant: Variant, name: str, step: int, timing: dict[str, Any]) -> float:
    """Training seconds to reach stage-2 `step`: the stage-1 steps and the stage-2 steps, each at its
    ABBA-timed seconds per step (a curriculum's phases each at their own; evaluation excluded)."""
    stages = timing["stages"]
    stage1 = variant.stage1_steps * stages[f"{name}/stage1"]["s_per_step"] if variant.stage1_steps else 0.0
    return stage1 + sum(max(0, min(step, end) - start) * stages[f"{name}/{key}"]["s_per_step"]
                        for key, start, end in stage2_phases(variant))


def summarize_variant(name: str, variant: Variant, runs: dict[int, list[dict[str, Any]]], world: Track,
                      timing: dict[str, Any]) -> dict[str, Any]:
    """Per target: steps, windows and training seconds to reach it (mean and 95% interval over the seeds
    that reached it, and how many did), and the final all-token and changed-token CE."""
    per_seed = {seed: first_reached(points, world.targets) for seed, points in runs.items()}
    targets = {}
    for target in next(iter(per_seed.values())):
        steps = [s[target] for s in per_seed.values() if s[target] is not None]
        targets[target] = {"reached": f"{len(steps)} of {len(per_seed)}", "steps": mean_interval(steps),
                           "windows": mean_interval([training_windows(variant, s) for s in steps]),
                           "seconds": mean_interval([training_seconds(variant, name, s, timing) for s in steps])}
    finals = [points[-1] for points in runs.values()]
    return {"variant": name, "description": variant.description, "seeds": sorted(runs), "targets": targets,
            "whole_run_seconds": training_seconds(variant, name, variant.steps, timing),
            "per_seed": per_seed, "final_step": finals[0]["step"],
            "final_cross_entropy": mean_interval([p["cross_entropy"] for p in finals]),
            "final_changed_cross_entropy": mean_interval([p["changed_cross_entropy"] for p in finals]),
            "final_changed_accuracy": mean_interval([p["changed_accuracy"] for p in finals]),
            "eval_seconds": sum(p["eval_seconds"] for points in runs.values() for p in points)}


def format_table(summaries: list[dict[str, Any]], timing: dict[str, Any], world_name: str) -> str:
    """The result table in Markdown: one row per variant and target."""
    def cell(stat, digits=0):
        if stat["mean"] is None:
            return "not reached"
        interval = "" if stat["low"] is None else f" [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"
        return f"{stat['mean']:.{digits}f}{interval}"

    m = timing["machine"]
    lines = [f"# Time to dynamics on the {world_name} world", "",
             f"Machine: {m['cpu']}, {m['cpus']} cores, timed at 1 thread, load average {m['load_avg']}; "
             f"torch {m['torch']}. Seconds = steps x seconds per step (ABBA against {timing['baseline']}, "
             f"{timing['rounds']} rounds of {timing['steps_per_round']} steps); evaluation excluded. "
             "Means over seeds with 95% t intervals, over the seeds that reached the target.", "",
             "| variant | target | reached | steps | windows | training s | whole run s | final all-token CE | "
             "final changed CE |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        for target, t in s["targets"].items():
            lines.append(f"| {s['variant']} | {target} | {t['reached']} | {cell(t['steps'])} | {cell(t['windows'])} | "
                         f"{cell(t['seconds'], 1)} | {s['whole_run_seconds']:.1f} | {cell(s['final_cross_entropy'], 3)} | "
                         f"{cell(s['final_changed_cross_entropy'], 3)} |")
    lines += ["", "| stage | s/step (1 thread) | baseline s/step, same rounds | speed vs baseline (median, min-max) |",
              "|---|---|---|---|"]
    for stage, t in timing["stages"].items():
        low, high = t["speed_vs_baseline_range"]
        lines.append(f"| {stage} | {t['s_per_step']:.4f} | {t['baseline_s_per_step']:.4f} | "
                     f"{t['speed_vs_baseline']:.2f}x ({low:.2f}-{high:.2f}) |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, tuple[Variant, dict[int, list[dict[str, Any]]]]], timing: dict[str, Any],
                path: Path, world: Track) -> None:
    """Changed-token CE against training seconds, mean over seeds, one curve per variant, with the
    changed-token unigram's CE and the CE target as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    unigram = None
    # tab20 pairs a dark and a light shade of 10 hues: the 10 dark ones first, then the light ones (the
    # default cycle repeats after 10 curves)
    colors = plt.get_cmap("tab20").colors
    for index, (name, (variant, runs)) in enumerate(curves.items()):
        steps = sorted(set.intersection(*({p["step"] for p in points} for points in runs.values())))
        means = [np.mean([next(p["changed_cross_entropy"] for p in points if p["step"] == s) for points in runs.values()])
                 for s in steps]
        ax.plot([training_seconds(variant, name, s, timing) for s in steps], means, marker="o", markersize=3,
                color=colors[2 * index % 20 + index // 10 % 2], label=f"{name} ({len(runs)} seeds)")
        unigram = next(iter(runs.values()))[0]["changed_unigram_cross_entropy"]
    if unigram is not None:
        ax.axhline(unigram, color="grey", linestyle="--", label="unigram (changed tokens)")
    for metric, _, value in world.targets:
        if metric == "changed_cross_entropy" and not isinstance(value, str):  # a named reference is drawn above
            ax.axhline(value, color="black", linestyle=":", label=f"target {value:g}")
    ax.set(xlabel="training seconds (steps x ABBA-timed s/step, 1 thread; stage 1 included)",
           ylabel="val changed-token CE (nats/token)", title="Time to dynamics")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_speedrun(settings: SpeedrunSettings) -> str:
    """Train, score and time every variant over the seeds; write speedrun.jsonl, speedrun.md and
    speedrun.png to the output folder and return the table."""
    world = settings.world_spec()
    variants = {name: settings.variant(name) for name in settings.variants}
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    curves, records = {}, []
    for name, variant in variants.items():
        runs = {}
        for seed in settings.seeds:
            print(f"speedrun: {name}, seed {seed}: training ({variant.stage1_steps} + {variant.steps} steps)")
            stage2 = train_run(world, name, variant, seed, settings)
            runs[seed] = score_run(world, stage2, settings)
            print(f"speedrun: {name}, seed {seed}: first reached at step {first_reached(runs[seed], world.targets)}")
            records += [{"kind": "eval", "variant": name, "seed": seed, **p} for p in runs[seed]]
        curves[name] = (variant, runs)
    print(f"speedrun: timing seconds per step (ABBA against {settings.variants[0]}, 1 thread)")
    timing = seconds_per_step(world, variants, settings)
    summaries = [summarize_variant(name, variant, runs, world, timing) for name, (variant, runs) in curves.items()]
    records += [{"kind": "timing", **timing}] + [{"kind": "summary", **s} for s in summaries]
    (settings.output_dir / "speedrun.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    table = format_table(summaries, timing, settings.world)
    (settings.output_dir / "speedrun.md").write_text(table)
    plot_curves(curves, timing, settings.output_dir / "speedrun.png", world)
    return table
