"""Write the built-in dataset (procedural sprite world, exact patch tokenizer) in the 1X v1.1 format.

    python scripts/builtin_dataset.py --out_dir data/builtin/mine [--grid 16] [--vocab 262144]

The training commands make it on first use; this command writes it where and how you choose.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from genie.data.builtin import DEFAULT_ROOT, WORLD_VERSION, write_builtin_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out_dir", default=None, help="where to write train/ and val/ (default: data/builtin/...)")
    parser.add_argument("--grid", type=int, default=16, help="tokens per frame side (S = grid**2)")
    parser.add_argument("--vocab", type=int, default=262144, choices=[262144, 256])
    parser.add_argument("--train_frames", type=int, default=16384)
    parser.add_argument("--val_frames", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out_dir) if args.out_dir else DEFAULT_ROOT / f"world{WORLD_VERSION}-grid{args.grid}-vocab{args.vocab}-seed{args.seed}"
    train, val = write_builtin_dataset(out, args.grid, args.vocab, args.train_frames, args.val_frames, args.seed)
    print(f"wrote {train} and {val}")


if __name__ == "__main__":
    main()
