"""Withheld actions (--drop_actions) reach the model as "no action", never as a command value: on the
built-in world, where 0 is the real "stay" command, and on v2.0 data."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import train
from genie.checkpointing.manifest import write_manifest
from genie.errors import CheckpointError
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import run_argv


@pytest.fixture
def action_inputs(monkeypatch):
    """Every action tensor the model embeds, in training and evaluation."""
    seen = []
    embed = STMaskGIT._action_embedding

    def recording(self, actions):
        seen.append(actions.detach().clone())
        return embed(self, actions)

    monkeypatch.setattr(STMaskGIT, "_action_embedding", recording)
    return seen


@pytest.mark.parametrize("layout", ["v1.1", "v2.0"])
def test_a_run_without_actions_never_sees_a_real_command(layout, action_inputs, tiny_data, tiny_config_file,
                                                         builtin_v2, tiny_v2_config, tmp_path):
    data, config = (tiny_data, tiny_config_file) if layout == "v1.1" else (builtin_v2, tiny_v2_config())
    train.main(run_argv(config, data, tmp_path / "run", "--drop_actions", max_train_steps=2,
                        per_device_train_batch_size=2, per_device_eval_batch_size=2, eval_loss_only=True))
    assert len(action_inputs) >= 3  # two training steps and the final evaluation
    assert all(bool(actions.isnan().all()) for actions in action_inputs)
    weights = load_file(tmp_path / "run" / "final_model" / "model.safetensors")
    assert weights["no_action"].abs().max() > 0  # it was the input, so it learned (it starts at zeros)


def test_a_step_folder_written_before_no_action_existed_is_refused_in_one_line(tiny_data, tiny_config_file, tmp_path):
    out = tmp_path / "run"
    train.main(run_argv(tiny_config_file, tiny_data, out, max_train_steps=2, checkpointing_steps=1, eval_loss_only=True))
    weights_file = out / "step_1" / "model.safetensors"
    weights = load_file(weights_file)
    del weights["no_action"]  # what a version before the "no action" input wrote
    save_file(weights, weights_file)
    write_manifest(out / "step_1")  # a complete checkpoint, as that version wrote it
    with pytest.raises(CheckpointError) as refused:
        train.main(["--output_dir", str(out), "--resume_from_checkpoint", str(out / "step_1"), "--max_train_steps", "3"])
    assert str(refused.value) == (f"cannot resume from {out / 'step_1'}: it has no no_action, which this version's model "
                                  "has (it was written by an older genie); finish that run with the version that wrote "
                                  "it, or start this stage again")
