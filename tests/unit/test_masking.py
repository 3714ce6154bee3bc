"""Mask builders: True = masked everywhere; exact small examples and exact counts."""
import pytest
import torch

from genie.masking.masks import (bernoulli_per_frame, block_mask, frames_from, maskable_after_first_frame,
                                 maskable_between_prompt_frames, maskable_off_lattice, random_mask)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio, count", [(0.0, 0), (0.1, 2), (0.25, 4), (0.5, 8), (0.8, 13), (1.0, 16)])
def test_random_mask_has_exactly_round_ratio_times_S_per_frame(ratio, count):
    mask = random_mask((32, 6, 16), ratio, gen())
    assert mask.dtype == torch.bool
    assert (mask.sum(-1) == count).all()


def test_random_mask_differs_across_samples_and_frames_and_is_uniform():
    mask = random_mask((256, 4, 16), 0.25, gen())
    flat = mask.reshape(-1, 16)
    assert len({tuple(row.tolist()) for row in flat}) > 500  # each sample and frame draws its own
    share = mask.float().mean(dim=(0, 1))
    assert (share - 0.25).abs().max() < 0.05  # every position equally likely
    assert torch.equal(mask, random_mask((256, 4, 16), 0.25, gen()))  # same generator seed, same mask


def test_frame_range_builders():
    m = frames_from((2, 4, 3), 2)
    assert m[:, :2].sum() == 0 and m[:, 2:].all()
    per_sample = frames_from((2, 4, 1), torch.tensor([1, 3]))
    assert per_sample[:, :, 0].tolist() == [[False, True, True, True], [False, False, False, True]]
    assert torch.equal(maskable_after_first_frame((1, 3, 2)), torch.tensor([[[False, False], [True, True], [True, True]]]))


def test_maskable_between_prompt_frames_keep_every_kth_frame_visible():
    m = maskable_between_prompt_frames((1, 7, 2), period=3)
    assert m[0, :, 0].tolist() == [False, True, True, False, True, True, False]
    full = random_mask((4, 7, 16), 1.0, gen()) & maskable_between_prompt_frames((4, 7, 16), 3)
    assert full[:, [0, 3, 6]].sum() == 0 and full[:, [1, 2, 4, 5]].all()


def test_strided_lattice_stays_visible():
    m = maskable_off_lattice((1, 1, 16), 4, 4, stride=2, offset=1)
    expected = torch.ones(4, 4, dtype=torch.bool)
    expected[1::2, 1::2] = False
    assert torch.equal(m[0, 0].reshape(4, 4), expected)


def test_block_mask_rectangles():
    # A block of scale 0.25 with aspect 1 on a 4x4 frame is exactly a 2x2 square.
    m = block_mask((64, 3, 16), 4, 4, num_blocks=1, scale=(0.25, 0.25), aspect_ratio=(1.0, 1.0), generator=gen())
    assert (m.sum(-1) == 4).all()
    grid = m.reshape(64, 3, 4, 4)
    rows, cols = grid.any(-1).sum(-1), grid.any(-2).sum(-1)
    assert (rows == 2).all() and (cols == 2).all()  # a solid 2x2 rectangle, not 4 scattered tokens
    assert not torch.equal(m[:, 0], m[:, 1])  # each frame its own rectangle...
    tube = block_mask((64, 3, 16), 4, 4, 1, (0.25, 0.25), (1.0, 1.0), tube=True, generator=gen())
    assert torch.equal(tube[:, 0], tube[:, 1]) and torch.equal(tube[:, 1], tube[:, 2])  # ...or the same through time
    several = block_mask((64, 1, 64), 8, 8, num_blocks=3, scale=(0.05, 0.1), generator=gen())
    assert (several.sum(-1) >= 3).all() and (several.sum(-1) <= 3 * 7).all()


def test_builders_compose_with_and_or():
    a = random_mask((8, 4, 16), 0.5, gen(1))
    b = maskable_after_first_frame((8, 4, 16))
    assert not (a & b)[:, 0].any() and torch.equal((a & b)[:, 1:], a[:, 1:])
    assert (a | ~a).all()
    p = bernoulli_per_frame((8, 4, 16), torch.tensor([0.0, 1.0, 0.0, 1.0]).reshape(1, 4, 1), gen())
    assert not p[:, [0, 2]].any() and p[:, [1, 3]].all()


@pytest.mark.parametrize("call, message", [
    (lambda: random_mask((1, 1, 4), 1.5), "mask ratio = 1.5 must be in"),
    (lambda: random_mask((1, 1, 4), -0.1), "mask ratio = -0.1 must be in"),
    (lambda: block_mask((1, 1, 16), 4, 4, scale=(0.0, 0.5)), "block scale range"),
    (lambda: block_mask((1, 1, 16), 4, 4, scale=(0.5, 1.2)), "block scale range"),
    (lambda: block_mask((1, 1, 16), 4, 4, num_blocks=0), "num_blocks"),
    (lambda: block_mask((1, 1, 16), 4, 4, aspect_ratio=(2.0, 1.0)), "aspect ratio"),
    (lambda: block_mask((1, 1, 16), 3, 4), "height \\* width"),
    (lambda: maskable_off_lattice((1, 1, 16), 4, 4, stride=0), "stride = 0 must be >= 1"),
    (lambda: maskable_off_lattice((1, 1, 16), 4, 4, stride=2, offset=2), "offset = 2"),
    (lambda: maskable_between_prompt_frames((1, 4, 4), period=0), "period = 0"),
])
def test_builders_validate_their_parameters(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_tube_collator_keeps_frame_0_visible_and_the_same_tube_after_it():
    """Regression: the tube mask is expanded over time, and ANDing the visible first frame into it in
    place raised a RuntimeError (found by the pattern study)."""
    from genie.masking.collators import get_masked_pretrain_collator
    from genie.model.config import GenieConfig
    from genie.training.masked_pretrain_config import MaskedPretrainConfig

    config = GenieConfig.from_json_file("configs/small.json")
    collator = get_masked_pretrain_collator(MaskedPretrainConfig(mask_pattern="tube", prompt_frame_period=4), config)
    mask = collator.build_mask(torch.zeros(4, config.T, config.S, dtype=torch.long), 0.5, torch.Generator().manual_seed(0))
    assert not mask[:, 0].any() and not mask[:, 4].any() and mask[:, 1].any()
    assert all(torch.equal(mask[:, 1], mask[:, t]) for t in (2, 3, 5, 6, 7))


# ----- dynamics-aware (importance) masking
def test_changed_tokens_marks_what_differs_from_the_previous_frame():
    from genie.masking.masks import changed_tokens

    tokens = torch.tensor([[[1, 2, 3], [1, 5, 3], [4, 5, 3]]])
    assert changed_tokens(tokens).tolist() == [[[False, False, False], [False, True, False], [True, False, False]]]


def test_importance_mask_at_focus_one_masks_only_important_tokens():
    from genie.masking.masks import importance_mask

    g = torch.Generator().manual_seed(0)
    important = torch.rand(64, 4, 32, generator=g) < 0.2
    mask = importance_mask(important, ratio=1.0, focus=1.0, generator=g)
    assert torch.equal(mask, important)  # ratio 1: every important token, and nothing else
    mask = importance_mask(important, ratio=0.1, focus=1.0, generator=g)
    assert not (mask & ~important).any() and mask.any()


def test_importance_mask_meets_the_ratio_in_expectation_and_favours_important_tokens():
    from genie.masking.masks import importance_mask

    g = torch.Generator().manual_seed(1)
    important = torch.zeros(2000, 2, 64, dtype=torch.bool)
    important[..., :8] = True  # 1/8 of each frame
    mask = importance_mask(important, ratio=0.25, focus=0.5, generator=g)
    assert abs(mask.double().mean().item() - 0.25) < 0.003
    # weights: important 1, static 0.5 -> c * (8 * 1 + 56 * 0.5) = 16 -> p 4/9 and 2/9
    assert abs(mask[..., :8].double().mean().item() - 4 / 9) < 0.01
    assert abs(mask[..., 8:].double().mean().item() - 2 / 9) < 0.005
    uniform = importance_mask(important, ratio=0.25, focus=0.0, generator=g)
    assert abs(uniform[..., :8].double().mean().item() - 0.25) < 0.01


def test_importance_mask_is_seeded_and_caps_at_the_weighted_tokens():
    from genie.masking.masks import importance_mask

    important = torch.zeros(4, 3, 16, dtype=torch.bool)
    important[:, 1, :3] = True
    a = importance_mask(important, 0.5, 0.7, torch.Generator().manual_seed(5))
    b = importance_mask(important, 0.5, 0.7, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # frame 0 and 2 have no important token: uniform at the ratio; focus 1 there masks nothing
    only = importance_mask(important, 0.5, 1.0, torch.Generator().manual_seed(5))
    assert not only[:, [0, 2]].any() and only[:, 1, :3].all()


def test_stage_two_dynamics_focus_masks_changed_tokens_more_often_and_off_is_the_reference_draw():
    from genie.masking.collators import get_maskgit_collator
    from genie.model.config import GenieConfig

    config = GenieConfig(num_layers=1, num_heads=2, d_model=32, T=4, S=64, image_vocab_size=256,
                         num_factored_vocabs=2, max_corrupt_rate=0.0, num_prompt_frames=1)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (256, 1, 64), generator=g).repeat(1, 4, 1)
    tokens[:, 1:, :8] = torch.randint(0, 256, (256, 3, 8), generator=g)  # the first 8 tokens change every frame
    batch = {"input_ids": tokens}
    plain = get_maskgit_collator(config)(batch, generator=torch.Generator().manual_seed(1))
    off = get_maskgit_collator(config, 0.0)(batch, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain["loss_mask"], off["loss_mask"])
    focused = get_maskgit_collator(config, 0.8)(batch, generator=torch.Generator().manual_seed(1))["loss_mask"]
    changed, static = focused[:, 1:, :8].double().mean(), focused[:, 1:, 8:].double().mean()
    assert changed > 1.4 * static  # weights 1 vs 0.2, capped at 1: stage 2 masks 64% of a frame on average
    # the expected masked count per frame is kept: close to the reference draw's
    assert abs(focused.double().mean() - plain["loss_mask"].double().mean()) < 0.03


def test_stage_one_dynamics_pattern_weighs_changed_tokens_and_refuses_focus_one():
    import pytest

    from genie.errors import ConfigError
    from genie.masking.collators import get_masked_pretrain_collator
    from genie.model.config import GenieConfig
    from genie.training.masked_pretrain_config import MaskedPretrainConfig

    config = GenieConfig.from_json_file("configs/small.json")
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (64, 1, config.S), generator=g).repeat(1, config.T, 1)
    tokens[:, 1::2, :4] += 1  # 4 tokens change at every frame after the first
    collator = get_masked_pretrain_collator(MaskedPretrainConfig(mask_pattern="dynamics", dynamics_focus=0.9), config)
    mask = collator({"input_ids": tokens}, generator=g, ratio=0.25)["loss_mask"]
    assert not mask[:, 0].any()  # the first frame stays visible
    assert mask[:, 1:, :4].double().mean() > 5 * mask[:, 1:, 4:].double().mean()
    assert abs(mask[:, 1:].double().mean().item() - 0.25) < 0.02
    with pytest.raises(ConfigError, match="--dynamics_focus 1.0 must be in"):
        MaskedPretrainConfig(mask_pattern="dynamics", dynamics_focus=1.0)
