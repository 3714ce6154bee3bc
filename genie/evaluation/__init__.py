"""Evaluation, one for training, scripts/evaluate.py and the studies: per-window scores (the challenge
metric, rollouts, their references), the report over a val split, and its tables and pictures."""
