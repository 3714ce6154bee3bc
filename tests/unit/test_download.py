"""The 1X download command, with the hub client stubbed (no network in tests)."""
from pathlib import Path

import pytest

from genie.errors import ConfigError
from tests.conftest import run_script


def test_download_asks_the_hub_for_the_splits_and_checkpoints(tmp_path, monkeypatch):
    calls = []

    def fake(**kwargs):  # what the hub client leaves: the folders asked for, with their files
        calls.append(kwargs)
        for pattern in kwargs.get("allow_patterns", []):
            (Path(kwargs["local_dir"]) / pattern.rstrip("/*")).mkdir(parents=True)
            (Path(kwargs["local_dir"]) / pattern.rstrip("/*") / "metadata.json").write_text("{}")
        if kwargs["repo_type"] == "model":
            for name in ("config.json", "model.safetensors"):
                (Path(kwargs["local_dir"]) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(kwargs["local_dir"]) / name).write_text("{}")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    folders = run_script("download_1x", ["--version", "v1.1", "--models", "GENIE_35M", "--output_dir", str(tmp_path)])
    assert calls == [{"repo_id": "1x-technologies/worldmodel", "repo_type": "dataset", "local_dir": str(tmp_path),
                      "allow_patterns": ["train_v1.1/*", "val_v1.1/*"]},
                     {"repo_id": "1x-technologies/GENIE_35M", "repo_type": "model",
                      "local_dir": str(tmp_path / "GENIE_35M")}]
    assert folders == [tmp_path / "train_v1.1", tmp_path / "val_v1.1", tmp_path / "GENIE_35M"]


@pytest.mark.parametrize("argv, message", [(["--version", "v3"], "--version 'v3' must be one of v1.1, v2.0"),
                                           (["--models", "GENIE_1B"], "--models GENIE_1B: unknown"),
                                           ([], "nothing to download")])
def test_wrong_download_flags_are_one_line(argv, message, monkeypatch):
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda **kwargs: pytest.fail("downloaded"))
    with pytest.raises(ConfigError, match=message):
        run_script("download_1x", argv)
