"""The speedrun's tracks and variants: what each trains on, and run folders that keep their names."""
from pathlib import Path

import pytest

from genie.errors import ConfigError
from genie.studies.speedrun import SpeedrunSettings, run_key, training_arguments


def settings(world: str, variants=("short_muon",), **kwargs) -> SpeedrunSettings:
    return SpeedrunSettings(world=world, variants=list(variants), seeds=[0], output_dir=Path("unused"), **kwargs)


def test_a_run_folder_is_named_by_its_recipe_and_the_code_that_trains_it(monkeypatch):
    """Finished runs are reused only by the same code: a fix to training (e.g. Muon's schedule) retrains."""
    import genie.studies.speedrun as speedrun

    s = settings("builtin")
    key = run_key(s.world_spec(), s.variant("short_muon"), 0, s)
    assert key == run_key(s.world_spec(), s.variant("short_muon"), 0, s) != run_key(s.world_spec(),
                                                                                     s.variant("short_muon"), 1, s)
    monkeypatch.setattr(speedrun, "code_version", lambda: "other code")
    assert run_key(s.world_spec(), s.variant("short_muon"), 0, s) != key


def test_the_steered_track_trains_on_the_steered_world_and_rope_variants_on_their_config(tmp_path):
    s = settings("steered", ("short_muon", "short_muon_rope"))
    track = s.world_spec()
    plain = training_arguments(track, s.variant("short_muon"), 0, tmp_path, stage1=False, checkpoint_every=50)
    rope = training_arguments(track, s.variant("short_muon_rope"), 0, tmp_path, stage1=False, checkpoint_every=50)
    assert (plain.builtin_world, plain.genie_config) == ("steered", "configs/small.json")
    assert (rope.builtin_world, rope.genie_config, rope.optimizer) == ("steered", "configs/small_rope.json", "muon")
    keys = {run_key(track, s.variant(v), 0, s) for v in ("short_muon", "short_muon_rope")}
    builtin = settings("builtin")
    assert len(keys | {run_key(builtin.world_spec(), builtin.variant("short_muon"), 0, builtin)}) == 3


def test_only_recorded_tracks_need_a_data_dir():
    settings("steered").world_spec()  # built-in: no --data_dir
    with pytest.raises(ConfigError, match="--world breakout needs --data_dir"):
        settings("breakout").world_spec()


def test_each_sweep_point_changes_one_setting_of_short_muon_and_keeps_its_training_windows(tmp_path):
    from genie.studies.speedrun import windows_per_step
    from genie.studies.speedrun_recipes import SHORT_MUON_SWEEP

    s = settings("builtin")
    base = s.variant("short_muon")
    base_flags = vars(training_arguments(s.world_spec(), base, 0, tmp_path, stage1=False, checkpoint_every=50))
    assert len(SHORT_MUON_SWEEP) == 10
    for name in SHORT_MUON_SWEEP:
        point = s.variant(f"short_muon_{name}")
        flags = vars(training_arguments(s.world_spec(), point, 0, tmp_path, stage1=False, checkpoint_every=50))
        changed = {k for k in flags if flags[k] != base_flags[k]} - {"max_train_steps", "checkpointing_steps",
                                                                      "log_every_n_steps"}
        assert len(changed) == 1, (name, changed)
        assert point.steps * windows_per_step(point) == base.steps * windows_per_step(base) == 4800
    assert s.variant("short_muon_batch8").steps == 600 and s.variant("short_muon_lr0.04").stage2 == {
        "optimizer": "muon", "muon_learning_rate": 0.04}


def test_steps_scale_every_variant_in_proportion_to_the_main_job():
    s = settings("builtin", steps=2000)  # Breakout's 500 + 2,000 steps
    assert (s.variant("main_job").stage1_steps, s.variant("main_job").steps) == (500, 2000)
    assert s.variant("muon").steps == 2000 and s.variant("short_muon").steps == 750
    assert s.variant("muon_batch8").steps == 4000  # batch 8: the Atari job's 32,000 windows
    for name, stages in (("main_job_muon_batch8", (500, 1500)), ("main_job_muon_batch8_windows", (500, 4000))):
        assert (s.variant(name).stage1_steps, s.variant(name).steps) == stages
    tiny = settings("builtin", steps=4)
    assert (tiny.variant("main_job").stage1_steps, tiny.variant("short").steps) == (1, 2)


def test_training_windows_count_stage_1_at_its_own_batch():
    from genie.studies.speedrun import training_windows

    s = settings("builtin")
    assert training_windows(s.variant("main_job"), 400) == 200 * 16 + 400 * 16
    assert training_windows(s.variant("main_job_muon_batch8"), 400) == 200 * 16 + 400 * 8
    assert training_windows(s.variant("short_muon_batch8"), 400) == 400 * 8
