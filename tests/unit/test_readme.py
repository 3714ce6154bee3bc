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


README_MAX_LINES = 300  # the README is the front door; detail lives in docs/ (torchtitan's README: 191 lines)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped except '-' and '_', spaces -> '-'."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor in a markdown text (outside code fences), with GitHub's -1, -2 for repeats."""
    seen, found = {}, set()
    for line in without_code_fences(markdown):
        if (match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            slug = github_slug(match.group(1))
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def without_code_fences(markdown: str) -> list[str]:
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def broken_links(page, root=REPO_ROOT) -> list[str]:
    """The relative links of one markdown page whose file or #anchor does not exist, as 'page: target (why)'."""
    broken = []
    for line in without_code_fences(page.read_text()):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...: not relative
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            name = f"{page.relative_to(root)}: {target}"
            if not file.exists():
                broken.append(f"{name} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                broken.append(f"{name} (no heading with that anchor)")
    return broken


def markdown_pages():
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_github_slugs():
    assert github_slug("Studies: does stage 1 help, and how should I mask?") == "studies-does-stage-1-help-and-how-should-i-mask"
    assert github_slug("Topics in `docs/`") == "topics-in-docs"
    assert github_slug("Time on a CPU, and what to shrink") == "time-on-a-cpu-and-what-to-shrink"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = markdown_pages()
    assert len(pages) > 5 and all(page.exists() for page in pages)
    assert [broken for page in pages for broken in broken_links(page)] == []


def test_the_link_check_finds_a_planted_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# Real heading\n")
    page = tmp_path / "page.md"
    page.write_text("# Top\n[ok](other.md#real-heading) [ok](#top) [web](https://example.org/x.md)\n"
                    "[gone](missing.md) [bad anchor](other.md#no-such-heading) [bad here](#nowhere)\n"
                    "```\n[in code](missing_too.md)\n```\n")
    assert broken_links(page, root=tmp_path) == [
        "page.md: missing.md (no such file)", "page.md: other.md#no-such-heading (no heading with that anchor)",
        "page.md: #nowhere (no heading with that anchor)"]


def test_the_readme_stays_short():
    count = len((REPO_ROOT / "README.md").read_text().splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines; move detail into docs/"
