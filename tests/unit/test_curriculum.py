"""The window-length curriculum (genie/training/curriculum.py): which step trains on how many frames, the
cut itself, and the one-line errors of its flags."""
import pytest
import torch

from genie.errors import ConfigError
from genie.studies.speedrun import VARIANTS, stage2_phases, training_seconds
from genie.training.arguments import TrainingArguments
from genie.training.curriculum import FrameCurriculum, first_frames


def test_each_step_gets_the_frames_of_its_phase():
    half = FrameCurriculum.from_flags("4", "0.5")
    assert [half.frames_at(s, 300, 8) for s in (0, 149, 150, 299)] == [4, 4, 8, 8]
    two = FrameCurriculum.from_flags("2,4", "0.25,0.25")
    assert [two.frames_at(s, 8, 8) for s in range(8)] == [2, 2, 4, 4, 8, 8, 8, 8]
    assert two.phase_ends(10) == [2, 5]  # rounded cumulative shares: round(2.5) = 2, round(5.0) = 5
    assert two.describe(8, 8) == "steps 0-1 on 2 frames, steps 2-3 on 4 frames, steps 4-7 on 8 (T)"
    assert FrameCurriculum.from_flags("4", "0.1").describe(4, 8) == "no step on 4 frames, steps 0-3 on 8 (T)"
    off = FrameCurriculum.from_flags("", "")
    assert [off.frames_at(s, 10, 8) for s in (0, 9)] == [8, 8] and not off.frames


def test_first_frames_cuts_every_per_frame_field_and_keeps_the_action_after():
    batch = {"input_ids": torch.arange(2 * 8 * 3).reshape(2, 8, 3), "actions": torch.ones(2, 8, 2)}
    cut = first_frames(batch, 4)
    assert cut["input_ids"].shape == (2, 4, 3) and cut["actions"].shape == (2, 5, 2)
    assert torch.equal(cut["input_ids"], batch["input_ids"][:, :4])


@pytest.mark.parametrize("frames, fractions, message", [
    ("4", "", "--curriculum_frames has 1 value(s) and --curriculum_fractions 0"),
    ("4,x", "0.5,0.2", "--curriculum_frames '4,x' must be comma-separated ints"),
    ("4", "half", "--curriculum_fractions 'half' must be comma-separated floats"),
    ("4,2", "0.2,0.2", "--curriculum_frames 4,2 must be increasing frame counts >= 2"),
    ("1", "0.5", "--curriculum_frames 1 must be increasing frame counts >= 2"),
    ("2,4", "0.5,0.5", "--curriculum_fractions 0.5,0.5 must each be in (0, 1) and sum to less than 1"),
    ("4", "0", "--curriculum_fractions 0 must each be in (0, 1)"),
])
def test_bad_curriculum_flags_are_one_line(frames, fractions, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainingArguments(curriculum_frames=frames, curriculum_fractions=fractions)


def test_frames_not_below_T_are_refused():
    with pytest.raises(ConfigError, match=r"--curriculum_frames 8 is not shorter than the windows \(T = 8\)"):
        FrameCurriculum.from_flags("4,8", "0.2,0.2").check(8)


def test_speedrun_charges_each_phase_at_its_own_seconds_per_step():
    variant = VARIANTS["short_muon_curriculum"]
    assert stage2_phases(variant) == [("stage2@4", 0, 150), ("stage2", 150, 300)]
    timing = {"stages": {"v/stage2@4": {"s_per_step": 0.1}, "v/stage2": {"s_per_step": 0.3}}}
    assert training_seconds(variant, "v", 100, timing) == pytest.approx(100 * 0.1)
    assert training_seconds(variant, "v", 200, timing) == pytest.approx(150 * 0.1 + 50 * 0.3)


def test_collators_take_windows_of_2_to_T_frames(tiny_config):
    from genie.errors import DataFormatError
    from genie.masking.collators import get_maskgit_collator

    collator = get_maskgit_collator(tiny_config)  # T = 4, S = 16, prompt 2
    short = collator({"input_ids": torch.randint(0, 256, (3, 2, 16))}, generator=torch.Generator().manual_seed(0))
    assert short["loss_mask"].shape == (3, 2, 16) and short["loss_mask"][:, 1].any() and not short["loss_mask"][:, 0].any()
    for frames in (1, 5):
        with pytest.raises(DataFormatError, match=r"expected \(batch, T=4, S=16\) \(or 2 to T frames\)"):
            collator({"input_ids": torch.zeros(3, frames, 16, dtype=torch.long)})
