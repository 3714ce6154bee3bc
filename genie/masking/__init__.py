"""Masks and their randomness: pure mask builders (True = masked), the collators that apply them (one
per masking strategy), the mask-ratio schedules of stage 1 and MaskGIT's unmasking schedule, and
generators seeded from (seed, step, micro-batch)."""
