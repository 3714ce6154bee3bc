"""The two stages as library calls: arguments in, a trained run folder out.

`train.py`, `masked_pretrain.py` and the study runner call these with argument objects; the stages
differ only in their objective (genie/training/objectives.py) and in where the initial weights come from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed

from genie.checkpointing.checkpoint import load_weights_strict
from genie.checkpointing.run_folder import is_run_folder
from genie.data import resolve_data_dirs
from genie.data.builtin import DEFAULT_WORLD
from genie.data.sources import DataOptions
from genie.errors import CheckpointError, ConfigError
from genie.evaluation.pictures import masked_prediction_writer
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT, with_legacy_weights
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig, read_config_file
from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective
from genie.training.trainer import run_training

MASKED_PRETRAIN_OUTPUT_DIR = "runs/masked_pretrain"
DEFAULT_GENIE_CONFIG = "configs/tiny.json"


@dataclass
class HandOffArguments:
    masked_pretrain_checkpoint: str | None = field(default=None, metadata={
        "help": "Start from stage-1 weights: a masked_pretrain_final/ folder, a step_N/ folder of a stage-1 run, "
                "or a stage-1 run folder (its final model is used). Without --genie_config, its architecture is used."})
    allow_non_pretrain_checkpoint: bool = field(default=False, metadata={
        "help": "Accept --masked_pretrain_checkpoint weights saved by a stage-2 run (refused by default)."})


def resolve_pretrain_checkpoint(path: str | Path, allow_other_stage: bool = False) -> Path:
    """The folder holding the stage-1 weights for a final-model folder, a step_N/ folder or a run folder."""
    path = Path(path)
    what = "a masked_pretrain_final/ folder, a step_N/ folder or a masked-pretraining run folder"
    if path.is_file():
        raise CheckpointError(f"--masked_pretrain_checkpoint {path} is a file; pass the folder holding "
                              f"model.safetensors: {what}")
    if not path.is_dir():
        raise CheckpointError(f"--masked_pretrain_checkpoint {path} does not exist; pass {what}")
    folder = path if (path / "model.safetensors").is_file() else path / MaskedPretrainObjective.final_model_dirname
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"--masked_pretrain_checkpoint {path} holds neither model.safetensors nor "
                              f"{MaskedPretrainObjective.final_model_dirname}/; did stage 1 finish?")
    stage = saving_stage(folder)
    if stage not in (None, MaskedPretrainObjective.name) and not allow_other_stage:
        raise CheckpointError(f"--masked_pretrain_checkpoint {path} was saved by a '{stage}' run, not by masked "
                              "pretraining; pass a stage-1 checkpoint, or add --allow_non_pretrain_checkpoint if "
                              "starting from these weights is meant")
    return folder


def saving_stage(model_folder: Path) -> str | None:
    """The stage of the run that saved a model folder (its own or its parent's run config), if known."""
    for candidate in (model_folder, model_folder.parent):
        if is_run_folder(candidate):
            return json.loads((candidate / "config.json").read_text())["stage"]
    return None


def saved_run_defaults(flags: Any, stage: str) -> dict[str, Any]:
    """With --resume_from_checkpoint, the arguments the run in --output_dir was started with (its
    config.json) as defaults that explicit flags override: a run resumes from its folder alone. A
    folder of another stage gives nothing here (the trainer refuses it with one line)."""
    if not getattr(flags, "resume_from_checkpoint", None) or not getattr(flags, "output_dir", None):
        return {}
    try:
        saved = json.loads((Path(flags.output_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or saved.get("stage") != stage or not isinstance(saved.get("args"), dict):
        return {}
    defaults = {k: v for k, v in saved["args"].items()
                if k not in ("output_dir", "resume_from_checkpoint", "overwrite_output_dir")}
    if stage == MaskedPretrainObjective.name:
        defaults |= saved.get("masked_pretrain") or {}
    elif saved.get("masked_pretrain_checkpoint") and Path(saved["masked_pretrain_checkpoint"]).is_dir():
        defaults["masked_pretrain_checkpoint"] = saved["masked_pretrain_checkpoint"]
    return defaults


def stage1_fields_of_config_file(path: str | None) -> dict[str, Any]:
    """The stage-1 fields (schedule, ratios, pattern) a model config file holds: masked_pretrain.py's
    defaults, which its flags override."""
    return read_config_file(path or DEFAULT_GENIE_CONFIG)[1]


def initial_model(args: TrainingArguments, weights_folder: Path | None = None
                  ) -> tuple[GenieConfig, STMaskGIT, dict[str, Any]]:
    """The run's model config (--genie_config, else the architecture of `weights_folder`, else the tiny
    default), a freshly initialised model whose weights follow --seed, and the stage-1 fields the
    config file held."""
    if args.genie_config is None and weights_folder is not None:
        config, stage1_fields = GenieConfig.from_json_file(weights_folder), {}
    else:
        config, stage1_fields = read_config_file(args.genie_config or DEFAULT_GENIE_CONFIG)
    set_seed(args.seed)
    return config, STMaskGIT(config), stage1_fields


def run_autoregressive(args: TrainingArguments, hand_off: HandOffArguments | None = None) -> dict[str, Any]:
    """Stage 2: autoregressive training, from scratch or from stage-1 weights."""
    source = None
    if hand_off is not None and hand_off.masked_pretrain_checkpoint:
        source = resolve_pretrain_checkpoint(hand_off.masked_pretrain_checkpoint,
                                             hand_off.allow_non_pretrain_checkpoint)
    if source is not None:
        inherit_builtin_world(args, source)
    config, model, stage1_fields = initial_model(args, source)
    MaskedPretrainConfig(**stage1_fields)  # ignored here, but a wrong value is still a one-line error
    if stage1_fields.get("temporal_attention") == AutoregressiveObjective.temporal_attention:
        del stage1_fields["temporal_attention"]  # what stage 2 does anyway: not ignored
    run_info = {"ignored_config_fields": stage1_fields} if stage1_fields else {}
    if source is not None:
        # Same architecture, loaded strictly; temporal attention is causal from here on, and the
        # optimizer and LR schedule start fresh (the trainer builds them).
        load_weights_strict(model, source / "model.safetensors", with_legacy_weights)
        run_info["masked_pretrain_checkpoint"] = str(source.resolve())
    if stage1_fields:
        print(f"train.py ignores the stage-1 field(s) {sorted(stage1_fields)} of the config file (stage 2 masks with its "
              "own collator and is causal in time; recorded in the "
              "run's config.json)")
    objective = AutoregressiveObjective(config, args.changed_token_loss_weight, args.dynamics_mask_focus)
    return run_training(args, objective, model, run_info=run_info)


def inherit_builtin_world(args: TrainingArguments, stage1_weights: Path) -> None:
    """Without --builtin_world, stage 2 reads the built-in world its stage-1 run trained on (its run folder's
    config.json says which), and says so where that is not the default world."""
    if args.builtin_world is not None or (args.train_data_dir and args.val_data_dir):
        return
    world = DataOptions().with_world_of(stage1_weights).builtin_world
    if world is not None:
        args.builtin_world = world
        if world != DEFAULT_WORLD:
            print(f"stage 2 reads the built-in world '{world}', as its stage 1 did ({stage1_weights.parent}); "
                  "--builtin_world chooses another", flush=True)


def run_masked_pretrain(args: TrainingArguments, masking: MaskedPretrainConfig) -> dict[str, Any]:
    """Stage 1: masked pretraining with the given mask schedule and pattern (masked_pretrain.py fills
    them from its flags over the config file's stage-1 fields)."""
    config, model, _ = initial_model(args)
    val_dir = (Path(args.val_data_dir) if args.val_data_dir
               else resolve_data_dirs(None, None, config, args.data_options())[1])
    pictures = masked_prediction_writer(args.output_dir, val_dir, config.h, config.mask_token_id)
    if args.dynamics_mask_focus:
        raise ConfigError(f"--dynamics_mask_focus {args.dynamics_mask_focus} is a stage-2 flag; stage 1 masks the changed "
                          "tokens more often with --mask_pattern dynamics --dynamics_focus F")
    objective = MaskedPretrainObjective(config, masking, pictures, args.changed_token_loss_weight)
    return run_training(args, objective, model, run_info={"masked_pretrain": vars(masking)})
