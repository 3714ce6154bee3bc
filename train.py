"""Stage 2: autoregressive (MaskGIT per frame, causal in time) training of the ST world model.

    python train.py                                   # tiny config on the built-in dataset
    python train.py --masked_pretrain_checkpoint runs/masked_pretrain/masked_pretrain_final
    accelerate launch train.py --genie_config configs/genie_35m.json --train_data_dir data/train_v1.1 \
        --val_data_dir data/val_v1.1 --stride 15 --output_dir runs/genie35m
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from accelerate.utils import set_seed

from genie.checkpoint import CheckpointError, load_weights_strict
from genie.cli import parse, run_cli
from genie.config import GenieConfig
from genie.model import STMaskGIT
from genie.objectives import AutoregressiveObjective, MaskedPretrainObjective
from genie.trainer import train
from genie.training_args import TrainingArguments


@dataclass
class HandOffArguments:
    masked_pretrain_checkpoint: str | None = field(default=None, metadata={
        "help": "Start from stage-1 weights: a masked_pretrain_final/ folder, a step_N/ folder of a stage-1 run, "
                "or a stage-1 run folder (its final model is used)."})


def resolve_pretrain_checkpoint(path: str | Path) -> Path:
    """The folder holding the stage-1 weights for a final-model folder, a step_N/ folder or a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"--masked_pretrain_checkpoint {path} does not exist; pass a masked_pretrain_final/ "
                              "folder, a step_N/ folder or a masked-pretraining run folder")
    if (path / "model.safetensors").is_file():
        return path
    final = path / MaskedPretrainObjective.final_model_dirname
    if (final / "model.safetensors").is_file():
        return final
    raise CheckpointError(f"--masked_pretrain_checkpoint {path} holds neither model.safetensors nor "
                          f"{MaskedPretrainObjective.final_model_dirname}/; did stage 1 finish?")


def main(argv: list[str] | None = None) -> dict:
    args, hand_off = parse([TrainingArguments, HandOffArguments], __doc__.split("\n")[0], argv)
    config = GenieConfig.from_json_file(args.genie_config)
    set_seed(args.seed)  # the initial weights follow --seed, whatever the launcher did before
    model = STMaskGIT(config)
    run_info = {}
    if hand_off.masked_pretrain_checkpoint:
        # Same architecture, loaded strictly; temporal attention is causal from here on, and the
        # optimizer and LR schedule start fresh (train() builds them).
        source = resolve_pretrain_checkpoint(hand_off.masked_pretrain_checkpoint)
        load_weights_strict(model, source / "model.safetensors")
        run_info["masked_pretrain_checkpoint"] = str(source.resolve())
    return train(args, AutoregressiveObjective(config), model, run_info=run_info)


if __name__ == "__main__":
    run_cli(main)
