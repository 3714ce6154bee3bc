"""The README's library snippet runs as written."""
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_library_snippet_runs_as_written():
    section = (REPO_ROOT / "README.md").read_text().split("## Use it as a library")[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "torch.Size([2, 8, 256])"
