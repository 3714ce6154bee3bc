"""The library's house rules: installable with pip, imports only itself and third-party packages,
declared dependencies that are really used, one decoding interface."""
import ast
import re
import tomllib
from pathlib import Path

from genie.model.stmaskgit import STMaskGIT
from genie.protocols import MaskGITModel
from tests.conftest import REPO_ROOT

GENIE_DIR = REPO_ROOT / "genie"
TOP_LEVEL_MODULES = {"data", "scripts", "train", "masked_pretrain", "tests"}
# Distribution name -> module it is imported as, where they differ.
IMPORT_NAMES = {"pillow": "PIL", "huggingface_hub": "huggingface_hub", "pyyaml": "yaml", "ale-py": "ale_py",
                "scikit-learn": "sklearn"}
# Used, but through another package rather than imported by ours: accelerate loads it for --report_to.
USED_THROUGH_ANOTHER_PACKAGE = {"tensorboard"}
# Pytest plugins that scripts/test.sh turns on with a flag, never imported: plugin -> the flag.
PLUGINS_OF_THE_TEST_COMMAND = {"pytest-xdist": "-n "}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a file imports (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_genie_imports_nothing_from_the_top_level():
    offenders = {str(p.relative_to(REPO_ROOT)): sorted(imported_modules(p) & TOP_LEVEL_MODULES)
                 for p in GENIE_DIR.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_script_or_test_patches_sys_path():
    files = [*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "scripts").rglob("*.py"), *(REPO_ROOT / "tests").rglob("*.py"),
             *GENIE_DIR.rglob("*.py")]
    patching = [str(p.relative_to(REPO_ROOT)) for p in files
                if p.name != "test_package.py" and re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert patching == []


def declared_requirements() -> tuple[list[str], list[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pyproject = project["dependencies"] + extras["dev"] + extras["onnx"] + extras["atari"]
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return pyproject, requirements


def test_requirements_txt_says_what_pyproject_says():
    pyproject, requirements = declared_requirements()
    assert sorted(pyproject) == sorted(requirements)


def test_every_declared_dependency_is_imported():
    pyproject, _ = declared_requirements()
    names = {re.split(r"[<>=!~\[ ]", spec)[0] for spec in pyproject}
    used = set()
    for path in [*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "scripts").rglob("*.py"), *(REPO_ROOT / "tests").rglob("*.py"),
                 *GENIE_DIR.rglob("*.py")]:
        used |= imported_modules(path)
    test_command = (REPO_ROOT / "scripts" / "test.sh").read_text()
    plugins = {name for name, flag in PLUGINS_OF_THE_TEST_COMMAND.items() if f"pytest -q {flag}" in test_command}
    unused = {n for n in names if IMPORT_NAMES.get(n, n) not in used} - USED_THROUGH_ANOTHER_PACKAGE - plugins
    assert unused == set()


def test_the_model_satisfies_the_decoding_interface(tiny_config):
    assert isinstance(STMaskGIT(tiny_config), MaskGITModel)


def test_no_function_in_genie_is_longer_than_60_lines():
    long = []
    for path in GENIE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(REPO_ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_top_level_data_module_only_re_exports_the_library():
    import data
    import genie.data

    for name in genie.data.__all__:
        assert getattr(data, name) is getattr(genie.data, name)
    assert imported_modules(REPO_ROOT / "data.py") == {"genie"}
