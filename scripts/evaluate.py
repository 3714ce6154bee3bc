"""Evaluate a checkpoint as the 1X challenge does (teacher-forced cross-entropy of the first MaskGIT pass,
accuracy of the final MaskGIT samples), with autoregressive rollouts per horizon, beside the unigram
and copy-previous-frame references on the same windows.

    python scripts/evaluate.py --checkpoint_dir runs/main/final_model [--val_data_dir V --train_data_dir D]
        [--output_dir O]   # writes O/eval.json, O/eval.md, O/eval.png
"""
from __future__ import annotations

from dataclasses import dataclass, field

from genie.cli import check_flag, check_output_folder, parse, run_cli
from genie.config import ConfigError
from genie.data import DataOptions
from genie.decoding import SamplingConfig
from genie.eval_report import evaluate_checkpoint, format_report, write_eval_outputs
from genie.evaluation import EvalOptions
from genie.run_folder import model_folder


@dataclass
class EvaluateArguments:
    checkpoint_dir: str = field(metadata={"help": "Hugging Face-format folder (config.json + model.safetensors)."})
    val_data_dir: str | None = field(default=None, metadata={"help": "Default: the built-in val split."})
    train_data_dir: str | None = field(default=None, metadata={"help": "For the unigram reference. Default: built-in."})
    stride: int | None = field(default=None, metadata={
        "help": "Frames between window frames. Default: 2 Hz from the data's metadata hz (30 Hz -> 15)."})
    batch_size: int = 8
    max_examples: int | None = field(default=None, metadata={"help": "Stop after this many val windows."})
    maskgit_steps: int = field(default=2, metadata={"help": "MaskGIT steps per frame (the challenge: 2)."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (the challenge)."})
    unmask_mode: str = field(default="random", metadata={
        "help": "random (the reference's default) | confidence (deterministic) | gumbel"})
    top_k: int | None = None
    top_p: float | None = None
    seed: int = field(default=0, metadata={"help": "Seeds random unmasking and sampling, per batch."})
    loss_only: bool = field(default=False, metadata={"help": "Cross-entropy alone: no sampling, no rollout (fastest)."})
    rollout: bool = field(default=True, metadata={"help": "--no_rollout skips the rollouts."})
    num_prompt_frames: int | None = field(default=None, metadata={
        "help": "Rollout prompt frames. Default: the config's num_prompt_frames (T // 2 if that leaves none)."})
    output_dir: str | None = field(default=None, metadata={"help": "Write eval.json, eval.md and eval.png here."})
    data_format: str = field(default="auto", metadata={"help": "auto | v1.1 | v2.0"})
    state_pooling: str = field(default="last", metadata={"help": "v2.0: last | mean"})

    def __post_init__(self) -> None:
        check_flag(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check_flag(self.max_examples is None or self.max_examples >= 1, "max_examples", self.max_examples,
                   "must be >= 1 (leave it out to evaluate every window)")
        check_flag(self.stride is None or self.stride >= 1, "stride", self.stride, "must be >= 1")
        check_flag(self.num_prompt_frames is None or self.num_prompt_frames >= 1, "num_prompt_frames",
                   self.num_prompt_frames, "must be >= 1")
        check_flag(self.seed >= 0, "seed", self.seed, "must be >= 0")
        check_output_folder(self.output_dir)


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse([EvaluateArguments], __doc__.split("\n")[0], argv)
    try:
        sampling = SamplingConfig(args.maskgit_steps, args.temperature, args.top_k, args.top_p, args.unmask_mode)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    options = EvalOptions(sampling, args.loss_only, args.rollout, args.num_prompt_frames, args.seed)
    report = evaluate_checkpoint(model_folder(args.checkpoint_dir), args.train_data_dir, args.val_data_dir, options,
                                 args.batch_size, args.max_examples, args.stride,
                                 DataOptions(args.data_format, args.state_pooling))
    print(format_report(report))
    if args.output_dir:
        write_eval_outputs(report, args.output_dir)
    return report


if __name__ == "__main__":
    run_cli(main)
