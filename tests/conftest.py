import json
from pathlib import Path

import pytest
import torch

from genie.config import GenieConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "upstream_1xgpt"

TINY = dict(num_layers=2, num_heads=2, d_model=64, T=4, S=16, image_vocab_size=256, num_factored_vocabs=2,
            qk_norm=False, num_prompt_frames=2, action_dims={"driving_command": 2})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> GenieConfig:
    return GenieConfig(**TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Built-in world, 4x4 tokens per frame, 256-token vocabulary: (train_dir, val_dir)."""
    from genie.data.builtin import write_builtin_dataset

    root = tmp_path_factory.mktemp("builtin")
    return write_builtin_dataset(root, grid=4, vocab_size=256, train_frames=3000, val_frames=400, seed=0)


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path
