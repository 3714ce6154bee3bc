"""Checkpoints and run folders: strict safetensors loading, atomic folder writes, each step_N/'s
manifest and its verification, the run folder (what may be replaced, resume lookup), one writer per
run folder (the lock)."""
