"""Reading a workbook as a spreadsheet application saved it: its formula cells, the cached values
of chosen cells, spreadsheet error values and A1 addresses."""

from __future__ import annotations

import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter, range_boundaries
from openpyxl.worksheet.formula import ArrayFormula

from tracer.errors import TracerError

# Error values as spreadsheets store them; LibreOffice may also write "Err:502", IronCalc has
# #ERROR!, #N/IMPL! (a function it lacks) and #CIRC! (a circular reference).
ERROR_VALUES = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A",
     "#GETTING_DATA", "#SPILL!", "#CALC!", "#ERROR!", "#N/IMPL!", "#CIRC!"}
)
_LO_ERROR = re.compile(r"Err:\d+\Z")


@contextmanager
def reading(path: Path, data_only: bool = True):
    """Open a workbook with openpyxl (read-only) and read it: a damaged one (a sheet's XML cut short,
    a broken zip member) is a one-line TracerError, not a traceback."""
    wb = _open(path, data_only)
    try:
        yield wb
    except (TracerError, MemoryError):
        raise
    except Exception as e:
        detail = (str(e).splitlines() or [""])[0] or type(e).__name__
        raise TracerError(f"{path.name} is damaged and cannot be read ({detail})") from None
    finally:
        wb.close()


def _open(path: Path, data_only: bool):
    """Open an .xlsx read-only with openpyxl; a TracerError if it is not one."""
    try:
        return load_workbook(path, read_only=True, data_only=data_only)
    except Exception:
        raise TracerError(f"not an Excel workbook: {path.name}") from None


def check_workbook(path: Path) -> None:
    """Raise TracerError unless path is an existing .xlsx workbook file."""
    if not path.exists():
        raise TracerError(f"no such file: {path}")
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise TracerError(f"not an Excel workbook: {path.name}")
    with zipfile.ZipFile(path) as archive:
        if "xl/workbook.xml" not in archive.namelist():
            raise TracerError(f"not an Excel workbook: {path.name}")


def formula_cells(path: Path) -> dict[str, set[tuple[int, int]]]:
    """Map each sheet name to the (row, column) positions of its formula cells.

    Every cell covered by an array formula counts as a formula cell.
    """
    with reading(path, data_only=False) as wb:
        found: dict[str, set[tuple[int, int]]] = {}
        for ws in wb.worksheets:
            ws.reset_dimensions()  # do not trust the stored dimension
            cells: set[tuple[int, int]] = set()
            for row in ws.iter_rows():
                for cell in row:
                    if cell.data_type != "f":
                        continue
                    if isinstance(cell.value, ArrayFormula) and cell.value.ref:
                        c1, r1, c2, r2 = range_boundaries(cell.value.ref)
                        cells.update((r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1))
                    else:
                        cells.add((cell.row, cell.column))
            if cells:
                found[ws.title] = cells
    return found


def values_at(path: Path, wanted: dict[str, set[tuple[int, int]]],
               data_only: bool = True) -> dict[tuple[str, int, int], object]:
    """Read the stored (cached) values of the wanted cells of a workbook (their formulas, as
    "=…" strings, with data_only=False); rows and columns count from 1.

    Cells, or whole sheets, that are absent are simply missing from the result.
    """
    with reading(path, data_only) as wb:
        values: dict[tuple[str, int, int], object] = {}
        for ws in wb.worksheets:
            cells = wanted.get(ws.title)
            if not cells:
                continue
            ws.reset_dimensions()
            last_row = max(r for r, _ in cells)
            for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
                if r > last_row:
                    break
                for c, value in enumerate(row, start=1):
                    if (r, c) in cells:
                        values[(ws.title, r, c)] = value
    return values


def is_error_value(value: object) -> bool:
    """True for a spreadsheet error value such as '#DIV/0!' or 'Err:502'."""
    return isinstance(value, str) and (value in ERROR_VALUES or bool(_LO_ERROR.match(value)))


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def address(sheet: str, row: int, col: int) -> str:
    """A1-style address with the sheet, quoted when needed: Sheet!B2, 'My sheet'!B2."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sheet):
        sheet = "'" + sheet.replace("'", "''") + "'"
    return f"{sheet}!{get_column_letter(col)}{row}"
