"""Checkpoints and run folders: strict safetensors loading, each step_N/'s manifest and its
verification, the run folder (what may be replaced, resume lookup; `RunFolder`, a training run's
bookkeeping: lock, config.json, save, restore), one writer per run folder (the lock)."""
