"""The 1X World Model Challenge's data and published GENIE checkpoints, fetched with the Hugging Face
hub client (`scripts/download_1x.py`). Nothing else in the project downloads anything."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from genie.errors import ConfigError

DATASET_REPO = "1x-technologies/worldmodel"  # the challenge's dataset (train_v1.1/, val_v1.1/, v2.0 folders)
MODEL_REPOS = {"GENIE_35M": "1x-technologies/GENIE_35M", "GENIE_138M": "1x-technologies/GENIE_138M"}
VERSIONS = ("v1.1", "v2.0")


def download_challenge(version: str | None, models: list[str], output_dir: str | Path,
                       snapshot_download: Callable | None = None) -> list[Path]:
    """Download the train and val splits of `version` into <output_dir>/train_<version>/ and val_<version>/,
    and each named checkpoint into <output_dir>/<name>/; returns the folders. `snapshot_download` is the
    hub client's function (replaceable in tests); an interrupted download resumes where it stopped."""
    if version is not None and version not in VERSIONS:
        raise ConfigError(f"--version {version!r} must be one of {', '.join(VERSIONS)}")
    unknown = [m for m in models if m not in MODEL_REPOS]
    if unknown:
        raise ConfigError(f"--models {','.join(unknown)}: unknown; choose from {', '.join(MODEL_REPOS)}")
    if version is None and not models:
        raise ConfigError("nothing to download: pass --version v1.1 (or v2.0) and/or --models GENIE_35M")
    if snapshot_download is None:
        from huggingface_hub import snapshot_download
    out = Path(output_dir)
    folders = []
    if version is not None:
        snapshot_download(repo_id=DATASET_REPO, repo_type="dataset", local_dir=str(out),
                          allow_patterns=[f"train_{version}/*", f"val_{version}/*"])
        folders += [out / f"train_{version}", out / f"val_{version}"]
    for name in models:
        snapshot_download(repo_id=MODEL_REPOS[name], repo_type="model", local_dir=str(out / name))
        folders.append(out / name)
    return folders
