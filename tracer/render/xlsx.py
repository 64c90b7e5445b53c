"""Write a Layout as an .xlsx workbook with XlsxWriter: live formulas plus their numpy values.

Sheets are written in row order in constant-memory mode, so a million-cell workbook stays
small in memory.  The file appears atomically: written beside the target, then renamed.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import xlsxwriter
from xlsxwriter.exceptions import XlsxFileError
from xlsxwriter.format import Format

from tracer.core.size import MAX_FORMULA
from tracer.errors import TracerError, temporary_folder
from tracer.render.atomic import atomic_path, document_date
from tracer.render.layout import (
    COLS,
    FONTS,
    FOOTER,
    MARGINS,
    ROW_HEIGHT,
    TITLE_WIDTH,
    Block,
    Cells,
    Chart,
    Hyper,
    Link,
    Picture,
    Scatter,
    Text,
    TokenRow,
    Views,
    phase_style,
    quote_sheet,
)

PHASE_COLORS = {  # title fill, cell fill
    "input": ("#BFBFBF", "#F2F2F2"),
    "forward": ("#9BC2E6", "#DDEBF7"),
    "loss": ("#F4B084", "#FCE4D6"),
    "backward": ("#B4A7D6", "#E4DFEC"),
    "update": ("#A9D08E", "#E2EFDA"),
    "after": ("#FFD966", "#FFF2CC"),
}
NUMBER = "0.000000"  # real numbers: six decimals ...
TINY = 1e-4  # ... except where |x| ≤ TINY: a conditional format shows them in scientific notation,
TINY_FORMAT = "0.00E+00;-0.00E+00;0.000000"  # so no number other than 0 ever shows as 0.000000
INFO_SHEET = "tracer"  # hidden, in a student's version: the exercise's recipe (tracer.checks.exercise)
RTOL, ATOL = 1e-3, 1e-9  # what the self-check cells accept (and `tracer check` by default)
SCALES = {
    "gray": {"type": "2_color_scale", "min_type": "num", "min_value": 0, "min_color": "#FFFFFF",
             "max_type": "num", "max_value": 1, "max_color": "#000000"},
    # its own darkest and lightest cell: x̂ moves only a few hundredths in 4 steps, and this
    # makes the digit it is turning into visible
    "gray_auto": {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#000000"},
    "diverging": {"type": "3_color_scale", "min_color": "#2166AC", "mid_type": "num", "mid_value": 0,
                  "mid_color": "#FFFFFF", "max_color": "#B2182B"},
    # attention weights: 0 (a masked future position) white, 1 dark blue
    "attention": {"type": "2_color_scale", "min_type": "num", "min_value": 0, "min_color": "#FFFFFF",
                  "max_type": "num", "max_value": 1, "max_color": "#08306B"},
    # attention weights spread over many positions (bidirectional): its own smallest white, largest dark blue
    "attention_auto": {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#08306B"},
    # diffusion: a digit on [−1, 1], −1 (the background) white, 1 black
    "signed": {"type": "2_color_scale", "min_type": "num", "min_value": -1, "min_color": "#FFFFFF",
               "max_type": "num", "max_value": 1, "max_color": "#000000"},
}
SCATTER_COLOURS = ("#1F4E79", "#E46C0A")  # flow: the data dark blue, the samples (or the draws) orange


# --- the cell stream -------------------------------------------------------------------------------
# XlsxWriter writes the package: the workbook, styles, charts, conditional formats, hyperlinks, merged
# ranges, print setup, and the few cells that carry a hyperlink or a merge.  Every other cell (all but
# a handful of a workbook's hundreds of thousands) is written by _SheetCells as the <sheetData> XML
# XlsxWriter's constant-memory mode writes, into a file of its own, and spliced into the sheet's part
# once XlsxWriter has closed the package: per cell, XlsxWriter's write_* call checks its arguments,
# stores a cell object and escapes it through regular expressions, 5× the time of the whole export
# without it.  tests/test_cell_stream.py writes the same workbooks with XlsxWriter's own write_*
# calls (tests/xlsx_reference.py) and finds every part of the package the same, byte for byte (the
# numbers of constants aside: XlsxWriter writes 16 significant digits, which do not always give back
# the same double; the stream writes Python's shortest exact repr).

SHEET_LEVEL = 4  # zlib level of the sheets' XML: half the time of XlsxWriter's level 6 for files about 5 %
# (the default VAE) to 10 % (the default GAN) larger; the other parts keep XlsxWriter's level
_ERROR_CODES = frozenset({"#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!"})
_CONTROL_ESCAPE = re.compile("(_x[0-9a-fA-F]{4}_)")  # Excel's escape of characters XML cannot hold
_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f])")
MAX_STRING = 32767  # Excel's longest text in a cell (UTF-16 units)


def style(fmt) -> str:
    """The s attribute of a cell in format `fmt` (XlsxWriter's own index of the format, given when
    a cell first uses it: both writers ask for it in the same order, the order of the calls)."""
    return "" if fmt is None else f' s="{fmt._get_xf_index()}"'


def check_xlsxwriter() -> None:
    """Refuse, in one line, an XlsxWriter without the one private method the cell stream calls
    (Format._get_xf_index: a format's index in the styles part)."""
    if not callable(getattr(Format, "_get_xf_index", None)):
        raise TracerError(f"XlsxWriter {xlsxwriter.__version__} is not supported: its Format has no "
                          f"_get_xf_index; install XlsxWriter{XLSXWRITER_RANGE}")


XLSXWRITER_RANGE = ">=3.1.9,<4"  # pyproject's bound: the versions whose files tests/test_cell_stream.py compares


def _escape(text: str) -> str:
    """XML text as XlsxWriter escapes it (&, <, >; quotes stay)."""
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def _result(value) -> tuple[str, str]:
    """(t attribute, <v> text) of the value stored with a formula, as XlsxWriter writes it."""
    if isinstance(value, bool):
        return ' t="b"', "1" if value else "0"
    if isinstance(value, str):
        if value == "":
            return "", ""  # no value: applications compute it
        return (' t="e"' if value in _ERROR_CODES else ' t="str"'), _escape(value)
    return "", _escape(f"{value}")


def _row_pixels(height: float | None) -> int | None:
    """A row height in points as XlsxWriter stores it: whole pixels."""
    return None if height is None else int(height * 4.0 / 3.0 + 0.5)


_HEADS: list[str] = []  # the start of a cell in each column, '<c r="B', made as far as a sheet needs them
_CELL = re.compile(rb'(<c r="([A-Z]+[0-9]+)"[^>]*?(?:/>|>.*?</c>))', re.S)  # a cell in XlsxWriter's XML
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"/>')


def _split_sheet_data(part: bytes) -> tuple[bytes, bytes, bytes]:
    """A worksheet's XML as (before <sheetData>, its rows, after </sheetData>)."""
    empty = part.find(b"<sheetData/>")
    if empty >= 0:
        return part[:empty], b"", part[empty + len(b"<sheetData/>"):]
    start, end = part.index(b"<sheetData>"), part.index(b"</sheetData>")
    return part[:start], part[start + len(b"<sheetData>"):end], part[end + len(b"</sheetData>"):]


def _copy(src, dst, n: int) -> None:
    """Copy n bytes (all that is left: -1) from the file src to dst."""
    while n:
        chunk = src.read(1 << 18 if n < 0 else min(n, 1 << 18))
        if not chunk:
            break
        dst.write(chunk)
        if n > 0:
            n -= len(chunk)


class _SheetCells:
    """The cells of one worksheet, written as XlsxWriter's constant-memory mode writes them: rows in
    order, each row's cells by column, a row's <row> tag with its height; the sheet's dimension as
    XlsxWriter counts it.  Cells that XlsxWriter itself must write (a hyperlink, a merged range) are
    holes here, filled from XlsxWriter's part in splice()."""

    def __init__(self, ws, path: Path, row_height: float):
        self.ws, self.path = ws, path
        self.file = open(path, "wb")
        self.pending: list[str] = []  # XML not yet in the file
        self.size = 0  # bytes in the file
        self.holes: list[tuple[int, str]] = []  # (offset in the file, cell reference) of XlsxWriter's cells
        self.row = 0  # the row being written (XlsxWriter's previous_row)
        self.cells: list[tuple[int, int, str | None]] = []  # its cells: (first col, last col, XML or a hole's ref)
        self.heights: dict[int, int | None] = {}  # set_row: row -> height in pixels (None: the default)
        self.default = _row_pixels(row_height)
        self.rowmin = self.rowmax = self.colmin = self.colmax = None

    # -- XlsxWriter's bookkeeping
    def _dims(self, row: int, first: int, last: int) -> None:
        if self.rowmin is None or row < self.rowmin:
            self.rowmin = row
        if self.rowmax is None or row > self.rowmax:
            self.rowmax = row
        if self.colmin is None or first < self.colmin:
            self.colmin = first
        if self.colmax is None or last > self.colmax:
            self.colmax = last

    def _at(self, row: int, first: int, last: int) -> None:
        """A row's cells in columns first..last: the dimension grows, a finished row is written."""
        if row < self.row:  # (XlsxWriter would drop the cell without a word)
            raise AssertionError(f"{self.ws.name}: row {row + 1} written after row {self.row + 1}")
        self._dims(row, first, last)
        if last >= len(_HEADS):
            _HEADS.extend(f'<c r="{c}' for c in COLS[len(_HEADS):last + 1])
        if row > self.row:
            self._flush()
            self.row = row

    def _flush(self) -> None:
        """Write the row being written (XlsxWriter's _write_single_row)."""
        row, cells = self.row, self.cells
        if not cells and row not in self.heights:
            return
        tag = f'<row r="{row + 1}"'
        height = self.heights.pop(row, None)
        if height is None:
            height = self.default
        if height != 20 or self.default != 20:  # XlsxWriter's default row: 20 pixels (15 points)
            tag += f' ht="{height * 0.75:.16g}" customHeight="1"'
        if not cells:
            self.pending.append(tag + "/>")
            return
        self.pending.append(tag + ">")
        end = -1
        for first, last, _ in cells:  # (in the order written: almost always by column)
            if first <= end:
                cells.sort(key=lambda c: c[0])
                if any(b[0] <= a[1] for a, b in zip(cells, cells[1:])):
                    raise AssertionError(f"{self.ws.name}: row {row + 1}: a cell written twice")
                break
            end = last
        for first, _, xml in cells:
            if xml.startswith("<"):
                self.pending.append(xml)
            else:  # a hole: XlsxWriter's cell goes here
                self._write()
                self.holes.append((self.size, xml))
        self.pending.append("</row>")
        self.cells = []
        if len(self.pending) > 256:  # (a few hundred KB at most in memory)
            self._write()

    def _write(self) -> None:
        data = "".join(self.pending).encode("utf-8")
        self.pending = []
        self.file.write(data)
        self.size += len(data)

    # -- the cells
    def number(self, row: int, col: int, value, fmt=None) -> None:
        self._at(row, col, col)
        self.cells.append((col, col, f'{_HEADS[col]}{row + 1}"{style(fmt)}><v>{float(value)!r}</v></c>'))

    def string(self, row: int, col: int, text: str, fmt=None) -> None:
        self._at(row, col, col)
        self.cells.append((col, col, self._string(row, col, text, fmt)))

    def _string(self, row, col, text, fmt) -> str:
        if len(text) > MAX_STRING // 2 and len(text.encode("utf-16-le")) // 2 > MAX_STRING:
            text = text.encode("utf-16-le")[:2 * MAX_STRING].decode("utf-16-le", "ignore")
        if "_x" in text or _CONTROL.search(text):
            text = _CONTROL_ESCAPE.sub(r"_x005F\1", text)
            text = _CONTROL.sub(lambda m: f"_x{ord(m.group(1)):04X}_", text)
        text = text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
        space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
        return f'{_HEADS[col]}{row + 1}"{style(fmt)} t="inlineStr"><is><t{space}>{_escape(text)}</t></is></c>'

    def formula(self, row: int, col: int, formula: str, fmt=None, value=0) -> None:
        """A formula (without its "=") with its stored value."""
        self._at(row, col, col)
        t, v = _result(value)
        self.cells.append((col, col, f'{_HEADS[col]}{row + 1}"{style(fmt)}{t}><f>{_escape(formula)}</f><v>{v}</v></c>'))

    def blank(self, row: int, col: int, fmt=None) -> None:
        if fmt is not None:  # XlsxWriter writes no cell for a blank without a format
            self._at(row, col, col)
            self.cells.append((col, col, f'{_HEADS[col]}{row + 1}"{style(fmt)}/>'))

    def formulas(self, row: int, col: int, formulas: list[str], fmt, values: list | None) -> None:
        """A row of formulas from column `col` on, each with its value (numbers; None: no values,
        a student's version): one XML string."""
        last = col + len(formulas) - 1
        self._at(row, col, last)
        tail = f'{row + 1}"{style(fmt)}><f>'
        heads = _HEADS[col:last + 1]
        joined = "".join(formulas)
        if "&" in joined or "<" in joined or ">" in joined:
            formulas = [_escape(f) for f in formulas]
        if values is None:
            xml = "".join([f"{h}{tail}{f}</f><v></v></c>" for h, f in zip(heads, formulas)])
        else:
            xml = "".join([f"{h}{tail}{f}</f><v>{v!r}</v></c>" for h, f, v in zip(heads, formulas, values)])
        self.cells.append((col, last, xml))

    def numbers(self, row: int, col: int, values: list, fmt) -> None:
        """A row of numbers from column `col` on: one XML string."""
        last = col + len(values) - 1
        self._at(row, col, last)
        tail = f'{row + 1}"{style(fmt)}><v>'
        self.cells.append((col, last, "".join([f"{h}{tail}{float(v)!r}</v></c>"
                                               for h, v in zip(_HEADS[col:last + 1], values)])))

    def row_height(self, row: int, height: float | None) -> None:
        """XlsxWriter's set_row(row, height): the dimension counts the row (at the first column so
        far); the height shows only if the row gets cells (constant-memory mode)."""
        if row < self.row:
            return  # XlsxWriter ignores a row already written
        col = self.colmin if self.colmin is not None else 0
        self._dims(row, col, col)
        self.heights[row] = _row_pixels(height)
        # and what set_row records for XlsxWriter's drawings: a chart's anchor counts the rows' heights
        self.ws.row_sizes[row] = [self.ws.default_row_height if height is None else self.heights[row], False]

    # -- XlsxWriter's own cells
    def url(self, row: int, col: int, url: str, fmt, text: str) -> None:
        style(fmt)
        self.ws.write_url(row, col, url, fmt, string=text)
        self._hole(row, col)

    def merge(self, row: int, first: int, last: int, text: str, fmt) -> None:
        style(fmt)
        self.ws.merge_range(row, first, row, last, text, fmt)
        for col in range(first, last + 1):
            self._hole(row, col)

    def merged_formula(self, row: int, col: int, formula: str, fmt, value) -> None:
        """A formula into the first cell of a merged range (XlsxWriter's way: after merge_range)."""
        self.ws.write_formula(row, col, "=" + formula, fmt, value)

    def _hole(self, row: int, col: int) -> None:
        self._at(row, col, col)
        self.cells.append((col, col, f"{COLS[col]}{row + 1}"))

    # -- the sheet's part
    def close(self) -> None:
        self._flush()
        self._write()
        self.file.close()

    def dimension(self) -> str | None:
        """The <dimension> reference, as XlsxWriter writes it; None for a sheet without cells."""
        if self.rowmin is None:
            return None
        first = f"{COLS[self.colmin]}{self.rowmin + 1}"
        if self.rowmin == self.rowmax and self.colmin == self.colmax:
            return first
        return f"{first}:{COLS[self.colmax]}{self.rowmax + 1}"

    def splice(self, part: bytes, out) -> None:
        """Write XlsxWriter's part of this sheet to the file `out` with the cells in: its
        dimension, its <sheetData> with the rows of the file and XlsxWriter's own cells in the holes."""
        head, theirs, tail = _split_sheet_data(part)
        found = {ref: cell for cell, ref in _CELL.findall(theirs)}
        ref = self.dimension()
        if ref is None:
            out.write(part)
            return
        out.write(_DIMENSION.sub(f'<dimension ref="{ref}"/>'.encode(), head, count=1))
        out.write(b"<sheetData>")
        with open(self.path, "rb") as f:
            done = 0
            for offset, cell in self.holes:
                _copy(f, out, offset - done)
                done = offset
                out.write(found.pop(cell.encode(), b""))
            _copy(f, out, -1)
        if found:
            raise AssertionError(f"{self.ws.name}: cells written by XlsxWriter without a hole: {sorted(found)[:3]}")
        out.write(b"</sheetData>")
        out.write(tail)


class _Styles:
    def __init__(self, wb):
        f = wb.add_format
        self.text = f({})
        self.note = f({"italic": True, "font_color": "#595959"})
        self.bold = f({"bold": True})
        self.heading = f({"bold": True, "font_size": FONTS["heading"][0], "bottom": 1})
        self.sheet_title = f({"bold": True, "font_size": FONTS["sheet_title"][0]})
        # the workbook's own font: a math font (Cambria Math, or what replaces it where it is
        # missing) sets √ and other symbols for a formula layout, not for a line of text
        self.equation = f({"font_size": FONTS["equation"][0]})
        self.index = f({"font_color": "#808080", "align": "center"})
        self.link = f({"font_color": "#0563C1", "underline": 1})
        self.hyper = f({"bg_color": "#FFF2CC", "border": 1, "num_format": "General"})
        self.view = f({"num_format": NUMBER})
        self.tiny = f({"num_format": TINY_FORMAT})  # the conditional format of |x| ≤ TINY
        self.invisible = f({"font_color": "#FFFFFF"})  # an exercise's #N/A: an empty-looking cell
        self.token = f({"bold": True, "align": "center", "font_color": "#1F4E79"})
        self.pixel = f({"num_format": ";;;"})
        self.row_label = f({"font_size": 8, "align": "right", "font_color": "#1F4E79"})
        self.col_label = f({"font_size": 8, "rotation": 90, "font_color": "#1F4E79"})
        self.stat = f({"italic": True, "font_color": "#595959", "align": "right"})
        self.stat_value = f({"num_format": NUMBER, "align": "left"})  # with the tiny rule, as every number
        # a student's cell: white, framed, unlocked; the self-check verdict; its colours
        self.answer = f({"bg_color": "#FFFFFF", "num_format": "General", "border": 1,
                         "border_color": "#7F7F7F", "locked": False})
        self.check = f({"bold": True, "align": "center", "border": 1})
        self.right = f({"bg_color": "#C6EFCE", "font_color": "#006100"})
        self.wrong = f({"bg_color": "#FFC7CE", "font_color": "#9C0006"})
        self.title, self.cell, self.whole, self.section = {}, {}, {}, {}
        for phase, (dark, light) in PHASE_COLORS.items():
            self.title[phase] = f({"bold": True, "bg_color": dark})
            self.section[phase] = f({"bold": True, "font_size": FONTS["section"][0], "bg_color": dark})
            self.cell[phase] = f({"bg_color": light, "num_format": NUMBER, "border": 1, "border_color": "#D9D9D9"})
            self.whole[phase] = f({"bg_color": light, "border": 1, "border_color": "#D9D9D9"})  # General: 3, not 3.000000

    def named(self, name):
        if name.startswith("section_"):
            return self.section[name[len("section_"):]]
        return getattr(self, name)


def write_xlsx(layout, path: Path, progress=None, cells=None) -> int:
    """Write the workbook to `path` atomically; returns the number of cells written.
    `progress(n)` is called with the number of cells of each finished block.  `cells(ws, folder)`
    makes the writer of a worksheet's cells (by default the cell stream, _SheetCells; the tests
    pass one that calls XlsxWriter's own write_* methods)."""
    check_xlsxwriter()
    # XlsxWriter's constant-memory files and the cell stream go to a folder of our own: removed
    # however the writing ends
    with atomic_path(Path(path)) as tmp, temporary_folder("tracer-xlsx-") as scratch:
        package = scratch / "package.xlsx" if cells is None else tmp
        wb = xlsxwriter.Workbook(str(package), {"constant_memory": True, "strings_to_numbers": False,
                                               "strings_to_formulas": False, "strings_to_urls": False,
                                               "tmpdir": str(scratch)})
        wb.set_properties({"created": document_date()})  # the same inputs, the same bytes
        make = cells or (lambda ws, k: _SheetCells(ws, scratch / f"cells{k}.xml", ROW_HEIGHT))
        writer = _Writer(wb, layout, progress, make)
        for sheet in layout.sheets:
            writer.sheet(sheet)
        if layout.exercise:
            writer.exercise_sheets(layout.exercise)
        if layout.vocab_range:
            wb.define_name("vocab", layout.vocab_range)
        for out in writer.sheets:
            out.close()
        try:
            wb.close()
            if cells is None:
                _assemble(package, tmp, writer.sheets)
        except XlsxFileError as e:  # a full disk, a file too large for a zip
            cause = e.args[0] if e.args and isinstance(e.args[0], OSError) else e
            raise TracerError(f"cannot write {path}: {getattr(cause, 'strerror', None) or cause}") from None
    return writer.cells


def _assemble(package: Path, path: Path, sheets: list) -> None:
    """The workbook at `path`: XlsxWriter's package with each sheet's cells spliced in.  Every part
    but the sheets is copied as XlsxWriter zipped it; the sheets are streamed (constant memory)."""
    by_part = {f"xl/worksheets/sheet{k + 1}.xml": s for k, s in enumerate(sheets)}
    with zipfile.ZipFile(package) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=SHEET_LEVEL) as out:
        for info in src.infolist():
            data = src.read(info)
            cells = by_part.get(info.filename)
            if cells is None:
                out.writestr(info, data)
            else:  # (a part opened by name: dated 1980-01-01, and zipped at SHEET_LEVEL)
                with out.open(info.filename, "w") as f:
                    cells.splice(data, f)


class _Writer:
    def __init__(self, wb, layout, progress, make_cells):
        self.wb, self.layout, self.progress = wb, layout, progress or (lambda n: None)
        self.make_cells = make_cells
        self.sheets: list = []  # the cell writer of each worksheet, in order
        self.st = _Styles(wb)
        self.cells = 0
        ex = layout.exercise  # a student's version: blank blocks, and values that would tell
        self.blank = ex.blank_ids if ex else set()
        self.hidden = ex.hidden if ex else set()
        self.decimals: list[str] = []  # the sheet's ranges in six decimals, for the conditional format of tiny values
        self.empty_until_filled: list[str] = []  # an exercise's overview: loss cells hidden while #N/A

    def add_sheet(self, name: str):
        """A new worksheet and the writer of its cells."""
        ws = self.wb.add_worksheet(name)
        self.sheets.append(self.make_cells(ws, len(self.sheets)))
        return ws, self.sheets[-1]

    def value(self, t, v):
        """The value stored with a formula: none ("") when it is computed from a student's cells."""
        return "" if id(t) in self.hidden else v

    def sheet(self, sheet):
        ws, out = self.add_sheet(sheet.name)
        self.out = out
        for first, last, width in sheet.column_widths():
            ws.set_column(first, last, width)
        ws.set_default_row(ROW_HEIGHT)  # what the page breaks count on, in every application
        for row in sorted(sheet.heights):  # a larger font's rows, a picture's square pixels
            out.row_height(row, sheet.heights[row])
        if sheet.freeze != (0, 0):
            ws.freeze_panes(*sheet.freeze)
        self._print_setup(ws, sheet)
        last = -1  # rows are written in order (constant memory), parts must not overlap
        self.decimals = []
        for part in sorted(sheet.parts, key=lambda p: (p.row, getattr(p, "col", 0))):
            one_row = isinstance(part, (Text, Link, Views, Hyper))  # beside another part of its row
            if not isinstance(part, Chart) and (part.row < last or part.row == last and not one_row):
                raise AssertionError(f"parts of {sheet.name} overlap at row {part.row}")
            last = max(last, getattr(self, "_" + type(part).__name__.lower())(ws, sheet, part))
        if self.empty_until_filled:  # an error value, #N/A, shows as an empty cell
            ws.conditional_format(self.empty_until_filled[0], {"type": "errors", "format": self.st.invisible,
                                                               "multi_range": " ".join(self.empty_until_filled)})
            self.empty_until_filled = []
        if not sheet.print_rows:  # what prints: every row, the columns the page holds
            ws.print_area(0, 0, max(last, 0), sheet.last_column())
        if self.decimals:  # one rule for the whole sheet: a tiny value in scientific notation
            ws.conditional_format(self.decimals[0], {"type": "cell", "criteria": "between", "minimum": -TINY,
                                                     "maximum": TINY, "format": self.st.tiny,
                                                     "multi_range": " ".join(self.decimals)})

    def _print_setup(self, ws, sheet):
        """Landscape, one page wide, the title rows on every page, a page break before a block
        that would not fit on the page (the overview: its top, with the chart, on one page)."""
        ws.set_landscape()
        ws.set_margins(*MARGINS)
        ws.set_footer("&L&A&R&P / &N", {"margin": FOOTER})  # the sheet's name; page n of N
        student = self.layout.exercise.student_name if self.layout.exercise else ""
        if student:  # a class's exercise: whose it is, on every printed page
            ws.set_header("&C" + self.layout.tpl.t("roster_student", name=student).replace("&", "&&"))
        if sheet.print_rows:
            ws.print_area(0, 0, sheet.print_rows - 1, sheet.width)
            ws.fit_to_pages(1, 1)
            return
        ws.repeat_rows(0, sheet.repeated - 1)
        ws.set_h_pagebreaks(sheet.page_breaks())
        ws.set_print_scale(round(100 * sheet.print_scale()))  # one page wide: the layout's page breaks hold

    # each part writer returns the row it reached
    def _text(self, ws, sheet, p: Text):
        self.out.string(p.row, p.col, p.text, self.st.named(p.style))
        self.cells += 1
        return p.row

    def _link(self, ws, sheet, p: Link):
        self.out.url(p.row, p.col, f"internal:{quote_sheet(p.sheet)}!A{p.target_row + 1}", self.st.link, p.text)
        self.cells += 1
        return p.row

    def _views(self, ws, sheet, p: Views):
        for col, t, text in p.cells:
            if t is None and isinstance(text, float) and p.decimals:  # a value, shown as a tensor's
                self.out.number(p.row, col, text, self.st.view)
                self.decimals.append(f"{COLS[col]}{p.row + 1}")
            elif t is None and isinstance(text, (int, float)):
                self.out.number(p.row, col, text, self.st.text)
            elif t is None:
                self.out.string(p.row, col, str(text), self.st.text)
            else:
                self.decimals.append(f"{COLS[col]}{p.row + 1}")
                place, (rows, cols) = self.layout.place[id(t)], t.shape
                if isinstance(text, tuple):  # one cell of the tensor
                    view, value = place.addr(*text, sheet.name), float(t.value[text])
                elif t.value.size == 1:
                    view, value = place.addr(0, 0, sheet.name), float(t.value[0, 0])
                else:  # a batch of values (e.g. D(x) of N digits): their mean
                    view, value = f"AVERAGE({place.span(0, 0, rows - 1, cols - 1, sheet.name)})", float(t.value.mean())
                if id(t) in self.hidden:  # an exercise: empty (and no point in the chart) until filled
                    self.out.formula(p.row, col, self._until_filled(t, view, sheet), self.st.view, "#N/A")
                    self.empty_until_filled.append(f"{COLS[col]}{p.row + 1}")
                else:
                    self.out.formula(p.row, col, view, self.st.view, value)
            self.cells += 1
        return p.row

    def _until_filled(self, t, view: str, sheet) -> str:
        """IF(any cell of the blank blocks t is computed from is still empty, NA(), view): #N/A, which
        a chart leaves out and a conditional format hides, until the student has filled them."""
        ranges = [self.layout.place[id(b)].span(0, 0, b.shape[0] - 1, b.shape[1] - 1, sheet.name)
                  for b in self.layout.exercise.nearest_blanks(t)]
        counts = "+".join(f"COUNT({','.join(ranges[k:k + 250])})" for k in range(0, len(ranges), 250))
        n = sum(b.value.size for b in self.layout.exercise.nearest_blanks(t))
        formula = f"IF({counts}<{n},NA(),{view})"
        return formula if len(formula) < MAX_FORMULA else view

    def _tokenrow(self, ws, sheet, p: TokenRow):
        t, place = p.tensor, self.layout.place[id(p.tensor)]
        self.out.url(p.row, 0, f"internal:{quote_sheet(sheet.name)}!A{p.target_row + 1}", self.st.link, p.label)
        vocab = self.layout.tape.meta["tokenized"].vocab
        for k in range(t.shape[0]):
            self.out.formula(p.row, 1 + k, f"INDEX(vocab,{place.addr(k, 0, sheet.name)}+1)", self.st.token,
                             self.value(t, vocab[int(t.value[k, 0])]))
        self.cells += 1 + t.shape[0]
        return p.row

    def _hyper(self, ws, sheet, p: Hyper):
        t = p.tensor
        self.out.string(p.row, 0, p.symbol, self.st.bold)
        self.out.number(p.row, p.place.col0, float(t.value[0, 0]), self.st.hyper)
        self.out.string(p.row, p.place.col0 + 1, p.meaning, self.st.note)
        name = t.attrs["defined_name"]
        self.wb.define_name(name, f"={quote_sheet(sheet.name)}!{p.place.addr(0, 0, p.place.sheet, absolute=True)}")
        self.cells += 3
        return p.row

    def _chart(self, ws, sheet, p: Chart):
        chart = self.wb.add_chart({"type": "line"})
        cs, cc, c0, c1 = p.categories
        for name, s, col, r0, r1, right in p.series:
            chart.add_series({
                "name": name + (" →" if right else ""),
                "categories": [cs, c0, cc, c1, cc],
                "values": [s, r0, col, r1, col],
                "marker": {"type": "circle" if r1 - r0 < 100 else "none"},  # thousands of warm-up steps: a line
                "y2_axis": right,
            })
        chart.set_title({"name": p.title})
        # a loss not computed yet (#N/A: an exercise's blank cells) is no point, in LibreOffice too
        chart.show_blanks_as("span")
        chart.set_x_axis({"name": p.x_title or self.layout.tpl.t("iteration_col")})
        if p.log:
            chart.set_y_axis({"log_base": 10})
        ws.insert_chart(p.row, p.col, chart, {"x_scale": 1.3, "y_scale": 1.1})
        return -1

    def _scatter(self, ws, sheet, p: Scatter):
        """flow: an XY scatter chart, each series a tensor's two columns (x₁ across, x₂ up)."""
        chart = self.wb.add_chart({"type": "scatter"})
        for (name, t), colour in zip(p.series, SCATTER_COLOURS):
            place, last = self.layout.place[id(t)], t.shape[0] - 1
            (r0, c0), (r1, c1) = place.rc(0, 0), place.rc(last, 0)
            (s0, d0), (s1, d1) = place.rc(0, 1), place.rc(last, 1)
            chart.add_series({"name": name, "categories": [place.sheet, r0, c0, r1, c1],
                              "values": [place.sheet, s0, d0, s1, d1],
                              "marker": {"type": "circle", "size": 5, "fill": {"color": colour},
                                         "border": {"color": colour}}})
        chart.set_title({"name": p.title})
        chart.set_x_axis({"name": p.x_title, "label_position": "low"})  # the numbers at the edge, not across the points
        chart.set_y_axis({"name": p.y_title, "label_position": "low"})
        ws.insert_chart(p.row, p.col, chart, {"x_scale": 1.3, "y_scale": 1.1, "x_offset": p.offset})
        return -1

    def _block(self, ws, sheet, b: Block):
        t, p, st, out = b.tensor, b.place, self.st, self.out
        phase = phase_style(t)
        r = b.row
        blank = id(t) in self.blank  # the student fills it in
        out.string(r, 0, b.number, st.title[phase])
        out.string(r, 1, b.title, st.title[phase])
        for c in range(2, TITLE_WIDTH):  # a coloured band the title can run across
            out.blank(r, c, st.title[phase])
        if blank and self.layout.exercise.self_check:
            self._self_check(ws, sheet, b, r)
        for k, (line, style) in enumerate(b.lines, start=1):  # the equation, your turn, the note
            if line:  # (a line only another language's longer text needs stays empty)
                out.string(r + k, 1, line, st.named(style))
        n_rows, n_cols = p.grid
        fmt = st.whole[phase] if b.whole else st.cell[phase]
        if not (b.whole or blank):
            self.decimals.append(f"{COLS[p.col0]}{p.row0 + 1}:{COLS[p.col0 + p.display[1] - 1]}{p.row0 + p.display[0]}")
        if t.value.dtype.kind not in "fiu":  # numbers only: the stream writes each with its repr
            raise AssertionError(f"{t.name}: a tensor of {t.value.dtype}")
        grid = (t.value.T if p.transposed else t.value).tolist()  # as displayed
        cells = Cells(self.layout, t) if t.op else None  # constants are plain numbers
        formula, hidden = t.op.formula if t.op else None, id(t) in self.hidden
        continued = dict(b.continued)
        for first in range(0, n_cols, p.band):  # a band: its column numbers, then its rows
            last = min(n_cols, first + p.band)
            width = last - first
            head = p.rc(*((first, -1) if p.transposed else (-1, first)))[0]
            for c in range(first, last):  # 1 … n, or the tokens of a vocabulary's columns
                if b.col_labels:
                    out.string(head, p.col0 + c - first, b.col_labels[c], st.index)
                else:
                    out.number(head, p.col0 + c - first, c + 1, st.index)
            if b.tokens:  # constant-memory mode: a row's cells before the next row's
                out.string(head, p.col0 + width, self.layout.tpl.t("tokens_token"), st.index)
            if head in continued:  # a later page that starts at a band's column numbers
                out.string(head, p.col0 + p.band, continued[head], st.title[phase])
            for dr, values in enumerate(grid):
                row = head + 1 + dr
                values = values[first:last]
                if b.row_labels:
                    out.string(row, 0, b.row_labels[dr], st.index)
                else:
                    out.number(row, 0, dr + 1, st.index)
                if blank:  # the student's cells
                    for dc in range(width):
                        out.blank(row, p.col0 + dc, st.answer)
                elif cells is None:
                    out.numbers(row, p.col0, values, fmt)
                else:
                    if p.transposed:
                        formulas = [formula(cells, dc, dr) for dc in range(first, last)]
                    else:
                        formulas = [formula(cells, dr, dc) for dc in range(first, last)]
                    if max(map(len, formulas)) >= MAX_FORMULA:
                        dc = first + next(k for k, f in enumerate(formulas) if len(f) >= MAX_FORMULA)
                        i, j = (dc, dr) if p.transposed else (dr, dc)
                        raise TracerError(f"the formula of {t.name}[{i},{j}] is longer than Excel's "
                                          f"{MAX_FORMULA} characters")
                    out.formulas(row, p.col0, formulas, fmt, None if hidden else values)
                if b.tokens:  # the token of the id: a formula too, so it follows a recomputed id
                    out.formula(row, p.col0 + width, f"INDEX(vocab,{p.addr(dr, 0, sheet.name)}+1)",
                                st.token, self.value(t, b.tokens[dr]))
                if row in continued:  # the first row of a later page: the block's title again
                    out.string(row, p.col0 + p.band + bool(b.tokens), continued[row], st.title[phase])
        self.cells += b.cells
        self.progress(n_rows * n_cols)
        return p.row0 + p.display[0] - 1

    def _picture(self, ws, sheet, p: Picture):
        top = p.labelled  # the column labels' row first
        height = max(im.height for im in p.images) + top
        out = self.out
        for r in range(height):  # constant-memory mode: whole rows in order (their heights set with the sheet's)
            for im in p.images:
                if top and r == 0:
                    for c, label in enumerate(im.top or []):
                        self._label(ws, sheet, p.row, im.col + c, label, self.st.col_label)
                    continue
                i = r - top
                if i >= im.height:
                    continue
                if im.left:
                    self._label(ws, sheet, p.row + r, im.col - 1, im.left[i], self.st.row_label)
                if im.values is not None:  # a warm-up snapshot: its values
                    out.numbers(p.row + r, im.col, im.values[i].tolist(), self.st.pixel)
                    continue
                place, pixels = self.layout.place, im.pixels[i]
                refs = [place[id(t)].addr(ti, tj, sheet.name) for t, ti, tj in pixels]
                if self.hidden and any(id(t) in self.hidden for t, _, _ in pixels):
                    for c, ((t, ti, tj), ref) in enumerate(zip(pixels, refs)):
                        out.formula(p.row + r, im.col + c, ref, self.st.pixel, self.value(t, float(t.value[ti, tj])))
                else:
                    out.formulas(p.row + r, im.col, refs, self.st.pixel, [float(t.value[ti, tj]) for t, ti, tj in pixels])
        for im in p.images:
            ws.conditional_format(p.row + top, im.col, p.row + top + im.height - 1, im.col + im.width - 1,
                                  dict(SCALES[im.scale]))
            self.cells += im.height * im.width
        for below in range(p.height - height):  # constant-memory mode: the minima's row, then the maxima's
            for im in p.images:
                self._extremes(ws, sheet, p.row + top, p.row + height, im, below)
        return p.row + p.height - 1

    def _extremes(self, ws, sheet, top: int, row: int, im, below: int):
        """Under a self-scaled image (from row `row`): its minimum and maximum, as MIN and MAX of the
        tensor's cells (of the image's own cells when it is not one row of a tensor), each in
        merged cells wide enough; those on row `below` under the image."""
        if not any(dr == below for dr, _, _ in im.extremes):
            return
        if im.source is not None:
            t, n = im.source
            cells = self.layout.place[id(t)].span(n, 0, n, t.shape[1] - 1, sheet.name)
            values = t.value[n]
        else:
            cells = f"{COLS[im.col]}{top + 1}:{COLS[im.col + im.width - 1]}{top + im.height}"
            values = (np.array([[float(t.value[i, j]) for t, i, j in row] for row in im.pixels])
                      if im.values is None else im.values)
        t = im.source[0] if im.source is not None else None
        for (dr, dc, wide), word, fn, v in zip(im.extremes, ("min", "max"), ("MIN", "MAX"), (values.min(), values.max())):
            if dr != below:
                continue
            start = im.col + dc
            self.out.merge(row + dr, start, start + 2, word, self.st.stat)
            self.out.merge(row + dr, start + 3, start + wide - 1, "", self.st.stat_value)
            # merge_range writes text: the formula goes into the first cell afterwards (XlsxWriter's way)
            self.out.merged_formula(row + dr, start + 3, f"{fn}({cells})", self.st.stat_value,
                                    self.value(t, float(v)) if t is not None else float(v))
            self.decimals.append(f"{COLS[start + 3]}{row + dr + 1}")
            self.cells += 2

    def _label(self, ws, sheet, row, col, label, fmt):
        """A heatmap's row or column label: text, or (ids tensor, i): the token of that id."""
        if isinstance(label, str):
            self.out.string(row, col, label, fmt)
        else:
            t, i = label
            token = self.layout.tape.meta["tokenized"].vocab[int(t.value[i, 0])]
            self.out.formula(row, col, f"INDEX(vocab,{self.layout.place[id(t)].addr(i, 0, sheet.name)}+1)",
                             fmt, self.value(t, token))
        self.cells += 1

    # -- a student's version (tracer.checks.exercise) -----------------------------------------------------
    def _self_check(self, ws, sheet, b: Block, r: int):
        """A cell beside the title: how many of the block's cells match the answers (✓ n/n or ✗ k/n)."""
        ex, p = self.layout.exercise, b.place
        rows, cols = p.display
        n = rows * cols
        mine = p.span(0, 0, p.rows - 1, p.cols - 1, sheet.name)
        answers = ex.answers[id(b.tensor)].span(0, 0, p.rows - 1, p.cols - 1, sheet.name)
        # |mine − answer| ≤ RTOL·|answer| + ATOL, cell by cell; |a| written (a^2)^0.5: no function
        # other than an aggregate may receive a range (ABS(range) would be implicit intersection)
        right = f"SUMPRODUCT(((({mine}-{answers})^2)^0.5<={RTOL!r}*({answers}^2)^0.5+{ATOL!r})*1)"
        col = TITLE_WIDTH
        self.out.formula(r, col, f'IF(COUNT({mine})<{n},"✎ "&COUNT({mine})&"/{n}",'
                                 f'IF({right}={n},"✓ {n}/{n}","✗ "&{right}&"/{n}"))',
                         self.st.check, f"✎ 0/{n}")
        cell = f"${COLS[col]}${r + 1}"
        for mark, fmt in (("✓", self.st.right), ("✗", self.st.wrong)):
            ws.conditional_format(r, col, r, col, {"type": "formula", "criteria": f'=LEFT({cell},1)="{mark}"',
                                                   "format": fmt})
        self.cells += 1

    def exercise_sheets(self, ex):
        """Hidden: the answers (self-check only) and the recipe `tracer check` rebuilds from."""
        if ex.self_check:
            ws, out = self.add_sheet(ex.answer_sheet)
            out.string(0, 0, self.layout.tpl.t("answers_note"), self.st.note)
            for t in ex.blank:
                p = ex.answers[id(t)]
                grid = (t.value.T if p.transposed else t.value).tolist()
                for dr, values in enumerate(grid):
                    out.numbers(p.row0 + dr, p.col0, values, None)
                self.cells += t.value.size
            ws.hide()
        ws, out = self.add_sheet(INFO_SHEET)
        out.string(0, 0, self.layout.tpl.t("exercise_info"))
        for r, (key, chunk) in enumerate(ex.info_rows(), start=1):
            out.string(r, 0, key)
            out.string(r, 1, chunk)
        ws.hide()
