"""Reading what a workbook shows, straight from its XML: every cell's number format, the
conditional formats, every string, the page setup of every sheet.  Fast enough for the largest
default workbook, and independent of the writer (it reads the file as any spreadsheet would)."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from openpyxl.utils import range_boundaries

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
      "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}
BUILTIN = {0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%", 11: "0.00E+00",
           49: "@"}


@dataclass
class SheetParts:
    name: str
    hidden: bool
    cells: dict = field(default_factory=dict)  # (row, col) 1-based -> (kind, value, format code)
    conditional: list = field(default_factory=list)  # (ranges [(c0, r0, c1, r1)], rule element, dxf format code)
    page_setup: dict = field(default_factory=dict)
    fit_to_page: bool = False
    print_titles: str | None = None
    print_area: str | None = None
    row_breaks: list = field(default_factory=list)
    row_heights: dict = field(default_factory=dict)  # row (1-based) -> height in points
    col_widths: list = field(default_factory=list)  # (first col, last col, width)
    margins: dict = field(default_factory=dict)  # left, right, top, bottom, header, footer (inches)
    xf: dict = field(default_factory=dict)  # (row, col) -> the cell's style index
    fonts: list = field(default_factory=list)  # style index -> (size, bold, italic, horizontal alignment, rotation)

    def font_at(self, row, col) -> tuple:
        """(size, bold, italic, horizontal alignment, rotation) of the cell."""
        return self.fonts[self.xf.get((row, col), 0)]

    def format_at(self, row, col) -> str | None:
        cell = self.cells.get((row, col))
        return cell[2] if cell else None

    def covered(self, row, col, test) -> bool:
        """Whether a conditional format whose (rule, dxf format) passes `test` covers the cell."""
        return any(test(rule, fmt) and any(c0 <= col <= c1 and r0 <= row <= r1 for c0, r0, c1, r1 in ranges)
                   for ranges, rule, fmt in self.conditional)


def _q(tag):
    return f"{{{NS['m']}}}{tag}"


def read_parts(path: Path) -> list[SheetParts]:
    """Every sheet of the workbook at `path`, in order."""
    with zipfile.ZipFile(path) as z:
        styles = ET.fromstring(z.read("xl/styles.xml"))
        codes = dict(BUILTIN)
        for nf in styles.iter(_q("numFmt")):
            codes[int(nf.get("numFmtId"))] = nf.get("formatCode")
        xfs = [codes.get(int(xf.get("numFmtId", 0)), "?")
               for xf in styles.find(_q("cellXfs")).iter(_q("xf"))]
        fonts = []
        for font in styles.find(_q("fonts")).iter(_q("font")):
            size = font.find(_q("sz"))
            fonts.append((float(size.get("val")) if size is not None else 11.0,
                          font.find(_q("b")) is not None, font.find(_q("i")) is not None))
        looks = []
        for xf in styles.find(_q("cellXfs")).iter(_q("xf")):
            align = xf.find(_q("alignment"))
            looks.append((*fonts[int(xf.get("fontId", 0))], align.get("horizontal") if align is not None else None,
                          int(align.get("textRotation", 0)) if align is not None else 0))
        dxfs = []
        for dxf in styles.iter(_q("dxf")):
            nf = dxf.find(_q("numFmt"))
            dxfs.append(nf.get("formatCode") if nf is not None else None)
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).iter(_q("si")):
                shared.append("".join(t.text or "" for t in si.iter(_q("t"))))
        book = ET.fromstring(z.read("xl/workbook.xml"))
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        targets = {r.get("Id"): r.get("Target") for r in rels}
        names = {}
        for dn in book.iter(_q("definedName")):
            names.setdefault(dn.get("localSheetId"), {})[dn.get("name")] = dn.text
        out = []
        for k, sh in enumerate(book.iter(_q("sheet"))):
            target = targets[sh.get(f"{{{NS['r']}}}id")].lstrip("/")
            target = target if target.startswith("xl/") else "xl/" + target
            parts = SheetParts(sh.get("name"), sh.get("state") in ("hidden", "veryHidden"), fonts=looks)
            local = names.get(str(k), {})
            parts.print_titles = local.get("_xlnm.Print_Titles")
            parts.print_area = local.get("_xlnm.Print_Area")
            _read_sheet(ET.fromstring(z.read(target)), parts, xfs, dxfs, shared)
            out.append(parts)
    return out


def _read_sheet(root, parts, xfs, dxfs, shared):
    for row in root.iter(_q("row")):
        if row.get("customHeight") and row.get("ht"):
            parts.row_heights[int(row.get("r"))] = float(row.get("ht"))
    for col in root.iter(_q("col")):
        parts.col_widths.append((int(col.get("min")), int(col.get("max")), float(col.get("width"))))
    for c in root.iter(_q("c")):
        c0, r0, _, _ = range_boundaries(c.get("r"))
        fmt = xfs[int(c.get("s", 0))]
        if c.get("s"):
            parts.xf[(r0, c0)] = int(c.get("s"))
        t, v, f = c.get("t"), c.find(_q("v")), c.find(_q("f"))
        if t == "s":
            kind, value = "string", shared[int(v.text)]
        elif t == "inlineStr":
            kind, value = "string", "".join(x.text or "" for x in c.iter(_q("t")))
        elif f is not None:
            text = v.text if v is not None else None
            kind = "formula"
            value = (float(text) if t in (None, "n") and text not in (None, "") else text)
            if t == "str":
                kind = "formula_string"
        elif v is not None:
            kind, value = "number", float(v.text)
        else:
            kind, value = "blank", None
        parts.cells[(r0, c0)] = (kind, value, fmt)
    for cf in root.iter(_q("conditionalFormatting")):
        ranges = [range_boundaries(ref) for ref in cf.get("sqref").split()]
        for rule in cf.iter(_q("cfRule")):
            dxf = rule.get("dxfId")
            parts.conditional.append((ranges, rule, dxfs[int(dxf)] if dxf is not None else None))
    margins = root.find(_q("pageMargins"))
    parts.margins = {k: float(v) for k, v in margins.attrib.items()} if margins is not None else {}
    setup = root.find(_q("pageSetup"))
    parts.page_setup = dict(setup.attrib) if setup is not None else {}
    pr = root.find(_q("sheetPr"))
    fit = pr.find(_q("pageSetUpPr")) if pr is not None else None
    parts.fit_to_page = fit is not None and fit.get("fitToPage") in ("1", "true")
    breaks = root.find(_q("rowBreaks"))
    if breaks is not None:
        parts.row_breaks = [int(b.get("id")) for b in breaks.iter(_q("brk"))]


def strings(path: Path, visible_only: bool = True) -> list[tuple[str, str]]:
    """(sheet, text) of every string a workbook shows: text cells and formulas' cached text."""
    return [(s.name, value) for s in read_parts(path) if not (visible_only and s.hidden)
            for kind, value, _ in s.cells.values() if kind in ("string", "formula_string") and value]


WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
