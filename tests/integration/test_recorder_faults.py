"""scripts/record_atari.py under bad input and faults (issues 36 and 37): every wrong flag or unusable output
folder is one line and exit 2 before a frame is played; a write failure (a real EFBIG under `ulimit -f`, a
simulated quota or full disk) is one line with nothing left behind; a killed recording leaves nothing under
the output folder's name and a re-run cleans up after it; one recorder writes a folder at a time; SIGTERM
is one line. Recordings are 48 frames of Breakout."""
import collections
import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ale_py")
pytest.importorskip("sklearn")

from genie.data import atari  # noqa: E402
from tests.conftest import REPO_ROOT, _script_module, assert_refused, one_line_error, run_script  # noqa: E402

FLAGS = {"--env_id": "ALE/Breakout-v5", "--num_frames": "48", "--window_size": "4", "--max_episode_frames": "16",
         "--vocab_size": "64", "--seed": "1"}
DEADLINE_S = 300  # generous: the machine may be loaded; a poll that runs out fails with a message


def argv(out, **changes) -> list[str]:
    values = {**FLAGS, "--output_dir": str(out), **{f"--{k}": str(v) for k, v in changes.items()}}
    return [item for pair in values.items() for item in pair]


def main(args):
    return _script_module("record_atari").main(args)


def files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The files of an uninterrupted recording with FLAGS."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_script("record_atari", argv(out))
    return files(out)


# A recorder in a child process, optionally patched (genie.data.atari is `atari` in the patch).
CHILD = """
import pathlib, runpy, sys, time
from genie.data import atari
{patch}
sys.argv = ["record_atari.py", *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""
# Pause after train/ is written aside, until the file `go` exists (the marker says the pause began).
PAUSE_IN_WRITE = """
write_split = atari.write_split
def paused(out_dir, *args):
    written = write_split(out_dir, *args)
    if out_dir.name == "train":
        pathlib.Path({marker!r}).touch()
        while not pathlib.Path({go!r}).exists():
            time.sleep(0.1)
    return written
atari.write_split = paused
"""
# Pause while playing (before the first frame), forever.
PAUSE_IN_PLAY = """
def paused(spec, on_frame):
    pathlib.Path({marker!r}).touch()
    while True:
        time.sleep(0.1)
atari.record_splits = paused
"""


def spawn(args, patch="", shell_prefix="") -> subprocess.Popen:
    code = CHILD.format(patch=patch, script=str(REPO_ROOT / "scripts" / "record_atari.py"))
    command = [sys.executable, "-c", code, *args]
    if shell_prefix:  # e.g. "ulimit -f 20": a limit of the child only
        command = ["bash", "-c", f'{shell_prefix} && exec "$0" "$@"', *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO_ROOT)


def wait_for_file(path, process):
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the recorder ended (rc {process.returncode}) before {path.name}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the recorder did not reach {path.name} within {DEADLINE_S} s")
        time.sleep(0.1)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith(("error:", "Traceback"))]


BAD_FLAGS = [
    ("codebook_patches 0", {"codebook_patches": 0}, "--codebook_patches 0 must be >= --vocab_size 64"),
    ("codebook_patches -1", {"codebook_patches": -1}, "--codebook_patches -1 must be >= --vocab_size 64"),
    ("codebook_patches below vocab", {"codebook_patches": 63}, "k-means needs a patch for each codebook entry"),
    ("num_frames negative", {"num_frames": -5}, "--num_frames -5 is too small"),
    ("num_frames not a number", {"num_frames": "many"}, "invalid int value: 'many'"),
    ("num_frames beyond memory", {"num_frames": 10 ** 12}, "of memory (about 100 kB a frame"),
    ("window_size 0", {"window_size": 0}, "--window_size 0 must be >= 2"),
    ("window_size 1", {"window_size": 1}, "--window_size 1 must be >= 2"),
    ("window_size negative", {"window_size": -3}, "--window_size -3 must be >= 2"),
    ("episodes shorter than the window", {"max_episode_frames": 3}, "--max_episode_frames 3 must be >= the window"),
    ("max_episode_frames 0", {"max_episode_frames": 0}, "--max_episode_frames 0 must be >= the window"),
    ("seed negative", {"seed": -1}, "--seed -1 must be >= 0"),
    ("vocab_size 1", {"vocab_size": 1}, "--vocab_size 1 must be >= 2"),
    ("vocab_size 0", {"vocab_size": 0}, "--vocab_size 0 must be >= 2"),
    ("patch_size 0", {"patch_size": 0}, "--patch_size 0 must divide"),
    ("patch_size 128", {"patch_size": 128}, "--patch_size 128 must divide"),
    ("val_fraction 0", {"val_fraction": 0}, "--val_fraction 0.0 must lie strictly between 0 and 1"),
    ("val_fraction 1", {"val_fraction": 1}, "--val_fraction 1.0 must lie strictly between 0 and 1"),
    ("val_fraction negative", {"val_fraction": -0.1}, "--val_fraction -0.1 must lie strictly between 0 and 1"),
    ("env_id empty", {"env_id": ","}, "--env_id is empty"),
    ("env_id one unknown of two", {"env_id": "ALE/Breakout-v5,ALE/NoSuchGame-v5", "num_frames": 96},
     "--env_id 'ALE/NoSuchGame-v5' is not an ALE game"),
    ("frame_skip is not a flag", {"frame_skip": 0}, "unknown flag(s) --frame_skip 0"),
]


@pytest.mark.parametrize("name, changes, expected", BAD_FLAGS, ids=[case[0] for case in BAD_FLAGS])
def test_a_bad_flag_is_one_line_before_recording(name, changes, expected, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert_refused(name, main, argv(tmp_path / "out", **changes), expected, tmp_path, capsys)


def test_an_output_path_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("keep")
    assert_refused("output is a file", main, argv(tmp_path / "a_file"), "is a file; pass a new or empty folder",
                   tmp_path, capsys)
    assert_refused("output under a file", main, argv(tmp_path / "a_file" / "out"), "cannot write --output_dir",
                   tmp_path, capsys)


def test_an_interrupted_recording_of_an_older_version_is_named(tmp_path, capsys):
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / ".tmp-val-1234").mkdir()
    assert_refused("older interrupted recording", main, argv(tmp_path / "out"),
                   "holds an interrupted recording (.tmp-val-1234, train, no val/) of an older version; delete",
                   tmp_path, capsys)


@pytest.fixture
def immutable(tmp_path):
    """chattr +i on a folder (needs root and a file system with the flag), undone afterwards."""
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("chattr +i is not available here")
        made.append(folder)
    yield make
    for folder in made:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_folder_it_may_not_write_is_refused_before_recording(immutable, tmp_path, capsys):
    immutable(tmp_path / "locked")
    assert_refused("immutable parent", main, argv(tmp_path / "locked" / "out"),
                   "cannot write --output_dir", tmp_path, capsys)
    immutable(tmp_path / "empty_but_immutable")
    assert_refused("immutable empty output folder", main, argv(tmp_path / "empty_but_immutable"),
                   "no permission to write there", tmp_path, capsys)


def test_a_disk_without_room_is_refused_before_recording(tmp_path, capsys, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(atari.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    assert_refused("full disk", main, argv(tmp_path / "out"), "but its disk has 0.0 MB free; free space", tmp_path,
                   capsys)


@pytest.mark.parametrize("code, cause", [(errno.EDQUOT, "the disk quota is exceeded"),
                                         (errno.ENOSPC, "no space left on the device"),
                                         (errno.EROFS, "the file system is read-only")])
def test_a_write_failure_while_writing_is_one_line_and_leaves_nothing(code, cause, tmp_path, capsys, monkeypatch):
    write_split = atari.write_split

    def failing(out_dir, *args):  # train/ is written aside, then val/ fails
        if out_dir.name == "val":
            raise OSError(code, os.strerror(code), str(out_dir / "video.bin"))
        return write_split(out_dir, *args)
    monkeypatch.setattr(atari, "write_split", failing)
    assert_refused(f"errno {errno.errorcode[code]}", main, argv(tmp_path / "out"),
                   f"could not write {tmp_path / 'out'}: {cause}", tmp_path, capsys)
    assert list(tmp_path.iterdir()) == []


def test_ulimit_f_is_refused_before_recording_and_a_real_efbig_leaves_nothing(tmp_path):
    """The codebook (48 kB at 64 entries) does not fit under `ulimit -f 20` (20 kB): refused up front; with
    that check patched out the write itself fails with EFBIG (Python ignores SIGXFSZ), also one line."""
    # numpy reports the short write without an errno: the line names the limit as the likely cause
    efbig = f"could not write {tmp_path / 'out'}: the write failed, most likely at the file size limit of 20480 bytes"
    for patch, expected in (("", "the file size limit (ulimit -f) is 20480 bytes"),
                            ("atari.check_writable = lambda spec, target: None", efbig)):
        child = spawn(argv(tmp_path / "out"), patch, shell_prefix="ulimit -f 20")
        _, stderr = child.communicate(timeout=DEADLINE_S)
        lines = error_lines(stderr)
        assert child.returncode == 2 and len(lines) == 1 and expected in lines[0], stderr[-3000:]
        assert list(tmp_path.iterdir()) == []


def test_sigkill_while_writing_leaves_nothing_under_the_name_and_a_rerun_records_the_same(reference, tmp_path,
                                                                                         capsys):
    marker, out = tmp_path / "marker", tmp_path / "data" / "out"
    child = spawn(argv(out), PAUSE_IN_WRITE.format(marker=str(marker), go=str(tmp_path / "never")))
    wait_for_file(marker, child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE_S)
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == [".out.lock", f".tmp-out-{child.pid}"]  # train/ written aside; nothing named out
    assert run_script("record_atari", argv(out)) == (out / "train", out / "val")
    removed = f"removed {out.parent / f'.tmp-out-{child.pid}'}, left by an interrupted recording"
    assert removed in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    assert files(out) == reference


def test_a_second_recorder_is_refused_naming_the_first_which_finishes_intact(reference, tmp_path, capsys):
    marker, go, out = tmp_path / "marker", tmp_path / "go", tmp_path / "out"
    first = spawn(argv(out), PAUSE_IN_WRITE.format(marker=str(marker), go=str(go)))
    wait_for_file(marker, first)
    line = one_line_error(main, argv(out, env_id="ALE/Pong-v5"), capsys)
    assert f"is being written by another recording process (pid {first.pid} on" in line, line
    go.touch()
    stdout, stderr = first.communicate(timeout=DEADLINE_S)
    assert first.returncode == 0 and f"wrote {out / 'train'} and {out / 'val'}" in stdout, stderr[-3000:]
    assert files(out) == reference
    line = one_line_error(main, argv(out, env_id="ALE/Pong-v5"), capsys)  # a recorder that comes later
    assert "already holds files" in line and files(out) == reference


def test_two_recorders_started_together_one_writes_and_the_other_is_refused(tmp_path):
    out = tmp_path / "out"
    children = [spawn(argv(out, seed=seed)) for seed in (1, 2)]
    results = [(child.returncode, stderr) for child in children for _, stderr in [child.communicate(timeout=600)]]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refusal = error_lines(next(stderr for rc, stderr in results if rc == 2))
    assert len(refusal) == 1 and ("another recording process" in refusal[0] or "already holds" in refusal[0])
    winner = [1, 2][[rc for rc, _ in results].index(0)]
    seeds = {split: atari_seed(out / split) for split in ("train", "val")}
    assert seeds == {"train": winner, "val": winner}  # both splits of the one recording that printed success


def atari_seed(split):
    import json

    return json.loads((split / "metadata.json").read_text())["atari"]["seed"]


def test_sigterm_while_playing_is_one_line_and_writes_nothing(tmp_path):
    marker = tmp_path / "marker"
    child = spawn(argv(tmp_path / "data" / "out"), PAUSE_IN_PLAY.format(marker=str(marker)))
    wait_for_file(marker, child)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=DEADLINE_S)
    assert child.returncode == 2 and error_lines(stderr) == [
        f"error: stopped by SIGTERM while recording: nothing was written to {tmp_path / 'data' / 'out'}; "
        "run the same command again to record"], stderr[-3000:]
    assert list((tmp_path / "data").iterdir()) == []


def test_sigterm_while_writing_finishes_the_recording_first(reference, tmp_path):
    marker, go, out = tmp_path / "marker", tmp_path / "go", tmp_path / "out"
    child = spawn(argv(out), PAUSE_IN_WRITE.format(marker=str(marker), go=str(go)))
    wait_for_file(marker, child)
    child.send_signal(signal.SIGTERM)
    go.touch()
    stdout, stderr = child.communicate(timeout=DEADLINE_S)
    assert child.returncode == 0 and "received SIGTERM while writing" in stdout, stderr[-3000:]
    assert files(out) == reference
