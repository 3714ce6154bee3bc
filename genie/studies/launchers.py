"""scripts/ablate.py --launcher submitit: each unfinished run of a study becomes one submitit job, on a
SLURM cluster or on this machine (`--cluster local`). The run store stays the truth: a finished run is
never submitted, nor a run whose job is still queued or running; a failed one is submitted again and
resumes from its newest step_N/.

Runs that need nothing go in one job array: stage 1, stage 2 alone, and stage-2 runs whose pretraining is
already in the store. A stage-2 run whose pretraining is still to train waits for it: on SLURM a second
array with `--dependency afterok:<its pretraining's jobs>`, on the local cluster this process submits it
once that pretraining has finished."""
from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from genie.errors import ConfigError, StudyJobsFailed
from genie.studies.jobs import (JOBS_FILE, StudyJob, job_record, job_state, read_jobs,
                                write_jobs)
from genie.studies.report import write_report
from genie.studies.runner import (Progress, RunnerOptions, earlier_note, plan, report_cells, run_labels, seed_order,
                                  to_train)
from genie.studies.runs import RunTask, make_task
from genie.studies.slurm_settings import SlurmSettings
from genie.studies.spec import StudySpec

NO_SLURM = "no SLURM here (sbatch not found); use --cluster local or run on a login node"


@dataclass
class SubmititOptions:
    cluster: str  # slurm | local
    settings: SlurmSettings
    wait: bool = True  # wait for the jobs and write the report; else submit and return
    poll_s: float = 1.0  # how often a waiting study asks for its jobs' states

    def __post_init__(self) -> None:
        if self.cluster not in ("slurm", "local"):
            raise ConfigError(f"--cluster {self.cluster!r} must be slurm or local")
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError(NO_SLURM)


def study_tasks(spec: StudySpec, runner: RunnerOptions, store: Path | None = None) -> list[RunTask]:
    """Every run of the study that no earlier report scored, each once, seed by seed with pretraining first
    (as the local runner trains); in `store` if given, else in the runner's."""
    return [make_task(run, spec, store or runner.store) for run in seed_order(to_train(plan(spec), runner))]


def make_executor(options: SubmititOptions, store: Path, dependency: list[str] | None = None) -> submitit.Executor:
    """An executor whose job folders are <store>/jobs/<job id>/; `dependency`: SLURM jobs to finish first."""
    executor = submitit.AutoExecutor(folder=store / "jobs" / "%j", cluster=options.cluster,
                                     slurm_max_num_timeout=options.settings.max_num_timeout or 3)
    parameters = options.settings.executor_parameters()
    if dependency:
        extra = parameters.get("slurm_additional_parameters", {})
        # A job whose pretraining failed would wait forever; SLURM cancels it instead, and the study says so.
        parameters["slurm_additional_parameters"] = extra | {"dependency": "afterok:" + ":".join(dependency),
                                                             "kill-on-invalid-dep": "yes"}
    executor.update_parameters(name="genie-study", **parameters)
    return executor


def submit(tasks: list[RunTask], executor: submitit.Executor) -> dict[str, tuple[submitit.Job, RunTask]]:
    """One job per run, as one job array; run key -> (job, task)."""
    if not tasks:
        return {}
    with executor.batch():
        jobs = [executor.submit(StudyJob(task)) for task in tasks]
    return {task.folder.name: (job, task) for job, task in zip(jobs, tasks)}


class StudyLaunch:
    """The submission of one study: what to submit, the jobs in flight and their record (jobs.json)."""

    def __init__(self, spec: StudySpec, runner: RunnerOptions, options: SubmititOptions):
        self.spec, self.options = spec, options
        self.store = runner.store.absolute()  # a job may start in another folder (a cluster node)
        self.jobs_file = runner.output_dir / JOBS_FILE
        self.records = read_jobs(self.jobs_file)
        self.tasks = study_tasks(spec, runner, self.store)
        self.in_flight: dict[str, tuple[submitit.Job, RunTask]] = {}
        self.progress = Progress([t for t in self.tasks if not t.finished], run_labels(plan(spec)))

    def state(self, task: RunTask) -> str:
        return job_state(task, self.records.get(task.folder.name))

    def running(self, task: RunTask) -> bool:
        """Whether the run's job is queued or running (or, submitted by this process, not yet known to sacct)."""
        state = self.state(task)
        return state in ("queued", "running") or (state == "unknown" and task.folder.name in self.in_flight)

    def to_submit(self) -> tuple[list[RunTask], list[RunTask]]:
        """(runs that can start now, stage-2 runs whose pretraining is still to train); neither holds a run
        that is done or whose job is queued or running."""
        pending = [t for t in self.tasks if self.state(t) in ("not submitted", "failed", "unknown")]
        unfinished = {t.folder.name for t in self.tasks if not t.finished}
        waiting = [t for t in pending if t.init_weights and t.init_weights.parent.name in unfinished]
        return [t for t in pending if t not in waiting], waiting

    def submit(self, tasks: list[RunTask], dependency: list[str] | None = None) -> None:
        submitted = submit(tasks, make_executor(self.options, self.store, dependency))
        for key, (job, task) in submitted.items():
            self.records[key] = job_record(job, self.options.cluster, self.store / "jobs" / "%j")
            self.progress.line(f"submitted (job {job.job_id})", task)
        self.in_flight |= submitted
        write_jobs(self.jobs_file, self.records)

    def pretraining_jobs(self, tasks: list[RunTask]) -> list[str]:
        """The job ids of the pretraining runs that `tasks` start from."""
        keys = {t.init_weights.parent.name for t in tasks}
        return sorted({self.records[k].job_id for k in keys if k in self.records})

    def wait(self, waiting: list[RunTask]) -> list[RunTask]:
        """Until no job of the study is queued or running, submitting each run of `waiting` once its
        pretraining is done (the local cluster); returns the runs whose jobs ended unfinished."""
        watched = [t for t in self.tasks if self.running(t)]
        failed: list[RunTask] = []
        while watched or waiting:
            time.sleep(self.options.poll_s)
            for job, _ in self.in_flight.values():
                job.done()  # a local job's controller is this process's child: this reaps it when it ends
            for task in [t for t in watched if not self.running(t)]:
                watched.remove(task)
                self._ended(task, failed)
            ready = [t for t in waiting if self._pretraining_state(t) == "done"]
            blocked = [t for t in waiting if self._pretraining_state(t) == "failed"]
            waiting = [t for t in waiting if t not in ready + blocked]
            for task in blocked:
                self.progress.line("not submitted: its pretraining failed", task)
            failed += blocked
            if ready:
                self.submit(ready)
                watched += ready
        return failed

    def _seconds(self, task: RunTask) -> float | None:
        """The wall time the run's job returned (None for a job submitted by an earlier process)."""
        job = self.in_flight.get(task.folder.name, (None,))[0]
        try:
            return float(job.result()) if job is not None else None
        except Exception:  # noqa: BLE001 - the store says the run is done; its job's own record is a detail
            return None

    def _pretraining_state(self, task: RunTask) -> str:
        pretraining = next(t for t in self.tasks if t.folder.name == task.init_weights.parent.name)
        return self.state(pretraining)

    def _ended(self, task: RunTask, failed: list[RunTask]) -> None:
        if task.finished:
            self.progress.finished(task, self._seconds(task))
            return
        failed.append(task)
        self.progress.line(f"FAILED (job {self.records[task.folder.name].job_id}, log "
                           f"{self.records[task.folder.name].stderr})", task)


def launch_study(spec: StudySpec, runner: RunnerOptions, options: SubmititOptions) -> str:
    """Submit the study's unfinished runs; with `options.wait`, wait for them and write the report, else
    return the status table."""
    launch = StudyLaunch(spec, runner, options)
    now, waiting = launch.to_submit()
    states = [launch.state(t) for t in launch.tasks]
    print(f"study {spec.name}: {len(states)} runs, {states.count('done')} done, "
          f"{sum(launch.running(t) for t in launch.tasks)} queued or running already; submitting {len(now)} "
          f"now and {len(waiting)} after their pretraining ({options.cluster}; jobs in "
          f"{launch.store / 'jobs'}, their ids in {launch.jobs_file})", flush=True)
    launch.submit(now)
    if options.cluster == "slurm" and waiting:
        launch.submit(waiting, dependency=launch.pretraining_jobs(waiting))
        waiting = []
    if not options.wait:
        later = (f"; {len(waiting)} stage-2 run(s) wait for their pretraining: run the same command again once it "
                 "is done" if waiting else "")
        return status_table(spec, runner) + f"\nsubmitted{later}; --status shows the runs, --report writes the report"
    failed = launch.wait(waiting)
    if failed:
        raise StudyJobsFailed(f"{len(failed)} run(s) of study {spec.name} ended unfinished "
                              f"({', '.join(launch.progress.labels[t.run] for t in failed)}); --status shows their "
                              "logs; run the same command again to submit them anew (each resumes from its newest "
                              "step_N/)")
    return report_from_store(spec, runner)


@dataclass(frozen=True)
class RunStatus:
    key: str  # the run's folder in the store
    label: str
    state: str  # done, not submitted, queued, running, failed (or unknown)
    job: str  # its newest job's id, or "-"
    log: str  # that job's stdout (its stderr is beside it), else the run's log in the store, else "-"


def study_status(spec: StudySpec, runner: RunnerOptions) -> list[RunStatus]:
    records = read_jobs(runner.output_dir / JOBS_FILE)
    labels = run_labels(plan(spec))
    rows = []
    for task in study_tasks(spec, runner, runner.store.absolute()):
        record = records.get(task.folder.name)
        log = record.stdout if record else str(task.log) if task.log.is_file() else "-"
        rows.append(RunStatus(task.folder.name, labels[task.run], job_state(task, record),
                              record.job_id if record else "-", log))
    return rows


def status_table(spec: StudySpec, runner: RunnerOptions) -> str:
    """One line per run of the study: its state, job and log (submitit's .out; the .err is beside it)."""
    rows = study_status(spec, runner)
    counts = {state: sum(row.state == state for row in rows) for state in dict.fromkeys(row.state for row in rows)}
    columns = [("state", "job", "run", "log (.out; .err beside it)")] + [(r.state, r.job, r.label, r.log) for r in rows]
    width = [max(len(row[i]) for row in columns) for i in range(3)]
    earlier = (f" (and {len(runner.earlier)} (arm, seed) cells scored by the earlier report {runner.earlier_report})"
               if runner.earlier else "")
    lines = [f"study {spec.name}: {len(rows)} runs{earlier}: " + ", ".join(f"{n} {state}" for state, n in counts.items())]
    lines += [f"{s:{width[0]}}  {j:{width[1]}}  {r:{width[2]}}  {log}" for s, j, r, log in columns]
    return "\n".join(lines)


def report_from_store(spec: StudySpec, runner: RunnerOptions) -> str:
    """The report of what the store (and an earlier report) holds: all of it when every run is done; else a
    partial report of the seeds whose every cell is done, marked "partial: N of M runs done"."""
    cells = plan(spec)
    total = len(seed_order(cells))
    tasks = study_tasks(spec, runner)  # the runs the store must hold; an earlier report stands for the rest
    done = total - len(tasks) + sum(t.finished for t in tasks)
    scored = report_cells(cells, spec, runner)  # each cell's run in the store, or its earlier scores
    seeds = [s for s in spec.seeds if all(c.earlier is not None or c.task.finished for c in scored if c.seed == s)]
    if not seeds:
        raise StudyJobsFailed(f"nothing to report yet: {done} of {total} runs of study {spec.name} done, and "
                              "no seed has all its runs done; --status shows the runs")
    note = None
    if done < total:
        note = (f"partial: {done} of {total} runs done; this report holds seeds {seeds}, those whose every "
                f"run is done (of {spec.seeds}). Its verdicts are an interim look, not the study's: the declared "
                "analysis is on all its seeds")
        # A view of the declared study on its done seeds, not a new declaration: copied, not re-validated
        # (dataclasses.replace would refuse it by the file's min_seeds).
        spec = copy.copy(spec)
        spec.seeds = seeds
    results = [cell for cell in scored if cell.seed in seeds]
    earlier = earlier_note(results, runner)
    note = "; ".join(n for n in (note, earlier) if n) or None
    return write_report(spec, results, runner.output_dir, note)
