"""Model configuration: a typed dataclass with JSON load/save and one-line validation errors.

The field names and defaults of the model part follow the reference GENIE implementation
(github 1x-technologies/1xgpt, `genie/config.py`) so that its `config.json` files load unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genie.errors import ConfigError
from genie.files import read_json_object

TEMPORAL_ATTENTION_MODES = ("causal", "bidirectional")
ACTION_PLACEMENTS = ("own", "previous")
# Fields added after the reference and after checkpoints began recording their model, with the value that
# computes what was computed before them: at that value they are left out of saved configs and of resume
# fingerprints, so the files written before them still load into the reference and still resume.
LATER_FIELDS = {"spatial_rope": False, "action_placement": "own"}


def without_later_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Config fields as a dict, without the LATER_FIELDS at their old value: how configs written before those
    fields and configs written after compare equal. An action-free model's action placement changes nothing,
    so it is left out too."""
    kept = {k: v for k, v in values.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
    if not values.get("action_dims"):
        kept.pop("action_placement", None)
    return kept


@dataclass
class GenieConfig:
    num_layers: int
    num_heads: int
    d_model: int
    T: int = 16  # frames per window
    S: int = 256  # tokens per frame, H * W with H == W
    image_vocab_size: int = 262144  # distinct image tokens; the mask token id is image_vocab_size
    use_mup: bool = False  # reference field; muP is not supported here (must stay False)

    # Large vocabularies are factorized: token = sum_k c_k * factored_vocab_size**k.
    num_factored_vocabs: int = 1
    factored_vocab_size: int | None = None  # derived; a given value must agree

    # Stage-2 (autoregressive MaskGIT) corruption of the training input, as in the reference.
    max_corrupt_rate: float = 0.2  # every token is replaced at a random rate in [0, max_corrupt_rate]
    non_mlm_ratio: float = 0.5  # share of batches that keep prompt frames clean and corrupt later frames more
    num_prompt_frames: int = 8  # first maskable frame of a non-MLM batch is drawn from [num_prompt_frames, T-1]

    # Attention
    qkv_bias: bool = False
    proj_bias: bool = True
    attn_drop: float = 0.0
    qk_norm: bool = True
    temporal_attention: str = "causal"  # "causal" (autoregressive) or "bidirectional" (masked pretraining)
    # Not in the reference: axial 2-D rotary position embedding in spatial attention (genie/model/rotary.py).
    spatial_rope: bool = False

    # MLP
    mlp_ratio: float = 4.0
    mlp_drop: float = 0.0
    mlp_bias: bool = True

    # Action conditioning: {stream name: dim}; each frame's actions are projected and added to its tokens.
    action_dims: dict[str, int] = field(default_factory=dict)
    # Not in the reference: which frame's tokens get frame t's action row, the one that produced frame t:
    # "own" (frame t, as the reference) or "previous" (frame t-1, where what it moves is visible, as in
    # Genie, arXiv 2402.15391; the last frame of the input then gets the learned no-action vector, and
    # frame t-1's prediction sees that action too: see docs/performance.md before using it on data whose
    # actions depend on the frames).
    action_placement: str = "own"

    def __post_init__(self) -> None:
        self._check_types()
        _require(self.num_layers >= 1, "num_layers", self.num_layers, "must be >= 1")
        _require(self.num_heads >= 1, "num_heads", self.num_heads, "must be >= 1")
        _require(self.d_model >= 1, "d_model", self.d_model, "must be >= 1")
        _require(self.d_model % self.num_heads == 0, "d_model", self.d_model,
                 f"must be divisible by num_heads={self.num_heads}")
        _require(self.T >= 2, "T", self.T, "must be >= 2 (a prompt frame and a predicted frame)")
        _require(self.S >= 1 and math.isqrt(self.S) ** 2 == self.S, "S", self.S,
                 "must be a perfect square (S = H*W tokens per frame, e.g. 256 for 16x16)")
        _require(self.image_vocab_size >= 2, "image_vocab_size", self.image_vocab_size, "must be >= 2")
        _require(self.num_factored_vocabs >= 1, "num_factored_vocabs", self.num_factored_vocabs, "must be >= 1")
        root = round(self.image_vocab_size ** (1 / self.num_factored_vocabs))
        candidates = [r for r in (root - 1, root, root + 1) if r > 1 and r ** self.num_factored_vocabs == self.image_vocab_size]
        _require(bool(candidates), "image_vocab_size", self.image_vocab_size,
                 f"must be an exact power {self.num_factored_vocabs} of an integer (num_factored_vocabs)")
        derived = candidates[0]
        _require(self.factored_vocab_size in (None, derived), "factored_vocab_size", self.factored_vocab_size,
                 f"must equal image_vocab_size ** (1/num_factored_vocabs) = {derived} (or be left out)")
        self.factored_vocab_size = derived
        _require(not self.use_mup, "use_mup", self.use_mup, "muP is not supported; set it to false")
        for name in ("max_corrupt_rate", "non_mlm_ratio", "attn_drop", "mlp_drop"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, name, value, "must be in [0, 1]")
        _require(self.num_prompt_frames >= 1, "num_prompt_frames", self.num_prompt_frames, "must be >= 1")
        _require(self.mlp_ratio > 0 and int(self.d_model * self.mlp_ratio) >= 1, "mlp_ratio", self.mlp_ratio,
                 f"must give an MLP of width int(d_model * mlp_ratio) >= 1 (d_model = {self.d_model})")
        _require(self.temporal_attention in TEMPORAL_ATTENTION_MODES, "temporal_attention",
                 self.temporal_attention, f"must be one of {TEMPORAL_ATTENTION_MODES}")
        _require(not self.spatial_rope or (self.d_model // self.num_heads) % 4 == 0, "spatial_rope", self.spatial_rope,
                 f"needs a head width d_model / num_heads = {self.d_model // self.num_heads} divisible by 4")
        _require(self.action_placement in ACTION_PLACEMENTS, "action_placement", self.action_placement,
                 f"must be one of {ACTION_PLACEMENTS}")
        for name, dim in self.action_dims.items():
            _require(isinstance(name, str) and isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1,
                     "action_dims", self.action_dims, "must map stream names to positive integer dims")

    # -- derived quantities -------------------------------------------------------------------
    @property
    def mask_token_id(self) -> int:
        return self.image_vocab_size

    @property
    def h(self) -> int:
        return math.isqrt(self.S)

    @property
    def w(self) -> int:
        return self.h

    @property
    def action_dim(self) -> int:
        return sum(self.action_dims.values())

    @property
    def causal(self) -> bool:
        return self.temporal_attention == "causal"

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_portable_dict(self) -> dict[str, Any]:
        """The form saved in a model's config.json: the fields the reference implementation knows, plus
        temporal_attention / action_dims / LATER_FIELDS only where they differ from what the reference
        computes (causal, no actions, no rotary embedding, actions on their own frame). Such a model loads
        into the reference with the same logits; any other model carries a field the reference refuses,
        instead of loading with other logits."""
        values = self.without_later_defaults()
        if values["temporal_attention"] == "causal":
            del values["temporal_attention"]
        if not values["action_dims"]:
            del values["action_dims"]
        return values

    def without_later_defaults(self) -> dict[str, Any]:
        """All fields, but the LATER_FIELDS at their old value (what a run fingerprint records)."""
        return without_later_defaults(self.to_dict())

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_portable_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config", also_known: tuple[str, ...] = ()
                  ) -> "GenieConfig":
        """`also_known`: other fields the file may hold (read elsewhere), listed in the unknown-field error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown config field(s) {unknown}; known fields are "
                              f"{sorted(known | set(also_known))}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                         and f.name not in values)
        if missing:
            raise ConfigError(f"{source}: missing required config field(s) {missing}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "GenieConfig":
        """Load a config from a JSON file, or from a folder holding `config.json`."""
        path, values = read_config_values(path)
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: Any) -> "GenieConfig":
        return dataclasses.replace(self, **changes)

    def _check_types(self) -> None:
        hints = {"int": int, "float": (int, float), "bool": bool, "str": str}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            type_name = str(f.type).split(" |")[0]
            expected = hints.get(type_name)
            if f.name == "factored_vocab_size" and value is None:
                continue
            if f.name == "action_dims":
                if not isinstance(value, dict):
                    raise ConfigError(f"config field 'action_dims' = {value!r} must be a JSON object {{name: dim}}")
                continue
            if expected is None:
                continue
            # bool is a subclass of int in Python; a bool where a number is expected is a mistake.
            wrong_bool = isinstance(value, bool) and expected is not bool
            if wrong_bool or not isinstance(value, expected):
                raise ConfigError(f"config field '{f.name}' = {value!r} has type {type(value).__name__}, "
                                  f"expected {type_name}")


def read_config_values(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(the file, its JSON object) for a config file, or a folder holding `config.json`."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a GenieConfig JSON file such as configs/tiny.json")
    return path, read_json_object(path, ConfigError, what="config file ")


def _require(ok: bool, name: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"config field '{name}' = {value!r} {what}")
