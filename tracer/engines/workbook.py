"""Reading a workbook as a spreadsheet application saved it: its formula cells, the cached values
of chosen cells, spreadsheet error values and A1 addresses."""

from __future__ import annotations

import posixpath
import pyexpat
import re
import zipfile
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter, range_boundaries

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


def formula_values(path: Path) -> dict[tuple[str, int, int], object]:
    """Every formula cell of the workbook with its stored (cached) value, by (sheet, row, column),
    rows and columns from 1; every cell an array formula covers counts as a formula cell.  One
    streaming pass over the sheets' XML (see :class:`_SheetScan`)."""
    return _scan(path, None)


def values_at(path: Path, wanted: dict[str, set[tuple[int, int]]],
              data_only: bool = True) -> dict[tuple[str, int, int], object]:
    """Read the stored (cached) values of the wanted cells of a workbook (their formulas, as
    "=…" strings, with data_only=False); rows and columns count from 1.

    Cells, or whole sheets, that are absent are simply missing from the result.  The values are
    read in one streaming pass over the sheets' XML; the formulas with openpyxl (it expands the
    shared formulas of files Excel saved).
    """
    if data_only:
        return _scan(path, wanted)
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


# --- one streaming pass over the sheets' XML ---------------------------------------------------------
# openpyxl reads a sheet cell by cell into Python objects, twice when both formulas and cached values
# are wanted (2.4 s for the default VAE); expat with three small handlers reads both at once (0.5 s).
# Values are read as openpyxl's read-only mode gives them (numbers int or float, booleans, strings,
# error values as text), except that a number formatted as a date stays a number.

_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, pyexpat.ExpatError, KeyError, IndexError,
                ValueError)


def _scan(path: Path, wanted: dict[str, set[tuple[int, int]]] | None) -> dict[tuple[str, int, int], object]:
    """The wanted cells' stored values, or (wanted None) every formula cell's."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            strings = None
            values: dict[tuple[str, int, int], object] = {}
            for name, part in _sheet_parts(archive):
                cells = None if wanted is None else wanted.get(name)
                if wanted is not None and not cells:
                    continue
                with archive.open(part) as f:
                    shared = _scan_sheet(f, name, cells, values)
                if shared:  # values kept as indexes into the shared strings, read once when needed
                    strings = _shared_strings(archive) if strings is None else strings
                    for key in shared:
                        values[key] = strings[int(values[key])]
            return values
    except _READ_ERRORS as e:
        detail = (str(e).splitlines() or [""])[0] or type(e).__name__
        raise TracerError(f"{path.name} is damaged and cannot be read ({detail})") from None


def _sheet_parts(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, zip member of its XML) of each worksheet, in the workbook's order."""
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels.iter(_RELS)}
    book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    parts = []
    for sheet in book.iter():
        if sheet.tag.rpartition("}")[2] != "sheet":
            continue
        rid = next((v for k, v in sheet.attrib.items() if k.rpartition("}")[2] == "id"), None)
        target = targets.get(rid)
        if target is None or not target.endswith(".xml"):
            continue  # a chart sheet, a dialog sheet
        part = target.lstrip("/") if target.startswith("/") else posixpath.normpath("xl/" + target)
        if part.startswith("xl/worksheets/") or part in archive.namelist():
            parts.append((sheet.get("name"), part))
    return parts


def _shared_strings(archive: zipfile.ZipFile) -> list[str]:
    """The workbook's shared strings (each the text of its runs, without phonetic hints)."""
    root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
    out = []
    for si in root:
        runs = [si] + [r for r in si if r.tag.endswith("}r")]  # <si><t>…</t></si> or rich text, <si><r><t>…
        out.append("".join(t.text or "" for run in runs for t in run if t.tag.endswith("}t")))
    return out


def _scan_sheet(f, sheet: str, wanted: set | None, values: dict) -> list:
    """Read one sheet's XML with expat into `values`: the wanted cells' stored values (every
    formula cell's when `wanted` is None) by (sheet, row, column).  Returns the keys whose value is
    still a shared string's index.  A cell's position is parsed only for the cells kept; a cell
    without an r attribute is the one after the previous cell (a row without one, the row after
    the previous row), as the format says."""
    parser = pyexpat.ParserCreate()
    parser.buffer_text = True
    shared, chars = [], []
    arrays = []  # array formulas' ranges: (first row, last row, first column, last column)
    refs = None if wanted is None else {f"{get_column_letter(c)}{r}": (r, c) for r, c in wanted}
    ref = None  # the cell's r attribute
    row = col = 0  # the row; the column of a cell without an r attribute
    first = True  # no cell yet in the row
    kind, text, formula = "n", None, False
    C = F = V = T = ROW = None  # the element names, with the sheet's namespace prefix (set by the root)

    def position() -> tuple[int, int]:
        if ref:
            letters = ref.rstrip("0123456789")
            return int(ref[len(letters):]), _column(letters)
        return row, col

    def start(name, attrs):
        nonlocal ref, row, col, first, kind, text, formula, C, F, V, T, ROW
        if name == C:
            r = attrs.get("r")
            if not r:  # the column after the previous cell's
                col = 1 if first else position()[1] + 1
            ref, first = r, False
            kind, text, formula = attrs.get("t", "n"), None, False
        elif name == V or name == T:
            chars.clear()
            parser.CharacterDataHandler = chars.append
        elif name == F:
            formula = True
            if attrs.get("t") == "array" and attrs.get("ref"):
                c1, r1, c2, r2 = range_boundaries(attrs["ref"])
                arrays.append((r1, r2, c1, c2))
        elif name == ROW:
            r = attrs.get("r")
            row, first = (int(r) if r else row + 1), True
        elif C is None:  # the root: <worksheet> or <x:worksheet>
            prefix = name[:-len("worksheet")] if name.endswith("worksheet") else ""
            C, F, V, T, ROW = (prefix + n for n in ("c", "f", "v", "t", "row"))

    def end(name):
        nonlocal text
        if name == C:
            if refs is None:  # the formula cells
                if not (formula or arrays):
                    return
                r, c = position()
                if not formula and not _within(arrays, r, c):
                    return
            elif ref:  # the wanted cells, found by their A1 reference
                if ref not in refs:
                    return
                r, c = refs[ref]
            else:
                r, c = position()
                if (r, c) not in wanted:
                    return
            key = (sheet, r, c)
            values[key] = _cast(kind, text)
            if kind == "s" and text:
                shared.append(key)
        elif name == V or name == T:  # an inline string's text may come in runs: <is><r><t>…
            parser.CharacterDataHandler = None
            text = "".join(chars) if text is None or name == V else text + "".join(chars)

    parser.StartElementHandler, parser.EndElementHandler = start, end
    while chunk := f.read(1 << 20):
        parser.Parse(chunk, False)
    parser.Parse(b"", True)
    for r1, r2, c1, c2 in arrays if wanted is None else ():  # covered cells the file leaves out: no value
        for r in range(r1, r2 + 1):
            for c in range(c1, c2 + 1):
                values.setdefault((sheet, r, c), None)
    return shared


def _within(arrays: list, row: int, col: int) -> bool:
    return any(r1 <= row <= r2 and c1 <= col <= c2 for r1, r2, c1, c2 in arrays)


@lru_cache(maxsize=None)
def _column(letters: str) -> int:
    """The column number (from 1) of column letters: A 1, Z 26, AA 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def _cast(kind: str, text: str | None) -> object:
    """A stored value as openpyxl's read-only mode gives it."""
    if not text:
        return None  # <v/>: no value (openpyxl's None)
    if kind == "n":
        return float(text) if "." in text or "E" in text or "e" in text else int(text)
    if kind == "b":
        return text.strip() in ("1", "true")
    if kind == "s":
        return text  # an index: replaced by the shared string afterwards
    return text  # "str", "inlineStr", "e" (an error value), "d" (a date as ISO text)


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
