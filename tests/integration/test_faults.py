"""Faults, round two: damaged checkpoints, a run killed before its first checkpoint, two writers, a
failed write, a changed process count, FSDP without a GPU. Each ends in a fallback to the last good
checkpoint (bit-identical to an uninterrupted run) or in a one-line refusal that loses nothing."""
import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import train
from genie.checkpointing.checkpoint import same_weights
from genie.files import RunLock, lock_path
from genie.checkpointing.manifest import write_manifest
from genie.cli import run_cli
from genie.training.run_logging import read_metrics, training_losses
from tests.conftest import REPO_ROOT, run_argv

STEPS = 6


def argv(config_file, data, out, *extra):
    return run_argv(config_file, data, out, *extra, log_every_n_steps=1, eval_every_n_steps=3, checkpointing_steps=2,
                    max_train_steps=STEPS, learning_rate="3e-3")


@pytest.fixture(scope="module")
def reference(tiny_config_file, tiny_data, tmp_path_factory):
    """An uninterrupted 6-step run with checkpoints at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("faults") / "reference"
    train.main(argv(tiny_config_file, tiny_data, out))
    return out


def interrupted_copy(reference, tmp_path, name="run"):
    """The reference run as a kill after step 5 would leave it: no step_6/, no final model."""
    copy = tmp_path / name
    shutil.copytree(reference, copy)
    shutil.rmtree(copy / "step_6")
    shutil.rmtree(copy / "final_model")
    return copy


def fails_with(capsys, args):
    """Run train.py through its CLI wrapper; return its one-line error (exit code 2)."""
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: train.main(args))
    lines = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and lines[-1].startswith("error: ") and "Traceback" not in "".join(lines)
    return lines[-1]


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero_fill(path):
    path.write_bytes(bytes(path.stat().st_size))


def nan_weights(path):  # valid safetensors, right size, manifest rewritten: only the values are wrong
    weights = load_file(path)
    name = sorted(weights)[0]
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, path, metadata={"format": "pt"})
    write_manifest(path.parent)


def broken_state(path):  # trainer_state.json without its data position, manifest rewritten
    state = json.loads((path.parent / "trainer_state.json").read_text())
    del state["batches_done_in_epoch"]
    (path.parent / "trainer_state.json").write_text(json.dumps(state))
    write_manifest(path.parent)


DAMAGE = {"truncated weights": (truncate, "model.safetensors has"),
          "zero-filled weights": (zero_fill, "model.safetensors does not match the checksum"),
          "NaN weights": (nan_weights, "model.safetensors holds non-finite values"),
          "broken trainer_state.json": (broken_state, "trainer_state.json lacks ['batches_done_in_epoch']")}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_latest_falls_back_past_a_damaged_checkpoint(damage, reference, tiny_config_file, tiny_data, tmp_path,
                                                     capsys):
    run = interrupted_copy(reference, tmp_path)
    corrupt, reason = DAMAGE[damage]
    corrupt(run / "step_4" / "model.safetensors")
    # Named explicitly, the damaged checkpoint is refused with one line naming the bad file.
    error = fails_with(capsys, argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", str(run / "step_4")))
    assert "is damaged" in error and reason in error
    train.main(argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    out = capsys.readouterr().out
    assert f"skipped step_4/: {reason}" in out and "resumed from" in out and "step_2 at step 2" in out
    assert same_weights(run / "final_model", reference / "final_model")
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]
    assert steps == list(range(1, STEPS + 1))  # the steps logged again after the fallback replace the old ones


def test_an_empty_newer_checkpoint_folder_is_skipped(reference, tiny_config_file, tiny_data, tmp_path, capsys):
    run = interrupted_copy(reference, tmp_path)
    (run / "step_5").mkdir()
    train.main(argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    assert "skipped step_5/: it has no trainer_state.json" in capsys.readouterr().out
    assert same_weights(run / "final_model", reference / "final_model")


def test_when_no_checkpoint_verifies_resume_is_refused(reference, tiny_config_file, tiny_data, tmp_path, capsys):
    run = interrupted_copy(reference, tmp_path)
    for step in (2, 4):
        truncate(run / f"step_{step}" / "optimizer.bin")
    error = fails_with(capsys, argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    assert "no checkpoint of" in error and "skipped step_4/" in error and "skipped step_2/" in error


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(reference, tiny_config_file, tiny_data,
                                                                      tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(reference / "config.json", run / "config.json")
    (run / "metrics.jsonl").write_text('{"step": 1, "train/loss": 9.0}\n{"step": 2, "tr')  # cut by the kill
    error = fails_with(capsys, argv(tiny_config_file, tiny_data, run))
    assert "already holds a run" in error and "--resume_from_checkpoint latest" in error
    train.main(argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    assert "no checkpoint yet: it starts from step 0" in capsys.readouterr().out
    assert same_weights(run / "final_model", reference / "final_model")
    assert training_losses(run) == training_losses(reference)  # the killed attempt's records are gone, the cut line too


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(reference, tiny_config_file, tiny_data,
                                                                           tmp_path, capsys):
    run = interrupted_copy(reference, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    holder = RunLock(run)
    holder.acquire()  # another live training process holds the run folder
    try:
        for extra in (["--resume_from_checkpoint", "latest"], ["--overwrite_output_dir"]):
            error = fails_with(capsys, argv(tiny_config_file, tiny_data, run, *extra))
            assert f"is being written by another training process (pid {os.getpid()}" in error
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.release()
    # A lock file left by a killed process holds no flock: the next run takes it over.
    lock_path(run).write_text('{"pid": 999999, "host": "gone", "since": 0}')
    train.main(argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    assert same_weights(run / "final_model", reference / "final_model") and not lock_path(run).exists()


def test_a_second_training_process_is_refused(reference, tiny_config_file, tiny_data, tmp_path):
    """Two real processes: the second, started while the first trains, exits 2 with one line."""
    run = interrupted_copy(reference, tmp_path)
    slow = argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest", "--max_train_steps", "400",
                "--allow_resume_mismatch", "--checkpointing_steps", "1000")
    first = subprocess.Popen([sys.executable, "train.py", *slow], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        for line in first.stdout:  # wait until the first one trains
            if "resumed from" in line:
                break
        second = subprocess.run([sys.executable, "train.py", *slow], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2 and second.stderr.strip().splitlines()[-1].startswith("error: --output_dir")
        assert f"another training process (pid {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("error, cause", [(OSError(errno.ENOSPC, "No space left on device"), "no space left"),
                                          (PermissionError(errno.EACCES, "Permission denied"), "no permission")])
def test_a_failed_checkpoint_write_leaves_no_partial_folder(error, cause, reference, tiny_config_file, tiny_data,
                                                             tmp_path, capsys, monkeypatch):
    from accelerate import Accelerator

    run = tmp_path / "run"
    original = Accelerator.save_state

    def failing_save_state(self, output_dir=None, **kwargs):
        if output_dir.endswith("step_4"):
            os.makedirs(output_dir, exist_ok=True)
            (open(os.path.join(output_dir, "model.safetensors"), "wb")).close()  # a partial file, then the error
            error.filename = os.path.join(output_dir, "optimizer.bin")
            raise error
        return original(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", failing_save_state)
    message = fails_with(capsys, argv(tiny_config_file, tiny_data, run))
    assert cause in message and "step_4" in message and "the newest complete checkpoint is" in message
    assert not list(run.glob(".tmp-*")) and sorted(p.name for p in run.glob("step_*")) == ["step_2"]
    monkeypatch.setattr(Accelerator, "save_state", original)
    train.main(argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    assert same_weights(run / "final_model", reference / "final_model")


def test_a_changed_process_count_is_refused_unless_accepted(reference, tiny_config_file, tiny_data, tmp_path, capsys):
    run = interrupted_copy(reference, tmp_path)
    state_file = run / "step_4" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["run"]["num_processes"] = 2  # as a 2-process run of 4 windows per process would have saved it
    state_file.write_text(json.dumps(state))
    write_manifest(run / "step_4")
    error = fails_with(capsys, argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest"))
    assert "2 processes when saved, 1 now: the global batch changes from 8 to 4 windows" in error
    train.main(argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest", "--allow_resume_mismatch"))
    assert "--allow_resume_mismatch: resuming although 2 processes when saved" in capsys.readouterr().out


def test_fsdp_without_a_gpu_is_refused(tiny_config_file, tiny_data, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` sets
    error = fails_with(capsys, argv(tiny_config_file, tiny_data, tmp_path / "run"))
    assert "FSDP was requested" in error and "no GPU" in error and not (tmp_path / "run").exists()


def test_config_json_records_the_distributed_type_that_ran(reference):
    assert json.loads((reference / "config.json").read_text())["distributed_type"] == "NO"
