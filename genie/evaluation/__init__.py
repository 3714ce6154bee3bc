"""Evaluation, one for training, scripts/evaluate.py and the studies: per-window scores (the challenge
metric, rollouts, their references; `scores.py`), the loop over a val split that sums them into a report
(`loop.py`), the report's files, tables and headline (`report.py`), its pictures (`pictures.py`) and the
val windows that generation starts from (`examples.py`)."""
