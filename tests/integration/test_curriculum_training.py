"""The window-length curriculum through the real training loop: which optimizer step trains on how many
frames (with accumulation), masks on the short windows, exact resume across a phase change, and the
record of it (config.json, the start banner, metrics.jsonl)."""
import json
import shutil

import pytest
import torch

from genie.errors import CheckpointError, ConfigError
from genie.model.stmaskgit import STMaskGIT
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective
from genie.training.run_logging import read_metrics
from genie.training.trainer import run_training


def recording(objective_class):
    """The objective, recording every micro-batch it masks: (optimizer step, input_ids, loss_mask)."""
    class Recording(objective_class):
        def make_batch(self, batch, step, total_steps, generator):
            out = super().make_batch(batch, step, total_steps, generator)
            self.seen.append((step, out["input_ids"].clone(), out["loss_mask"].clone()))
            return out
    return Recording


def run(tiny_config, tiny_data, out, stage1=False, **flags):
    train_dir, val_dir = tiny_data
    settings = dict(genie_config="unused", train_data_dir=str(train_dir), val_data_dir=str(val_dir),
                    output_dir=str(out), max_train_steps=6, per_device_train_batch_size=4, log_every_n_steps=1,
                    eval_every_n_steps=1000, checkpointing_steps=2, max_eval_steps=1, eval_loss_only=True,
                    curriculum_frames="2", curriculum_fractions="0.5", seed=3)
    args = TrainingArguments(**(settings | flags))
    if stage1:
        config = tiny_config.replace(temporal_attention="bidirectional")
        objective = recording(MaskedPretrainObjective)(config, MaskedPretrainConfig(mask_schedule="linear"))
    else:
        config = tiny_config
        objective = recording(AutoregressiveObjective)(config)
    objective.seen = []
    run_training(args, objective, STMaskGIT(config))
    return objective.seen


def test_steps_train_on_the_curriculum_frames_with_accumulation(tiny_config, tiny_data, tmp_path, capsys):
    seen = run(tiny_config, tiny_data, tmp_path / "a", gradient_accumulation_steps=2)
    # T = 4, half of the 6 steps on 2 frames; both micro-batches of a step alike
    assert [(step, ids.shape[1]) for step, ids, _ in seen] == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2), (2, 2),
                                                               (3, 4), (3, 4), (4, 4), (4, 4), (5, 4), (5, 4)]
    assert all(not mask[:, 0].any() and mask.any() for _, _, mask in seen)  # frame 0 is never a target
    args = json.loads((tmp_path / "a" / "config.json").read_text())["args"]
    assert (args["curriculum_frames"], args["curriculum_fractions"]) == ("2", "0.5")
    assert "window curriculum: steps 0-2 on 2 frames, steps 3-5 on 4 (T)" in capsys.readouterr().out
    logged = [r["window_frames"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "train/loss" in r]
    assert logged == [2, 2, 2, 4, 4, 4]


def test_stage_one_masks_per_frame_on_the_short_windows(tiny_config, tiny_data, tmp_path):
    seen = run(tiny_config, tiny_data, tmp_path / "s1", stage1=True)
    assert [ids.shape[1] for _, ids, _ in seen] == [2, 2, 2, 4, 4, 4]
    first = seen[0][2]  # step 0, linear schedule at 0.8: round(0.8 * 16) = 13 masked tokens in frame 1, none in 0
    assert first[:, 0].sum() == 0 and first[:, 1].sum(-1).tolist() == [13] * 4


def test_resume_across_the_phase_change_repeats_the_batches(tiny_config, tiny_data, tmp_path):
    full = run(tiny_config, tiny_data, tmp_path / "r")
    for name in ("step_4", "step_6"):
        shutil.rmtree(tmp_path / "r" / name)
    resumed = run(tiny_config, tiny_data, tmp_path / "r", resume_from_checkpoint="latest")
    assert [step for step, _, _ in resumed] == [2, 3, 4, 5]
    for (step, ids, mask), (step_, ids_, mask_) in zip(full[2:], resumed):
        assert step == step_ and torch.equal(ids, ids_) and torch.equal(mask, mask_)
    # another curriculum is another run: its resume is refused
    shutil.rmtree(tmp_path / "r" / "step_6")
    with pytest.raises(CheckpointError, match="curriculum_fractions"):
        run(tiny_config, tiny_data, tmp_path / "r", resume_from_checkpoint="latest", curriculum_fractions="0.25")


def test_a_curriculum_as_long_as_the_windows_is_refused(tiny_config, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match=r"--curriculum_frames 4 is not shorter than the windows \(T = 4\)"):
        run(tiny_config, tiny_data, tmp_path / "long", curriculum_frames="4")
    assert not (tmp_path / "long").exists()
