import json
from pathlib import Path

import pytest

from genie.errors import ConfigError
from genie.model.config import GenieConfig
from tests.conftest import FIXTURE_DIR, TINY

# The reference repo's genie/configs/magvit_n32_h8_d256.json, field for field: the GENIE_35M size
# (32 layers of d_model 256; GENIE_138M is the same with d_model 512).
REFERENCE_MAGVIT_N32_H8_D256 = {"num_layers": 32, "num_heads": 8, "d_model": 256, "T": 16, "S": 256, "image_vocab_size": 262144,
                  "use_mup": False, "num_factored_vocabs": 2, "qkv_bias": False, "proj_bias": True, "attn_drop": 0.0,
                  "qk_norm": False, "mlp_ratio": 4.0, "mlp_drop": 0.0, "mlp_bias": True}


def test_reference_config_file_is_shipped_unchanged_and_loads():
    from tests.conftest import REPO_ROOT

    path = REPO_ROOT / "configs" / "magvit_n32_h8_d256.json"
    assert json.loads(path.read_text()) == REFERENCE_MAGVIT_N32_H8_D256
    config = GenieConfig.from_json_file(path)
    assert (config.num_layers, config.d_model, config.factored_vocab_size) == (32, 256, 512)
    assert config.mask_token_id == 262144 and config.h == 16


@pytest.mark.parametrize("name, millions", [("magvit_n32_h8_d256", 35), ("genie_35m", 35), ("genie_138m", 138)])
def test_config_sizes_are_the_published_model_sizes(name, millions):
    import torch

    from genie.model.stmaskgit import STMaskGIT
    from tests.conftest import REPO_ROOT

    with torch.device("meta"):  # count parameters without allocating them
        model = STMaskGIT(GenieConfig.from_json_file(REPO_ROOT / "configs" / f"{name}.json"))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == millions


def test_fixture_config_with_prompt_frames_beyond_T_loads():
    config = GenieConfig.from_json_file(FIXTURE_DIR / "checkpoint" / "config.json")
    assert config.num_prompt_frames == 8 and config.T == 4 and config.factored_vocab_size == 512


def test_json_round_trip(tmp_path, tiny_config):
    tiny_config.to_json_file(tmp_path / "c.json")
    assert GenieConfig.from_json_file(tmp_path / "c.json") == tiny_config


@pytest.mark.parametrize("change, field", [
    ({"S": 15}, "S"),
    ({"d_model": 30, "num_heads": 4}, "d_model"),
    ({"image_vocab_size": 300}, "image_vocab_size"),
    ({"factored_vocab_size": 17}, "factored_vocab_size"),
    ({"max_corrupt_rate": 1.5}, "max_corrupt_rate"),
    ({"non_mlm_ratio": -0.1}, "non_mlm_ratio"),
    ({"attn_drop": 2.0}, "attn_drop"),
    ({"temporal_attention": "sideways"}, "temporal_attention"),
    ({"use_mup": True}, "use_mup"),
    ({"num_layers": "2"}, "num_layers"),
    ({"qk_norm": 1}, "qk_norm"),
    ({"action_dims": {"driving_command": 0}}, "action_dims"),
])
def test_invalid_values_name_the_field(tmp_path, change, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**TINY, **change}))
    with pytest.raises(ConfigError) as info:
        GenieConfig.from_json_file(path)
    message = str(info.value)
    assert f"'{field}'" in message and str(path) in message and "\n" not in message


def test_unknown_and_missing_keys(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**TINY, "num_layer": 3}))
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['num_layer'\]"):
        GenieConfig.from_json_file(path)
    path.write_text(json.dumps({"num_heads": 2, "d_model": 32}))
    with pytest.raises(ConfigError, match="missing required config field"):
        GenieConfig.from_json_file(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        GenieConfig.from_json_file(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        GenieConfig.from_json_file(tmp_path / "x.json")


def test_shipped_configs_load():
    from tests.conftest import REPO_ROOT

    names = sorted(p.name for p in (REPO_ROOT / "configs").glob("*.json"))
    assert {"tiny.json", "genie_35m.json", "genie_138m.json"} <= set(names)
    for name in names:
        GenieConfig.from_json_file(REPO_ROOT / "configs" / name)


def test_fields_added_later_are_left_out_at_their_old_values_so_older_runs_resume():
    """A checkpoint's run fingerprint and a saved config.json hold no spatial_rope / action_placement unless
    they are set: runs and models written before those fields existed compare equal and still resume."""
    from genie.checkpointing.run_folder import check_resumable
    from genie.model.config import LATER_FIELDS

    plain = GenieConfig(**TINY)
    assert plain.without_later_defaults() == {k: v for k, v in plain.to_dict().items() if k not in LATER_FIELDS}
    older = {f"model.{k}": v for k, v in plain.to_dict().items() if k not in LATER_FIELDS}  # as written before
    now = {f"model.{k}": v for k, v in plain.without_later_defaults().items()}
    assert check_resumable(Path("step_1"), older, now) == []
    changed = plain.replace(spatial_rope=True, action_placement="previous").without_later_defaults()
    assert (changed["spatial_rope"], changed["action_placement"]) == (True, "previous")


def test_an_action_free_model_saves_no_action_placement_the_reference_would_refuse():
    """Where an action-free model's (absent) actions would go changes no logit, so its saved config stays
    loadable by the reference whatever the placement, and its export record matches either placement; a
    model with actions keeps the field."""
    free = GenieConfig(**{**TINY, "action_dims": {}}).replace(action_placement="previous")
    assert "action_placement" not in free.to_portable_dict() and "action_dims" not in free.to_portable_dict()
    steered = free.replace(action_dims={"driving_command": 2})
    assert steered.to_portable_dict()["action_placement"] == "previous"
    from genie.export.record import config_difference  # an export's record compares the same way
    assert config_difference(free.to_dict(), free.replace(action_placement="own")) is None
    assert "action_placement" in config_difference(steered.to_dict(), steered.replace(action_placement="own"))
