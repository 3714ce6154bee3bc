"""1X v2.0 data: layouts (sharded and flat), the window rule at segment cuts, state alignment and bad folders
(tests/integration/test_cosmos_v2_end_to_end.py trains and evaluates on it)."""
import json
import shutil

import numpy as np
import pytest
import torch

import train
from genie.cli import run_cli
from genie.data import CosmosV2Dataset, DataOptions, open_dataset
from genie.data.cosmos_v2 import clip_window_starts, open_shard, read_v2_metadata, write_v2_split
from genie.errors import DataFormatError
from tests.conftest import REPO_ROOT, one_line_error, run_argv, snapshot

SIDE = 2


def shard(num_frames, segments, seed=0):
    """A shard of `num_frames` raw frames whose segment ids are given per raw frame; tokens and states
    encode where they come from, so that tests can check alignment."""
    clips = -(-num_frames // 17)
    video = np.arange(clips * 3 * SIDE * SIDE, dtype=np.int32).reshape(clips, 3, SIDE, SIDE) % 1000
    states = np.repeat(np.arange(num_frames, dtype=np.float32)[:, None], 25, axis=1)  # state = raw frame index
    return {"video": video, "segment_idx": np.asarray(segments, dtype=np.int32), "states": states}


def write(tmp_path, shards, sharded=True, name="split"):
    return write_v2_split(tmp_path / name, shards, sharded, extra_metadata={"s": SIDE, "vocab_size": 1000})


def test_sharded_and_flat_layouts_read_the_same_windows(tmp_path):
    segments = np.zeros(17 * 5, dtype=np.int32)
    sharded = CosmosV2Dataset(write(tmp_path, [shard(85, segments)] * 2, sharded=True, name="a"))
    flat = CosmosV2Dataset(write(tmp_path, [shard(85, segments)], sharded=False, name="b"))
    assert (tmp_path / "a" / "videos" / "video_1.bin").is_file() and (tmp_path / "b" / "video_0.bin").is_file()
    assert len(sharded) == 2 * len(flat) == 2 * 4  # 5 clean clips -> 4 windows of 2 clips per shard
    assert torch.equal(sharded[4]["input_ids"], flat[0]["input_ids"])  # shard 1 starts at window 4
    assert flat[0]["input_ids"].shape == (6, SIDE * SIDE) and flat[0]["actions"].shape == (6, 25)


def test_windows_never_cross_a_segment_cut_or_the_end_of_a_shard(tmp_path):
    # 6 clips = 102 raw frames; the cut is inside clip 2 (raw frame 40); 95 frames: clip 5 is partial.
    segments = np.where(np.arange(95) < 40, 0, 1)
    dataset = CosmosV2Dataset(write(tmp_path, [shard(95, segments)]))
    assert dataset.window_clip.tolist() == [0, 3]  # clips (0,1) and (3,4): not 1-2 (clip 2 crosses), not 4-5 (partial)
    non_overlapping = clip_window_starts(dataset.shards[0], 1, filter_overlaps=True)
    assert non_overlapping.tolist() == [0, 1, 3, 4]


def test_each_latent_frame_gets_the_states_of_the_raw_frames_it_covers(tmp_path):
    folder = write(tmp_path, [shard(85, np.zeros(85))])
    last = CosmosV2Dataset(folder)[1]["actions"][:, 0].tolist()  # window 1 = clips 1, 2
    mean = CosmosV2Dataset(folder, state_pooling="mean")[1]["actions"][:, 0].tolist()
    # clip 1 starts at raw frame 17: latent frames cover raw 17 | 18..25 | 26..33; clip 2: 34 | 35..42 | 43..50
    assert last == [17, 25, 33, 34, 42, 50]
    assert mean == [17, 21.5, 29.5, 34, 38.5, 46.5]


def test_the_index_is_vectorized_and_equals_a_loop(tmp_path):
    rng = np.random.default_rng(0)
    segments = np.repeat(np.arange(40), rng.integers(5, 60, 40))[:1000]
    dataset = CosmosV2Dataset(write(tmp_path, [shard(1000, segments)]), window_size=6)
    loop = [c for c in range(len(dataset.shards[0].video) - 1)
            if 17 * (c + 2) <= 1000 and len(set(segments[17 * c:17 * (c + 2)])) == 1]
    assert dataset.window_clip.tolist() == loop


def break_folder(folder, how):
    if how == "shard count":
        meta = json.loads((folder / "metadata.json").read_text())
        (folder / "metadata.json").write_text(json.dumps({**meta, "num_shards": 3}))
    elif how == "missing states":
        (folder / "robot_states" / "states_1.bin").unlink()
    elif how == "video not whole clips":
        path = folder / "videos" / "video_0.bin"
        path.write_bytes(path.read_bytes()[:-4])
    elif how == "video clips vs frames":
        path = folder / "videos" / "video_0.bin"
        path.write_bytes(path.read_bytes() + path.read_bytes()[: 3 * SIDE * SIDE * 4])
    elif how == "states size":
        path = folder / "robot_states" / "states_0.bin"
        path.write_bytes(path.read_bytes()[:-100])
    elif how == "segment size":
        path = folder / "segment_indices" / "segment_idx_1.bin"
        path.write_bytes(path.read_bytes()[:-4])
    elif how == "token beyond vocabulary":
        video = np.fromfile(folder / "videos" / "video_1.bin", dtype=np.int32)
        video[-1] = 64000
        video.tofile(folder / "videos" / "video_1.bin")
    elif how == "NaN state":
        states = np.fromfile(folder / "robot_states" / "states_0.bin", dtype=np.float32)
        states[25 * 30] = np.nan
        states.tofile(folder / "robot_states" / "states_0.bin")
    elif how == "missing shard metadata":
        (folder / "metadata" / "metadata_1.json").unlink()


@pytest.mark.parametrize("how, expected", [
    ("shard count", "says num_shards = 3 but"),
    ("missing states", "states_1.bin is missing"),
    ("video not whole clips", "not a multiple of one clip"),
    ("video clips vs frames", "ceil(85 raw frames / 17) = 5 clips"),
    ("states size", "25 float32 states per raw frame"),
    ("segment size", "one int32 segment index per raw frame"),
    ("token beyond vocabulary", "holds token id 64000 outside [0, 64000)"),
    ("NaN state", "raw frame 30 holds a NaN"),
    ("missing shard metadata", "metadata_1.json is missing"),
])
def test_malformed_v2_folders_give_one_line_errors_and_write_nothing(tmp_path, capsys, how, expected, tiny_v2_config):
    folder = write_v2_split(tmp_path / "bad", [shard(85, np.zeros(85))] * 2, True, extra_metadata={"s": SIDE})
    break_folder(folder, how)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: train.main(["--genie_config", tiny_v2_config(SIDE), "--train_data_dir", str(folder),
                                    "--val_data_dir", str(folder), "--output_dir", str(out), "--max_train_steps", "1"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert not out.exists()


def test_builtin_world_in_the_v2_layout(builtin_v2):
    train_dir, val_dir = builtin_v2
    assert read_v2_metadata(train_dir)["sharded"] and not read_v2_metadata(val_dir)["sharded"]
    shard0 = open_shard(train_dir, 0, read_v2_metadata(train_dir))
    assert shard0.video.shape == (-(-1500 // 17), 3, 8, 8) and shard0.states.shape == (1500, 25)
    # the format is detected from the layout; v1.1 can be forced and then says what is missing
    assert isinstance(open_dataset(val_dir, _config(), data=DataOptions()), CosmosV2Dataset)
    with pytest.raises(DataFormatError, match="--data_format v1.1 contradicts .*: it holds video_0.bin, the v2.0 "
                                              "layout; leave --data_format out"):
        open_dataset(val_dir, _config(), data=DataOptions("v1.1"))


def _config():
    from genie.model.config import GenieConfig

    return GenieConfig.from_json_file(REPO_ROOT / "configs" / "cosmos_v2_tiny.json")


def _v1_with_v2_names(v1_dir, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(v1_dir, folder)
    (folder / "video.bin").rename(folder / "video_0.bin")
    return folder


def _v2_without_s(v2_dir, tmp_path):
    folder = tmp_path / "no_s"
    shutil.copytree(v2_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    del metadata["s"]
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


# The v1.1 / v2.0 mix-ups: (train split, val split, config, extra flags) -> what the one line must say.
LAYOUT_CASES = {
    "--data_format v2.0 on a v1.1 folder": (lambda v1, v2, tmp: (v1[0], v1[1]), "v1", ["--data_format", "v2.0"],
                                            "--data_format v2.0 contradicts {train}: it holds video.bin, the v1.1 layout"),
    "--data_format v1.1 on a v2.0 folder": (lambda v1, v2, tmp: (v2[0], v2[1]), "v2", ["--data_format", "v1.1"],
                                            "--data_format v1.1 contradicts {train}: it holds videos/, the v2.0 layout"),
    "a v1.1 train split with a v2.0 val split": (lambda v1, v2, tmp: (v1[0], v2[1]), "v1", [],
                                                 "the train split {train} is v1.1 (video.bin) but the val split {val} "
                                                 "is v2.0 (video_0.bin); pass a val split in the v1.1 layout (the "
                                                 "model config reads v1.1 data; its T = 4 is not a multiple of 3)"),
    "a v1.1 model on v2.0 data": (lambda v1, v2, tmp: (v2[0], v2[1]), "v1", [],
                                  "{train} holds v2.0 data (videos/) but the model config is for v1.1 data: its T = 4 "
                                  "is not a multiple of 3; use a model config for v2.0 data (T a multiple of 3"),
    "a v1.1 folder with v2.0 file names": (lambda v1, v2, tmp: (_v1_with_v2_names(v1[0], tmp), v1[1]), "v1", [],
                                           "the train split {train} is v2.0 (video_0.bin) but the val split {val} is "
                                           "v1.1 (video.bin)"),
    "a v2.0 folder without s in metadata.json": (lambda v1, v2, tmp: (_v2_without_s(v2[0], tmp), v2[1]), "v2", [],
                                                 'metadata.json gives no "s", so frames are read as 32x32 tokens (the '
                                                 'challenge\'s); add "s" (the frame side) to it, or the file is '
                                                 "truncated [{train} was read as the v2.0 layout (videos/)]"),
}


@pytest.mark.parametrize("name", sorted(LAYOUT_CASES))
def test_a_layout_mix_up_names_the_folder_its_layout_and_the_fix(name, builtin_v2, tiny_data, tiny_config_file,
                                                                 tiny_v2_config, tmp_path, capsys):
    folders, config, flags, expected = LAYOUT_CASES[name]
    train_dir, val_dir = folders(tiny_data, builtin_v2, tmp_path)
    config_file = str(tiny_config_file) if config == "v1" else tiny_v2_config()
    before = snapshot(tmp_path)
    line = one_line_error(train.main, run_argv(config_file, (train_dir, val_dir), tmp_path / "out", *flags), capsys)
    assert expected.format(train=train_dir, val=val_dir) in line, line
    assert snapshot(tmp_path) == before
