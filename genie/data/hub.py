"""The 1X World Model Challenge's data and published GENIE checkpoints, fetched with the Hugging Face
hub client (`scripts/download_1x.py`, and a hub id given as `--checkpoint_dir` of evaluate.py or generate.py).
Nothing else in the project downloads anything. No network, offline mode, a refusal of the hub and a call that
returns without what was asked for are each one line (genie/errors.py `DownloadError`)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from genie.errors import ConfigError, DownloadError
from genie.files import causes, one_line_write_failures

DATASET_REPO = "1x-technologies/worldmodel"  # the challenge's dataset (train_v1.1/, val_v1.1/, v2.0 folders)
MODEL_REPOS = {"GENIE_35M": "1x-technologies/GENIE_35M", "GENIE_138M": "1x-technologies/GENIE_138M"}
VERSIONS = ("v1.1", "v2.0")
MODEL_FILES = ("config.json", "model.safetensors")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_BY_HAND = "run it where huggingface.co can be reached, or copy the files in by hand"


def download_challenge(version: str | None, models: list[str], output_dir: str | Path,
                       snapshot_download: Callable | None = None) -> list[Path]:
    """Download the train and val splits of `version` into <output_dir>/train_<version>/ and val_<version>/,
    and each named checkpoint into <output_dir>/<name>/; returns the folders, each checked to hold what was
    asked for. `snapshot_download` is the hub client's function (replaceable in tests); an interrupted
    download resumes where it stopped."""
    if version is not None and version not in VERSIONS:
        raise ConfigError(f"--version {version!r} must be one of {', '.join(VERSIONS)}")
    unknown = [m for m in models if m not in MODEL_REPOS]
    if unknown:
        raise ConfigError(f"--models {','.join(unknown)}: unknown; choose from {', '.join(MODEL_REPOS)}")
    if version is None and not models:
        raise ConfigError("nothing to download: pass --version v1.1 (or v2.0) and/or --models GENIE_35M")
    out = Path(output_dir)
    folders = []
    with one_line_write_failures(out, "an interrupted download resumes where it stopped", "run the command again"):
        if version is not None:
            splits = [out / f"train_{version}", out / f"val_{version}"]
            hub_download(f"--version {version}", snapshot_download, repo_id=DATASET_REPO, repo_type="dataset",
                         local_dir=str(out), allow_patterns=[f"train_{version}/*", f"val_{version}/*"])
            folders += [_arrived(f"--version {version}", split) for split in splits]
        for name in models:
            hub_download(f"--models {name}", snapshot_download, repo_id=MODEL_REPOS[name], repo_type="model",
                         local_dir=str(out / name))
            folders.append(_arrived(f"--models {name}", out / name, MODEL_FILES))
    return folders


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a hub repository id (owner/name) and is no local path (nor under a local folder)."""
    return (name is not None and _HUB_ID.fullmatch(name) is not None and not Path(name).exists()
            and not Path(name.split("/")[0]).exists())


def checkpoint_or_hub_id(name: str, flag: str = "checkpoint_dir", snapshot_download: Callable | None = None) -> Path:
    """A local model folder as given, or a hub id (as 1xgpt accepts, e.g. 1x-technologies/GENIE_35M) fetched into
    the hub's cache by the same client as scripts/download_1x.py; offline, one line."""
    if not is_hub_id(name):
        return Path(name)
    return hub_download(f"--{flag} {name} (no such local folder: taken as a hub id)", snapshot_download,
                        repo_id=name, repo_type="model")


def hub_download(what: str, snapshot_download: Callable | None, **kwargs) -> Path:
    """The hub client's snapshot_download(**kwargs); no network, offline mode or a refusal is one line."""
    if snapshot_download is None:
        from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(**kwargs) or kwargs.get("local_dir", ""))
    except Exception as error:
        reason = _hub_failure(error)
        if reason is None:
            raise
        raise DownloadError(f"{what}: cannot download from the Hugging Face hub: {reason}; {_BY_HAND}") from None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_failure(error: BaseException) -> str | None:
    """Why the hub client failed, in a few words, for a network, offline or hub error; None for anything else."""
    import httpx
    from huggingface_hub import errors

    chain = list(causes(error))
    if _offline() or any(isinstance(e, errors.OfflineModeIsEnabled) for e in chain):
        return "offline mode is on (HF_HUB_OFFLINE is set) and the hub's local cache does not hold it"
    first_line = " ".join(str(error).split())[:160]
    if any(isinstance(e, (errors.LocalEntryNotFoundError, httpx.TransportError, ConnectionError)) for e in chain):
        return f"no connection to huggingface.co ({first_line})"
    if isinstance(error, errors.HfHubHTTPError):
        return f"the hub refused ({first_line})"
    return None


def _arrived(what: str, folder: Path, files: tuple[str, ...] = ()) -> Path:
    """`folder`, after a download: it must exist and hold something (the named `files`, where given)."""
    missing = [name for name in files if not (folder / name).is_file()]
    if not folder.is_dir() or not any(folder.iterdir()) or missing:
        state = f"lacks {', '.join(missing)}" if folder.is_dir() and missing else "is empty" if folder.is_dir() \
            else "does not exist"
        offline = " (offline mode is on: HF_HUB_OFFLINE is set)" if _offline() else ""
        raise DownloadError(f"{what}: the hub client returned, but {folder} {state}{offline}; nothing usable was "
                            f"downloaded: {_BY_HAND}")
    return folder
