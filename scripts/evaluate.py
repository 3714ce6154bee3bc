"""Evaluate a checkpoint with the challenge metric (temporally teacher-forced cross-entropy and accuracy),
beside the unigram and copy-previous-frame references on the same windows.

    python scripts/evaluate.py --checkpoint_dir runs/main/final_model [--val_data_dir D --train_data_dir D]
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data import RawTokenDataset  # noqa: E402
from genie.cli import parse, run_cli  # noqa: E402
from genie.evaluation import evaluate_with_references, format_eval_table  # noqa: E402
from genie.model import STMaskGIT  # noqa: E402
from genie.trainer import resolve_data_dirs  # noqa: E402


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


def evaluate_checkpoint(checkpoint_dir: str | Path, train_data_dir: str | None = None, val_data_dir: str | None = None,
                        window_size: int | None = None, stride: int = 1, batch_size: int = 8,
                        max_examples: int | None = None) -> dict:
    """The teacher-forced metric of a checkpoint with its two references (built-in data by default)."""
    model = STMaskGIT.from_pretrained(checkpoint_dir)
    config = model.config
    train_dir, val_dir = resolve_data_dirs(train_data_dir, val_data_dir, config)
    window = window_size or config.T
    val_set = RawTokenDataset(val_dir, window, stride, filter_overlaps=True, action_dims=config.action_dims)
    val_set.check_compatible(config)
    train_set = RawTokenDataset(train_dir, window, stride)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate_with_references(model, val_set, train_set.video, config.image_vocab_size, batch_size,
                                    max_examples, device)


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
