"""The benchmark program: `python -m scripts.bench` (__main__.py) from the repository root."""
