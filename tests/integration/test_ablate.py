"""The study runner: statistics on hand examples, study-file checks, and a tiny study end to end
(outputs, parallel runs, rerun skips, a killed run starts over, emitted commands parse back)."""
import csv
import json
import math
import shlex
import shutil

import pytest

from genie.cli import parse
from genie.errors import ConfigError
from genie.studies import load_study, paired_difference
from genie.studies import runs as study_runs
from genie.studies.report import verdict
from genie.studies.runner import phases, plan
from genie.studies.runs import STAGE1, make_task
from genie.studies.stats import PairedDifference
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from tests.conftest import REPO_ROOT, run_script

T_975_2DF = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom
STARTUP_DEADLINE_S = 300  # a wait for the study's runs to start fails the test after this, instead of hanging


def test_paired_difference_by_hand():
    # diffs 0.5, 1.0, 2.5: mean 4/3, sd sqrt(13/12), half width t * sd / sqrt(3)
    diff = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.5, 1: 1.0, 2: 1.5})
    half = T_975_2DF * math.sqrt(13 / 12) / math.sqrt(3)
    assert diff.mean == pytest.approx(4 / 3) and diff.std == pytest.approx(math.sqrt(13 / 12))
    assert (diff.low, diff.high) == (pytest.approx(4 / 3 - half), pytest.approx(4 / 3 + half))
    assert diff.pairs == 3 and not diff.excludes_zero()  # [-1.252, +3.919]


def test_paired_difference_pairs_by_seed_and_edge_cases():
    # seed 7 has no baseline: only seeds 0 and 1 pair; the same gap at every seed is a point interval
    diff = paired_difference({0: 3.0, 1: 5.0, 7: 100.0}, {0: 2.0, 1: 4.0})
    assert (diff.mean, diff.low, diff.high, diff.pairs) == (1.0, 1.0, 1.0, 2) and diff.excludes_zero()
    single = paired_difference({0: 1.0}, {0: 0.25})
    assert single.mean == 0.75 and math.isnan(single.low) and not single.excludes_zero()
    with pytest.raises(ValueError, match="no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_verdict_follows_the_interval_and_the_direction():
    lower_ce = PairedDifference(-0.1, 0.01, -0.12, -0.08, 3)
    assert verdict(lower_ce, lower_is_better=True) == "helps"
    assert verdict(lower_ce, lower_is_better=False) == "hurts"
    assert verdict(PairedDifference(-0.1, 0.2, -0.5, 0.3, 3), lower_is_better=True) == "no difference"


def write_study(path, **changes):
    study = {"name": "tiny", "title": "tiny", "question": "q", "genie_config": "configs/small.json", "seeds": [0, 1],
             "stage1_steps": 3, "stage2_steps": 4, "stage1": {"initial_mask_ratio": 0.8, "final_mask_ratio": 0.1},
             "grid": {"mask_schedule": ["cosine", "exponential"]}} | changes
    path.write_text(json.dumps(study))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"grid": {"mask_shedule": ["cosine"]}}, "'mask_shedule' is not a stage-1 field"),
    ({"training": {"seed": 3}}, "set by the runner"),
    ({"training": {"learnig_rate": 1.0}}, "not train.py flags"),
    ({"grid": {}, "arms": [{"name": "c", "stage1": {"mask_schedule": "constant"}}]}, "constant holds one ratio"),
    ({"seeds": []}, "non-empty list"),
    ({"baseline": "half"}, "baseline 'half'"),
    ({"grid": {}}, "give a grid or a list of arms"),
    ({"extra": 1}, "unknown key(s) ['extra']"),
    ({"seeds": 3}, "seeds 3 must be a non-empty list"),
    ({"arms": ["cosine"]}, "arms must be a list of"),
    ({"grid": ["mask_schedule"]}, "grid must be a mapping"),
])
def test_bad_study_files_are_one_line_errors(tmp_path, changes, message):
    with pytest.raises(ConfigError) as error:
        load_study(write_study(tmp_path / "s.json", **changes))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_studies_share_identical_runs(tmp_path):
    """The stage-2-only baseline and a stage-1 arm common to two studies are one run each."""
    first = load_study(write_study(tmp_path / "a.json"))
    second = load_study(write_study(tmp_path / "b.json", grid={"temporal_attention": ["bidirectional", "causal"]},
                                    stage1={"mask_schedule": "cosine", "initial_mask_ratio": 0.8,
                                            "final_mask_ratio": 0.1}))
    keys = [{run.key(spec) for phase in phases(plan(spec)) for run in phase} for spec in (first, second)]
    shared = keys[0] & keys[1]
    # cosine stage 1 = bidirectional stage 1 (2 seeds), its stage-2 run (2), the baseline (2)
    assert len(shared) == 6 and len(keys[0]) == len(keys[1]) == 10


def test_tiny_study_end_to_end(tmp_path, monkeypatch, capsys):
    study = write_study(tmp_path / "study.yaml", training={"per_device_train_batch_size": 2, "eval_every_n_steps": 2,
                                                          "max_eval_steps": 1, "log_every_n_steps": 2},
                        eval_max_examples=8)
    out, store = tmp_path / "results", tmp_path / "store"
    argv = ["--study", str(study), "--store", str(store), "--output_dir", str(out)]
    run_script("ablate", argv + ["--jobs", "2"])  # each run in a worker process
    assert {"results.md", "results.csv", "runs.csv", "curves.png", "swept.png"} <= {p.name for p in out.iterdir()}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["arm"] for r in rows] == ["mask_schedule=cosine", "mask_schedule=exponential", "stage 2 only, 7 steps"]
    runs = list(csv.DictReader((out / "runs.csv").open()))
    ce = {(r["arm"], int(r["seed"])): float(r["cross_entropy"]) for r in runs}
    for row in rows[:2]:  # the reported difference is the paired one, recomputed from the per-seed numbers
        expected = paired_difference({s: ce[(row["arm"], s)] for s in (0, 1)},
                                     {s: ce[("stage 2 only, 7 steps", s)] for s in (0, 1)})
        assert float(row["cross_entropy_diff"]) == pytest.approx(expected.mean)
        assert float(row["cross_entropy_diff_high"]) == pytest.approx(expected.high)
        assert 0 < float(row["masked_fraction"]) < 0.8

    calls = []

    def counting(original):
        def wrapper(args, *rest):
            calls.append(args.output_dir)
            return original(args, *rest)
        return wrapper

    monkeypatch.setattr(study_runs, "run_masked_pretrain", counting(study_runs.run_masked_pretrain))
    monkeypatch.setattr(study_runs, "run_autoregressive", counting(study_runs.run_autoregressive))
    capsys.readouterr()
    first_report = (out / "results.md").read_text()
    run_script("ablate", argv)  # everything finished: nothing trains, the report is the same
    assert calls == [] and "10 runs, 10 already finished" in capsys.readouterr().out
    assert (out / "results.md").read_text() == first_report

    # A run killed mid-training (no final model, no eval) starts over; the others are kept.
    spec = load_study(study)
    victim = make_task(phases(plan(spec))[1][0], spec, store)
    shutil.rmtree(victim.folder / "final_model")
    victim.eval_json.unlink()
    run_script("ablate", argv)
    assert calls == [str(victim.folder)] and victim.eval_json.is_file()

    # Going on from that report in an empty store (another machine, a wiped disk): seeds 0-1 are taken from
    # it, as it scored them; only seed 2's five runs train.
    calls.clear()
    wider = write_study(tmp_path / "wider.yaml", **json.loads(study.read_text()) | {"seeds": [0, 1, 2]})
    out2, store2 = tmp_path / "results2", tmp_path / "store2"
    report = run_script("ablate", ["--study", str(wider), "--store", str(store2), "--output_dir", str(out2),
                                   "--earlier_report", str(out)])
    assert len(calls) == 5 and all("-seed2-" in folder for folder in calls)
    assert "6 of these 9 (arm, seed) cells, at seeds [0, 1], are scored as an earlier report" in report
    for name in ("runs.csv", "curves.csv"):  # seeds 0-1 as the earlier report has them, seed 2 trained here
        before, after = (list(csv.DictReader((folder / name).open())) for folder in (out, out2))
        assert [r for r in after if r["seed"] != "2"] == before and any(r["seed"] == "2" for r in after)
    curves = list(csv.DictReader((out / "curves.csv").open()))
    # every 2 steps and at the end: steps 2, 4 of the 4-step arms, 2, 4, 6, 7 of the 7-step baseline
    assert [(r["seed"], r["step"]) for r in curves if r["arm"] == "mask_schedule=cosine"] == [
        ("0", "2"), ("0", "4"), ("1", "2"), ("1", "4")] and len(curves) == 2 * (2 + 2 + 4)
    rows = {r["arm"]: r for r in csv.DictReader((out2 / "results.csv").open())}
    scored = list(csv.DictReader((out2 / "runs.csv").open()))
    mean = sum(float(r["cross_entropy"]) for r in scored if r["arm"] == "mask_schedule=cosine") / 3
    assert float(rows["mask_schedule=cosine"]["cross_entropy_mean"]) == pytest.approx(mean)

    # A row of another run (other code or another design) is refused, not mixed in: one line, nothing trained.
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    text = (out / "runs.csv").read_text()
    first_run = next(csv.DictReader((out / "runs.csv").open()))["run"]
    (tampered / "runs.csv").write_text(text.replace(first_run, first_run[:-4] + "beef"))
    with pytest.raises(ConfigError, match="other code, another design, device kind or torch trained it") as error:
        run_script("ablate", ["--study", str(wider), "--store", str(tmp_path / "store3"), "--earlier_report",
                              str(tampered)])
    assert "\n" not in str(error.value) and not (tmp_path / "store3").exists()
    lines = text.splitlines()  # a report without one score, e.g. of a runner from before that score existed
    (tampered / "runs.csv").write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n")
    with pytest.raises(ConfigError, match=r"lacks the columns \['changed_fraction'\]"):
        run_script("ablate", ["--study", str(wider), "--store", str(tmp_path / "store3"), "--earlier_report",
                              str(tampered)])
    (tampered / "runs.csv").write_text(text + lines[1] + "\n")  # a cell twice
    with pytest.raises(ConfigError, match="has two rows"):
        run_script("ablate", ["--study", str(wider), "--store", str(tmp_path / "store3"), "--earlier_report",
                              str(tampered)])


LABEL_SCARCE = {"grid": {"train_segment_fraction": [0.1]}, "stage1_actions": False, "controls": ["autoregressive_stage1"],
                "baseline": ["equal_total_steps", "equal_stage2_steps"]}


@pytest.mark.parametrize("design", [{}, LABEL_SCARCE], ids=["masked arm", "label-scarce with control"])
def test_emitted_commands_parse_back_to_the_runs(tmp_path, design):
    study = write_study(tmp_path / "study.yaml", **({"grid": {"mask_pattern": ["tube"]}} | design),
                        stage1={"mask_schedule": "constant", "initial_mask_ratio": 0.5, "final_mask_ratio": 0.5})
    text = run_script("ablate", ["--study", str(study), "--store", str(tmp_path / "store"), "--emit_commands"])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    spec = load_study(study)
    tasks = {str(t.folder): t for t in (make_task(r, spec, tmp_path / "store") for p in phases(plan(spec)) for r in p)}
    assert len(lines) == len(tasks) + 1 and lines[-1].startswith("python scripts/ablate.py")
    for line in lines[:-1]:
        train = shlex.split(line.split(" && ")[0])
        assert train[:2] == ["accelerate", "launch"]
        if train[2] == "masked_pretrain.py":
            args, masking = parse([TrainingArguments, MaskedPretrainConfig], "", train[3:])
            task = tasks[args.output_dir]
            assert task.run.stage == STAGE1 and masking == task.masking
            assert masking.mask_pattern == ("random" if design else "tube")
        else:
            args, hand_off = parse([TrainingArguments, study_runs.HandOffArguments], "", train[3:])
            task = tasks[args.output_dir]
            assert hand_off.masked_pretrain_checkpoint == (str(task.init_weights) if task.init_weights else None)
            assert hand_off.allow_non_pretrain_checkpoint == task.starts_from_stage2
            assert ("scripts/evaluate.py" in line) == task.evaluated  # a control's pretraining is not scored
        assert args == task.args
    if design:  # 2 seeds: stage 1 and the control's pretraining, then the arm, two baselines and the control
        assert len(tasks) == 2 * (2 + 4) and sum(t.args.drop_actions for t in tasks.values()) == 4


def test_a_missing_study_file_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "scripts/ablate.py", "--study", str(tmp_path / "nowhere.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "study file" in result.stderr and "does not exist" in result.stderr


def test_a_study_of_named_arms_only_has_exactly_those_arms(tmp_path):
    study = load_study(write_study(tmp_path / "s.json", grid={}, stage1={"mask_schedule": "constant"}, arms=[
        {"name": "ratio 0.3", "value": 0.3, "stage1": {"initial_mask_ratio": 0.3, "final_mask_ratio": 0.3}}]))
    assert [(a.name, a.value, a.stage1["initial_mask_ratio"]) for a in study.arm_list()] == [("ratio 0.3", 0.3, 0.3)]


def test_the_runner_never_deletes_a_run_another_runner_is_training(tmp_path):
    from genie.files import RunLock
    from genie.errors import RunFolderLockedError
    from genie.studies.runs import remove_unfinished

    folder = tmp_path / "s2-seed0-4steps-abc"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    lock = RunLock(folder)
    lock.acquire()  # the other runner, training this run
    try:
        with pytest.raises(RunFolderLockedError, match="is being written by another training process"):
            remove_unfinished(folder)
        assert (folder / "config.json").is_file()
    finally:
        lock.release()
    remove_unfinished(folder)  # a folder left by a killed attempt: removed under the lock
    assert not folder.exists() and not list(tmp_path.iterdir())


def test_a_run_stopped_by_sigterm_is_not_logged_as_finished(tmp_path, monkeypatch):
    from genie.errors import RunStopped

    spec = load_study(write_study(tmp_path / "s.json"))
    stage2_only = next(run for _, _, run in study_runs_plan(spec) if run.stage == study_runs.STAGE2 and not run.init)
    task = study_runs.make_task(stage2_only, spec, tmp_path / "store")
    monkeypatch.setattr(study_runs, "run_autoregressive", lambda args, hand_off: {"stopped_by": "SIGTERM", "step": 3})
    monkeypatch.setattr(study_runs, "evaluate_checkpoint", lambda *a, **k: pytest.fail("a stopped run was evaluated"))
    with pytest.raises(RunStopped, match="the study stopped on SIGTERM during .* run the same command again"):
        study_runs.execute(task)
    assert not task.finished


def test_sigterm_stops_a_parallel_study_and_its_workers(tmp_path, tiny_config_file, tiny_data):
    """With --jobs 2, SIGTERM to the study reaches its workers: each run saves a checkpoint and stops (none
    trains on, orphaned), the study exits 2 with one line, and no run is taken for finished."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    study = write_study(tmp_path / "s.json", stage1_steps=100_000, genie_config=str(tiny_config_file),
                        train_data_dir=str(tiny_data[0]), val_data_dir=str(tiny_data[1]),
                        training={"per_device_train_batch_size": 2, "eval_every_n_steps": 100_000})
    store = tmp_path / "store"
    study_process = subprocess.Popen(
        [sys.executable, "scripts/ablate.py", "--study", str(study), "--store", str(store), "--output_dir",
         str(tmp_path / "out"), "--jobs", "2"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runner, workers = psutil.Process(study_process.pid), []
    try:
        logs, deadline = [], time.monotonic() + STARTUP_DEADLINE_S
        while len(logs) < 2 or not all("it/s" in log.read_text() for log in logs):  # both stage-1 runs train
            assert time.monotonic() < deadline, (f"the two stage-1 runs did not start training within "
                                                 f"{STARTUP_DEADLINE_S} s; their logs: {logs}")
            time.sleep(0.5)
            assert study_process.poll() is None, study_process.stderr.read()
            logs = list((store / "logs").glob("s1-*.log")) if (store / "logs").is_dir() else []
        workers = [child for child in runner.children() if "spawn_main" in " ".join(child.cmdline())]
        assert len(workers) == 2
        study_process.send_signal(signal.SIGTERM)
        study_process.wait()  # not communicate(): orphaned workers would hold its stderr open
        orphans = [worker for worker in workers if worker.is_running()]
        assert not orphans
    finally:  # whatever failed, leave no training process behind
        for process in [*workers, *(runner.children(recursive=True) + [runner] if runner.is_running() else [])]:
            if process.is_running():
                process.kill()
    stderr = study_process.stderr.read()
    assert study_process.returncode == 2 and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [stderr.strip().splitlines()[-1]]
    assert stderr.strip().splitlines()[-1].startswith("error: the study stopped on SIGTERM during 'mask_schedule=")
    stage1 = sorted(store.glob("s1-*"))
    assert len(stage1) == 2 and all(list(folder.glob("step_*")) for folder in stage1)  # stopped with a checkpoint
    spec = load_study(study)
    assert not any(make_task(run, spec, store).finished for phase in phases(plan(spec)) for run in phase)


def study_runs_plan(spec):
    from genie.studies.runner import plan

    return plan(spec)


def test_a_label_scarce_study_end_to_end(tmp_path, tiny_config_file, tiny_data):
    """Stage 1 on the whole train split without actions, stage 2 on a fraction of its segments with them,
    beside both baselines and the autoregressive control (Holm across arms: tests/unit/test_label_scarce.py)."""
    study = write_study(tmp_path / "s.yaml", grid={"train_segment_fraction": [0.25]}, stage1={"mask_schedule": "cosine"},
                        stage1_actions=False, baseline=["equal_total_steps", "equal_stage2_steps"],
                        controls=["autoregressive_stage1"], genie_config=str(tiny_config_file),
                        train_data_dir=str(tiny_data[0]), val_data_dir=str(tiny_data[1]),
                        primary={"metric": "changed_cross_entropy", "versus": "equal_total_steps"},
                        training={"per_device_train_batch_size": 2, "eval_every_n_steps": 100, "max_eval_steps": 1},
                        eval_max_examples=4)
    out, store = tmp_path / "results", tmp_path / "store"
    report = run_script("ablate", ["--study", str(study), "--store", str(store), "--output_dir", str(out)])
    assert "**Primary contrast** (declared in the study file): CE on the tokens that change" in report
    value = {(r["arm"], int(r["seed"])): float(r["changed_cross_entropy"])
             for r in csv.DictReader((out / "runs.csv").open())}
    arm = "train_segment_fraction=0.25"
    row = next(r for r in csv.DictReader((out / "results.csv").open()) if r["arm"] == arm)
    contrasts = {c["versus"]: c for c in csv.DictReader((out / "contrasts.csv").open())}
    comparators = {"equal_total_steps": "stage 2 only, 7 steps, train_segment_fraction=0.25",
                   "equal_stage2_steps": "stage 2 only, 4 steps, train_segment_fraction=0.25",
                   "autoregressive_stage1": "autoregressive stage 1, 3+4 steps, train_segment_fraction=0.25"}
    assert sorted(contrasts) == sorted(comparators) and row["baseline"] == comparators["equal_total_steps"]
    for kind, name in comparators.items():  # each contrast recomputes from the per-seed numbers
        expected = paired_difference({s: value[(arm, s)] for s in (0, 1)}, {s: value[(name, s)] for s in (0, 1)})
        assert float(contrasts[kind]["diff"]) == pytest.approx(expected.mean)
        assert float(contrasts[kind]["p"]) == pytest.approx(expected.p)
    assert float(row["p_holm"]) == pytest.approx(float(row["p"]))  # one arm: Holm changes nothing
    # What each run trained on is recorded in its config.json.
    configs = [json.loads(p.read_text()) for p in store.glob("*/config.json")]
    pretraining = [c for c in configs if c["args"]["drop_actions"]]
    assert len(pretraining) == 4 and all(c["actions_withheld"] and "train_segments" not in c for c in pretraining)
    subsets = [c["train_segments"] for c in configs if c["args"]["train_segment_fraction"] == 0.25]
    assert len(subsets) == 8 and len(configs) == 12
    assert all(s["segments"] == round(0.25 * s["of_segments"]) for s in subsets)
    assert len({s["segment_ids_sha1"] for s in subsets}) == 2  # one subset per seed, shared by its four runs
