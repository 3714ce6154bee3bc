"""Stage 2: autoregressive (MaskGIT per frame, causal in time) training of the ST world model.

    python train.py                                   # tiny config on the built-in dataset
    python train.py --masked_pretrain_checkpoint runs/masked_pretrain/masked_pretrain_final
    accelerate launch train.py --genie_config configs/genie_35m.json --train_data_dir data/train_v1.1 \\
        --val_data_dir data/val_v1.1 --stride 15 --output_dir runs/genie35m
    python train.py --output_dir runs/genie35m --resume_from_checkpoint latest   # its config.json has the rest

A run stopped by SIGINT / SIGTERM saves a checkpoint and exits with 130 / 143 (0 when it finished).
"""
from __future__ import annotations

import sys

from genie.cli import parse, run_cli, stopped_exit_code
from genie.training.arguments import TrainingArguments
from genie.training.objectives import AutoregressiveObjective
from genie.training.stages import HandOffArguments, run_autoregressive, saved_run_defaults


def main(argv: list[str] | None = None) -> dict:
    args, hand_off = parse([TrainingArguments, HandOffArguments], __doc__, argv,
                           defaults_from=lambda flags: saved_run_defaults(flags, AutoregressiveObjective.name))
    return run_autoregressive(args, hand_off)


if __name__ == "__main__":
    sys.exit(stopped_exit_code(run_cli(main)))
