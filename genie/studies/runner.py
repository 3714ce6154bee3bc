"""Run a study: plan its runs, train what is not finished yet (in this process or in parallel worker
processes), print progress, then write the report. A rerun skips finished runs."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genie.errors import RunStopped, UserError
from genie.studies.earlier import EarlierCell
from genie.studies.report import Cell, write_report
from genie.studies.runs import RESUME_HINT, STAGE1, Run, RunTask, cell_run, commands, execute, make_task
from genie.studies.spec import Arm, StudySpec


@dataclass
class RunnerOptions:
    output_dir: Path
    store: Path
    jobs: int = 1
    # Cells an earlier report scored (genie/studies/earlier.py): not trained again, reported from it.
    earlier: dict[tuple[str, int], EarlierCell] = field(default_factory=dict)
    earlier_report: Path | None = None  # where `earlier` was read


def plan(spec: StudySpec) -> list[tuple[Arm, int, Run]]:
    """(arm, seed, its scored stage-2 run) for every arm, then every baseline and control, and seed."""
    arms = spec.arm_list()
    comparators = {c.name: c for arm in arms for c in spec.comparators(arm).values()}
    return [(arm, seed, cell_run(arm, seed, spec)) for arm in arms + list(comparators.values()) for seed in spec.seeds]


def to_train(cells: list[tuple[Arm, int, Run]], options: RunnerOptions) -> list[tuple[Arm, int, Run]]:
    """The cells whose runs the store must hold: those no earlier report scored."""
    return [cell for cell in cells if (cell[0].name, cell[1]) not in options.earlier]


def report_cells(cells: list[tuple[Arm, int, Run]], spec: StudySpec, options: RunnerOptions) -> list[Cell]:
    """Each cell with its run in the store, or with the earlier report's scores where the store lacks it."""
    tasks = [make_task(run, spec, options.store) for _, _, run in cells]
    return [Cell(arm, seed, task, None if task.finished else options.earlier.get((arm.name, seed)))
            for (arm, seed, _), task in zip(cells, tasks)]


def earlier_note(cells: list[Cell], options: RunnerOptions) -> str | None:
    """What a report says of the cells it took from an earlier report, if any."""
    taken = sorted({c.seed for c in cells if c.earlier is not None})
    if not taken:
        return None
    return (f"{sum(c.earlier is not None for c in cells)} of these {len(cells)} (arm, seed) cells, at seeds {taken}, "
            f"are scored as an earlier report of this study scored them ({options.earlier_report}): runs of the same "
            "names (result code, design, device kind, torch; not the CPU model), which this report's store does not "
            "hold")


def phases(cells: list[tuple[Arm, int, Run]]) -> list[list[Run]]:
    """Pretraining runs first (stage 2 needs their weights), then the scored runs; each run once."""
    stage1 = list(dict.fromkeys(run.init for _, _, run in cells if run.init))
    stage2 = list(dict.fromkeys(run for _, _, run in cells))
    return [stage1, stage2]


def seed_order(cells: list[tuple[Arm, int, Run]]) -> list[Run]:
    """Every run once, seed by seed: a seed's pretraining runs, then its scored runs. A study stopped
    partway (a session's end, a quota) then holds whole seeds, which pair in its partial report, where
    an arm-by-arm order would leave whole arms and no comparator to pair them with."""
    runs: list[Run] = []
    for seed in dict.fromkeys(seed for _, seed, _ in cells):
        scored = [run for _, s, run in cells if s == seed]
        runs += [run.init for run in scored if run.init] + scored
    return list(dict.fromkeys(runs))


def next_ready(queue: list[RunTask], busy: set[Run]) -> RunTask | None:
    """The first queued run whose pretraining is neither queued nor running (so it is finished); None if
    every queued run still waits for one."""
    waiting = busy | {task.run for task in queue}
    return next((task for task in queue if task.run.init not in waiting), None)


class Progress:
    """One line per started and finished run: how many runs and steps are done, time spent and left."""

    def __init__(self, tasks: list[RunTask], labels: dict[Run, str], jobs: int = 1):
        self.total_runs, self.total_steps = len(tasks), sum(t.run.steps for t in tasks)
        self.done_runs = self.done_steps = 0
        self.run_seconds = 0.0  # summed over finished runs
        self.labels, self.start, self.jobs = labels, time.perf_counter(), jobs

    def seconds_left(self) -> float | None:
        """The steps left at the finished runs' seconds per step, `jobs` at a time. (Wall time over
        finished steps would count the time of the runs still in flight and overstate it about `jobs`-fold
        at first.)"""
        if not self.done_steps:
            return None
        return self.run_seconds / self.done_steps * (self.total_steps - self.done_steps) / self.jobs

    def line(self, verb: str, task: RunTask, seconds: float | None = None) -> None:
        elapsed, seconds_left = time.perf_counter() - self.start, self.seconds_left()
        left = f", ~{_minutes(seconds_left)} left" if seconds_left is not None else ""
        took = f" in {seconds:.0f} s" if seconds is not None else ""
        print(f"[{self.done_runs}/{self.total_runs} runs, {self.done_steps}/{self.total_steps} steps, "
              f"{_minutes(elapsed)} elapsed{left}] {verb} {self.labels[task.run]}{took}", flush=True)

    def finished(self, task: RunTask, seconds: float) -> None:
        self.done_runs += 1
        self.done_steps += task.run.steps
        self.run_seconds += seconds
        self.line("finished", task, seconds)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def run_labels(cells: list[tuple[Arm, int, Run]]) -> dict[Run, str]:
    labels: dict[Run, str] = {}
    for arm, seed, run in cells:
        if run.init:
            what = "stage 1" if run.init.stage == STAGE1 else "autoregressive pretraining"
            labels.setdefault(run.init, f"{arm.name!r} seed {seed}: {what} ({run.init.steps} steps)")
        origin = ("from scratch" if not run.init else "from stage 1" if run.init.stage == STAGE1
                  else "from its autoregressive pretraining")
        labels.setdefault(run, f"{arm.name!r} seed {seed}: stage 2 {origin} ({run.steps} steps) + eval")
    return labels


def run_study(spec: StudySpec, options: RunnerOptions) -> str:
    """Train every unfinished run, seed by seed, then write and return the report."""
    cells = plan(spec)
    trained = to_train(cells, options)
    tasks = [make_task(run, spec, options.store) for run in seed_order(trained)]
    pending = [task for task in tasks if not task.finished]
    earlier = (f"{len(cells) - len(trained)} scored by the earlier report {options.earlier_report}, "
               if options.earlier else "")
    print(f"study {spec.name}: {len(cells)} (arm, seed) cells, {earlier}{len(tasks)} runs, {len(tasks) - len(pending)} "
          f"already finished (store {options.store}), {options.jobs} at a time, seed by seed", flush=True)
    progress = Progress(pending, run_labels(cells), options.jobs)
    if options.jobs == 1:
        for task in pending:  # seed_order puts each pretraining run before the runs that start from it
            progress.line("started", task)
            progress.finished(task, execute(task))
    else:
        _run_parallel(pending, options.jobs, progress)
    results = report_cells(cells, spec, options)
    return write_report(spec, results, options.output_dir, earlier_note(results, options))


def _run_parallel(tasks: list[RunTask], jobs: int, progress: Progress) -> None:
    """Each run in a fresh process (Accelerate's state and torch's threads are per process), the CPU
    cores split between them, a run started once its pretraining has finished; the first failure stops the
    study after the runs in flight. SIGTERM to the study stops it too: it is passed on to the workers,
    whose runs stop as a run of `--jobs 1` does."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    # The stop handler is the outer context, so that it still forwards while the pool waits for its runs.
    with _ForwardedStop() as stop, ProcessPoolExecutor(jobs, context, initializer=start_worker,
                                                       initargs=(threads, os.getpid()), max_tasks_per_child=1) as pool:
        stop.pool = pool
        queue, running = list(tasks), {}
        while queue or running:
            while len(running) < jobs and not stop.signal_name:
                task = next_ready(queue, {t.run for t in running.values()})
                if task is None:
                    break
                queue.remove(task)
                progress.line("started", task)
                running[pool.submit(execute, task, True)] = task
            if stop.signal_name and not running:
                break
            if queue and not running:  # unreachable in seed_order: each pretraining run is queued first
                raise RuntimeError(f"{len(queue)} run(s) wait for pretraining that is not queued")
            done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            stop.forward()  # to workers the pool started after the signal
            for future in done:
                task = running.pop(future)
                error = future.exception()
                if error is not None and stop.signal_name:  # stopped with a checkpoint, or killed by the signal
                    queue.clear()
                    stop.stopped.append(progress.labels[task.run])
                elif error is not None:
                    queue.clear()
                    message = f"{progress.labels[task.run]} failed: {error}; its log: {task.log}"
                    if isinstance(error, UserError):  # a wrong input: one line, as in one process
                        raise type(error)(message) from None
                    raise RuntimeError(message) from error
                else:
                    progress.finished(task, future.result())
        if stop.signal_name:  # also when the runs in flight finished before they saw it: no next run
            raise stop.error()


PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when the thread that started it ends


def start_worker(threads: int, runner_pid: int) -> None:
    """A study worker's set-up: its share of the CPU threads, and death with its runner. On Linux the kernel
    sends it SIGTERM when the runner dies, SIGKILL included (prctl PR_SET_PDEATHSIG): a run that is training
    saves a checkpoint and stops, a worker doing anything else dies at once. Elsewhere a thread watches the
    runner. A runner already gone before this ran is seen by its process id."""
    torch.set_num_threads(threads)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        linux = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl (macOS, Windows)
        linux = False
    if not linux:
        threading.Thread(target=_watch_runner, args=(runner_pid,), daemon=True).start()
    if os.getppid() != runner_pid:  # the runner died before the death signal was set
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_runner(runner_pid: int, period_s: float = 1.0) -> None:
    while os.getppid() == runner_pid:
        time.sleep(period_s)
    os.kill(os.getpid(), signal.SIGTERM)


class _ForwardedStop:
    """While a study's workers run, SIGTERM to the study is sent on to each of them, also to a worker the
    pool starts afterwards: a run that is training saves a checkpoint and stops (genie/training/
    stop_request.py); a worker that is starting, idle or evaluating dies of it, which breaks the pool
    and ends the other runs the same way. Without this the study process died alone and its workers,
    orphaned, trained on."""

    def __init__(self):
        self.pool: ProcessPoolExecutor | None = None
        self.signal_name: str | None = None
        self.signalled: set[int] = set()
        self.stopped: list[str] = []

    def __enter__(self) -> "_ForwardedStop":
        self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        self.forward()

    def forward(self) -> None:
        if not self.signal_name or self.pool is None:
            return
        for pid in set(self.pool._processes or {}) - self.signalled:  # the pool's workers (no public accessor)
            self.signalled.add(pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:  # it just exited
                pass

    def error(self) -> RunStopped:
        during = f" during {', '.join(self.stopped)}" if self.stopped else ""
        return RunStopped(f"the study stopped on {self.signal_name}{during}; {RESUME_HINT}")

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self.previous)


def emit_commands(spec: StudySpec, options: RunnerOptions) -> list[str]:
    """The unfinished runs as shell commands, one line per run, phase by phase, ready for a scheduler;
    a last line collects the results once all have finished."""
    cells = to_train(plan(spec), options)
    lines = []
    for number, phase in enumerate(phases(cells), start=1):
        tasks = [t for t in (make_task(run, spec, options.store) for run in phase) if not t.finished]
        lines.append(f"# phase {number}: {len(tasks)} independent run(s)"
                     + (" (after phase 1: they start from its weights)" if number == 2 else ""))
        lines += [" && ".join(commands(task)) for task in tasks]
    lines.append("# then collect the results (every run above is skipped as finished):")
    return lines
