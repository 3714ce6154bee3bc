"""The two stages as library calls: arguments in, a trained run folder out.

`train.py`, `masked_pretrain.py` and the study runner call these with argument objects; the stages
differ only in their objective (genie/objectives.py) and in where the initial weights come from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed

from genie.checkpoint import CheckpointError, load_weights_strict
from genie.config import GenieConfig
from genie.data import resolve_data_dirs
from genie.masked_pretrain_config import MaskedPretrainConfig
from genie.model import STMaskGIT
from genie.objectives import AutoregressiveObjective, MaskedPretrainObjective
from genie.trainer import run_training
from genie.training_args import TrainingArguments
from genie.visualization import masked_prediction_writer

MASKED_PRETRAIN_OUTPUT_DIR = "runs/masked_pretrain"


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


def initial_model(args: TrainingArguments) -> tuple[GenieConfig, STMaskGIT]:
    """The model config of the run and a freshly initialised model; the weights follow --seed,
    whatever the launcher seeded before."""
    config = GenieConfig.from_json_file(args.genie_config)
    set_seed(args.seed)
    return config, STMaskGIT(config)


def run_autoregressive(args: TrainingArguments, hand_off: HandOffArguments | None = None) -> dict[str, Any]:
    """Stage 2: autoregressive training, from scratch or from stage-1 weights."""
    config, model = initial_model(args)
    run_info = {}
    if hand_off is not None and hand_off.masked_pretrain_checkpoint:
        # Same architecture, loaded strictly; temporal attention is causal from here on, and the
        # optimizer and LR schedule start fresh (the trainer builds them).
        source = resolve_pretrain_checkpoint(hand_off.masked_pretrain_checkpoint)
        load_weights_strict(model, source / "model.safetensors")
        run_info["masked_pretrain_checkpoint"] = str(source.resolve())
    return run_training(args, AutoregressiveObjective(config), model, run_info=run_info)


def run_masked_pretrain(args: TrainingArguments, masking: MaskedPretrainConfig) -> dict[str, Any]:
    """Stage 1: masked pretraining with the given mask schedule and pattern."""
    config, model = initial_model(args)
    val_dir = Path(args.val_data_dir) if args.val_data_dir else resolve_data_dirs(None, None, config)[1]
    pictures = masked_prediction_writer(args.output_dir, val_dir, config.h, config.mask_token_id)
    objective = MaskedPretrainObjective(config, masking, pictures)
    return run_training(args, objective, model, run_info={"masked_pretrain": vars(masking)})
