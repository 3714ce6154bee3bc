"""Every wrong input stops the CLI with exit 2, one line on stderr naming it, no traceback, nothing written."""
import json
import shutil

import numpy as np
import pytest

import masked_pretrain
import train
from genie.cli import run_cli
from genie.config import GenieConfig
from genie.model import STMaskGIT
from scripts import evaluate
from tests.conftest import TINY


def corrupt_copy(tiny_data, tmp_path, how):
    """A copy of the tiny train split, broken as described; returns (train_dir, val_dir)."""
    train_dir = tmp_path / "train"
    shutil.copytree(tiny_data[0], train_dir)
    meta_path = train_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    if how == "empty":
        shutil.rmtree(train_dir)
        train_dir.mkdir()
    elif how == "truncated_video":
        data = (train_dir / "video.bin").read_bytes()
        (train_dir / "video.bin").write_bytes(data[: len(data) // 2])
    elif how in ("wrong_s", "wrong_num_images", "unknown_dtype"):
        key, value = {"wrong_s": ("s", 5), "wrong_num_images": ("num_images", meta["num_images"] + 7),
                      "unknown_dtype": ("token_dtype", "uint128")}[how]
        meta_path.write_text(json.dumps({**meta, key: value}))
    elif how == "bad_json":
        meta_path.write_text("{ num_images: 3")
    elif how == "segment_ids_length":
        np.zeros(meta["num_images"] - 1, dtype=np.int32).tofile(train_dir / "segment_ids.bin")
    elif how == "tokens_beyond_vocab":
        video = np.fromfile(train_dir / "video.bin", dtype=np.uint32)
        video[:16] = 999
        video.tofile(train_dir / "video.bin")
    elif how == "action_size":
        np.zeros((meta["num_images"], 3), dtype=np.float32).tofile(train_dir / "actions" / "driving_command.bin")
    return str(train_dir), str(tiny_data[1])


def write_config(tmp_path, **changes):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return str(path)


CASES = {
    # name: (cli, how the data is broken or None, config changes, extra flags, expected text)
    "missing data folder": ("train", "missing", {}, [], "does not exist"),
    "empty data folder": ("train", "empty", {}, [], "metadata.json is missing"),
    "truncated video.bin": ("train", "truncated_video", {}, [], "video.bin has"),
    "metadata with wrong s": ("train", "wrong_s", {}, [], "video.bin has"),
    "metadata with wrong num_images": ("train", "wrong_num_images", {}, [], "video.bin has"),
    "metadata with unknown dtype": ("train", "unknown_dtype", {}, [], "token_dtype 'uint128' is not a numpy dtype"),
    "metadata that is not JSON": ("train", "bad_json", {}, [], "metadata.json is not valid JSON"),
    "segment_ids of the wrong length": ("train", "segment_ids_length", {}, [], "segment_ids.bin has"),
    "token ids beyond the vocabulary": ("train", "tokens_beyond_vocab", {}, [], "outside [0, vocab_size=256)"),
    "action file of the wrong size": ("train", "action_size", {}, [], "action stream 'driving_command'"),
    "config with an unknown key": ("train", None, {"num_layer": 2}, [], "unknown config field(s) ['num_layer']"),
    "config with a wrong type": ("train", None, {"d_model": "64"}, [], "'d_model' = '64' has type str"),
    "mask ratio outside [0, 1]": ("masked_pretrain", None, {}, ["--initial_mask_ratio", "1.5"],
                                  "--initial_mask_ratio 1.5 must be in [0, 1]"),
    "unknown schedule name": ("masked_pretrain", None, {}, ["--mask_schedule", "cosinus"],
                              "--mask_schedule 'cosinus' is unknown"),
    "window longer than every segment": ("train", None, {"T": 400}, [], "no window of 400 frames"),
    "model S not matching the data": ("train", None, {"S": 64}, [], "the model config has S = 64"),
    "missing checkpoint folder": ("train", None, {}, ["--resume_from_checkpoint", "/nonexistent/step_5"],
                                  "is not a step_N/ checkpoint folder"),
    "masked-pretrain checkpoint of another architecture": ("train", None, {}, ["--masked_pretrain_checkpoint", "OTHER"],
                                                           "does not match the model architecture"),
    "corrupted safetensors file": ("evaluate", None, {}, [], "not a readable safetensors file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tiny_data, tmp_path, capsys):
    cli, how, changes, extra, expected = CASES[case]
    out = tmp_path / "out"
    if cli == "evaluate":
        STMaskGIT(GenieConfig(**TINY)).save_pretrained(tmp_path / "ckpt")
        (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"\x00" * 64)
        result = tmp_path / "eval" / "eval.json"
        result.parent.mkdir()
        result.write_text("previous result")
        argv = ["--checkpoint_dir", str(tmp_path / "ckpt"), "--val_data_dir", str(tiny_data[1]),
                "--train_data_dir", str(tiny_data[0]), "--output_dir", str(result.parent)]
        main = evaluate.main
    else:
        if how == "missing":
            train_dir, val_dir = str(tmp_path / "nowhere"), str(tiny_data[1])
        elif how:
            train_dir, val_dir = corrupt_copy(tiny_data, tmp_path, how)
        else:
            train_dir, val_dir = str(tiny_data[0]), str(tiny_data[1])
        if "OTHER" in extra:
            other = STMaskGIT(GenieConfig(**{**TINY, "d_model": 32}))
            other.save_pretrained(tmp_path / "other")
            extra = [str(tmp_path / "other") if x == "OTHER" else x for x in extra]
        argv = ["--genie_config", write_config(tmp_path, **changes), "--train_data_dir", train_dir,
                "--val_data_dir", val_dir, "--output_dir", str(out), "--max_train_steps", "1", *extra]
        main = {"train": train.main, "masked_pretrain": masked_pretrain.main}[cli]
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: main(argv))
    err = capsys.readouterr().err.strip().splitlines()
    with capsys.disabled():  # the message, for the record (pytest -s shows it)
        print(f"\n[{case}] {err[0] if err else ''}")
    assert info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert expected in err[0], err[0]
    assert not out.exists()  # nothing written
    if cli == "evaluate":
        assert result.read_text() == "previous result"  # nothing overwritten
