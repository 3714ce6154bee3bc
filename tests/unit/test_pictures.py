"""Pictures: wrong tokens outlined in red, frames drawn at 3x at least."""
import numpy as np
from PIL import Image

from genie.data.tokenizers import PatchTokenizer
from genie.evaluation.pictures import _frame_rgb, save_grid


def test_wrong_tokens_are_outlined_in_red_and_right_ones_are_not():
    tokenizer = PatchTokenizer.for_vocab(256)
    tokens = np.zeros((4, 4), dtype=np.int64)
    wrong = np.zeros((4, 4), dtype=bool)
    wrong[1, 2] = True
    rgb = _frame_rgb(tokens, tokenizer, None, scale=3, wrong=wrong)
    block = rgb.shape[0] // 4
    red = np.all(rgb == (230, 20, 20), axis=-1)
    assert red.sum() == 4 * block - 4  # the border of one block
    assert red[block:2 * block, 2 * block:3 * block].sum() == red.sum()
    assert not np.all(_frame_rgb(tokens, tokenizer, None, scale=3) == (230, 20, 20), axis=-1).any()  # none: no red


def test_a_grid_draws_each_frame_at_three_times_its_pixels_at_least(tmp_path):
    tokenizer = PatchTokenizer.for_vocab(256)  # 2x2-pixel patches
    frames = np.zeros((2, 32, 32), dtype=np.int64)  # 64 x 64 pixels, like a recorded Atari frame
    path = save_grid(tmp_path / "grid.png", [("truth", frames), ("prediction", frames, frames != 0)], tokenizer)
    width, _ = Image.open(path).size
    assert width >= 2 * 3 * 64
