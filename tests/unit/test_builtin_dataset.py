import hashlib
import json

import numpy as np
import pytest

from data import RawTokenDataset
from genie.data.builtin import builtin_dataset_dirs, builtin_folder_name, make_split, write_builtin_v2_dataset
from genie.data.sources import DataOptions
from genie.data.tokenizers import PatchTokenizer
from genie.errors import ConfigError
from genie.training.arguments import TrainingArguments


def test_tokenizer_round_trip_and_vocab():
    for tokenizer, vocab in ((PatchTokenizer(3, 4), 2 ** 18), (PatchTokenizer(2, 4), 256)):
        assert tokenizer.vocab_size == vocab and PatchTokenizer.for_vocab(vocab) == tokenizer
        images = np.random.default_rng(0).integers(0, 4, size=(3, 4 * tokenizer.patch, 4 * tokenizer.patch))
        tokens = tokenizer.encode(images)
        assert tokens.shape == (3, 4, 4) and tokens.max() < vocab
        assert np.array_equal(tokenizer.decode(tokens), images)


def test_world_is_deterministic_and_action_driven():
    tok = PatchTokenizer(2, 4)
    a = make_split(300, 8, tok, seed=3)
    b = make_split(300, 8, tok, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], make_split(300, 8, tok, seed=4)[0])
    tokens, segments, actions = a
    assert set(np.unique(actions).tolist()) <= {-1.0, 0.0, 1.0} and np.abs(actions).sum() > 0
    # The steered sprite (a full level-3 patch, token 255) moves by the action (when not blocked by a wall).
    grey = tok.decode(tokens)
    moved = 0
    for t in range(1, 300):
        if segments[t] != segments[t - 1] or not actions[t].any():
            continue
        moved += int(not np.array_equal(grey[t], grey[t - 1]))
    assert moved > 50


def test_builtin_split_is_a_valid_dataset(tiny_data):
    train, val = tiny_data
    ds = RawTokenDataset(train, window_size=4, action_dims={"driving_command": 2})
    assert len(ds) > 2000 and ds.metadata["builtin_tokenizer"] == {"patch": 2, "levels": 4}
    assert RawTokenDataset(val, window_size=4, filter_overlaps=True).vocab_size == 256


def _holds(actions: np.ndarray, segments: np.ndarray) -> list[tuple[tuple, int, bool]]:
    """(command, frames held, whether the segment ended it) for every hold, from frame 1 of each segment."""
    holds = []
    for segment in np.unique(segments):
        rows = [tuple(a) for a in actions[segments == segment][1:]]
        start = 0
        for t in range(1, len(rows) + 1):
            if t == len(rows) or rows[t] != rows[start]:
                holds.append((rows[start], t - start, t == len(rows)))
                start = t
    return holds


def test_the_steered_world_holds_each_command_1_to_8_frames_then_changes_it():
    tokens, segments, actions = make_split(3000, 8, PatchTokenizer(2, 4), seed=1, world="steered")
    holds = _holds(actions, segments)
    ended = [length for _, length, cut in holds if not cut]  # a segment's end may cut its last hold short
    assert sorted(set(ended)) == list(range(1, 9))  # every length 1..8 occurs, no other
    assert max(length for _, length, _ in holds) <= 8
    assert abs(np.mean(ended) - 4.5) < 0.3  # uniform over 1..8 (mean 4.5; 570-odd holds)
    # Consecutive holds differ (runs of one command are exactly the holds), and all 9 commands occur, "stay" too.
    assert len({command for command, _, _ in holds}) == 9 and (0.0, 0.0) in {c for c, _, _ in holds}
    # Two steered sprites (full level-3 patches, token 255, which nothing else draws) in every frame.
    assert ((tokens == 255).sum(axis=(1, 2)) == 2).all()  # they wrap around the edges and never merge


def test_the_swing_world_is_unchanged_by_the_variants():
    """Today's world, bit for bit: the checksum of make_split(300, 8, seed 3) at main 7856765 (before variants)."""
    tokens, segments, actions = make_split(300, 8, PatchTokenizer(2, 4), seed=3)
    digest = hashlib.sha256(tokens.tobytes() + segments.tobytes() + actions.tobytes()).hexdigest()
    assert digest == "4c202e01b6826cbcabc9a3478827f487196f7add9cdb523aece53c131a4dae02"
    named = make_split(300, 8, PatchTokenizer(2, 4), seed=3, world="swing")
    assert all(np.array_equal(x, y) for x, y in zip(named, (tokens, segments, actions)))


def test_the_variant_is_in_the_folder_name_and_metadata_and_the_default_keeps_both(tmp_path):
    swing_train, _ = builtin_dataset_dirs(4, 256, root=tmp_path)
    steered_train, steered_val = builtin_dataset_dirs(4, 256, root=tmp_path, world="steered")
    assert swing_train.parent.name == "world3-grid4-vocab256-seed0"  # the folder of every run before the variants
    assert steered_train.parent.name == "world3-steered-grid4-vocab256-seed0"
    swing_meta = RawTokenDataset.read_metadata(swing_train)
    assert "builtin_world" not in swing_meta and swing_meta["builtin_world_version"] == 3
    assert RawTokenDataset.read_metadata(steered_val)["builtin_world"] == "steered"
    v2_train, _ = write_builtin_v2_dataset(tmp_path / "v2", grid=8, vocab_size=256, shards=1, frames_per_shard=400,
                                           val_frames=200, world="steered")
    assert json.loads((v2_train / "metadata.json").read_text())["builtin_world"] == "steered"
    assert builtin_folder_name(8, 256, 0, v2_layout=True, world="steered") == "v2-world3-steered-grid8-vocab256-seed0"


def test_an_unknown_world_is_a_one_line_error_naming_the_worlds():
    for make in (lambda: make_split(10, 4, PatchTokenizer(2, 4), seed=0, world="maze"),
                 lambda: DataOptions(builtin_world="maze"), lambda: TrainingArguments(builtin_world="maze")):
        with pytest.raises(ConfigError, match="^--builtin_world 'maze' is not a built-in world; choose one of swing, steered$"):
            make()


def test_in_the_steered_world_the_action_alone_tells_where_the_sprites_go_when_a_hold_ends():
    """Known answers: the steered sprites' patches in frame t are those of frame t-1 moved by action t (mod the
    grid: they wrap), always; at every hold's end the previous motion would put them elsewhere."""
    grid = 8
    tokens, segments, actions = make_split(2000, grid, PatchTokenizer(2, 4), seed=2, world="steered")
    cells = [frozenset(map(tuple, np.argwhere(frame == 255))) for frame in tokens]

    def moved(t: int, command: np.ndarray) -> frozenset:
        return frozenset(((y + int(command[0])) % grid, (x + int(command[1])) % grid) for y, x in cells[t - 1])

    followed = ends = 0
    for t in range(2, len(tokens)):
        if segments[t] != segments[t - 2]:
            continue
        assert cells[t] == moved(t, actions[t])
        followed += 1
        if not np.array_equal(actions[t], actions[t - 1]):
            assert cells[t] != moved(t, actions[t - 1])
            ends += 1
    assert (followed, ends) == (1954, 432)  # about one hold end in 4.5 frames


def test_a_checkpoint_finds_the_world_its_run_trained_on(tmp_path):
    """evaluate.py and generate.py: the run folder's config.json records --builtin_world; a flag given wins."""
    (tmp_path / "run" / "final_model").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"stage": "autoregressive", "args": {"builtin_world": "steered"}}))
    assert DataOptions().with_world_of(tmp_path / "run" / "final_model").builtin_world == "steered"
    assert DataOptions(builtin_world="swing").with_world_of(tmp_path / "run" / "final_model").builtin_world == "swing"
    (tmp_path / "copied").mkdir()
    assert DataOptions().with_world_of(tmp_path / "copied").builtin_world is None  # no run folder: the default


def test_stage_two_reads_the_world_its_stage_one_trained_on_unless_told(tmp_path, capsys):
    from genie.training.arguments import TrainingArguments
    from genie.training.stages import inherit_builtin_world

    (tmp_path / "stage1" / "masked_pretrain_final").mkdir(parents=True)
    (tmp_path / "stage1" / "config.json").write_text(json.dumps({"stage": "masked_pretrain",
                                                                  "args": {"builtin_world": "steered"}}))
    weights = tmp_path / "stage1" / "masked_pretrain_final"
    inherited, chosen = TrainingArguments(), TrainingArguments(builtin_world="swing")
    inherit_builtin_world(inherited, weights)
    inherit_builtin_world(chosen, weights)
    assert (inherited.builtin_world, chosen.builtin_world) == ("steered", "swing")
    assert capsys.readouterr().out == (f"stage 2 reads the built-in world 'steered', as its stage 1 did "
                                       f"({tmp_path / 'stage1'}); --builtin_world chooses another\n")
