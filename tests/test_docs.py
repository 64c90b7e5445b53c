"""The README and docs/ as a reader meets them: a short README, one title per page, every link and
anchor found, a page for every model, and the test command the same in the README and in CI."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

if not README.exists() or not DOCS.is_dir():
    pytest.skip("needs the source tree", allow_module_level=True)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """A heading's anchor as MkDocs makes it (and GitHub, for these headings): the words, lower
    case, joined by hyphens; punctuation and code marks dropped."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose(path.read_text("utf-8")), re.M)}


def links(path: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", prose(path.read_text("utf-8")))
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_is_short():
    assert len(README.read_text("utf-8").splitlines()) <= 400


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_one_title_per_page(page):
    titles = re.findall(r"^# .+$", prose(page.read_text("utf-8")), re.M)
    assert len(titles) == 1, titles
    assert page.read_text("utf-8").startswith(titles[0])


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_anchor_is_found(page):
    broken = []
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no file {path.relative_to(ROOT)}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with anchor #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, broken


def test_the_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A teacher's quick start\n\nSee [this](#a-teachers-quick-start) "
                    "and [that](#nowhere), `[not](#a-link)`.\n", "utf-8")
    assert links(page) == ["#a-teachers-quick-start", "#nowhere"]
    assert "a-teachers-quick-start" in anchors(page) and "nowhere" not in anchors(page)


def test_every_model_has_a_page_and_a_row():
    from tracer.models import MODELS

    readme = README.read_text("utf-8")
    for name in MODELS:
        page = DOCS / "models" / f"{name}.md"
        assert page.is_file(), f"no docs/models/{name}.md"
        assert f"| `{name}` |" in readme and f"(docs/models/{name}.md)" in readme, name


def test_the_test_command_is_the_one_ci_runs():
    """.ci/run runs the README's test command word for word."""
    readme = README.read_text("utf-8")
    section = readme[readme.index("## Two commands"):]
    install_and_run, install_and_test = re.findall(r"```bash\n(.*?)\n```", section, re.S)[:2]
    assert install_and_run == "pip install . && tracer run vae"
    ci = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    assert ci[ci.index("# The README's test command, word for word:") + 1] == install_and_test
