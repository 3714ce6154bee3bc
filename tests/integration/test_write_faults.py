"""Write failures, links and exports (issues 36 and 37, round four): every failed write, whatever its errno and
whichever library raised it (an OSError, safetensors' "(os error N)", torch's zip writer), is one line with exit 2
and leaves no partial file or folder; nothing a run writes follows a link out of its folder; ONNX exports are
written aside and moved into place; the hub download says when nothing arrived. Each case runs the exact input
and checks what the folders hold before and after, inside and outside the run folder."""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.figure
import pytest
import torch

import masked_pretrain
import train
from genie.export.record import RECORD
from genie.files import file_sha256
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import REPO_ROOT, TINY, assert_refused, one_line_error, run_argv, run_script, snapshot

QUOTA = OSError(errno.EDQUOT, "Disk quota exceeded")


def copy_of(run: Path, tmp_path: Path, name: str = "run") -> Path:
    return shutil.copytree(run, tmp_path / name, symlinks=True)


def leftovers(root: Path) -> list[str]:
    """Temporary or aside names anywhere under `root`, and links: what a failed or finished write must not leave."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith((".tmp-", ".old-", ".replaced-")) or p.name.endswith(".lock") or p.is_symlink())


def contents(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `root` with each file's size and modification time (a folder's own time changes when a
    temporary name comes and goes in it, and is left out)."""
    return {name: value if (root / name).is_file() else None for name, value in snapshot(root).items()}


def run_limited(limit_kib: int, argv: list[str]) -> subprocess.CompletedProcess:
    """A command under a real file size limit (`ulimit -f`): its writes past the limit fail with EFBIG."""
    command = f"ulimit -f {limit_kib} && exec {sys.executable} {' '.join(argv)}"
    return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT)})


def the_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ") or "Traceback" in line]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


# ----- the run folder: a real file size limit, a simulated quota, each file a run writes -----

@pytest.mark.parametrize("limit_kib, cause", [
    (300, "the file size limit is exceeded"),  # model.safetensors: safetensors' SafetensorError "(os error 27)"
    # optimizer.bin: torch's zip writer, which loses the errno
    (800, "the write failed, most likely at the file size limit of 819200 bytes")])
def test_a_real_file_size_limit_while_saving_is_one_line(limit_kib, cause, tiny_config_file, tiny_data, tmp_path):
    run = tmp_path / "run"
    argv = ["train.py", *run_argv(tiny_config_file, tiny_data, run, max_train_steps=2, checkpointing_steps=1)]
    line = the_error_line(run_limited(limit_kib, argv))
    assert f"could not write {run / 'step_1'}: {cause}" in line and "raise the file size limit (ulimit -f)" in line
    assert "resume with --resume_from_checkpoint latest" in line
    assert sorted(p.name for p in run.iterdir()) == ["config.json"] and leftovers(tmp_path) == []


def partial_then(error: OSError):
    """A writer that writes part of its file (or a file into its folder), then fails with `error`."""
    def write(*args, **kwargs):
        target = Path(kwargs.get("output_dir") or args[-1])
        (target if target.is_dir() else target.parent).mkdir(parents=True, exist_ok=True)
        (target / "partial.bin" if target.is_dir() else target).write_bytes(b"half")
        raise error
    return write


def test_a_quota_while_saving_a_checkpoint_is_one_line(tiny_config_file, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("genie.checkpointing.run_folder.write_manifest", partial_then(QUOTA))
    run = tmp_path / "run"
    line = one_line_error(train.main, run_argv(tiny_config_file, tiny_data, run, max_train_steps=2,
                                               checkpointing_steps=1), capsys)
    assert f"could not write {run / 'step_1'}: the disk quota is exceeded" in line and "within your quota" in line
    assert sorted(p.name for p in run.iterdir()) == ["config.json"] and leftovers(tmp_path) == []


def test_a_quota_while_saving_the_final_model_is_one_line(tiny_config_file, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("genie.checkpointing.checkpoint.save_file", partial_then(QUOTA))
    run = tmp_path / "run"
    line = one_line_error(train.main, run_argv(tiny_config_file, tiny_data, run, max_train_steps=1,
                                               checkpointing_steps=1), capsys)
    assert f"could not write {run / 'final_model'}: the disk quota is exceeded" in line
    assert f"the newest complete checkpoint is {run / 'step_1'}" in line
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "step_1"]
    assert leftovers(tmp_path) == []


def failing_os_write(monkeypatch, name: str, error: OSError) -> None:
    """os.write fails with `error` (after writing 10 bytes) on the file called `name`, and only there."""
    real = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(name):
            real(fd, data[:10])
            raise error
        return real(fd, data)
    monkeypatch.setattr(os, "write", write)


def test_a_quota_while_appending_to_metrics_leaves_no_half_line(finished_runs, tiny_config_file, tiny_data, tmp_path,
                                                                capsys, monkeypatch):
    run = copy_of(finished_runs / "stage2", tmp_path)
    failing_os_write(monkeypatch, "metrics.jsonl", QUOTA)
    line = one_line_error(train.main, run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest",
                                               max_train_steps=3, checkpointing_steps=1), capsys)
    assert f"could not write {run / 'metrics.jsonl'}: the disk quota is exceeded" in line
    assert "the newest complete checkpoint is" in line
    assert (run / "metrics.jsonl").read_text().endswith("\n") and leftovers(tmp_path) == []


def test_a_config_json_that_cannot_be_written_puts_the_replaced_run_back(finished_runs, tiny_config_file, tiny_data,
                                                                         tmp_path, capsys, monkeypatch):
    run = copy_of(finished_runs / "stage2", tmp_path)
    before = snapshot(tmp_path)
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if not self.name.endswith("config.json"):
            return real(self, text, *args, **kwargs)
        real(self, text[:5])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", write_text)
    line = one_line_error(train.main, run_argv(tiny_config_file, tiny_data, run, "--overwrite_output_dir",
                                               max_train_steps=2), capsys)
    assert f"could not write {run / 'config.json'}: no space left on the device" in line
    assert line.endswith("then run the command again")
    assert snapshot(tmp_path) == before  # the replaced run is back, bit for bit, and nothing else is there


def test_a_lock_file_in_a_read_only_folder_is_one_line(tiny_config_file, tiny_data, tmp_path, capsys, monkeypatch):
    real = os.open

    def read_only_for_locks(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only_for_locks)
    line = one_line_error(train.main, run_argv(tiny_config_file, tiny_data, tmp_path / "run", max_train_steps=2),
                          capsys)
    assert f"could not write {tmp_path / '.run.lock'}: the file system is read-only" in line
    assert list(tmp_path.iterdir()) == []


def test_a_picture_that_cannot_be_written_is_one_line(finished_runs, tiny_config_file, tiny_data, tmp_path, capsys,
                                                      monkeypatch):
    run = copy_of(finished_runs / "stage1", tmp_path)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", partial_then(QUOTA))
    line = one_line_error(masked_pretrain.main, run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint",
                                                         "latest", max_train_steps=3), capsys)
    assert f"could not write {run / 'pictures' / 'eval_step_3.png'}: the disk quota is exceeded" in line
    assert not (run / "pictures" / "eval_step_3.png").exists() and leftovers(tmp_path) == []


# ----- links: nothing a run writes follows one out of its folder -----

def outside_folder(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "folder" / "model.safetensors").write_bytes(b"not yours")
    (outside / "file.txt").write_text("not yours either\n")
    return outside


def test_links_in_a_run_folder_are_never_written_through(finished_runs, tiny_config_file, tiny_data, tmp_path):
    run, outside = copy_of(finished_runs / "stage2", tmp_path), outside_folder(tmp_path)
    shutil.rmtree(run / "step_2")
    shutil.rmtree(run / "final_model")
    for name in (".tmp-step_2", "final_model", f".tmp-final_model-{os.getpid()}"):
        (run / name).symlink_to(outside / "folder")
    for name in ("metrics.jsonl", f".tmp-{os.getpid()}-config.json"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside / "file.txt")
    (tmp_path / ".run.lock").symlink_to(outside / "file.txt")
    kept = snapshot(outside)
    train.main(run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest", max_train_steps=2,
                        checkpointing_steps=1))
    assert snapshot(outside) == kept
    assert (run / "step_2").is_dir() and (run / "final_model" / "model.safetensors").stat().st_size > 1000
    assert leftovers(run) == [] and not (tmp_path / ".run.lock").exists()


def test_a_pictures_link_in_a_run_folder_is_not_written_through(finished_runs, tiny_config_file, tiny_data, tmp_path):
    run, outside = copy_of(finished_runs / "stage1", tmp_path), outside_folder(tmp_path)
    shutil.rmtree(run / "pictures", ignore_errors=True)
    (run / "pictures").symlink_to(outside / "folder")
    kept = snapshot(outside)
    masked_pretrain.main(run_argv(tiny_config_file, tiny_data, run, "--resume_from_checkpoint", "latest",
                                  max_train_steps=3))
    assert snapshot(outside) == kept and (run / "pictures" / "eval_step_3.png").is_file() and leftovers(run) == []


def test_overwrite_through_a_linked_output_dir_replaces_the_run_it_points_at(finished_runs, tiny_config_file,
                                                                              tiny_data, tmp_path, capsys):
    real = copy_of(finished_runs / "stage2", tmp_path, "real")
    empty_aside = tmp_path / ".replaced-real-0ld"  # what a failed move aside of older versions left
    empty_aside.mkdir()
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "run"
    link.symlink_to(real)
    train.main(run_argv(tiny_config_file, tiny_data, link, "--overwrite_output_dir", max_train_steps=1))
    out = capsys.readouterr().out
    assert "holds a run that an interrupted" not in out  # an empty aside folder is no run
    assert link.is_symlink() and link.resolve() == real and (real / "final_model").is_dir()
    assert sorted(p.name for p in real.glob("step_*")) == ["step_1"]  # the new run, in the real folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links", "real"]  # no aside, no lock left


def test_a_dangling_link_as_output_dir_is_refused(tiny_config_file, tiny_data, tmp_path, capsys):
    (tmp_path / "run").symlink_to(tmp_path / "gone")
    line = one_line_error(train.main, run_argv(tiny_config_file, tiny_data, tmp_path / "run"), capsys)
    assert f"--output_dir '{tmp_path / 'run'}' is a symbolic link to {tmp_path / 'gone'}, which does not exist" in line
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


# ----- ONNX exports: atomic, and checked against their record -----

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Saved models of d_model 64 and 32, and the export of the d32 one."""
    root = tmp_path_factory.mktemp("write-faults-onnx")
    for name, d_model in (("d64", 64), ("d32", 32)):
        STMaskGIT(GenieConfig(**{**TINY, "d_model": d_model})).save_pretrained(root / name)
    run_script("export_onnx", ["--checkpoint_dir", str(root / "d32"), "--output_dir", str(root / "d32_onnx")])
    return root


def test_a_real_file_size_limit_during_an_export_leaves_nothing_and_a_later_export_works(models, tmp_path):
    out = shutil.copytree(models / "d32_onnx", tmp_path / "onnx")  # an earlier export of another model
    before = contents(tmp_path)
    argv = ["scripts/export_onnx.py", "--checkpoint_dir", str(models / "d64"), "--output_dir", str(out), "--overwrite"]
    line = the_error_line(run_limited(300, argv))
    assert f"could not write {out}: the file size limit is exceeded; nothing of this export was left there" in line
    assert contents(tmp_path) == before
    record = run_script("export_onnx", argv[1:])
    assert record["genie_config"]["d_model"] == 64 and sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "full.onnx", "cached_step.onnx"])


def test_a_quota_during_an_export_leaves_nothing(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.onnx, "export", partial_then(QUOTA))
    fresh = tmp_path / "fresh"
    assert_refused("export, quota", lambda argv: run_script("export_onnx", argv),
                   ["--checkpoint_dir", str(models / "d64"), "--output_dir", str(fresh)],
                   f"could not write {fresh}: the disk quota is exceeded", tmp_path, capsys, contents)
    assert not fresh.exists()


def test_graphs_of_another_model_under_a_forged_record_are_one_line(models, tiny_data, tmp_path, capsys):
    forged = shutil.copytree(models / "d32_onnx", tmp_path / "forged")
    run_script("export_onnx", ["--checkpoint_dir", str(models / "d64"), "--output_dir", str(tmp_path / "d64_onnx")])
    record = json.loads((forged / RECORD).read_text())
    for graph in record["graphs"].values():  # the d64 graphs, under the d32 record, with the hashes redone
        shutil.copyfile(tmp_path / "d64_onnx" / graph["file"], forged / graph["file"])
        graph["sha256"] = file_sha256(forged / graph["file"])
    (forged / RECORD).write_text(json.dumps(record))
    argv = ["--checkpoint_dir", str(models / "d32"), "--val_data_dir", str(tiny_data[1]), "--output_dir",
            str(tmp_path / "generated"), "--num_examples", "1", "--backend", "onnxruntime", "--onnx_dir", str(forged)]
    assert_refused("forged export record", lambda a: run_script("generate", a), argv,
                   "cached_step.onnx is not a graph of the model its config.json records (past_keys_0 is "
                   "(*, *, 16, 2, 32), that model's is (*, *, 16, 2, 16))", tmp_path, capsys)


# ----- evaluation and generation outputs -----

def test_a_quota_while_writing_the_evaluation_keeps_the_earlier_one(finished_runs, tiny_data, tmp_path, capsys,
                                                                    monkeypatch):
    out = tmp_path / "eval"
    out.mkdir()
    for name in ("eval.json", "eval.md", "eval.png"):
        (out / name).write_text("an earlier evaluation\n")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", partial_then(QUOTA))
    argv = ["--checkpoint_dir", str(finished_runs / "stage2" / "final_model"), "--val_data_dir", str(tiny_data[1]),
            "--train_data_dir", str(tiny_data[0]), "--max_examples", "2", "--no_rollout", "--no_action_sensitivity",
            "--output_dir", str(out)]
    assert_refused("evaluation outputs, quota", lambda a: run_script("evaluate", a), argv,
                   f"could not write {out / 'eval.json'}: the disk quota is exceeded", tmp_path, capsys, contents)


def test_a_quota_while_writing_generated_frames_leaves_no_file(finished_runs, tiny_data, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setattr("numpy.savez", partial_then(QUOTA))
    out = tmp_path / "generated"
    argv = ["--checkpoint_dir", str(finished_runs / "stage2" / "final_model"), "--val_data_dir", str(tiny_data[1]),
            "--num_examples", "1", "--maskgit_steps", "1", "--output_dir", str(out)]
    assert_refused("generated outputs, quota", lambda a: run_script("generate", a), argv,
                   f"could not write {out}: the disk quota is exceeded", tmp_path, capsys, contents)


# ----- the hub: no network, offline, and a call that returns without what was asked for -----

@pytest.fixture
def offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_a_download_that_returns_without_the_data_is_one_line(offline, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda **kwargs: kwargs["local_dir"])  # an old client
    (tmp_path / "data").mkdir()
    assert_refused("download, nothing arrived", lambda a: run_script("download_1x", a),
                   ["--version", "v1.1", "--output_dir", str(tmp_path / "data")],
                   f"--version v1.1: the hub client returned, but {tmp_path / 'data' / 'train_v1.1'} does not exist "
                   "(offline mode is on", tmp_path, capsys)


@pytest.mark.parametrize("script, argv", [
    ("download_1x", ["--models", "GENIE_35M"]),
    ("evaluate", ["--checkpoint_dir", "1x-technologies/GENIE_35M"])])
def test_an_offline_download_is_one_line(script, argv, offline, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_refused(f"{script} offline", lambda a: run_script(script, a), argv,
                   "cannot download from the Hugging Face hub: offline mode is on (HF_HUB_OFFLINE is set)", tmp_path,
                   capsys)


def test_no_connection_to_the_hub_is_one_line(tmp_path, capsys, monkeypatch):
    import httpx
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(**kwargs):
        try:
            raise httpx.ConnectError("[Errno -2] Name or service not known")
        except httpx.ConnectError as error:
            raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub") from error

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", unreachable)
    assert_refused("download, no network", lambda a: run_script("download_1x", a),
                   ["--models", "GENIE_35M", "--output_dir", str(tmp_path / "data")],
                   "--models GENIE_35M: cannot download from the Hugging Face hub: no connection to huggingface.co",
                   tmp_path, capsys)


def test_a_hub_id_as_checkpoint_dir_goes_through_the_download(finished_runs, tmp_path, monkeypatch, capsys):
    from genie.data.hub import checkpoint_or_hub_id

    model = finished_runs / "stage2" / "final_model"
    fetched = checkpoint_or_hub_id("1x-technologies/GENIE_35M", snapshot_download=lambda **kwargs: str(model))
    assert fetched == model and checkpoint_or_hub_id(str(model)) == model
    assert_refused("generate, hub id without output_dir", lambda a: run_script("generate", a),
                   ["--checkpoint_dir", "1x-technologies/GENIE_35M"], "is a hub id: pass --output_dir too",
                   tmp_path, capsys)
