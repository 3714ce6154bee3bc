"""Stage 2: autoregressive (MaskGIT per frame, causal in time) training of the ST world model.

    python train.py                                   # tiny config on the built-in dataset
    accelerate launch train.py --genie_config configs/genie_35m.json --train_data_dir data/train_v1.1 \
        --val_data_dir data/val_v1.1 --stride 15 --output_dir runs/genie35m
"""
from __future__ import annotations

from genie.cli import parse, run_cli
from genie.config import GenieConfig
from genie.model import STMaskGIT
from genie.objectives import AutoregressiveObjective
from genie.trainer import train
from genie.training_args import TrainingArguments


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse([TrainingArguments], __doc__.split("\n")[1], argv)
    config = GenieConfig.from_json_file(args.genie_config).replace(temporal_attention="causal")
    model = STMaskGIT(config)
    return train(args, AutoregressiveObjective(config), model)


if __name__ == "__main__":
    run_cli(main)
