"""One home per setting: a config file's temporal_attention is a stage-1 setting, honoured by stage 1
(its flag overrides it) and reported as ignored by stage 2, which is always causal in time."""
import json

import pytest

import masked_pretrain
import train
from genie.errors import ConfigError
from genie.training import stages
from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective
from tests.conftest import TINY


def config_file(tmp_path, **fields) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY, **fields}))
    return str(path)


def test_stage1_honours_the_config_files_temporal_attention_and_the_flag_overrides_it(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(masked_pretrain, "run_masked_pretrain", lambda args, masking: seen.append(masking))
    causal = config_file(tmp_path, temporal_attention="causal")
    masked_pretrain.main(["--genie_config", causal])
    masked_pretrain.main(["--genie_config", causal, "--temporal_attention", "bidirectional"])
    masked_pretrain.main(["--genie_config", config_file(tmp_path)])
    assert [m.temporal_attention for m in seen] == ["causal", "bidirectional", "bidirectional"]
    config = stages.read_config_file(causal)[0]
    assert MaskedPretrainObjective(config, seen[0]).temporal_attention == "causal"  # what the trainer sets


@pytest.mark.parametrize("mode, ignored", [("bidirectional", {"temporal_attention": "bidirectional"}), ("causal", None)])
def test_stage2_reports_a_non_causal_temporal_attention_as_ignored(tmp_path, monkeypatch, capsys, mode, ignored):
    seen = []
    monkeypatch.setattr(stages, "run_training", lambda args, objective, model, run_info: seen.append(
        (objective, run_info)))
    train.main(["--genie_config", config_file(tmp_path, temporal_attention=mode)])
    objective, run_info = seen[0]
    assert objective.temporal_attention == AutoregressiveObjective.temporal_attention == "causal"
    assert run_info.get("ignored_config_fields") == ignored
    assert ("ignores the stage-1 field(s) ['temporal_attention']" in capsys.readouterr().out) == (ignored is not None)


def test_a_wrong_temporal_attention_in_a_config_file_is_refused_by_both_stages(tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "run_training", lambda *a, **k: pytest.fail("trained on a wrong config"))
    monkeypatch.setattr(masked_pretrain, "run_masked_pretrain", lambda *a: pytest.fail("trained on a wrong config"))
    for main in (masked_pretrain.main, train.main):
        with pytest.raises(ConfigError, match="--temporal_attention 'sideways' must be one of causal, bidirectional"):
            main(["--genie_config", config_file(tmp_path, temporal_attention="sideways")])
