"""Evaluate a checkpoint with the challenge metric (temporally teacher-forced cross-entropy and accuracy),
beside the unigram and copy-previous-frame references on the same windows.

    python scripts/evaluate.py --checkpoint_dir runs/main/final_model [--val_data_dir D --train_data_dir D]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genie.cli import parse, run_cli
from genie.evaluation import evaluate_checkpoint, format_eval_table


@dataclass
class EvaluateArguments:
    checkpoint_dir: str = field(metadata={"help": "Hugging Face-format folder (config.json + model.safetensors)."})
    val_data_dir: str | None = field(default=None, metadata={"help": "Default: the built-in val split."})
    train_data_dir: str | None = field(default=None, metadata={"help": "For the unigram reference. Default: built-in."})
    window_size: int | None = None
    stride: int = 1
    batch_size: int = 8
    max_examples: int | None = field(default=None, metadata={"help": "Stop after this many val windows."})
    output_json: str | None = field(default=None, metadata={"help": "Also write the metrics here."})


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse([EvaluateArguments], __doc__.split("\n")[0], argv)
    metrics = evaluate_checkpoint(args.checkpoint_dir, args.train_data_dir, args.val_data_dir, args.window_size,
                                  args.stride, args.batch_size, args.max_examples)
    print(format_eval_table(metrics))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


if __name__ == "__main__":
    run_cli(main)
