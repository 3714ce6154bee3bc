"""Download the 1X World Model Challenge data and the published GENIE checkpoints with the Hugging Face
hub client (needs network access; run it once, every other command reads the local copy).

    python scripts/download_1x.py --version v1.1                       # data/train_v1.1, data/val_v1.1
    python scripts/download_1x.py --version v2.0 --output_dir data     # the challenge's current data
    python scripts/download_1x.py --models GENIE_35M,GENIE_138M        # data/GENIE_35M, data/GENIE_138M
Then, e.g.: python scripts/evaluate.py --checkpoint_dir data/GENIE_35M --val_data_dir data/val_v1.1
               --train_data_dir data/train_v1.1
"""
from __future__ import annotations

from dataclasses import dataclass, field

from genie.checkpointing.run_folder import check_output_folder
from genie.cli import parse, run_cli
from genie.data.hub import MODEL_REPOS, VERSIONS, download_challenge


@dataclass
class DownloadArguments:
    version: str | None = field(default=None, metadata={"help": f"Data version: {' or '.join(VERSIONS)}."})
    models: str = field(default="", metadata={
        "help": f"Comma-separated published checkpoints to fetch: {', '.join(MODEL_REPOS)}."})
    output_dir: str = field(default="data", metadata={"help": "Where the splits and checkpoints go."})

    def __post_init__(self) -> None:
        check_output_folder(self.output_dir)


def main(argv: list[str] | None = None) -> list:
    (args,) = parse([DownloadArguments], __doc__, argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    folders = download_challenge(args.version, models, args.output_dir)
    print("downloaded: " + ", ".join(str(f) for f in folders))
    return folders


if __name__ == "__main__":
    run_cli(main)
