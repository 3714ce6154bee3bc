"""The block a stage prints when it starts, in the manner of Hugging Face's Trainer: the data it found,
the model, the steps and the global batch, the objective's settings, where it writes and what it
resumes from. One block, readable in a log."""
from __future__ import annotations

from typing import Any

import numpy as np

from genie.errors import DataFormatError


def data_line(what: str, dataset: Any, layout: str, view: dict[str, Any] | None = None) -> str:
    """`what`: the folder, its layout, its windows and (where the format has them) its segments; `view`
    is the trainer's record of what it kept of the split (a fraction of its segments, withheld actions)."""
    line = f"{what}: {dataset.data_dir} ({layout} layout): {len(dataset):,} windows of {dataset.window_size} frames"
    view = view or {}
    if "train_segments" in view:
        line += f" from {view['train_segments']['segments']:,} of {view['train_segments']['of_segments']:,} segments"
    elif (segments := _segments(dataset)) is not None:
        line += f" from {segments:,} segments"
    if view.get("actions_withheld"):
        line += ", actions withheld"
    return line + (f", stride {dataset.stride}" if getattr(dataset, "stride", 1) != 1 else "")


def _segments(dataset: Any) -> int | None:
    """How many segments (recordings) the windows come from, when the data knows them."""
    try:
        return len(np.unique(dataset.window_segments()))
    except (AttributeError, DataFormatError):  # a format or a folder without segment ids
        return None


def parameter_count(model: Any) -> str:
    count = sum(p.numel() for p in model.parameters())
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count:,}"


def evaluation_kind(trainer: Any, final: bool) -> str:
    """What an evaluation of `trainer` computes, in a few words (Trainer.full_evaluation decides)."""
    if trainer.full_evaluation(final):
        return "full: sampling, rollouts, shuffled actions"
    scope = trainer.objective.cheap_scope()
    return (f"loss and teacher-forced CE with references{'' if scope == 'every frame' else ' on ' + scope}"
            + (" (scripts/evaluate.py gives the full metric)" if final else ""))


def start_banner(trainer: Any) -> str:
    """The start block of `trainer` (a genie.training.trainer.Trainer), built before its first step."""
    args, accelerator, config = trainer.args, trainer.accelerator, trainer.config
    data = args.data_options()
    per_epoch = max(len(trainer.train_loader) // args.gradient_accumulation_steps, 1)
    global_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    resumed = (f"resumes from {trainer.checkpoint} at step {trainer.step}" if trainer.checkpoint is not None
               else "starts from step 0")
    every = (f"every {args.eval_every_n_steps} steps" if args.eval_every_n_steps < trainer.max_steps else "at the end only")
    lines = [
        f"***** {trainer.objective.name}: {trainer.objective.describe()} *****",
        data_line("train", trainer.train_set, data.layout(trainer.train_set.data_dir)[0], trainer.train_view),
        data_line("val", trainer.val_set, data.layout(trainer.val_set.data_dir)[0]),
        f"model: {parameter_count(trainer.unwrapped)} parameters, {config.num_layers} layers, d_model {config.d_model}, "
        f"T {config.T}, S {config.S} ({config.h}x{config.w}), vocabulary {config.image_vocab_size:,}"
        f"{', actions ' + str(config.action_dims) if config.action_dims else ''} "
        f"(config: {args.genie_config or 'from the checkpoint it starts from'})",
        f"steps: {trainer.max_steps:,} ({trainer.max_steps / per_epoch:.3g} epoch(s) of {per_epoch:,} steps); "
        f"global batch {global_batch} = {args.per_device_train_batch_size} per device x {accelerator.num_processes} "
        f"process(es) x {args.gradient_accumulation_steps} accumulation",
        *([f"window curriculum: {trainer.curriculum.describe(trainer.max_steps, config.T)}"]
          if trainer.curriculum.frames else []),
        f"optimizer: {args.optimizer}, learning rate {args.learning_rate:g}"
        f"{f' (Muon {args.muon_learning_rate:g})' if args.optimizer == 'muon' else ''}, {args.lr_scheduler_type} "
        f"schedule, {args.num_warmup_steps} warm-up steps; device {accelerator.device}, precision "
        f"{accelerator.mixed_precision}",
        f"evaluation: {every} on {args.max_eval_steps} batches ({evaluation_kind(trainer, final=False)}); "
        f"final: {evaluation_kind(trainer, final=True)}",
        f"output: {trainer.output_dir} (checkpoint every {args.checkpointing_steps} steps); {resumed}; "
        f"trackers: {args.report_to}",
    ]
    return "\n".join(lines)
