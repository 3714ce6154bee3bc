"""Faults, round three, in the run folder: a disk that fills, overwrites that must not lose anything,
a resume that meets a writer, and checkpoints whose files do not say what their names say. Each case
asserts the exit code, the single line on stderr and what the folders hold before and after."""
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

import train
from genie.files import RunLock
from tests.conftest import REPO_ROOT, one_line_error, run_argv, snapshot


def train_error(argv: list[str], capsys) -> str:
    return one_line_error(train.main, argv, capsys)


@pytest.fixture
def finished_run(finished_runs):
    """The 2-step stage-2 run of tests/conftest.py's `finished_runs` (checkpoints at steps 1 and 2)."""
    return finished_runs / "stage2"


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_overwrite_refuses_to_delete_files_no_run_wrote(finished_run, tiny_config_file, tiny_data, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    (run / "notes.txt").write_text("my notes")
    (run / "eval").mkdir()
    (run / "eval" / "eval.md").write_text("my table")
    before = snapshot(tmp_path)
    line = train_error(run_argv(tiny_config_file, tiny_data, run, "--overwrite_output_dir"), capsys)
    assert "would delete files in" in line and "(eval/, notes.txt)" in line and "move them out" in line
    assert snapshot(tmp_path) == before


def test_overwrite_never_touches_a_run_an_earlier_overwrite_left_aside(finished_run, tiny_config_file, tiny_data,
                                                                       tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    left = tmp_path / f".replaced-run-{os.getpid()}"  # the name the old code would have reused
    shutil.copytree(finished_run, left)
    kept = snapshot(left)
    train.main(run_argv(tiny_config_file, tiny_data, run, "--overwrite_output_dir", max_train_steps=2,
                        checkpointing_steps=1))
    out = capsys.readouterr().out
    assert snapshot(left) == kept  # untouched, and named on the console with how to restore it
    assert f"note: {left} holds a run that an interrupted --overwrite_output_dir moved aside" in out
    assert f"mv {left} {run}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [left.name, "run"]  # the new run's own move-aside is gone


def test_a_resume_meets_the_lock_of_a_writer_before_reading_its_checkpoints(finished_run, tiny_config_file,
                                                                            tiny_data, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    (run / "step_2" / "model.safetensors").write_bytes(b"half-moved")  # what a reader racing a writer could see
    lock = RunLock(run)
    lock.acquire()
    try:
        before = snapshot(run)
        line = train_error(run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint",
                                       str(run / "step_2")), capsys)
        assert "is being written by another training process" in line and "damaged" not in line
        assert snapshot(run) == before
    finally:
        lock.release()


def test_a_step_folder_must_hold_the_step_its_name_says(finished_run, tiny_config_file, tiny_data, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    shutil.rmtree(run / "step_2")
    os.replace(run / "step_1", run / "step_2")
    before = snapshot(tmp_path)
    line = train_error(run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", str(run / "step_2"),
                                   max_train_steps=3), capsys)
    assert "records step 1, not 2 (was the folder renamed or copied?)" in line
    assert snapshot(tmp_path) == before


def test_a_checkpoint_without_its_manifest_is_named_at_resume(finished_run, tiny_config_file, tiny_data, tmp_path,
                                                               capsys):
    run = copy_of(finished_run, tmp_path)
    (run / "step_2" / "manifest.json").unlink()
    train.main(run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest", max_train_steps=3,
                        checkpointing_steps=1))
    assert f"note: {run / 'step_2'} has no manifest.json, so its files cannot be checked" in capsys.readouterr().out
    assert (run / "step_3" / "manifest.json").is_file()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path(f"/tmp/genie-pickle-ran-{uuid.uuid4().hex}")


def test_an_rng_file_holding_a_code_pickle_is_refused_not_skipped(finished_run, tiny_config_file, tiny_data,
                                                                 tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    (run / "step_2" / "random_states_0.pkl").write_bytes(pickle.dumps({"random_state": _Payload()}))
    (run / "step_2" / "manifest.json").unlink()  # so that only the pickle itself can stop it
    before = snapshot(tmp_path)
    line = train_error(run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest",
                                   max_train_steps=3), capsys)
    assert f"cannot resume from {run / 'step_2'}: UnpicklingError" in line and not MARKER.exists()
    assert snapshot(tmp_path) == before


def test_a_nonfinite_loss_before_any_checkpoint_says_so(tiny_config_file, tiny_data, tmp_path, capsys):
    line = train_error(run_argv(tiny_config_file, tiny_data, tmp_path / "run", learning_rate=1e6,
                                   max_train_steps=30, checkpointing_steps=100), capsys)
    assert "non-finite loss at step" in line and "no checkpoint was written yet" in line


def test_a_checkpoint_write_that_torch_reports_as_a_runtime_error_is_one_line(tiny_config_file, tiny_data, tmp_path,
                                                                              capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 960")

    monkeypatch.setattr(torch, "save", full_disk)  # Accelerate writes the optimizer and RNG state with it
    run = tmp_path / "run"
    line = train_error(run_argv(tiny_config_file, tiny_data, run, max_train_steps=2, checkpointing_steps=1), capsys)
    assert f"could not write {run / 'step_1'}: the write failed ([enforce fail at inline_container.cc:672]" in line
    assert "no checkpoint was written yet" in line
    assert not list(run.glob(".tmp-*")) and not list(run.glob("step_*")) and (run / "config.json").is_file()


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 1.5 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}); the simulated "
                    "write failure test covers the handling")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_during_a_checkpoint_gives_one_line_and_no_partial_folder(tiny_config_file, tiny_data,
                                                                                     small_filesystem):
    run = small_filesystem / "run"
    result = subprocess.run([sys.executable, "train.py", *run_argv(tiny_config_file, tiny_data, run,
                                                                   max_train_steps=4, checkpointing_steps=1)],
                            cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    err = [line for line in result.stderr.strip().splitlines() if line.startswith("error: ") or "Traceback" in line]
    assert result.returncode == 2 and len(err) == 1, result.stderr[-3000:]
    assert "no space left on the device" in err[0] and "resume with --resume_from_checkpoint latest" in err[0]
    assert not list(run.glob(".tmp-*")) and not list(small_filesystem.glob(".*.lock"))
