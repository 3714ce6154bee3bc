import functools
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from genie.model.config import GenieConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "upstream_1xgpt"  # made with the reference code

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


def run_script(name: str, argv: list[str]):
    """Run the command scripts/<name>.py in this process: its `main(argv)`, returning what it returns and raising
    what it raises (genie.cli.run_cli turns a user error into exit 2 on the command line). The file is loaded by
    its path, not imported from a `scripts` package, and no child process pays torch's import on every call."""
    return _script_module(name).main(argv)


@functools.cache
def _script_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and the argument parser look the module up by name
    spec.loader.exec_module(module)
    return module


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


def assert_refused(name: str, main, argv: list[str], expected: str, root: Path, capsys, state=snapshot) -> None:
    """A bad-input case: one line containing `expected`, exit 2, and nothing under `root` written,
    changed or deleted (`state(root)` equal before and after). The line is printed for the record (pytest -s
    shows it)."""
    before = state(root)
    line = one_line_error(main, argv, capsys)
    with capsys.disabled():
        print(f"\n[{name}] {line}")
    assert expected in line, line
    assert state(root) == before


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


@pytest.fixture(scope="session")
def finished_runs(tiny_data, tiny_config_file, tmp_path_factory) -> Path:
    """A finished stage-1 run and a finished stage-2 run (2 steps, checkpoints at both), in <root>/stage1 and
    <root>/stage2; shared by the tests of several files, which work on copies."""
    import masked_pretrain
    import train

    root = tmp_path_factory.mktemp("runs")
    for main, name in ((masked_pretrain.main, "stage1"), (train.main, "stage2")):
        main(run_argv(tiny_config_file, tiny_data, root / name, max_train_steps=2, checkpointing_steps=1))
    return root


@pytest.fixture
def tiny_v2_config(tmp_path):
    """configs/cosmos_v2_tiny.json at the built-in world's 256 token ids (64,000-way logits would make
    these runs slow on a CPU; the vocabulary size is otherwise irrelevant to what is tested)."""
    def make(side=8):
        config = json.loads((REPO_ROOT / "configs" / "cosmos_v2_tiny.json").read_text())
        path = tmp_path / f"v2_{side}.json"
        path.write_text(json.dumps({**config, "S": side * side, "image_vocab_size": 256}))
        return str(path)
    return make


@pytest.fixture(scope="module")
def builtin_v2(tmp_path_factory):
    """The built-in world in the 1X v2.0 layout, 8x8 tokens: (sharded train_dir, flat val_dir)."""
    from genie.data.builtin import write_builtin_v2_dataset

    return write_builtin_v2_dataset(tmp_path_factory.mktemp("v2"), grid=8, vocab_size=256, shards=2,
                                    frames_per_shard=1500, val_frames=600)
