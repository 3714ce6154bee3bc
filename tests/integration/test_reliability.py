"""Crash safety, signals, non-finite losses, bad inputs end to end, safe loading."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import train
from genie.checkpointing.manifest import write_manifest
from genie.cli import run_cli
from genie.errors import NonFiniteLossError
from genie.model.stmaskgit import STMaskGIT
from genie.training.arguments import TrainingArguments
from genie.training.objectives import AutoregressiveObjective
from genie.training.run_logging import read_metrics
from genie.training.trainer import run_training
from tests.conftest import REPO_ROOT, run_argv


def cli_args(config_file, data, out, *extra):
    """A small run that logs every step."""
    return run_argv(config_file, data, out, *extra, log_every_n_steps=1)


def spawn(args, **env):
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})


def wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class PoisonedObjective(AutoregressiveObjective):
    """Makes the actions of one optimizer step infinite, so that its loss is NaN."""
    def __init__(self, config, poisoned_step):
        super().__init__(config)
        self.poisoned_step = poisoned_step

    def make_batch(self, batch, step, total_steps, generator):
        out = super().make_batch(batch, step, total_steps, generator)
        if step == self.poisoned_step:
            out["actions"] = torch.full_like(out["actions"], float("inf"))
        return out


def poisoned_run(tiny_config, tiny_data, out, **extra):
    train_dir, val_dir = tiny_data
    args = TrainingArguments(train_data_dir=str(train_dir), val_data_dir=str(val_dir), output_dir=str(out),
                             max_train_steps=6, per_device_train_batch_size=4, checkpointing_steps=2,
                             max_eval_steps=1, log_every_n_steps=1, **extra)
    return run_training(args, PoisonedObjective(tiny_config, poisoned_step=3), STMaskGIT(tiny_config))


def test_nonfinite_loss_stops_the_run_naming_the_step(tiny_config, tiny_data, tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 4"):
        poisoned_run(tiny_config, tiny_data, tmp_path / "stop")
    folders = sorted(p.name for p in (tmp_path / "stop").glob("step_*"))
    assert folders == ["step_2"]  # nothing saved for or after the bad step
    weights = load_file(tmp_path / "stop" / "step_2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_skip_nonfinite_skips_and_counts(tiny_config, tiny_data, tmp_path):
    poisoned_run(tiny_config, tiny_data, tmp_path / "skip", skip_nonfinite=True)
    records = read_metrics(tmp_path / "skip" / "metrics.jsonl")
    skipped = [r["skipped_nonfinite_steps"] for r in records if "skipped_nonfinite_steps" in r]
    assert skipped == [0, 0, 0, 1, 1, 1]
    weights = load_file(tmp_path / "skip" / "final_model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_sigterm_saves_a_resumable_checkpoint_exits_143_and_resumes_from_the_folder_alone(tiny_config_file, tiny_data,
                                                                                          tmp_path):
    out = tmp_path / "run"
    proc = spawn(["train.py", *cli_args(tiny_config_file, tiny_data, out, "--max_train_steps", "100000",
                                        "--checkpointing_steps", "100000")])
    assert wait_for(lambda: (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]  # stopped, not finished: a scheduler can tell
    assert "received SIGTERM" in stdout and "--resume_from_checkpoint latest" in stdout
    steps = sorted(int(p.name.split("_")[1]) for p in out.glob("step_*"))
    assert len(steps) == 1 and steps[0] >= 3
    saved = json.loads((out / "config.json").read_text())["args"]
    # the run folder alone: its config.json holds the data, the config and every other flag
    resumed = train.main(["--output_dir", str(out), "--resume_from_checkpoint", "latest",
                          "--max_train_steps", str(steps[0] + 2)])
    assert resumed["val/tf_cross_entropy"] > 0
    now = json.loads((out / "config.json").read_text())["args"]
    given = ("max_train_steps", "resume_from_checkpoint")  # the two flags of the resume command
    assert {k: v for k, v in now.items() if k not in given} == {k: v for k, v in saved.items() if k not in given}


# train.py with a 30 s pause inside every checkpoint write (patched in the child process only), so
# that the test can kill it while a checkpoint is half-written.
SLOW_CHECKPOINT_TRAIN = """
import sys, time
from genie.checkpointing import run_folder
write_manifest = run_folder.write_manifest
def slow_write_manifest(folder):
    time.sleep(30)
    write_manifest(folder)
run_folder.write_manifest = slow_write_manifest
import train
from genie.cli import run_cli
run_cli(lambda: train.main(sys.argv[1:]))
"""


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_intact(tiny_config_file, tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = spawn(["-c", SLOW_CHECKPOINT_TRAIN, *cli_args(tiny_config_file, tiny_data, out, "--max_train_steps",
                                                         "100000", "--checkpointing_steps", "3")])
    # step_3 is written (after a 30 s pause); kill while step_6 is being written.
    assert wait_for(lambda: (out / "step_3").is_dir() and any(out.glob(".tmp-step_6")), timeout=180)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (out / "step_6").exists()
    assert {p.name for p in (out / "step_3").iterdir()} >= {"model.safetensors", "optimizer.bin", "trainer_state.json"}
    metrics = train.main(cli_args(tiny_config_file, tiny_data, out, "--max_train_steps", "5",
                                  "--resume_from_checkpoint", "latest"))
    assert metrics["val/tf_cross_entropy"] > 0
    assert json.loads((out / "step_5" / "trainer_state.json").read_text())["step"] == 5


class _RunsCode:
    """Unpickling this object would create a file: proof that code ran."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tiny_config_file, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train.main(cli_args(tiny_config_file, tiny_data, out, "--max_train_steps", "2", "--checkpointing_steps", "1"))
    marker = tmp_path / "code_ran"
    with open(out / "step_1" / "optimizer.bin", "wb") as f:
        pickle.dump(_RunsCode(marker), f)
    shutil.rmtree(out / "step_2")
    resume = cli_args(tiny_config_file, tiny_data, out, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: train.main(resume))
    assert info.value.code == 2 and not marker.exists()
    assert "optimizer.bin has" in capsys.readouterr().err  # the manifest catches the change first
    write_manifest(out / "step_1")  # an attacker can rewrite the manifest too: the loader still refuses
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: train.main(resume))
    assert info.value.code == 2 and not marker.exists()
    assert "cannot resume from" in capsys.readouterr().err
    # The same payload as model weights: safetensors refuses it without unpickling.
    shutil.copytree(out / "final_model", tmp_path / "evil")
    with open(tmp_path / "evil" / "model.safetensors", "wb") as f:
        pickle.dump(_RunsCode(marker), f)
    with pytest.raises(Exception, match="not a readable safetensors file"):
        STMaskGIT.from_pretrained(tmp_path / "evil")
    assert not marker.exists()
