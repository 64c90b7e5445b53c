"""Write a walkthrough document: `.tex` or `.md` with its figures in a folder beside it
(`walkthrough.tex` and `walkthrough-figures/`), or `.pdf` (the .tex compiled by pdflatex in a
private folder).  All appear whole or not at all."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tracer.errors import quietly
from tracer.render import figures
from tracer.render.atomic import atomic_text
from tracer.render.document import build
from tracer.render.template import Template

SUFFIXES = (".tex", ".md", ".pdf")


def figures_folder(path: Path) -> Path:
    """The folder of a document's figures: walkthrough.tex → walkthrough-figures/."""
    return path.with_name(path.stem + "-figures")


def check_tools(path: Path) -> None:
    """Refuse, in one line, a document whose tools are missing (before any work is done)."""
    figures.require()
    if path.suffix.lower() == ".pdf":
        from tracer.render.latex import find_pdflatex

        find_pdflatex()


def write_document(tape, config: dict, path: Path, lang: str = "en") -> int:
    """Write the walkthrough (.tex, .md or .pdf by suffix); returns the number of tensors (and
    loss values) it documents."""
    figures.require()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from tracer.render.latex import find_pdflatex, make_pdf

        find_pdflatex()
        counted = []
        make_pdf(lambda tex_path: counted.append(_write(tape, config, tex_path, lang)), path)
        return counted[0]
    return _write(tape, config, path, lang)


def _write(tape, config: dict, path: Path, lang: str) -> int:
    doc = build(tape, Template.of(tape, lang), config)
    folder = figures_folder(path)
    tmp = Path(tempfile.mkdtemp(prefix=".tracer-", dir=path.parent))
    try:
        files = figures.write_figures(doc.figures, tmp, vector=path.suffix.lower() == ".tex")
        if path.suffix.lower() == ".tex":
            from tracer.render.latex import to_latex

            body = to_latex(doc, lang, folder.name, files)
        else:
            from tracer.render.markdown import to_markdown

            body = to_markdown(doc, folder.name, files)
        with atomic_text(path) as f:
            f.write(body)
            f.flush()
            with quietly():  # the figures move in with the document
                if folder.exists():
                    shutil.rmtree(folder)
                if files:
                    tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return doc.count
