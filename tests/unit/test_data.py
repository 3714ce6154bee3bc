import json

import numpy as np
import pytest
import torch

from data import RawTokenDataset, get_maskgit_collator, window_start_indices, write_token_dataset
from genie.errors import DataFormatError
from genie.model.config import GenieConfig


def naive_window_starts(segment_ids, num_frames, window, stride, filter_overlaps):
    """The reference's per-frame loop (plus a whole-window segment check)."""
    span = (window - 1) * stride
    starts = [s for s in range(num_frames - span) if len(set(segment_ids[s:s + span + 1])) == 1]
    if not filter_overlaps:
        return starts
    kept, used = [], set()
    for s in starts:
        frames = set(range(s, s + span + 1, stride))
        if not frames & used:
            kept.append(s)
            used |= frames
    return kept


@pytest.mark.parametrize("window, stride", [(4, 1), (3, 2), (5, 3)])
@pytest.mark.parametrize("filter_overlaps", [False, True])
def test_window_index_matches_a_python_loop(window, stride, filter_overlaps):
    rng = np.random.default_rng(window * 10 + stride)
    segment_ids = np.repeat(np.arange(12), rng.integers(1, 20, size=12)).astype(np.int32)
    fast = window_start_indices(segment_ids, len(segment_ids), window, stride, filter_overlaps)
    assert fast.tolist() == naive_window_starts(segment_ids.tolist(), len(segment_ids), window, stride, filter_overlaps)


def test_overlap_filter_uses_each_frame_at_most_once():
    segment_ids = np.zeros(100, dtype=np.int32)
    starts = window_start_indices(segment_ids, 100, 4, 3, filter_overlaps=True)
    frames = np.concatenate([np.arange(s, s + 10, 3) for s in starts])
    assert len(frames) == len(set(frames.tolist())) and len(starts) == 24  # 3 residues mod 3, 8 windows each


def _write(tmp_path, n=40, s=4, vocab=256, segment_len=10, actions=True):
    tokens = np.arange(n * s * s).reshape(n, s, s) % vocab
    segments = np.arange(n) // segment_len
    acts = {"driving_command": np.arange(n * 2, dtype=np.float32).reshape(n, 2)} if actions else None
    return write_token_dataset(tmp_path / "split", tokens, segments, vocab, actions=acts), tokens


def test_items_hold_the_right_frames_and_actions(tmp_path):
    path, tokens = _write(tmp_path)
    ds = RawTokenDataset(path, window_size=3, stride=2, action_dims={"driving_command": 2})
    assert len(ds) == 4 * 6  # 4 segments of 10 frames, starts 0..5 in each
    item = ds[7]  # second segment, start 11
    assert torch.equal(item["input_ids"], torch.from_numpy(tokens[[11, 13, 15]].reshape(3, 16)))
    assert item["actions"].tolist() == [[22, 23], [26, 27], [30, 31]]


def _expect(path, match, **kwargs):
    with pytest.raises(DataFormatError, match=match) as info:
        RawTokenDataset(path, **{"window_size": 3, **kwargs})
    assert "\n" not in str(info.value)


def test_malformed_folders_give_one_line_errors(tmp_path):
    _expect(tmp_path / "missing", "does not exist")
    path, _ = _write(tmp_path)
    meta = json.loads((path / "metadata.json").read_text())

    (path / "metadata.json").write_text(json.dumps({**meta, "num_images": 41}))
    _expect(path, "video.bin has .* bytes but metadata implies")
    (path / "metadata.json").write_text(json.dumps({**meta, "s": "4"}))
    _expect(path, "'s' = '4' must be a positive integer")
    (path / "metadata.json").write_text(json.dumps({**meta, "token_dtype": "float32"}))
    _expect(path, "must be an integer dtype")
    (path / "metadata.json").write_text(json.dumps({**meta, "token_dtype": "nonsense"}))
    _expect(path, "is not a numpy dtype")
    (path / "metadata.json").write_text(json.dumps({**meta, "vocab_size": 100}))
    _expect(path, "frame 6 holds token id 100 outside \\[0, vocab_size=100\\)")
    (path / "metadata.json").write_text(json.dumps(meta))
    _expect(path, r"action stream 'driving_command' \(3 float32", action_dims={"driving_command": 3})
    _expect(path, "no window of 12 frames .* longest segment has 10 frames", window_size=12)

    np.zeros(39, dtype=np.int32).tofile(path / "segment_ids.bin")
    _expect(path, "segment_ids.bin has 156 bytes")
    (path / "segment_ids.bin").unlink()
    _expect(path, "segment_ids.bin is missing")
    (path / "video.bin").unlink()
    _expect(path, "video.bin is missing")
    (path / "metadata.json").unlink()
    _expect(path, "metadata.json is missing")


def test_model_config_must_fit_the_data(tmp_path, tiny_config):
    path, _ = _write(tmp_path)
    RawTokenDataset(path, window_size=4).check_compatible(tiny_config)
    with pytest.raises(DataFormatError, match="S = 64"):
        RawTokenDataset(path, window_size=4).check_compatible(tiny_config.replace(S=64))
    with pytest.raises(DataFormatError, match="window_size 3 differs from the model config's T = 4"):
        RawTokenDataset(path, window_size=3).check_compatible(tiny_config)
    with pytest.raises(DataFormatError, match="vocab_size 256 exceeds"):
        RawTokenDataset(path, window_size=4).check_compatible(tiny_config.replace(image_vocab_size=16, num_factored_vocabs=1))


def _batch(b=64, t=6, s=16, vocab=256):
    return {"input_ids": torch.randint(0, vocab, (b, t, s), generator=torch.Generator().manual_seed(5))}


def test_collator_masks_are_true_where_hidden_and_never_in_frame_0():
    config = GenieConfig(num_layers=1, num_heads=1, d_model=8, T=6, S=16, image_vocab_size=256, num_factored_vocabs=2)
    collate = get_maskgit_collator(config)
    batch = _batch()
    for seed in range(20):
        out = collate(batch, generator=torch.Generator().manual_seed(seed))
        assert out["loss_mask"].dtype == torch.bool
        assert torch.equal(out["loss_mask"], out["input_ids"] == 256)  # True = masked = hidden
        assert not out["loss_mask"][:, 0].any() and out["loss_mask"].any()
        assert torch.equal(out["labels"], batch["input_ids"])
    a = collate(batch, generator=torch.Generator().manual_seed(3))
    b = collate(batch, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_collator_corruption_and_non_mlm_branch():
    base = dict(num_layers=1, num_heads=1, d_model=8, T=6, S=16, image_vocab_size=256, num_factored_vocabs=2)
    batch = _batch()
    clean = get_maskgit_collator(GenieConfig(**base, max_corrupt_rate=0.0, non_mlm_ratio=0.0))
    out = clean(batch, generator=torch.Generator().manual_seed(0))
    visible = ~out["loss_mask"]
    assert torch.equal(out["input_ids"][visible], batch["input_ids"][visible])  # no corruption at rate 0
    # Cosine of a uniform draw: mean mask probability 2/pi over maskable frames.
    rates = [clean(batch, generator=torch.Generator().manual_seed(s))["loss_mask"][:, 1:].float().mean() for s in range(30)]
    assert abs(float(torch.stack(rates).mean()) - 2 / torch.pi) < 0.03

    non_mlm = get_maskgit_collator(GenieConfig(**base, max_corrupt_rate=0.0, non_mlm_ratio=1.0, num_prompt_frames=3))
    for seed in range(10):
        out = non_mlm(batch, generator=torch.Generator().manual_seed(seed))
        assert not out["loss_mask"][:, :3].any()  # prompt frames stay visible
        assert torch.equal(out["input_ids"][:, :3], batch["input_ids"][:, :3])  # and clean
        later_visible = ~out["loss_mask"][:, 3:]
        changed = out["input_ids"][:, 3:][later_visible] != batch["input_ids"][:, 3:][later_visible]
        assert changed.any()  # later frames corrupted

    noisy = get_maskgit_collator(GenieConfig(**base, max_corrupt_rate=1.0, non_mlm_ratio=0.0))
    out = noisy(batch, generator=torch.Generator().manual_seed(1))
    assert (out["input_ids"][:, 0] != batch["input_ids"][:, 0]).any()
