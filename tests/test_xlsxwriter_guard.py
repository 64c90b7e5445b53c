"""tracer's writer overrides two private XlsxWriter methods; these tests fail loudly when the installed
XlsxWriter no longer has them as expected, instead of letting formulas be scanned and prefixed
again or numbers lose digits without anyone noticing."""

from __future__ import annotations

import re
import zipfile

import pytest
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from tracer.errors import TracerError
from tracer.render import xlsx


def test_the_installed_xlsxwriter_has_the_overridden_methods():
    xlsx.check_xlsxwriter()  # raises if a signature changed
    for name in xlsx.OVERRIDDEN:
        assert name in vars(xlsx._PortableSheet), name


def test_the_pyproject_bound_is_the_one_the_writer_names():
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("needs the source tree")
    assert f'"XlsxWriter{xlsx.XLSXWRITER_RANGE}"' in pyproject.read_text("utf-8")


def test_the_overrides_really_apply(tmp_path):
    """A formula is written as given (no _xlfn. prefix scan) and a number with every digit."""
    path = tmp_path / "book.xlsx"
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet("S", worksheet_class=xlsx._PortableSheet)
    ws.write_number(0, 0, 0.1 + 0.2)
    ws.write_formula(1, 0, "=STDEV.S(A1:A1)", None, 0.0)  # XlsxWriter's scan would prefix _xlfn.
    wb.close()
    sheet = zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    assert "<v>0.30000000000000004</v>" in sheet
    assert re.search(r"<f>STDEV\.S\(A1:A1\)</f>", sheet)


@pytest.mark.parametrize("name, broken", [
    ("_prepare_formula", lambda self, formula: formula),
    ("_xml_number_element", None),
])
def test_a_changed_xlsxwriter_is_refused(monkeypatch, name, broken):
    monkeypatch.setattr(Worksheet, name, broken)  # None: the method is gone
    with pytest.raises(TracerError, match=f"Worksheet.{name}.*install XlsxWriter>="):
        xlsx.check_xlsxwriter()
