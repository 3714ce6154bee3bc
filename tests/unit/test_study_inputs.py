"""Study files that are wrong in the ways a careful or a hostile user finds: each is one short line
(exit 2 through the command line), and nothing is trained or written."""
import json
import subprocess
import sys

import pytest

from genie.errors import ConfigError
from genie.studies.spec import load_study
from tests.conftest import REPO_ROOT

STUDY = {"name": "tiny", "title": "tiny", "question": "q", "genie_config": "configs/small.json", "seeds": [0, 1],
         "stage1_steps": 3, "stage2_steps": 4, "stage1": {"initial_mask_ratio": 0.8, "final_mask_ratio": 0.1},
         "grid": {"mask_schedule": ["cosine", "exponential"]}}


def study_file(tmp_path, text=None, **changes):
    path = tmp_path / "study.yaml"
    path.write_text(text if text is not None else json.dumps(STUDY | changes))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"name": "../../outside"}, "name '../../outside' must be a plain folder name"),
    ({"name": "a/b"}, "must be a plain folder name"),
    ({"name": ".hidden"}, "must be a plain folder name"),
    ({"training": {"learning_rate": "fast"}}, "training.learning_rate 'fast' has the wrong type"),
    ({"training": {"per_device_train_batch_size": 2.5}}, "training.per_device_train_batch_size 2.5 has the wrong type"),
    ({"training": {"gradient_checkpointing": "yes"}}, "training.gradient_checkpointing 'yes' has the wrong type"),
    ({"eval_max_examples": 0}, "eval_max_examples 0 must be >= 1"),
    ({"stride": "15"}, "stride '15' has the wrong type"),
    ({"grid": {}, "arms": [{"name": "a", "stage1": {"mask_schedule": "linear"}},
                           {"name": "b", "stage1": {"mask_schedule": "linear"}}]},
     "arms 'a' and 'b' have identical settings, so they are one run"),
])
def test_a_wrong_study_file_is_one_line(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_study(study_file(tmp_path, **changes))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, "
                                                      f"*{chr(97 + i)}, *{chr(97 + i)}]" for i in range(9)]
    with pytest.raises(ConfigError) as info:
        load_study(study_file(tmp_path, text="\n".join(lines) + "\nname: x\n"))
    assert "aliases (*a) are not allowed in a study file" in str(info.value) and len(str(info.value)) < 300


def test_a_huge_value_gives_a_bounded_message(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_study(study_file(tmp_path, name="x" * 100_000 + "/"))
    assert len(str(info.value)) < 400


def test_a_folder_passed_as_the_study_is_named_as_a_folder(tmp_path):
    result = subprocess.run([sys.executable, "scripts/ablate.py", "--study", str(tmp_path)], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert f"--study {tmp_path} is a folder; pass a study file" in result.stderr


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "configs" / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_study_loads_and_declares_its_primary_contrast(path):
    """Each study file is valid, has >= 5 seeds (a pilot: 3, and the seed count of its full study), and
    states its primary contrast before it is run; a margin comes with >= 10 seeds."""
    spec = load_study(path)
    assert spec.name == path.stem and len(spec.seeds) >= (3 if spec.pilot else 5)
    assert spec.primary_metric == "changed_cross_entropy"
    assert spec.primary_versus in ("equal_total_steps", "equal_stage2_steps", "autoregressive_stage1")
    if spec.pilot:  # a pilot runs what its study will run, on fewer seeds (and may leave arms and comparators out)
        full = load_study(path.with_name(path.name.replace("_pilot", "")))
        same = ("min_seeds", "primary", "stage1_steps", "stage2_steps", "training", "stage1_actions", "genie_config",
                "eval_max_examples")
        assert {key: getattr(spec, key) for key in same} == {key: getattr(full, key) for key in same}
        full_arms = {arm.name: arm for arm in full.arm_list()}
        assert spec.arm_list() and all(full_arms.get(arm.name) == arm for arm in spec.arm_list())  # the study's
        assert set(spec.baselines) <= set(full.baselines) and set(spec.controls) <= set(full.controls)
        assert len(spec.seeds) < full.min_seeds


def test_eval_every_n_steps_replaces_only_the_cadence_and_is_recorded(tmp_path):
    from genie.studies.cli import AblateArguments

    path = study_file(tmp_path, training={"learning_rate": 0.003, "eval_every_n_steps": 50})
    spec = AblateArguments(study=str(path), eval_every_n_steps=5).load()
    assert spec.training == {"learning_rate": 0.003, "eval_every_n_steps": 5}
    assert spec.overrides["training.eval_every_n_steps"] == (50, 5)
    with pytest.raises(ConfigError, match="--eval_every_n_steps 0 must be >= 1"):
        AblateArguments(study=str(path), eval_every_n_steps=0)


def test_the_summary_never_calls_an_arm_behind_its_comparator_the_best(tmp_path):
    from genie.studies.report import summary_lines

    spec = load_study(study_file(tmp_path))
    metric = spec.primary_metric
    row = {"arm": "a", "baseline": "stage 2 alone", f"{metric}_mean": 3.0, f"{metric}_std": 0.1, "verdict": "hurts",
           f"{metric}_diff": 0.2, f"{metric}_diff_low": 0.1, f"{metric}_diff_high": 0.3, "p_holm": 0.01}
    comparator = {"arm": "stage 2 alone", "baseline": None, f"{metric}_mean": 2.8, f"{metric}_std": 0.1}
    behind = summary_lines(spec, [row, comparator], {})[0]
    assert behind.startswith("- No pretrained arm is ahead of its comparator on the primary metric; the least behind: **a**")
    ahead = summary_lines(spec, [row | {f"{metric}_diff": -0.2, "verdict": "helps"}, comparator], {})[0]
    assert ahead.startswith("- Best pretrained arm on the primary metric: **a**")
