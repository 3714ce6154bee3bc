"""Every wrong input stops its command with exit 2 and one line on stderr naming the input and the fix;
nothing is written, changed or deleted (checked on a snapshot of every file the case could touch)."""
import functools
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import masked_pretrain
import train
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import REPO_ROOT, TINY, assert_refused, run_argv, run_script, snapshot

MAINS = {"train": train.main, "masked_pretrain": masked_pretrain.main,
         "evaluate": functools.partial(run_script, "evaluate"),
         "generate": functools.partial(run_script, "generate")}


class Env:
    """What a case builds its command line from; everything it makes lives under `tmp`."""

    def __init__(self, tmp: Path, tiny_data, runs: Path):
        self.tmp, self.data, self.runs = tmp, tiny_data, runs
        self.out = tmp / "out"

    def config(self, **changes) -> str:
        path = self.tmp / "config.json"
        path.write_text(json.dumps({**TINY, **changes}))
        return str(path)

    def broken_data(self, how: str) -> str:
        return break_split(self.data[0], self.tmp / "train", how)

    def run(self, name: str) -> Path:
        """A private copy of a finished run (so that a case can show it stays untouched)."""
        copy = self.tmp / name
        if not copy.exists():
            shutil.copytree(self.runs / name, copy)
        return copy

    def model(self, **changes) -> str:
        folder = self.tmp / "model"
        STMaskGIT(GenieConfig(**{**TINY, **changes})).save_pretrained(folder)
        return str(folder)

    def train_argv(self, *extra, config=None, train_dir=None) -> list[str]:
        return run_argv(config or self.config(), (train_dir or self.data[0], self.data[1]), self.out, *extra,
                        max_train_steps=1)

    def eval_argv(self, *extra, checkpoint=None) -> list[str]:
        return ["--checkpoint_dir", checkpoint or str(self.run("stage2") / "final_model"), "--val_data_dir",
                str(self.data[1]), "--train_data_dir", str(self.data[0]), "--output_dir", str(self.out), *extra]

    def gen_argv(self, *extra) -> list[str]:
        return ["--checkpoint_dir", str(self.run("stage2") / "final_model"), "--val_data_dir", str(self.data[1]),
                "--output_dir", str(self.out), *extra]


def break_split(source: Path, target: Path, how: str) -> str:
    """A copy of a data split, broken as `how` says."""
    shutil.copytree(source, target)
    meta_path = target / "metadata.json"
    meta = json.loads(meta_path.read_text())
    n = meta["num_images"]
    if how == "empty":
        shutil.rmtree(target)
        target.mkdir()
    elif how == "truncated video":
        data = (target / "video.bin").read_bytes()
        (target / "video.bin").write_bytes(data[: len(data) // 2])
    elif how.startswith("meta:"):
        key, value = how[5:].split("=")
        meta_path.write_text(json.dumps({**meta, key: json.loads(value)}))
    elif how == "meta without vocab_size":
        meta.pop("vocab_size")
        meta_path.write_text(json.dumps(meta))
    elif how == "meta not JSON":
        meta_path.write_text("{ num_images: 3")
    elif how == "segment ids short":
        np.zeros(n - 1, dtype=np.int32).tofile(target / "segment_ids.bin")
    elif how == "token beyond vocab in the last frame":
        video = np.fromfile(target / "video.bin", dtype=np.uint32)
        video[-1] = 999  # not among evenly spaced sampled frames: only a whole-file check finds it
        video.tofile(target / "video.bin")
    elif how == "action size":
        np.zeros((n, 3), dtype=np.float32).tofile(target / "actions" / "driving_command.bin")
    elif how == "action missing":
        (target / "actions" / "driving_command.bin").unlink()
    elif how == "action NaN":
        actions = np.fromfile(target / "actions" / "driving_command.bin", dtype=np.float32).reshape(n, 2)
        actions[1234, 1] = np.nan
        actions.tofile(target / "actions" / "driving_command.bin")
    elif how == "a file":
        shutil.rmtree(target)
        target.write_text("not a folder")
    return str(target)


@dataclass
class Case:
    cli: str
    argv: Callable[[Env], list[str]]
    expected: str


def data_case(how, expected):
    return Case("train", lambda e: e.train_argv(train_dir=e.broken_data(how)), expected)


def _users_table(tmp: Path) -> Path:
    folder = tmp / "mine"
    folder.mkdir(exist_ok=True)
    (folder / "eval.md").write_text("my own table")
    return folder


def config_case(changes, expected, cli="train"):
    return Case(cli, lambda e: e.train_argv(config=e.config(**changes)), expected)


def flag_case(cli, flags, expected):
    return Case(cli, lambda e: e.train_argv(*flags), expected)


def stage1_config(**fields):
    return lambda e: e.train_argv(config=e.config(**fields))


CASES = {
    # ---- data folders
    "missing data folder": Case("train", lambda e: e.train_argv(train_dir=str(e.tmp / "nowhere")), "does not exist"),
    "data folder is a file": data_case("a file", "is a file; pass a folder in the 1X format"),
    "empty data folder": data_case("empty", "metadata.json is missing"),
    "truncated video.bin": data_case("truncated video", "video.bin has"),
    "metadata with wrong s": data_case("meta:s=5", "video.bin has"),
    "metadata with wrong num_images": data_case("meta:num_images=3007", "video.bin has"),
    "metadata with negative num_images": data_case("meta:num_images=-4", "'num_images' = -4 must be a positive"),
    "metadata with unknown dtype": data_case('meta:token_dtype="uint128"', "token_dtype 'uint128' is not a numpy dtype"),
    "metadata with a float dtype": data_case('meta:token_dtype="float32"', "must be an integer dtype"),
    "metadata without vocab_size": data_case("meta without vocab_size", "'vocab_size' = None must be a positive"),
    "metadata that is not JSON": data_case("meta not JSON", "metadata.json is not valid JSON"),
    "segment_ids of the wrong length": data_case("segment ids short", "segment_ids.bin has"),
    "token id beyond the vocabulary in the last frame": data_case("token beyond vocab in the last frame",
                                                                  "frame 2999 holds token id 999 outside"),
    "action file of the wrong size": data_case("action size", "action stream 'driving_command'"),
    "action file missing": data_case("action missing", "driving_command.bin is missing"),
    "NaN in an action file": data_case("action NaN", "driving_command.bin: frame 1234 holds a NaN"),
    "data vocabulary larger than the model's": data_case("meta:vocab_size=100000", "exceeds the model's image_vocab_size"),
    "window longer than every segment": config_case({"T": 400}, "no window of 400 frames"),
    "model S not matching the data": config_case({"S": 64}, "the model config has S = 64"),
    "fewer windows than one batch": flag_case("train", ["--per_device_train_batch_size", "100000"],
                                              "fewer than one batch"),
    "--window_size differing from T": flag_case("train", ["--window_size", "3"], "differs from the model config's T"),
    # ---- model config files
    "config with an unknown key": config_case({"num_layer": 2}, "unknown config field(s) ['num_layer']; known fields"),
    "config with a wrong type": config_case({"d_model": "64"}, "'d_model' = '64' has type str"),
    "config with d_model 0": config_case({"d_model": 0, "num_heads": 1}, "'d_model' = 0 must be >= 1"),
    "config with an MLP of width 0": config_case({"mlp_ratio": 0.001}, "'mlp_ratio' = 0.001 must give an MLP of width"),
    "config with num_prompt_frames >= T": config_case({"num_prompt_frames": 4}, "'num_prompt_frames' = 4 must be < T"),
    "config with S not square": config_case({"S": 15}, "'S' = 15 must be a perfect square"),
    "config with d_model not divisible by heads": config_case({"d_model": 65}, "must be divisible by num_heads"),
    "config with use_mup": config_case({"use_mup": True}, "muP is not supported"),
    "evaluate into a folder holding a user's eval.md": Case("evaluate", lambda e: e.eval_argv(
        "--output_dir", str(_users_table(e.tmp))), "holds eval.md that no evaluation wrote"),
    "config with a bad temporal_attention": config_case({"temporal_attention": "sideways"},
                                                        "--temporal_attention 'sideways' must be one of",
                                                        cli="masked_pretrain"),
    "config with a bad temporal_attention (train.py)": config_case({"temporal_attention": "sideways"},
                                                                   "--temporal_attention 'sideways' must be one of"),
    "config with a bad stage-1 field": config_case({"mask_schedule": "cosinus"}, "--mask_schedule 'cosinus' is unknown",
                                                   cli="masked_pretrain"),
    "config file missing": Case("train", lambda e: e.train_argv(config=str(e.tmp / "none.json")), "does not exist"),
    "config file not JSON": Case("train", lambda e: e.train_argv(config=write(e.tmp / "c.json", "{d_model: 1")),
                                 "is not valid JSON"),
    "config file not an object": Case("train", lambda e: e.train_argv(config=write(e.tmp / "c.json", "[1, 2]")),
                                      "must hold a JSON object"),
    # ---- flags
    "unknown flag": flag_case("train", ["--frobnicate", "1"], "unknown flag(s) --frobnicate 1"),
    "flag value of the wrong type": flag_case("train", ["--learning_rate", "abc"], "invalid float value: 'abc'"),
    "--learning_rate nan": flag_case("train", ["--learning_rate", "nan"], "--learning_rate nan must be a finite"),
    "--learning_rate 0": flag_case("train", ["--learning_rate", "0"], "--learning_rate 0.0 must be a finite number > 0"),
    "--adam_beta_1 2": flag_case("train", ["--adam_beta_1", "2"], "--adam_beta_1 2.0 must be in [0, 1)"),
    "--adam_eps -1": flag_case("train", ["--adam_eps", "-1"], "--adam_eps -1.0 must be a finite number > 0"),
    "--seed -1": flag_case("train", ["--seed", "-1"], "--seed -1 must be in [0, 2**32)"),
    "--optimizer sgd": flag_case("train", ["--optimizer", "sgd"], "--optimizer 'sgd' must be one of adamw, muon"),
    "--muon_learning_rate 0": flag_case("train", ["--optimizer", "muon", "--muon_learning_rate", "0"],
                                        "--muon_learning_rate 0.0 must be a finite number > 0"),
    "--changed_token_loss_weight 0": flag_case("train", ["--changed_token_loss_weight", "0"],
                                               "--changed_token_loss_weight 0.0 must be a finite number > 0"),
    "--dynamics_mask_focus 1": flag_case("train", ["--dynamics_mask_focus", "1"], "must be in [0, 1) (at 1 only"),
    "--dynamics_mask_focus in stage 1": flag_case("masked_pretrain", ["--dynamics_mask_focus", "0.5"],
                                                  "is a stage-2 flag; stage 1 masks the changed tokens more often"),
    "--dynamics_focus 1": flag_case("masked_pretrain", ["--mask_pattern", "dynamics", "--dynamics_focus", "1"],
                                    "--dynamics_focus 1.0 must be in [0, 1)"),
    "--lr_scheduler_type bogus": flag_case("train", ["--lr_scheduler_type", "bogus"], "is not supported; choose one"),
    "--max_grad_norm nan": flag_case("train", ["--max_grad_norm", "nan"], "--max_grad_norm nan must be a finite"),
    "--weight_decay nan": flag_case("train", ["--weight_decay", "nan"], "--weight_decay nan must be a finite"),
    "--mixed_precision fp16 without a GPU": flag_case("train", ["--mixed_precision", "fp16"], "needs a GPU"),
    "--per_device_train_batch_size 0": flag_case("train", ["--per_device_train_batch_size", "0"], "must be >= 1"),
    "--max_train_steps 0": flag_case("train", ["--max_train_steps", "0"], "--max_train_steps 0 must be >= 1"),
    "--report_to slack": flag_case("train", ["--report_to", "slack"], "must be one of none, wandb"),
    "--output_dir naming a file": Case("train", lambda e: e.train_argv("--output_dir", write(e.tmp / "f.txt", "x")),
                                       "is a file, not a folder"),
    "--output_dir that cannot be written": flag_case("train", ["--output_dir", "/proc/genie-test/out"],
                                                     "cannot be written"),
    # ---- stage-1 masking flags
    "mask ratio outside [0, 1]": flag_case("masked_pretrain", ["--initial_mask_ratio", "1.5"], "must be in [0, 1]"),
    "unknown schedule name": flag_case("masked_pretrain", ["--mask_schedule", "cosinus"], "'cosinus' is unknown"),
    "mask ratios 0 -> 0": flag_case("masked_pretrain", ["--initial_mask_ratio", "0", "--final_mask_ratio", "0"],
                                    "--initial_mask_ratio 0.0 masks 0 of the 16 tokens"),
    "final mask ratio rounding to 0 tokens": flag_case("masked_pretrain", ["--final_mask_ratio", "0.01"],
                                                       "--final_mask_ratio 0.01 masks 0 of the 16 tokens"),
    "--prompt_frame_period 1": flag_case("masked_pretrain", ["--prompt_frame_period", "1"], "keeps every frame visible"),
    "--lattice_stride 1": flag_case("masked_pretrain", ["--lattice_stride", "1"], "keeps every token visible"),
    "unknown mask pattern": flag_case("masked_pretrain", ["--mask_pattern", "stripes"], "'stripes' is unknown"),
    "--block_count 0": flag_case("masked_pretrain", ["--mask_pattern", "block", "--block_count", "0"], "must be >= 1"),
    "--eval_mask_ratios abc": flag_case("masked_pretrain", ["--eval_mask_ratios", "abc"], "comma-separated numbers"),
    "--temporal_attention sideways": flag_case("masked_pretrain", ["--temporal_attention", "sideways"],
                                               "must be one of causal, bidirectional"),
    # ---- hand-off from stage 1
    "missing masked-pretrain checkpoint": flag_case("train", ["--masked_pretrain_checkpoint", "/nonexistent"],
                                                    "does not exist"),
    "masked-pretrain checkpoint that is a file": Case(
        "train", lambda e: e.train_argv("--masked_pretrain_checkpoint", write(e.tmp / "w.safetensors", "x")),
        "is a file; pass the folder holding model.safetensors"),
    "masked-pretrain folder without a model": Case(
        "train", lambda e: e.train_argv("--masked_pretrain_checkpoint", mkdir(e.tmp / "empty")), "holds neither"),
    "masked-pretrain checkpoint of another architecture": Case(
        "train", lambda e: e.train_argv("--masked_pretrain_checkpoint", e.model(d_model=32)),
        "does not match the model architecture"),
    "stage-2 model as masked-pretrain checkpoint": Case(
        "train", lambda e: e.train_argv("--masked_pretrain_checkpoint", str(e.run("stage2") / "final_model")),
        "was saved by a 'autoregressive' run, not by masked pretraining"),
    "corrupted masked-pretrain weights": Case(
        "train", lambda e: e.train_argv("--masked_pretrain_checkpoint", corrupt_weights(e.run("stage1"))),
        "not a readable safetensors file"),
    # ---- resume
    "resume from a missing folder": flag_case("train", ["--resume_from_checkpoint", "/nonexistent/step_5"],
                                              "is not a step_N/ checkpoint folder"),
    "resume latest without checkpoints": Case(
        "train", lambda e: e.train_argv("--resume_from_checkpoint", "latest", "--output_dir", mkdir(e.tmp / "fresh")),
        "holds no run to resume"),
    "resume a stage-1 checkpoint as stage 2": Case(
        "train", lambda e: e.train_argv("--output_dir", str(e.run("stage1")), "--resume_from_checkpoint", "latest",
                                        "--max_train_steps", "4"),
        "stage: checkpoint 'masked_pretrain' vs now 'autoregressive'"),
    "resume with another batch size": Case(
        "train", lambda e: e.train_argv("--output_dir", str(e.run("stage2")), "--resume_from_checkpoint", "latest",
                                        "--max_train_steps", "4", "--per_device_train_batch_size", "2"),
        "per_device_train_batch_size: checkpoint 4 vs now 2"),
    "resume with another architecture": Case(
        "train", lambda e: e.train_argv("--output_dir", str(e.run("stage2")), "--resume_from_checkpoint", "latest",
                                        "--max_train_steps", "4", config=e.config(d_model=32)),
        "model.d_model: checkpoint 64 vs now 32"),
    "resume from a corrupted trainer_state.json": Case(
        "train", lambda e: e.train_argv("--output_dir", str(e.run("stage2")), "--resume_from_checkpoint",
                                        write(e.run("stage2") / "step_2" / "trainer_state.json", "{oops", folder=True),
                                        "--max_train_steps", "4"),
        "is damaged: trainer_state.json has 5 bytes"),
    # ---- output folders
    "output folder holding another run": Case("train", lambda e: e.train_argv("--output_dir", str(e.run("stage2"))),
                                              "already holds a run"),
    "overwrite a folder that holds no run": Case(
        "train", lambda e: e.train_argv("--output_dir", user_folder(e.tmp / "thesis"), "--overwrite_output_dir"),
        "is not empty and holds no run of this project"),
    "overwrite a run with a bad flag": Case(
        "train", lambda e: e.train_argv("--output_dir", str(e.run("stage2")), "--overwrite_output_dir",
                                        "--lr_scheduler_type", "bogus"),
        "--lr_scheduler_type 'bogus' is not supported"),
    "overwrite a run with bad data": Case(
        "train", lambda e: e.train_argv("--output_dir", str(e.run("stage2")), "--overwrite_output_dir",
                                        train_dir=e.broken_data("truncated video")),
        "video.bin has"),
    # ---- evaluate.py
    "evaluate --batch_size 0": Case("evaluate", lambda e: e.eval_argv("--batch_size", "0"), "--batch_size 0 must be >= 1"),
    "evaluate --max_examples 0": Case("evaluate", lambda e: e.eval_argv("--max_examples", "0"), "must be >= 1"),
    "evaluate --max_examples -3": Case("evaluate", lambda e: e.eval_argv("--max_examples", "-3"), "must be >= 1"),
    "evaluate a run folder": Case("evaluate", lambda e: e.eval_argv(checkpoint=str(e.run("stage2"))),
                                  "is a run folder, not a model folder; pass"),
    "evaluate corrupted weights": Case("evaluate", lambda e: e.eval_argv(checkpoint=corrupt_weights(e.run("stage2"))),
                                       "not a readable safetensors file"),
    "evaluate a missing checkpoint": Case("evaluate", lambda e: e.eval_argv(checkpoint=str(e.tmp / "gone")),
                                          "does not exist"),
    "evaluate --num_prompt_frames T": Case("evaluate", lambda e: e.eval_argv("--num_prompt_frames", "4"),
                                           "--num_prompt_frames 4 must be in [1, 3]"),
    "evaluate --unmask_mode bogus": Case("evaluate", lambda e: e.eval_argv("--unmask_mode", "bogus"),
                                         "--unmask_mode 'bogus' must be one of"),
    "evaluate --output_dir naming a file": Case("evaluate", lambda e: e.eval_argv("--output_dir", write(e.tmp / "f", "x")),
                                                "is a file, not a folder"),
    "evaluate data of another frame size": Case(
        "evaluate", lambda e: e.eval_argv(checkpoint=e.model(S=64)), "the model config has S = 64"),
    # ---- generate.py
    "generate --num_examples 0": Case("generate", lambda e: e.gen_argv("--num_examples", "0"), "must be >= 1"),
    "generate --num_new_frames -3": Case("generate", lambda e: e.gen_argv("--num_new_frames", "-3"), "must be >= 1"),
    "generate --num_prompt_frames T": Case("generate", lambda e: e.gen_argv("--num_prompt_frames", "4"),
                                           "--num_prompt_frames 4 must be in [1, 3]"),
    "generate --num_prompt_frames 0": Case("generate", lambda e: e.gen_argv("--num_prompt_frames", "0"),
                                           "--num_prompt_frames 0 must be >= 1"),
    "generate too many frames": Case("generate", lambda e: e.gen_argv("--num_prompt_frames", "2", "--num_new_frames", "5"),
                                     "does not fit"),
    "generate --temperature -1": Case("generate", lambda e: e.gen_argv("--temperature", "-1"), "must be >= 0"),
    "generate from a run folder": Case("generate", lambda e: e.gen_argv("--checkpoint_dir", str(e.run("stage1"))),
                                       "is a run folder, not a model folder; pass"),
}


def write(path: Path, text: str, folder: bool = False) -> str:
    path.write_text(text)
    return str(path.parent if folder else path)


def mkdir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def user_folder(path: Path) -> str:
    """A folder of a user's own files, which no command may delete."""
    (path / "photos").mkdir(parents=True)
    (path / "thesis.txt").write_text("years of work")
    (path / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    return str(path)


def corrupt_weights(run: Path) -> str:
    final = next(d for d in run.iterdir() if d.name.endswith(("final_model", "masked_pretrain_final")))
    (final / "model.safetensors").write_bytes(b"\x00" * 64)
    return str(final)


def test_there_are_at_least_60_distinct_cases():
    assert len(CASES) >= 60
    assert {case.cli for case in CASES.values()} == set(MAINS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tiny_data, finished_runs, tmp_path, capsys):
    case = CASES[name]
    env = Env(tmp_path, tiny_data, finished_runs)
    argv = case.argv(env)
    assert_refused(name, MAINS[case.cli], argv, case.expected, tmp_path, capsys)


@pytest.mark.parametrize("command", ["train.py", "masked_pretrain.py", "scripts/evaluate.py", "scripts/generate.py",
                                     "scripts/ablate.py", "scripts/builtin_dataset.py", "-m scripts.bench",
                                     "scripts/chaos.py", "scripts/export_onnx.py"])
def test_every_command_prints_its_help(command):
    result = subprocess.run([sys.executable, *command.split(), "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "--" in result.stdout


def test_overwrite_keeps_a_users_files_and_the_checkout(tiny_data, tiny_config_file, tmp_path):
    """The data-loss reproductions: a folder of a user's files, and the working directory itself."""
    folder = Path(user_folder(tmp_path / "thesis"))
    argv = ["--genie_config", str(tiny_config_file), "--train_data_dir", str(tiny_data[0]), "--val_data_dir",
            str(tiny_data[1]), "--max_train_steps", "3", "--overwrite_output_dir"]
    for output_dir in (str(folder), "."):
        result = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *argv, "--output_dir", output_dir],
                                cwd=folder, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and "holds no run of this project" in result.stderr, result.stderr[-1000:]
    assert (folder / "thesis.txt").read_text() == "years of work" and (folder / "photos" / "a.jpg").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["photos", "thesis.txt"]


def test_overwrite_replaces_a_run_only_once_the_new_one_has_a_checkpoint(tiny_data, finished_runs, tmp_path,
                                                                         monkeypatch):
    from genie.training.trainer import Trainer

    run = tmp_path / "run"
    shutil.copytree(finished_runs / "stage2", run)
    old = snapshot(run)
    argv = ["--genie_config", str(run / "final_model" / "config.json"), "--train_data_dir", str(tiny_data[0]),
            "--val_data_dir", str(tiny_data[1]), "--output_dir", str(run), "--overwrite_output_dir",
            "--max_train_steps", "3", "--per_device_train_batch_size", "4", "--max_eval_steps", "1"]
    def crash(self, batches):
        raise RuntimeError("crash")

    # A failure before the new run's first checkpoint puts the old run back, unchanged.
    monkeypatch.setattr(Trainer, "train_step", crash)
    with pytest.raises(RuntimeError, match="crash"):
        train.main(argv)
    assert snapshot(run) == old
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing left aside
    monkeypatch.undo()
    train.main(argv)  # a successful replacement: the new run, and no trace of the old one
    assert json.loads((run / "step_3" / "trainer_state.json").read_text())["step"] == 3
    assert not (run / "step_1").exists() and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_wrong_shapes_and_the_reference_flat_layout_in_collators(tiny_config):
    import torch

    from genie.data import get_masked_pretrain_collator, get_maskgit_collator
    from genie.errors import DataFormatError
    from genie.training.masked_pretrain_config import MaskedPretrainConfig

    windows = torch.randint(0, 256, (2, tiny_config.T, tiny_config.S))
    for collate in (get_maskgit_collator(tiny_config), get_masked_pretrain_collator(MaskedPretrainConfig(), tiny_config)):
        flat = collate({"input_ids": windows.reshape(2, -1)}, generator=torch.Generator().manual_seed(0))
        shaped = collate({"input_ids": windows}, generator=torch.Generator().manual_seed(0))
        assert torch.equal(flat["input_ids"], shaped["input_ids"]) and flat["labels"].shape == windows.shape
        with pytest.raises(DataFormatError, match=r"expected \(batch, T=4, S=16\) \(or 2 to T frames\) or the flat \(batch, T\*S=64\)"):
            collate({"input_ids": windows.reshape(2, 8, 8)})


def test_training_that_masks_nothing_stops_at_the_first_such_step(tiny_data, tiny_config, tmp_path):
    import torch

    from genie.errors import NothingToLearnError
    from genie.training.arguments import TrainingArguments
    from genie.training.masked_pretrain_config import MaskedPretrainConfig
    from genie.training.objectives import MaskedPretrainObjective
    from genie.training.trainer import run_training

    class MasksNothing(MaskedPretrainObjective):
        def make_batch(self, batch, step, total_steps, generator):
            out = super().make_batch(batch, step, total_steps, generator)
            if step == 1:
                out["loss_mask"] = torch.zeros_like(out["loss_mask"])
            return out

    args = TrainingArguments(train_data_dir=str(tiny_data[0]), val_data_dir=str(tiny_data[1]),
                             output_dir=str(tmp_path / "o"), max_train_steps=3, per_device_train_batch_size=4)
    config = tiny_config.replace(temporal_attention="bidirectional")
    with pytest.raises(NothingToLearnError, match="step 2: a batch masks no token"):
        run_training(args, MasksNothing(config, MaskedPretrainConfig()), STMaskGIT(config))


def test_train_takes_the_architecture_of_the_stage1_checkpoint_without_genie_config(tiny_data, finished_runs,
                                                                                    tmp_path):
    metrics = train.main(["--masked_pretrain_checkpoint", str(finished_runs / "stage1"), "--train_data_dir",
                          str(tiny_data[0]), "--val_data_dir", str(tiny_data[1]), "--output_dir", str(tmp_path / "o"),
                          "--max_train_steps", "1", "--per_device_train_batch_size", "4", "--max_eval_steps", "1"])
    assert metrics["val/tf_cross_entropy"] > 0
    recorded = json.loads((tmp_path / "o" / "config.json").read_text())
    assert recorded["genie_config"]["d_model"] == TINY["d_model"] and recorded["args"]["genie_config"] is None


def test_stage2_weights_as_pretraining_are_accepted_when_asked(tiny_data, finished_runs, tmp_path):
    train.main(["--masked_pretrain_checkpoint", str(finished_runs / "stage2" / "final_model"),
                "--allow_non_pretrain_checkpoint", "--train_data_dir", str(tiny_data[0]), "--val_data_dir",
                str(tiny_data[1]), "--output_dir", str(tmp_path / "o"), "--max_train_steps", "1",
                "--per_device_train_batch_size", "4", "--max_eval_steps", "1"])
    assert (tmp_path / "o" / "final_model" / "model.safetensors").is_file()


def test_resume_mismatch_is_allowed_when_asked(tiny_data, finished_runs, tiny_config_file, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_runs / "stage2", run)
    train.main(["--genie_config", str(tiny_config_file), "--train_data_dir", str(tiny_data[0]), "--val_data_dir",
                str(tiny_data[1]), "--output_dir", str(run), "--resume_from_checkpoint", "latest",
                "--max_train_steps", "3", "--per_device_train_batch_size", "2", "--max_eval_steps", "1",
                "--allow_resume_mismatch"])
    assert json.loads((run / "step_3" / "trainer_state.json").read_text())["step"] == 3


def test_mixed_precision_recorded_is_what_ran(tiny_data, tiny_config_file, tmp_path):
    train.main(["--genie_config", str(tiny_config_file), "--train_data_dir", str(tiny_data[0]), "--val_data_dir",
                str(tiny_data[1]), "--output_dir", str(tmp_path / "o"), "--max_train_steps", "1",
                "--per_device_train_batch_size", "4", "--max_eval_steps", "1", "--mixed_precision", "bf16"])
    recorded = json.loads((tmp_path / "o" / "config.json").read_text())
    assert recorded["mixed_precision"] == "bf16" and recorded["device"] == "cpu"
