import json
import re
from pathlib import Path

import pytest
import torch

from genie.model.config import GenieConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "upstream_1xgpt"

TINY = dict(num_layers=2, num_heads=2, d_model=64, T=4, S=16, image_vocab_size=256, num_factored_vocabs=2,
            qk_norm=False, num_prompt_frames=2, action_dims={"driving_command": 2})


def run_argv(config_file, data, out=None, *extra: str, **flags) -> list[str]:
    """The command line of a small training run (train.py or masked_pretrain.py) on `data` = (train_dir,
    val_dir): 4 windows a batch and one validation batch unless `flags` say otherwise; `extra` flags
    are appended as given. The one argument builder of the tests."""
    values = {"genie_config": config_file, "train_data_dir": data[0], "val_data_dir": data[1], "output_dir": out,
              "per_device_train_batch_size": 4, "max_eval_steps": 1, **flags}
    return [item for name, value in values.items() if value is not None for item in (f"--{name}", str(value))] + [
        *extra]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` with its size and modification time: equal before and after
    means nothing was written, changed or deleted."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def one_line_error(main, argv: list[str], capsys) -> str:
    """Run a command's `main` as its command line does (genie.cli.run_cli): it must exit with code 2 and
    print exactly one line on stderr (progress bars aside), `error: ...`; returns that line."""
    from genie.cli import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: main(argv))
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    err = [line for line in lines if line.strip() and not re.search(r"\d+%\|", line)]
    assert info.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def assert_refused(name: str, main, argv: list[str], expected: str, root: Path, capsys) -> None:
    """A bad-input case: one line containing `expected`, exit 2, and nothing under `root` written,
    changed or deleted. The line is printed for the record (pytest -s shows it)."""
    before = snapshot(root)
    line = one_line_error(main, argv, capsys)
    with capsys.disabled():
        print(f"\n[{name}] {line}")
    assert expected in line, line
    assert snapshot(root) == before


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
