"""Where every tensor goes: sheets, numbered sections, titled blocks, pictures and the overview.

The layout reads the tape and the template and decides positions and texts; it writes nothing.
`Cells` turns positions into the references an op's formula needs (across sheets, by defined
name for hyperparameters).  Parts of a sheet are stacked top to bottom, so a writer can emit
every sheet in row order (XlsxWriter's constant-memory mode).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from tracer.core.op import holds_token_ids
from tracer.core.size import BAND, MAX_COLS, MAX_ROWS, shown
from tracer.core.tape import PHASES
from tracer.errors import TracerError
from tracer.render.fonts import text_width, wrap
from tracer.render.template import Template

MAX_SHEET_NAME = 31
LABEL_WIDTH = 34  # the overview's first column (characters)
CELL_WIDTH = 12  # a number column (characters)
TITLE_WIDTH = 8  # columns of a block's coloured title band
# A cell's text does not wrap, and a print cuts what runs past the sheet's last column or into the
# next filled cell: long texts are laid out as lines (tracer.render.fonts.wrap), one row each, no
# wider than the page (and than these many points, to stay readable).
NOTE_WIDTH, OVERVIEW_WIDTH, HYPER_WIDTH, SETTING_WIDTH = 900.0, 540.0, 400.0, 260.0
CHART_ROWS = 17  # rows the overview's chart covers
CHART_PX = (624, 317)  # the chart's size in pixels (XlsxWriter's 480 × 288, scaled 1.3 × 1.1)
CHART_GAP = 12.0  # points between the overview's text and its charts
# A picture's pixel: 26 px wide in Excel (27.6 in LibreOffice, whose digit of Calibri/Carlito is
# 7.4 px, not 7) and 27 px tall: square within 4 % in both.
PIXEL_WIDTH, PIXEL_HEIGHT = 3.0, 20.25  # characters, points
# Printing: landscape, one page wide, on the smaller of Letter and A4 inside MARGINS (inches: left,
# right, top, bottom; the footer, FOOTER from the bottom edge, in the bottom one): in points,
PAGE_WIDTH, PAGE_HEIGHT = 720.0, 516.0  # A4's height (8.27 in) less 1.1, Letter's width (11 in) less 1
MARGINS, FOOTER = (0.5, 0.5, 0.5, 0.6), 0.25
# A sheet of blocks prints at most at MAX_SCALE: narrow blocks leave room for the next ones on a page,
# and a page holds about twice the rows of a full-size one; a wider sheet is fitted to the page's
# width.  Of the SCALES (the largest that fits the width first) the sheet takes the largest whose
# pages are within FEWEST of the fewest: a scale at which blocks just miss a page costs pages.
MAX_SCALE = 0.7
SCALES, FEWEST = (0.7, 0.65, 0.6, 0.55, 0.5), 1.05
BAND_KEEP = 20  # rows: a block's bands up to this tall are kept whole on a page (a page breaks between them)
MIN_TAIL = 8  # rows: a block taller than a page starts on the page before when these fit on it
CONTINUED_ROWS, CONTINUED_COLUMNS = 24, 2  # a block taller than this has room for "(cont.)" beside it
ROW_HEIGHT = 15.0  # points: a row in the default font
# the styles of text (size in points, bold, italic): the writer's formats, the layout's widths and
# the rows a larger font needs (set explicitly: a page counts exactly)
FONTS = {"text": (11, False, False), "note": (11, False, True), "bold": (11, True, False),
         "title": (11, True, False), "equation": (12, False, False), "heading": (13, True, False),
         "section": (14, True, False), "sheet_title": (16, True, False)}
HEIGHTS = {12: 15.75, 13: 17.25, 14: 18.75, 16: 21.0}  # font size -> row height (points)
REPEATED_ROWS = 3  # each page repeats a sheet's title and its two legend rows
REPEATED_HEIGHT = HEIGHTS[16] + 2 * ROW_HEIGHT  # the title (in 16 points) and the two legend rows
FIRST_ROW = REPEATED_ROWS + 1  # a sheet's first block
TOKENS_WIDTH = 12  # the Tokens sheet's columns at least
MAX_BREAKS = 1023  # Excel's limit of manual page breaks on a sheet
LABEL_ROW_HEIGHT = 48.0  # points: the row of a heatmap's column labels, written upwards (at least)
LABEL_COLUMNS, LABEL_SIZE = 3, 8  # a heatmap's row labels: the columns they may take, their font size
PICTURE_WIDTH, PIXEL_POINTS = 220.0, 13.0  # points: the widest image prints about this wide, a pixel at most this


LIBREOFFICE_DIGIT = 7.43 / 7  # LibreOffice's digit of Carlito (Calibri's metrics) over Excel's 7 px


def points(width: float) -> float:
    """A column `width` characters wide, in points, as the widest application draws it: Excel counts
    7 px a digit of Calibri 11 (plus 5 px), LibreOffice the digit's own 7.43 px of Carlito."""
    return (int(width * 7 + 0.5) + 5) * 0.75 * LIBREOFFICE_DIGIT


def _image(t, n: int, side: int, scale: str) -> "PictureImage":
    """Row n of tensor t (s² values) as an s × s image."""
    return PictureImage(0, [[(t, n, r * side + c) for c in range(side)] for r in range(side)], scale, source=(t, n))


def _side(n: int) -> int:
    """The side of the square image of n pixels (0 when n is not a square of a side > 1)."""
    side = math.isqrt(n)
    return side if side * side == n and side > 1 else 0


def on_overview(t) -> bool:
    """Hyperparameters are named cells on the overview; every other tensor is a block."""
    return t.attrs.get("role") == "hyper"


def phase_style(t) -> str:
    """The colors of a tensor's block: its phase's (every constant of the inputs sheet: input)."""
    return t.phase if t.iteration else "input"


def lines(text: str, width: float, style: str = "text", indent: str = "") -> list[str]:
    """The text in lines no wider than `width` points in the style's font (broken at spaces where
    it can be), the lines after the first indented by `indent`."""
    size, bold, italic = font_of(style)
    return wrap(text, width, size, bold, italic, indent)


def characters(width: float) -> float:
    """The column width (characters) that is `width` points wide as LibreOffice draws it."""
    return math.ceil(((width / 0.75 / LIBREOFFICE_DIGIT) - 5) / 7 * 10) / 10


def lines_width(text: str, style: str = "text") -> float:
    """How wide the text prints in the style's font, in points."""
    size, bold, italic = font_of(style)
    return text_width(text, size, bold, italic)


def whole_numbers(t, memo: dict) -> bool:
    """Whether every cell of t is a whole number by construction (an id, a count, a position):
    shown without decimals.  Marked constants, ops that make whole numbers, and references to
    whole numbers."""
    if id(t) not in memo:
        memo[id(t)] = bool(t.attrs.get("integer")) or (t.op is not None and (
            t.op.integer or (t.op.references and all(whole_numbers(u, memo) for u in t.inputs))))
    return memo[id(t)]


def block_cells(tape) -> int:
    """How many tensor cells the blocks hold (the length of a progress bar)."""
    return sum(t.value.size for t in tape.tensors if not on_overview(t))


def col_letter(c: int) -> str:
    s = ""
    c += 1
    while c:
        c, rem = divmod(c - 1, 26)
        s = chr(65 + rem) + s
    return s


COLS = [col_letter(c) for c in range(MAX_COLS)]


_ROW_NUMBERS = ["0"]  # str(n) at index n: one string per row number, shared by every Place's references


def row_numbers(row0: int, n: int) -> list[str]:
    """The A1 row numbers of sheet rows row0 … row0 + n - 1 (rows from 0)."""
    if len(_ROW_NUMBERS) <= row0 + n:
        _ROW_NUMBERS.extend(str(k) for k in range(len(_ROW_NUMBERS), row0 + n + 1))
    return _ROW_NUMBERS[row0 + 1:row0 + n + 1]


def quote_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


@dataclass
class Place:
    """Tensor cell (i, j) sits at sheet row row0 + i, column col0 + j (swapped when transposed).  A
    tensor shown in `bands` (tracer.core.size.banded): its displayed columns BAND at a time, each
    band under the one before, below a row of its column numbers."""

    sheet: str
    row0: int
    col0: int
    rows: int
    cols: int
    transposed: bool = False
    bands: int = 1

    def __post_init__(self):
        self.prefix = quote_sheet(self.sheet) + "!"  # for references from other sheets
        self._refs = None

    def refs(self) -> tuple[list[str], list[str]]:
        """(letters, numbers): cell (i, j) is letters[j] + numbers[i] (letters[i] + numbers[j] when
        transposed).  Built once per tensor: the half a million addresses of a workbook are then two
        list lookups each, not an f-string.  (Of a tensor in bands: the first band's.)"""
        if self._refs is None:
            across, down = (self.rows, self.cols) if self.transposed else (self.cols, self.rows)
            self._refs = COLS[self.col0:self.col0 + min(across, self.band)], row_numbers(self.row0, down)
        return self._refs

    @property
    def band(self) -> int:
        """The displayed columns of a band."""
        return (self.rows if self.transposed else self.cols) if self.bands == 1 else BAND

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) displayed, as if in one band."""
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    def rc(self, i: int, j: int) -> tuple[int, int]:
        r, c = (j, i) if self.transposed else (i, j)
        b, c = divmod(c, self.band)
        return self.row0 + b * (self.grid[0] + 1) + r, self.col0 + c

    @property
    def display(self) -> tuple[int, int]:
        """(rows, columns) the tensor takes on the sheet."""
        rows, cols = self.grid
        return (self.bands * (rows + 1) - 1, min(cols, self.band))

    def addr(self, i: int, j: int, here: str, absolute=False) -> str:
        if absolute:
            r, c = self.rc(i, j)
            a = f"${COLS[c]}${r + 1}"
        elif self.bands > 1:
            r, c = self.rc(i, j)
            a = COLS[c] + str(r + 1)
        else:
            letters, numbers = self._refs or self.refs()
            a = letters[i] + numbers[j] if self.transposed else letters[j] + numbers[i]
        return a if here == self.sheet else self.prefix + a

    def pieces(self, i0, j0, i1, j1) -> list[str]:
        """The ranges (without a sheet) that the cells (i0, j0) … (i1, j1) take: one, or one in each
        band they cross."""
        if self.transposed:
            i0, j0, i1, j1 = j0, i0, j1, i1
        out = []
        for b in range(j0 // self.band, j1 // self.band + 1):
            top, left = self.row0 + b * (self.grid[0] + 1), self.col0 - b * self.band
            a = f"{COLS[left + max(j0, b * self.band)]}{top + i0 + 1}"
            z = f"{COLS[left + min(j1, b * self.band + self.band - 1)]}{top + i1 + 1}"
            out.append(a if a == z and j0 // self.band == j1 // self.band else a + ":" + z)
        return out

    def span(self, i0, j0, i1, j1, here: str) -> str:
        """The cells (i0, j0) … (i1, j1) as a range, ranges (comma-separated: what an aggregate such
        as SUM takes) when they cross bands."""
        if self.bands > 1:
            prefix = "" if here == self.sheet else self.prefix
            return ",".join(prefix + a for a in self.pieces(i0, j0, i1, j1))
        letters, numbers = self._refs or self.refs()
        if self.transposed:
            i0, j0, i1, j1 = j0, i0, j1, i1
        a = letters[j0] + numbers[i0]
        if i0 != i1 or j0 != j1:
            a = a + ":" + letters[j1] + numbers[i1]
        return a if here == self.sheet else self.prefix + a


class Cells:
    """The cells of a tensor's inputs as seen from the sheet of the tensor (for op formulas).  A
    row's or a column's range is made once and kept: a matrix product asks for the same row of its
    left input for every cell of an output row."""

    def __init__(self, layout: Layout, t):
        self.here = layout.place[id(t)].sheet
        self.ins = [layout.place[id(u)] for u in t.inputs]
        self.names = [u.attrs.get("defined_name") for u in t.inputs]
        self.n = len(t.inputs)
        self._rows = [{} for _ in self.ins]
        self._cols = [{} for _ in self.ins]
        self._cells = [self._cell(k) for k in range(self.n)]

    def _cell(self, k):
        """What at(k, …) needs: the name of input k, or (sheet prefix, letters, numbers, transposed,
        one row, one column) of its cells."""
        if self.names[k]:
            return self.names[k]
        p = self.ins[k]
        if p.bands > 1:
            return p
        return ("" if p.sheet == self.here else p.prefix, *p.refs(), p.transposed, p.rows == 1, p.cols == 1)

    def at(self, k, i, j) -> str:
        cell = self._cells[k]
        if cell.__class__ is str:
            return cell
        if cell.__class__ is Place:  # in bands
            return cell.addr(0 if cell.rows == 1 else i, 0 if cell.cols == 1 else j, self.here)
        prefix, letters, numbers, transposed, one_row, one_col = cell
        if one_row:
            i = 0
        if one_col:
            j = 0
        return prefix + (letters[i] + numbers[j] if transposed else letters[j] + numbers[i])

    def row(self, k, i):
        """(range, runs vertically, length) of row i of input k (a Line: tracer.core.op.dot also
        finds where it crosses bands)."""
        found = self._rows[k].get(i)
        if found is None:
            p = self.ins[k]
            found = self._rows[k][i] = Line(p, self.here, i, None)
        return found

    def col(self, k, j):
        found = self._cols[k].get(j)
        if found is None:
            p = self.ins[k]
            found = self._cols[k][j] = Line(p, self.here, None, j)
        return found

    def all(self, k) -> str:
        p = self.ins[k]
        return p.span(0, 0, p.rows - 1, p.cols - 1, self.here)

    def span(self, k, i0, j0, i1, j1) -> str:
        """The range from cell (i0, j0) to cell (i1, j1) of input k."""
        return self.ins[k].span(i0, j0, i1, j1, self.here)

    def shape(self, k) -> tuple[int, int]:
        return self.ins[k].rows, self.ins[k].cols


class Line(tuple):
    """Row i (j None) or column j (i None) of a tensor as (range, runs vertically, length), and
    `part(a, b)`: the same of its elements a … b − 1, one range when they lie in one band; `cuts`:
    where the line passes from one band to the next."""

    def __new__(cls, p: Place, here: str, i, j):
        n = p.cols if j is None else p.rows
        line = super().__new__(cls, (cls._span(p, here, i, j, 0, n), (j is None) == p.transposed, n))
        line.p, line.here, line.i, line.j = p, here, i, j
        across = (j is None) != p.transposed  # along the displayed columns: cut at each band
        line.cuts = list(range(p.band, n, p.band)) if across and p.bands > 1 else []
        return line

    @staticmethod
    def _span(p, here, i, j, a, b):
        return p.span(i, a, i, b - 1, here) if j is None else p.span(a, j, b - 1, j, here)

    def part(self, a: int, b: int) -> tuple[str, bool, int]:
        return self._span(self.p, self.here, self.i, self.j, a, b), self[1], b - a


# --- the parts of a sheet -----------------------------------------------------------------------

@dataclass
class Text:
    row: int
    col: int
    text: str
    style: str = "text"


@dataclass
class Link:
    row: int
    col: int
    text: str
    sheet: str
    target_row: int


@dataclass
class Block:
    """A titled tensor: its title row, its text lines (the equation, a student's "your turn", the
    note, each wrapped to the sheet), the column numbers, then the grid."""

    row: int
    tensor: object
    number: str
    title: str
    equation: str
    note: str
    place: Place
    lines: list = field(default_factory=list)  # (text, style) of the rows below the title
    tokens: list | None = None  # a column of token ids also shown as text: the token of each row
    whole: bool = False  # ids, counts, positions: shown without decimals
    row_labels: list | None = None  # as displayed: the tokens of rows (and columns) that run over the
    col_labels: list | None = None  # vocabulary, where the sheet would number them 1 … V
    symbol: str = ""
    continued: list = field(default_factory=list)  # (row, text): its title again on each page it runs on to

    @property
    def cells(self) -> int:
        """The cells the writer fills: the grid, the number and title, the text lines, the column
        and row numbers, with tokens their column and its heading, and its title on later pages."""
        rows, cols = self.place.grid  # (its row numbers: in every band)
        return (rows * cols + 2 + len(self.lines) + cols + rows * self.place.bands
                + (rows + 1 if self.tokens else 0) + len(self.continued))


@dataclass
class TokenRow:
    """A column of token ids read as text along a row: its label (a link to its block), then each
    id's token as a formula, INDEX(vocab, id + 1) (the generated texts, at the top of their sheet)."""

    row: int
    label: str
    tensor: object
    target_row: int

    @property
    def cells(self) -> int:
        """The cells the writer fills: the grid, 4 header texts, the column and row numbers, and
        with tokens their column and its heading."""
        rows, cols = self.place.display
        return rows * cols + 4 + cols + rows + (rows + 1 if self.tokens else 0)


@dataclass
class Hyper:
    """A named input cell on the overview (a hyperparameter formulas refer to by name): its symbol,
    the yellow cell, then what it means (nothing to its right cuts it)."""

    row: int
    symbol: str
    meaning: str
    tensor: object
    place: Place


@dataclass
class Views:
    """A table of cells that each point at one tensor cell (loss table rows)."""

    row: int
    cells: list  # (col, None, text), (col, tensor, None): the 1 × 1 tensor (else its mean), or (col, tensor, (i, j))
    decimals: bool = False  # its real numbers in six decimals, as a tensor's (else as typed: a setting)


SNAPSHOT_IMAGES = 5  # of a batch, a warm-up snapshot shows the first few images
SELF_SCALED = ("gray_auto", "diverging", "attention_auto")  # colour scales from the image's own min to its max
EXTREME_COLUMNS = 8  # at least, for "min" (or "max") and its value under a self-scaled image


@dataclass
class PictureImage:
    """A heatmap: pixel (r, c) shows the tensor cell pixels[r][c] = (tensor, i, j).  Labels (a
    matrix's tokens, a hidden unit's number) go left of each row and above each column: text, or
    (ids tensor, i), the token of that id (a formula, so it follows a recomputed id)."""

    col: int
    pixels: list | None  # rows of (tensor, i, j); None for a warm-up snapshot, whose pixels are `values`
    scale: str  # gray, gray_auto, diverging, attention, ... (SCALES in tracer.render.xlsx; SELF_SCALED)
    left: list | None = None
    top: list | None = None
    values: object = None  # a warm-up snapshot's pixels (rows of numbers): written as values, not formulas
    source: tuple | None = None  # (tensor, row): the image is that row of the tensor (MIN/MAX read it)

    @property
    def height(self) -> int:
        return len(self.pixels if self.values is None else self.values)

    @property
    def width(self) -> int:
        return len(self.pixels[0] if self.values is None else self.values[0])

    @property
    def self_scaled(self) -> bool:
        """Shaded from its own minimum to its maximum: the picture shows both (MIN and MAX formulas)."""
        return self.scale in SELF_SCALED

    @property
    def extremes(self) -> list[tuple[int, int, int]]:
        """(row under the image, first column, columns) of its minimum, then of its maximum: side by
        side under a wide image, one under the other under a narrow one; none unless self-scaled."""
        if not self.self_scaled:
            return []
        if self.width >= 2 * EXTREME_COLUMNS:
            half = self.width // 2
            return [(0, 0, half), (0, half, self.width - half)]
        wide = max(self.width, EXTREME_COLUMNS)
        return [(0, 0, wide), (1, 0, wide)]

    @property
    def span(self) -> int:
        """The columns the image takes in its row, the minimum and maximum under it included."""
        return max([self.width] + [c + w for _, c, w in self.extremes])

    @property
    def labels_left(self) -> int:
        """The columns left of the image its row labels take (written right-aligned in the last)."""
        return LABEL_COLUMNS if self.left is not None else 0


@dataclass
class Picture:
    """Side-by-side heatmaps: each square is a formula pointing at the tensor's cell (a snapshot's,
    a value); the column labels, if any image has them, take the first row; under a self-scaled
    image, its minimum and maximum."""

    row: int
    images: list  # of PictureImage

    @property
    def labelled(self) -> bool:
        return any(im.top for im in self.images)

    @property
    def height(self) -> int:
        """Rows used: the labels' row, the tallest image, and the rows of the minima and maxima."""
        below = max([1 + r for im in self.images for r, _, _ in im.extremes] or [0])
        return self.labelled + max(im.height for im in self.images) + below


@dataclass
class Chart:
    row: int
    col: int
    title: str
    categories: tuple  # (sheet, col, first row, last row)
    series: list  # (name, sheet, col, first row, last row, on the secondary axis)
    x_title: str = ""  # the x axis's title (default: the iteration)
    log: bool = False  # a logarithmic y axis


@dataclass
class Scatter(Chart):
    """flow: an XY scatter chart on the overview, each series (name, tensor) an N × 2 tensor's first
    column across and its second up (categories unused); `offset` pixels right of column `col`."""

    offset: int = 0
    y_title: str = ""


TENSOR_SHEETS = ("inputs", "iteration", "after")  # the kinds of sheet that hold blocks
PAGED = TENSOR_SHEETS + ("warmup",)  # sheets of many pages: at most MAX_SCALE, the page's width filled
SLACK = 3.0  # points a page keeps free: a spreadsheet rounds a scaled row's height


def font_of(style: str) -> tuple:
    """(size, bold, italic) of a text style (a section's title: whatever its phase's colour)."""
    return FONTS["section" if style.startswith("section_") else style]


@dataclass
class Sheet:
    name: str
    kind: str
    parts: list = field(default_factory=list)
    width: int = 2  # columns used
    freeze: tuple = (0, 0)
    label_width: float = 0  # the first column's width (characters), where the sheet sets one
    keep: list = field(default_factory=list)  # (first row, last row) a printed page should not split
    heights: dict = field(default_factory=dict)  # row -> height (points) where it is not ROW_HEIGHT
    print_rows: int = 0  # the overview: the rows printed (on one page); 0: every row, page after page
    breaks: list | None = None  # the rows printed pages start at, once the layout has fixed them
    scale: float = 0.0  # the print scale, once the layout has chosen it (0: the largest that fits)
    repeated: int = REPEATED_ROWS  # the rows printed at the top of every page

    def column_widths(self) -> list[tuple[int, int, float]]:
        """(first, last, width in characters) of the sheet's columns: every column printed."""
        return [(0, 0, self._first_width()), (1, self.last_column(), self._rest_width())]

    def _first_width(self) -> float:
        return self.label_width or {"pictures": 16, "tokens": 14}.get(self.kind, 7)

    def _rest_width(self) -> float:
        return {"pictures": PIXEL_WIDTH, "tokens": 9}.get(self.kind, CELL_WIDTH)

    def points(self, columns: int) -> float:
        """The width of the sheet's first `columns` columns, in points, unscaled."""
        return points(self._first_width()) + (columns - 1) * points(self._rest_width()) if columns else 0.0

    def print_scale(self) -> float:
        """The scale the layout chose, else the one that fits the sheet's columns one page wide (at
        most MAX_SCALE for a sheet of blocks, 100 % for another; whole percents, as a spreadsheet
        rounds it), the overview's printed rows on one page too."""
        if self.scale:
            return self.scale
        pct = math.floor(100 * PAGE_WIDTH / self.points(self.width + 1))
        if self.print_rows:  # the overview's printed rows: on one page
            pct = min(pct, math.floor(100 * PAGE_HEIGHT / self.height(0, self.print_rows - 1)))
        most = round(100 * MAX_SCALE) if self.kind in PAGED else 100
        return max(10, min(most, pct)) / 100

    def last_column(self) -> int:
        """The print area's last column: as many as the page holds at the print scale (a sheet of
        blocks), the sheet's own columns (another)."""
        if self.kind not in PAGED:
            return self.width
        room = PAGE_WIDTH / self.print_scale() - SLACK - points(self._first_width())
        return max(self.width, math.floor(room / points(self._rest_width())))

    def text_room(self, col: int = 1) -> float:
        """Points from the left edge of column `col` to the print area's right edge (unscaled)."""
        return self.points(self.last_column() + 1) - self.points(col)

    def room(self) -> float:
        """The height a page holds below the rows repeated on every page, in points unscaled."""
        return PAGE_HEIGHT / self.print_scale() - self.height(0, self.repeated - 1) - SLACK

    def height(self, a: int, b: int) -> float:
        """Rows a … b printed, in points."""
        return (b - a + 1) * ROW_HEIGHT + sum(h - ROW_HEIGHT for r, h in self.heights.items() if a <= r <= b)

    def set_heights(self):
        """The rows of a text in a larger font than the default get that font's height (a page
        then counts exactly)."""
        for part in self.parts:
            if isinstance(part, Text):
                rows = [(part.row, part.style)]
            elif isinstance(part, Block):
                rows = [(part.row + k, style) for k, (_, style) in enumerate(part.lines, start=1)]
            else:
                continue
            for row, style in rows:
                size = font_of(style)[0]
                if size in HEIGHTS:
                    self.heights[row] = max(self.heights.get(row, 0), HEIGHTS[size])

    def page_breaks(self) -> list[int]:
        """The rows a printed page starts at (at most MAX_BREAKS): a page ends where the next
        `keep` range does not fit on the rest of it; one taller than a page starts on the rest of
        the page when MIN_TAIL rows of it fit there, and goes on page after page."""
        if self.breaks is not None:
            return self.breaks
        room = self.room()
        special = sorted(self.heights)  # the rows of a height of their own
        extra = list(itertools.accumulate((self.heights[r] - ROW_HEIGHT for r in special), initial=0.0))

        def height(a, b):  # Sheet.height, in a bisection
            return (b - a + 1) * ROW_HEIGHT + extra[bisect.bisect_right(special, b)] - extra[bisect.bisect_left(special, a)]
        breaks, used, filled, row = [], 0.0, False, self.repeated  # filled: a block's row is on the page

        def take(a, b):  # rows a … b on this page, and on new ones as it fills
            nonlocal used, filled
            while a <= b:
                k = bisect.bisect_left(special, a)
                if k < len(special) and special[k] == a:
                    runs, h = 1, self.heights[a]
                else:  # rows of the default height, up to the next one of its own
                    runs, h = min(b + 1, special[k] if k < len(special) else b + 1) - a, ROW_HEIGHT
                fit = int((room - used) // h) if used else max(1, int(room // h))
                if fit <= 0:
                    breaks.append(a)
                    used, filled = 0.0, False
                    continue
                n = min(fit, runs)
                used += n * h
                a += n

        keep = []  # overlapping ranges: one
        for a, b in sorted(self.keep):
            if keep and a <= keep[-1][1]:
                keep[-1] = (keep[-1][0], max(b, keep[-1][1]))
            else:
                keep.append((a, b))
        for a, b in keep:
            take(row, a - 1)  # the empty rows between two blocks
            block = height(a, b)
            if filled and used + block > room and (block <= room or used + MIN_TAIL * ROW_HEIGHT > room):
                breaks.append(a)
                used = 0.0
            take(a, b)
            filled, row = True, max(row, b + 1)
        return breaks[:MAX_BREAKS]


class Layout:
    def __init__(self, tape, template: Template, config: dict, exercise=None):
        """`exercise`: a student's version (tracer.checks.exercise) whose blank blocks say so."""
        self.tape, self.tpl = tape, template
        self.translations = template.translations()  # a text takes the rows its longest language needs
        self.config = tape.meta.get("settings") or config  # a run may describe its own settings
        self.place: dict[int, Place] = {}
        self.exercise = exercise
        self.sections: list[tuple[str, str, int]] = []  # (sheet, title, row) for the index
        tt = template.t
        self.warmup = tape.meta.get("warmup")  # steps run before the traced ones (tracer.models.training)
        self.traced = sorted({t.iteration for t in tape.tensors if t.iteration})  # N+1 … N+K
        self.overview = Sheet(tt("overview"), "overview")
        self.inputs = Sheet(tt("inputs"), "inputs", freeze=(REPEATED_ROWS, 1))
        self.iters = [Sheet(tt("iteration", k=k), "iteration", freeze=(REPEATED_ROWS, 1)) for k in self.traced]
        self._iter_sheets = dict(zip(self.traced, self.iters))
        # what a model computes with its trained parameters (generation, similarities): one sheet
        after = any(t.phase == "after" for t in tape.tensors)
        self.after = Sheet(tt("after"), "after", freeze=(REPEATED_ROWS, 1)) if after else None
        self.pictures = Sheet(tt("pictures"), "pictures")
        tokenized = tape.meta.get("tokenized")
        self.tokens = Sheet(tt("tokens"), "tokens") if tokenized else None
        self.warmup_sheet = Sheet(tt("warmup_sheet"), "warmup", freeze=(REPEATED_ROWS, 0)) if self.warmup else None
        self.warmup_rows = (0, 0)  # the warm-up sheet's rows the loss chart reads, set by _lay_warmup
        self.vocab_range = None  # set by _lay_tokens
        self.sheets = [self.overview, *([self.warmup_sheet] if self.warmup else []), *([self.tokens] if tokenized else []),
                       self.inputs, *self.iters, *([self.after] if after else []), self.pictures]
        for s in self.sheets:
            if len(s.name) > MAX_SHEET_NAME:
                raise TracerError(f"sheet name {s.name!r} is longer than Excel's {MAX_SHEET_NAME} characters")
        self.hypers = [t for t in tape.tensors if on_overview(t)]  # placed by _lay_overview
        self.bandable = self._bandable()
        self._lay_tensor_sheets()
        if tokenized:
            self._lay_tokens(tokenized)
        self._lay_pictures()
        if self.warmup:
            self._lay_warmup()
        self._lay_overview()

    def options(self) -> str:
        """The settings of the run as command-line options: what produced the warm-up."""
        return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in self.config.items() if value is not None)

    def _lines(self, text_of, width: float, style: str = "text", indent: str = "") -> list[str]:
        """text_of(template) in lines no wider than `width` points, padded with empty lines to as
        many as the language that needs most: a cell has the same address in every language's
        workbook."""
        each = {tp.lang: lines(text_of(tp), width, style, indent) for tp in self.translations}
        mine = each[self.tpl.lang]
        return mine + [""] * (max(map(len, each.values())) - len(mine))

    def _bandable(self) -> set[int]:
        """The tensors that may be shown in bands: every op that reads one reads it cell by cell
        (Op.by_cells); not an exercise's (its answers and `tracer check` place blocks as shown), nor
        a language model's (its rows and columns labelled by tokens)."""
        if self.exercise or self.tape.meta.get("tokenized"):
            return set()
        ok = {id(t) for t in self.tape.tensors}
        for t in self.tape.tensors:
            if t.op is not None and not t.op.by_cells:
                ok.difference_update(id(u) for u in t.inputs)
        return ok

    def _fitted(self, s: Sheet, text_of, col: int, rows: int) -> list[str]:
        """text_of(template) as note lines from column `col` on at most `rows` rows (the sheet
        made wider where it must be: the rows repeated on every page are fixed)."""
        while len(text := self._lines(text_of, s.text_room(col), "note")) > rows:
            s.width += 1
        return text

    # -- tensor sheets --------------------------------------------------------------------------
    def _sheet_of(self, t) -> Sheet:
        if t.phase == "after":
            return self.after
        return self.inputs if t.iteration == 0 else self._iter_sheets[t.iteration]

    def _fit(self, t, sheet: str, row0: int, col0: int) -> Place:
        rows, cols = t.shape
        # a row vector reads best as a column; a tensor wider than tall and than WIDE too, so that a
        # sheet prints one page wide (and a sheet's width costs time in every one of its rows); one
        # wider than a page at 50 % in bands, where every formula that reads it takes bands
        transposed, bands = shown(rows, cols, id(t) in self.bandable)
        p = Place(sheet, row0, col0, rows, cols, transposed, bands)
        if col0 + p.display[1] > MAX_COLS:
            p = Place(sheet, row0, col0, rows, cols, not transposed)
        if col0 + p.display[1] > MAX_COLS:
            raise TracerError(f"{t.name} ({rows}×{cols}) is too wide for a sheet ({MAX_COLS} columns)")
        return p

    def _lay_tensor_sheets(self):
        tt, tpl = self.tpl.t, self.tpl
        rows = {id(s): 0 for s in self.sheets}
        counters: dict[tuple, int] = {}
        whole: dict[int, bool] = {}
        ids: dict[int, bool] = {}
        current: dict[int, str] = {}
        numbers: dict[int, int] = {}  # the current section number of each sheet
        chain = [self.inputs, *self.iters, *([self.after] if self.after else [])]
        shown = {phase_style(t) for t in self.tape.tensors if not on_overview(t)}
        tokenized = self.tape.meta.get("tokenized")
        # first the sheets' widths (their widest blocks), which fix the print scale, so that every
        # text can be laid out as lines as wide as the printed page
        for t in self.tape.tensors:
            if not on_overview(t):
                s, p = self._sheet_of(t), self._fit(t, "", 0, 1)
                tall = p.display[0] > CONTINUED_ROWS  # a "(cont.)" title right of its grid
                s.width = max(s.width, TITLE_WIDTH, 1 + p.display[1] + bool(tokenized and t.shape[1] == 1)
                              + (CONTINUED_COLUMNS if tall else 0))
                if t.phase == "after" and t.section == "generate_result" and tokenized:  # a row of tokens
                    s.width = max(s.width, 1 + t.shape[0])

        def legend_of(tp):
            return tp.t("legend", " · ".join(tp.t("legend_" + phase) for phase in PHASES if phase in shown))
        for k, s in enumerate(chain):  # k = 0 for the inputs
            if tokenized:  # the first column also labels rows with tokens (and the generated texts)
                s.label_width = max(7, min(20, 2 + max(len(v) for v in tokenized.vocab)))
                if s is self.after:
                    s.label_width = max([s.label_width] + [characters(lines_width(tpl.symbol(t.name)) + 6)
                                                           for t in self.tape.tensors if t.section == "generate_result"])
            head = tt("inputs") if k == 0 else s.name
            s.parts.append(Text(0, 1, head, "sheet_title"))
            s.parts.append(Link(0, 4, tt("back"), self.overview.name, 0))
            if k:
                s.parts.append(Link(0, 6, f"← {chain[k - 1].name}", chain[k - 1].name, 0))
                if k + 1 < len(chain):
                    s.parts.append(Link(0, 8, f"{chain[k + 1].name} →", chain[k + 1].name, 0))
            for n, line in enumerate(self._fitted(s, legend_of, 1, REPEATED_ROWS - 1)):
                s.parts.append(Text(1 + n, 1, line, "note"))  # on every printed page, beside the title
            rows[id(s)] = FIRST_ROW
            if k == 0 and self.warmup:  # the inputs sheet's parameters are those the warm-up reached
                text = self._lines(lambda tp: tp.t("warmup_inputs", n=self.warmup["steps"], options=self.options()),
                                   s.text_room(), "bold")
                s.parts += [Text(FIRST_ROW + n, 1, line, "bold") for n, line in enumerate(text) if line]
                rows[id(s)] = FIRST_ROW + len(text) + 1
        # what training led to, first: the generated texts sit at the top of their sheet
        results = [t for t in self.tape.tensors if t.phase == "after" and t.section == "generate_result"]
        if results and tokenized:
            rows[id(self.after)] = FIRST_ROW + 1 + len(results) + 1
        for t in self.tape.tensors:
            if on_overview(t):
                continue
            s = self._sheet_of(t)
            room = min(NOTE_WIDTH, s.text_room())
            section = t.section if t.iteration else "input"
            r = rows[id(s)]
            first = r  # a section's title stays on the page of its first block
            if current.get(id(s)) != section:
                current[id(s)] = section
                numbers[id(s)] = sec = numbers.get(id(s), 0 if t.iteration else -1) + 1
                title = f"{sec}  {tpl.section(section)}"
                title_lines = self._lines(lambda tp, sec=sec, section=section: f"{sec}  {tp.section(section)}",
                                          s.text_room(0), "section")
                for k, line in enumerate(title_lines):
                    if line:
                        s.parts.append(Text(r + k, 0, line, "section_" + phase_style(t)))
                self.sections.append((s.name, title, r))
                r += len(title_lines) + 1
            sec = numbers[id(s)]
            counters[(id(s), sec)] = n = counters.get((id(s), sec), 0) + 1
            equation = self._lines(lambda tp, t=t: tp.equation(t), room, "equation", "    ") if tpl.equation(t) else []
            text = [(line, "equation") for line in equation]
            if self.exercise and id(t) in self.exercise.blank_ids:
                text.append((tt("exercise_your_turn"), "note"))
            text += [(line, "note") for line in self._lines(lambda tp, t=t: tp.note(t), room, "note")]
            p = self._fit(t, s.name, r + len(text) + 2, 1)  # title, text, column numbers, the grid
            self.place[id(t)] = p
            title = f"{tpl.symbol(t.name)}    {t.shape[0]} × {t.shape[1]}    {tpl.describe(t)}"
            block = Block(r, t, f"{sec}.{n}", title, tpl.equation(t), tpl.note(t), p, text,
                          whole=whole_numbers(t, whole), symbol=tpl.symbol(t.name))
            if self.tokens:
                self._label_tokens(block, ids)
            s.parts.append(block)
            # a page may break between two short bands (each under its column numbers), not inside one
            height = p.grid[0] + 1
            if p.bands > 1 and height <= BAND_KEEP:
                s.keep += [(first, p.row0 + p.grid[0] - 1)] + [(p.row0 - 1 + k * height, p.row0 + (k + 1) * height - 2)
                                                               for k in range(1, p.bands)]
            else:
                s.keep.append((first, p.row0 + p.display[0] - 1))
            r = p.row0 + p.display[0] + 1
            if r > MAX_ROWS:
                raise TracerError(f"sheet {s.name!r} would need more than {MAX_ROWS} rows")
            rows[id(s)] = r
        if results and tokenized:
            blocks = {id(b.tensor): b for b in self.after.parts if isinstance(b, Block)}
            self.after.parts.append(Text(FIRST_ROW, 0, tt("after_summary"), "heading"))
            for k, t in enumerate(results, start=FIRST_ROW + 1):
                self.after.parts.append(TokenRow(k, tpl.symbol(t.name), t, blocks[id(t)].row))
            self.after.keep.insert(0, (FIRST_ROW, FIRST_ROW + len(results)))
        for s in chain:
            self._paginate(s)

    def _paginate(self, s: Sheet):
        """Fix the sheet's page breaks; a block that runs on to the next page repeats its title
        there, right of its grid: "1.2  a₁  (cont.)"."""
        s.set_heights()
        widest = s.print_scale()
        pages = {}
        for scale in sorted({min(widest, k) for k in SCALES} if s.kind in PAGED else {widest}, reverse=True):
            s.scale = scale
            pages[scale] = s.page_breaks()
        s.scale = max(k for k in pages if len(pages[k]) + 1 <= FEWEST * min(len(b) + 1 for b in pages.values()))
        s.breaks = pages[s.scale]
        blocks = sorted((b for b in s.parts if isinstance(b, Block)), key=lambda b: b.row)
        starts = [b.row for b in blocks]
        for row in s.breaks:
            k = bisect.bisect_right(starts, row) - 1
            if k < 0:
                continue
            b = blocks[k]
            top, last = b.place.row0, b.place.row0 + b.place.display[0] - 1
            if b.row < row <= last:
                b.continued.append((max(row, top), f"{b.number}  {b.symbol}  {self.tpl.t('continued')}"))

    def _label_tokens(self, block: Block, ids: dict):
        """A language model's block: a column of ids also read as text, each id's token beside it;
        rows and columns that run over the vocabulary labelled with their tokens, not 1 … V."""
        t, vocab = block.tensor, self.tape.meta["tokenized"].vocab
        if t.shape[1] == 1 and holds_token_ids(t, ids):
            block.tokens = [vocab[int(v)] for v in t.value[:, 0]]
        rows, cols = self.tpl.vocab_axes(t.name)
        labels = [list(vocab) if by_vocab and n == len(vocab) else None for by_vocab, n in zip((rows, cols), t.shape)]
        block.row_labels, block.col_labels = labels[::-1] if block.place.transposed else labels

    # -- tokens: text → tokens → ids, the vocabulary, and how BPE learned it ------------------------
    def _lay_tokens(self, tok):
        s, tt = self.tokens, self.tpl.t
        parts = s.parts
        parts += [Text(0, 0, tt("tokens_title", kind=tt("tokenizer_" + tok.kind)), "sheet_title"),
                  Link(0, 6, tt("back"), self.overview.name, 0)]
        s.width = max([TOKENS_WIDTH] + [1 + len(ids) for ids in tok.sentences])  # the headings and notes print whole
        for n, line in enumerate(self._fitted(s, lambda tp: tp.t("tokens_note"), 0, REPEATED_ROWS - 1)):
            parts.append(Text(1 + n, 0, line, "note"))
        r = FIRST_ROW
        parts.append(Text(r, 0, tt("tokens_sentences"), "heading"))
        for n, ids in enumerate(tok.sentences, start=1):
            tokens = tok.decode(ids)
            r += 1
            parts.append(Views(r, [(0, None, tt("tokens_sentence", n=n))] +
                               [(1 + k, None, token) for k, token in enumerate(tokens)]))
            parts.append(Views(r + 1, [(0, None, tt("tokens_ids"))] + [(1 + k, None, i) for k, i in enumerate(ids)]))
            r += 2
        r += 1
        parts.append(Text(r, 0, tt("tokens_vocab", n=len(tok.vocab)), "heading"))
        r += 1
        parts.append(Views(r, [(0, None, "id"), (1, None, tt("tokens_token"))]))
        # the named range `vocab`: INDEX(vocab, id + 1) is the token of an id anywhere in the book
        self.vocab_range = f"={quote_sheet(s.name)}!$B${r + 2}:$B${r + 1 + len(tok.vocab)}"
        for i, token in enumerate(tok.vocab):
            r += 1
            parts.append(Views(r, [(0, None, i), (1, None, token)]))
        if tok.kind == "bpe":
            r += 2
            parts.append(Text(r, 0, tt("tokens_merges"), "heading"))
            r += 1
            parts.append(Views(r, [(0, None, tt("tokens_step")), (1, None, tt("tokens_pair")),
                                   (2, None, tt("tokens_count")), (3, None, tt("tokens_new")),
                                   (4, None, tt("tokens_competitors"))]))
            for n, m in enumerate(tok.merges, start=1):
                r += 1
                others = "; ".join(f"{a} + {b}: {c}" for (a, b), c in m.competitors)
                parts.append(Views(r, [(0, None, n), (1, None, f"{m.pair[0]} + {m.pair[1]}"), (2, None, m.count),
                                       (3, None, m.token), (4, None, others or "-")]))
            if tok.stop:
                parts.append(Text(r + 1, 0, tt("tokens_stop_" + tok.stop, done=len(tok.merges),
                                               requested=tok.merges_requested), "note"))
        s.keep = [(row, row) for row in range(REPEATED_ROWS, r + 2)]  # pages break anywhere
        self._paginate(s)

    # -- pictures -------------------------------------------------------------------------------
    def _lay_pictures(self):
        """Heatmaps, in the template's [pictures] order: a row of them per step, the warm-up's
        snapshots first (values, on the fixed colour scales), then each traced iteration (formulas
        pointing at the tensors' cells, the inputs' pictures first), then what the trained model
        computes (a grid of images when the entry asks for one).  An entry's kind: "image"
        (default; each row of a batch tensor N × s² as its own s × s image), "matrix" (a tensor as
        it is, e.g. attention weights, its rows and columns labelled with the tokens of `labels`,
        an id column) or "steps" (the numbered tensors h_1 … h_T of an iteration as the rows of
        one picture: a state over time, its rows labelled with the tokens read, its columns with
        the unit numbers).  Each entry's label is the title over its images, each image of a batch
        captioned (#1, #2, … or the entry's `each`).  The images of a step run left to right and
        on to the next line of the page.  Without any picture the sheet is left out."""
        s, tt, tpl = self.pictures, self.tpl.t, self.tpl
        order = list(tpl.model.get("pictures", {}))  # e.g. the upscaled digit next to the digit
        by_iter: dict[int, list] = {}  # iteration → (rank, label, caption, image)
        after: list = []  # (rank, label, entry, tensor): after training
        steps: dict[tuple, list] = {}  # (iteration, rank) → the numbered tensors in order
        ids = {(t.iteration, t.name): t for t in self.tape.tensors}

        def caption(entry, n, count):  # of image n of a batch of count
            return entry.get("each", {}).get(tpl.lang, "#{n}").format(n=n + 1) if count > 1 else ""

        for t in self.tape.tensors:
            for key, entry, label in tpl.pictures_of(t.name):
                kind, rank, side = entry.get("kind", "image"), order.index(key), _side(t.shape[1])
                if kind == "image" and side and t.phase == "after":
                    after.append((rank, label, entry, t))
                elif kind == "image" and side:
                    by_iter.setdefault(t.iteration, []).extend(
                        (rank, label, caption(entry, n, t.shape[0]), _image(t, n, side, entry["scale"]))
                        for n in range(t.shape[0]))
                elif kind == "matrix" and t.iteration and t.phase != "after":
                    tokens = ids.get((t.iteration, entry["labels"])) or ids[(0, entry["labels"])]
                    names = [(tokens, i) for i in range(t.shape[0])]
                    pixels = [[(t, i, j) for j in range(t.shape[1])] for i in range(t.shape[0])]
                    by_iter.setdefault(t.iteration, []).append(
                        (rank, label, "", PictureImage(0, pixels, entry["scale"], names, names[:t.shape[1]])))
                elif kind == "column" and t.phase == "after" and t.shape[1] == 1 and _side(t.shape[0]):
                    after.append((rank, label, entry, t))  # flow: a G² × 1 density, shown G × G
                elif kind == "steps" and t.iteration and t.phase != "after" and t.shape[0] == 1:
                    steps.setdefault((t.iteration, rank), (label, entry, []))[2].append(t)
        for (k, rank), (label, entry, rows) in steps.items():
            tokens = ids[(0, entry["labels"])]
            pixels = [[(t, 0, j) for j in range(t.shape[1])] for t in rows]
            by_iter.setdefault(k, []).append((rank, label, "", PictureImage(
                0, pixels, entry["scale"], [(tokens, i) for i in range(len(rows))],
                [str(j + 1) for j in range(rows[0].shape[1])])))
        snapshots = (self.warmup or {}).get("snapshots", [])
        # what goes on the page, step by step: (the step's label, [lines of (label, caption, image)],
        # whether the lines may wrap), in order
        steps_out = []
        entries = tpl.pictures()
        items = [(tpl.m_picture(e["key"]), tt("warmup_step", k=step) + (f"  #{n + 1}" if len(v) > 1 else ""),
                  PictureImage(0, None, e["scale"], values=v[n].reshape(_side(v.shape[1]), -1)))
                 for e in entries if e.get("kind", "image") == "image" and e["scale"] not in SELF_SCALED
                 for step, values in snapshots if (v := values.get(e["tensor"])) is not None
                 for n in range(min(len(v), SNAPSHOT_IMAGES))]  # on the fixed scales only, step after step
        if items:
            steps_out.append((tt("warmup_sheet"), [items], True))
        fixed = by_iter.pop(0, [])
        for k in sorted(by_iter) or ([0] if fixed else []):
            items = fixed + sorted(by_iter.get(k, []), key=lambda e: e[0])
            steps_out.append((tt("iteration", k=k) if k else "", [[item[1:] for item in items]], True))
        for n, (_, label, entry, t) in enumerate(sorted(after, key=lambda e: e[0])):  # after training
            head = "" if n else tt("after")
            if entry.get("kind") == "column":  # flow: the column's cells row by row, side × side
                side = _side(t.shape[0])
                im = PictureImage(0, [[(t, i * side + j, 0) for j in range(side)] for i in range(side)], entry["scale"])
                steps_out.append((head, [[(label, "", im)]], False))
                continue
            images = [(label, "", _image(t, k, _side(t.shape[1]), entry["scale"])) for k in range(t.shape[0])]
            if entry.get("grid") and math.isqrt(t.shape[0]) ** 2 == t.shape[0]:  # a grid's rows stay rows
                per_row = math.isqrt(t.shape[0])
                steps_out.append((head, [images[k:k + per_row] for k in range(0, len(images), per_row)], False))
            else:
                steps_out.append((head, [images], True))
        if not steps_out:  # nothing to draw (an mlp's warm-up snapshots hold no picture's tensor)
            self.sheets.remove(s)
            self.pictures = None
            return
        self._place_pictures(steps_out)

    def _place_pictures(self, steps: list):
        """Lay the pictures' steps out on the sheet: the scale at which the widest image prints
        about PICTURE_WIDTH wide (and a grid's row fits the page), the columns the page then
        holds, each step's images on as many lines of them as it takes, a line never split by a
        page."""
        s, tt, tpl = self.pictures, self.tpl.t, self.tpl
        pixel = points(PIXEL_WIDTH)
        s.label_width = characters(max([lines_width(label, "bold") for label, _, _ in steps]
                                       + [lines_width(tt("after"), "bold")]) + 6)
        first = points(s.label_width)
        images = [im for _, rows, _ in steps for row in rows for _, _, im in row]
        widest = max(im.width for im in images) * pixel
        fixed = max(sum(im.labels_left + im.span + 1 for _, _, im in row) for _, rows, wraps in steps
                    for row in rows if not wraps) if any(not wraps for _, _, wraps in steps) else 0
        fixed = max([fixed] + [im.labels_left + im.span + 1 for im in images])  # a line holds its widest image
        # (an amplified GAN's 112-pixel image prints wider than PICTURE_WIDTH: Excel takes no scale below 10 %)
        scale = min(PIXEL_POINTS / pixel, max(PICTURE_WIDTH / widest, 0.10),
                    (PAGE_WIDTH - SLACK) / (first + fixed * pixel + SLACK))
        s.scale = math.floor(100 * scale) / 100
        s.width = math.floor((PAGE_WIDTH / s.scale - SLACK - first) / pixel)  # the last column the page holds
        note = tpl.model.get("pictures_note", {})  # how to read the model's pictures
        s.parts += [Text(0, 1, tt("pictures"), "sheet_title"), Link(0, 12, tt("back"), self.overview.name, 0)]
        text = self._lines(lambda tp: " ".join([tp.t("picture_note"), *([tp.t("picture_note_warmup")] if self.warmup else []),
                                                *([note[tp.lang]] if note else [])]), s.text_room(1), "note")
        s.parts += [Text(1 + n, 1, line, "note") for n, line in enumerate(text) if line]
        s.repeated = 1  # the title on every page
        r = 1 + len(text) + 1
        for label, rows, wraps in steps:
            if label:
                s.parts.append(Text(r, 0, label, "bold"))
            start = r
            for n, row in enumerate(rows):
                for line in (self._wrap_pictures(row) if wraps else [row]):
                    r = self._picture_line(r, line, titled=wraps or n == 0)
                if not wraps and n + 1 < len(rows):
                    r -= 1  # a grid's rows one under the other
            if not wraps:
                s.keep.append((start, r - 2))  # a grid on one page: the scale makes room for it
        s.set_heights()
        tallest = max(s.height(a, b) for a, b in s.keep)
        s.scale = min(s.scale, math.floor(100 * (PAGE_HEIGHT - SLACK) / (tallest + s.height(0, 0) + SLACK)) / 100)
        s.breaks = s.page_breaks()

    def _wrap_pictures(self, items: list) -> list:
        """The items (label, caption, image) in lines the page's width holds (an image a line at least)."""
        out, line, col = [], [], 1
        for item in items:
            need = item[2].labels_left + item[2].span
            if line and col + need > self.pictures.width + 1:
                out.append(line)
                line, col = [], 1
            line.append(item)
            col += need + 1
        return out + [line] if line else out

    def _picture_line(self, r: int, items: list, titled: bool = True) -> int:
        """One line of images from (label, caption, image) items, left to right: each run of images
        of one label under that label (on as many rows as it takes, up to the next run), each
        image's caption above it, then the column labels, the pixels (square), the minima and
        maxima.  Returns the next free row (after an empty one)."""
        s = self.pictures
        images, runs, col = [], [], 1
        for label, caption, im in items:
            if not runs or runs[-1][0] != label:
                runs.append((label, col))
            images.append((caption, dataclasses.replace(im, col=col + im.labels_left)))
            col += im.labels_left + im.span + 1
        ends = [start for _, start in runs[1:]] + [s.width + 1]
        titles = [self._lines(lambda tp, label=label: label, s.points(end) - s.points(start) - 6, "bold")
                  if titled and label else [] for (label, start), end in zip(runs, ends)]
        for (_, start), text in zip(runs, titles):
            s.parts += [Text(r + k, start, line, "bold") for k, line in enumerate(text) if line]
        row = r + max(map(len, titles))
        if any(caption for caption, _ in images):
            s.parts += [Text(row, im.col, caption, "text") for caption, im in images if caption]
            row += 1
        picture = Picture(row, [im for _, im in images])
        s.parts.append(picture)
        if picture.labelled:  # the column labels, upwards
            tall = max(lines_width(label if isinstance(label, str) else "[MASK]", "text") * LABEL_SIZE / 11
                       for im in picture.images for label in im.top or [])
            s.heights[row] = max(LABEL_ROW_HEIGHT, tall + 6)
        top = row + picture.labelled  # the pixels' rows: square pixels
        s.heights |= {k: PIXEL_HEIGHT for k in range(top, top + max(im.height for im in picture.images))}
        s.keep.append((r, row + picture.height - 1))
        return row + picture.height + 1

    # -- overview -------------------------------------------------------------------------------
    def _lay_overview(self):
        """On the first printed page: the title, the intro, the equations, the hyperparameters, the
        settings and the losses of the traced iterations on the left; the charts stacked on the
        right.  Below (not printed): the index of every section.  A warm-up's losses, step by
        step, are on a sheet of their own, which the loss chart reads."""
        s, tt, tpl = self.overview, self.tpl.t, self.tpl
        parts = s.parts
        parts.append(Text(0, 0, tpl.m("title"), "sheet_title"))
        text = [(line, "text") for line in self._lines(lambda tp: tp.m("intro"), OVERVIEW_WIDTH)]
        if self.exercise:  # a student's version says what to do first (in a class, whose it is first)
            if self.exercise.student_name:
                text.insert(0, (tt("roster_student", name=self.exercise.student_name), "bold"))
            text += [(line, "bold") for line in self._lines(lambda tp: tp.t("exercise_intro"), OVERVIEW_WIDTH, "bold")]
        for r, (line, style) in enumerate(text, start=1):
            if line:
                parts.append(Text(r, 0, line, style))
        index_link = len(text) + 1  # "Index ↓", pointing at the index below the printed page
        r = index_link + 1
        parts.append(Text(r, 0, tt("equations"), "heading"))
        count = max(len(tp.equations(self.tape)) for tp in self.translations)
        for k in range(count):
            for line in self._lines(lambda tp, k=k: (tp.equations(self.tape) + [""] * count)[k], OVERVIEW_WIDTH,
                                    "equation", "        "):
                r += 1
                if line:
                    parts.append(Text(r, 0, line, "equation"))
        hyper_names = {t.name.lower() for t in self.hypers}  # shown below as named cells
        label = self.tape.meta.get("label")

        def settings_of(tp):  # (label, value) of each setting, in a language
            out = tp.settings(self.config, "settings" not in self.tape.meta, hyper_names)
            return out + ([(tp.t("label"), label if isinstance(label, str) else int(label))] if label is not None else [])
        settings = self._setting_lines(settings_of)
        s.label_width = LABEL_WIDTH
        r += 2
        parts += [Text(r, 0, tt("hyper"), "heading"), Text(r + 1, 0, tt("hyper_note"), "note")]
        r += 2
        for t in self.hypers:  # what each means beside it, on as many lines as it takes
            p = Place(s.name, r, 1, 1, 1)
            self.place[id(t)] = p
            meaning = self._lines(lambda tp, t=t: tp.describe(t), max(HYPER_WIDTH, OVERVIEW_WIDTH - s.points(2)), "note")
            parts.append(Hyper(r, tpl.symbol(t.name), meaning[0], t, p))
            parts += [Text(r + k, 2, line, "note") for k, line in enumerate(meaning[1:], start=1) if line]
            r += len(meaning)
        r += 1
        parts.append(Text(r, 0, tt("losses"), "heading"))
        recorded = {t.name for t in self.tape.tensors if t.iteration}
        names = [n for n in tpl.losses(self.tape) if n in recorded]
        secondary = tpl.model.get("losses", {}).get("secondary", [])
        r += 1
        if self.warmup:  # where the warm-up's steps are
            parts.append(Link(r, 0, tt("warmup_link", n=self.warmup["steps"], sheet=self.warmup_sheet.name),
                              self.warmup_sheet.name, 0))
            r += 1
        parts.append(Views(r, [(0, None, tt("iteration_col"))] +
                           [(1 + n, None, tpl.symbol(name)) for n, name in enumerate(names)]))
        first = r + 1
        by_key = {(t.iteration, t.name): t for t in self.tape.tensors}
        for k in self.traced:
            r += 1
            parts.append(Views(r, [(0, None, k)] + [(1 + n, by_key[(k, name)], None) for n, name in enumerate(names)]))
        charts = []  # stacked right of the text
        if names:
            title = tt("chart_title_warmup", n=self.warmup["steps"]) if self.warmup else tt("chart_title")
            source, top, bottom = (self.warmup_sheet.name, *self.warmup_rows) if self.warmup else (s.name, first, r)
            charts.append(Chart(0, 0, title, (source, 0, top, bottom),
                                [(tpl.symbol(name), source, 1 + n, top, bottom, name in secondary)
                                 for n, name in enumerate(names)]))
        r, curve = self._lay_curve(r + 2)
        charts += curve + self._lay_scatter()
        below = 1 + len(charts) * (CHART_ROWS + 1) + 1  # the first row under the charts
        # the settings in the shorter column: under the losses, or under the charts
        rows = sum(max(len(text), len(value)) for text, value in settings)
        on_left = max(r + rows + 2, below) <= max(r, below + rows + 1)
        if on_left:
            self._lay_settings(settings, r + 1, 0)
            r += rows + 2
        left = [s.points(2 + len(names))]  # how far right the text and the tables reach
        if curve:
            left.append(s.points(2 + len(self.traced)))
        for part in parts:
            if isinstance(part, (Text, Link)) and part.row:  # the title may run on above the charts
                left.append(s.points(part.col) + lines_width(part.text, getattr(part, "style", "text")))
            elif isinstance(part, Hyper):
                left.append(s.points(2) + lines_width(part.meaning, "note"))
            elif isinstance(part, Views):
                left += [s.points(col) + (lines_width(text) if isinstance(text, str) else points(CELL_WIDTH))
                         for col, _, text in part.cells]
        col = 1  # the charts' column: right of the text
        while s.points(col) < max(left) + CHART_GAP:
            col += 1
        for n, chart in enumerate(charts):  # one under the other, from the top
            chart.row, chart.col = 1 + n * (CHART_ROWS + 1), col
        parts += charts
        widest = self._lay_settings(settings, below, col) if not on_left else 0
        s.print_rows = max(r, below + (0 if on_left else rows + 1))  # printed on one page
        # the charts' last column as Excel anchors them (its columns of 89 px: narrower than LibreOffice's)
        s.width = col + math.ceil(CHART_PX[0] / (int(CELL_WIDTH * 7 + 0.5) + 5)) - 1 if charts else col
        while s.points(s.width + 1) < widest:
            s.width += 1
        r = s.print_rows + 1
        parts.append(Text(r, 0, tt("index"), "heading"))
        parts.append(Link(index_link, 0, tt("index") + " ↓", s.name, r))
        for sheet_name, title, row in self.sections:
            r += 1
            parts.append(Link(r, 0, f"{sheet_name}:  {title}", sheet_name, row))
        for sheet in (self.warmup_sheet, self.pictures, self.tokens):
            if sheet:
                r += 1
                parts.append(Link(r, 0, sheet.name, sheet.name, 0))
        s.set_heights()

    def _setting_lines(self, settings_of) -> list[tuple[list, list]]:
        """Each setting's label and value (a text) as lines no wider than SETTING_WIDTH, as many in
        every language (a number: one line)."""
        each = [settings_of(tp) for tp in self.translations]
        mine = each[[tp.lang for tp in self.translations].index(self.tpl.lang)]
        out = []
        for k, (text, value) in enumerate(mine):
            cut = [[lines(str(v), SETTING_WIDTH)] if isinstance(v, str) else [[v]] for v in (text, value)]
            needed = max(len(lines(str(v), SETTING_WIDTH)) for labels in each for v in labels[k] if isinstance(v, str))
            out.append(tuple(c[0] + [""] * (needed - len(c[0])) for c in cut))
        return out

    def _lay_settings(self, settings: list, row: int, col: int) -> float:
        """The settings of the run (_setting_lines) under a heading from (row, col): each label,
        then its value in the first column it leaves free.  Returns how far right they reach."""
        s, parts = self.overview, self.overview.parts
        parts.append(Text(row, col, self.tpl.t("settings"), "heading"))
        value = col + 1
        while s.points(value) < s.points(col) + max([0] + [lines_width(t) for text, _ in settings for t in text]) + CHART_GAP:
            value += 1
        row += 1
        for text, setting in settings:
            parts.append(Views(row, [(col, None, text[0]), (value, None, setting[0])]))
            parts += [Text(row + k, c, line, "text") for c, more in ((col, text), (value, setting))
                      for k, line in enumerate(more[1:], start=1) if line]
            row += max(len(text), len(setting))
        return max([s.points(value) + (lines_width(v) if isinstance(v, str) else points(CELL_WIDTH))
                    for _, values in settings for v in values]
                   + [s.points(col) + lines_width(self.tpl.t("settings"), "heading")]) + CHART_GAP / 2

    def _lay_warmup(self):
        """The warm-up's losses, a row per step (values: it ran in numpy, six decimals as every
        number), then the traced iterations (formulas): the rows the overview's chart reads."""
        s, tt, tpl = self.warmup_sheet, self.tpl.t, self.tpl
        recorded = {t.name for t in self.tape.tensors if t.iteration}
        names = [n for n in tpl.losses(self.tape) if n in recorded]
        series, steps = self.warmup.get("series", {}), self.warmup["steps"]
        title = tt("warmup_title", n=steps)
        s.parts.append(Text(0, 0, title, "sheet_title"))
        link = 1
        while s.points(link) < lines_width(title, "sheet_title") + CHART_GAP:
            link += 1
        s.parts.append(Link(0, link, tt("back"), self.overview.name, 0))
        s.width = max(4, 1 + len(names), link + 1)
        note = self._lines(lambda tp: tp.t("warmup_note", n=steps), s.text_room(0), "note")
        s.parts += [Text(1 + k, 0, line, "note") for k, line in enumerate(note) if line]
        s.repeated = header = 1 + len(note)  # the title, the note and the table's header on every page
        s.parts.append(Views(header, [(0, None, tt("step_col"))] + [(1 + n, None, tpl.symbol(name))
                                                                  for n, name in enumerate(names)]))
        s.repeated += 1
        r = header
        for step in range(1, steps + 1):
            r += 1
            s.parts.append(Views(r, [(0, None, step)] + [(1 + n, None, float(series[name][step - 1].mean()))
                                                         for n, name in enumerate(names) if name in series],
                                 decimals=True))
        by_key = {(t.iteration, t.name): t for t in self.tape.tensors}
        for k in self.traced:
            r += 1
            s.parts.append(Views(r, [(0, None, k)] + [(1 + n, by_key[(k, name)], None) for n, name in enumerate(names)]))
        self.warmup_rows = (header + 1, r)
        s.freeze = (s.repeated, 0)
        s.keep = [(row, row) for row in range(header + 1, r + 1)]
        self._paginate(s)

    # -- flow: the model's [[scatter]] charts ------------------------------------------------------
    def _lay_scatter(self) -> list:
        """The model's [[scatter]] charts (flow: the data and the samples; z = f(x) and the prior
        draws), every series an N × 2 tensor's cells (the tensor's last record: the trained
        model's)."""
        charts, lang = self.tpl.model.get("scatter", []), self.tpl.lang
        last = {t.name: t for t in self.tape.tensors}
        out = []
        for chart in charts:
            series = [(s[lang], last[s["tensor"]]) for s in chart["series"] if s["tensor"] in last]
            if series:
                x_title, y_title = chart["axes"]
                out.append(Scatter(0, 0, chart[lang], None, series, x_title, y_title=y_title))
        return out

    def _lay_curve(self, r: int) -> tuple[int, list]:
        """The model's [curve] (rnn, lstm: ‖∂L_T/∂h_t‖), if it has one: a (T, 1) tensor of every
        iteration as a table, a row per t and a column per iteration, each cell pointing at the
        tensor's cell, and a line chart of it on a logarithmic axis.  Returns the next free row
        and the chart."""
        curve = self.tpl.model.get("curve")
        if not curve:
            return r, []
        tt, lang, parts, name = self.tpl.t, self.tpl.lang, self.overview.parts, self.overview.name
        tensors = [t for t in self.tape.tensors if t.name == curve["tensor"] and t.iteration]
        if not tensors:
            return r, []
        parts.append(Text(r, 0, curve[lang], "heading"))
        note = self._lines(lambda tp: tp.model["curve"][f"note_{tp.lang}"], OVERVIEW_WIDTH, "note")
        parts += [Text(r + 1 + k, 0, line, "note") for k, line in enumerate(note) if line]
        r += 1 + len(note)
        parts.append(Views(r, [(0, None, curve[f"x_{lang}"])] +
                           [(1 + n, None, tt("iteration", k=t.iteration)) for n, t in enumerate(tensors)]))
        first = r + 1
        for i in range(tensors[0].shape[0]):
            r += 1
            parts.append(Views(r, [(0, None, i + 1)] + [(1 + n, t, (i, 0)) for n, t in enumerate(tensors)]))
        chart = Chart(0, 0, curve[lang], (name, 0, first, r),
                      [(tt("iteration", k=t.iteration), name, 1 + n, first, r, False) for n, t in enumerate(tensors)],
                      x_title=curve[f"x_{lang}"], log=True)
        return r + 1, [chart]
