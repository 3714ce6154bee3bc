"""Write the built-in dataset (procedural sprite world, exact patch tokenizer) in the 1X v1.1 format.

    python scripts/builtin_dataset.py --out_dir data/builtin/mine [--grid 16] [--vocab 262144] [--builtin_world steered]

The training commands make it on first use; this command writes it where and how you choose.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from genie.data.builtin import DEFAULT_ROOT, DEFAULT_WORLD, WORLDS, builtin_folder_name, write_builtin_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out_dir", default=None, help="where to write train/ and val/ (default: data/builtin/...)")
    parser.add_argument("--grid", type=int, default=16, help="tokens per frame side (S = grid**2)")
    parser.add_argument("--vocab", type=int, default=262144, choices=[262144, 256])
    parser.add_argument("--train_frames", type=int, default=16384)
    parser.add_argument("--val_frames", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builtin_world", default=DEFAULT_WORLD, choices=list(WORLDS),
                        help="which variant of the world (genie/data/builtin.py)")
    args = parser.parse_args(argv)
    name = builtin_folder_name(args.grid, args.vocab, args.seed, world=args.builtin_world)
    out = Path(args.out_dir) if args.out_dir else DEFAULT_ROOT / name
    train, val = write_builtin_dataset(out, args.grid, args.vocab, args.train_frames, args.val_frames, args.seed,
                                       world=args.builtin_world)
    print(f"wrote {train} and {val}")


if __name__ == "__main__":
    main()
