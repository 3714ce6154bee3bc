"""The command line of the study runner (scripts/ablate.py)."""
from __future__ import annotations

import dataclasses

import shlex

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genie.checkpointing.run_folder import check_output_folder
from genie.errors import ConfigError, check_flag
from genie.studies.earlier import read_earlier_report
from genie.studies.runner import RunnerOptions, emit_commands, plan, run_study
from genie.studies.jobs import CLUSTERS
from genie.studies.launchers import SubmititOptions, launch_study, report_from_store, status_table
from genie.studies.slurm_settings import DEFAULT_TIMEOUT_MIN, FLAG_SETTINGS
from genie.studies.spec import StudySpec, load_study

DEFAULT_REPORT_ROOT = "runs/studies"  # beside the run store; results/ only when --output_dir names it
LAUNCHERS = ("processes", "submitit")
OVERRIDABLE = ("seeds", "stage1_steps", "stage2_steps", "genie_config", "train_data_dir", "val_data_dir", "device")


@dataclass
class AblateArguments:
    study: str = field(metadata={"help": "Study file (YAML or JSON), e.g. configs/studies/schedules.yaml."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where the report goes. Default: runs/studies/<study name>/ (the committed results/ are written only "
                "when named here)."})
    store: str = field(default="runs/studies", metadata={"help": "Folder of the runs, shared between studies."})
    earlier_report: str | None = field(default=None, metadata={"help": (
        "The folder of an earlier report of this study (e.g. a partial one committed in results/<study name>/) whose "
        "cells count as done when the store lacks their runs (another machine, a wiped disk): they are not trained "
        "again and the report takes their scores from its runs.csv. Its runs must be those this code makes (their "
        "names hash the result code): continue from a worktree of the code that trained them.")})
    jobs: int = field(default=1, metadata={"help": "Runs at a time, each in its own process with cores/jobs threads."})
    emit_commands: bool = field(default=False, metadata={
        "help": "Print one shell command per unfinished run (accelerate launch ...) instead of running them."})
    seeds: str | None = field(default=None, metadata={"help": "Comma-separated seeds, replacing the file's."})
    stage1_steps: int | None = field(default=None, metadata={"help": "Replaces the file's stage-1 budget."})
    stage2_steps: int | None = field(default=None, metadata={"help": "Replaces the file's stage-2 budget."})
    eval_every_n_steps: int | None = field(default=None, metadata={
        "help": "Replaces the study's evaluation cadence (the points of curves.png), e.g. for a shrunk study."})
    genie_config: str | None = field(default=None, metadata={"help": "Replaces the file's model config."})
    train_data_dir: str | None = None
    val_data_dir: str | None = None
    device: str | None = field(default=None, metadata={
        "help": "The device the runs train on, as their identity names it (e.g. 'cuda:NVIDIA H100 80GB HBM3'), when "
                "it is not this machine's: with --emit_commands planned on a CPU node for GPU nodes, and for collecting."})

    launcher: str = field(default="processes", metadata={"choices": LAUNCHERS, "help": (
        "processes: the runs train on this machine, --jobs at a time; submitit: one job per run through "
        "submitit on --cluster (jobs in <store>/jobs/, their ids in <output_dir>/jobs.json).")})
    cluster: str = field(default="slurm", metadata={"choices": CLUSTERS, "help": (
        "With --launcher submitit: slurm (sbatch job arrays; a stage-2 run waits for its stage 1 with "
        "--dependency afterok) or local (jobs are processes of this machine).")})
    submit_only: bool = field(default=False, metadata={"help": (
        "With --launcher submitit: submit and return, instead of waiting for the jobs and writing the report.")})
    status: bool = field(default=False, metadata={"help": (
        "Print each run's state (done, queued, running, failed, not submitted), its job and its log; run nothing.")})
    report: bool = field(default=False, metadata={"help": (
        "Write the report from the runs that are done (marked partial unless all are); run nothing.")})
    partition: str | None = field(default=None, metadata={"help": (
        "SLURM partition. This and the flags below replace the study file's slurm: values.")})
    account: str | None = field(default=None, metadata={"help": "SLURM account."})
    qos: str | None = field(default=None, metadata={"help": "SLURM quality of service."})
    constraint: str | None = field(default=None, metadata={"help": "SLURM node constraint (features)."})
    gpus_per_node: int | None = field(default=None, metadata={"help": "GPUs per job."})
    cpus_per_task: int | None = field(default=None, metadata={"help": "CPU cores per job."})
    mem_gb: float | None = field(default=None, metadata={"help": "Memory per job in GB."})
    timeout_min: int | None = field(default=None, metadata={"help": (
        f"Wall-clock limit of a job in minutes; None: the study's slurm: value, else {DEFAULT_TIMEOUT_MIN}. At its "
        "end the job saves a step_N/ and is requeued.")})
    array_parallelism: int | None = field(default=None, metadata={"help": "At most this many jobs of an array at once."})
    max_num_timeout: int | None = field(default=None, metadata={"help": (
        "Requeues after a timeout before a job is given up; None: the study's slurm: value, else 3 (preemptions "
        "requeue without limit).")})

    def __post_init__(self) -> None:
        check_flag(self.jobs >= 1, "jobs", self.jobs, "must be >= 1")
        check_flag(self.eval_every_n_steps is None or self.eval_every_n_steps >= 1, "eval_every_n_steps",
                   self.eval_every_n_steps, "must be >= 1")
        check_output_folder(self.output_dir)
        check_output_folder(self.store, "store")

    def overrides(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in OVERRIDABLE}
        if self.seeds is not None:
            try:
                values["seeds"] = [int(s) for s in self.seeds.split(",") if s.strip()]
            except ValueError:
                raise ConfigError(f"--seeds {self.seeds!r} must be comma-separated integers") from None
        return values

    def submitit_options(self, spec: StudySpec) -> SubmititOptions:
        """The study file's slurm: settings with the flags given in their place."""
        settings = spec.slurm_settings.overridden({name: getattr(self, name) for name in FLAG_SETTINGS})
        return SubmititOptions(self.cluster, settings, wait=not self.submit_only,
                               poll_s=1.0 if self.cluster == "local" else 30.0)

    def load(self) -> StudySpec:
        spec = load_study(self.study, self.overrides())
        if self.eval_every_n_steps is None:
            return spec
        before = spec.training.get("eval_every_n_steps")
        return dataclasses.replace(spec, training={**spec.training, "eval_every_n_steps": self.eval_every_n_steps},
                                   overrides={**spec.overrides,
                                              "training.eval_every_n_steps": (before, self.eval_every_n_steps)})


def run_ablation(args: AblateArguments, spec: StudySpec) -> str:
    """Run the study (or print its commands); returns the report (or the commands)."""
    options = RunnerOptions(Path(args.output_dir or Path(DEFAULT_REPORT_ROOT) / spec.name), Path(args.store), args.jobs)
    if args.earlier_report:
        runs = {(arm.name, seed): run.key(spec) for arm, seed, run in plan(spec)}
        options.earlier_report = Path(args.earlier_report)
        options.earlier = read_earlier_report(options.earlier_report, runs)
    if args.status:
        return status_table(spec, options)
    if args.report:
        return report_from_store(spec, options)
    if args.launcher == "submitit":
        return launch_study(spec, options, args.submitit_options(spec))
    if not args.emit_commands:
        return run_study(spec, options)
    given = [f"--{name} {shlex.quote(str(getattr(args, name)))}" for name in OVERRIDABLE
             if getattr(args, name) is not None]
    earlier = [f"--earlier_report {shlex.quote(args.earlier_report)}"] if args.earlier_report else []
    collect = ["python", "scripts/ablate.py", f"--study {args.study}", f"--store {args.store}",
               f"--output_dir {options.output_dir}", *earlier, *given]
    return "\n".join(emit_commands(spec, options) + [" ".join(collect)])
