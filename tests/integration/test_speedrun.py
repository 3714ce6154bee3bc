"""The time-to-dynamics benchmark (scripts/speedrun.py) at tiny size, and its arithmetic on known answers."""
import json

import pytest

from genie.errors import ConfigError
from genie.studies.speedrun import SpeedrunSettings, Variant, first_reached, run_speedrun, training_seconds

TARGETS = (("changed_accuracy", ">=", 0.5), ("changed_cross_entropy", "<=", 2.0))


def test_first_reached_is_the_first_scored_step_meeting_each_target():
    points = [{"step": 50, "changed_accuracy": 0.4, "changed_cross_entropy": 2.5},
              {"step": 100, "changed_accuracy": 0.55, "changed_cross_entropy": 2.1},
              {"step": 150, "changed_accuracy": 0.45, "changed_cross_entropy": 1.9},
              {"step": 200, "changed_accuracy": 0.6, "changed_cross_entropy": 1.8}]
    assert first_reached(points, TARGETS) == {"changed_accuracy >= 0.5": 100, "changed_cross_entropy <= 2": 150,
                                              "all": 200}
    assert first_reached(points[:2], TARGETS)["all"] is None
    below_unigram = (("changed_cross_entropy", "<=", "changed_unigram_cross_entropy"),)
    with_reference = [p | {"changed_unigram_cross_entropy": 2.0} for p in points]
    assert first_reached(with_reference, below_unigram)["changed_cross_entropy <= changed_unigram_cross_entropy"] == 150


def test_training_seconds_charge_stage_one_and_exclude_evaluation():
    timing = {"stages": {"v/stage1": {"s_per_step": 0.1}, "v/stage2": {"s_per_step": 0.2}}}
    assert training_seconds(Variant("", stage1_steps=30), "v", 50, timing) == pytest.approx(30 * 0.1 + 50 * 0.2)


def test_unknown_world_or_variant_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--world 'moon' is unknown"):
        SpeedrunSettings("moon", ["main_job"], [0], tmp_path).world_spec()
    with pytest.raises(ConfigError, match="needs --data_dir"):
        SpeedrunSettings("breakout", ["main_job"], [0], tmp_path).world_spec()
    with pytest.raises(ConfigError, match="'fast' is unknown"):
        SpeedrunSettings("builtin", ["fast"], [0], tmp_path).variant("fast")


def test_a_tiny_speedrun_trains_scores_times_and_reports(tiny_data, tiny_config_file, tmp_path):
    settings = SpeedrunSettings("builtin", ["main_job", "muon"], [0, 1], tmp_path / "out", data_dir=str(tiny_data[0].parent),
                                genie_config=str(tiny_config_file), eval_every=2, eval_windows=8, steps=4,
                                timing_steps=1, timing_rounds=2)
    table = run_speedrun(settings)
    records = [json.loads(line) for line in (tmp_path / "out" / "speedrun.jsonl").read_text().splitlines()]
    evals = [(r["variant"], r["seed"], r["step"]) for r in records if r["kind"] == "eval"]
    assert evals == [(v, s, step) for v in ("main_job", "muon") for s in (0, 1) for step in (2, 4)]
    assert all(r["num_windows"] == 8 and r["eval_seconds"] > 0 for r in records if r["kind"] == "eval")
    timing = next(r for r in records if r["kind"] == "timing")
    assert sorted(timing["stages"]) == ["main_job/stage1", "main_job/stage2", "muon/stage2"]
    summaries = {r["variant"]: r for r in records if r["kind"] == "summary"}
    assert summaries["main_job"]["final_step"] == 4 and summaries["main_job"]["seeds"] == [0, 1]
    assert "| muon | changed_accuracy >= 0.65 |" in table and (tmp_path / "out" / "speedrun.png").is_file()
    # a rerun trains and scores nothing again: same scores
    before = (tmp_path / "out" / "runs").stat().st_mtime_ns
    run_speedrun(settings)
    evals_again = [json.loads(x) for x in (tmp_path / "out" / "speedrun.jsonl").read_text().splitlines()]
    assert [r for r in evals_again if r["kind"] == "eval"] == [r for r in records if r["kind"] == "eval"]
    summaries_again = {r["variant"]: r for r in evals_again if r["kind"] == "summary"}
    for name, summary in summaries.items():  # steps to targets and final scores are exact; seconds are timed anew
        assert summaries_again[name]["per_seed"] == summary["per_seed"]
        assert summaries_again[name]["final_cross_entropy"] == summary["final_cross_entropy"]
    assert (tmp_path / "out" / "runs").stat().st_mtime_ns == before


def test_bad_speedrun_flags_are_one_line(capsys):
    from tests.conftest import one_line_error, run_script

    for argv, expected in ((["--seeds", "0,x"], "--seeds '0,x' must be comma-separated integers"),
                           (["--seeds", "1,1"], "must list distinct seeds"),
                           (["--eval_every", "0"], "--eval_every 0 must be >= 1"),
                           (["--world", "mars"], "--world 'mars' is unknown")):
        line = one_line_error(lambda a: run_script("speedrun", a), argv, capsys)
        assert expected in line, line
