import numpy as np

from data import RawTokenDataset
from genie.data.builtin import make_split
from genie.data.tokenizers import PatchTokenizer


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
