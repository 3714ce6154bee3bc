"""`pip install -e .` in a fresh virtual environment makes `genie` importable outside the repository."""
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO_ROOT, TINY

GENIE_DIR = REPO_ROOT / "genie"


def test_fresh_venv_pip_install_e_imports_genie_outside_the_repo(tmp_path):
    """`pip install -e .` in a new virtual environment, then build and run a model from another folder.

    The new environment sees this one's third-party packages through a .pth file (no multi-GB torch
    download in a test); genie itself is only importable there because pip installed it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    new_site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (new_site / "outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = [python, "-c", "import genie"]
    assert subprocess.run(probe, cwd=tmp_path, capture_output=True).returncode != 0  # not importable before
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index", "-e",
                              str(REPO_ROOT)], cwd=tmp_path, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    script = ("import torch, genie\n"
              f"config = genie.GenieConfig(**{TINY!r})\n"
              "model = genie.STMaskGIT(config).eval()\n"
              "tokens = torch.randint(0, 256, (1, config.T, config.S))\n"
              "actions = torch.zeros(1, config.T, config.action_dim)\n"
              "print(tuple(model.compute_logits(tokens, actions).shape), genie.__file__)\n")
    run = subprocess.run([python, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    shape, location = run.stdout.split(") ")
    assert shape + ")" == "(1, 4, 16, 2, 16)" and location.strip() == str(GENIE_DIR / "__init__.py")
