"""Stage-2 training, resume, evaluation and generation through the real entry points, on a tiny config."""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

import train
from genie.training.run_logging import read_metrics
from tests.conftest import REPO_ROOT, run_argv, run_script


def train_args(tiny_config_file, tiny_data, out, *extra):
    return run_argv(tiny_config_file, tiny_data, out, *extra, per_device_train_batch_size=8, learning_rate="3e-3",
                    log_every_n_steps=5, eval_every_n_steps=300, checkpointing_steps=300, max_eval_steps=4, seed=7)


@pytest.fixture(scope="module")
def trained_run(tiny_config_file, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ar"
    metrics = train.main(train_args(tiny_config_file, tiny_data, out, "--max_train_steps", "600"))
    return out, metrics


def test_training_learns_and_writes_a_complete_run_folder(trained_run):
    out, metrics = trained_run
    records = read_metrics(out / "metrics.jsonl")
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) == 120 and sum(losses[-3:]) / 3 < 0.8 * losses[0]
    evals = [r for r in records if "val/tf_cross_entropy" in r]
    assert [r["step"] for r in evals] == [300, 600]
    assert evals[-1]["val/tf_cross_entropy"] < evals[0]["val/tf_cross_entropy"]
    assert metrics["val/tf_cross_entropy"] == evals[-1]["val/tf_cross_entropy"]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.jsonl", "step_300", "step_600", "final_model"} <= names
    assert not any(n.startswith(".tmp") for n in names)
    run_config = json.loads((out / "config.json").read_text())
    assert run_config["stage"] == "autoregressive" and run_config["genie_config"]["temporal_attention"] == "causal"
    step_files = {p.name for p in (out / "step_300").iterdir()}
    assert {"model.safetensors", "optimizer.bin", "trainer_state.json", "config.json"} <= step_files
    assert not any(name.startswith("custom_checkpoint") for name in step_files)  # nothing unpickled unsafely


def test_resume_reproduces_the_uninterrupted_run(trained_run, tiny_config_file, tiny_data, tmp_path):
    out, _ = trained_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    import shutil
    shutil.copytree(out / "step_300", resumed / "step_300")
    (resumed / "config.json").write_text((out / "config.json").read_text())
    train.main(train_args(tiny_config_file, tiny_data, resumed, "--max_train_steps", "600",
                          "--resume_from_checkpoint", "latest"))
    a = load_file(out / "final_model" / "model.safetensors")
    b = load_file(resumed / "final_model" / "model.safetensors")
    weight_diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"resume: max |weight difference| vs uninterrupted = {weight_diff:.3e}")
    assert weight_diff == 0.0  # bit-identical on CPU: data order, masks, RNG, optimizer and LR state restored
    full = [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r and r["step"] > 300]
    part = [r["train/loss"] for r in read_metrics(resumed / "metrics.jsonl") if "train/loss" in r]
    assert len(full) == len(part) and full == part


def test_accumulation_and_gradient_checkpointing_run(tiny_config_file, tiny_data, tmp_path):
    metrics = train.main(train_args(tiny_config_file, tiny_data, tmp_path / "acc", "--max_train_steps", "4",
                                    "--gradient_accumulation_steps", "2", "--gradient_checkpointing",
                                    "--per_device_train_batch_size", "4", "--mixed_precision", "bf16",
                                    "--report_to", "tensorboard"))
    assert metrics["val/tf_cross_entropy"] > 0
    assert any((tmp_path / "acc").rglob("events.out.tfevents*"))


def test_evaluate_and_generate_scripts(trained_run, tiny_data, capsys):
    out, _ = trained_run
    train_dir, val_dir = tiny_data
    report = run_script("evaluate", ["--checkpoint_dir", str(out / "final_model"), "--val_data_dir", str(val_dir),
                                     "--train_data_dir", str(train_dir), "--output_dir", str(out / "eval"),
                                     "--max_examples", "32", "--seed", "7"])
    printed = capsys.readouterr().out
    assert "| model |" in printed and "| unigram of train tokens (CE) / most frequent token (accuracy) |" in printed
    assert printed.strip().splitlines()[-1].startswith("**Result:** model CE ")
    assert "| copy previous frame |" in printed and "| token accuracy: copy last prompt frame |" in printed
    assert report["cross_entropy"] < report["unigram_cross_entropy"]
    assert 0 <= report["copy_previous_accuracy"] <= 1
    written = json.loads((out / "eval" / "eval.json").read_text())
    assert len(written["cross_entropy_per_frame"]) == len(written["accuracy_per_frame"]) == 3  # frames 1..T-1
    assert len(written["rollout"]["accuracy_per_horizon"]) == len(written["rollout"]["psnr_per_horizon"]) == 2
    assert {"eval.json", "eval.md", "eval.png"} <= {p.name for p in (out / "eval").iterdir()}
    # One set of numbers: the final val/ metrics of training (4 batches of 8 windows, seed 7) are
    # computed by the same functions on the same windows with the same seeds.
    final = [r for r in read_metrics(out / "metrics.jsonl") if "val/tf_accuracy" in r][-1]
    assert final["val/tf_cross_entropy"] == pytest.approx(report["cross_entropy"], abs=1e-6)
    assert final["val/tf_accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)
    assert final["val/rollout_accuracy"] == pytest.approx(report["rollout"]["accuracy"], abs=1e-9)
    for logged, reported in (("changed_tf_cross_entropy", "changed_cross_entropy"), ("changed_tf_accuracy",
                             "changed_accuracy"), ("unigram_cross_entropy", "unigram_cross_entropy"),
                             ("most_frequent_accuracy", "unigram_accuracy"), ("action_sensitivity", "action_sensitivity")):
        assert final[f"val/{logged}"] == pytest.approx(report[reported], abs=1e-6), logged
    summary = run_script("generate", ["--checkpoint_dir", str(out / "final_model"), "--val_data_dir", str(val_dir),
                                      "--num_prompt_frames", "2", "--num_examples", "2", "--maskgit_steps", "2",
                                      "--output_dir", str(out / "gen")])
    assert summary["num_new_frames"] == 2
    assert {"tokens.npz", "strip.png", "generated.gif", "summary.json"} <= {p.name for p in (out / "gen").iterdir()}


@pytest.mark.parametrize("args, message", [
    (["--genie_config", "nope.json"], "config file nope.json does not exist"),
    (["--train_data_dir", "/nonexistent", "--val_data_dir", "/nonexistent"], "data folder /nonexistent does not exist"),
    (["--learning_rate", "-1"], "--learning_rate -1.0 must be a finite number > 0"),
])
def test_cli_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--output_dir", str(tmp_path / "o"), *args],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_compiled_training_matches_eager(tiny_config_file, tiny_data, tmp_path):
    eager = tmp_path / "eager"
    compiled = tmp_path / "compiled"
    base = ["--max_train_steps", "3", "--log_every_n_steps", "1", "--eval_every_n_steps", "1000"]
    train.main(train_args(tiny_config_file, tiny_data, eager, *base))
    train.main(train_args(tiny_config_file, tiny_data, compiled, *base, "--compile"))
    loss = lambda out: [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]  # noqa: E731
    assert len(loss(eager)) == 3
    assert max(abs(a - b) for a, b in zip(loss(eager), loss(compiled))) < 1e-3


def test_wandb_runs_offline_without_a_login_and_trackers_get_the_pictures(tiny_config_file, tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    out = tmp_path / "wb"
    result = subprocess.run([sys.executable, "masked_pretrain.py", *train_args(tiny_config_file, tiny_data, out,
                                                                               "--max_train_steps", "2", "--report_to", "all",
                                                                               "--tracker_project", "proj",
                                                                               "--run_name", "first-try")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert runs, "no offline wandb run was written"
    assert list(runs[0].rglob("media/images/val/picture*.png")), "the stage-1 picture did not reach wandb"
    # the trackers say where they write, and how to upload the offline run
    assert f"wandb: offline run in {runs[0]}; upload it later with: wandb sync {runs[0]}" in result.stdout
    assert f"tensorboard: {out / 'proj'}" in result.stdout  # --tracker_project names the project
    assert b"first-try" in next(runs[0].glob("*.wandb")).read_bytes()  # --run_name reached wandb
    events = EventAccumulator(str(next((out / "proj").rglob("events.out.tfevents*")).parent)).Reload()
    assert "val/picture" in events.Tags()["images"], "the stage-1 picture did not reach tensorboard"


def test_eval_loss_only_scores_the_cross_entropy_without_sampling(tiny_config_file, tiny_data, tmp_path, capsys):
    metrics = train.main(train_args(tiny_config_file, tiny_data, tmp_path / "run", "--eval_loss_only",
                                    "--max_train_steps", "2", "--max_eval_steps", "1"))
    assert metrics["val/tf_cross_entropy"] > 0 and "val/changed_tf_cross_entropy" in metrics
    assert "val/tf_accuracy" not in metrics and "val/rollout_accuracy" not in metrics
    assert "final validation (1 batches): model CE " in capsys.readouterr().out


def test_a_resumed_run_continues_its_tracker_runs(tiny_config_file, tiny_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    out = tmp_path / "resumed"
    board = out / "genie-autoregressive"
    hparams = []
    for steps, extra in (("2", []), ("4", ["--resume_from_checkpoint", "latest"])):
        result = subprocess.run([sys.executable, "train.py", *train_args(tiny_config_file, tiny_data, out, *extra,
                                 "--max_train_steps", steps, "--checkpointing_steps", "2", "--report_to", "all")],
                                cwd=REPO_ROOT, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr[-2000:]
        hparams.append(sorted(p.name for p in board.iterdir() if p.is_dir()))
    run_id = json.loads((out / "config.json").read_text())["tracker_run_id"]
    wandb_runs = sorted(p.name for p in (out / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(name.endswith(f"-{run_id}") for name in wandb_runs)  # one wandb run id
    assert hparams[0] and hparams[1] == hparams[0]  # the resume logs into the same TensorBoard run, no new hparams


def test_the_gif_is_labelled_and_readable_and_examples_come_from_across_the_val_split(trained_run, tiny_data):
    from PIL import Image

    out, _ = trained_run
    summary = run_script("generate", ["--checkpoint_dir", str(out / "final_model"), "--val_data_dir",
                                      str(tiny_data[1]), "--num_prompt_frames", "2", "--num_examples", "3",
                                      "--output_dir", str(out / "gif")])
    gif = Image.open(out / "gif" / "generated.gif")
    assert gif.n_frames == 4 and gif.size[0] >= 2 * 192  # model | truth, each panel at least 192 pixels wide
    assert summary["example_windows"][1] - summary["example_windows"][0] > 1  # not neighbouring windows
