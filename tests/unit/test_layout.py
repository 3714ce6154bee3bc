"""The library's layout: a few named subpackages, no import cycle, every user error in one leaf module."""
import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

GENIE_DIR = REPO_ROOT / "genie"


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """genie module -> the genie modules it imports, anywhere in its code (lazy imports inside functions too)."""
    modules = {module_name(p): p for p in GENIE_DIR.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "genie"):
                    graph[name].add(target)
                    break
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_genie_modules():
    graph = import_graph()
    assert len(graph) > 40 and graph["genie.training.trainer"]  # the graph really holds the library's imports
    assert find_cycle(graph) is None


def test_errors_is_a_leaf_and_holds_every_user_error():
    assert import_graph()["genie.errors"] == set()
    defined_elsewhere = []
    for path in GENIE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith(("Error", "Exception"))
                                                      for b in node.bases):
                if path.name != "errors.py":
                    defined_elsewhere.append(f"{path.relative_to(REPO_ROOT)}:{node.name}")
    assert defined_elsewhere == []


def test_about_ten_names_stand_at_the_top_of_the_library():
    names = sorted(p.name for p in GENIE_DIR.iterdir() if p.name != "__pycache__")
    assert names == ["__init__.py", "checkpointing", "cli.py", "data", "decoding.py", "errors.py", "evaluation",
                     "export", "files.py", "masking", "model", "protocols.py", "studies", "training"]


def test_the_public_names_of_the_package_stay():
    import genie

    for name in ("GenieConfig", "STMaskGIT", "RawTokenDataset", "TrainingArguments", "MaskedPretrainConfig",
                 "run_masked_pretrain", "run_autoregressive", "generate", "SamplingConfig", "MaskGITModel",
                 "get_maskgit_collator", "get_masked_pretrain_collator", "Trainer", "run_training", "ConfigError"):
        assert hasattr(genie, name), name


def test_test_files_have_unique_names():
    """pytest imports test files by their base name: two test_x.py in different folders collide."""
    names = [p.name for p in (REPO_ROOT / "tests").rglob("test_*.py")]
    assert sorted(names) == sorted(set(names))


def test_run_bookkeeping_and_file_helpers_have_one_home():
    graph = import_graph()
    assert graph["genie.files"] <= {"genie.errors"}  # a leaf every part may use
    assert not any(target.startswith("genie.checkpointing") for module, targets in graph.items()
                   if module.startswith("genie.data") for target in targets)
    helpers = {"read_json_object", "atomic_directory", "file_sha256"}
    imported_from = {(node.module, alias.name) for path in GENIE_DIR.rglob("*.py")
                     for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
                     for alias in node.names if alias.name in helpers}
    assert {module for module, _ in imported_from} == {"genie.files"}
    import genie.checkpointing.run_folder
    import genie.training.trainer

    assert genie.training.trainer.RunFolder is genie.checkpointing.run_folder.RunFolder
    trainer_code = (GENIE_DIR / "training" / "trainer.py").read_text()
    for bookkeeping in ("RunLock", "write_manifest", "prepare_output_dir", "restore_replaced_run", ".tmp-step_",
                        "shutil", "broadcast_object_list"):
        assert bookkeeping not in trainer_code, bookkeeping


def test_masking_has_one_home():
    """The collators, apply_mask, the batching helpers and MASK_PATTERNS are defined in genie/masking/collators.py
    only; genie.data re-exports the collators for the reference's `from data import ...` and every genie module
    imports them from their home; the schedule's progress is an argument (nothing sets a collator's state); and
    masking climbs back to neither data nor training."""
    import inspect

    from genie.masking import collators
    from genie.training.objectives import Objective

    names = {"AutoregressiveMaskGITCollator", "MaskedPretrainCollator", "get_maskgit_collator",
             "get_masked_pretrain_collator", "apply_mask", "stack_features", "as_windows", "MASK_PATTERNS"}
    defined, imported_from, exported, reaches_into = {}, set(), set(), []
    for path in GENIE_DIR.rglob("*.py"):
        module, tree = module_name(path), ast.parse(path.read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node]
            for name in {getattr(t, "name", None) or getattr(t, "id", None) for t in targets} & names:
                defined.setdefault(name, []).append(module)
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
                exported |= {(module, e.value) for e in node.value.elts if e.value in names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & names:
                imported_from.add(node.module)
            if isinstance(node, ast.Attribute) and node.attr == "set_total_steps":
                reaches_into.append(f"{module}: set_total_steps")
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                for target in getattr(node, "targets", [getattr(node, "target", None)]):
                    if isinstance(target, ast.Attribute) and "collator" in ast.unparse(target.value):
                        reaches_into.append(f"{module}: {ast.unparse(target)} =")
    assert defined == {name: ["genie.masking.collators"] for name in names}
    assert imported_from == {"genie.masking.collators"}
    assert {module for module, _ in exported} == {"genie.data", "genie"}  # the reference's front; the package's
    assert reaches_into == []
    assert all(inspect.getmodule(getattr(collators, n)) is collators for n in names - {"MASK_PATTERNS"})
    assert "progress" in inspect.signature(collators.MaskedPretrainCollator.__call__).parameters
    assert {"step", "total_steps"} <= set(inspect.signature(Objective.make_batch).parameters)
    graph = import_graph()
    climbs = {(m, t) for m in graph if m.startswith("genie.masking") for t in graph[m]
              if t.startswith(("genie.data", "genie.training", "genie.evaluation", "genie.studies"))}
    assert climbs == set()


def test_tests_import_nothing_from_scripts():
    """scripts/ holds commands, not a package: tests run a command through tests/conftest.py's run_script."""
    imports = []
    for path in (REPO_ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            imports += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names
                        if name == "scripts" or name.startswith("scripts.")]
    assert imports == []
