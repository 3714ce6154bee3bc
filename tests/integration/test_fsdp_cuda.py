"""FSDP (version 2) through `accelerate launch` on a GPU; skipped where there is none. Both stages run
sharded, checkpoints save and resume through Accelerate bit-identically, and the final model is one
full safetensors file that loads without FSDP."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from genie.model.stmaskgit import STMaskGIT
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP needs a CUDA GPU")

FSDP = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
        "--fsdp_transformer_layer_cls_to_wrap", "STBlock", "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
        "--fsdp_reshard_after_forward", "true"]


def launch(script, out, data, config_file, *extra):
    args = [script, "--genie_config", str(config_file), "--train_data_dir", str(data[0]), "--val_data_dir", str(data[1]),
            "--output_dir", str(out), "--per_device_train_batch_size", "4", "--max_train_steps", "6",
            "--checkpointing_steps", "3", "--eval_every_n_steps", "3", "--max_eval_steps", "2", "--log_every_n_steps",
            "1", "--learning_rate", "3e-3", *extra]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", *FSDP, *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "config.json").read_text())


def test_fsdp_two_stages_save_resume_and_reload(tiny_data, tiny_config_file, tmp_path):
    stage1 = launch("masked_pretrain.py", tmp_path / "stage1", tiny_data, tiny_config_file)
    assert stage1["distributed_type"] == "FSDP" and stage1["fsdp_version"] == 2
    init = ["--masked_pretrain_checkpoint", str(tmp_path / "stage1" / "masked_pretrain_final")]
    stage2 = launch("train.py", tmp_path / "stage2", tiny_data, tiny_config_file, *init)
    assert stage2["distributed_type"] == "FSDP"
    assert (tmp_path / "stage2" / "step_3" / "manifest.json").is_file()

    resumed = tmp_path / "resumed"  # as a kill after step 4 would leave the run
    shutil.copytree(tmp_path / "stage2", resumed)
    shutil.rmtree(resumed / "step_6")
    shutil.rmtree(resumed / "final_model")
    launch("train.py", resumed, tiny_data, tiny_config_file, *init, "--resume_from_checkpoint", "latest")
    full = load_file(tmp_path / "stage2" / "final_model" / "model.safetensors")
    again = load_file(resumed / "final_model" / "model.safetensors")
    worst = max((full[k].double() - again[k].double()).abs().max().item() for k in full)
    print(f"FSDP resume: max |weight difference| vs the uninterrupted run = {worst:.3e}")
    assert full.keys() == again.keys() and all(torch.equal(full[k], again[k]) for k in full)

    # One full safetensors file that loads into a plain model (every tensor at its full shape).
    assert sorted(p.name for p in (tmp_path / "stage2" / "final_model").iterdir()) == ["config.json",
                                                                                        "model.safetensors"]
    model = STMaskGIT.from_pretrained(tmp_path / "stage2" / "final_model").cuda().eval()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in full.items()}
    tokens = torch.randint(0, 256, (2, model.config.T, model.config.S), device="cuda")
    actions = torch.randn(2, model.config.T, sum(model.config.action_dims.values()), device="cuda")
    with torch.no_grad():
        assert torch.isfinite(model.compute_logits(tokens, actions)).all()
