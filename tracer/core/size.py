"""How big a run is, known from its options before any work, and the limits beyond which tracer
refuses it (tracer.models.check_size applies them before tracing, tracer.render before writing).

Each model's `size(config)` lists the shapes of the tensors it would record, sheet by sheet (the
inputs, one iteration, after training); `estimate` adds them up the way the workbook lays them out:
every tensor a block of BLOCK_ROWS rows around its grid, a row vector (1 × n) or a very wide
tensor shown turned.  An estimate is good to a small factor (a test holds every model's to 2×);
it needs no tracing, so it takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

# Excel's limits, per sheet
MAX_ROWS, MAX_COLS = 1_048_576, 16_384
# tracer's own: the values one run records (every tensor, every iteration).  20M values are 160 MB
# of numbers in memory, a workbook of about 300 MB written in 3-4 minutes.
MAX_CELLS = 20_000_000
# .json and .csv write every value as text (about 20 and 40 bytes each): at most 5M values, a file of
# about 100 MB (.json) or 200 MB (.csv)
MAX_DATA_VALUES = 5_000_000
DATA_FORMATS = (".json", ".csv")

WIDE = 20  # tensors wider than this and wider than tall are shown turned: a sheet prints one page wide
BLOCK_ROWS = 5  # a block's title, equation, note and column numbers, and the empty row after it


def turned(rows: int, cols: int) -> bool:
    """Whether a tensor of this shape is shown turned: a row vector reads best as a column, and a
    tensor wider than WIDE and than tall too, so that a sheet prints one page wide (and a sheet's
    width costs time in every one of its rows)."""
    return (rows == 1 and cols > 1) or (cols > WIDE and cols > rows)


@dataclass
class Size:
    cells: int  # the values of every tensor the run records
    rows: int  # the rows of its tallest sheet (of one sheet, for a part of a sheet)

    def __add__(self, other: Size) -> Size:  # one part of a sheet below the other
        return Size(self.cells + other.cells, self.rows + other.rows)

    def __mul__(self, k: int) -> Size:  # k such parts
        return Size(self.cells * k, self.rows * k)


def sheet(shapes) -> Size:
    """The cells and rows of one sheet of blocks, one block per (rows, cols)."""
    cells = rows = 0
    for r, c in shapes:
        cells += r * c
        rows += BLOCK_ROWS + (c if turned(r, c) else r)
    return Size(cells, rows)


def estimate(inputs, iteration, iterations: int, after=()) -> Size:
    """A run: the inputs sheet, `iterations` sheets like `iteration`, and the sheet after training;
    each given as its shapes or as a Size."""
    sheets = [s if isinstance(s, Size) else sheet(s) for s in (inputs, iteration, after)]
    cells = sheets[0].cells + iterations * sheets[1].cells + sheets[2].cells
    return Size(cells, max(s.rows for s in sheets))


def optimizer_state(optimizer: str, params) -> list:
    """The shapes an optimizer adds to the inputs: Adam's initial m and v of every parameter."""
    return list(params) * 2 if optimizer == "adam" else []


def update(optimizer: str, params) -> list:
    """The shapes of one update: θ per parameter (SGD), or m, v, m̂, v̂, the step and θ (Adam)."""
    return list(params) * (6 if optimizer == "adam" else 1)
