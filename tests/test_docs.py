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


def bash_block(heading: str) -> list[str]:
    """The lines of the first ```bash block after `heading` in the README (comments kept)."""
    text = README.read_text("utf-8")
    section = text[text.index(heading):]
    return re.search(r"```bash\n(.*?)\n```", section, re.S)[1].splitlines()


def test_the_quick_start_runs_top_to_bottom(run_main, tmp_path, monkeypatch):
    """The teacher's five commands, as written, in order: each works on what the ones before made
    (the student's filling is the `cp`; checking the unfilled copy finds every cell missing)."""
    import shlex
    import shutil

    monkeypatch.chdir(tmp_path)
    for line in bash_block("## A teacher's quick start"):
        words = shlex.split(line, comments=True)
        if words[0] == "cp":
            shutil.copy(*words[1:])
            continue
        assert words[0] == "tracer", line
        code, out, err = run_main(*words[1:])
        assert code == (1 if words[1] == "check" else 0), (line, out, err)
        if words[1] == "check":
            assert "missing 163" in out and (tmp_path / "graded.xlsx").is_file()
    assert (tmp_path / "vae4.tex").is_file()


def test_every_example_command_is_valid():
    """Every line of the README's examples names a model and options that tracer accepts (parsed
    and checked as the command does, without running it), and its `-> outputs/…` comment is the
    name the command writes."""
    import shlex

    from tracer import api, cli, models

    lines, joined = bash_block("## More examples"), []
    for line in lines:  # a comment-only line continues the command above it
        if line.lstrip().startswith("#"):
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    assert len(joined) >= 20 and joined[0].startswith("tracer models")
    assert joined[0].split("#")[1].strip() == ", ".join(models.MODELS)  # what `tracer models` lists
    for line in joined[1:]:
        words = shlex.split(line, comments=True)
        assert words[0] == "tracer" and words[1] in ("run", "exercise"), line
        group = getattr(cli, words[1])
        command = group.commands[words[2]]
        params = dict(command.make_context(words[2], words[3:]).params)
        lang, output = params.pop("lang"), params.pop("output")
        for extra in ("blank", "blank_iterations", "self_check", "students", "vary", "key", "jobs"):
            params.pop(extra, None)
        config = api.configure(words[2], lang, **params)
        models.validate(config)  # the checks `tracer run` makes before any work, without the run
        models.check_size(models.get(words[2]), config, (output or Path("x.xlsx")).suffix)
        named = re.search(r"-> (outputs/\S+)", line)
        if named and output is None:
            what = "_exercise" if words[1] == "exercise" else ""
            assert api.default_path(words[2], lang, what, config).as_posix() == named[1], line


def test_the_index_lists_every_page():
    """docs/index.md (a site's home page) links every page of docs/, so a new page is found."""
    linked = {(DOCS / link.partition("#")[0]).resolve() for link in links(DOCS / "index.md")}
    missing = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p.name != "index.md" and p.resolve() not in linked]
    assert not missing, missing


def test_the_default_names_the_readme_gives():
    from tracer import api

    text = " ".join(README.read_text("utf-8").split())
    said = text[text.index("Nothing is overwritten by surprise"):]
    said = said[:said.index("-o` writes exactly")]
    names = [api.default_path("vae", config=api.configure("vae", optimizer="adam")),
             api.default_path("mlp", config=api.configure("mlp", config="xor")),
             api.default_path("gan", config=api.configure("gan", upscale=4)),
             api.default_path("vae", what="_exercise", config=api.configure("vae", size=4, hidden=2))]
    assert re.findall(r"`(outputs/[^`]+)`", said) == [n.as_posix() for n in names]


def test_the_option_synopses_show_the_defaults():
    """A page's `tracer run MODEL [--option default] …` block shows each option's real default."""
    import dataclasses

    from tracer.models import MODELS

    for page in DOCS.rglob("*.md"):
        for model, synopsis in re.findall(r"^tracer run (\w+) (\[.*?)\n```", page.read_text("utf-8"), re.S | re.M):
            defaults = {f.name.replace("_", "-"): f.default for f in dataclasses.fields(MODELS[model].Config)}
            shown = re.findall(r"\[--([\w-]+) ([^\]\s|…]+)\]", synopsis)
            assert len(shown) > 5, (page, model)
            for name, value in shown:
                if name in defaults and not value.isupper():  # FILE, PATH: a placeholder
                    default = defaults[name]
                    same = float(value) == default if isinstance(default, (int, float)) else value == str(default)
                    assert same, f"{page.name}: --{name} {value}, the default is {default}"


def test_the_csv_example_runs(tmp_path, monkeypatch):
    """docs/data.md's pandas example, verbatim, on `-o trace.csv` of the default VAE: W1 rebuilt."""
    import numpy as np

    from tracer import api

    monkeypatch.chdir(tmp_path)
    r = api.run("vae")
    r.save("trace.csv")
    scope: dict = {}
    exec(re.search(r"```python\n(.*?)```", (DOCS / "data.md").read_text("utf-8"), re.S)[1], scope)
    assert scope["W1"].shape == (784, 8) and np.allclose(scope["W1"], r["W1", 2], rtol=1e-15, atol=0)
