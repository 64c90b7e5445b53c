"""tracer's writer with every cell written by XlsxWriter's own write_* methods: the reference the cell
stream (tracer.render.xlsx._SheetCells) is compared with, part by part (tests/test_cell_stream.py)."""

from __future__ import annotations

from tracer.render.xlsx import style


class XlsxWriterCells:
    """The cells of a worksheet, each by the XlsxWriter call that writes it (a stock Worksheet).
    Each asks for the format's index first, as the stream does: the same index for the same
    format."""

    def __init__(self, ws, k: int):
        self.ws = ws

    def number(self, row, col, value, fmt=None):
        style(fmt)
        self.ws.write_number(row, col, value, fmt)

    def string(self, row, col, text, fmt=None):
        style(fmt)
        self.ws.write_string(row, col, text, fmt)

    def formula(self, row, col, formula, fmt=None, value=0):
        style(fmt)
        self.ws.write_formula(row, col, "=" + formula, fmt, value)

    def blank(self, row, col, fmt=None):
        style(fmt)
        self.ws.write_blank(row, col, None, fmt)

    def formulas(self, row, col, formulas, fmt, values):
        style(fmt)
        for k, f in enumerate(formulas):
            self.ws.write_formula(row, col + k, "=" + f, fmt, "" if values is None else values[k])

    def numbers(self, row, col, values, fmt):
        style(fmt)
        for k, v in enumerate(values):
            self.ws.write_number(row, col + k, v, fmt)

    def row_height(self, row, height):
        self.ws.set_row(row, height)

    def url(self, row, col, url, fmt, text):
        style(fmt)
        self.ws.write_url(row, col, url, fmt, string=text)

    def merge(self, row, first, last, text, fmt):
        style(fmt)
        self.ws.merge_range(row, first, row, last, text, fmt)

    def merged_formula(self, row, col, formula, fmt, value):
        self.ws.write_formula(row, col, "=" + formula, fmt, value)

    def close(self):
        pass


def write_reference(layout, path):
    """The workbook of `layout` at `path`, every cell written by XlsxWriter."""
    from tracer.render.xlsx import write_xlsx

    return write_xlsx(layout, path, cells=XlsxWriterCells)
