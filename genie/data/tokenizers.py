"""Tokenizers that turn frames into token grids and back: one interface for every data source that can
be shown in pixels.

- `PatchTokenizer`: the built-in world's exact tokenizer (a p x p patch of grey levels -> one base-`levels`
  number); decoding is exact.
- `CodebookTokenizer`: a learned patch codebook (k-means centroids of p x p RGB patches, fitted with
  scikit-learn's MiniBatchKMeans by `fit_codebook`); a patch becomes the id of its nearest centroid and
  decodes to that centroid. Recorded Atari data uses it (genie/data/atari.py).

`tokenizer_from_metadata(metadata, data_dir)` finds a split's tokenizer from its metadata.json (None for
data without a decoder, e.g. 1X data): the pictures, the rollout PSNR and scripts/generate.py use it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from genie.errors import ConfigError, DataFormatError

PALETTE = np.array([[24, 28, 40], [70, 90, 120], [150, 160, 130], [250, 200, 60]], dtype=np.uint8)
CODEBOOK_KIND = "patch_codebook"  # metadata["tokenizer"]["kind"] of a learned codebook


@runtime_checkable
class Tokenizer(Protocol):
    """Frames <-> token grids. `peak` is the largest pixel value `decode` can return (for PSNR)."""

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids (ids lie in [0, vocab_size))."""

    @property
    def peak(self) -> float:
        """The pixel peak value of decoded frames (255 for uint8 RGB)."""

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W) or (N, H, W, C) frames -> (N, H/p, W/p) int64 token ids."""

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., h, w) token ids -> (..., H, W) or (..., H, W, C) pixels."""

    def to_rgb(self, tokens: np.ndarray, scale: int = 4) -> np.ndarray:
        """(..., h, w) token ids -> (..., H*scale, W*scale, 3) uint8, for pictures."""


@dataclass(frozen=True)
class PatchTokenizer:
    """Fixed, invertible tokenizer: a patch x patch block of grey levels -> one integer id."""
    patch: int
    levels: int

    @property
    def vocab_size(self) -> int:
        return self.levels ** (self.patch * self.patch)

    @property
    def peak(self) -> float:
        return float(self.levels - 1)

    @classmethod
    def for_vocab(cls, vocab_size: int) -> "PatchTokenizer":
        for tokenizer in (cls(3, 4), cls(2, 4)):
            if tokenizer.vocab_size == vocab_size:
                return tokenizer
        raise ValueError(f"the built-in dataset supports image_vocab_size 262144 (3x3 patches, 4 levels) or 256 "
                         f"(2x2 patches, 4 levels), not {vocab_size}; pass --train_data_dir for other data")

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) grey levels -> (N, H/p, W/p) token ids."""
        n, height, width = images.shape
        p = self.patch
        blocks = images.reshape(n, height // p, p, width // p, p).transpose(0, 1, 3, 2, 4).reshape(n, height // p, width // p, p * p)
        weights = self.levels ** np.arange(p * p, dtype=np.int64)
        return (blocks.astype(np.int64) * weights).sum(-1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., h, w) token ids -> (..., h*p, w*p) grey levels. Inverse of `encode`."""
        tokens = np.asarray(tokens, dtype=np.int64)
        p = self.patch
        digits = (tokens[..., None] // self.levels ** np.arange(p * p)) % self.levels  # (..., h, w, p*p)
        *lead, h, w, _ = digits.shape
        blocks = digits.reshape(*lead, h, w, p, p)
        return np.moveaxis(blocks, -2, -3).reshape(*lead, h * p, w * p)

    def to_rgb(self, tokens: np.ndarray, scale: int = 4) -> np.ndarray:
        """(..., h, w) token ids -> (..., H*scale, W*scale, 3) uint8 for pictures (grey levels -> PALETTE)."""
        grey = self.decode(tokens)
        rgb = PALETTE[np.clip(grey * (len(PALETTE) - 1) // max(self.levels - 1, 1), 0, len(PALETTE) - 1)]
        return rgb.repeat(scale, axis=-3).repeat(scale, axis=-2)


def to_patches(frames: np.ndarray, patch: int) -> np.ndarray:
    """(N, H, W, C) -> (N, H/p, W/p, p*p*C), each patch's pixels row by row, channels last."""
    n, height, width, channels = frames.shape
    p = patch
    if height % p or width % p:
        raise ValueError(f"frames of {height}x{width} pixels do not split into {p}x{p} patches")
    blocks = frames.reshape(n, height // p, p, width // p, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, height // p, width // p, p * p * channels)


def from_patches(patches: np.ndarray, patch: int, channels: int) -> np.ndarray:
    """(..., h, w, p*p*C) -> (..., h*p, w*p, C); the inverse of `to_patches`."""
    *lead, h, w, _ = patches.shape
    blocks = patches.reshape(*lead, h, w, patch, patch, channels)
    return np.moveaxis(blocks, -3, -4).reshape(*lead, h * patch, w * patch, channels)


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 2-d uint8 array and, per input row, the index of its distinct row."""
    rows = np.ascontiguousarray(rows)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return rows[first], inverse.ravel()


def nearest_centroid(points: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean distance, float64; ties -> the lowest index) per row."""
    centroids = centroids.astype(np.float64)
    norms = (centroids ** 2).sum(1)
    out = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), chunk):
        block = points[start:start + chunk].astype(np.float64)
        out[start:start + chunk] = np.argmin(norms[None, :] - 2.0 * block @ centroids.T, axis=1)
    return out


@dataclass(frozen=True, eq=False)
class CodebookTokenizer:
    """A learned patch codebook: `centroids` (vocab_size, p*p*C) float32 pixel values in [0, 255]."""
    centroids: np.ndarray
    patch: int
    channels: int = 3

    @property
    def vocab_size(self) -> int:
        return len(self.centroids)

    @property
    def peak(self) -> float:
        return 255.0

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, C) or (N, H, W) uint8 -> (N, H/p, W/p) ids of the nearest centroids. Each distinct patch
        is looked up once (game frames repeat the same patches a lot)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[..., None]
        patches = to_patches(frames, self.patch)
        distinct, inverse = distinct_rows(patches.reshape(-1, patches.shape[-1]))
        return nearest_centroid(distinct, self.centroids)[inverse].reshape(patches.shape[:3])

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., h, w) ids -> (..., H, W, C) uint8 (H, W without C for one channel): each patch its centroid."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= len(self.centroids)):
            bad = int(tokens.max()) if tokens.max() >= len(self.centroids) else int(tokens.min())
            raise DataFormatError(f"token id {bad} is outside this codebook's {len(self.centroids)} entries: the tokens "
                                  "come from another tokenizer or a model whose image_vocab_size exceeds the codebook")
        pixels = np.clip(np.rint(self.centroids), 0, 255).astype(np.uint8)[tokens]
        frames = from_patches(pixels, self.patch, self.channels)
        return frames[..., 0] if self.channels == 1 else frames

    def to_rgb(self, tokens: np.ndarray, scale: int = 4) -> np.ndarray:
        frames = self.decode(tokens)
        if self.channels == 1:
            frames = np.repeat(frames[..., None], 3, axis=-1)
        return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)

    def save(self, path: str | Path) -> None:
        """The centroids as a .npy file (float32, no pickle)."""
        np.save(path, self.centroids.astype(np.float32), allow_pickle=False)

    def metadata(self, file_name: str) -> dict[str, Any]:
        """What a split's metadata.json records of this tokenizer: `file_name` is relative to the split."""
        return {"kind": CODEBOOK_KIND, "file": file_name, "patch": self.patch, "channels": self.channels,
                "vocab_size": self.vocab_size}


def fit_codebook(frames: np.ndarray, patch: int, vocab_size: int, seed: int, max_patches: int = 100_000,
                 distinct: bool = True) -> CodebookTokenizer:
    """Fit a codebook to the p x p patches of (N, H, W, C) uint8 frames with scikit-learn's MiniBatchKMeans
    (seeded). With `distinct` each distinct patch counts once, so that rare patches (a ball, a sprite)
    weigh as much as the background that fills most of every frame. At most `max_patches` patches (a
    seeded sample) enter the fit. Fewer distinct patches than `vocab_size`: the codebook is exact (the
    patches themselves, the last one repeated to fill the vocabulary)."""
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError:
        raise DataFormatError('fitting a codebook needs scikit-learn: pip install -e ".[atari]"') from None
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    patches = to_patches(frames, patch).reshape(-1, patch * patch * frames.shape[-1])
    unique = distinct_rows(patches)[0]
    if len(unique) <= vocab_size:
        centroids = np.concatenate([unique, np.repeat(unique[-1:], vocab_size - len(unique), axis=0)])
        return CodebookTokenizer(centroids.astype(np.float32), patch, frames.shape[-1])
    if max_patches < vocab_size:  # scikit-learn would fail on fewer samples than clusters
        raise ConfigError(f"a codebook of {vocab_size} entries is fitted on at most {max_patches} patches, but "
                          "k-means needs a patch for each entry: raise the patch count (--codebook_patches)")
    data = unique if distinct else patches
    rng = np.random.default_rng(seed)
    if len(data) > max_patches:
        data = data[np.sort(rng.choice(len(data), max_patches, replace=False))]
    kmeans = MiniBatchKMeans(n_clusters=vocab_size, random_state=seed, batch_size=4096, n_init=1,
                             max_no_improvement=20, max_iter=20)
    kmeans.fit(data.astype(np.float32))
    return CodebookTokenizer(kmeans.cluster_centers_.astype(np.float32), patch, frames.shape[-1])


def load_codebook(spec: dict, data_dir: str | Path) -> CodebookTokenizer:
    """The codebook a split's metadata names (`spec` = metadata["tokenizer"]), read from its split folder: a
    file outside the folder, an archive, pickled or non-numeric values, or a shape or range that does not fit
    the metadata are one-line DataFormatErrors (allow_pickle is never set)."""
    meta = Path(data_dir) / "metadata.json"
    patch, channels, vocab = (_positive_int(spec, key, meta) for key in ("patch", "channels", "vocab_size"))
    path = _codebook_path(spec.get("file"), Path(data_dir), meta)
    try:
        centroids = np.load(path, mmap_mode="r", allow_pickle=False)  # the header is checked before any value is read
    except (ValueError, OSError, EOFError) as error:
        raise DataFormatError(f"{path} is not a readable .npy codebook ({str(error)[:120]}); record the data "
                              "again") from None
    if not isinstance(centroids, np.ndarray):  # an .npz archive (np.load returns an NpzFile)
        centroids.close()
        raise DataFormatError(f"{path} is an .npz archive, not one .npy array; save the codebook with np.save "
                              "(or record the data again)")
    if centroids.dtype.kind not in "fiu":
        raise DataFormatError(f"{path} holds {centroids.dtype} values, not pixel values (float32); record the data "
                              "again")
    if centroids.shape != (vocab, patch * patch * channels):
        raise DataFormatError(f"{path} holds an array of shape {centroids.shape}, expected ({vocab}, "
                              f"{patch}*{patch}*{channels}) as {meta} says; record the data again")
    centroids = np.array(centroids, dtype=np.float32)  # a copy: the file is not held open
    if not (np.isfinite(centroids) & (centroids >= 0) & (centroids <= 255)).all():
        raise DataFormatError(f"{path} holds values that are NaN, infinite or outside the pixel range [0, 255]; "
                              "record the data again")
    return CodebookTokenizer(centroids, patch, channels)


def _positive_int(spec: dict, key: str, meta: Path) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DataFormatError(f"{meta}: tokenizer.{key} = {str(repr(value))[:40]} must be a positive integer; "
                              "record the data again")
    return value


def _codebook_path(name: Any, data_dir: Path, meta: Path) -> Path:
    """The codebook file, which must lie inside the split folder (a path out of it, absolute or through
    '..' or a link, is refused: metadata.json may not make a command read another file)."""
    if not isinstance(name, str) or not name:
        raise DataFormatError(f"{meta}: tokenizer.file = {str(repr(name))[:40]} must name the codebook's .npy file "
                              "in the split folder; record the data again")
    path = data_dir / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(data_dir.resolve()):
        raise DataFormatError(f"{meta}: tokenizer.file {name[:80]!r} points outside the split folder {data_dir}; "
                              "the codebook must lie in the split: copy it there and name it by its file name")
    if not path.is_file():
        raise DataFormatError(f"{path} is missing: {meta} names it as the tokenizer's codebook; copy it from the "
                              "recording's train/ folder or record the data again")
    return path


def tokenizer_from_metadata(metadata: dict, data_dir: str | Path | None = None) -> Tokenizer | None:
    """The tokenizer a split's metadata records, or None for data without a decoder (e.g. 1X data):
    the built-in world's `builtin_tokenizer`, or a `tokenizer` of kind patch_codebook whose file lies in
    (or relative to) `data_dir`, the split's folder."""
    spec = metadata.get("builtin_tokenizer")
    if spec:
        return PatchTokenizer(spec["patch"], spec["levels"])
    spec = metadata.get("tokenizer")
    if not isinstance(spec, dict) or spec.get("kind") != CODEBOOK_KIND:
        return None
    if data_dir is None:
        raise ValueError("a codebook tokenizer is read from its data folder: pass data_dir")
    return load_codebook(spec, data_dir)


def tokenizer_for_folder(data_dir: str | Path) -> Tokenizer | None:
    """The tokenizer of a split folder (from its metadata.json), or None when it has none or no metadata."""
    path = Path(data_dir) / "metadata.json"
    return tokenizer_from_metadata(json.loads(path.read_text()), data_dir) if path.is_file() else None
