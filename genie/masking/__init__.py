"""Masks and their randomness: pure mask builders (True = masked), the mask-ratio schedules of
stage 1 and MaskGIT's unmasking schedule, and generators seeded from (seed, step, micro-batch)."""
