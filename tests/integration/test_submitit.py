"""scripts/ablate.py --launcher submitit on the local cluster: a study's runs as submitit jobs give the
results of --jobs 1 bit for bit; a job preempted (submitit's USR2) requeues and resumes, a job killed is
submitted again and resumes, and --status tells each state. Through the library (genie.studies.cli)."""
import csv
import json
import signal
import sys
import time

import cloudpickle
import psutil
import pytest
import torch
from safetensors.torch import load_file

from genie.cli import parse
from genie.errors import ConfigError
from genie.studies import jobs as study_jobs
from genie.studies import launchers
from genie.studies.cli import AblateArguments, run_ablation
from genie.studies.jobs import JOBS_FILE, StudyJob, read_jobs
from genie.studies.runner import RunnerOptions, phases, plan
from genie.studies.runs import STAGE2, STAGE2_FINAL, execute, make_task
from genie.studies.spec import load_study
from genie.training.trainer import Trainer

DEADLINE_S = 600  # generous: the machine may be shared; a poll that runs out fails with what it waited for


def write_study(path, config_file, data, **changes):
    """A tiny study on the tiny config and data: 2 arms, 2 seeds, 2+2 steps, scored on 2 windows."""
    study = {"name": "tiny", "title": "tiny", "question": "q", "genie_config": str(config_file), "seeds": [0, 1],
             "stage1_steps": 2, "stage2_steps": 2, "stage1": {"initial_mask_ratio": 0.8, "final_mask_ratio": 0.1},
             "grid": {"mask_schedule": ["cosine", "exponential"]}, "train_data_dir": str(data[0]),
             "val_data_dir": str(data[1]), "eval_max_examples": 2, "eval_batch_size": 2,
             "training": {"per_device_train_batch_size": 2, "eval_every_n_steps": 100, "max_eval_steps": 1}} | changes
    path.write_text(json.dumps(study))
    return path


def ablate(study, store, out, *flags):
    """run_ablation as scripts/ablate.py calls it."""
    (args,) = parse([AblateArguments], "", ["--study", str(study), "--store", str(store), "--output_dir", str(out),
                                            *flags])
    return run_ablation(args, args.load())


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {DEADLINE_S} s for {what}"
        time.sleep(0.1)


def test_a_submitit_study_equals_jobs_1(tmp_path, tiny_config_file, tiny_data):
    # min_seeds 2: the partial report below holds 1 seed, and is still written (a study's seed check is
    # on the seeds its file declares, not on those done so far).
    study = write_study(tmp_path / "study.json", tiny_config_file, tiny_data, min_seeds=2)
    store, out = tmp_path / "store", tmp_path / "out"
    assert "10 runs: 10 not submitted" in ablate(study, store, out, "--status")

    report = ablate(study, store, out, "--launcher", "submitit", "--cluster", "local")
    assert report.startswith("# tiny") and "partial" not in report
    table = ablate(study, store, out, "--status")
    assert "10 runs: 10 done" in table
    records = read_jobs(out / JOBS_FILE)
    assert len(records) == 10 and all(r.stdout in table for r in records.values())
    assert all("saved final model" in open(r.stdout).read() for r in records.values())

    ablate(study, tmp_path / "store1", tmp_path / "out1", "--jobs", "1")
    for name in ("runs.csv", "results.csv", "contrasts.csv"):
        assert (out / name).read_text() == (tmp_path / "out1" / name).read_text(), name
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 4 * 2 - 2  # 2 arms + baseline, 2 seeds

    ablate(study, store, out, "--launcher", "submitit", "--cluster", "local")  # all done: nothing is submitted
    assert read_jobs(out / JOBS_FILE) == records

    next((tmp_path / "store1").glob("s2-seed1-*/eval/eval.json")).unlink()  # one scored run of seed 1 undone
    partial = ablate(study, tmp_path / "store1", tmp_path / "out1", "--report")
    assert "**partial: 9 of 10 runs done; this report holds seeds [0]" in partial and "interim look" in partial
    assert partial == (tmp_path / "out1" / "results.md").read_text()


class SlowBaselineJob(StudyJob):
    """The study's job, with the stage-2-alone run slowed to 0.3 s a step, so that it is surely still
    training when the test signals it (sleeping changes no number)."""

    def __call__(self) -> float:
        if self.task.run.init is None:
            train_step = Trainer.train_step

            def slow(trainer, batches):
                time.sleep(0.3)
                return train_step(trainer, batches)

            Trainer.train_step = slow
        return super().__call__()


def test_a_preempted_or_killed_job_resumes_from_its_checkpoint(tmp_path, tiny_config_file, tiny_data, monkeypatch):
    study = write_study(tmp_path / "study.json", tiny_config_file, tiny_data, seeds=[0], stage2_steps=24,
                        grid={"mask_schedule": ["cosine"]},
                        training={"per_device_train_batch_size": 2, "eval_every_n_steps": 100, "max_eval_steps": 1,
                                  "checkpointing_steps": 3})
    store, out = tmp_path / "store", tmp_path / "out"
    monkeypatch.setattr(launchers, "StudyJob", SlowBaselineJob)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job's process cannot import this file
    try:
        preempt_kill_and_resume(study, store, out)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    spec = load_study(study)
    baseline = baseline_task(spec, store)
    uninterrupted = make_task(baseline.run, spec, tmp_path / "other_store")
    execute(uninterrupted)
    ours = load_file(baseline.folder / STAGE2_FINAL / "model.safetensors")
    theirs = load_file(uninterrupted.folder / STAGE2_FINAL / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def baseline_task(spec, store):
    """The study's stage 2 alone (from scratch)."""
    return next(make_task(run, spec, store.absolute()) for phase in phases(plan(spec)) for run in phase
                if run.init is None and run.stage == STAGE2)


def preempt_kill_and_resume(study, store, out):
    """Submit the study; preempt its baseline's job (requeued, it resumes), then kill it (it fails); submit
    the study again (the baseline resumes from its newest step_N/) and wait for the report."""
    submitted = ablate(study, store, out, "--launcher", "submitit", "--cluster", "local", "--submit_only")
    assert "1 stage-2 run(s) wait for their pretraining" in submitted
    baseline = baseline_task(load_study(study), store)
    record = read_jobs(out / JOBS_FILE)[baseline.folder.name]
    wait_for(lambda: list(baseline.folder.glob("step_*")), "the baseline's first step_N/")
    assert states_of(study, store, out)[baseline.folder.name] == "running"

    trainer = task_process(record.job_id)
    trainer.send_signal(signal.SIGUSR2)  # what the local cluster sends at a timeout, SLURM at a preemption
    wait_for(lambda: "resumed from" in open(record.stdout).read(), "the requeued job to resume")
    first = step_of_resume(open(record.stdout).read())
    wait_for(lambda: max(steps(baseline.folder)) > first, "a checkpoint after the resume")
    task_process(record.job_id).kill()  # killed for good: the job ends unfinished
    wait_for(lambda: states_of(study, store, out)[baseline.folder.name] == "failed", "the killed job to read failed")
    killed_at = max(steps(baseline.folder))

    report = ablate(study, store, out, "--launcher", "submitit", "--cluster", "local")  # submits it again
    assert report.startswith("# tiny")
    second = read_jobs(out / JOBS_FILE)[baseline.folder.name]
    assert second.job_id != record.job_id
    resumed = open(second.stdout).read()
    assert f"resumed from {baseline.folder}/step_{step_of_resume(resumed)}" in resumed
    assert step_of_resume(resumed) == killed_at > first >= 3
    assert set(states_of(study, store, out).values()) == {"done"}


def states_of(study, store, out) -> dict[str, str]:
    """Run key -> state, as --status tells it."""
    return {row.key: row.state for row in launchers.study_status(load_study(study), RunnerOptions(out, store))}


def task_process(job_id: str) -> psutil.Process:
    """The process a local job runs its task in: the child of the job's controller (whose pid is the job id)."""
    controller = psutil.Process(int(job_id))
    wait_for(lambda: controller.children(), f"job {job_id}'s task process")
    return controller.children()[0]


def steps(folder) -> list[int]:
    return [int(p.name.split("_")[1]) for p in folder.glob("step_*")] or [0]


def step_of_resume(log: str) -> int:
    line = [line for line in log.splitlines() if line.startswith("resumed from")][-1]
    return int(line.rsplit(" ", 1)[1])


def test_status_names_a_queued_slurm_job_and_bad_inputs_are_one_line(tmp_path, tiny_config_file, tiny_data,
                                                                      monkeypatch):
    study = write_study(tmp_path / "study.json", tiny_config_file, tiny_data, seeds=[0],
                        grid={"mask_schedule": ["cosine"]})
    spec = load_study(study)
    tasks = launchers.study_tasks(spec, RunnerOptions(tmp_path / "out", tmp_path / "store"))

    class FakeSlurmJob:
        def __init__(self, folder, job_id):
            self.state = {"1": "PENDING", "2": "RUNNING", "3": "TIMEOUT"}[job_id]

    monkeypatch.setattr(study_jobs.submitit, "SlurmJob", FakeSlurmJob)
    records = {t.folder.name: study_jobs.JobRecord(str(i), "slurm", "f/%j", f"f/{i}.out", f"f/{i}.err")
               for i, t in enumerate(tasks, start=1)}
    study_jobs.write_jobs(tmp_path / "out" / JOBS_FILE, records)
    table = ablate(study, tmp_path / "store", tmp_path / "out", "--status")
    assert "3 runs: 1 queued, 1 running, 1 failed" in table and "f/3.out" in table

    monkeypatch.setattr(launchers.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"^no SLURM here \(sbatch not found\); use --cluster local"):
        ablate(study, tmp_path / "store", tmp_path / "out", "--launcher", "submitit", "--cluster", "slurm")
    for section, message in (({"partiton": "gpu"}, "unknown slurm key(s) ['partiton']"),
                             ({"timeout_min": "4h"}, "slurm.timeout_min '4h' must be a whole number"),
                             ("gpu", "slurm must be a mapping")):
        with pytest.raises(ConfigError) as error:
            load_study(write_study(tmp_path / "bad.json", tiny_config_file, tiny_data, slurm=section))
        assert message in str(error.value) and "\n" not in str(error.value)
