"""Print-ready workbooks: every sheet has a page setup (landscape, one page wide, its title rows on
every page, a page break before each block that would not fit on the rest of a page), the
overview prints on one page with its chart, the pictures are square, and LibreOffice prints
exactly the pages the layout planned: no block cut by a page of its own making, no page split
in width."""

from __future__ import annotations

import math

import pytest
from print_pages import pages, to_pdf
from xlsx_parts import read_parts

from tracer import api
from tracer.render.layout import (
    PAGE_HEIGHT,
    PIXEL_HEIGHT,
    PIXEL_WIDTH,
    REPEATED_HEIGHT,
    REPEATED_ROWS,
    Block,
    Layout,
    Sheet,
    points,
)
from tracer.render.template import Template


def check_setup(path) -> int:
    """Assert every visible sheet's page setup; return the pages they plan (breaks + 1 each)."""
    planned = 0
    for s in read_parts(path):
        if s.hidden:
            continue
        assert s.page_setup.get("orientation") == "landscape", s.name
        assert s.print_area, s.name  # the sheet's columns, not text running past them
        if s.print_titles is None:  # the overview: its top on one page
            assert s.fit_to_page and s.page_setup.get("fitToHeight", "1") == "1", s.name
        else:
            assert s.print_titles.endswith(f"!$1:${REPEATED_ROWS}"), s.name
            if s.fit_to_page:  # one page wide, as many tall as it takes
                assert s.page_setup.get("fitToWidth", "1") == "1" and s.page_setup["fitToHeight"] == "0", s.name
            else:  # the pictures: a scale at which one page is wide enough and each picture whole
                assert 10 <= int(s.page_setup.get("scale", 100)) <= 100, s.name
        assert s.row_breaks == sorted(set(s.row_breaks)) and len(s.row_breaks) <= 1023, s.name
        planned += len(s.row_breaks) + 1
    return planned


@pytest.mark.parametrize("model", list(api.MODELS))
def test_every_sheet_of_every_default_workbook_prints(default_workbook, model):
    assert check_setup(default_workbook(model)) > 3


def test_pictures_have_explicit_square_pixels(default_workbook):
    (pictures,) = [s for s in read_parts(default_workbook("vae")) if s.name == "Pictures"]
    excel_width = int(PIXEL_WIDTH * 7 + 0.5) + 5  # pixels: Excel's digit of Calibri 11 is 7 px
    assert [round(w * 7) for first, _, w in pictures.col_widths if first > 1] == [excel_width]  # stored: px / 7
    assert len(pictures.row_heights) >= 4 * 28 and set(pictures.row_heights.values()) == {PIXEL_HEIGHT}
    assert abs(excel_width / (PIXEL_HEIGHT * 4 / 3) - 1) < 0.05  # 26 × 27 px


def test_equations_use_no_math_font(default_workbook):
    """A math font (Cambria Math, or the one that replaces it) sets √ for a formula layout: the
    equations use the workbook's own font."""
    import zipfile

    with zipfile.ZipFile(default_workbook("transformer")) as z:
        assert "Cambria Math" not in z.read("xl/styles.xml").decode()


# --- where the pages break ------------------------------------------------------------------------

def test_page_breaks_keep_each_block_on_one_page():
    sheet = Sheet("S", "iteration", width=8)
    room = PAGE_HEIGHT - REPEATED_HEIGHT
    per_page = sheet.height(0, 0)  # a default row, with room to spare
    fits = math.floor(room / per_page)
    sheet.keep = [(3, 12), (14, 14 + fits - 5), (14 + fits - 3, 14 + fits + 10), (200, 200 + 3 * fits)]
    breaks = sheet.page_breaks()
    for a, b in sheet.keep:  # a block that fits a page starts one when it would not fit the rest
        inside = [r for r in breaks if a < r <= b]
        assert not inside if b - a + 1 <= fits else len(inside) == math.ceil((b - a + 1) / fits) - 1, (a, b, breaks)
    assert 14 + fits - 3 in breaks and 3 not in breaks  # the first page starts with the first block
    for a, b in zip([3, *breaks], [*breaks, 200 + 3 * fits + 1]):  # each page's blocks fit on it
        end = max(min(kb, b - 1) for ka, kb in sheet.keep if a <= ka < b or ka < a <= kb)
        assert sheet.height(a, end) <= room, (a, b, end)


def test_wide_sheets_print_smaller_and_break_more_often():
    narrow, wide = Sheet("a", "iteration", width=8), Sheet("b", "iteration", width=60)
    assert narrow.print_scale() == 1 and wide.print_scale() == math.floor(
        100 * 691 / (points(7) + 60 * points(12))) / 100 < 0.2
    for s in (narrow, wide):
        s.keep = [(3 + 20 * k, 20 + 20 * k) for k in range(50)]
    assert len(wide.page_breaks()) < len(narrow.page_breaks())


# --- what LibreOffice prints ----------------------------------------------------------------------

PRINTED = {  # small workbooks of each kind: blocks of every size, tokens, pictures, an exercise
    "vae-size4": ("vae", {"size": 4, "hidden": 2}, None),
    "transformer": ("transformer", {"iterations": 1, "generate": 2, "temperature": "1"}, None),
    "mlp-exercise": ("mlp", {}, "forward,loss,backward,update"),
}


@pytest.mark.parametrize("key", list(PRINTED))
def test_libreoffice_prints_the_pages_planned(soffice, tmp_path, key):
    """LibreOffice honours the setup: as many pages as the breaks plan (a block cut by a page
    LibreOffice had to add, or a page split in width, would make more), the overview alone on
    the first page, every page titled."""
    model, options, blank = PRINTED[key]
    path = tmp_path / f"{key}.xlsx"
    if blank:
        api.exercise(model, blank, path, **options)
    else:
        api.run(model, **options).save(path)
    printed = pages(to_pdf(path, tmp_path))
    assert len(printed) == check_setup(path)
    overview = Layout(api.run(model, **options).tape, Template(model), {}).overview.name
    assert printed[0].split("\n")[0].startswith(overview) and not printed[1].split("\n")[0].startswith(overview)
    assert "Loss per iteration" in printed[0]
    if blank:  # a student's blocks say so on paper
        assert sum("✎" in page for page in printed) >= 4


def test_pictures_are_square_in_libreoffice(soffice, tmp_path):
    """Each pixel LibreOffice prints is a square (within 5 %): its cells' width and height."""
    import pypdf

    path = tmp_path / "v.xlsx"
    api.run("vae", size=4, hidden=2, iterations=1).save(path)
    reader = pypdf.PdfReader(to_pdf(path, tmp_path))
    page = next(p for p in reader.pages if "Image views" in p.extract_text())
    sizes = {}
    for operands, op in page.get_contents().operations:
        if op == b"re":
            w, h = round(abs(float(operands[2])), 1), round(abs(float(operands[3])), 1)
            if 2 < w < 40 and 2 < h < 40:  # a pixel, not a page or a block of cells
                sizes[(w, h)] = sizes.get((w, h), 0) + 1
    (w, h), n = max(sizes.items(), key=lambda item: item[1])
    assert n > 100 and abs(w / h - 1) < 0.05, sizes


def test_an_exercise_layout_matches_its_rebuilt_layout():
    """`tracer check` rebuilds the layout of the exercise as handed out (its "your turn" lines
    included): every block in the same place."""
    from tracer.checks.check import rebuild
    from tracer.checks.exercise import make

    r = api.run("mlp")
    layout, ex = make(r.tape, r.model, r.config, "es", "backward", "all", False)
    _, again, _ = rebuild(ex.recipe)
    place = {(b.tensor.key, b.row, b.place.row0) for s in layout.sheets for b in s.parts if isinstance(b, Block)}
    assert place == {(b.tensor.key, b.row, b.place.row0) for s in again.sheets for b in s.parts
                     if isinstance(b, Block)}
    assert any(line == layout.tpl.t("exercise_your_turn") for s in layout.sheets for b in s.parts
               if isinstance(b, Block) for line, _ in b.lines)
