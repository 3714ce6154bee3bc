"""Wrong ONNX inputs (issue 21): each stops scripts/generate.py or scripts/export_onnx.py with exit 2 and
one line on stderr naming the folder or flag and the fix, and nothing is written, changed or deleted
(checked on a snapshot of every file under the case's folder)."""
import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
import pytest
import torch

from genie.files import file_sha256
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import TINY, assert_refused, run_script

MAINS = {"generate": functools.partial(run_script, "generate"),
         "export": functools.partial(run_script, "export_onnx")}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two saved models (d_model 64 and 32) and their exports, made once; cases work on copies."""
    root = tmp_path_factory.mktemp("onnx-inputs")
    for name, d_model in (("model", 64), ("other", 32)):
        STMaskGIT(GenieConfig(**{**TINY, "d_model": d_model})).save_pretrained(root / name)
        run_script("export_onnx", ["--checkpoint_dir", str(root / name), "--output_dir", str(root / f"{name}_onnx")])
    return root


class Env:
    def __init__(self, tmp: Path, made: Path, data):
        self.tmp, self.made, self.data = tmp, made, data

    def copy(self, name: str) -> Path:
        """A private copy of a made model or export folder."""
        if not (self.tmp / name).exists():
            shutil.copytree(self.made / name, self.tmp / name)
        return self.tmp / name

    def gen(self, onnx_dir, checkpoint=None) -> list[str]:
        return ["--checkpoint_dir", str(checkpoint or self.copy("model")), "--val_data_dir", str(self.data[1]),
                "--output_dir", str(self.tmp / "generated"), "--num_examples", "1", "--backend", "onnxruntime",
                "--onnx_dir", str(onnx_dir)]

    def export(self, output_dir, *extra) -> list[str]:
        return ["--checkpoint_dir", str(self.copy("model")), "--output_dir", str(output_dir), *extra]


def truncated(folder: Path, name: str = "full.onnx") -> Path:
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    return folder


def edited_record(folder: Path, **changes) -> Path:
    record = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**record, **changes}))
    return folder


def external_data_outside(folder: Path) -> Path:
    """full.onnx rewritten so that its largest weight lives in external data at ../weights.bin (outside the
    folder), with a record that matches it: only ONNX Runtime's own check stands in the way."""
    (folder.parent / "weights.bin").write_bytes(b"\0" * 4096)
    model = onnx.load(str(folder / "full.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../weights.bin"), ("offset", "0"), ("length", "4096")):
        tensor.external_data.add(key=key, value=value)
    onnx.save(model, str(folder / "full.onnx"))
    record = json.loads((folder / "config.json").read_text())
    record["graphs"]["full"]["sha256"] = file_sha256(folder / "full.onnx")
    (folder / "config.json").write_text(json.dumps(record))
    return folder


def mixed_record(env) -> Path:
    """An export folder whose config.json was copied from the other model's export."""
    folder = env.copy("model_onnx")
    shutil.copy(env.copy("other_onnx") / "config.json", folder / "config.json")
    return folder


@dataclass
class Case:
    cli: str
    argv: Callable[[Env], list[str]]
    expected: str


CASES = {
    "generate with another model's export": Case(
        "generate", lambda e: e.gen(e.copy("other_onnx")),
        "is the export of another model than --checkpoint_dir"),
    "generate with an export of other weights": Case(
        "generate", lambda e: e.gen(e.copy("model_onnx"), checkpoint=retrained(e)),
        "was exported from other weights than --checkpoint_dir"),
    "generate with a truncated full.onnx": Case(
        "generate", lambda e: e.gen(truncated(e.copy("model_onnx"))), "full.onnx does not match config.json"),
    "generate with cached_step.onnx missing": Case(
        "generate", lambda e: e.gen(removed(e.copy("model_onnx"), "cached_step.onnx")),
        "cached_step.onnx is missing (config.json lists it)"),
    "generate with a config.json from another export": Case(
        "generate", lambda e: e.gen(mixed_record(e)), "does not match config.json"),
    "generate with a model folder as --onnx_dir": Case(
        "generate", lambda e: e.gen(e.copy("model")), "config.json is not the record of an ONNX export; it is a model"),
    "generate with a missing --onnx_dir": Case(
        "generate", lambda e: e.gen(e.tmp / "nowhere"), "does not exist; pass the folder written by"),
    "generate with an export of an older format": Case(
        "generate", lambda e: e.gen(edited_record(e.copy("model_onnx"), format=None)),
        "was written by an older scripts/export_onnx.py"),
    "generate with external data outside the folder": Case(
        "generate", lambda e: e.gen(external_data_outside(e.copy("model_onnx"))), "ONNX Runtime cannot load full.onnx"),
    "export over another model's export": Case(
        "export", lambda e: e.export(e.copy("other_onnx")),
        "holds the ONNX export of another model (d_model 32 in the export vs 64 in --checkpoint_dir); pass --overwrite"),
    "export into a model folder": Case(
        "export", lambda e: e.export(e.copy("other")), "holds config.json but no ONNX export record"),
    "export into a model folder with --overwrite": Case(
        "export", lambda e: e.export(e.copy("other"), "--overwrite"), "not replaced, even with --overwrite"),
}


def retrained(env) -> Path:
    """The same architecture with other weights."""
    folder = env.tmp / "retrained"
    model = STMaskGIT.from_pretrained(env.copy("model"))
    with torch.no_grad():
        model.out_x_proj.bias.add_(0.01)
    model.save_pretrained(folder)
    return folder


def removed(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_onnx_input(name, made, tiny_data, tmp_path, capsys):
    case = CASES[name]
    argv = case.argv(Env(tmp_path, made, tiny_data))
    assert_refused(name, MAINS[case.cli], argv, case.expected, tmp_path, capsys)


def test_export_replaces_the_same_models_export_and_another_only_with_overwrite(made, tmp_path):
    model, other = (shutil.copytree(made / name, tmp_path / name) for name in ("model", "other_onnx"))
    same = shutil.copytree(made / "model_onnx", tmp_path / "model_onnx")
    run_script("export_onnx", ["--checkpoint_dir", str(model), "--output_dir", str(same)])  # the same model: no flag
    record = run_script("export_onnx", ["--checkpoint_dir", str(model), "--output_dir", str(other), "--overwrite"])
    assert record["weights_sha256"] == file_sha256(model / "model.safetensors")
    assert json.loads((other / "config.json").read_text())["genie_config"]["d_model"] == 64
