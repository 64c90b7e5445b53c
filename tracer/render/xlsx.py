"""Write a Layout as an .xlsx workbook with XlsxWriter: live formulas plus their numpy values.

Sheets are written in row order in constant-memory mode, so a million-cell workbook stays
small in memory.  The file appears atomically: written beside the target, then renamed.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import xlsxwriter
from xlsxwriter.exceptions import XlsxFileError
from xlsxwriter.worksheet import Worksheet

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

MAX_FORMULA = 8192
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


XLSXWRITER_RANGE = ">=3.1.9,<3.4"  # pyproject's bound: the versions whose private methods below the tests cover
OVERRIDDEN = {  # the private XlsxWriter methods _PortableSheet replaces, with the parameters they must have
    "_prepare_formula": ("self", "formula", "expand_future_functions"),
    "_xml_number_element": ("self", "number", "attributes"),
}


def check_xlsxwriter() -> None:
    """Refuse, loudly, an XlsxWriter whose private methods _PortableSheet overrides have changed:
    the overrides would silently stop applying (formulas scanned and prefixed again, numbers
    written with 16 digits)."""
    for name, params in OVERRIDDEN.items():
        method = getattr(Worksheet, name, None)
        found = tuple(inspect.signature(method).parameters) if method else None
        if found != params:
            raise TracerError(f"XlsxWriter {xlsxwriter.__version__} is not supported: its Worksheet.{name} "
                              f"{'has parameters ' + str(found) if found else 'is gone'}; install XlsxWriter{XLSXWRITER_RANGE}")


class _PortableSheet(Worksheet):
    """Two changes to XlsxWriter's worksheet: (1) it scans every formula with ~30 regexes to
    prefix Excel 365 functions; ours use only portable functions (tests/test_portable.py
    checks), so the scan is skipped: 2× faster.  (2) It writes numbers with 16 significant
    digits, which does not always give back the same double; constants (the digit, the initial
    parameters, ε) are written with Python's shortest exact repr instead."""

    def _prepare_formula(self, formula, expand_future_functions=False):
        return formula[1:] if formula.startswith("=") else formula

    def _xml_number_element(self, number, attributes=()):
        attrs = "".join(f' {key}="{self._escape_attributes(value)}"' for key, value in attributes)
        self.fh.write(f"<c{attrs}><v>{float(number)!r}</v></c>")


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


def write_xlsx(layout, path: Path, progress=None) -> int:
    """Write the workbook to `path` atomically; returns the number of cells written.
    `progress(n)` is called with the number of cells of each finished block."""
    check_xlsxwriter()
    # XlsxWriter's constant-memory files go to a folder of our own: removed however the writing ends
    with atomic_path(Path(path)) as tmp, temporary_folder("tracer-xlsx-") as scratch:
        wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True, "strings_to_numbers": False,
                                           "strings_to_formulas": False, "strings_to_urls": False,
                                           "tmpdir": str(scratch)})
        wb.set_properties({"created": document_date()})  # the same inputs, the same bytes
        writer = _Writer(wb, layout, progress)
        for sheet in layout.sheets:
            writer.sheet(sheet)
        if layout.exercise:
            writer.exercise_sheets(layout.exercise)
        if layout.vocab_range:
            wb.define_name("vocab", layout.vocab_range)
        try:
            wb.close()
        except XlsxFileError as e:  # a full disk, a file too large for a zip
            cause = e.args[0] if e.args and isinstance(e.args[0], OSError) else e
            raise TracerError(f"cannot write {path}: {getattr(cause, 'strerror', None) or cause}") from None
    return writer.cells


class _Writer:
    def __init__(self, wb, layout, progress):
        self.wb, self.layout, self.progress = wb, layout, progress or (lambda n: None)
        self.st = _Styles(wb)
        self.cells = 0
        ex = layout.exercise  # a student's version: blank blocks, and values that would tell
        self.blank = ex.blank_ids if ex else set()
        self.hidden = ex.hidden if ex else set()
        self.decimals: list[str] = []  # the sheet's ranges in six decimals, for the conditional format of tiny values
        self.empty_until_filled: list[str] = []  # an exercise's overview: loss cells hidden while #N/A

    def value(self, t, v):
        """The value stored with a formula: none ("") when it is computed from a student's cells."""
        return "" if id(t) in self.hidden else v

    def sheet(self, sheet):
        ws = self.wb.add_worksheet(sheet.name, worksheet_class=_PortableSheet)
        for first, last, width in sheet.column_widths():
            ws.set_column(first, last, width)
        ws.set_default_row(ROW_HEIGHT)  # what the page breaks count on, in every application
        for row in sorted(sheet.heights):  # a larger font's rows, a picture's square pixels
            ws.set_row(row, sheet.heights[row])
        if sheet.freeze != (0, 0):
            ws.freeze_panes(*sheet.freeze)
        self._print_setup(ws, sheet)
        last = -1  # constant-memory mode: rows must be written in order, parts must not overlap
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
        if sheet.print_rows:
            ws.print_area(0, 0, sheet.print_rows - 1, sheet.width)
            ws.fit_to_pages(1, 1)
            return
        ws.repeat_rows(0, sheet.repeated - 1)
        ws.set_h_pagebreaks(sheet.page_breaks())
        ws.set_print_scale(round(100 * sheet.print_scale()))  # one page wide: the layout's page breaks hold

    # each part writer returns the row it reached
    def _text(self, ws, sheet, p: Text):
        ws.write_string(p.row, p.col, p.text, self.st.named(p.style))
        self.cells += 1
        return p.row

    def _link(self, ws, sheet, p: Link):
        ws.write_url(p.row, p.col, f"internal:{quote_sheet(p.sheet)}!A{p.target_row + 1}",
                     self.st.link, string=p.text)
        self.cells += 1
        return p.row

    def _views(self, ws, sheet, p: Views):
        for col, t, text in p.cells:
            if t is None and isinstance(text, float) and p.decimals:  # a value, shown as a tensor's
                ws.write_number(p.row, col, text, self.st.view)
                self.decimals.append(f"{COLS[col]}{p.row + 1}")
            elif t is None and isinstance(text, (int, float)):
                ws.write_number(p.row, col, text, self.st.text)
            elif t is None:
                ws.write_string(p.row, col, str(text), self.st.text)
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
                    ws.write_formula(p.row, col, "=" + self._until_filled(t, view, sheet), self.st.view, "#N/A")
                    self.empty_until_filled.append(f"{COLS[col]}{p.row + 1}")
                else:
                    ws.write_formula(p.row, col, "=" + view, self.st.view, value)
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
        ws.write_url(p.row, 0, f"internal:{quote_sheet(sheet.name)}!A{p.target_row + 1}", self.st.link, string=p.label)
        vocab = self.layout.tape.meta["tokenized"].vocab
        for k in range(t.shape[0]):
            ws.write_formula(p.row, 1 + k, f"=INDEX(vocab,{place.addr(k, 0, sheet.name)}+1)", self.st.token,
                             self.value(t, vocab[int(t.value[k, 0])]))
        self.cells += 1 + t.shape[0]
        return p.row

    def _hyper(self, ws, sheet, p: Hyper):
        t = p.tensor
        ws.write_string(p.row, 0, p.symbol, self.st.bold)
        ws.write_number(p.row, p.place.col0, float(t.value[0, 0]), self.st.hyper)
        ws.write_string(p.row, p.place.col0 + 1, p.meaning, self.st.note)
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
        t, p, st = b.tensor, b.place, self.st
        phase = phase_style(t)
        r = b.row
        blank = id(t) in self.blank  # the student fills it in
        ws.write_string(r, 0, b.number, st.title[phase])
        ws.write_string(r, 1, b.title, st.title[phase])
        for c in range(2, TITLE_WIDTH):  # a coloured band the title can run across
            ws.write_blank(r, c, None, st.title[phase])
        if blank and self.layout.exercise.self_check:
            self._self_check(ws, sheet, b, r)
        for k, (line, style) in enumerate(b.lines, start=1):  # the equation, your turn, the note
            if line:  # (a line only another language's longer text needs stays empty)
                ws.write_string(r + k, 1, line, st.named(style))
        n_rows, n_cols = p.display
        head = p.row0 - 1
        for c in range(n_cols):  # 1 … n, or the tokens of a vocabulary's columns
            if b.col_labels:
                ws.write_string(head, p.col0 + c, b.col_labels[c], st.index)
            else:
                ws.write_number(head, p.col0 + c, c + 1, st.index)
        if b.tokens:  # constant-memory mode: a row's cells before the next row's
            ws.write_string(head, p.col0 + n_cols, self.layout.tpl.t("tokens_token"), st.index)
        fmt = st.whole[phase] if b.whole else st.cell[phase]
        if not (b.whole or blank):
            self.decimals.append(f"{COLS[p.col0]}{p.row0 + 1}:{COLS[p.col0 + n_cols - 1]}{p.row0 + n_rows}")
        grid = (t.value.T if p.transposed else t.value).tolist()  # as displayed
        cells = Cells(self.layout, t) if t.op else None  # constants are plain numbers
        continued = dict(b.continued)
        for dr, values in enumerate(grid):
            row = p.row0 + dr
            if b.row_labels:
                ws.write_string(row, 0, b.row_labels[dr], st.index)
            else:
                ws.write_number(row, 0, dr + 1, st.index)
            for dc, value in enumerate(values):
                if blank:  # the student's cell
                    ws.write_blank(row, p.col0 + dc, None, st.answer)
                    continue
                if cells is None:
                    ws.write_number(row, p.col0 + dc, value, fmt)
                    continue
                i, j = (dc, dr) if p.transposed else (dr, dc)
                f = t.op.formula(cells, i, j)
                if len(f) >= MAX_FORMULA:
                    raise TracerError(f"the formula of {t.name}[{i},{j}] is longer than Excel's "
                                      f"{MAX_FORMULA} characters")
                ws.write_formula(row, p.col0 + dc, "=" + f, fmt, self.value(t, value))
            if b.tokens:  # the token of the id: a formula too, so it follows a recomputed id
                ws.write_formula(row, p.col0 + n_cols, f"=INDEX(vocab,{p.addr(dr, 0, sheet.name)}+1)",
                                 st.token, self.value(t, b.tokens[dr]))
            if row in continued:  # the first row of a later page: the block's title again
                ws.write_string(row, p.col0 + n_cols + bool(b.tokens), continued[row], st.title[phase])
        self.cells += b.cells
        self.progress(n_rows * n_cols)
        return p.row0 + n_rows - 1

    def _picture(self, ws, sheet, p: Picture):
        top = p.labelled  # the column labels' row first
        height = max(im.height for im in p.images) + top
        for r in range(height):  # constant-memory mode: whole rows in order
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
                    for c, v in enumerate(im.values[i].tolist()):
                        ws.write_number(p.row + r, im.col + c, v, self.st.pixel)
                    continue
                for c, (t, ti, tj) in enumerate(im.pixels[i]):
                    src = self.layout.place[id(t)]
                    ws.write_formula(p.row + r, im.col + c, "=" + src.addr(ti, tj, sheet.name),
                                     self.st.pixel, self.value(t, float(t.value[ti, tj])))
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
            ws.merge_range(row + dr, start, row + dr, start + 2, word, self.st.stat)
            ws.merge_range(row + dr, start + 3, row + dr, start + wide - 1, "", self.st.stat_value)
            # merge_range writes text: the formula goes into the first cell afterwards (XlsxWriter's way)
            ws.write_formula(row + dr, start + 3, f"={fn}({cells})", self.st.stat_value,
                             self.value(t, float(v)) if t is not None else float(v))
            self.decimals.append(f"{COLS[start + 3]}{row + dr + 1}")
            self.cells += 2

    def _label(self, ws, sheet, row, col, label, fmt):
        """A heatmap's row or column label: text, or (ids tensor, i): the token of that id."""
        if isinstance(label, str):
            ws.write_string(row, col, label, fmt)
        else:
            t, i = label
            token = self.layout.tape.meta["tokenized"].vocab[int(t.value[i, 0])]
            ws.write_formula(row, col, f"=INDEX(vocab,{self.layout.place[id(t)].addr(i, 0, sheet.name)}+1)",
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
        ws.write_formula(r, col, f'=IF(COUNT({mine})<{n},"✎ "&COUNT({mine})&"/{n}",'
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
            ws = self.wb.add_worksheet(ex.answer_sheet, worksheet_class=_PortableSheet)
            ws.write_string(0, 0, self.layout.tpl.t("answers_note"), self.st.note)
            for t in ex.blank:
                p = ex.answers[id(t)]
                grid = (t.value.T if p.transposed else t.value).tolist()
                for dr, values in enumerate(grid):
                    for dc, v in enumerate(values):
                        ws.write_number(p.row0 + dr, p.col0 + dc, v)
                self.cells += t.value.size
            ws.hide()
        ws = self.wb.add_worksheet(INFO_SHEET, worksheet_class=_PortableSheet)
        ws.write_string(0, 0, self.layout.tpl.t("exercise_info"))
        for r, (key, chunk) in enumerate(ex.info_rows(), start=1):
            ws.write_string(r, 0, key)
            ws.write_string(r, 1, chunk)
        ws.hide()
