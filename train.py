"""Stage 2: autoregressive (MaskGIT per frame, causal in time) training of the ST world model.

    python train.py                                   # tiny config on the built-in dataset
    python train.py --masked_pretrain_checkpoint runs/masked_pretrain/masked_pretrain_final
    accelerate launch train.py --genie_config configs/genie_35m.json --train_data_dir data/train_v1.1 \
        --val_data_dir data/val_v1.1 --stride 15 --output_dir runs/genie35m
"""
from __future__ import annotations

from genie.cli import parse, run_cli
from genie.training.arguments import TrainingArguments
from genie.training.stages import HandOffArguments, run_autoregressive


def main(argv: list[str] | None = None) -> dict:
    args, hand_off = parse([TrainingArguments, HandOffArguments], __doc__, argv)
    return run_autoregressive(args, hand_off)


if __name__ == "__main__":
    run_cli(main)
