"""Recorded Atari data (genie/data/atari.py) and the tokenizer interface (genie/data/tokenizers.py) on a few
hundred frames of Breakout: determinism, segments, actions, file formats, the codebook, bad input."""
import json

import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("sklearn")

from genie.data.atari import (ACTION_STREAM, CODEBOOK_FILE, NUM_ALE_ACTIONS, RecordingSpec, one_hot_actions,  # noqa: E402
                              record_atari, record_game)
from genie.data.tokenizers import (CodebookTokenizer, PatchTokenizer, Tokenizer, fit_codebook,  # noqa: E402
                                   tokenizer_for_folder, tokenizer_from_metadata)
from genie.errors import ConfigError, DataFormatError  # noqa: E402

BREAKOUT_MINIMAL_ACTIONS = {0, 1, 3, 4}  # NOOP, FIRE, RIGHT, LEFT in ALE's 18-action numbering
SPEC = RecordingSpec(("ALE/Breakout-v5",), num_frames=320, seed=3, val_fraction=0.25, max_episode_frames=90,
                     patch=4, vocab_size=256, window_size=4)


def read_split(folder):
    metadata = json.loads((folder / "metadata.json").read_text())
    n, s = metadata["num_images"], metadata["s"]
    video = np.fromfile(folder / "video.bin", dtype=metadata["token_dtype"]).reshape(n, s, s)
    segments = np.fromfile(folder / "segment_ids.bin", dtype=np.int32)
    actions = np.fromfile(folder / "actions" / f"{ACTION_STREAM}.bin", dtype=np.float32).reshape(n, -1)
    return metadata, video, segments, actions


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("atari") / "breakout"
    return record_atari(SPEC, root)


def test_same_seed_gives_byte_identical_files_and_another_seed_other_video(recording, tmp_path):
    again = record_atari(SPEC, tmp_path / "again")
    for first, second in zip(recording, again):
        names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
        assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
    other = RecordingSpec(**{**SPEC.__dict__, "seed": 4})
    other_train, _ = record_atari(other, tmp_path / "other")
    assert (other_train / "video.bin").read_bytes() != (recording[0] / "video.bin").read_bytes()


def test_file_formats_and_metadata(recording):
    train, val = recording
    total = 0
    for folder in (train, val):
        metadata, video, segments, actions = read_split(folder)
        assert {k: metadata[k] for k in ("s", "vocab_size", "hz", "token_dtype")} == {
            "s": 16, "vocab_size": 256, "hz": 15, "token_dtype": "uint16"}
        n = metadata["num_images"]
        assert (folder / "video.bin").stat().st_size == n * 16 * 16 * 2
        assert (folder / "segment_ids.bin").stat().st_size == n * 4
        assert metadata["action_dims"] == {ACTION_STREAM: NUM_ALE_ACTIONS}
        assert metadata["tokenizer"] == {"kind": "patch_codebook", "file": CODEBOOK_FILE, "patch": 4, "channels": 3,
                                         "vocab_size": 256}
        assert metadata["atari"]["frame_skip"] == 4 and metadata["atari"]["repeat_action_probability"] == 0.25
        assert metadata["atari"]["action_meanings"][:5] == ["NOOP", "FIRE", "UP", "RIGHT", "LEFT"]
        assert video.max() < 256
        total += n
    assert total == SPEC.num_frames
    assert (train / CODEBOOK_FILE).read_bytes() == (val / CODEBOOK_FILE).read_bytes()


def test_one_segment_per_episode_and_val_holds_whole_episodes(recording):
    train, val = recording
    episodes = record_game("ALE/Breakout-v5", SPEC.num_frames, seed=_game_seed(), size=64, max_episode_frames=90)
    lengths = []
    for folder in (train, val):
        metadata, _, segments, _ = read_split(folder)
        runs = np.diff(np.flatnonzero(np.r_[True, segments[1:] != segments[:-1], True]))
        assert runs.tolist() == [e["num_frames"] for e in metadata["atari"]["episodes"]]
        assert segments.tolist() == sorted(segments.tolist())
        lengths += runs.tolist()
    assert len(metadata["atari"]["episodes"]) == 1  # val: round(0.25 x 4 episodes)
    assert sorted(lengths) == sorted(len(e.frames) for e in episodes)
    assert [len(e.frames) for e in episodes] == [90, 90, 90, 50]  # cut at max_episode_frames, then the budget


def _game_seed():
    from genie.data.atari import game_seeds

    return game_seeds(SPEC.seed, 1)[0]


def test_an_episode_ends_where_the_game_ends():
    episodes = record_game("ALE/Breakout-v5", 700, seed=0, size=64, max_episode_frames=27000)
    assert [e.game_over for e in episodes[:-1]] == [True] * (len(episodes) - 1) and len(episodes) >= 2
    assert [len(e.frames) for e in episodes] == [len(e.actions) for e in episodes]
    assert all(e.actions[0] == -1 and (e.actions[1:] >= 0).all() for e in episodes)


def test_action_stream_is_one_hot_with_zeros_on_first_frames(recording):
    for folder in recording:
        metadata, _, segments, actions = read_split(folder)
        assert actions.shape == (metadata["num_images"], NUM_ALE_ACTIONS)
        first = np.r_[True, segments[1:] != segments[:-1]]
        assert (actions[first] == 0).all()
        rest = actions[~first]
        assert set(np.unique(rest)) == {0.0, 1.0} and (rest.sum(1) == 1).all()
        assert set(np.flatnonzero(rest.sum(0))) <= BREAKOUT_MINIMAL_ACTIONS
    np.testing.assert_array_equal(one_hot_actions(np.array([-1, 3])), np.eye(NUM_ALE_ACTIONS)[[0, 3]] * [[0], [1]])


def test_codebook_round_trip_is_the_nearest_centroid(recording):
    _, val = recording
    tokenizer = tokenizer_for_folder(val)
    assert isinstance(tokenizer, CodebookTokenizer) and isinstance(tokenizer, Tokenizer)
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    patches = frames.reshape(2, 16, 4, 16, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 48).astype(np.float64)
    distances = ((patches[:, None, :] - tokenizer.centroids[None].astype(np.float64)) ** 2).sum(-1)
    nearest = tokenizer.centroids[distances.argmin(1)]
    expected = np.clip(np.rint(nearest), 0, 255).astype(np.uint8).reshape(2, 16, 16, 4, 4, 3)
    expected = expected.transpose(0, 1, 3, 2, 4, 5).reshape(2, 64, 64, 3)
    ids = tokenizer.encode(frames)
    assert ids.shape == (2, 16, 16)
    np.testing.assert_array_equal(tokenizer.decode(ids), expected)
    assert tokenizer.to_rgb(ids, scale=2).shape == (2, 128, 128, 3)


def test_codebook_is_exact_when_the_frames_hold_few_patches():
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    frames[1, :4, :4] = (200, 72, 72)
    frames[2, 4:, 4:, 1] = 255
    tokenizer = fit_codebook(frames, patch=4, vocab_size=8, seed=0)
    np.testing.assert_array_equal(tokenizer.decode(tokenizer.encode(frames)), frames)
    for bad in (8, -1):  # ids a codebook of 8 entries does not have: one line, not an IndexError
        with pytest.raises(DataFormatError, match=f"token id {bad} is outside this codebook's 8 entries"):
            tokenizer.decode(np.array([[[0, bad], [1, 2]]]))


def test_tokenizer_found_from_metadata_for_every_source(recording, tiny_data):
    builtin = tokenizer_for_folder(tiny_data[1])
    assert isinstance(builtin, PatchTokenizer) and (builtin.patch, builtin.levels, builtin.peak) == (2, 4, 3.0)
    recorded = tokenizer_for_folder(recording[1])
    assert recorded.vocab_size == 256 and recorded.peak == 255.0
    assert tokenizer_from_metadata({"num_images": 1, "s": 16, "vocab_size": 262144}) is None  # 1X data: no decoder


def test_a_missing_codebook_is_one_line(recording, tmp_path):
    metadata = json.loads((recording[1] / "metadata.json").read_text())
    with pytest.raises(DataFormatError, match="codebook.npy is missing") as error:
        tokenizer_from_metadata(metadata, tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("change, message", [
    ({"env_ids": ("ALE/NoSuchGame-v5",)}, "is not an ALE game"),
    ({"num_frames": 7}, "need at least 8"),
])
def test_bad_settings_write_nothing(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        record_atari(RecordingSpec(**{**SPEC.__dict__, **change}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds files"):
        record_atari(SPEC, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
