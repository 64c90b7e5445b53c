"""The walkthrough documents (-o .tex / .pdf / .md): the templates' mathematics set in math mode,
every model's document compiling in both languages without an overfull box, the values and the
figures tied to the run, and the writes atomic.

Every model's default .tex is written and compiled once per session, in both languages, two at a
time (the `compiled` fixture), and every test that reads a .tex or a log shares it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import have_torch

from tracer import api
from tracer.models import MODELS, vae
from tracer.render import document, figures, latex, markdown, mathtext
from tracer.render.export import export
from tracer.render.template import LANGS, Template, _folder, _load
from tracer.render.textmode import MATH, PLAIN, TEXT, tex, unhandled
from tracer.render.walkthrough import figures_folder

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
                    "(apt-get install -y texlive-latex-base texlive-lang-spanish)")
    pytest.skip("pdflatex is not installed (apt-get install -y texlive-latex-base texlive-lang-spanish)")


def compile_once(tex_path: Path) -> tuple[bool, str, list[str]]:
    """One pdflatex run on the .tex in its folder: (made a PDF, the first errors, the overfull
    boxes).  One run sees every overfull box: the tables' widths are fixed, not measured."""
    pdflatex = require_pdflatex()
    run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", tex_path.name],
                         cwd=tex_path.parent, capture_output=True, timeout=600, check=False, stdin=subprocess.DEVNULL)
    log = tex_path.with_suffix(".log").read_text("utf-8", "replace") if tex_path.with_suffix(".log").is_file() else ""
    errors = " | ".join(line for line in log.splitlines() if line.startswith(("!", "l.")))[:400]
    overfull = [line for line in log.splitlines() if line.startswith("Overfull \\hbox")]
    ok = run.returncode == 0 and tex_path.with_suffix(".pdf").is_file()
    return ok, errors or f"exit code {run.returncode}", overfull


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    """written(model, lang) -> the path of the model's default walkthrough .tex (made once)."""
    folder = tmp_path_factory.mktemp("documents")
    made: dict = {}

    def get(model, lang):
        if (model, lang) not in made:
            path = folder / f"{model}_{lang}.tex"
            api.run(model, lang).save(path)
            made[(model, lang)] = path
        return made[(model, lang)]

    return get


@pytest.fixture(scope="session")
def compiled(written):
    """compiled(model, lang) -> (ok, errors, overfull boxes) of the default .tex: every model in
    both languages compiled on the first call, two at a time."""
    require_pdflatex()
    keys = [(m, lang) for m in MODELS for lang in LANGS if m != "torch" or have_torch() or os.environ.get("TRACER_REQUIRE_TORCH")]
    paths = {k: written(*k) for k in keys}
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(keys, pool.map(lambda k: compile_once(paths[k]), keys)))
    return lambda model, lang: results[(model, lang)]


# ----------------------------------------------------------------------------------------------
# the translation of the templates' mathematics
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("∂L/∂W₁ = xᵀ · ∂L/∂a₁", r"\frac{\partial L}{\partial W_{1}} = x^{\top} \cdot \frac{\partial L}{\partial a_{1}}"),
    ("x̂ = sigmoid(a₄) = 1 / (1 + e^(−a₄))", r"\hat{x} = \operatorname{sigmoid}(a_{4}) = \frac{1}{1 + e^{-a_{4}}}"),
    ("W_logσ²", r"W_{\log\sigma^{2}}"),
    ("W_logσ²ᵀ", r"W_{\log\sigma^{2}}^{\top}"),
    ("∂L/∂log σ²", r"\frac{\partial L}{\partial \log \sigma^{2}}"),
    ("σ = exp(log σ² / 2)", r"\sigma = \exp(\log \sigma^{2} / 2)"),  # the slash binds σ² alone: no fraction
    ("recon = −(1/N) Σᵢ₌₁ᴺ Σₚ₌₁⁷⁸⁴ x", r"\text{recon} = -\frac{1}{N} \sum_{i=1}^{N} \sum_{p=1}^{784} x"),
    ("z ~ N(0, I)", r"z \sim \mathcal{N}(0, I)"),
    ("m̂ = m / (1 − β₁^t)", r"\hat{m} = \frac{m}{1 - \beta_{1}^{t}}"),
    ("W_s₁⁽²⁾", r"W_{s_{1}}^{(2)}"),
    ("x_real", r"x_{\text{real}}"),
    ("mᵢ = maxₖ₍ₖ≤ᵢ₎ S[i, k]", r"m_{i} = \max_{k\leq i} S[i, k]"),
    ("a if a > 0, else slope · a", r"a\ \text{if}\ a > 0,\ \text{else}\ \text{slope} \cdot a"),
    ("x_{t−1} = ŷ", r"x_{t-1} = \hat{y}"),
])
def test_the_mathematics_of_the_templates_as_latex(text, want):
    assert mathtext.math(text) == want


@pytest.mark.parametrize("text, want", [
    ("Discriminator's loss L_D", [(False, "Discriminator's loss "), (True, "L_D")]),
    ("draws z ~ N(0, I): new digits", [(False, "draws "), (True, "z ~ N(0, I)"), (False, ": new digits")]),
    ("Cell (i, j): row i of x", [(False, "Cell "), (True, "(i, j)"), (False, ": row "), (True, "i"), (False, " of "),
                                 (True, "x")]),
    ("A GAN learns one digit, y a la vez", [(False, "A GAN learns one digit, y a la vez")]),
])
def test_the_mathematics_inside_a_sentence(text, want):
    assert mathtext.segments(text) == want
    assert "".join(p for _, p in mathtext.segments(text)) == text


def test_every_character_of_every_template_is_translated():
    """A symbol added to a template without a LaTeX translation fails here, not in pdflatex."""
    files = sorted(p for p in _folder().iterdir() if p.name.endswith(".toml"))
    assert {"common.toml", "vae.toml", "document.toml"} <= {p.name for p in files}
    for path in files:
        missing = unhandled(path.read_text("utf-8"))
        assert not missing, f"{path.name}: no LaTeX for " + ", ".join(f"{c!r} (U+{ord(c):04X})" for c in sorted(missing))


def test_text_is_escaped():
    assert tex("a_b #1 $2 %3 &4 {5} \\") == r"a\_b \#1 \$2 \%3 \&4 \{5\} \textbackslash{}"
    assert tex("í ñ ¿") == r"\'{\i} \~{n} \textquestiondown{}"
    assert all(ord(c) < 128 for c in tex("".join(MATH) + "".join(TEXT) + "é x̂"))


def test_the_wording_exists_in_both_languages_and_ships():
    words = _load("document")
    assert set(words) >= set(LANGS)
    assert set(words["en"]) == set(words["es"])


# ----------------------------------------------------------------------------------------------
# math mode: every equation, symbol and formula of every model's document
# ----------------------------------------------------------------------------------------------

def text_mode_math(tex_source: str) -> list[str]:
    """Mathematics set in text mode: an escaped underscore (x\\_real) or \\ensuremath outside the
    settings' code (\\texttt), each with what surrounds it."""
    body = tex_source[tex_source.index(r"\begin{document}"):]
    body = re.sub(r"\\texttt\{[^{}]*\}", "", body)
    return [body[max(0, m.start() - 40):m.end() + 20] for m in re.finditer(r"\\_|\\ensuremath", body)]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("model", list(MODELS))
def test_every_equation_is_in_math_mode(written, model, lang):
    source = written(model, lang).read_text("utf-8")
    assert text_mode_math(source) == []
    assert all(ord(c) < 128 for c in source)  # every character translated
    assert source.count(r"\begin{align*}") + source.count(r"\begin{gather*}") >= 10
    assert r"\frac{\partial" in source and r"\begin{bmatrix}" in source


def test_the_math_mode_check_can_fail():
    """The old transliteration (G\\_h, \\ensuremath{\\cdot}) is what the check finds."""
    old = latex.preamble("en") + tex("G_h = LeakyReLU(z · G_W₁)") + "\n\\end{document}\n"
    assert len(text_mode_math(old)) >= 3


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("model", list(MODELS))
def test_every_document_compiles_and_fits_the_page(compiled, model, lang):
    ok, errors, overfull = compiled(model, lang)
    assert ok, errors
    assert overfull == []


def test_the_compile_and_overfull_checks_can_fail(tmp_path):
    bad = tmp_path / "bad.tex"
    bad.write_text(latex.preamble("en") + "$W_μ$\n\\end{document}\n", "utf-8")  # a raw Unicode symbol in math
    assert not compile_once(bad)[0]
    wide = tmp_path / "wide.tex"
    wide.write_text(latex.preamble("en") + r"\begin{tabular}{l}" + "x" * 400 + r"\end{tabular}" + "\n\\end{document}\n")
    ok, _, overfull = compile_once(wide)
    assert ok and len(overfull) == 1


def test_spanish_is_set_with_babel(written):
    source = written("vae", "es").read_text("utf-8")
    assert r"\usepackage[spanish," in source and "Propagaci" in source
    assert r"\usepackage[english]{babel}" in written("vae", "en").read_text("utf-8")


# ----------------------------------------------------------------------------------------------
# the content: values, figures, the GAN
# ----------------------------------------------------------------------------------------------

def small_tape():
    return vae.trace(vae.Config(hidden=3, iterations=2))


def test_values_whole_or_by_their_corners():
    small = np.arange(12, dtype=float).reshape(3, 4) / 7
    assert latex.bmatrix(small).count(r"\\") == 2 and r"\cdots" not in latex.bmatrix(small)
    big = np.arange(784 * 16, dtype=float).reshape(784, 16) * 1e-6 - 1e-3
    m = latex.bmatrix(big)
    assert m.count(r"\cdots") == 4 and m.count(r"\vdots") == 4 and m.count(r"\ddots") == 1
    assert latex.tex_number(big[783, 15]) in m and latex.tex_number(big[0, 0]) in m
    assert latex.tex_number(1.23456e-5) == r"1.235\cdot 10^{-5}"  # never a non-zero shown as 0
    table = markdown.values_table(big)
    assert table.splitlines()[0] == "| | 1 | 2 | 3 | ⋯ | 16 |" and "| ⋮ |" in table and "| **784** |" in table


def test_each_tensor_shows_its_own_values(vae_tape, vae_config):
    doc = document.build(vae_tape, Template("vae", "en"), dataclasses.asdict(vae_config))
    views = [b.args[0] for b in doc.blocks if b.kind == "tensor"]
    first = [t for t in vae_tape.tensors if t.iteration == 1 and t.phase != "after"]
    inputs = [t for t in vae_tape.tensors if t.iteration == 0 and t.attrs.get("role") != "hyper"]
    assert [v.name for v in views] == [t.name for t in inputs + first]
    for v, t in zip(views, inputs + first):
        assert v.value is t.value and v.shape == t.shape
    assert doc.count == len(inputs) + len(first) + 1 + 3 * (vae_config.iterations - 1)


def test_heatmaps_on_the_workbooks_colour_scales():
    gray = figures.colour(np.array([[0.0, 1.0, 0.5]]), "gray", 0, 1)
    assert gray.tolist() == [[[255, 255, 255], [0, 0, 0], [128, 128, 128]]]
    div = figures.colour(np.array([[-2.0, 0.0, 4.0]]), "diverging", -2, 4)
    assert div.tolist() == [[[0x21, 0x66, 0xAC], [255, 255, 255], [0xB2, 0x18, 0x2B]]]


@pytest.mark.parametrize("suffix", [".tex", ".md"])
def test_figures_are_written_beside_the_document(tmp_path, suffix):
    path = tmp_path / f"walk{suffix}"
    export(small_tape(), {}, path, "en")
    folder = figures_folder(path)
    files = sorted(p.name for p in folder.iterdir())
    text = path.read_text("utf-8")
    assert any(f.endswith("losses." + ("pdf" if suffix == ".tex" else "png")) for f in files)
    assert any("x-hat" in f for f in files)
    for f in files:
        assert f"{folder.name}/{f}" in text
    assert list(tmp_path.iterdir()) == sorted([path, folder]) or set(tmp_path.iterdir()) == {path, folder}


def test_markdown_math_and_tables(tmp_path, vae_tape, vae_config):
    path = tmp_path / "vae.md"
    export(vae_tape, dataclasses.asdict(vae_config), path, "en")
    text = path.read_text("utf-8")
    assert "$$\n" in text and r"$\frac{\partial L}{\partial" in text
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`", "", text, flags=re.S)
    assert "\\_" not in prose and "_" not in prose.replace("-figures/", "")  # every symbol is mathematics
    loss = next(t for t in vae_tape.tensors if (t.iteration, t.name) == (1, "loss"))
    assert f"| **1** | {document.entry(float(loss.value[0, 0]))} |" in text
    words = _load("document")["en"]
    table = text[text.index(f"## {words['losses']}"):]
    by_key = {(t.iteration, t.name): float(t.value[0, 0]) for t in vae_tape.tensors}
    for k in range(1, vae_config.iterations + 1):
        row = next(line for line in table.splitlines() if line.startswith(f"| {k} |"))
        assert [float(c) for c in row.strip("|").split("|")[1:]] == pytest.approx(
            [by_key[(k, n)] for n in ("recon", "kl", "loss")], rel=1e-5)


GAN_SECTIONS = ["generate", "discriminate", "d_loss", "d_backward", "d_update", "g_loss", "g_backward", "g_update"]


@pytest.mark.parametrize("lang", LANGS)
def test_the_gan_document(run_tape, tmp_path, lang):
    """Generator and discriminator, their losses, the alternation and the amplifier, each tied to
    the run's numbers."""
    cfg, tape = run_tape("gan-adam-upscale")
    tpl = Template("gan", lang)
    path = tmp_path / "gan.md"
    export(tape, dataclasses.asdict(cfg), path, lang)
    text = path.read_text("utf-8")
    positions = [text.index(f"### {markdown.text(document.Prose.of(tpl.section(s)))}") for s in GAN_SECTIONS + ["upscale"]]
    assert positions == sorted(positions)
    by_key = {(t.iteration, t.name): t.value for t in tape.tensors}
    for name in ("L_D", "L_G"):  # each loss quoted in the prose of its phase, as the run gives it
        assert document.number(float(by_key[(1, name)].mean())) in text
    for key in ("generate", "discriminate", "d_loss", "d_update", "g_loss", "g_update", "upscale"):
        assert tpl.model["phases"][key][lang].split(".")[0].split("{")[0][:20] in document.Prose.of(
            tpl.model["phases"][key][lang]).plain()
    assert (figures_folder(path) / next(f.name for f in figures_folder(path).iterdir() if "x-fake-up" in f.name)).is_file()


# ----------------------------------------------------------------------------------------------
# .pdf, tools missing, atomic writes
# ----------------------------------------------------------------------------------------------

def test_a_pdf_is_compiled_and_only_the_pdf_is_left(tmp_path, run_main):
    require_pdflatex()
    path = tmp_path / "walk.pdf"
    code, out, err = run_main("run", "mlp", "-o", path)
    assert code == 0, err
    assert path.read_bytes().startswith(b"%PDF") and list(tmp_path.iterdir()) == [path]


def test_a_pdf_without_pdflatex_is_refused_in_one_line(tmp_path, refused, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    line = refused("run", "mlp", "-o", tmp_path / "walk.pdf")
    assert "pdflatex" in line and "texlive-latex-base" in line
    assert list(tmp_path.iterdir()) == []


def test_a_document_without_matplotlib_is_refused_in_one_line(tmp_path, refused, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = refused("run", "mlp", "-o", tmp_path / "walk.tex")
    assert 'pip install "tracer[documents]"' in line and list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """An error while writing keeps the old document and its figures, and leaves no temporary."""
    target = tmp_path / "walkthrough.md"
    export(small_tape(), {}, target, "en")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(markdown, "to_markdown", lambda *a: None)  # f.write(None) raises inside the write
    with pytest.raises(TypeError):
        export(small_tape(), {}, target, "en")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_the_same_run_gives_the_same_bytes(tmp_path):
    a, b = tmp_path / "a" / "w.md", tmp_path / "b" / "w.md"
    for path in (a, b):
        export(small_tape(), {}, path, "en")
    assert a.read_bytes() == b.read_bytes()
    for f in figures_folder(a).iterdir():
        assert f.read_bytes() == (figures_folder(b) / f.name).read_bytes(), f.name


def test_every_plain_character_survives(tmp_path):
    assert set(PLAIN) <= set(tex("".join(sorted(PLAIN))))
