"""`tracer site DIR`: a small MkDocs project of the walkthroughs: mkdocs.yml, an index that says
what each model teaches, one page per model and language (each the Markdown walkthrough of the
model's default run, its figures beside it), the guide's pages (--docs), and MathJax served from
the site itself (the copy the package django-static-mathjax ships: the pages read their
mathematics without a network).  `mkdocs build` (or --build) makes the HTML.

    DIR/mkdocs.yml
    DIR/docs/index.md                       what each model teaches, in each language
    DIR/docs/en/vae.md, DIR/docs/en/vae-figures/…, DIR/docs/es/vae.md, …
    DIR/docs/guide/…                        the pages of --docs FOLDER
    DIR/docs/javascripts/mathjax/tex-svg.js, DIR/docs/javascripts/mathjax-config.js
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

from tracer.errors import TracerError, quietly
from tracer.render.markdown import md
from tracer.render.template import LANGS, Template, _load

MATHJAX = "static/mathjax/es5/tex-svg.js"  # inside the package `mathjax` (django-static-mathjax)
MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]], processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex|md-ellipsis"},  // and the table of contents
  svg: {fontCache: "global"}
};
"""
EXTRA_CSS = """/* tracer: the values tables compact, a picture never wider than the page */
.md-typeset table:not([class]) { font-size: 0.7rem; }
.md-typeset img { max-width: 100%; height: auto; image-rendering: pixelated; }
"""


def require() -> None:
    """Refuse (one line) when MkDocs or its extensions are missing, before any work."""
    from tracer.render import figures

    figures.require()
    missing = [name for name in ("mkdocs", "material", "pymdownx", "mathjax") if not _importable(name)]
    if missing:
        raise TracerError(f"tracer site needs {', '.join(missing)}: pip install \"tracer[site]\"")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def mathjax_file() -> Path:
    return Path(str(resources.files("mathjax").joinpath(MATHJAX)))


def config_text(title: str, nav: list, lang: str) -> str:
    """mkdocs.yml: the Material theme without web fonts (nothing is fetched), arithmatex for the
    $ … $ mathematics, MathJax from the site's own folder, plain .html links (the site opens
    from the disk too)."""
    import json

    lines = [f"site_name: {json.dumps(title, ensure_ascii=False)}",
             "use_directory_urls: false",
             "theme:",
             "  name: material",
             f"  language: {lang}",
             "  font: false",
             "  features: [navigation.sections, toc.follow]",
             "plugins:",
             "  - search",
             "markdown_extensions:",
             "  - tables",
             "  - attr_list",
             "  - toc:",
             "      permalink: true",
             "  - pymdownx.arithmatex:",
             "      generic: true",
             "extra_javascript:",
             "  - javascripts/mathjax-config.js",
             "  - javascripts/mathjax/tex-svg.js",
             "extra_css:",
             "  - stylesheets/tracer.css",
             "nav:"]
    for section, pages in nav:
        if isinstance(pages, str):
            lines.append(f"  - {json.dumps(section, ensure_ascii=False)}: {pages}")
            continue
        lines.append(f"  - {json.dumps(section, ensure_ascii=False)}:")
        lines += [f"    - {json.dumps(name, ensure_ascii=False)}: {page}" for name, page in pages]
    return "\n".join(lines) + "\n"


def index_text(models: list, langs: list) -> str:
    """The home page: what tracer is and, per language, each model with what it teaches."""
    words = _load("document")
    out = []
    for lang in langs:
        w = words[lang]
        out += [f"# {md(w['site_title'])}" if lang == langs[0] else f"## {md(w['site_title'])}", "",
                md(w["site_intro"]), "", f"| {md(w['site_model'])} | {md(w['site_teaches'])} |", "|---|---|"]
        for model in models:
            tpl = Template(model, lang)
            out.append(f"| [{model}]({lang}/{model}.md) | {md(tpl.m('title'))} |")
        out.append("")
    return "\n".join(out)


def write_site(folder: Path, models: list, langs: list, trace, docs: Path | None = None, progress=None) -> list[Path]:
    """Write the MkDocs project into `folder` (made whole in a temporary folder beside it, then
    moved in: an existing project there is replaced); `trace(model, lang)` gives the (tape,
    settings) of a model's default run.  Returns the pages written."""
    from tracer.render.walkthrough import write_document

    require()
    folder = Path(folder)
    if folder.exists() and not (folder / "mkdocs.yml").is_file() and any(folder.iterdir()):
        raise TracerError(f"{folder} is not empty and holds no mkdocs.yml: choose a new folder (or an earlier site's)")
    bad = [lang for lang in langs if lang not in LANGS]
    if bad:
        raise TracerError(f"unknown language {bad[0]!r}: choose from {', '.join(LANGS)}")
    if docs is not None and not Path(docs).is_dir():
        raise TracerError(f"--docs {docs}: no such folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tracer-site-", dir=folder.parent))
    pages: list[Path] = []
    try:
        site_docs = tmp / "docs"
        words = _load("document")
        nav: list = [(words[langs[0]]["site_home"], "index.md")]
        for lang in langs:
            (site_docs / lang).mkdir(parents=True)
            entries = []
            for model in models:
                tape, settings = trace(model, lang)
                page = site_docs / lang / f"{model}.md"
                write_document(tape, settings, page, lang)
                pages.append(folder / "docs" / lang / page.name)
                entries.append((model, f"{lang}/{model}.md"))
                if progress:
                    progress(f"{lang}/{model}.md")
            nav.append((words[lang]["site_models"], entries))
        if docs is not None:
            guide = site_docs / "guide"
            shutil.copytree(docs, guide, ignore=shutil.ignore_patterns(".*"))
            found = sorted(p.relative_to(site_docs).as_posix() for p in guide.rglob("*.md"))
            if found:
                nav.append((words[langs[0]]["site_guide"], [(Path(p).stem.replace("-", " "), p) for p in found]))
        (site_docs / "index.md").write_text(index_text(models, langs), "utf-8")
        js = site_docs / "javascripts"
        (js / "mathjax").mkdir(parents=True)
        shutil.copyfile(mathjax_file(), js / "mathjax" / "tex-svg.js")
        (js / "mathjax-config.js").write_text(MATHJAX_CONFIG, "utf-8")
        (site_docs / "stylesheets").mkdir()
        (site_docs / "stylesheets" / "tracer.css").write_text(EXTRA_CSS, "utf-8")
        (tmp / "mkdocs.yml").write_text(config_text(words[langs[0]]["site_title"], nav, langs[0]), "utf-8")
        with quietly():
            if folder.exists():
                old = folder.with_name(folder.name + ".tracer-old")
                folder.rename(old)
                tmp.rename(folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pages


def build_site(folder: Path) -> Path:
    """`mkdocs build --strict` of the project in `folder`; returns the built site's folder."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort, ConfigurationError

    try:
        cfg = load_config(str(Path(folder) / "mkdocs.yml"), strict=True)
        build(cfg)
    except (Abort, ConfigurationError) as e:
        raise TracerError(f"mkdocs could not build the site: {e}") from None
    return Path(cfg["site_dir"])
