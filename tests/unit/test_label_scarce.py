"""Label-scarce training and the study runner's design rules: segment subsets, withheld actions,
Holm's correction, run plans with controls, run identity, stride from the data, prose after overrides,
the curves picture's styles."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from genie.data import RawTokenDataset, write_token_dataset
from genie.data.subsets import SegmentSubset, WithoutActions, choose_segments, training_view
from genie.errors import ConfigError, DataFormatError
from genie.studies import load_study
from genie.studies import runs as study_runs
from genie.studies.runner import phases, plan
from genie.studies.runs import STAGE1, STAGE2, make_task
from genie.studies.spec import METRICS
from genie.studies.stats import holm


def _split(tmp_path, segment_lengths=(10, 12, 8, 10, 14), name="split", hz=30):
    ids = np.concatenate([np.full(n, 100 + k) for k, n in enumerate(segment_lengths)])
    tokens = np.arange(len(ids) * 4).reshape(-1, 2, 2) % 256
    actions = {"driving_command": np.ones((len(ids), 2), np.float32)}
    return write_token_dataset(tmp_path / name, tokens, ids, 256, hz=hz, actions=actions)


def test_a_segment_subset_keeps_whole_segments_chosen_by_seed(tmp_path):
    data = RawTokenDataset(_split(tmp_path), window_size=4, action_dims={"driving_command": 2})
    # segments of 10, 12, 8, 10, 14 frames hold 7, 9, 5, 7, 11 windows of 4 frames
    assert len(data) == 39 and list(np.unique(data.window_segments(), return_counts=True)[1]) == [7, 9, 5, 7, 11]
    subset = SegmentSubset(data, 0.4, seed=3)
    kept = subset.kept_segments
    assert len(kept) == 2 and len(subset) == sum({100: 7, 101: 9, 102: 5, 103: 7, 104: 11}[int(k)] for k in kept)
    assert set(data.window_segments()[subset.windows]) == set(kept)
    assert subset[0]["input_ids"].equal(data[int(subset.windows[0])]["input_ids"])
    record = subset.record()
    assert (record["segments"], record["of_segments"], record["windows"], record["of_windows"]) == (
        2, 5, len(subset), 39) and record["segment_ids"] == [int(k) for k in kept]
    assert SegmentSubset(data, 0.2, seed=3).kept_segments.size == 1
    with pytest.raises(ConfigError, match="--train_segment_fraction 0.01 keeps 0 of the 5 segments .* 1/5 = 0.2"):
        SegmentSubset(data, 0.01, seed=3)  # never silently one segment of a fraction that asks for none
    assert subset.data_dir == data.data_dir and subset.window_size == 4  # the split's attributes pass through


def test_segment_choices_are_nested_in_the_fraction_and_follow_the_seed():
    ids = np.arange(50)
    small, large = choose_segments(ids, 0.1, seed=7), choose_segments(ids, 0.5, seed=7)
    assert len(small) == 5 and len(large) == 25 and set(small) <= set(large)
    assert not np.array_equal(choose_segments(ids, 0.5, seed=8), large)
    assert np.array_equal(choose_segments(ids, 0.5, seed=7), large)


def test_withheld_actions_are_nan_no_action_rows_and_the_tokens_unchanged(tmp_path):
    data = RawTokenDataset(_split(tmp_path), window_size=4, action_dims={"driving_command": 2})
    view, record = training_view(data, 1.0, True, seed=0)
    assert isinstance(view, WithoutActions) and record == {"actions_withheld": True}
    assert float(data[5]["actions"].abs().sum()) == 8.0 and view[5]["actions"].shape == (4, 2)
    assert bool(view[5]["actions"].isnan().all())  # "no action", never a value such as the "stay" command 0
    assert view[5]["input_ids"].equal(data[5]["input_ids"])
    assert training_view(data, 1.0, False, seed=0) == (data, {})


def test_a_split_without_segment_ids_cannot_be_subset(tmp_path):
    folder = _split(tmp_path)
    (folder / "segment_ids.bin").unlink()
    data = RawTokenDataset(folder, window_size=4, filter_interrupts=False)
    with pytest.raises(DataFormatError, match="has no segment_ids.bin"):
        training_view(data, 0.5, False, seed=0)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> non-decreasing 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    adjusted = holm([0.02, float("nan")])
    assert adjusted[0] == 0.02 and math.isnan(adjusted[1])  # nan does not count towards m


def _label_scarce(tmp_path, **changes):
    study = {"name": "scarce", "title": "{stage1_steps} + {stage2_steps} steps, seeds {seeds}", "question": "q {x}",
             "genie_config": "configs/small.json", "seeds": [0, 1], "stage1_steps": 3, "stage2_steps": 4,
             "stage1_train_data_dir": "pool", "stage1_actions": False,
             "baseline": ["equal_total_steps", "equal_stage2_steps"], "controls": ["autoregressive_stage1"],
             "primary": {"metric": "changed_cross_entropy", "versus": "equal_total_steps"},
             "stage1": {"mask_schedule": "cosine"}, "grid": {"train_segment_fraction": [0.1, 0.5]}} | changes
    path = tmp_path / "scarce.json"
    path.write_text(json.dumps(study))
    return path


def test_a_label_scarce_plan_has_exactly_its_runs_with_their_data(tmp_path):
    spec = load_study(_label_scarce(tmp_path))
    cells = plan(spec)
    pretraining, scored = phases(cells)
    # per seed: one masked stage 1 and one autoregressive pretraining on the pool, shared by both
    # fractions; per fraction: the arm, stage 2 alone for 7 and for 4 steps, and the control
    assert len(pretraining) == 4 and len(scored) == 16 and len(cells) == 16
    assert sorted({arm.name for arm, _, _ in cells}) == sorted([
        "train_segment_fraction=0.1", "train_segment_fraction=0.5",
        "stage 2 only, 7 steps, train_segment_fraction=0.1", "stage 2 only, 4 steps, train_segment_fraction=0.1",
        "stage 2 only, 7 steps, train_segment_fraction=0.5", "stage 2 only, 4 steps, train_segment_fraction=0.5",
        "autoregressive stage 1, 3+4 steps, train_segment_fraction=0.1",
        "autoregressive stage 1, 3+4 steps, train_segment_fraction=0.5"])
    store = tmp_path / "store"
    for run in pretraining:  # the unlabelled pool, actions withheld, nothing scored
        task = make_task(run, spec, store)
        assert (task.args.train_data_dir, task.args.drop_actions, task.args.train_segment_fraction) == ("pool", True, 1.0)
        assert not task.evaluated and (run.stage == STAGE1) == (task.masking is not None)
    for arm, seed, run in cells:  # stage 2: the study's train split, the arm's fraction, with actions
        task = make_task(run, spec, store)
        assert (task.args.train_data_dir, task.args.drop_actions) == (None, False) and task.evaluated
        assert task.args.train_segment_fraction == dict(arm.stage2_data)["train_segment_fraction"]
        assert task.starts_from_stage2 == (arm.role == "control")
        if run.init is not None:
            assert task.init_weights.name == ("final_model" if run.init.stage == STAGE2 else "masked_pretrain_final")


def test_a_run_identity_names_the_device_torch_code_and_world(tmp_path, monkeypatch):
    monkeypatch.setattr(study_runs, "_device", lambda: "cpu")  # whatever machine runs the test
    spec = load_study(_label_scarce(tmp_path))
    run = plan(spec)[0][2]
    environment = run.identity(spec)["environment"]
    assert environment["device"] == "cpu" and environment["torch"] and len(environment["code"]) == 12
    assert environment["world"] is not None  # the built-in world: its version counts
    key = run.key(spec)
    monkeypatch.setattr(study_runs, "_device", lambda: "cuda:NVIDIA H100")
    assert run.key(spec) != key
    monkeypatch.setattr(study_runs, "code_version", lambda: "0123456789ab")
    monkeypatch.setattr(study_runs, "_device", lambda: "cpu")
    assert run.key(spec) != key
    monkeypatch.undo()
    monkeypatch.setattr(study_runs, "_device", lambda: "cpu")
    named = load_study(_label_scarce(tmp_path), {"device": "cuda:NVIDIA H100"})  # planned here, trained there
    assert run.identity(named)["environment"]["device"] == "cuda:NVIDIA H100" and run.key(named) != key


def test_the_study_stride_follows_the_data_rate(tmp_path):
    val = _split(tmp_path, name="val", hz=30)
    assert load_study(_label_scarce(tmp_path, val_data_dir=str(val), train_data_dir=str(val))).stride == 15  # 2 Hz
    assert load_study(_label_scarce(tmp_path, val_data_dir=str(val), train_data_dir=str(val), stride=1)).stride == 1
    assert load_study(_label_scarce(tmp_path)).stride == 1  # the built-in world is sampled at its own rate


def test_the_prose_follows_command_line_overrides(tmp_path):
    spec = load_study(_label_scarce(tmp_path), {"stage1_steps": 50, "seeds": [0, 1]})
    assert spec.title == "50 + 4 steps, seeds [0, 1]" and spec.question == "q {x}"  # unknown braces kept
    assert spec.overrides == {"stage1_steps": (3, 50)}  # seeds were not changed


@pytest.mark.parametrize("changes, message", [
    ({"primary": {"metric": "loss"}}, "primary {'metric': 'loss'} must be"),
    ({"primary": {"metric": "accuracy", "versus": "autoregressive_stage1"}, "controls": []}, "versus: one of"),
    ({"primary": {"metric": "accuracy", "vs": "x"}}, "must be {metric"),
    ({"controls": ["lr_restart"]}, "controls ['lr_restart'] must be a list of"),
    ({"baseline": ["equal_total_steps", "equal_total_steps"]}, "baseline ['equal_total_steps', 'equal_total_steps']"),
    ({"grid": {"train_segment_fraction": [0.0]}}, "train_segment_fraction 0.0 must be a number in (0, 1]"),
    ({"stage1_actions": "no"}, "stage1_actions 'no' must be true or false"),
])
def test_wrong_design_fields_are_one_line_errors(tmp_path, changes, message):
    with pytest.raises(ConfigError) as error:
        load_study(_label_scarce(tmp_path, **changes))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_primary_contrast_is_holm_corrected_across_arms(tmp_path):
    """Two arms, per-seed values made up: the report's p-values, Holm's and the verdicts by hand."""
    from scipy import stats

    from genie.studies.report import Cell, arm_rows

    spec = load_study(_label_scarce(tmp_path, seeds=[0, 1, 2], controls=[],
                                    primary={"metric": "cross_entropy", "versus": "equal_total_steps"}))
    cells = [Cell(arm, seed, None) for arm, seed, _ in plan(spec)]
    gaps = {"train_segment_fraction=0.1": [-0.30, -0.31, -0.32], "train_segment_fraction=0.5": [-0.01, 0.02, -0.02]}
    values = {}
    for cell in cells:
        gap = gaps.get(cell.arm.name, [0.0, 0.0, 0.0])[cell.seed]
        values[(cell.arm.name, cell.seed)] = {m: 0.5 for m, _, _ in METRICS} | {"cross_entropy": 1.0 + gap}
    rows = {r["arm"]: r for r in arm_rows(spec, cells, values)}
    strong, weak = rows["train_segment_fraction=0.1"], rows["train_segment_fraction=0.5"]
    p_strong = stats.ttest_rel([0.70, 0.69, 0.68], [1.0, 1.0, 1.0]).pvalue
    p_weak = stats.ttest_rel([0.99, 1.02, 0.98], [1.0, 1.0, 1.0]).pvalue
    assert (strong["p"], weak["p"]) == (pytest.approx(p_strong), pytest.approx(p_weak))
    assert (strong["p_holm"], weak["p_holm"]) == (pytest.approx(2 * p_strong), pytest.approx(max(p_weak, 2 * p_strong)))
    assert (strong["verdict"], weak["verdict"]) == ("helps", "no difference")
    assert rows["stage 2 only, 7 steps, train_segment_fraction=0.1"]["role"] == "baseline"


def test_the_summary_judges_each_arm_on_all_tokens_and_on_the_changed_tokens():
    """Known answers: an arm that beats every reference on all tokens but not the unigram's CE on the
    changed tokens has not learned their dynamics; one that also loses to copying is named for both."""
    from genie.studies.report import reference_failures, reference_lines

    reference = {"unigram_cross_entropy": 3.0, "unigram_accuracy": 0.2, "copy_previous_accuracy": 0.9,
                 "changed_unigram_cross_entropy": 3.6, "changed_unigram_accuracy": 0.08}
    good = {"arm": "good", "cross_entropy_mean": 0.5, "accuracy_mean": 0.93, "changed_cross_entropy_mean": 2.5,
            "changed_accuracy_mean": 0.5}
    static = good | {"arm": "static", "changed_cross_entropy_mean": 4.0}
    copier = static | {"arm": "copier", "accuracy_mean": 0.85}
    assert reference_failures(good, reference) == []
    assert reference_failures(static, reference) == ["the unigram's CE on the changed tokens"]
    assert reference_failures(copier, reference) == ["copying the previous frame's accuracy on all tokens",
                                                     "the unigram's CE on the changed tokens"]
    assert reference_lines([good], reference) == [
        "- Every arm beats all five references (where measured): the unigram (CE), the most frequent token and "
        "copying the previous frame (accuracy) on all tokens, and the unigram and the most frequent token on the "
        "tokens that change."]
    assert reference_lines([static, good, copier, static | {"arm": "static 2"}], reference) == [
        "- static, static 2: do NOT beat the unigram's CE on the changed tokens: they have not learned the dynamics "
        "of the tokens that change.",
        "- copier: does NOT beat copying the previous frame's accuracy on all tokens or the unigram's CE on the "
        "changed tokens: it has not learned the dynamics.",
        "- good: beats all five references (where measured)."]
    unmeasured = good | {"arm": "old run", "changed_cross_entropy_mean": float("nan"),
                         "changed_accuracy_mean": float("nan")}  # scored before the changed-token metrics existed
    assert reference_failures(unmeasured, reference) == []
    assert (reference_lines([good, unmeasured, copier], reference)[-1]
            == "- good, old run: beat all five references (where measured).")


def _curve_styles(study):
    from genie.studies.plots import curve_style

    spec = load_study(Path(__file__).parents[2] / "configs" / "studies" / f"{study}.yaml")
    arms = list({arm.name: arm for arm, _, _ in plan(spec)}.values())  # masked arms, baselines and controls
    return arms, {arm.name: curve_style(arm, arms) for arm in arms}


def test_every_curve_of_a_two_way_label_scarce_study_is_drawn_its_own_way():
    """In the curves picture of (i) on Breakout (two mask patterns at each of two label fractions) the colour
    is the fraction, the line style the role, and the marker of a masked arm its mask pattern."""
    arms, styles = _curve_styles("label_scarce_atari4")
    assert len(arms) == 10 and len({(s["color"], s["linestyle"], s["marker"]) for s in styles.values()}) == 10
    for arm in arms:
        style = styles[arm.name]
        assert style["color"] == {0.1: "C0", 1.0: "C1"}[dict(arm.stage2_data)["train_segment_fraction"]]
        shorter = arm.role == "baseline" and arm.stage2_steps == 3000  # S, beside S+ (4,000 steps)
        assert style["linestyle"] == ("-." if shorter else {"arm": "-", "baseline": "--", "control": ":"}[arm.role])
        if arm.role == "arm":
            assert style["marker"] == {"random": "o", "dynamics": "X"}[arm.stage1["mask_pattern"]]


def test_a_study_of_stage_1_variants_draws_each_arm_in_its_own_colour():
    """Where all arms train stage 2 on the same data (study (j)), each curve has its own colour, and the
    masked arms keep the one marker."""
    arms, styles = _curve_styles("schedules_steered3")
    assert len({s["color"] for s in styles.values()}) == len(arms) == 8
    assert {styles[arm.name]["marker"] for arm in arms if arm.role == "arm"} == {"o"}


def test_the_default_report_folder_is_never_the_committed_results(tmp_path, monkeypatch):
    from genie.studies import cli

    chosen = []
    monkeypatch.setattr(cli, "run_study", lambda spec, options: chosen.append(options.output_dir) or "")
    study = _label_scarce(tmp_path)
    for output_dir, expected in ((None, "runs/studies/scarce"), ("results/scarce", "results/scarce")):
        args = cli.AblateArguments(study=str(study), output_dir=output_dir)  # results/ only when named
        cli.run_ablation(args, args.load())
        assert str(chosen[-1]) == expected


def test_the_code_version_follows_the_code_that_decides_the_numbers(tmp_path, monkeypatch):
    import shutil

    import genie

    copy = tmp_path / "genie"
    shutil.copytree(Path(genie.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(genie, "__file__", str(copy / "__init__.py"))

    def version() -> str:
        study_runs.code_version.cache_clear()
        return study_runs.code_version()

    original = version()
    with (copy / "studies" / "plots.py").open("a") as f:  # the report's pictures: the runs stay valid
        f.write("\n# a comment\n")
    assert version() == original
    with (copy / "model" / "attention.py").open("a") as f:  # the model: every run is another run
        f.write("\n# a comment\n")
    assert version() != original
    changed = version()
    (copy / "newpart").mkdir()  # a subpackage nobody listed is hashed too
    (copy / "newpart" / "schedule.py").write_text("RATE = 0.5\n")
    assert version() != changed
    study_runs.code_version.cache_clear()


def test_the_code_version_hashes_every_module_but_the_runner_export_and_cli():
    import genie

    root = Path(genie.__file__).parent
    hashed = [p.relative_to(root) for p in study_runs.result_code_files(root)]
    assert {p.parts[0] for p in hashed} == {"checkpointing", "data", "decoding.py", "evaluation", "files.py", "masking",
                                           "model", "studies", "training"}
    assert [p.as_posix() for p in hashed if p.parts[0] == "studies"] == ["studies/runs.py"]
