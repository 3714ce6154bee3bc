"""Bad inputs, round four (issues 36 and 37): codebooks of every wrong format and codebooks outside their
split, built-in vocabularies, impossible study metrics and repeated controls, segment fractions that keep
nothing, --drop_actions without actions, evaluate flags that would be ignored, v1.1 / v2.0 mix-ups whose
fix fits the model config; and the behaviours that replace a traceback or a silence: the documented v2.0
command, --drop_actions on unlabelled data, studies keyed to their data, no verdict from one seed, and
study workers that die with their runner."""
import functools
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import train
from genie.data import builtin
from tests.conftest import REPO_ROOT, TINY, assert_refused, run_argv, run_script
from tests.integration.test_bad_inputs import Case

MAINS = {"train": train.main, "evaluate": functools.partial(run_script, "evaluate"),
         "ablate": functools.partial(run_script, "ablate")}
DEADLINE_S = 300  # a wait on another process fails the test after this, instead of hanging


class Env:
    """What a case builds its command line from; everything it makes lives under `tmp`."""

    def __init__(self, tmp: Path, tiny_data, runs: Path, builtin_v2, v2_config: Callable[[], str]):
        self.tmp, self.data, self.runs, self.v2, self.v2_config = tmp, tiny_data, runs, builtin_v2, v2_config
        self.out = tmp / "out"

    def config(self, **changes) -> str:
        path = self.tmp / "config.json"
        path.write_text(json.dumps({**TINY, **changes}))
        return str(path)

    def train(self, *extra, config=None, data=None) -> list[str]:
        return run_argv(config or self.config(), data or self.data, self.out, *extra, max_train_steps=1)

    def evaluate(self, *extra, val=None) -> list[str]:
        model = self.tmp / "model"
        if not model.exists():
            shutil.copytree(self.runs / "stage2" / "final_model", model)
        return ["--checkpoint_dir", str(model), "--val_data_dir", str(val or self.data[1]), "--train_data_dir",
                str(self.data[0]), "--output_dir", str(self.out), *extra]

    def codebook(self, how: str) -> list[str]:
        return self.evaluate(val=codebook_split(self.data[1], self.tmp / "val", how))

    def study(self, **changes) -> list[str]:
        study = {"name": "s", "seeds": [0, 1], "stage1_steps": 1, "stage2_steps": 1,
                 "grid": {"mask_schedule": ["cosine"]}, "train_data_dir": str(self.data[0]),
                 "val_data_dir": str(self.data[1])} | changes
        if "genie_config" not in study:
            study["genie_config"] = self.config()
        (self.tmp / "study.json").write_text(json.dumps(study))
        return ["--study", str(self.tmp / "study.json"), "--store", str(self.tmp / "store"), "--output_dir",
                str(self.out)]


def codebook_split(source: Path, target: Path, how: str) -> Path:
    """A copy of a built-in split whose decoder is a patch codebook (as a recorded Atari split's), broken as
    `how` says: "name=value" sets a tokenizer field of metadata.json; other names replace the file."""
    shutil.copytree(source, target)
    meta = json.loads((target / "metadata.json").read_text())
    meta.pop("builtin_tokenizer")
    spec = {"kind": "patch_codebook", "file": "codebook.npy", "patch": 2, "channels": 3, "vocab_size": 256}
    good = np.full((256, 12), 128.0, dtype=np.float32)
    arrays = {"npz": None, "strings": good.astype(str), "NaN": np.where(good > 0, np.nan, good),
              "shape": good[:, :6], "object": np.array([{"a": 1}] * 256, dtype=object).reshape(256, 1),
              "complex": good.astype(np.complex64), "above 255": good + 200, "bool": good > 0,
              "not npy": b"\x00" * 100}
    if "=" in how:
        key, value = how.split("=", 1)
        spec[key] = json.loads(value)
    if how == "npz":
        np.savez(target / "codebook.npy.npz", centroids=good)
        (target / "codebook.npy.npz").rename(target / "codebook.npy")
    elif how == "not npy":
        (target / "codebook.npy").write_bytes(arrays[how])
    elif how == "object":
        np.save(target / "codebook.npy", arrays[how], allow_pickle=True)
    else:
        np.save(target / "codebook.npy", arrays.get(how, good))
    (target.parent / "outside.npy").write_bytes((target / "codebook.npy").read_bytes())
    (target / "metadata.json").write_text(json.dumps({**meta, "tokenizer": spec}))
    return target


def without_actions(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    shutil.rmtree(target / "actions")
    meta = json.loads((target / "metadata.json").read_text())
    meta.pop("action_dims", None)
    (target / "metadata.json").write_text(json.dumps(meta))
    return target


def codebook_case(how: str, expected: str) -> Case:
    return Case("evaluate", lambda e: e.codebook(how), expected)


def v2_case(folders: Callable[[Env], tuple], config: str, flags: list[str], expected: str) -> Case:
    return Case("train", lambda e: e.train(*flags, config=e.v2_config() if config == "v2" else e.config(),
                                           data=tuple(map(str, folders(e)))), expected)


CASES = {
    # ---- codebooks (36.4, 36.5, 37.9 and beyond); the file is checked before any value is read
    "codebook is an .npz archive": codebook_case("npz", "is an .npz archive, not one .npy array"),
    "codebook holds strings": codebook_case("strings", "holds <U32 values, not pixel values"),
    "codebook fields are strings": codebook_case('patch="2"', "tokenizer.patch = '2' must be a positive integer"),
    "codebook vocab_size 0": codebook_case("vocab_size=0", "tokenizer.vocab_size = 0 must be a positive integer"),
    "codebook file not named": codebook_case("file=null", "tokenizer.file = None must name the codebook's .npy"),
    "codebook path through ..": codebook_case('file="../outside.npy"', "'../outside.npy' points outside the split"),
    "codebook path absolute": codebook_case('file="/etc/hostname"', "'/etc/hostname' points outside the split"),
    "codebook of the wrong shape": codebook_case("shape", "holds an array of shape (256, 6), expected (256, 2*2*3)"),
    "codebook with NaN": codebook_case("NaN", "NaN, infinite or outside the pixel range [0, 255]"),
    "codebook above 255": codebook_case("above 255", "outside the pixel range [0, 255]"),
    "codebook of pickled objects": codebook_case("object", "is not a readable .npy codebook"),
    "codebook of complex numbers": codebook_case("complex", "holds complex64 values, not pixel values"),
    "codebook of booleans": codebook_case("bool", "holds bool values, not pixel values"),
    "codebook not an .npy file": codebook_case("not npy", "is not a readable .npy codebook"),
    # ---- the built-in world's vocabulary (36.8)
    "image_vocab_size 2 on the built-in world": Case(
        "train", lambda e: ["--genie_config", e.config(image_vocab_size=2, num_factored_vocabs=1), "--output_dir",
                            str(e.out), "--max_train_steps", "1"], "the built-in world has 256 or 262144 token ids"),
    # ---- studies (36.10, 36.17, 37.4)
    "study primary action_sensitivity without actions": Case(
        "ablate", lambda e: e.study(genie_config=e.config(action_dims={}),
                                    primary={"metric": "action_sensitivity"}),
        "primary metric action_sensitivity cannot be measured: the model config"),
    "study with a control listed twice": Case(
        "ablate", lambda e: e.study(controls=["autoregressive_stage1", "autoregressive_stage1"]),
        "list a control twice; name each once"),
    # ---- training flags (36.13)
    "--train_segment_fraction 1e-9": Case("train", lambda e: e.train("--train_segment_fraction", "1e-9"),
                                          "--train_segment_fraction 1e-09 keeps 0 of the"),
    # ---- evaluate.py flags that would be ignored (36.16 and beyond)
    "evaluate --loss_only --num_prompt_frames 99": Case(
        "evaluate", lambda e: e.evaluate("--loss_only", "--num_prompt_frames", "99"),
        "--num_prompt_frames 99 sets the rollout's prompt, and --loss_only makes no rollout"),
    "evaluate --no_rollout --num_prompt_frames 2": Case(
        "evaluate", lambda e: e.evaluate("--no_rollout", "--num_prompt_frames", "2"), "--no_rollout makes no rollout"),
    "evaluate --loss_only --temperature 1": Case(
        "evaluate", lambda e: e.evaluate("--loss_only", "--temperature", "1", "--maskgit_steps", "4"),
        "samples nothing, so --maskgit_steps --temperature would have no effect"),
    # ---- v1.1 / v2.0 mix-ups whose fix fits the model config (37.10; the v1.1-config cases: test_cosmos_v2.py)
    "v2.0 config, v1.1 folder, --data_format v2.0": v2_case(
        lambda e: e.data, "v2", ["--data_format", "v2.0"], "it holds video.bin, the v1.1 layout; pass a v2.0 folder "
        "(the model config cannot read v1.1 data: it conditions on the v2.0 robot states"),
    "v1.1 config, v2.0 folder, --data_format v1.1": v2_case(
        lambda e: e.v2, "v1", ["--data_format", "v1.1"], "the v2.0 layout; pass a v1.1 folder (the model config "
        "cannot read v2.0 data: its T = 4 is not a multiple of 3)"),
    "v2.0 config, v2.0 folder, --data_format v1.1": v2_case(
        lambda e: e.v2, "v2", ["--data_format", "v1.1"], "the v2.0 layout; leave --data_format out (auto) to read "
        "it as v2.0"),
    "v2.0 config on v1.1 data": v2_case(
        lambda e: e.data, "v2", [], "holds v1.1 data (video.bin) but the model config is for v2.0 data: it "
        'conditions on the v2.0 robot states ("action_dims" {"states": ...}); use a model config for v1.1 data'),
    "v2.0 config, v1.1 train split, v2.0 val split": v2_case(
        lambda e: (e.data[0], e.v2[1]), "v2", [], "pass a train split in the v2.0 layout (the model config reads "
        "v2.0 data; it conditions on the v2.0 robot states"),
}


def test_round_four_covers_at_least_25_distinct_inputs():
    assert len(CASES) >= 25 and {case.cli for case in CASES.values()} == set(MAINS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tiny_data, finished_runs, builtin_v2, tiny_v2_config, tmp_path, capsys):
    case = CASES[name]
    argv = case.argv(Env(tmp_path, tiny_data, finished_runs, builtin_v2, tiny_v2_config))
    assert_refused(name, MAINS[case.cli], argv, case.expected, tmp_path, capsys)


def test_a_good_codebook_still_decodes(tiny_data, tmp_path):
    from genie.data.tokenizers import tokenizer_for_folder

    tokenizer = tokenizer_for_folder(codebook_split(tiny_data[1], tmp_path / "val", "good"))
    assert tokenizer.vocab_size == 256 and tokenizer.decode(np.zeros((1, 2, 2), np.int64)).shape == (1, 4, 4, 3)


def documented_v2_command() -> list[str]:
    """The built-in-world command of docs/data_formats.md for configs/cosmos_v2_tiny.json, as flags."""
    text = (REPO_ROOT / "docs" / "data_formats.md").read_text()
    line = next(line for line in text.splitlines() if "python train.py" in line and "cosmos_v2_tiny.json" in line)
    argv = shlex.split(line.split("#")[0])
    assert argv[:2] == ["python", "train.py"], line
    return argv[2:]


def test_the_documented_cosmos_v2_tiny_command_runs(tmp_path, monkeypatch, capsys):
    """docs/data_formats.md's CPU command (a 64,000-id model on the built-in world in the v2.0 layout) trains,
    here for one step of one window; the built-in world goes under tmp_path."""
    from genie.data import sources

    monkeypatch.chdir(REPO_ROOT)  # the documented command runs from the repository
    monkeypatch.setattr(sources, "builtin_dataset_dirs", functools.partial(
        builtin.builtin_dataset_dirs, root=tmp_path / "builtin"))
    argv = documented_v2_command()
    argv[argv.index("--output_dir") + 1] = str(tmp_path / "run")
    train.main(argv + ["--max_train_steps", "1", "--per_device_train_batch_size", "1", "--max_eval_steps", "1",
                       "--per_device_eval_batch_size", "1"])
    assert (tmp_path / "run" / "final_model" / "model.safetensors").is_file()
    assert "reads the 256-id world" in capsys.readouterr().out
    assert next((tmp_path / "builtin").iterdir()).name.startswith("v2-world")


def test_drop_actions_on_data_without_action_files_trains_with_a_note(tiny_data, tiny_config_file, tmp_path, capsys):
    """The README's use of --drop_actions: a pool without labels; the model's action input gets no action (NaN)."""
    data = (without_actions(tiny_data[0], tmp_path / "train"), without_actions(tiny_data[1], tmp_path / "val"))
    train.main(run_argv(tiny_config_file, data, tmp_path / "run", "--drop_actions", max_train_steps=1))
    out = capsys.readouterr().out
    assert "has no action file for driving_command: --drop_actions has no labels to withhold" in out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["actions_withheld"] is True


def test_drop_actions_with_a_model_without_actions_says_so(tiny_data, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**TINY, "action_dims": {}}))
    train.main(run_argv(config, tiny_data, tmp_path / "run", "--drop_actions", max_train_steps=1))
    assert "note: --drop_actions has nothing to withhold: the model config has no action input" in (
        capsys.readouterr().out)


def test_drop_actions_gives_the_same_no_action_rows_with_or_without_action_files(tiny_data, tiny_config, tmp_path):
    from genie.data import open_train_dataset
    from genie.data.subsets import training_view

    bare = without_actions(tiny_data[0], tmp_path / "train")
    no_actions = tiny_config.replace(action_dims={})
    labelled = training_view(open_train_dataset(tiny_data[0], tiny_config), 1.0, True, 0)[0]
    unlabelled = training_view(open_train_dataset(bare, no_actions), 1.0, True, 0, action_width=2)[0]
    for i in (0, 7):
        assert labelled[i]["actions"].shape == unlabelled[i]["actions"].shape == (4, 2)
        assert labelled[i]["actions"].isnan().all() and unlabelled[i]["actions"].isnan().all()
        assert labelled[i]["input_ids"].equal(unlabelled[i]["input_ids"])


def test_a_segment_fraction_says_how_many_segments_it_keeps(tiny_data, tiny_config_file, tmp_path, capsys):
    train.main(run_argv(tiny_config_file, tiny_data, tmp_path / "run", "--train_segment_fraction", "0.1",
                        max_train_steps=1))
    record = json.loads((tmp_path / "run" / "config.json").read_text())["train_segments"]
    assert (f"note: --train_segment_fraction 0.1: training on {record['segments']} of the {record['of_segments']} "
            f"segments of {tiny_data[0]}") in capsys.readouterr().out


def test_no_verdict_without_two_seeds_and_none_on_what_was_not_measured():
    from genie.studies.report import NO_TEST, NOT_MEASURED, verdict
    from genie.studies.stats import mean_std, paired_difference

    one_seed = paired_difference({0: 1.0}, {0: 2.0})
    assert verdict(one_seed, lower_is_better=True) == verdict(one_seed, True, p_adjusted=0.0) == NO_TEST
    nan = paired_difference({0: float("nan"), 1: float("nan")}, {0: 1.0, 1: 2.0})  # crashed in statistics.stdev
    assert verdict(nan, lower_is_better=False) == NOT_MEASURED
    assert all(np.isnan(mean_std([float("nan"), 1.0])))


def test_a_study_trains_again_when_its_data_changes(tiny_data, tiny_config_file, tmp_path, capsys):
    """Issue 37.3: the train split replaced by another valid recording under the same path; and 37.4: a
    one-seed report gives no verdict."""
    from genie.data.builtin import write_builtin_dataset

    data = tmp_path / "data"
    shutil.copytree(tiny_data[0].parent, data)
    study = tmp_path / "study.json"
    study.write_text(json.dumps({
        "name": "s", "genie_config": str(tiny_config_file), "seeds": [0], "stage1_steps": 1, "stage2_steps": 1,
        "grid": {"mask_schedule": ["cosine"]}, "train_data_dir": str(data / "train"),
        "val_data_dir": str(data / "val"), "eval_max_examples": 2,
        "training": {"per_device_train_batch_size": 2, "max_eval_steps": 1}}))
    argv = ["--study", str(study), "--store", str(tmp_path / "store"), "--output_dir", str(tmp_path / "out")]
    report = run_script("ablate", argv)
    assert "3 runs, 0 already finished" in capsys.readouterr().out
    assert "No verdicts: a paired test needs at least 2 seeds" in report
    assert "helps" not in report and "no difference" not in report and "| none: one seed allows no test |" in report
    run_script("ablate", argv)
    assert "3 runs, 3 already finished" in capsys.readouterr().out
    other = write_builtin_dataset(tmp_path / "other", grid=4, vocab_size=256, train_frames=2000, val_frames=400,
                                  seed=5)[0]
    shutil.rmtree(data / "train")
    shutil.copytree(other, data / "train")
    run_script("ablate", argv)
    assert "3 runs, 0 already finished" in capsys.readouterr().out
    assert len([p for p in (tmp_path / "store").iterdir() if p.name != "logs"]) == 6


def test_a_study_on_the_builtin_world_keeps_its_run_keys_without_a_data_identity(tmp_path):
    from genie.studies import load_study
    from genie.studies.runner import phases, plan

    study = tmp_path / "s.json"
    study.write_text(json.dumps({"name": "s", "genie_config": "configs/small.json", "seeds": [0],
                                 "stage1_steps": 1, "stage2_steps": 1, "grid": {"mask_schedule": ["cosine"]}}))
    spec = load_study(study)
    assert all("data_identity" not in run.identity(spec) for phase in phases(plan(spec)) for run in phase)


def test_sigkill_of_the_runner_takes_its_workers_with_it(tmp_path, tiny_config_file, tiny_data):
    """Issue 36.2: with --jobs 2, SIGKILL of the study runner alone (no handler can run) leaves no worker
    training on: each gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops."""
    import psutil

    study = tmp_path / "s.json"
    study.write_text(json.dumps({
        "name": "s", "genie_config": str(tiny_config_file), "seeds": [0, 1], "stage1_steps": 100_000,
        "stage2_steps": 1, "grid": {"mask_schedule": ["cosine"]}, "train_data_dir": str(tiny_data[0]),
        "val_data_dir": str(tiny_data[1]),
        "training": {"per_device_train_batch_size": 2, "eval_every_n_steps": 100_000}}))
    store = tmp_path / "store"
    runner = subprocess.Popen([sys.executable, "scripts/ablate.py", "--study", str(study), "--store", str(store),
                               "--output_dir", str(tmp_path / "out"), "--jobs", "2"], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        logs = []
        # Both train: seed 0's stage 1 and its stage-2-only baseline (100,001 steps), the study's seed order.
        while len(logs) < 2 or not all("it/s" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, f"two runs did not start within {DEADLINE_S} s: {logs}"
            assert runner.poll() is None, "the study ended before its runs trained"
            time.sleep(0.5)
            logs = list((store / "logs").glob("*.log")) if (store / "logs").is_dir() else []
        workers = [p for p in psutil.Process(runner.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        _, alive = psutil.wait_procs(workers, timeout=DEADLINE_S)
        assert not alive, f"workers outlived their runner: {alive}"
    finally:  # whatever failed, leave no training process behind
        for process in workers:
            if process.is_running():
                process.kill()
        if runner.poll() is None:
            runner.kill()
