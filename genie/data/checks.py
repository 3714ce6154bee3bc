"""Whole-file content checks of memmapped arrays: chunked and vectorized, so that a 10M-frame file is
read once, in bounded memory, and a bad value is reported with the first frame that holds it."""
from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 1 << 24  # values read per chunk (64 MB of uint32)


def _chunks(array: np.ndarray):
    """(first frame, frames) of consecutive chunks of the leading axis."""
    per_frame = max(int(np.prod(array.shape[1:])), 1)
    step = max(CHUNK_ELEMENTS // per_frame, 1)
    for start in range(0, len(array), step):
        yield start, np.asarray(array[start:start + step]).reshape(-1, per_frame)


def first_token_out_of_range(video: np.ndarray, vocab_size: int) -> tuple[int, int] | None:
    """(frame, token id) of the first token outside [0, vocab_size), or None when every token is valid."""
    for start, chunk in _chunks(video):
        if chunk.size == 0:
            continue
        too_low = chunk.dtype.kind == "i" and chunk.min() < 0
        if chunk.max() < vocab_size and not too_low:
            continue
        bad = (chunk >= vocab_size) | (chunk < 0)
        row = int(np.argmax(bad.any(axis=1)))
        return start + row, int(chunk[row][bad[row]][0])
    return None


def first_nonfinite_frame(values: np.ndarray) -> int | None:
    """The first frame holding a NaN or infinite value, or None."""
    for start, chunk in _chunks(values):
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None
