"""The training runs a study needs, each named by a hash of everything that determines its result,
so that arms of different studies that coincide (the stage-2-only baseline, a default stage-1 arm,
a stage-1 checkpoint shared by several stage-2 budgets) are trained once in a shared store."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import genie
from genie.files import RunLock
from genie.checkpointing.run_folder import is_run_folder
from genie.data.builtin import WORLD_VERSION
from genie.errors import RunStopped
from genie.evaluation.loop import evaluate_checkpoint
from genie.evaluation.report import write_eval_outputs
from genie.evaluation.scores import EvalOptions
from genie.studies.spec import Arm, StudySpec
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective
from genie.training.stages import HandOffArguments, run_autoregressive, run_masked_pretrain

# Stage names and final-model folders as the objectives define them (a run's identity includes the name).
STAGE1, STAGE2 = MaskedPretrainObjective.name, AutoregressiveObjective.name
STAGE1_FINAL, STAGE2_FINAL = MaskedPretrainObjective.final_model_dirname, AutoregressiveObjective.final_model_dirname


@dataclass(frozen=True)
class Run:
    """One training run: stage 1 with the given mask settings, or stage 2 (from `init`'s weights or
    from scratch) followed by its evaluation, unless it only pretrains another run (`scored` False)."""
    stage: str
    seed: int
    steps: int
    masking: tuple[tuple[str, Any], ...] | None = None
    init: Run | None = None
    data: tuple[tuple[str, Any], ...] = ()  # training-data flags set for this run (stage-1 pool, labelled fraction)
    scored: bool = True

    def identity(self, spec: StudySpec) -> dict[str, Any]:
        """Everything the run's result depends on: the model config by content, not by path, and the
        machine and code it runs on (the same settings differ by more than the effects studied between
        a CPU and a GPU, or across code versions)."""
        identity = {"stage": self.stage, "seed": self.seed, "steps": self.steps, "masking": self.masking,
                    "init": self.init.key(spec) if self.init else None,
                    "model": spec.model_config_values, "training": training_fields(spec, self.steps),
                    "data": [spec.train_data_dir, spec.val_data_dir, spec.stride], "environment": run_environment(spec)}
        if self.data:
            identity["run_data"] = dict(self.data)
        folders = [spec.train_data_dir, spec.val_data_dir, dict(self.data).get("train_data_dir")]
        if any(folders):  # the built-in data is named by its world's version (run_environment)
            identity["data_identity"] = {str(f): spec.data_identity(f) for f in dict.fromkeys(folders) if f}
        if self.stage == STAGE2:
            identity["eval"] = [spec.eval_batch_size, spec.eval_max_examples] if self.scored else None
        return identity

    def key(self, spec: StudySpec) -> str:
        digest = hashlib.sha1(json.dumps(self.identity(spec), sort_keys=True, default=str).encode()).hexdigest()
        return f"{'s1' if self.stage == STAGE1 else 's2'}-seed{self.seed}-{self.steps}steps-{digest[:10]}"

    @property
    def final_model(self) -> str:
        return STAGE1_FINAL if self.stage == STAGE1 else STAGE2_FINAL


def run_environment(spec: StudySpec) -> dict[str, Any]:
    """The device, torch, the genie code (a hash of its source) and, on the built-in data, the world's version."""
    builtin = not (spec.train_data_dir and spec.val_data_dir)
    return {"device": spec.device or _device(), "torch": torch.__version__, "code": code_version(),
            "world": WORLD_VERSION if builtin else None}


@functools.cache
def _device() -> str:
    return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


# How to continue a stopped study: the store keeps finished runs, a stopped run is trained again.
RESUME_HINT = "run the same command again to continue (finished runs are kept, a stopped one starts over)"
# Every .py under genie/ decides a run's numbers (a new module or subpackage too) except these top-level
# entries: the package's names, the command-line plumbing, the user-error texts, the typing protocols,
# ONNX export, and the study runner with its report and plots...
NOT_RESULT_CODE = ("__init__.py", "cli.py", "errors.py", "protocols.py", "export", "studies")
# ...of which a study run's warm-up rule and evaluation options do count.
RESULT_CODE_IN_STUDIES = ("studies/runs.py",)


def result_code_files(root: Path) -> list[Path]:
    """The source files under the package folder `root` that decide a run's numbers, sorted."""
    def decides(relative: Path) -> bool:
        return relative.parts[0] not in NOT_RESULT_CODE or relative.as_posix() in RESULT_CODE_IN_STUDIES

    return sorted(p for p in root.rglob("*.py") if decides(p.relative_to(root)))


@functools.cache
def code_version() -> str:
    """A hash of the source that decides a run's numbers: a run trained or scored by other code is
    another run, while a change to the runner or its plots keeps the store."""
    root = Path(genie.__file__).parent
    digest = hashlib.sha1()
    for path in result_code_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def stage1_run(settings: dict[str, Any], steps: int, seed: int, data: tuple[tuple[str, Any], ...] = ()) -> Run:
    masking = dataclasses.asdict(MaskedPretrainConfig(**settings))
    return Run(STAGE1, seed, steps, tuple(sorted(masking.items())), data=data)


def training_fields(spec: StudySpec, steps: int) -> dict[str, Any]:
    """The train.py flags of a run of `steps` steps: the study's, with warmup scaled to short runs."""
    return {"num_warmup_steps": min(20, steps // 10)} | spec.training_arguments()


def pretraining_run(arm: Arm, seed: int, spec: StudySpec) -> Run | None:
    """What an arm's stage 2 starts from: masked stage 1, autoregressive pretraining (a control), or nothing."""
    if arm.role == "baseline":
        return None
    if arm.role == "control":
        return Run(STAGE2, seed, arm.stage1_steps, data=spec.stage1_data, scored=False)
    return stage1_run(arm.stage1, arm.stage1_steps, seed, spec.stage1_data)


def cell_run(arm: Arm, seed: int, spec: StudySpec) -> Run:
    """The scored stage-2 run of an arm at a seed."""
    return Run(STAGE2, seed, arm.stage2_steps, init=pretraining_run(arm, seed, spec), data=arm.stage2_data)


@dataclass(frozen=True)
class RunTask:
    """A run, made concrete: its folder, its arguments, and where its log goes. Picklable, so a worker
    process can execute it."""
    run: Run
    folder: Path
    log: Path
    args: TrainingArguments
    masking: MaskedPretrainConfig | None
    init_weights: Path | None
    eval_batch_size: int
    eval_max_examples: int | None

    @property
    def starts_from_stage2(self) -> bool:
        """Stage 2 from another stage-2 run's weights (the autoregressive control)."""
        return self.run.init is not None and self.run.init.stage == STAGE2

    @property
    def trained(self) -> bool:
        return (self.folder / self.run.final_model / "model.safetensors").is_file()

    @property
    def eval_json(self) -> Path:
        return self.folder / "eval" / "eval.json"

    @property
    def evaluated(self) -> bool:
        return self.run.stage == STAGE2 and self.run.scored

    @property
    def finished(self) -> bool:
        return self.eval_json.is_file() if self.evaluated else self.trained


def make_task(run: Run, spec: StudySpec, store: Path) -> RunTask:
    folder = store / run.key(spec)
    args = TrainingArguments(**training_fields(spec, run.steps), genie_config=spec.genie_config, seed=run.seed,
                             max_train_steps=run.steps, output_dir=str(folder),
                             **({"train_data_dir": spec.train_data_dir} | dict(run.data)),
                             val_data_dir=spec.val_data_dir, stride=spec.stride)
    masking = MaskedPretrainConfig(**dict(run.masking)) if run.masking else None
    init = store / run.init.key(spec) / run.init.final_model if run.init else None
    return RunTask(run, folder, store / "logs" / f"{folder.name}.log", args, masking, init,
                   spec.eval_batch_size, spec.eval_max_examples)


def execute(task: RunTask, quiet: bool = False, resume: bool = False) -> float:
    """Train (unless already trained) and evaluate one run; returns its wall time in seconds. A folder
    left by a killed attempt is removed and the run starts over, or with `resume` continues from its
    newest step_N/. With `quiet`, output goes to the log."""
    start = time.perf_counter()
    task.log.parent.mkdir(parents=True, exist_ok=True)
    with open(task.log, "a") as log, contextlib.ExitStack() as stack:
        if quiet:
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        if not task.trained:
            args = attempt_arguments(task, resume)
            if task.run.stage == STAGE1:
                result = run_masked_pretrain(args, task.masking)
            else:
                hand_off = HandOffArguments(str(task.init_weights) if task.init_weights else None,
                                            allow_non_pretrain_checkpoint=task.starts_from_stage2)
                result = run_autoregressive(args, hand_off)
            if "stopped_by" in result:  # the trainer saved a checkpoint and returned: the run is not finished
                raise RunStopped(f"the study stopped on {result['stopped_by']} during {task.folder.name} (step "
                                 f"{result['step']}); {RESUME_HINT}")
        if task.evaluated:
            report = evaluate_checkpoint(task.folder / STAGE2_FINAL, task.args.train_data_dir,
                                         task.args.val_data_dir, EvalOptions(), task.eval_batch_size,
                                         task.eval_max_examples, task.args.stride, task.args.data_options())
            write_eval_outputs(report, task.eval_json.parent)
    return time.perf_counter() - start


def attempt_arguments(task: RunTask, resume: bool) -> TrainingArguments:
    """The run's arguments for this attempt. With `resume`, a run folder left by an earlier attempt
    continues from its newest step_N/ that verifies (the trainer's `--resume_from_checkpoint latest`;
    from step 0 when it has none); otherwise what it left is removed and the run starts over."""
    if resume and is_run_folder(task.folder):
        return dataclasses.replace(task.args, resume_from_checkpoint="latest")
    remove_unfinished(task.folder)
    return task.args


def remove_unfinished(folder: Path) -> None:
    """Remove what a killed attempt left, under the run's lock: a run another runner is still training
    is refused (RunFolderLockedError), never deleted. The trainer takes the lock again for itself."""
    if not folder.exists():
        return
    lock = RunLock(folder)
    lock.acquire()
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.release()


def commands(task: RunTask) -> list[str]:
    """The shell commands that do what `execute` does, for a cluster's scheduler."""
    train_flags = flags(task.args, TrainingArguments())
    if task.run.stage == STAGE1:
        # Every stage-1 field explicitly, so that stage-1 fields in the config file change nothing.
        every = dataclasses.fields(MaskedPretrainConfig)
        mask_flags = [f"--{f.name}={shlex.quote(str(getattr(task.masking, f.name)))}" for f in every]
        return [" ".join(["accelerate launch masked_pretrain.py", *train_flags, *mask_flags])]
    init = [f"--masked_pretrain_checkpoint {shlex.quote(str(task.init_weights))}"] if task.init_weights else []
    init += ["--allow_non_pretrain_checkpoint"] if task.starts_from_stage2 else []
    train = " ".join(["accelerate launch train.py", *train_flags, *init])
    if not task.evaluated:
        return [train]
    data = [f"--{name} {shlex.quote(str(getattr(task.args, name)))}" for name in ("train_data_dir", "val_data_dir")
            if getattr(task.args, name)]
    evaluate = ["python scripts/evaluate.py", f"--checkpoint_dir {shlex.quote(str(task.folder / STAGE2_FINAL))}",
                f"--output_dir {shlex.quote(str(task.eval_json.parent))}", f"--batch_size {task.eval_batch_size}",
                f"--stride {task.args.stride}", *data]
    if task.eval_max_examples:
        evaluate.append(f"--max_examples {task.eval_max_examples}")
    return [train, " ".join(evaluate)]


def flags(values: Any, defaults: Any) -> list[str]:
    """`--name=value` for each dataclass field whose value differs from the default."""
    out = []
    for f in dataclasses.fields(values):
        value = getattr(values, f.name)
        if value != getattr(defaults, f.name):
            out.append(f"--{f.name}={shlex.quote(str(value))}")
    return out
