"""Recorded Atari data through the real entry points: scripts/record_atari.py, train.py (2 steps),
scripts/evaluate.py with PSNR, scripts/generate.py pictures; a held-out game; bad input."""
import json

import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("sklearn")

import train  # noqa: E402
from genie.cli import run_cli  # noqa: E402
from genie.data.atari import ACTION_STREAM, NUM_ALE_ACTIONS  # noqa: E402
from tests.conftest import run_argv, run_script  # noqa: E402

CONFIG = dict(num_layers=1, num_heads=2, d_model=32, T=4, S=64, image_vocab_size=256, num_factored_vocabs=2,
              qk_norm=False, num_prompt_frames=2, action_dims={ACTION_STREAM: NUM_ALE_ACTIONS})


def record(out, env_id="ALE/Breakout-v5", *extra):
    return run_script("record_atari", ["--env_id", env_id, "--num_frames", "360", "--output_dir", str(out), "--seed",
                                       "1", "--val_fraction", "0.25", "--max_episode_frames", "90", "--vocab_size",
                                       "256", "--window_size", "4", *extra])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return record(tmp_path_factory.mktemp("atari") / "breakout")


def test_train_evaluate_and_generate_on_recorded_data_with_no_extra_flags(recorded, tmp_path):
    config = tmp_path / "atari_tiny.json"
    config.write_text(json.dumps(CONFIG))
    train.main(run_argv(config, recorded, tmp_path / "run", max_train_steps=2, checkpointing_steps=100))
    model = tmp_path / "run" / "final_model"
    report = run_script("evaluate", ["--checkpoint_dir", str(model), "--train_data_dir", str(recorded[0]),
                                     "--val_data_dir", str(recorded[1]), "--stride", "1", "--max_examples", "4",
                                     "--output_dir", str(tmp_path / "eval")])
    psnr = report["rollout"]["psnr_per_horizon"] + report["rollout"]["copy_psnr_per_horizon"]
    assert len(psnr) == 4 and all(np.isfinite(psnr)) and all(0 < p < 100 for p in psnr)
    assert report["rollout"]["copy_psnr_per_horizon"][0] > report["rollout"]["psnr_per_horizon"][0]  # 2 steps: noise
    summary = run_script("generate", ["--checkpoint_dir", str(model), "--val_data_dir", str(recorded[1]),
                                      "--output_dir", str(tmp_path / "gen"), "--num_examples", "2"])
    assert summary["files"] == ["tokens.npz", "strip.png", "generated.gif"]
    from PIL import Image

    strip = np.asarray(Image.open(tmp_path / "gen" / "strip.png").convert("RGB")).reshape(-1, 3)
    colours = np.unique(strip // 32, axis=0)
    assert len(colours) > 20  # Breakout's rainbow of bricks, not a palette of four grey levels


def test_a_held_out_game_records_and_tokenizes(tmp_path):
    train_dir, val_dir = record(tmp_path / "pong", "ALE/Pong-v5")
    metadata = json.loads((train_dir / "metadata.json").read_text())
    assert metadata["atari"]["env_ids"] == ["ALE/Pong-v5"] and metadata["s"] == 8
    actions = np.fromfile(train_dir / "actions" / f"{ACTION_STREAM}.bin", dtype=np.float32).reshape(-1, 18)
    assert set(np.flatnonzero(actions.sum(0))) <= {0, 1, 3, 4, 11, 12}  # Pong's minimal set, ALE numbering


def test_games_mix_in_one_dataset(tmp_path):
    train_dir, val_dir = record(tmp_path / "mix", "ALE/Breakout-v5,ALE/Pong-v5")
    for folder in (train_dir, val_dir):
        games = {e["env_id"] for e in json.loads((folder / "metadata.json").read_text())["atari"]["episodes"]}
        assert games == {"ALE/Breakout-v5", "ALE/Pong-v5"}


@pytest.mark.parametrize("argv, expected", [
    (["--env_id", "ALE/NotAGame-v5"], "--env_id 'ALE/NotAGame-v5' is not an ALE game"),
    (["--env_id", "CartPole-v1"], "is not an ALE game"),
    (["--num_frames", "6"], "need at least 8; raise --num_frames"),
    (["--patch_size", "5"], "--patch_size 5 must divide"),
    (["--val_fraction", "1.5"], "--val_fraction 1.5 must lie strictly between 0 and 1"),
    (["--output_dir", "{tmp}"], "already holds files"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, expected, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    base = {"--env_id": "ALE/Breakout-v5", "--num_frames": "100", "--output_dir": str(tmp_path / "out"),
            "--window_size": "4"}
    base.update({k: v.format(tmp=tmp_path) for k, v in zip(argv[::2], argv[1::2])})
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: run_script("record_atari", [item for pair in base.items() for item in pair]))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_record_atari_prints_its_help(capsys):
    with pytest.raises(SystemExit) as info:
        run_script("record_atari", ["--help"])
    assert info.value.code == 0 and "--env_id" in capsys.readouterr().out
