"""A study's runs as submitit jobs: the job itself (train with resume, then evaluate; requeued on
preemption or timeout), and the record of which job runs which run (jobs.json in the study's report
folder), from which any later process tells a run's state."""
from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import submitit
from submitit.core.job_environment import JobEnvironment

from genie.errors import RunStopped
from genie.studies.runs import RunTask, execute
from genie.training.stop_request import StopRequest

CLUSTERS = ("slurm", "local")
JOBS_FILE = "jobs.json"
# SLURM's job states (sacct) by what they mean for a run that is not finished in the store.
SLURM_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "RESIZING", "SUSPENDED",
                "PREEMPTED"}  # PREEMPTED: submitit requeues it
SLURM_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}


class StudyJob(submitit.helpers.Checkpointable):
    """One run of a study as a submitit job: train it (from the newest step_N/ an earlier attempt left)
    and evaluate it. submitit's `checkpoint` hook (inherited) resubmits this same object, which resumes."""

    def __init__(self, task: RunTask):
        self.task = task

    def __call__(self) -> float:
        with PreemptionAsStop() as preemption:
            try:
                return execute(self.task, resume=True)
            except RunStopped:
                if preemption.requested:  # the trainer saved a step_N/ on the preemption signal: requeue
                    preemption.checkpoint_and_requeue()
                raise


class PreemptionAsStop:
    """Inside a submitit job, its preemption / timeout signal (USR2) asks a training run to stop after the
    current step with a step_N/ (the trainer's SIGTERM stop), and the job is requeued after that; outside
    training (loading, evaluating) submitit checkpoints and requeues at once. Elsewhere it does nothing."""

    def __enter__(self) -> "PreemptionAsStop":
        self.signal, self.requested = JobEnvironment._usr_sig(), False
        self.submitit_handler = signal.getsignal(self.signal)
        if callable(self.submitit_handler):
            signal.signal(self.signal, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        stop_handler = signal.getsignal(signal.SIGTERM)
        if isinstance(getattr(stop_handler, "__self__", None), StopRequest):  # a run is training
            self.requested = True
            stop_handler(signum, frame)  # as if SIGTERM: "received SIGUSR2: saved step_N ..."
        else:
            self.submitit_handler(signum, frame)

    def checkpoint_and_requeue(self) -> None:
        """submitit's handler: dumps `StudyJob.checkpoint()`'s resubmission, requeues and exits."""
        self.submitit_handler(self.signal, None)

    def __exit__(self, *exc) -> None:
        if callable(self.submitit_handler):
            signal.signal(self.signal, self.submitit_handler)


@dataclass(frozen=True)
class JobRecord:
    """Which job trains a run, on which cluster, and where its output goes."""
    job_id: str
    cluster: str
    folder: str  # submitit's folder pattern (with %j)
    stdout: str
    stderr: str


def job_record(job: submitit.Job, cluster: str, folder: Path) -> JobRecord:
    return JobRecord(str(job.job_id), cluster, str(folder), str(job.paths.stdout), str(job.paths.stderr))


def read_jobs(path: Path) -> dict[str, JobRecord]:
    """Run key -> its newest job, from jobs.json (empty when no job was submitted)."""
    if not path.is_file():
        return {}
    return {key: JobRecord(**record) for key, record in json.loads(path.read_text()).items()}


def write_jobs(path: Path, records: dict[str, JobRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({key: asdict(record) for key, record in records.items()}, indent=1) + "\n")
    os.replace(tmp, path)


def job_state(task: RunTask, record: JobRecord | None) -> str:
    """done (the store has the run), not submitted, queued, running, failed (its job ended without it) or,
    for a SLURM job that sacct does not know (just submitted, or long gone), unknown."""
    if task.finished:
        return "done"
    if record is None:
        return "not submitted"
    if record.cluster == "slurm":
        state = submitit.SlurmJob(record.folder, record.job_id).state.split(" ")[0]
        return ("queued" if state in SLURM_QUEUED else "running" if state in SLURM_RUNNING
                else "unknown" if state == "UNKNOWN" else "failed")
    return "running" if _process_alive(int(record.job_id)) else "failed"


def _process_alive(pid: int) -> bool:
    """Whether a local job's controller (its job id is its process id) still runs; a process that has
    exited but not been reaped yet by the process that started it counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the number
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): trust the signal test
        return True
