"""The walkthrough documents (-o .tex / .md): content from the tape and the template, the LaTeX
translation of every template character, and the .tex compiling with pdflatex."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from itertools import groupby
from pathlib import Path

import pytest

from tracer.models import MODELS, vae
from tracer.render import document
from tracer.render.export import export
from tracer.render.template import LANGS, Template, _folder, _load

# ----------------------------------------------------------------------------------------------
# pdflatex
# ----------------------------------------------------------------------------------------------


def require_pdflatex() -> str:
    """Path of pdflatex; skip the test if it is missing (fail if TRACER_REQUIRE_PDFLATEX is set)."""
    found = shutil.which("pdflatex")
    if found:
        return found
    if os.environ.get("TRACER_REQUIRE_PDFLATEX"):
        pytest.fail("TRACER_REQUIRE_PDFLATEX is set but pdflatex is not installed "
                    "(apt-get install -y texlive-latex-base)")
    pytest.skip("pdflatex is not installed (apt-get install -y texlive-latex-base)")


def compile_tex(tex: Path) -> tuple[bool, str]:
    """Run pdflatex on `tex` in its folder; (True, "") if it compiled to a PDF, else (False, the
    return code and the log's error lines)."""
    pdflatex = require_pdflatex()
    run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                          tex.name], cwd=tex.parent, capture_output=True, timeout=300, check=False)
    pdf = tex.with_suffix(".pdf")
    if run.returncode == 0 and pdf.is_file() and pdf.stat().st_size > 0:
        return True, ""
    log = tex.with_suffix(".log")
    text = log.read_text("utf-8", errors="replace") if log.is_file() else run.stdout.decode("utf-8", "replace")
    errors = [line for line in text.splitlines() if line.startswith(("!", "l."))]
    return False, f"pdflatex exit code {run.returncode}, pdf {'made' if pdf.is_file() else 'missing'}: " + \
        " | ".join(errors[:6])


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def small_tape():
    return vae.trace(vae.Config(hidden=3, iterations=2))


def write(tape, config, path: Path, lang: str) -> str:
    count = export(tape, config, path, lang)
    assert count > 0
    return path.read_text("utf-8")


def loss_names():
    return _load("vae")["losses"]["names"]


def sections_of_iteration_1(tape):
    return [s for s, _ in groupby((t for t in tape.tensors if t.iteration == 1), key=lambda t: t.section)]


def in_order(text: str, parts: list[str], start: int = 0) -> int:
    """Assert every part occurs in `text` after the previous one; return the end position."""
    pos = start
    for part in parts:
        found = text.find(part, pos)
        assert found >= 0, f"{part!r} missing (or out of order) after position {pos}"
        pos = found + len(part)
    return pos


def tex_float(cell: str) -> float:
    """$-1.23\\cdot 10^{-5}$ -> -1.23e-05."""
    m = re.fullmatch(r"\$(-?[0-9.]+)(?:\\cdot 10\^\{(-?\d+)\})?\$", cell.strip())
    assert m, cell
    return float(m[1] + (f"e{m[2]}" if m[2] else ""))


# ----------------------------------------------------------------------------------------------
# the LaTeX translation
# ----------------------------------------------------------------------------------------------

def test_every_character_of_every_template_is_translated():
    """A symbol added to a template without a LaTeX translation fails here, not in pdflatex."""
    files = sorted(p for p in _folder().iterdir() if p.name.endswith(".toml"))
    assert {"common.toml", "vae.toml", "document.toml"} <= {p.name for p in files}
    for path in files:
        missing = document.unhandled(path.read_text("utf-8"))
        assert not missing, f"{path.name}: no LaTeX for " + ", ".join(f"{c!r} (U+{ord(c):04X})" for c in sorted(missing))


def test_tex_escapes_specials_and_translates_unicode():
    assert document.tex("a_b #1 $2 %3 &4 {5} ~ ^ \\") == \
        r"a\_b \#1 \$2 \%3 \&4 \{5\} \ensuremath{\sim} \textasciicircum{} \textbackslash{}"
    assert document.tex("x\u0302") == r"\^{x}"  # x̂: a combining circumflex
    assert document.tex("μ\u0302") == r"\ensuremath{\hat{\mu}}"
    assert document.tex("í ñ ¿") == r"\'{\i} \~{n} \textquestiondown{}"
    assert document.tex("W₁ᵀ σ²") == r"W\ensuremath{{}_{1}}\ensuremath{{}^{\mathrm{T}}} \ensuremath{\sigma}\ensuremath{{}^{2}}"
    assert document.tex("a\u4e2db") == "a?b" and document.unhandled("a\u4e2db") == {"\u4e2d"}
    assert all(ord(c) < 128 for c in document.tex("".join(document.MATH) + "".join(document.TEXT) + "é x̂"))


def test_the_wording_exists_in_both_languages_and_ships():
    words = _load("document")
    assert set(words) >= set(LANGS)
    assert set(words["en"]) == set(words["es"])
    assert _folder().joinpath("document.toml").is_file()


# ----------------------------------------------------------------------------------------------
# content of the default VAE documents
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_markdown_of_the_default_vae(vae_tape, vae_config, tmp_path, lang):
    text = write(vae_tape, dataclasses.asdict(vae_config), tmp_path / "walkthrough.md", lang)
    tpl, words = Template("vae", lang), _load("document")[lang]
    md = document.md
    assert text.startswith(f"# {md(tpl.m('title'))}\n")
    for eq in tpl.equations(vae_tape):
        assert f"\n{eq}\n" in text  # in a code block, verbatim
    start = in_order(text, [f"## {md(words['model'])}", f"## {md(words['loop'])}"])
    sections = [f"### {md(tpl.section(s))}" for s in sections_of_iteration_1(vae_tape)]
    end = text.find(f"## {md(words['inputs'])}", in_order(text, sections, start))
    assert end > 0
    first = [t for t in vae_tape.tensors if t.iteration == 1]
    for t in first:  # every tensor with its symbol, shape, meaning and equation
        eq = tpl.equation(t)
        entry = f"- **{md(tpl.symbol(t.name))}** ({t.shape[0]} × {t.shape[1]}): {md(tpl.describe(t))}" + \
            (f"\\\n  `{eq}`" if eq else "")
        assert entry in text[start:end], entry

    numbers = text.index(f"## {md(words['numbers'].format(k=1))}")
    loss1 = next(t for t in first if t.name == "loss")
    assert f"| {md(tpl.symbol('loss'))} | 1 × 1 | {document.number(float(loss1.value[0, 0]))} |" in text[numbers:]

    table = text[text.index(f"## {md(words['losses'])}"):].strip().splitlines()
    assert table[2] == "| " + " | ".join([md(words["iteration"])] + [md(tpl.symbol(n)) for n in loss_names()]) + " |"
    rows = [line.strip("|").split("|") for line in table[4:]]
    assert len(rows) == vae_config.iterations
    by_key = {(t.iteration, t.name): float(t.value[0, 0]) for t in vae_tape.tensors}
    for k, row in enumerate(rows, start=1):
        assert int(row[0]) == k
        for name, cell in zip(loss_names(), row[1:]):
            assert float(cell) == pytest.approx(by_key[(k, name)], rel=1e-5)
            assert cell.strip() == document.number(by_key[(k, name)])


@pytest.mark.parametrize("lang", LANGS)
def test_latex_of_the_default_vae(vae_tape, vae_config, tmp_path, lang):
    text = write(vae_tape, dataclasses.asdict(vae_config), tmp_path / "walkthrough.tex", lang)
    tpl, words = Template("vae", lang), _load("document")[lang]
    tex = document.tex
    assert all(ord(c) < 128 for c in text)  # every character translated
    assert rf"\LARGE\bfseries {tex(tpl.m('title'))}" in text
    for eq in tpl.equations(vae_tape):
        assert rf"\hspace*{{2em}}{tex(eq)}\par" in text
    start = in_order(text, [rf"\section*{{{tex(words['model'])}}}", rf"\section*{{{tex(words['loop'])}}}"])
    in_order(text, [rf"\subsection*{{{tex(tpl.section(s))}}}" for s in sections_of_iteration_1(vae_tape)]
             + [rf"\section*{{{tex(words['inputs'])}}}"], start)

    numbers = text.index(rf"\section*{{{tex(words['numbers'].format(k=1))}}}")
    loss1 = next(t for t in vae_tape.tensors if (t.iteration, t.name) == (1, "loss"))
    assert rf"{tex(tpl.symbol('loss'))} & 1 \ensuremath{{\times}} 1 & ${document.tex_number(float(loss1.value[0, 0]))}$" \
        in text[numbers:]

    losses = text[text.index(rf"\section*{{{tex(words['losses'])}}}"):]
    rows = re.findall(r"^\$(\d+)\$ & (.*) \\tabularnewline$", losses, re.MULTILINE)
    assert [int(k) for k, _ in rows] == list(range(1, vae_config.iterations + 1))
    by_key = {(t.iteration, t.name): float(t.value[0, 0]) for t in vae_tape.tensors}
    for k, cells in rows:
        for name, cell in zip(loss_names(), cells.split(" & "), strict=True):
            assert tex_float(cell) == pytest.approx(by_key[(int(k), name)], rel=1e-5)


@pytest.mark.parametrize("lang", LANGS)
def test_the_default_vae_tex_compiles(vae_tape, vae_config, tmp_path, lang):
    require_pdflatex()
    path = tmp_path / "walkthrough.tex"
    write(vae_tape, dataclasses.asdict(vae_config), path, lang)
    ok, why = compile_tex(path)
    assert ok, why
    assert path.with_suffix(".pdf").is_file()


def test_the_compile_check_fails_on_unescaped_text(tmp_path, monkeypatch):
    """Proof that the compile check can fail: with the translation off (raw template text:
    W_μ, x̂, ∂ …), pdflatex must stop with an error."""
    require_pdflatex()
    monkeypatch.setattr(document, "tex", lambda text, missing=None: text)
    path = tmp_path / "raw.tex"
    export(small_tape(), {}, path, "en")
    ok, why = compile_tex(path)
    assert not ok
    assert "exit code" in why and "!" in why


def test_every_character_the_translation_knows_compiles(tmp_path):
    require_pdflatex()
    sample = "".join(document.TEXT) + "".join(document.MATH) + "".join(sorted(document.PLAIN)) + \
        " x̂ μ̂ é ñ ü ç Å v\u20d7 ¿Qué? ¡Sí! ?` Í ≠ ∉ \u4e2d"
    body = document.tex(sample)
    path = tmp_path / "all.tex"
    path.write_text(document.PREAMBLE + body + "\n\n" + rf"\section*{{{body}}}" + "\n"
                    + rf"\begin{{longtable}}{{l}}{body} \tabularnewline\end{{longtable}}" + "\n\\end{document}\n")
    ok, why = compile_tex(path)
    assert ok, why


# ----------------------------------------------------------------------------------------------
# structure, sizes, atomic writes, CLI
# ----------------------------------------------------------------------------------------------

def test_sections_are_consecutive_runs_in_tape_order():
    """A model whose steps revisit a section (a GAN: generate, discriminate, d_loss, …) gets one
    heading per consecutive run, in tape order."""
    tape = small_tape()
    first = [t for t in tape.tensors if t.iteration == 1]
    cycle = ["forward", "loss", "forward", "backward", "update", "loss"]
    for n, t in enumerate(first):
        t.section = cycle[n * len(cycle) // len(first)]
    tpl = Template("vae", "en")
    doc = document.build(tape, tpl)
    loop = [b for b in doc.blocks if b[0] in ("heading", "subheading")]
    words = _load("document")["en"]
    i = loop.index(("heading", words["loop"]))
    assert loop[i + 1:i + 1 + len(cycle)] == [("subheading", tpl.section(s)) for s in cycle]
    assert loop[i + 1 + len(cycle)] == ("heading", words["inputs"])


def test_small_tensors_in_full_large_ones_summarized_hypers_listed():
    tape = small_tape()
    tpl = Template("vae", "en")
    words = _load("document")["en"]
    blocks = document.build(tape, tpl).blocks
    tables = [b for b in blocks if b[0] == "table"]
    full = {row[0]: row for b in tables if b[1] == words["full"] for row in b[3]}
    summary = {row[0]: row for b in tables if b[1] == words["summary"] for row in b[3]}
    x = next(t for t in tape.tensors if t.name == "x")
    assert summary["x"][1:5] == ["1 × 784", x.value.min(), x.value.max(), pytest.approx(x.value.mean())]
    assert summary["x"][5] == list(x.value.ravel()[:document.FIRST])
    mu = next(t for t in tape.tensors if (t.iteration, t.name) == (1, "mu"))
    assert (full[tpl.symbol("mu")][2] == mu.value).all()
    hyper = next(b for b in tables if b[2][1] == words["meaning"])
    lr = next(t for t in tape.tensors if t.name == "lr")
    assert hyper[3] == [[tpl.symbol("lr"), tpl.describe(lr), float(lr.value[0, 0])]]


def test_a_batch_loss_shows_its_mean(tmp_path):
    tape = small_tape()
    for t in tape.tensors:
        if t.name == "recon":
            t.value = t.value + [[-1.0], [0.0], [4.0]]  # a 3 × 1 batch
    text = write(tape, {}, tmp_path / "batch.md", "en")
    words = _load("document")["en"]
    table = text[text.index(f"## {words['losses']}"):]
    assert f"| recon ({words['mean']}) |" in table and words["losses_mean"] in table
    recon1 = next(t for t in tape.tensors if (t.iteration, t.name) == (1, "recon"))
    assert f"| 1 | {document.number(float(recon1.value.mean()))} |" in table


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """Writes are atomic: an error while writing keeps the old file and leaves no temporary."""
    target = tmp_path / "walkthrough.md"
    target.write_text("old")
    monkeypatch.setattr(document, "to_markdown", lambda doc: None)  # f.write(None) raises inside the write
    with pytest.raises(TypeError):
        export(small_tape(), {}, target, "en")
    assert list(tmp_path.iterdir()) == [target] and target.read_text() == "old"


@pytest.mark.parametrize("suffix", [".tex", ".md"])
def test_the_cli_writes_documents(run_main, tmp_path, suffix):
    path = tmp_path / "out" / f"walkthrough{suffix}"
    code, out, err = run_main("run", "vae", "--hidden", 3, "--iterations", 2, "--lang", "es", "-o", path)
    assert code == 0, err
    assert f"wrote {path}" in out
    section = Template("vae", "es").section("forward")
    assert (document.tex(section) if suffix == ".tex" else document.md(section)) in path.read_text("utf-8")


# ----------------------------------------------------------------------------------------------
# the GAN's documents (the default GAN, and one with Adam and the amplifier for every symbol)
# ----------------------------------------------------------------------------------------------

GAN_SECTIONS = ["generate", "discriminate", "d_loss", "d_backward", "d_update", "g_loss", "g_backward", "g_update"]


@pytest.mark.parametrize("key", ["gan", "gan-adam-upscale"])
@pytest.mark.parametrize("lang", LANGS)
def test_the_gan_documents(run_tape, tmp_path, key, lang):
    cfg, tape = run_tape(key)
    tpl, words = Template("gan", lang), _load("document")[lang]
    md_text = write(tape, dataclasses.asdict(cfg), tmp_path / "gan.md", lang)
    md = document.md
    sections = GAN_SECTIONS + (["upscale"] if cfg.upscale else [])
    in_order(md_text, [f"## {md(words['loop'])}"] + [f"### {md(tpl.section(s))}" for s in sections]
             + [f"## {md(words['inputs'])}"])
    table = md_text[md_text.index(f"## {md(words['losses'])}"):]
    by_key = {(t.iteration, t.name): t.value for t in tape.tensors}
    for k in range(1, cfg.iterations + 1):
        row = next(line for line in table.splitlines() if line.startswith(f"| {k} |"))
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        want = [float(by_key[(k, n)].mean()) for n in tpl.model["losses"]["names"]]
        assert [float(c) for c in cells] == pytest.approx(want, rel=1e-5)
    require_pdflatex()
    path = tmp_path / "gan.tex"
    write(tape, dataclasses.asdict(cfg), path, lang)
    ok, why = compile_tex(path)
    assert ok, why
    assert path.with_suffix(".pdf").is_file()


# ----------------------------------------------------------------------------------------------
# typesetting: every model's document in both languages fits the page and reads as written
# ----------------------------------------------------------------------------------------------

def overfull(tex: Path) -> list[str]:
    """The boxes pdflatex reports as too wide (after the second run, when the tables are aligned)."""
    for _ in range(2):
        ok, why = compile_tex(tex)
        assert ok, why
    return [line for line in tex.with_suffix(".log").read_text("utf-8", "replace").splitlines()
            if line.startswith("Overfull \\hbox")]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("model", list(MODELS))
def test_documents_fit_the_page(tmp_path, model, lang):
    from tracer import api

    path = tmp_path / f"{model}_{lang}.tex"
    api.run(model, lang).save(path)
    assert overfull(path) == []


def test_the_overfull_check_can_fail(tmp_path):
    path = tmp_path / "wide.tex"
    path.write_text(document.PREAMBLE + r"\begin{tabular}{l}" + "x" * 400 + r"\end{tabular}" + "\n\\end{document}\n")
    assert len(overfull(path)) == 1


def test_powers_and_options_are_typeset_as_written():
    """x^784 and e^(−a) are superscripts, not a literal caret; --optimizer keeps its two hyphens."""
    assert document.tex("[0,1]^784") == r"[0,1]\ensuremath{^{\text{784}}}"
    assert document.tex("e^(−a)") == r"e\ensuremath{^{\text{\ensuremath{-}a}}}"
    assert document.tex("10000^(2k/d), β^t") == r"10000\ensuremath{^{\text{2k/d}}}, \ensuremath{\beta}\ensuremath{^{\text{t}}}"
    assert document.tex("--optimizer") == "-{}-optimizer"
    tex = document.to_latex(document.build(small_tape(), Template("vae", "en"), {"optimizer": "sgd"}))
    assert r"\textasciicircum" not in tex and "-{}-optimizer" in tex
