"""The cell stream (tracer.render.xlsx._SheetCells) writes what XlsxWriter writes.

tracer writes a workbook's cells itself, as the <sheetData> XML of XlsxWriter's constant-memory
mode, and splices them into the package XlsxWriter writes (styles, charts, conditional formats,
hyperlinks, merged ranges, print setup).  Here the same workbooks are also written with every cell
going through XlsxWriter's own write_* calls (tests/xlsx_reference.py), and every part of the two
packages must be the same, byte for byte, but for the numbers of constants: XlsxWriter writes 16
significant digits, the stream Python's shortest repr, which gives back the very double (and
rounds to XlsxWriter's 16 digits).  A same part is the same to every reader: each cell's formula,
value and style, each row's height, the sheet's dimension.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile

import pytest
import xlsxwriter
from xlsx_reference import write_reference

from tracer import api
from tracer.errors import TracerError
from tracer.render import xlsx
from tracer.render.layout import Layout
from tracer.render.template import Template

NUMBER = re.compile(rb'(<c r="[A-Z]+[0-9]+"(?: s="[0-9]+")?><v>)([^<]*)(?=</v></c>)')  # a constant's cell


def same_parts(stream, reference) -> int:
    """Assert that two .xlsx packages hold the same parts (numbers of constants aside, see the
    module's docstring); returns how many numbers were compared."""
    with zipfile.ZipFile(stream) as a, zipfile.ZipFile(reference) as b:
        assert a.namelist() == b.namelist()
        numbers = 0
        for name in a.namelist():
            ours, theirs = a.read(name), b.read(name)
            found = NUMBER.findall(ours)
            assert all(repr(float(v)).encode() == v for _, v in found), name  # the shortest exact repr
            numbers += len(found)
            ours = NUMBER.sub(lambda m: m[1] + f"{float(m[2]):.16G}".encode(), ours)
            if ours != theirs:
                at = next((k for k, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
                raise AssertionError(f"{name} differs at byte {at}: {ours[at - 80:at + 80]!r} != {theirs[at - 80:at + 80]!r}")
    return numbers


# Every kind of part the writer writes: blocks (formulas, constants, transposed, token columns, row and
# column labels), pictures (formulas, warm-up snapshots, labels, heights, merged minima and maxima),
# views, charts, scatter charts, hyperlinks, hyperparameters, generated texts, heatmaps labelled with
# tokens; in English and Spanish
CASES = [("vae-size4", "en"), ("vae-batch-warmup", "es"), ("gan-warmup-adam-upscale", "en"), ("attention-es-bpe-adam", "en"),
         ("lstm-es-bpe-adam", "es"), ("mlp-xor", "es"), ("diffusion-adam-warmup", "en"), ("flow-gaussians-k1-adam", "es")]


@pytest.mark.parametrize("key, lang", CASES)
def test_the_cell_stream_writes_what_xlsxwriter_writes(run_tape, key, lang, tmp_path):
    cfg, tape = run_tape(key)
    config = dataclasses.asdict(cfg)
    cells = xlsx.write_xlsx(Layout(tape, Template.of(tape, lang), config), tmp_path / "stream.xlsx")
    assert write_reference(Layout(tape, Template.of(tape, lang), config), tmp_path / "reference.xlsx") == cells
    assert same_parts(tmp_path / "stream.xlsx", tmp_path / "reference.xlsx") > 0


@pytest.mark.parametrize("model, blank, self_check, options", [
    ("vae", "backward", True, {"hidden": 2, "iterations": 2}),  # the answers sheet, the self-check cells
    ("mlp", "forward,update", False, {}),
])
def test_an_exercise_too(model, blank, self_check, options, tmp_path):
    """A student's version: blank cells, values left out, #N/A until filled, the hidden sheets."""
    run = api.run(model, "en", output=tmp_path / "run.xlsx", **options)
    layout, _ = api.lay_out_exercise(run, blank, self_check=self_check)
    api.write_exercise(layout, tmp_path / "stream.xlsx")
    layout, _ = api.lay_out_exercise(run, blank, self_check=self_check)
    write_reference(layout, tmp_path / "reference.xlsx")
    same_parts(tmp_path / "stream.xlsx", tmp_path / "reference.xlsx")


def test_a_difference_is_found(run_tape, tmp_path):
    """The comparison can fail: one style index changed in one cell of the stream."""
    cfg, tape = run_tape("vae-size4")
    xlsx.write_xlsx(Layout(tape, Template.of(tape, "en"), dataclasses.asdict(cfg)), tmp_path / "stream.xlsx")
    write_reference(Layout(tape, Template.of(tape, "en"), dataclasses.asdict(cfg)), tmp_path / "reference.xlsx")
    with zipfile.ZipFile(tmp_path / "stream.xlsx") as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts["xl/worksheets/sheet3.xml"] = parts["xl/worksheets/sheet3.xml"].replace(b'<c r="B12" s="', b'<c r="B12" s="1', 1)
    with zipfile.ZipFile(tmp_path / "edited.xlsx", "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    with pytest.raises(AssertionError, match="sheet3.xml differs"):
        same_parts(tmp_path / "edited.xlsx", tmp_path / "reference.xlsx")


def test_numbers_keep_every_digit_and_formulas_are_written_as_given(tmp_path):
    """A constant is written with Python's shortest exact repr (XlsxWriter's 16 digits would not
    always give back the same double); a formula is not scanned for Excel 365 functions (tracer's
    use only portable ones: tests/test_portable.py)."""
    wb = xlsxwriter.Workbook(str(tmp_path / "book.xlsx"), {"constant_memory": True})
    cells = xlsx._SheetCells(wb.add_worksheet("S"), tmp_path / "cells.xml", xlsx.ROW_HEIGHT)
    cells.number(0, 0, 0.1 + 0.2)
    cells.formula(1, 0, "STDEV.S(A1:A1)", None, 0.0)
    cells.close()
    wb.close()
    text = (tmp_path / "cells.xml").read_text("utf-8")
    assert '<c r="A1"><v>0.30000000000000004</v></c>' in text and "<f>STDEV.S(A1:A1)</f>" in text


def test_rows_out_of_order_are_refused(tmp_path):
    """XlsxWriter's constant-memory mode drops, without a word, a cell of a row already written:
    the stream refuses it (a writer bug)."""
    wb = xlsxwriter.Workbook(str(tmp_path / "book.xlsx"), {"constant_memory": True})
    cells = xlsx._SheetCells(wb.add_worksheet("S"), tmp_path / "cells.xml", xlsx.ROW_HEIGHT)
    cells.number(3, 0, 1.0)
    with pytest.raises(AssertionError, match="row 2 written after row 4"):
        cells.number(1, 0, 1.0)
    cells.close()
    wb.close()


def test_an_xlsxwriter_without_the_format_index_is_refused(monkeypatch):
    xlsx.check_xlsxwriter()
    monkeypatch.delattr(xlsxwriter.format.Format, "_get_xf_index")
    with pytest.raises(TracerError, match="install XlsxWriter>="):
        xlsx.check_xlsxwriter()


def test_the_pyproject_bound_is_the_one_the_writer_names():
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("needs the source tree")
    assert f'"XlsxWriter{xlsx.XLSXWRITER_RANGE}"' in pyproject.read_text("utf-8")
