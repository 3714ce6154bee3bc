"""Stage 1: masked pretraining (MaskViT / MaskGIT style) of the ST world model, with bidirectional
temporal attention and a mask ratio that follows a schedule over training.

    python masked_pretrain.py                         # tiny config on the built-in dataset
    python masked_pretrain.py --genie_config configs/genie_35m.json --train_data_dir D --val_data_dir V \
        --output_dir O --initial_mask_ratio 0.8 --final_mask_ratio 0.1 --mask_schedule cosine \
        --mask_all_frames --num_train_epochs 10
Then: python train.py --masked_pretrain_checkpoint O/masked_pretrain_final ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from accelerate.utils import set_seed

from genie.cli import parse, run_cli
from genie.config import GenieConfig
from genie.masked_pretrain_config import MaskedPretrainConfig
from genie.model import STMaskGIT
from genie.objectives import MaskedPretrainObjective
from genie.trainer import resolve_data_dirs, train
from genie.training_args import TrainingArguments


def picture_writer(output_dir: Path, val_dir: Path, side: int, mask_token_id: int):
    """A callable that draws masked input | prediction | truth for the first val windows, or None
    when the data has no decoder (only the built-in dataset does)."""
    import json

    from scripts.builtin_dataset import tokenizer_from_metadata

    metadata_path = Path(val_dir) / "metadata.json"
    tokenizer = tokenizer_from_metadata(json.loads(metadata_path.read_text())) if metadata_path.is_file() else None
    if tokenizer is None:
        return None

    def write(step, input_ids, predictions, labels, ratio):
        from scripts.visualization import save_grid

        grid = lambda x: x[:2].reshape(-1, x.shape[1], side, side).cpu().numpy()  # noqa: E731
        rows = []
        for i, (inp, pred, true) in enumerate(zip(grid(input_ids), grid(predictions), grid(labels))):
            rows += [(f"#{i} masked input", inp), (f"#{i} prediction", np.where(inp == mask_token_id, pred, inp)),
                     (f"#{i} truth", true)]
        save_grid(Path(output_dir) / "pictures" / f"eval_step_{step}.png", rows, tokenizer, mask_token_id,
                  title=f"step {step}: masked input (magenta = masked, ratio {ratio:g}) | prediction | truth")

    return write


def main(argv: list[str] | None = None) -> dict:
    args, masking = parse([TrainingArguments, MaskedPretrainConfig], __doc__.split("\n")[0], argv)
    if args.output_dir == "runs/train":
        args.output_dir = "runs/masked_pretrain"
    config = GenieConfig.from_json_file(args.genie_config)
    set_seed(args.seed)  # the initial weights follow --seed, whatever the launcher did before
    model = STMaskGIT(config)
    val_dir = Path(args.val_data_dir) if args.val_data_dir else resolve_data_dirs(None, None, config)[1]
    objective = MaskedPretrainObjective(config, masking,
                                        picture_writer(Path(args.output_dir), val_dir, config.h, config.mask_token_id))
    return train(args, objective, model, run_info={"masked_pretrain": vars(masking)})


if __name__ == "__main__":
    run_cli(main)
