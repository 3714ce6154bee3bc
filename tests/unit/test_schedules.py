import math

import pytest

from genie.masking.schedules import mask_ratio_at, training_progress


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential"])
@pytest.mark.parametrize("initial, final", [(0.8, 0.1), (0.1, 0.8), (0.5, 0.5), (1.0, 0.0)])
def test_endpoints_monotone_and_bounded(schedule, initial, final):
    values = [mask_ratio_at(i / 100, initial, final, schedule) for i in range(101)]
    assert values[0] == pytest.approx(initial, abs=1e-12) and values[-1] == pytest.approx(final, abs=1e-12)
    step = [b - a for a, b in zip(values, values[1:])]
    assert all(d <= 1e-12 for d in step) if initial >= final else all(d >= -1e-12 for d in step)
    assert all(min(initial, final) - 1e-12 <= v <= max(initial, final) + 1e-12 for v in values)


def test_exact_values():
    assert mask_ratio_at(0.5, 0.8, 0.1, "linear") == pytest.approx(0.45)
    assert mask_ratio_at(0.25, 0.8, 0.1, "linear") == pytest.approx(0.625)
    assert mask_ratio_at(0.5, 0.8, 0.1, "cosine") == pytest.approx(0.45)
    assert mask_ratio_at(0.25, 0.8, 0.1, "cosine") == pytest.approx(0.1 + 0.7 * (1 + math.cos(math.pi / 4)) / 2)
    k = 5.0
    expected = 0.1 + 0.7 * (math.exp(-k * 0.5) - math.exp(-k)) / (1 - math.exp(-k))
    assert mask_ratio_at(0.5, 0.8, 0.1, "exponential") == pytest.approx(expected)
    assert mask_ratio_at(0.5, 0.8, 0.1, "exponential", exponential_k=1.0) > expected  # gentler with small k


def test_second_half_of_cosine_stays_above_final():
    # The naive final + (initial-final)*cos(pi p) goes below `final` (even negative) for p > 0.5.
    assert all(mask_ratio_at(p / 10, 0.8, 0.1, "cosine") >= 0.1 for p in range(11))
    assert 0.1 + 0.7 * math.cos(math.pi * 0.9) < 0


def test_progress_outside_unit_interval_is_clamped_and_bad_names_rejected():
    assert mask_ratio_at(-1, 0.8, 0.1) == pytest.approx(0.8) and mask_ratio_at(2, 0.8, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown mask schedule 'cos'"):
        mask_ratio_at(0.5, 0.8, 0.1, "cos")


def test_constant_schedule_holds_its_ratio_and_refuses_two_ratios():
    from genie.errors import ConfigError
    from genie.training.masked_pretrain_config import MaskedPretrainConfig

    assert [mask_ratio_at(p / 4, 0.3, 0.3, "constant") for p in range(5)] == [0.3] * 5
    with pytest.raises(ValueError, match="initial == final"):
        mask_ratio_at(0.5, 0.8, 0.1, "constant")
    with pytest.raises(ConfigError, match="constant holds one ratio"):
        MaskedPretrainConfig(mask_schedule="constant", initial_mask_ratio=0.8, final_mask_ratio=0.1)


def test_progress_runs_from_the_first_to_the_last_optimizer_step():
    assert [training_progress(step, 5) for step in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert training_progress(0, 1) == 0.0 and training_progress(0, 0) == 0.0  # a one-step run stays at the start
