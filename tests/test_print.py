"""Printed pages (issue 22), read back from the PDF LibreOffice prints, for the default workbook
of every model (English) and a `--warmup 2000` workbook of the VAE, the GAN, the flow and the
diffusion model in English and Spanish: as many pages as the layout plans (a page LibreOffice
had to add, for a block cut or a sheet too wide, would make more), at most half the pages the
workbooks printed on before, the overview's first page holding the title, the equations, the
settings, the losses and every chart, no cell's text cut (checked in Carlito's own metrics for
every text, and on printed pages against the PDF's text), pictures square.  The workbooks print
once per session, several to one LibreOffice call, two calls at a time."""

from __future__ import annotations

import functools
import math
import re

import pytest
from print_pages import (
    BEFORE,
    CARLITO_HINT,
    advances,
    chart_anchors,
    column_points,
    cut_texts,
    font_file,
    footer,
    page_count,
    pages,
    print_all,
    print_box,
    require_carlito,
    squeezed,
)
from xlsx_parts import read_parts as read_xml

from tracer import api
from tracer.render import fonts
from tracer.render.layout import (
    MARGINS,
    Block,
    MIN_TAIL,
    PAGE_HEIGHT,
    PAGE_WIDTH,
    REPEATED_HEIGHT,
    ROW_HEIGHT,
    Layout,
    Sheet,
    points,
)
from tracer.render.template import Template

# A --warmup 2000 workbook of each of these, in both languages: one traced iteration, and the VAE's
# digit and the flow's data smaller (the default workbooks print every kind of sheet at full size).
WARMUPS = {"vae": {"size": 14}, "gan": {}, "flow": {"grid": 5, "points": 16, "samples": 16}, "diffusion": {}}
MIN_SCALE = 0.5  # no sheet prints smaller, but the pictures and a block wider than the page at it


@pytest.fixture(scope="session")
def printed(soffice, default_workbook, vae_tape, run_tape, tmp_path_factory):
    """{(kind, model, lang): (workbook, its PDF, its Layout)} of every default workbook (English)
    and the warm-up ones, printed once."""
    from conftest import RUNS

    require_carlito()
    folder = tmp_path_factory.mktemp("printed")
    books = {}
    for model in BEFORE:
        default = api.configure(model, "en")
        tape = (vae_tape if model == "vae" else run_tape(model)[1] if model in RUNS and
                api.configure(RUNS[model][0], "en", **RUNS[model][1]) == default else api.run(model).tape)
        books[("default", model, "en")] = (default_workbook(model), Layout(tape, Template(model), {}))
    for model, options in WARMUPS.items():
        run = api.run(model, warmup=2000, iterations=1, **options)
        for lang in ("en", "es"):
            path = folder / f"{model}-warmup-{lang}.xlsx"
            api.Run(run.model, run.config, run.tape, lang).save(path)
            books[("warmup", model, lang)] = (path, Layout(run.tape, Template(model, lang), {}))
    pdfs = print_all([book for book, _ in books.values()], folder / "pdf")
    return {key: (book, pdfs[book], layout) for key, (book, layout) in books.items()}


@functools.lru_cache(maxsize=None)
def read_parts(path):
    """xlsx_parts.read_parts, once per workbook (the largest take seconds): read-only!"""
    return read_xml(path)


KEYS = [("default", m, "en") for m in BEFORE] + [("warmup", m, lang) for m in WARMUPS for lang in ("en", "es")]


def planned(path) -> list[tuple[str, int]]:
    """(sheet, pages) of every visible sheet, as its page setup plans them: one page more than
    its page breaks (the overview: its top on one page)."""
    return [(s.name, len(s.row_breaks) + 1) for s in read_parts(path) if not s.hidden]


def check_setup(path):
    """Every visible sheet's page setup: landscape in the layout's margins, one page wide at its
    scale (at least MIN_SCALE but where a block needs less), its title rows on every page."""
    for s in read_parts(path):
        if s.hidden:
            continue
        assert s.page_setup.get("orientation") == "landscape", s.name
        assert [s.margins[k] for k in ("left", "right", "top", "bottom")] == list(MARGINS), s.name
        r0, r1, c0, c1 = print_box(s)
        wide = sum(column_points(w) for first, last, w in s.col_widths for c in range(first, min(last, c1) + 1))
        if s.print_titles is None:  # the overview: its top on one page
            assert s.fit_to_page and s.page_setup.get("fitToHeight", "1") == "1", s.name
            tall = sum(s.row_heights.get(r, ROW_HEIGHT) for r in range(r0, r1 + 1))
            scale = min(PAGE_WIDTH / wide, PAGE_HEIGHT / tall)
        else:
            assert re.search(r"!\$1:\$\d$", s.print_titles), s.name
            scale = int(s.page_setup["scale"]) / 100
            assert wide * scale <= PAGE_WIDTH, s.name  # one page wide
        assert s.row_breaks == sorted(set(s.row_breaks)) and len(s.row_breaks) <= 1023, s.name
        yield s, scale


@pytest.mark.parametrize("model", list(api.MODELS))
def test_every_sheet_of_every_default_workbook_has_its_page_setup(default_workbook, model):
    """Each sheet's page setup; everything a sheet shows inside its print area (the overview's
    index, below its printed page, apart), every chart too."""
    charts = chart_anchors(default_workbook(model))
    for s, scale in check_setup(default_workbook(model)):
        r0, r1, c0, c1 = print_box(s)
        shown = [(r, c) for (r, c), (kind, value, _) in s.cells.items() if kind != "blank"]
        used = sum(column_points(w) for first, last, w in s.col_widths
                   for c in range(first, min(last, max(c for _, c in shown)) + 1))
        assert scale >= MIN_SCALE or s.name == "Pictures", (s.name, scale)  # below it only the pictures
        assert used * scale <= PAGE_WIDTH, s.name
        assert max(c for _, c in shown) <= c1, s.name
        if s.print_titles is not None:
            assert max(r for r, _ in shown) <= r1, s.name
        assert all(c1_ <= c1 and r1_ <= r1 for _, _, c1_, r1_ in charts.get(s.name, [])), (s.name, charts[s.name])


@pytest.mark.parametrize("model", ["vae", "gan", "flow"])
def test_a_tall_block_repeats_its_title_on_every_page(printed, model):
    """A page that starts inside a block's grid starts with the block's title again, "(cont.)"
    beside the grid; printed (on the block's second page)."""
    book, pdf, layout = printed[("default", model, "en")]
    cells = {s.name: s.cells for s in read_parts(book)}
    start, seen = 1, []
    for sheet in layout.sheets:
        for row in sheet.breaks or []:
            inside = [b for b in sheet.parts if isinstance(b, Block) and b.place.row0 <= row < b.place.row0 + b.place.display[0]]
            if inside:
                (b,) = inside
                text = cells[sheet.name][(row + 1, b.place.col0 + b.place.display[1] + bool(b.tokens) + 1)][1]
                assert text == f"{b.number}  {b.symbol}  (cont.)", (sheet.name, row, text)
                seen.append(start + 1 + sheet.breaks.index(row))
        start += len(sheet.breaks or []) + 1
    assert len(seen) > 10
    (text,) = pages(pdf, seen[:1])
    assert "(cont.)" in text


@pytest.mark.parametrize("key", KEYS)
def test_libreoffice_prints_the_pages_planned(printed, key):
    """As many pages as planned: no page LibreOffice added (a block cut by a page of its own
    making, a sheet too wide or too tall for a page would add some), no blank page (the layout
    plans none), and a default workbook on at most half its pages before."""
    book, pdf, _ = printed[key]
    count = page_count(pdf)
    assert count == sum(n for _, n in planned(book))
    assert [s.name for s, scale in check_setup(book) if scale < MIN_SCALE] in ([], ["Pictures"], ["Imágenes"])
    if key[0] == "default":
        assert count <= BEFORE[key[1]] * HALF_EXCEPTIONS.get(key[1], 0.5), (count, BEFORE[key[1]])


# The share of their pages before that these keep (docs/workbook.md says why): the diffusion model
# printed its iterations at 16 % before; at 50 % its 161,000 numbers need at least 135 pages of 19
# columns by 63 rows, its weights and their gradients (128 × 57 and 128 × 49, in bands) most of them.
HALF_EXCEPTIONS = {"diffusion": 0.66}


def sheet_pages(book) -> dict[str, tuple[int, list[int]]]:
    """{sheet: (its first page in the PDF, the rows (1-based) its pages start at)}."""
    out, page = {}, 1
    for s in read_parts(book):
        if not s.hidden:
            out[s.name] = (page, [1] + s.row_breaks)
            page += len(s.row_breaks) + 1
    return out


@pytest.mark.parametrize("key", KEYS)
def test_every_text_prints_whole(printed, key):
    """No cell's text runs into the next filled cell or out of the print area, no text is taller
    than its row (Carlito's own widths, from the font file); and on the first page of every sheet,
    and on every page of the Pictures and the Warm-up sheets, the PDF holds every text of the
    cells printed there whole."""
    book, pdf, _ = printed[key]
    parts = [s for s in read_parts(book) if not s.hidden]
    assert [cut for s in parts for cut in cut_texts(s)] == []
    starts = sheet_pages(book)
    wanted = []
    for s in parts:
        first, rows = starts[s.name]
        numbers = range(len(rows)) if s.name in ("Pictures", "Imágenes", "Warm-up", "Calentamiento") else [0]
        wanted += [(s, first + n, rows[n], rows[n + 1] if n + 1 < len(rows) else None) for n in numbers]
    texts = pages(pdf, [n for _, n, _, _ in wanted])
    for (s, n, top, end), text in zip(wanted, texts):
        assert footer(text)[:2] == (s.name, n)
        r0, r1, c0, c1 = print_box(s)
        repeated = int(re.search(r"\$(\d+)$", s.print_titles)[1]) if s.print_titles else 0
        page = squeezed(text)
        for (r, c), (kind, value, _) in s.cells.items():
            on_page = r <= repeated or (top <= r and (end is None or r < end))
            if kind == "string" and value.strip() and on_page and r0 <= r <= r1 and c <= c1:
                assert squeezed(value) in page, (s.name, n, r, c, value)


@pytest.mark.parametrize("key", KEYS)
def test_the_overview_first_page_holds_every_chart_readable(printed, key):
    """Page 1: the overview's title, equations, settings, the losses of the traced iterations and
    every chart, at a scale of at least MIN_SCALE; no warm-up step is listed there."""
    book, pdf, layout = printed[key]
    (text,) = pages(pdf, [1])
    tpl = layout.tpl
    page = squeezed(text)
    for words in (tpl.m("title"), tpl.t("equations"), tpl.t("settings"), tpl.t("losses"),
                  *(part.title for part in layout.overview.parts if hasattr(part, "series"))):
        assert squeezed(words)[:40] in page, words
    overview, scale = next(s for s in check_setup(book) if s[0].print_titles is None)
    assert scale >= MIN_SCALE and print_box(overview)[1] < 80  # not a row per warm-up step
    if layout.warmup:  # they are on a sheet of their own, a row each, then the traced iterations
        (sheet,) = [s for s in read_parts(book) if s.name == layout.warmup_sheet.name]
        steps = [v for (r, c), (kind, v, _) in sheet.cells.items() if c == 1 and kind == "number"]
        assert steps == list(range(1, layout.warmup["steps"] + 2))


def test_pictures_are_square_in_libreoffice(printed):
    """Each pixel LibreOffice prints is a square (within 5 %): its cells' width and height."""
    import pypdf

    book, pdf, _ = printed[("default", "vae", "en")]
    first, _ = sheet_pages(book)["Pictures"]
    page = pypdf.PdfReader(pdf).pages[first - 1]
    sizes = {}
    for operands, op in page.get_contents().operations:
        if op == b"re":
            w, h = round(abs(float(operands[2])), 1), round(abs(float(operands[3])), 1)
            if 2 < w < 40 and 2 < h < 40:  # a pixel, not a page or a block of cells
                sizes[(w, h)] = sizes.get((w, h), 0) + 1
    (w, h), n = max(sizes.items(), key=lambda item: item[1])
    assert n > 100 and abs(w / h - 1) < 0.05, sizes


def test_every_picture_is_titled_whole(printed):
    """Over each run of images its title, under each image of a batch its caption (the diffusion's
    forward process: its step t), printed whole; BERT's attention maps state their minimum and
    maximum; after training the VAE shows its error x̂ − x."""
    for key, words in {("warmup", "diffusion", "es"): ["t = 10", "calentamiento, paso 2000"],
                       ("warmup", "vae", "en"): ["the error x̂ − x", "warm-up step 2000"],
                       ("default", "bert", "en"): ["A: block 1, head 2", "min", "max"]}.items():
        book, pdf, _ = printed[key]
        first, rows = sheet_pages(book)[next(s for s in sheet_pages(book) if s in ("Pictures", "Imágenes"))]
        page = squeezed("".join(pages(pdf, range(first, first + len(rows)))))
        for word in words:
            assert squeezed(word) in page, (key, word)


# --- where the pages break ------------------------------------------------------------------------

def test_a_page_breaks_only_where_the_next_block_does_not_fit():
    sheet = Sheet("S", "iteration", width=8, scale=1.0)
    room = sheet.room()
    fits = math.floor(room / ROW_HEIGHT)  # rows on a page
    small = [(3 + 10 * k, 10 + 10 * k) for k in range(8)]  # 8 rows each, a row between
    tall = (83, 83 + 2 * fits)  # taller than a page: it starts on the page before, where 8 rows fit
    sheet.keep = small + [tall, (tall[1] + 2, tall[1] + 9)]
    breaks = sheet.page_breaks()
    pages_ = list(zip([3, *breaks], [*breaks, tall[1] + 10]))
    for a, b in small:  # a block that fits a page is on one
        assert not [r for r in breaks if a < r <= b], (a, b, breaks)
    for a, b in pages_:  # each page holds what fits, and the next block would not
        assert sheet.height(a, b - 1) <= room
    assert breaks[0] == 3 + 10 * (fits // 10)  # the first block that does not fit starts a page
    inside = [r for r in breaks if tall[0] < r <= tall[1]]
    assert len(inside) == 2 and tall[0] not in breaks  # 2 page-fulls on, not a page of its own first


def test_a_block_taller_than_a_page_starts_on_a_new_one_when_its_start_would_not_fit():
    sheet = Sheet("S", "iteration", width=8, scale=1.0)
    fits = math.floor(sheet.room() / ROW_HEIGHT)
    sheet.keep = [(3, 3 + fits - MIN_TAIL), (4 + fits - MIN_TAIL, 4 + 3 * fits)]
    assert sheet.page_breaks()[0] == 4 + fits - MIN_TAIL


def test_a_wide_tensor_is_shown_in_bands_read_band_by_band():
    """40 columns in bands of BAND = 16: band under band, each under its column numbers; a range
    across bands is one per band (for SUM), a dot product a term per piece where either line
    passes to its next band."""
    from tracer.core.op import dot
    from tracer.render.layout import Line, Place

    p = Place("S", 10, 1, 4, 40, bands=3)
    assert p.display == (3 * 5 - 1, 16) and p.rc(0, 0) == (10, 1) and p.rc(0, 16) == (15, 1) and p.rc(3, 39) == (23, 8)
    assert p.addr(3, 39, "S") == "I24" and p.addr(0, 17, "T") == "'S'!C16"
    assert p.span(1, 0, 1, 39, "S") == "B12:Q12,B17:Q17,B22:I22" and p.span(0, 20, 3, 20, "S") == "F16:F19"
    column = Place("S", 40, 30, 40, 1)  # 40 × 1, unbanded: a column
    terms = dot(Line(p, "S", 1, None), Line(column, "S", None, 0)).split("+")
    assert terms == ["MMULT(B12:Q12,AE41:AE56)", "MMULT(B17:Q17,AE57:AE72)", "MMULT(B22:I22,AE73:AE80)"]
    q = Place("S", 10, 20, 40, 4, transposed=True, bands=3)  # turned: its columns run across, in bands
    assert dot(Line(p, "S", 0, None), Line(q, "S", None, 2)).count("SUMPRODUCT") == 3


def test_narrow_sheets_print_at_70_percent_and_wide_ones_fit_the_page():
    narrow, wide = Sheet("a", "iteration", width=8), Sheet("b", "iteration", width=60)
    assert narrow.print_scale() == 0.7
    assert wide.print_scale() == math.floor(100 * PAGE_WIDTH / (points(7) + 60 * points(12))) / 100 < 0.2
    for s in (narrow, wide):  # the print area: as many columns as the page holds at the scale
        assert s.last_column() >= s.width and s.points(s.last_column() + 1) * s.print_scale() <= PAGE_WIDTH
        assert s.points(s.last_column() + 2) * s.print_scale() > PAGE_WIDTH - 75
    assert REPEATED_HEIGHT == 51


# --- fonts ------------------------------------------------------------------------------------------

def test_the_layout_measures_text_in_carlito():
    """tracer.render.fonts's widths are Carlito's own (read from the font file), and its guesses
    for other characters are no narrower than what LibreOffice draws them with."""
    require_carlito()
    for table, style in ((fonts.REGULAR, "Regular"), (fonts.BOLD, "Bold")):
        real = advances(font_file("Carlito", style))
        assert table == tuple(round(real[c] * 1000) for c in fonts.ASCII)
    from pathlib import Path

    used = {c for p in Path(__file__).parent.parent.joinpath("templates").glob("*.toml") for c in p.read_text("utf-8")}
    for bold, style in ((False, "Regular"), (True, "Bold")):
        real, fallback = advances(font_file("Carlito", style)), advances(font_file("DejaVu Sans", style))
        for c in sorted(used - set(fonts.ASCII) - {"\n"}):
            drawn = real.get(c, fallback.get(c, 0)) * 1000
            assert fonts.char_width(c, bold) >= drawn - 1, (c, fonts.char_width(c, bold), drawn)


def test_without_carlito_the_print_tests_say_how_to_install_it(monkeypatch):
    import print_pages

    monkeypatch.setattr(print_pages, "font_file", lambda family, style="Regular": None)
    with pytest.raises(pytest.fail.Exception, match="fonts-crosextra-carlito"):
        print_pages.require_carlito()
    assert "Carlito" in CARLITO_HINT


# --- the exercise's layout ------------------------------------------------------------------------

def test_an_exercise_layout_matches_its_rebuilt_layout():
    """`tracer check` rebuilds the layout of the exercise as handed out (its "your turn" lines
    included): every block in the same place."""
    from tracer.checks.check import rebuild
    from tracer.checks.exercise import make
    from tracer.render.layout import Block

    r = api.run("mlp")
    layout, ex = make(r.tape, r.model, r.config, "es", "backward", "all", False)
    _, again, _ = rebuild(ex.recipe)
    place = {(b.tensor.key, b.row, b.place.row0) for s in layout.sheets for b in s.parts if isinstance(b, Block)}
    assert place == {(b.tensor.key, b.row, b.place.row0) for s in again.sheets for b in s.parts
                     if isinstance(b, Block)}
    assert any(line == layout.tpl.t("exercise_your_turn") for s in layout.sheets for b in s.parts
               if isinstance(b, Block) for line, _ in b.lines)


def test_the_grade_sheet_prints_landscape_its_lines_whole(tmp_path, run_main, soffice):
    """`check --report`: the Grade sheet prints landscape, one page wide, every line of the report
    wrapped in its cell, none cut."""
    exercise, report = tmp_path / "mlp_exercise.xlsx", tmp_path / "report.xlsx"
    assert run_main("exercise", "mlp", "--blank", "backward", "-o", exercise)[0] == 0
    assert run_main("check", exercise, "--report", report)[0] == 1
    grade = read_parts(report)[0]
    assert grade.page_setup.get("orientation") == "landscape" and grade.fit_to_page
    assert grade.page_setup.get("fitToHeight") == "0" and grade.print_area.endswith(f"$A${len(grade.cells)}")
    assert {grade.font_at(r, 1)[3] for r, _ in grade.cells} == {None}  # left, wrapped
    from openpyxl import load_workbook

    ws = load_workbook(report)["Grade"]
    assert all(ws.cell(r, 1).alignment.wrap_text for r in range(1, ws.max_row + 1))
    require_carlito()
    pdf = print_all([report], tmp_path / "pdf", processes=1)[report]
    (text,) = pages(pdf, [1])
    page = squeezed(text)
    assert all(squeezed(str(ws.cell(r, 1).value)) in page for r in range(1, ws.max_row + 1)
               if ws.cell(r, 1).value and r < 30)
