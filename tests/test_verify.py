"""Tests of tracer.verify: recalculating workbooks in LibreOffice and in IronCalc.

Tests that need LibreOffice use the ``soffice`` fixture (or the ``engine`` ones, once per
engine): they are skipped when it is not installed, unless TRACER_REQUIRE_SOFFICE is set, in
which case they fail.  IronCalc is a dependency.  Each LibreOffice run takes a second or more,
so the workbooks are built and verified once per module and engine.
"""

import math
import os
import sys
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from tracer import engines
from tracer.checks import verify
from tracer.checks.verify import VerifyReport, verify_workbook
from tracer.engines import ironcalc, libreoffice
from tracer.engines.libreoffice import find_soffice, recalculate
from tracer.engines.workbook import address
from tracer.errors import TracerError


@pytest.fixture
def no_libreoffice(monkeypatch):
    """Make any attempt to start LibreOffice fail the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("LibreOffice must not be started")
    monkeypatch.setattr(libreoffice, "recalculate", forbidden)
    monkeypatch.setattr(libreoffice, "_run", forbidden)


# --------------------------------------------------------------------------
# Workbooks
# --------------------------------------------------------------------------

def write_good_workbook(path: Path) -> int:
    """A workbook whose stored values are the true results; returns its formula count."""
    wb = xlsxwriter.Workbook(path)
    overview = wb.add_worksheet("Overview")
    step = wb.add_worksheet("Iteración 1")
    calc = wb.add_worksheet("Calc")
    overview.write_number("C5", 0.1)
    step.write_number("B5", 2.5)
    wb.define_name("lr", "=Overview!$C$5")

    a, b, e = [0.2, 0.7, 0.9], [0.3, 0.6, 0.8], [1.5, -2.0, 3.25]
    calc.write_row("A1", a)       # A1:C1
    calc.write_column("E1", e)    # E1:E3
    calc.write_column("G1", a)    # G1:G3
    calc.write_column("H1", b)    # H1:H3
    calc.write_number("B15", 1.0)
    calc.write_number("B16", 3.0)
    calc.write_column("K1", ["dog", "cat", "food"])  # K1:K3, the named range `words`
    wb.define_name("words", "=Calc!$K$1:$K$3")
    dot = sum(x * y for x, y in zip(a, e))
    terms = [-(x * math.log(p) + (1 - x) * math.log(1 - p)) for x, p in zip(a, b)]
    bce = math.fsum(terms)
    formulas = [
        ("B10", "=MMULT(A1:C1,E1:E3)", dot),
        ("B11", "=SUMPRODUCT(G1:G3,E1:E3)", dot),
        *((f"I{k}", f"=-(G{k}*LN(H{k})+(1-G{k})*LN(1-H{k}))", t) for k, t in enumerate(terms, start=1)),
        ("B12", "=SUM(I1:I3)", bce),  # the binary cross-entropy in steps: the formula rule
        ("B13", "='Iteración 1'!B5*2", 5.0),
        ("B14", "=B15-lr*B16", 1.0 - 0.1 * 3.0),
        ("B17", '="x"&B15', "x1"),
        ("B18", "=B15>0", True),
        ("B19", '=IF(B15>0,"",1)', ""),
        ("B20", "=EXP(B12)/3", math.exp(bce) / 3),
        ("B21", "=INDEX(words,B15+1)", "cat"),
        ("B22", "=MATCH(LARGE(E1:E3,1),E1:E3,0)-1", 2),
        ("B23", "=SUMIF(G1:G3,0.7,E1:E3)", -2.0),
        ("B24", "=SUMPRODUCT((G1:G3<=0.7)*1)", 2),
        ("B25", "=TANH(B15)+SQRT(PI())+SIN(B16)*COS(B16)+AVERAGE(A1:C1)+COUNT(A1:C1)+MAX(E1:E3)",
         math.tanh(1) + math.sqrt(math.pi) + math.sin(3) * math.cos(3) + sum(a) / 3 + 3 + 3.25),
    ]
    for cell, formula, value in formulas:
        calc.write_formula(cell, formula, None, value)
    wb.close()
    return len(formulas)


def write_bad_workbook(path: Path) -> None:
    """A wrong formula with a right-looking stored value, and error results."""
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Sheet")
    ws.write_number("A1", 3)
    ws.write_number("A2", 4)
    ws.write_formula("B1", "=A1*A2", None, 12)   # right
    ws.write_formula("B2", "=A1+A2", None, 12)   # wrong: the stored value is A1*A2
    ws.write_formula("B3", "=A1/0", None, 0)     # #DIV/0!
    ws.write_formula("B4", "=NOSUCHFUNCTION(A1)", None, 0)  # #NAME?
    wb.close()


@pytest.fixture(scope="module")
def good(module_engine, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.xlsx"
    n = write_good_workbook(path)
    return n, verify_workbook(path, engine=module_engine)


@pytest.fixture(scope="module")
def bad(module_engine, tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "bad.xlsx"
    write_bad_workbook(path)
    return verify_workbook(path, engine=module_engine)


# --------------------------------------------------------------------------
# In each engine
# --------------------------------------------------------------------------

def test_correct_workbook_verifies(good):
    n, report = good
    assert report.ok, report.format()
    assert report.n_formulas == n
    assert report.errors == [] and report.mismatches == []
    assert report.max_rel_err < 1e-12
    text = report.format()
    assert f"{n} formula cells" in text and text.endswith("OK")


def test_wrong_formula_with_right_stored_value_fails(bad):
    # Passing this proves the engine recalculated instead of keeping values.
    assert not bad.ok
    assert bad.n_formulas == 4
    assert bad.n_mismatches == 1
    assert bad.mismatches == [("Sheet!B2", 12, 7)]
    assert bad.worst == "Sheet!B2"
    assert "Sheet!B2" in bad.format()


def test_error_values_reported_with_address(bad):
    assert ("Sheet!B3", "#DIV/0!") in bad.errors
    assert ("Sheet!B4", "#NAME?") in bad.errors
    lines = bad.lines()
    assert any("Sheet!B3" in line and "#DIV/0!" in line for line in lines)
    assert any("Sheet!B4" in line and "#NAME?" in line for line in lines)
    assert lines[-1] == "FAILED"


def test_a_range_given_to_ln_fails_in_ironcalc_but_not_in_libreoffice(engine, tmp_path):
    """Why the formula rule: LN of a range inside SUMPRODUCT, the VAE's recon before issue 12.
    LibreOffice evaluates it as an array; IronCalc (like other engines) intersects it with the
    formula's own row and gives #VALUE!, so verify in IronCalc fails on it."""
    path = tmp_path / "arrays.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Calc")
    ws.write_column("A1", [0.2, 0.7, 0.9])
    ws.write_column("B1", [0.3, 0.6, 0.8])
    bce = -sum(x * math.log(p) + (1 - x) * math.log(1 - p) for x, p in ((0.2, 0.3), (0.7, 0.6), (0.9, 0.8)))
    ws.write_formula("D10", "=-SUMPRODUCT(A1:A3*LN(B1:B3)+(1-A1:A3)*LN(1-B1:B3))", None, bce)
    wb.close()
    report = verify_workbook(path, engine=engine)
    if engine == "ironcalc":
        assert not report.ok and report.errors == [("Calc!D10", "#VALUE!")]
    else:
        assert report.ok, report.format()


def test_recalculate_writes_into_outdir(soffice, tmp_path):
    src = tmp_path / "in" / "book.xlsx"
    src.parent.mkdir()
    write_bad_workbook(src)
    out = recalculate(src, tmp_path / "out")
    assert out == tmp_path / "out" / "book.xlsx" and out.is_file()
    with pytest.raises(TracerError, match="overwrite"):
        recalculate(src, src.parent)


# --------------------------------------------------------------------------
# Without LibreOffice
# --------------------------------------------------------------------------

def test_missing_file(tmp_path, no_libreoffice):
    with pytest.raises(TracerError, match="no such file"):
        verify_workbook(tmp_path / "absent.xlsx")


@pytest.mark.parametrize("name", ["notes.xlsx", "foo.txt"])
def test_text_file_is_not_a_workbook(tmp_path, no_libreoffice, name):
    path = tmp_path / name
    path.write_text("just text\n")
    with pytest.raises(TracerError, match=f"not an Excel workbook: {name}"):
        verify_workbook(path)


def test_zip_that_is_not_a_workbook(tmp_path, no_libreoffice):
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(TracerError, match="not an Excel workbook"):
        verify_workbook(path)


def test_no_formulas_is_not_ok(tmp_path, no_libreoffice):
    path = tmp_path / "plain.xlsx"
    wb = xlsxwriter.Workbook(path)
    wb.add_worksheet().write_number("A1", 1.0)
    wb.close()
    report = verify_workbook(path, engine="ironcalc")
    assert report.n_formulas == 0 and not report.ok
    assert any("no formula cells: nothing to verify" in line for line in report.lines())


def test_find_soffice_missing(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("TRACER_SOFFICE", raising=False)
    with pytest.raises(TracerError, match="apt-get install -y libreoffice-calc-nogui"):
        find_soffice()


def test_find_soffice_honours_env(monkeypatch):
    monkeypatch.setenv("TRACER_SOFFICE", sys.executable)
    assert find_soffice() == sys.executable
    monkeypatch.setenv("TRACER_SOFFICE", "/no/such/soffice")
    with pytest.raises(TracerError, match="TRACER_SOFFICE"):
        find_soffice()


def fake_soffice(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-soffice"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script")
def test_recalculate_reports_failure(tmp_path, monkeypatch):
    src = tmp_path / "book.xlsx"
    write_bad_workbook(src)
    monkeypatch.setenv("TRACER_SOFFICE", fake_soffice(tmp_path, "echo broken >&2; exit 0"))
    with pytest.raises(TracerError, match="could not recalculate book.xlsx.*broken"):
        recalculate(src, tmp_path / "out")


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script")
def test_recalculate_timeout(tmp_path, monkeypatch):
    src = tmp_path / "book.xlsx"
    write_bad_workbook(src)
    monkeypatch.setenv("TRACER_SOFFICE", fake_soffice(tmp_path, "sleep 30"))
    with pytest.raises(TracerError, match="did not finish"):
        recalculate(src, tmp_path / "out", timeout=0.5)


def compare(stored, recalc, rtol=1e-9, atol=1e-12) -> VerifyReport:
    report = VerifyReport(path=Path("x.xlsx"), rtol=rtol, atol=atol, n_formulas=1)
    verify._compare(report, {("S", 1, 1): stored}, {("S", 1, 1): recalc})
    return report


@pytest.mark.parametrize("stored, recalc, ok", [
    (1.0, 1.0 + 1e-12, True),        # within rtol
    (1.0, 1.0 + 1e-6, False),
    (0.0, 1e-13, True),              # within atol
    (0.0, 1e-9, False),
    (1e20, 1e20 * (1 + 1e-10), True),
    (3, 3.0, True),
    ("a", "a", True),
    ("a", "b", False),
    (True, True, True),
    (True, False, False),
    (1.0, None, False),              # missing result
    ("", None, True),                # empty text reads back as None
    (1.0, "1", False),
    (1.0, "#VALUE!", False),
    (1.0, "Err:502", False),
])
def test_compare_rules(stored, recalc, ok):
    assert compare(stored, recalc).ok is ok


def test_compare_tracks_largest_errors():
    report = VerifyReport(path=Path("x.xlsx"), n_formulas=2)
    verify._compare(report, {("S", 1, 1): 1.0, ("S", 2, 1): 100.0}, {("S", 1, 1): 1.0 + 2e-10, ("S", 2, 1): 100.0 + 1e-9})
    assert report.ok
    assert report.max_abs_err == pytest.approx(1e-9, rel=1e-3)
    assert report.max_rel_err == pytest.approx(2e-10, rel=1e-3)
    assert report.worst == "S!A1"


def test_relative_error_is_measured_where_it_means_something():
    """A tiny value off by rounding noise would be a huge relative error: relative errors count
    only on cells of size REL_FLOOR or more; the report says over how many."""
    report = VerifyReport(path=Path("x.xlsx"), n_formulas=3)
    verify._compare(report, {("S", 1, 1): 1e-15, ("S", 2, 1): 0.5, ("S", 3, 1): 0.0},
                    {("S", 1, 1): 2e-15, ("S", 2, 1): 0.5 + 1.5e-11, ("S", 3, 1): 0.0})
    assert report.ok and report.n_rel == 1
    assert report.max_rel_err == pytest.approx(3e-11, rel=1e-3)
    assert "largest relative error: 3.0e-11 (over the 1 cells of size 1e-06 or more)" in report.format()


def test_address_quotes_sheet_names():
    assert address("Sheet", 5, 2) == "Sheet!B5"
    assert address("Iteración 1", 5, 2) == "'Iteración 1'!B5"
    assert address("it's", 1, 1) == "'it''s'!A1"


# --------------------------------------------------------------------------
# Choosing the engines
# --------------------------------------------------------------------------

@pytest.fixture
def without(monkeypatch):
    """without(name): make that engine look uninstalled."""
    def hide(name):
        if name == "libreoffice":
            monkeypatch.setenv("PATH", "")
            monkeypatch.delenv("TRACER_SOFFICE", raising=False)
        else:
            monkeypatch.setattr(ironcalc, "_module", lambda: None)
    return hide


def test_the_engines_chosen(without):
    assert [m.NAME for m in engines.chosen("ironcalc")] == ["ironcalc"]
    without("libreoffice")
    assert [m.NAME for m in engines.chosen(None)] == ["ironcalc"]  # every installed one
    with pytest.raises(TracerError, match="apt-get install -y libreoffice-calc-nogui"):
        engines.chosen("libreoffice")
    with pytest.raises(TracerError, match="LibreOffice"):
        engines.chosen("all")  # all: each must be installed
    with pytest.raises(TracerError, match="unknown engine 'excel'"):
        engines.chosen("excel")
    without("ironcalc")
    with pytest.raises(TracerError, match="no spreadsheet engine found.*pip install ironcalc"):
        engines.chosen(None)


@pytest.mark.parametrize("engine, hint", [("ironcalc", "pip install ironcalc"),
                                          ("libreoffice", "apt-get install -y libreoffice-calc-nogui")])
def test_a_missing_engine_is_a_one_line_error(tmp_path, run_main, without, engine, hint):
    path = tmp_path / "good.xlsx"
    write_good_workbook(path)
    without(engine)
    code, out, err = run_main("verify", path, "--engine", engine)
    assert code == 2 and out == "" and hint in err and len(err.strip().splitlines()) == 1


def test_without_libreoffice_verify_uses_ironcalc(tmp_path, run_main, without):
    """After `pip install` on a machine without LibreOffice, verify still checks every formula."""
    path = tmp_path / "good.xlsx"
    n = write_good_workbook(path)
    without("libreoffice")
    code, out, err = run_main("verify", path)
    assert code == 0, out + err
    assert f"{n:,} formula cells recalculated in IronCalc" in out and "LibreOffice" not in out + err
    assert out.splitlines()[-2:] == ["IronCalc: OK", "OK"]


def test_each_engine_reports_its_own_figures(soffice, tmp_path, run_main):
    path = tmp_path / "bad.xlsx"
    write_bad_workbook(path)
    code, out, err = run_main("verify", path)  # every installed engine
    assert code == 1 and not err  # the "recalculating …" notes show only on a terminal
    for label in ("LibreOffice", "IronCalc"):
        assert f"4 formula cells recalculated in {label}" in out and f"{label}: FAILED" in out
    assert out.count("Sheet!B3: #DIV/0!") == 2 and out.splitlines()[-1] == "FAILED"


def test_ironcalc_refuses_what_it_cannot_read(tmp_path):
    path = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.xml", "<not a workbook")
    with pytest.raises(TracerError, match="IronCalc could not recalculate broken.xlsx"):
        ironcalc.recalculated_values(path, {"Sheet1": {(1, 1)}})


def test_an_empty_cell_saved_as_a_number_stays_empty(engine, tmp_path):
    """openpyxl saves a formatted empty cell as <c … t="n"/>, which IronCalc 0.9 alone would read
    as 0: COUNT must still count only the filled cell, in each engine."""
    from openpyxl import Workbook
    from openpyxl.styles import PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "S"
    ws["A1"] = 2.0
    ws["A2"].fill = PatternFill("solid", fgColor="FFFFFF")  # formatted, empty
    ws["B1"] = "=COUNT(A1:A2)"
    wb.save(tmp_path / "saved.xlsx")
    with zipfile.ZipFile(tmp_path / "saved.xlsx") as archive:
        assert b'<c r="A2" s="1" t="n"' in archive.read("xl/worksheets/sheet1.xml")
    assert engines.ENGINES[engine].recalculated_values(tmp_path / "saved.xlsx", {"S": {(1, 2)}}) == {("S", 1, 2): 1}


# --------------------------------------------------------------------------
# Many workbooks, one LibreOffice
# --------------------------------------------------------------------------

def counting_soffice(tmp_path: Path, real: str) -> tuple[str, Path]:
    """A wrapper of LibreOffice that logs each start, and the log."""
    log = tmp_path / "starts.log"
    return fake_soffice(tmp_path, f'echo start >> "{log}"\nexec "{real}" "$@"'), log


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script")
def test_verify_of_many_workbooks_starts_libreoffice_once(soffice, tmp_path, run_main, monkeypatch):
    good, bad = tmp_path / "good.xlsx", tmp_path / "bad.xlsx"
    n = write_good_workbook(good)
    write_bad_workbook(bad)
    wrapper, log = counting_soffice(tmp_path, soffice)
    monkeypatch.setenv("TRACER_SOFFICE", wrapper)
    code, out, err = run_main("verify", good, bad, "--engine", "libreoffice")
    assert log.read_text().splitlines() == ["start"]
    assert code == 1, out + err
    first, second = out.split("\n\n")[:2]
    assert f"good.xlsx: {n:,} formula cells recalculated in LibreOffice" in first and first.endswith("LibreOffice: OK\nOK")
    assert "bad.xlsx: 4 formula cells" in second and "Sheet!B2: 12 -> 7" in second
    assert out.splitlines()[-1] == "1 of 2 workbooks FAILED: bad.xlsx"


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script")
def test_convert_all_keeps_going_past_a_workbook_it_cannot_convert(tmp_path, monkeypatch):
    """LibreOffice converts only the first of two workbooks: the first is there, the second is its
    own one-line error."""
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    write_good_workbook(a)
    write_bad_workbook(b)
    monkeypatch.setenv("TRACER_SOFFICE", fake_soffice(tmp_path, """
while [ $# -gt 0 ]; do
  case "$1" in --outdir) out="$2"; shift;; *book0.xlsx) src="$1";; esac; shift
done
mkdir -p "$out"; cp "$src" "$out/book0.xlsx"; echo "Error: source file could not be loaded" >&2"""))
    made = libreoffice.convert_all([a, b], tmp_path / "out")
    assert made[0] == tmp_path / "out" / "a.xlsx" and made[0].read_bytes() == a.read_bytes()
    assert isinstance(made[1], TracerError) and "could not recalculate b.xlsx" in str(made[1])
    with libreoffice.recalculating([a, b]) as values:
        assert values(a, {"Calc": {(10, 2)}})  # read from its copy
        with pytest.raises(TracerError, match=r"could not recalculate b.xlsx \(exit code 0\): Error: source file could not be loaded"):
            values(b, {"Sheet": {(1, 2)}})
    with pytest.raises(TracerError, match="both be converted to a.pdf"):
        libreoffice.convert_all([a, tmp_path / "out" / "a.xlsx"], tmp_path / "pdf", "pdf")


# --------------------------------------------------------------------------
# Reading a workbook in one pass (tracer.engines.workbook), against openpyxl
# --------------------------------------------------------------------------

def openpyxl_formula_values(path: Path) -> dict:
    """The formula cells and their stored values as openpyxl reads them (twice: the formulas, then
    the values): what tracer.engines.workbook.formula_values must give, in one pass."""
    from openpyxl import load_workbook
    from openpyxl.utils import range_boundaries
    from openpyxl.worksheet.formula import ArrayFormula

    found = {}
    wb = load_workbook(path, read_only=True, data_only=False)
    for ws in wb.worksheets:
        ws.reset_dimensions()
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, ArrayFormula):
                    c1, r1, c2, r2 = range_boundaries(cell.value.ref)
                    found.update({(ws.title, r, c): None for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)})
                elif cell.data_type == "f":
                    found[(ws.title, cell.row, cell.column)] = None
    wb.close()
    return {**found, **openpyxl_values(path, found)}


def openpyxl_values(path: Path, keys) -> dict:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    values = {}
    for ws in wb.worksheets:
        ws.reset_dimensions()
        for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
            for c, value in enumerate(row, start=1):
                if (ws.title, r, c) in keys:
                    values[(ws.title, r, c)] = value
    wb.close()
    return values


def odd_workbook(path: Path) -> Path:
    """A workbook written the ways other programs write one: a namespace prefix, cells and rows
    without positions, shared strings (plain, rich text with a phonetic hint), an inline string,
    text, boolean, error and empty results, an array formula over cells the file leaves out."""
    wb = xlsxwriter.Workbook(path)
    wb.add_worksheet("Odd").write_string("A1", "x")
    wb.close()
    sheet = """<?xml version="1.0" encoding="UTF-8"?>
<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><x:sheetData>
<x:row r="1"><x:c r="A1"><x:v>1.5</x:v></x:c><x:c><x:v>2</x:v></x:c><x:c t="s"><x:v>1</x:v></x:c>
<x:c><x:f>A1+B1</x:f><x:v>3.5</x:v></x:c><x:c r="G1" t="s"><x:f>C1</x:f><x:v>0</x:v></x:c></x:row>
<x:row><x:c t="inlineStr"><x:is><x:t>in</x:t><x:r><x:t>line</x:t></x:r></x:is></x:c>
<x:c r="C2" t="str"><x:f>"a"&amp;"&lt;b&gt;"</x:f><x:v>a&lt;b&gt;</x:v></x:c><x:c t="b"><x:f>A1&gt;0</x:f><x:v>1</x:v></x:c>
<x:c t="e"><x:f>1/0</x:f><x:v>#DIV/0!</x:v></x:c><x:c><x:f>A1*0</x:f><x:v/></x:c>
<x:c r="H2"><x:f t="array" ref="H2:I4">A1:B3*2</x:f><x:v>3</x:v></x:c><x:c r="I2"><x:v>4</x:v></x:c></x:row>
<x:row r="3"><x:c r="H3"><x:v>5</x:v></x:c><x:c r="J3"><x:f>1E-300*1</x:f><x:v>1E-300</x:v></x:c></x:row>
</x:sheetData></x:worksheet>"""
    strings = """<?xml version="1.0" encoding="UTF-8"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="2" uniqueCount="2">
<si><t>plain</t></si><si><r><t>ri</t></r><r><rPr><b/></rPr><t>ch</t></r><rPh sb="0" eb="1"><t>hint</t></rPh></si></sst>"""
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts["xl/worksheets/sheet1.xml"], parts["xl/sharedStrings.xml"] = sheet.encode(), strings.encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def saved_by_libreoffice(soffice, tmp_path_factory):
    """The good workbook as LibreOffice saves it (its shared strings, its own way of writing values)."""
    folder = tmp_path_factory.mktemp("saved")
    write_good_workbook(folder / "good.xlsx")
    return recalculate(folder / "good.xlsx", folder / "out")


def test_one_pass_reads_what_openpyxl_reads(tmp_path, run_workbook):
    from tracer.engines.workbook import formula_values

    write_good_workbook(tmp_path / "good.xlsx")
    for path in (tmp_path / "good.xlsx", odd_workbook(tmp_path / "odd.xlsx"), run_workbook("mlp-softmax"),
                 run_workbook("transformer-es-bpe-gelu-adam", "es")):
        ours, theirs = formula_values(path), openpyxl_formula_values(path)
        assert ours == theirs and [type(v) for v in ours.values()] == [type(theirs[k]) for k in ours], path.name
    odd = formula_values(tmp_path / "odd.xlsx")
    assert odd[("Odd", 1, 4)] == 3.5 and odd[("Odd", 1, 7)] == "plain" and odd[("Odd", 2, 3)] == "a<b>"
    assert odd[("Odd", 2, 4)] is True and odd[("Odd", 2, 5)] == "#DIV/0!" and odd[("Odd", 2, 6)] is None
    assert odd[("Odd", 3, 8)] == 5 and odd[("Odd", 4, 9)] is None and odd[("Odd", 3, 10)] == 1e-300
    assert len(odd) == 13  # 7 formulas, and the array's 6 cells (3 of them absent from the file)


def test_values_at_reads_what_openpyxl_reads(saved_by_libreoffice, tmp_path):
    from tracer.engines.workbook import values_at

    for path in (saved_by_libreoffice, odd_workbook(tmp_path / "odd.xlsx")):
        every = {(s, r, c) for s in ("Overview", "Iteración 1", "Calc", "Odd") for r in range(1, 30) for c in range(1, 12)}
        theirs = openpyxl_values(path, every)
        wanted = {}
        for s, r, c in every:
            wanted.setdefault(s, set()).add((r, c))
        ours = values_at(path, wanted)
        assert {k: v for k, v in ours.items() if v is not None} == {k: v for k, v in theirs.items() if v is not None}
    assert values_at(tmp_path / "odd.xlsx", {"Odd": {(1, 3), (2, 1)}}) == {("Odd", 1, 3): "rich", ("Odd", 2, 1): "inline"}


def test_a_damaged_sheet_is_one_line(tmp_path):
    from tracer.engines.workbook import formula_values

    path = odd_workbook(tmp_path / "odd.xlsx")
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"][:300]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    with pytest.raises(TracerError, match=r"odd.xlsx is damaged and cannot be read \(unclosed token: line 4"):
        formula_values(path)


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script")
def test_the_tests_libreoffice_batch_starts_it_once(soffice, libreoffice_batch, tmp_path, monkeypatch):
    """conftest's libreoffice_batch: two workbooks of the same name noted, both recalculated by
    one LibreOffice start, each given back as its own."""
    from tracer.engines.workbook import values_at

    good, bad = tmp_path / "a" / "book.xlsx", tmp_path / "b" / "book.xlsx"
    good.parent.mkdir()
    bad.parent.mkdir()
    write_good_workbook(good)
    write_bad_workbook(bad)
    wrapper, log = counting_soffice(tmp_path, soffice)
    monkeypatch.setenv("TRACER_SOFFICE", wrapper)
    libreoffice_batch.want(good)
    libreoffice_batch.want(bad)
    assert values_at(libreoffice_batch.get(bad), {"Sheet": {(2, 2)}}) == {("Sheet", 2, 2): 7}  # A1+A2, recalculated
    assert values_at(libreoffice_batch.get(good), {"Calc": {(14, 2)}}) == {("Calc", 14, 2): 0.7}
    assert log.read_text().splitlines() == ["start"]
