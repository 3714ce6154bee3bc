"""Both stages and the evaluation on the built-in world written as 1X v2.0 data."""
import shutil

import pytest

import masked_pretrain
import train
from tests.conftest import run_argv, run_script


def test_both_stages_and_evaluation_run_on_v2_data(builtin_v2, tiny_v2_config, tmp_path):
    train_dir, val_dir = builtin_v2
    common = run_argv(tiny_v2_config(), (train_dir, val_dir))
    masked_pretrain.main([*common, "--output_dir", str(tmp_path / "s1"), "--max_train_steps", "3"])
    metrics = train.main([*common, "--output_dir", str(tmp_path / "s2"), "--max_train_steps", "3",
                          "--masked_pretrain_checkpoint", str(tmp_path / "s1")])
    assert metrics["val/tf_cross_entropy"] > 0
    report = run_script("evaluate", ["--checkpoint_dir", str(tmp_path / "s2" / "final_model"), "--train_data_dir",
                                     str(train_dir), "--val_data_dir", str(val_dir), "--max_examples", "8"])
    # the 3 target latent frames, teacher-forced and all masked at once; rollout from the context clip
    assert report["first_frame"] == 3 and report["frames_scored"] == 3 and len(report["block_cross_entropy_per_frame"]) == 3
    assert report["rollout"]["horizons"] == [1, 2, 3] and report["stride"] == 1
    assert report["cross_entropy_per_frame"][0] == pytest.approx(report["block_cross_entropy_per_frame"][0], rel=1e-5)
    shutil.rmtree(tmp_path / "s1")
