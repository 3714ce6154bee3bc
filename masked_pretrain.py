"""Stage 1: masked pretraining (MaskViT / MaskGIT style) of the ST world model, with bidirectional
temporal attention and a mask ratio that follows a schedule over training. The stage-1 settings
may also sit in the --genie_config file (e.g. "mask_schedule": "exponential"); flags override them.

    python masked_pretrain.py                         # tiny config on the built-in dataset
    python masked_pretrain.py --genie_config configs/genie_35m.json --train_data_dir D --val_data_dir V \\
        --output_dir O --initial_mask_ratio 0.8 --final_mask_ratio 0.1 --mask_schedule cosine \\
        --mask_all_frames --num_train_epochs 10
    python masked_pretrain.py --output_dir O --resume_from_checkpoint latest   # its config.json has the rest
Then: python train.py --masked_pretrain_checkpoint O/masked_pretrain_final ...
A run stopped by SIGINT / SIGTERM saves a checkpoint and exits with 130 / 143 (0 when it finished).
"""
from __future__ import annotations

import sys

from genie.cli import parse, run_cli, stopped_exit_code
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.objectives import MaskedPretrainObjective
from genie.training.stages import (MASKED_PRETRAIN_OUTPUT_DIR, run_masked_pretrain, saved_run_defaults,
                                   stage1_fields_of_config_file)


def main(argv: list[str] | None = None) -> dict:
    args, masking = parse([TrainingArguments, MaskedPretrainConfig], __doc__, argv,
                          defaults_from=lambda flags: {**stage1_fields_of_config_file(flags.genie_config),
                                                       **saved_run_defaults(flags, MaskedPretrainObjective.name)},
                          defaults={"output_dir": MASKED_PRETRAIN_OUTPUT_DIR})
    return run_masked_pretrain(args, masking)


if __name__ == "__main__":
    sys.exit(stopped_exit_code(run_cli(main)))
