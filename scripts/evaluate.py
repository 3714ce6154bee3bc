"""Evaluate a checkpoint as the 1X challenge does (teacher-forced cross-entropy of the first MaskGIT pass,
accuracy of the final MaskGIT samples), with autoregressive rollouts per horizon, beside the unigram
and copy-previous-frame references on the same windows.

    python scripts/evaluate.py --checkpoint_dir runs/main/final_model [--val_data_dir V --train_data_dir D]
        [--output_dir O]   # writes O/eval.json, O/eval.md, O/eval.png
"""
from __future__ import annotations

from dataclasses import dataclass, field

from genie.checkpointing.run_folder import check_output_folder, model_folder
from genie.cli import parse, run_cli
from genie.data import DataOptions
from genie.data.hub import checkpoint_or_hub_id
from genie.decoding import SamplingConfig
from genie.errors import ConfigError, check_flag
from genie.evaluation.loop import evaluate_checkpoint
from genie.evaluation.report import check_eval_output_dir, format_report, write_eval_outputs
from genie.evaluation.scores import EvalOptions


@dataclass
class EvaluateArguments:
    """What to evaluate and how much; the sampling flags come from genie.decoding.SamplingConfig and the
    data-format flags from genie.data.DataOptions."""
    checkpoint_dir: str = field(metadata={
        "help": "Hugging Face-format folder (config.json + model.safetensors), or a hub id (1x-technologies/GENIE_35M), "
                "downloaded into the hub's cache."})
    val_data_dir: str | None = field(default=None, metadata={"help": "Default: the built-in val split."})
    train_data_dir: str | None = field(default=None, metadata={"help": "For the unigram reference. Default: built-in."})
    stride: int | None = field(default=None, metadata={
        "help": "Frames between window frames. Default: 2 Hz from the data's metadata hz (30 Hz -> 15)."})
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass."})
    max_examples: int | None = field(default=None, metadata={"help": "Stop after this many val windows."})
    seed: int = field(default=0, metadata={"help": "Seeds random unmasking and sampling, per batch."})
    loss_only: bool = field(default=False, metadata={"help": "Cross-entropy alone: no sampling, no rollout (fastest)."})
    rollout: bool = field(default=True, metadata={"help": "Roll the model out from the prompt frames."})
    action_sensitivity: bool = field(default=True, metadata={
        "help": "Score the model again with each window given another window's actions (one more first pass)."})
    num_prompt_frames: int | None = field(default=None, metadata={
        "help": "Rollout prompt frames. Default: the config's num_prompt_frames (T // 2 if that leaves none)."})
    output_dir: str | None = field(default=None, metadata={"help": "Write eval.json, eval.md and eval.png here."})

    def __post_init__(self) -> None:
        check_flag(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check_flag(self.max_examples is None or self.max_examples >= 1, "max_examples", self.max_examples,
                   "must be >= 1 (leave it out to evaluate every window)")
        check_flag(self.stride is None or self.stride >= 1, "stride", self.stride, "must be >= 1")
        check_flag(self.num_prompt_frames is None or self.num_prompt_frames >= 1, "num_prompt_frames",
                   self.num_prompt_frames, "must be >= 1")
        check_flag(self.seed >= 0, "seed", self.seed, "must be >= 0")
        no_rollout = "--loss_only" if self.loss_only else "--no_rollout" if not self.rollout else None
        check_flag(self.num_prompt_frames is None or not no_rollout, "num_prompt_frames", self.num_prompt_frames,
                   f"sets the rollout's prompt, and {no_rollout} makes no rollout; leave one of the two out")
        check_output_folder(self.output_dir)
        check_eval_output_dir(self.output_dir)


def main(argv: list[str] | None = None) -> dict:
    args, sampling, data = parse([EvaluateArguments, SamplingConfig, DataOptions], __doc__, argv)
    changed = [f"--{name}" for name, value in vars(sampling).items() if value != getattr(SamplingConfig(), name)]
    if args.loss_only and changed:
        raise ConfigError(f"--loss_only scores the first MaskGIT pass alone and samples nothing, so "
                          f"{' '.join(changed)} would have no effect; leave one or the other out")
    options = EvalOptions(sampling, args.loss_only, args.rollout, args.num_prompt_frames, args.seed,
                          action_sensitivity=args.action_sensitivity)
    checkpoint = model_folder(checkpoint_or_hub_id(args.checkpoint_dir))
    report = evaluate_checkpoint(checkpoint, args.train_data_dir, args.val_data_dir, options, args.batch_size,
                                 args.max_examples, args.stride, data)
    print(format_report(report))
    if args.output_dir:
        write_eval_outputs(report, args.output_dir)
    return report


if __name__ == "__main__":
    run_cli(main)
