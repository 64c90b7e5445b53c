"""`tracer site`: the MkDocs project builds with `mkdocs build --strict`, and a built page shows its
mathematics (MathJax, served from the site itself) and its pictures in headless Chromium.

The MkDocs tests skip without the [site] extra and the Chromium ones without chromium, unless
TRACER_REQUIRE_SITE / TRACER_REQUIRE_CHROMIUM is set (CI sets both).  One small site (two models,
two languages, a guide page) is written and built once per session.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracer import api
from tracer.errors import TracerError

SCREENSHOT_SIZE = (1280, 1600)


def require_site():
    if all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "pymdownx", "mathjax", "matplotlib")):
        return
    if os.environ.get("TRACER_REQUIRE_SITE"):
        pytest.fail('TRACER_REQUIRE_SITE is set but the site extra is missing: pip install ".[site]"')
    pytest.skip('the site extra is not installed: pip install ".[site]"')


def require_chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("TRACER_REQUIRE_CHROMIUM"):
        pytest.fail("TRACER_REQUIRE_CHROMIUM is set but chromium is not installed (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a page of the disk, with a fresh profile and no network traffic of its own."""
    browser = require_chromium()
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                           f"--user-data-dir={profile}", "--virtual-time-budget=20000", *args, page.as_uri()],
                          capture_output=True, timeout=300, check=False, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """(the project's folder, the built site's folder): vae and gan in English and Spanish, and a
    guide page, written and built once."""
    require_site()
    root = tmp_path_factory.mktemp("site")
    guide = root / "guide-src"
    guide.mkdir()
    (guide / "exercises.md").write_text("# Exercises\n\nBlank a phase: `tracer exercise vae --blank backward`.\n")
    pages, built = api.site(root / "project", ["vae", "gan"], ["en", "es"], docs=guide, build=True)
    return root / "project", built, pages


def test_the_project_and_its_pages(site):
    project, built, pages = site
    assert sorted(p.relative_to(project).as_posix() for p in pages) == \
        ["docs/en/gan.md", "docs/en/vae.md", "docs/es/gan.md", "docs/es/vae.md"]
    config = (project / "mkdocs.yml").read_text("utf-8")
    assert "pymdownx.arithmatex" in config and "javascripts/mathjax/tex-svg.js" in config and "font: false" in config
    assert "guide/exercises.md" in config
    index = (project / "docs" / "index.md").read_text("utf-8")
    for lang in ("en", "es"):
        for model in ("vae", "gan"):
            assert f"]({lang}/{model}.md)" in index
    assert "what it teaches" in index and "qué enseña" in index
    for page in pages:
        assert (page.parent / (page.stem + "-figures")).is_dir()
    assert not [p for p in project.parent.iterdir() if p.name.startswith(".tracer")]  # no temporary left


def test_the_site_builds_strictly(site):
    _, built, _ = site
    for page in ("index.html", "en/vae.html", "es/gan.html", "guide/exercises.html"):
        assert (built / page).is_file(), page
    assert (built / "javascripts" / "mathjax" / "tex-svg.js").stat().st_size > 1_000_000
    html = (built / "en" / "gan.html").read_text("utf-8")
    assert 'class="arithmatex"' in html and "gan-figures/" in html
    assert "cdn." not in html and "googleapis" not in html  # nothing fetched from the network


def test_the_strict_build_can_fail(site, tmp_path):
    from tracer.render.site import build_site

    project, _, _ = site
    copy = tmp_path / "broken"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("site"))
    (copy / "docs" / "guide" / "exercises.md").write_text("# Exercises\n\nSee [the missing page](nowhere.md).\n")
    with pytest.raises(TracerError, match="mkdocs could not build"):
        build_site(copy)


LOADED = ("<script>window.addEventListener('load', () => setTimeout(() => document.body.setAttribute("
          "'data-images', [...document.images].map(i => i.naturalWidth).join(',')), 3000));</script></body>")


def rendered(page: Path, tmp: Path) -> str:
    """The page's DOM after Chromium has run its scripts: MathJax's output, and each image's
    natural width (0: not shown) in the body's data-images."""
    probe = page.with_name(page.stem + "-probe.html")
    probe.write_text(page.read_text("utf-8").replace("</body>", LOADED), "utf-8")
    try:
        return chromium(probe, tmp, "--dump-dom").stdout.decode("utf-8", "replace")
    finally:
        probe.unlink()


def test_a_page_renders_in_chromium(site, tmp_path):
    """The mathematics typeset (MathJax's SVG, from the site's own copy), every picture shown,
    and a screenshot to look at."""
    _, built, _ = site
    page = built / "en" / "gan.html"
    dom = rendered(page, tmp_path)
    assert dom.count("<mjx-container") > 100
    assert "\\frac" not in re.sub(r"<[^>]+>", "", dom.split("<mjx-container", 1)[1])  # no TeX left as text
    assert "\\(" not in re.sub(r"<[^>]+>", "", dom)  # the table of contents' symbols typeset too
    widths = [int(w) for w in re.search(r'data-images="([\d,]*)"', dom)[1].split(",") if w]
    assert len(widths) >= 4 and all(w > 0 for w in widths)
    shot = tmp_path / "gan.png"
    chromium(page, tmp_path, f"--window-size={SCREENSHOT_SIZE[0]},{SCREENSHOT_SIZE[1]}", f"--screenshot={shot}")
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == SCREENSHOT_SIZE and image.getextrema()[0] < 50  # dark text on the page


def test_the_render_check_can_fail(site, tmp_path):
    """Without the site's MathJax the page keeps its TeX: the check above sees it."""
    _, built, _ = site
    copy = tmp_path / "site"
    shutil.copytree(built, copy)
    (copy / "javascripts" / "mathjax" / "tex-svg.js").unlink()
    dom = rendered(copy / "en" / "gan.html", tmp_path)
    assert "<mjx-container" not in dom and "\\frac" in dom


def test_the_cli(tmp_path, run_main, refused):
    require_site()
    folder = tmp_path / "s"
    code, out, err = run_main("site", folder, "--models", "mlp", "--lang", "es")
    assert code == 0, err
    assert f"wrote {folder}: mkdocs.yml and 1 page" in out and (folder / "docs" / "es" / "mlp.md").is_file()
    assert "unknown model 'nope'" in refused("site", tmp_path / "t", "--models", "vae,nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "not empty" in refused("site", tmp_path / "full", "--models", "mlp")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
