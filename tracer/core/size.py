"""How big a run is, known from its options before any work, and the limits beyond which tracer
refuses it (tracer.models.check_size applies them before tracing, tracer.render before writing).

Each model's `size(config)` gives the shapes of the tensors it would record, sheet by sheet (the
inputs, one iteration, after training), as `Shapes`: each shape with how many tensors have it, so
that `block * layers` is a count, not a list, and an estimate is a closed form that takes
microseconds whatever the numbers typed.  `estimate` adds them up the way the workbook lays them
out: every tensor a block of BLOCK_ROWS rows around its grid, a row vector (1 × n) or a very wide
tensor shown turned.  A test holds every model's estimate within 1.5× of the real workbook: its
cells, the rows of its tallest sheet and its blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# Excel's limits, per sheet, and of one formula's characters
MAX_ROWS, MAX_COLS = 1_048_576, 16_384
MAX_FORMULA = 8192
# tracer's own: the values one run records (every tensor, every iteration).  20M values are 160 MB
# of numbers in memory, a workbook of about 300 MB written in 3-4 minutes.
MAX_CELLS = 20_000_000
# .json and .csv write every value as text (about 20 and 40 bytes each): at most 5M values, a file of
# about 100 MB (.json) or 200 MB (.csv)
MAX_DATA_VALUES = 5_000_000
DATA_FORMATS = (".json", ".csv")

WIDE = 20  # tensors wider than this and wider than tall are shown turned: a sheet prints one page wide
BAND = 16  # a tensor shown wider than this is shown in bands of BAND columns, one under the other: a sheet prints at 50 % or more
BLOCK_ROWS = 6  # a block's title, equation, note (often two lines) and column numbers, and the empty row after it


def turned(rows: int, cols: int) -> bool:
    """Whether a tensor of this shape is shown turned: a row vector reads best as a column, and a
    tensor wider than WIDE and than tall too, so that a sheet prints one page wide (and a sheet's
    width costs time in every one of its rows)."""
    return (rows == 1 and cols > 1) or (cols > WIDE and cols > rows)


def banded(rows: int, cols: int, turn: bool) -> tuple[int, int]:
    """(sheet rows, bands) of a tensor shown (turned or not) in bands of at most BAND columns, one
    under the other, each under its own row of column numbers."""
    r, c = (cols, rows) if turn else (rows, cols)
    n = -(-c // BAND)
    return n * (r + 1) - 1, n


def shown(rows: int, cols: int, bands: bool = True) -> tuple[bool, int]:
    """(turned, bands) of a tensor as the workbook shows it.  Without bands, as `turned` says; with
    them, a tensor as `turned` shows it when that is one band wide and at most 2 BAND tall (a small
    tensor keeps its look), else the way that takes fewer rows: a 1 × 784 vector in 49 rows of 16,
    a batch of 4 × 128 in 8 bands of 4 rows, not 784 or 128 rows of one or four numbers."""
    turn = turned(rows, cols)
    tall, n = banded(rows, cols, turn)
    if not bands or (n == 1 and tall <= 2 * BAND):
        return turn, 1
    other = banded(rows, cols, not turn)
    return (not turn, other[1]) if other[0] < tall else (turn, n)


@dataclass
class Size:
    cells: int  # the values of every tensor the run records
    rows: int  # the rows of its tallest sheet (of one sheet, for a part of a sheet)
    blocks: int = 0  # the tensors: each a block of the workbook (its time to write: tracer.bench)
    terms: int = 0  # the most parts one formula adds up: a gradient summed over the steps, the heads …

    def __add__(self, other: Size) -> Size:  # one part of a sheet below the other
        return Size(self.cells + other.cells, self.rows + other.rows, self.blocks + other.blocks,
                    max(self.terms, other.terms))

    def __mul__(self, k: int) -> Size:  # k such parts
        return Size(self.cells * k, self.rows * k, self.blocks * k, self.terms)

    def formula_chars(self) -> int:
        """About the length of the longest formula, the sum of `terms` parts: each a reference in
        its own sheet (a column letter, the row's digits) and a '+'."""
        return self.terms * (len(str(self.rows)) + 2)


class Shapes:
    """Tensor shapes, each with how many tensors have it: what one part of a run records.  `a + b`
    joins two (a list of (rows, cols) counts as Shapes), `a * k` is k copies of each (k may be a
    fraction: about half of them).  Both take time in the number of different shapes, never in k."""

    def __init__(self, shapes=(), counts=None):
        if isinstance(shapes, Shapes):
            shapes, counts = (), shapes.counts
        self.counts = dict(counts or {})
        for shape in shapes:
            self.counts[shape] = self.counts.get(shape, 0) + 1

    def __add__(self, other) -> Shapes:
        total = dict(self.counts)
        for shape, n in Shapes(other).counts.items():
            total[shape] = total.get(shape, 0) + n
        return Shapes(counts=total)

    __radd__ = __add__

    def __mul__(self, k) -> Shapes:
        return Shapes(counts={shape: n * k for shape, n in self.counts.items()})

    __rmul__ = __mul__


def shown_rows(rows: int, cols: int, bands: bool) -> int:
    """The sheet rows a tensor's grid takes as `shown`."""
    turn, n = shown(rows, cols, bands)
    return n * ((cols if turn else rows) + 1) - 1


def sheet(shapes, bands: bool = False) -> Size:
    """The cells and rows of one sheet of blocks, one block per (rows, cols) (Shapes or a list);
    `bands`: a wide tensor in bands (`shown`), as the image models' tensors are."""
    cells = rows = blocks = 0
    for (r, c), n in Shapes(shapes).counts.items():
        cells, rows, blocks = cells + n * r * c, rows + n * (BLOCK_ROWS + shown_rows(r, c, bands)), blocks + n
    return Size(round(cells), round(rows), round(blocks))


def estimate(inputs, iteration, iterations: int, after=(), bands: bool = False) -> Size:
    """A run: the inputs sheet, `iterations` sheets like `iteration`, and the sheet after training;
    each given as its shapes or as a Size."""
    sheets = [s if isinstance(s, Size) else sheet(s, bands) for s in (inputs, iteration, after)]
    total = sheets[0] + sheets[1] * iterations + sheets[2]
    return Size(total.cells, max(s.rows for s in sheets), total.blocks, total.terms)


def optimizer_state(optimizer: str, params) -> Shapes:
    """The shapes an optimizer adds to the inputs: Adam's initial m and v of every parameter."""
    return Shapes(params) * (2 if optimizer == "adam" else 0)


def update(optimizer: str, params) -> Shapes:
    """The shapes of one update: θ per parameter (SGD), or m, v, m̂, v̂, the step and θ (Adam)."""
    return Shapes(params) * (6 if optimizer == "adam" else 1)


def summed(part, first: int, last: int) -> Size:
    """Σ part(m) for m = first … last (a generation's steps on texts of m tokens) in closed form:
    the sum of the parabola through part's values at the range's ends and middle.  Exact for the
    cells (a tensor m × m at most: a polynomial of degree 2 in m); close for the rows, which bend
    where a block turns."""
    n = last - first + 1
    if n <= 0:
        return Size(0, 0)
    xs = sorted({first, (first + last) // 2, last})
    powers = (n, (first + last) * n // 2, _squares(last) - _squares(first - 1))  # Σ 1, Σ m, Σ m²
    total = [Fraction(0)] * 3  # cells, rows, blocks
    for i, x in enumerate(xs):
        # the Lagrange polynomial of x, Π (m − x_j) / (x − x_j): its coefficients from m⁰ up, summed
        coef, denominator = [1], 1
        for j, other in enumerate(xs):
            if j != i:
                coef = [a - other * b for a, b in zip([0] + coef, coef + [0])]
                denominator *= x - other
        weight = Fraction(sum(c * p for c, p in zip(coef, powers)), denominator)
        y = part(x)
        total = [t + weight * v for t, v in zip(total, (y.cells, y.rows, y.blocks))]
    return Size(*map(round, total))


def _squares(k: int) -> int:
    """1² + 2² + … + k²."""
    return k * (k + 1) * (2 * k + 1) // 6 if k > 0 else 0
