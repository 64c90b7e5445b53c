"""Linear algebra: sums and products of tensors, matrix products, a linear layer, sums over axes,
and the column slices and concatenations that split and merge attention heads.

    add, mul, add_mul (μ + σ ⊙ ε), sub   elementwise with numpy broadcasting; an input that was
                                          broadcast gets its gradient summed back to its shape
    matmul, matmul_nt, matmul_tn          a·b, a·bᵀ, aᵀ·b: one SUMPRODUCT (or MMULT) per cell
    linear                                x·W + b
    sum_rows, sum_cols, sum_all           (m, n) → (1, n), (m, 1), (1, 1): SUM of a range
    col_dot                               out_j = Σ_i a_ij b_ij
    slice_cols, pad_cols, concat_cols     columns a … a+w−1, the gradient put back, [x₀ | x₁ | …]
"""

from __future__ import annotations

import numpy as np

from tracer.core.op import COPY, Elementwise, Op, dot, only, record

# --- gradient-only ops --------------------------------------------------------------------------

SUB = Elementwise("sub", lambda a, b: a - b, "{0}-{1}")
BROADCAST = Elementwise(  # the gradient of a sum: each summed cell gets the sum's gradient
    "broadcast", lambda a, g: np.broadcast_to(g, a.shape).copy(), "{1}"
)


# --- elementwise arithmetic -----------------------------------------------------------------------

MUL = Elementwise(
    "mul", lambda a, b: a * b, "{0}*{1}",
    grad=lambda out, g, w, a, b: only(
        w, lambda: reduced(record(MUL, g, b), a.shape), lambda: reduced(record(MUL, g, a), b.shape)
    ),
)
ADD = Elementwise(
    "add", lambda a, b: a + b, "{0}+{1}",
    grad=lambda out, g, w, a, b: only(w, lambda: summed_to(g, a.shape), lambda: summed_to(g, b.shape)),
)
ADD_MUL = Elementwise(  # z = μ + σ ⊙ ε
    "add_mul", lambda a, b, e: a + b * e, "{0}+{1}*{2}",
    grad=lambda out, g, w, a, b, e: only(
        w, lambda: summed_to(g, a.shape), lambda: reduced(record(MUL, g, e), b.shape),
        lambda: reduced(record(MUL, g, b), e.shape),
    ),
)


# --- matrix products --------------------------------------------------------------------------

class MatMul(Op):
    """a·b, a·bᵀ or aᵀ·b (`ta`, `tb` say which operand is transposed)."""

    def __init__(self, name, ta=False, tb=False):
        self.name, self.ta, self.tb = name, ta, tb

    def forward(self, a, b, **attrs):
        return (a.T if self.ta else a) @ (b.T if self.tb else b)

    def formula(self, c, i, j):
        left = c.col(0, i) if self.ta else c.row(0, i)
        right = c.row(1, j) if self.tb else c.col(1, j)
        return dot(left, right)

    def backward(self, out, g, wanted):
        a, b = out.inputs
        if not (self.ta or self.tb):  # C = A·B
            return only(wanted, lambda: record(MATMUL_NT, g, b), lambda: record(MATMUL_TN, a, g))
        if self.tb:  # C = A·Bᵀ
            return only(wanted, lambda: record(MATMUL, g, b), lambda: record(MATMUL_TN, g, a))
        return only(wanted, lambda: record(MATMUL_NT, b, g), lambda: record(MATMUL, a, g))  # AᵀB


MATMUL, MATMUL_NT, MATMUL_TN = MatMul("matmul"), MatMul("matmul_nt", tb=True), MatMul("matmul_tn", ta=True)


class SumTo(Op):
    """Sums over rows, columns or both: (m, n) → (1, n), (m, 1) or (1, 1); e.g. a bias gradient
    over a batch, or the gradient of an input that was broadcast."""

    def __init__(self, name, rows, cols):
        self.name, self.rows, self.cols = name, rows, cols

    def forward(self, a, **attrs):
        axes = tuple(ax for ax, on in ((0, self.rows), (1, self.cols)) if on)
        return a.sum(axis=axes, keepdims=True)

    def formula(self, c, i, j):
        m, n = c.shape(0)
        rng = c.span(0, 0 if self.rows else i, 0 if self.cols else j,
                     m - 1 if self.rows else i, n - 1 if self.cols else j)
        return rng if ":" not in rng else f"SUM({rng})"

    def backward(self, out, g, wanted):
        return (record(BROADCAST, out.inputs[0], g),)


SUM_ROWS, SUM_COLS, SUM_ALL = SumTo("sum_rows", True, False), SumTo("sum_cols", False, True), SumTo("sum_all", True, True)


def summed_to(g, shape):
    """The gradient g summed back to the shape of an input that was broadcast (else a copy)."""
    rows, cols = shape[0] == 1 < g.shape[0], shape[1] == 1 < g.shape[1]
    op = {(False, False): COPY, (True, False): SUM_ROWS, (False, True): SUM_COLS, (True, True): SUM_ALL}
    return record(op[(rows, cols)], g)


def reduced(g, shape):
    """g itself when it already has the input's shape, else summed over the broadcast axes."""
    return g if g.shape == shape else summed_to(g, shape)


class Linear(Op):
    """x·W + b: x (m, k), W (k, n), b (1, n) → (m, n)."""

    name = "linear"

    def forward(self, x, W, b, **attrs):
        return x @ W + b

    def formula(self, c, i, j):
        return f"{dot(c.row(0, i), c.col(1, j))}+{c.at(2, i, j)}"

    def backward(self, out, g, wanted):
        x, W, b = out.inputs
        return only(
            wanted,
            lambda: record(MATMUL_NT, g, W),  # ∂L/∂x = ∂L/∂out · Wᵀ
            lambda: record(MATMUL_TN, x, g),  # ∂L/∂W = xᵀ · ∂L/∂out
            lambda: record(SUM_ROWS, g),  # ∂L/∂b = column sums of ∂L/∂out
        )


LINEAR = Linear()


class ColDot(Op):
    """out_j = Σ_i a[i, j] b[i, j]: a, b (T, d) → (1, d).  Cell: SUMPRODUCT(column j of a, column j of b)."""

    name = "col_dot"

    def forward(self, a, b, **attrs):
        return (a * b).sum(axis=0, keepdims=True)

    def formula(self, c, i, j):
        return dot(c.col(0, j), c.col(1, j))


COL_DOT = ColDot()


# --- column slices and their concatenation (multi-head split and merge) ------------------------

class SliceCols(Op):
    """out[i, j] = x[i, a + j]: x (T, n) → (T, w), the columns a … a+w−1 (head k of width d_k:
    a = k·d_k, w = d_k).  Cell: a reference.  One instance per (a, w) (`slice_cols(a, w)`), all
    named "slice_cols".  Gradient: pad_cols, the gradient in the slice's columns and 0 elsewhere;
    a tensor split into h heads gets h such contributions, summed by the tape.  A model that
    keeps per-head weights W_q^k needs no split at all; merge (concat_cols) passes each head
    just its slice of the gradient."""

    name = "slice_cols"
    references = True

    def __init__(self, start, width):
        self.start, self.width = start, width

    def params(self):
        return {"start": self.start, "width": self.width}

    def forward(self, x, **attrs):
        if self.start + self.width > x.shape[1]:
            raise ValueError(f"slice_cols: columns {self.start} … {self.start + self.width - 1} "
                             f"of a tensor of {x.shape[1]} columns")
        return x[:, self.start:self.start + self.width].copy()

    def formula(self, c, i, j):
        return c.at(0, i, self.start + j)

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        return only(wanted, lambda: record(pad_cols(self.start, self.width), g, cols=x.shape[1]))


class PadCols(Op):
    """out[i, a + j] = g[i, j], 0 in every other column: g (T, w) → (T, cols) (the attribute
    `cols`).  Cell: a reference or 0."""

    name = "pad_cols"
    references = True

    def __init__(self, start, width):
        self.start, self.width = start, width

    def params(self):
        return {"start": self.start, "width": self.width}

    def forward(self, g, cols=None, **attrs):
        if cols is None or cols < self.start + self.width:
            raise ValueError("pad_cols needs cols ≥ start + width")
        out = np.zeros((g.shape[0], int(cols)), dtype=g.dtype)
        out[:, self.start:self.start + self.width] = g
        return out

    def formula(self, c, i, j):
        return c.at(0, i, j - self.start) if self.start <= j < self.start + self.width else "0"


_SLICES: dict = {}  # (start, width) -> its op: one instance per configuration
_PADS: dict = {}


def slice_cols(start: int, width: int) -> SliceCols:
    """The slice op of columns start … start+width−1 (one instance per pair)."""
    key = (int(start), int(width))
    if key not in _SLICES:
        _SLICES[key] = SliceCols(*key)
    return _SLICES[key]


def pad_cols(start: int, width: int) -> PadCols:
    """The pad op putting a gradient back into columns start … start+width−1."""
    key = (int(start), int(width))
    if key not in _PADS:
        _PADS[key] = PadCols(*key)
    return _PADS[key]


class ConcatCols(Op):
    """[x₀ | x₁ | …]: inputs (T, w_k), at least two → (T, Σ w_k).  Cell: a reference to the input
    and column it comes from.  Gradient: input k gets slice_cols(offset_k, w_k) of g."""

    name = "concat_cols"
    references = True

    def forward(self, *xs, **attrs):
        if len(xs) < 2:
            raise ValueError("concat_cols joins at least two tensors")
        return np.concatenate(xs, axis=1)

    def formula(self, c, i, j):
        for k in range(c.n):
            w = c.shape(k)[1]
            if j < w:
                return c.at(k, i, j)
            j -= w
        raise IndexError("concat_cols: column out of range")

    def backward(self, out, g, wanted):
        offsets = np.cumsum([0] + [u.shape[1] for u in out.inputs])
        return tuple(record(slice_cols(int(a), u.shape[1]), g) if w else None
                     for a, u, w in zip(offsets, out.inputs, wanted))


CONCAT_COLS = ConcatCols()

OPS = {op.name: op for op in (
    SUB, BROADCAST, MUL, ADD, ADD_MUL, MATMUL, MATMUL_NT, MATMUL_TN, SUM_ROWS, SUM_COLS, SUM_ALL,
    LINEAR, COL_DOT, slice_cols(0, 1), pad_cols(0, 1), CONCAT_COLS,
)}
"""One op per name (the template's [ops.<name>] entries); slice_cols and pad_cols are families
sharing one name, represented here by one instance (`instances()` lists them all)."""


def instances() -> list:
    """Every op instance of this module: the single ones and each slice_cols / pad_cols made so far."""
    fixed = [op for op in OPS.values() if not isinstance(op, (SliceCols, PadCols))]
    return fixed + list(_SLICES.values()) + list(_PADS.values())


# --- what a model calls -------------------------------------------------------------------------

def add(a, b, name=None):
    return record(ADD, a, b, name=name)


def mul(a, b, name=None):
    return record(MUL, a, b, name=name)


def add_mul(a, b, e, name=None):
    """a + b ⊙ e (the reparameterisation z = μ + σ ⊙ ε)."""
    return record(ADD_MUL, a, b, e, name=name)


def matmul(a, b, name=None):
    return record(MATMUL, a, b, name=name)


def matmul_nt(a, b, name=None):
    """a·bᵀ."""
    return record(MATMUL_NT, a, b, name=name)


def linear(x, W, b, name=None):
    return record(LINEAR, x, W, b, name=name)


def sum_cols(a, name=None):
    """Each row's sum: (m, n) → (m, 1)."""
    return record(SUM_COLS, a, name=name)


def concat_cols(xs, name=None):
    """The tensors side by side; a single one is returned as it is."""
    xs = list(xs)
    return xs[0] if len(xs) == 1 else record(CONCAT_COLS, *xs, name=name)
