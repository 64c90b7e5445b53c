"""Tests of tracer.verify: recalculating workbooks in LibreOffice.

Tests that need LibreOffice use the ``soffice`` fixture: they are skipped
when it is not installed, unless TRACER_REQUIRE_SOFFICE is set, in which
case they fail.  Each LibreOffice run takes a second or more, so the
workbooks are built and verified once per module.
"""

import math
import os
import sys
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from tracer.checks import verify
from tracer.checks.verify import VerifyReport, verify_workbook
from tracer.engines import libreoffice
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
    dot = sum(x * y for x, y in zip(a, e))
    bce = -sum(x * math.log(p) + (1 - x) * math.log(1 - p) for x, p in zip(a, b))
    formulas = [
        ("B10", "=MMULT(A1:C1,E1:E3)", dot),
        ("B11", "=SUMPRODUCT(G1:G3,E1:E3)", dot),
        ("B12", "=-SUMPRODUCT(G1:G3*LN(H1:H3)+(1-G1:G3)*LN(1-H1:H3))", bce),
        ("B13", "='Iteración 1'!B5*2", 5.0),
        ("B14", "=B15-lr*B16", 1.0 - 0.1 * 3.0),
        ("B17", '="x"&B15', "x1"),
        ("B18", "=B15>0", True),
        ("B19", '=IF(B15>0,"",1)', ""),
        ("B20", "=EXP(B12)/3", math.exp(bce) / 3),
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
def good(soffice, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.xlsx"
    n = write_good_workbook(path)
    return n, verify_workbook(path)


@pytest.fixture(scope="module")
def bad(soffice, tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "bad.xlsx"
    write_bad_workbook(path)
    return verify_workbook(path)


# --------------------------------------------------------------------------
# With LibreOffice
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
    # Passing this proves LibreOffice recalculated instead of keeping values.
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
    report = verify_workbook(path)
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
    verify._compare(report, "S!A1", stored, recalc)
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
    verify._compare(report, "S!A1", 1.0, 1.0 + 2e-10)
    verify._compare(report, "S!A2", 100.0, 100.0 + 1e-9)
    assert report.ok
    assert report.max_abs_err == pytest.approx(1e-9, rel=1e-3)
    assert report.max_rel_err == pytest.approx(2e-10, rel=1e-3)
    assert report.worst == "S!A1"


def test_relative_error_is_measured_where_it_means_something():
    """A tiny value off by rounding noise would be a huge relative error: relative errors count
    only on cells of size REL_FLOOR or more; the report says over how many."""
    report = VerifyReport(path=Path("x.xlsx"), n_formulas=3)
    verify._compare(report, "S!A1", 1e-15, 2e-15)
    verify._compare(report, "S!A2", 0.5, 0.5 + 1.5e-11)
    verify._compare(report, "S!A3", 0.0, 0.0)
    assert report.ok and report.n_rel == 1
    assert report.max_rel_err == pytest.approx(3e-11, rel=1e-3)
    assert "largest relative error: 3.0e-11 (over the 1 cells of size 1e-06 or more)" in report.format()


def test_address_quotes_sheet_names():
    assert address("Sheet", 5, 2) == "Sheet!B5"
    assert address("Iteración 1", 5, 2) == "'Iteración 1'!B5"
    assert address("it's", 1, 1) == "'it''s'!A1"
