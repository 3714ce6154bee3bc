"""The order a study trains its runs in: seed by seed, each pretraining run before the runs that start from
it, so that a study stopped partway holds whole seeds (which pair in its partial report); and the time its
progress lines say is left."""
import json

from genie.studies.runner import Progress, next_ready, phases, plan, run_labels, seed_order
from genie.studies.runs import make_task
from genie.studies.spec import load_study

LABEL_SCARCE = {"name": "order", "title": "t", "question": "q", "genie_config": "configs/small.json",
                "seeds": [2, 0, 1], "stage1_steps": 3, "stage2_steps": 4, "stage1_actions": False,
                "stage1": {"mask_schedule": "cosine"}, "baseline": ["equal_total_steps", "equal_stage2_steps"],
                "controls": ["autoregressive_stage1"],
                "grid": {"train_segment_fraction": [0.1, 1.0], "mask_pattern": ["random", "dynamics"]}}


def study(tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps(LABEL_SCARCE))
    return load_study(path)


def test_seed_order_is_every_run_once_seed_by_seed_pretraining_first(tmp_path):
    spec = study(tmp_path)
    cells = plan(spec)
    order = seed_order(cells)
    assert len(order) == len(set(order)) and set(order) == {run for phase in phases(cells) for run in phase}
    # Per seed: 2 masked stage-1 runs + 1 autoregressive pretraining run, 4 masked arms + 3 comparators x 2 fractions.
    assert len(order) == 3 * (3 + 4 + 6)
    assert [run.seed for run in order] == [2] * 13 + [0] * 13 + [1] * 13  # the study file's seed order
    position = {run: i for i, run in enumerate(order)}
    assert all(position[run.init] < position[run] for run in order if run.init)


def test_next_ready_skips_runs_whose_pretraining_is_queued_or_running(tmp_path):
    spec = study(tmp_path)
    tasks = [make_task(run, spec, tmp_path / "store") for run in seed_order(plan(spec))]
    assert next_ready(tasks, set()) is tasks[0] and tasks[0].run.init is None
    first_seed = tasks[:13]
    pretraining = [t for t in first_seed if t.run in {u.run.init for u in first_seed}]
    assert len(pretraining) == 3
    # All three pretraining runs of the first seed are running: the next ready run starts from none of them.
    queue = [t for t in tasks if t not in pretraining]
    ready = next_ready(queue, {t.run for t in pretraining})
    assert ready is next(t for t in queue if t.run.init not in {p.run for p in pretraining})
    assert ready.run.init is None and ready.run.seed == 2  # a comparator trained from scratch, same seed
    # Only runs that wait: nothing is ready.
    waiting = [t for t in first_seed if t.run.init is not None]
    assert next_ready(waiting, {t.run for t in pretraining}) is None


def test_progress_estimates_the_time_left_from_finished_runs_seconds_per_step_and_the_jobs(tmp_path, capsys):
    spec = study(tmp_path)
    cells = plan(spec)
    tasks = [make_task(run, spec, tmp_path / "store") for run in seed_order(cells)]
    steps = sum(t.run.steps for t in tasks)
    # Per seed: 3 pretraining runs of 3 steps, 4 masked arms' stage 2 (4), and at each fraction S+ (3+4), S (4)
    # and the control's stage 2 (4).
    assert steps == 3 * (3 * 3 + 4 * 4 + 2 * (7 + 4 + 4))
    progress = Progress(tasks, run_labels(cells), jobs=2)
    assert progress.seconds_left() is None
    progress.finished(tasks[0], 30.0)  # a 3-step stage-1 run in 30 s: 10 s per step
    assert progress.seconds_left() == 10.0 * (steps - 3) / 2
    assert f"[1/{len(tasks)} runs, 3/{steps} steps" in capsys.readouterr().out
    progress.finished(tasks[1], 90.0)  # 120 s for 6 steps: 20 s per step
    assert progress.seconds_left() == 20.0 * (steps - 6) / 2
