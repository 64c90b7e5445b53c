"""Linear algebra: sums and products of tensors, matrix products, a linear layer, sums over axes,
and the column slices and concatenations that split and merge attention heads.

    add, mul, add_mul (μ + σ ⊙ ε), sub   elementwise with numpy broadcasting; an input that was
                                          broadcast gets its gradient summed back to its shape
    add_n                                 a₁ + a₂ + … + a_k (a flow's log-determinant, Σ of each coupling's s)
    div                                   a / n, n a constant (e.g. a batch's size: a mean)
    matmul, matmul_nt, matmul_tn          a·b, a·bᵀ, aᵀ·b: one SUMPRODUCT (or MMULT) per cell
    linear, linear2                       x·W + b, x·W + h·U + b (a recurrent step)
    linear_nt                             x·Wᵀ + b, W (out, in) as PyTorch's nn.Linear keeps it
    neg, minus, quotient                  −a, a − b and a / b with a gradient to every input
    transpose, reshape                    aᵀ; the cells in row-major order in another shape
    add_products                          a ⊙ b + c ⊙ d (an LSTM's cell state)
    norms                                 ‖x₁‖, …, ‖x_k‖ as a column (a view, no gradient)
    sum_rows, sum_cols, sum_all           (m, n) → (1, n), (m, 1), (1, 1): SUM of a range
    col_dot                               out_j = Σ_i a_ij b_ij
    slice_cols, pad_cols, concat_cols     columns a … a+w−1, the gradient put back, [x₀ | x₁ | …]
    slice_rows, pad_rows, concat_rows     the same for rows (a sequence's step t; h_1 … h_T stacked)
"""

from __future__ import annotations

import numpy as np

from tracer.core.op import COPY, Elementwise, Family, Op, dot, no_grad, only, record

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

ADD_N = Elementwise(  # a₁ + … + a_k: each input gets the sum's gradient
    "add_n", lambda *xs: sum(xs), lambda refs: "+".join(refs),
    grad=lambda out, g, w, *xs: tuple(summed_to(g, x.shape) if want else None for want, x in zip(w, xs)),
)

DIV = Elementwise(  # a / n: n a constant such as the number of digits of a batch (a mean over it)
    "div", lambda a, n: a / n, "{0}/{1}",
    grad=lambda out, g, w, a, n: only(w, lambda: reduced(record(DIV, g, n), a.shape), no_grad("div", "the divisor")),
)


NEG = Elementwise("neg", lambda a: -a, "-{0}", grad=lambda out, g, w, a: only(w, lambda: record(NEG, g)))
MINUS = Elementwise(  # a − b, both inputs learned (sub above is an update's θ − step)
    "minus", lambda a, b: a - b, "{0}-{1}",
    grad=lambda out, g, w, a, b: only(w, lambda: summed_to(g, a.shape), lambda: reduced(record(NEG, g), b.shape)),
)
QUOTIENT_GRAD = Elementwise(  # ∂(a/b)/∂b · g = −g·a/b²
    "quotient_grad", lambda g, a, b: -g * a / (b * b), "-{0}*{1}/({2}*{2})")
QUOTIENT = Elementwise(  # a / b, b learned too (div above divides by a constant)
    "quotient", lambda a, b: a / b, "{0}/{1}",
    grad=lambda out, g, w, a, b: only(
        w, lambda: reduced(record(QUOTIENT, g, b), a.shape), lambda: reduced(record(QUOTIENT_GRAD, g, a, b), b.shape)),
)


# --- matrix products --------------------------------------------------------------------------

class MatMul(Op):
    """a·b, a·bᵀ or aᵀ·b (`ta`, `tb` say which operand is transposed)."""

    by_cells = True

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

    by_cells = True

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
    """x·W + b: x (m, k), W (k, n), b (1, n) → (m, n); with `tb`, x·Wᵀ + b, W (n, k) as PyTorch's
    nn.Linear keeps it (a row per output unit: cell (i, j) is row i of x times row j of W)."""

    by_cells = True

    def __init__(self, name, tb=False):
        self.name, self.tb = name, tb

    def forward(self, x, W, b, **attrs):
        return x @ (W.T if self.tb else W) + b

    def formula(self, c, i, j):
        return f"{dot(c.row(0, i), c.row(1, j) if self.tb else c.col(1, j))}+{c.at(2, i, j)}"

    def backward(self, out, g, wanted):
        x, W, b = out.inputs
        if self.tb:
            return only(wanted, lambda: record(MATMUL, g, W), lambda: record(MATMUL_TN, g, x),
                        lambda: summed_to(g, b.shape))  # ∂L/∂x = g·W, ∂L/∂W = gᵀ·x, ∂L/∂b = Σ rows of g
        return only(
            wanted,
            lambda: record(MATMUL_NT, g, W),  # ∂L/∂x = ∂L/∂out · Wᵀ
            lambda: record(MATMUL_TN, x, g),  # ∂L/∂W = xᵀ · ∂L/∂out
            lambda: record(SUM_ROWS, g),  # ∂L/∂b = column sums of ∂L/∂out
        )


LINEAR, LINEAR_NT = Linear("linear"), Linear("linear_nt", tb=True)


class Linear2(Op):
    """x·W + h·U + b, a layer of two inputs (a recurrent step: the token x_t and the previous
    hidden state h_{t−1}): x (m, k), W (k, n), h (m, l), U (l, n), b (1, n) → (m, n).
    Cell: row i of x times column j of W, plus row i of h times column j of U, plus b_j."""

    by_cells = True

    name = "linear2"

    def forward(self, x, W, h, U, b, **attrs):
        return x @ W + h @ U + b

    def formula(self, c, i, j):
        return f"{dot(c.row(0, i), c.col(1, j))}+{dot(c.row(2, i), c.col(3, j))}+{c.at(4, i, j)}"

    def backward(self, out, g, wanted):
        x, W, h, U, b = out.inputs
        return only(
            wanted,
            lambda: record(MATMUL_NT, g, W),  # ∂L/∂x = ∂L/∂out · Wᵀ
            lambda: record(MATMUL_TN, x, g),  # ∂L/∂W = xᵀ · ∂L/∂out
            lambda: record(MATMUL_NT, g, U),  # ∂L/∂h = ∂L/∂out · Uᵀ
            lambda: record(MATMUL_TN, h, g),  # ∂L/∂U = hᵀ · ∂L/∂out
            lambda: summed_to(g, b.shape),  # ∂L/∂b = ∂L/∂out (summed over rows)
        )


LINEAR2 = Linear2()

# an LSTM's cell state c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
ADD_PRODUCTS = Elementwise(
    "add_products", lambda a, b, c, d: a * b + c * d, "{0}*{1}+{2}*{3}",
    grad=lambda out, g, w, a, b, c, d: only(
        w, lambda: reduced(record(MUL, g, b), a.shape), lambda: reduced(record(MUL, g, a), b.shape),
        lambda: reduced(record(MUL, g, d), c.shape), lambda: reduced(record(MUL, g, c), d.shape),
    ),
)


class Norms(Op):
    """The Euclidean norm of each input: k tensors → (k, 1), row r = ‖input r‖ = √(Σ of its
    squared cells).  Cell: SQRT(SUMPRODUCT(input r, input r)).  A view of gradients (how large
    ∂L_T/∂h_t is at each step t), not differentiated."""

    name = "norms"

    def forward(self, *xs, **attrs):
        return np.array([[np.sqrt(np.sum(x * x))] for x in xs])

    def formula(self, c, i, j):
        return f"SQRT(SUMPRODUCT({c.all(i)},{c.all(i)}))"


NORMS = Norms()


class ColDot(Op):
    """out_j = Σ_i a[i, j] b[i, j]: a, b (T, d) → (1, d).  Cell: SUMPRODUCT(column j of a, column j of b)."""

    name = "col_dot"

    def forward(self, a, b, **attrs):
        return (a * b).sum(axis=0, keepdims=True)

    def formula(self, c, i, j):
        return dot(c.col(0, j), c.col(1, j))


COL_DOT = ColDot()


# --- slices of columns or rows and their concatenation ------------------------------------------
# Columns: the split and merge of attention heads.  Rows: a recurrent network's step t reads row t
# of the inputs X, and its hidden states h_1 … h_T are stacked into H for the output layer.

AXES = {1: "cols", 0: "rows"}  # in the ops' names and attributes
WORDS = {1: "columns", 0: "rows"}


class Slice(Op):
    """Columns a … a+w−1 (axis 1: out[i, j] = x[i, a + j], x (T, n) → (T, w); head k of width d_k:
    a = k·d_k, w = d_k) or rows a … a+w−1 (axis 0: out[i, j] = x[a + i, j], x (m, c) → (w, c)).
    Cell: a reference.  One instance per (axis, a, w) (`slice_cols(a, w)`, `slice_rows(a, w)`),
    named "slice_cols" or "slice_rows".  Gradient: pad_cols / pad_rows, the gradient in the
    slice's place and 0 elsewhere, one contribution summed with the tensor's others by the tape;
    but a tensor read only by slices that tile it (X read row by row as x_1 … x_T) gets its
    gradient by joining theirs (`join`: [∂L/∂x_1; …; ∂L/∂x_T]), without the zeros.  A model that keeps per-head weights W_q^k needs no column split at all; merge
    (concat_cols) passes each head just its slice of the gradient."""

    references = True

    def __init__(self, axis, start, width):
        self.axis, self.start, self.width = axis, start, width
        self.name = f"slice_{AXES[axis]}"

    def params(self):
        return {"start": self.start, "width": self.width}

    def piece(self):
        return self.axis, self.start, self.width

    def join(self, gradients, name):
        """The gradient of a tensor read only by slices that tile it: theirs, in order, side by side
        (axis 1) or one below the other (axis 0), instead of a sum of padded copies."""
        return record(CONCAT_COLS if self.axis else CONCAT_ROWS, *gradients, name=name)

    def forward(self, x, **attrs):
        if self.start < 0 or self.width < 1 or self.start + self.width > x.shape[self.axis]:
            raise ValueError(f"{self.name}: {WORDS[self.axis]} {self.start} … {self.start + self.width - 1} "
                             f"of a tensor of {x.shape[self.axis]} {WORDS[self.axis]}")
        return (x[:, self.start:self.start + self.width] if self.axis else x[self.start:self.start + self.width]).copy()

    def formula(self, c, i, j):
        return c.at(0, i, self.start + j) if self.axis else c.at(0, self.start + i, j)

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        pad = _piece(_PADS, self.axis, self.start, self.width)
        return only(wanted, lambda: record(pad, g, **{AXES[self.axis]: x.shape[self.axis]}))


class Pad(Op):
    """g in columns (axis 1) or rows (axis 0) a … a+w−1 of a tensor of `cols` columns or `rows`
    rows (the attribute), 0 everywhere else: g (T, w) → (T, cols) or g (w, c) → (rows, c).
    Cell: a reference or 0."""

    references = True

    def __init__(self, axis, start, width):
        self.axis, self.start, self.width = axis, start, width
        self.name = f"pad_{AXES[axis]}"

    def params(self):
        return {"start": self.start, "width": self.width}

    def forward(self, g, **attrs):
        size = attrs.get(AXES[self.axis])
        if size is None or size < self.start + self.width:
            raise ValueError(f"{self.name} needs {AXES[self.axis]} ≥ start + width")
        shape = (g.shape[0], int(size)) if self.axis else (int(size), g.shape[1])
        out = np.zeros(shape, dtype=g.dtype)
        if self.axis:
            out[:, self.start:self.start + self.width] = g
        else:
            out[self.start:self.start + self.width] = g
        return out

    def formula(self, c, i, j):
        k = j if self.axis else i
        if not self.start <= k < self.start + self.width:
            return "0"
        return c.at(0, i, j - self.start) if self.axis else c.at(0, i - self.start, j)


_SLICES, _PADS = Family(Slice), Family(Pad)  # (axis, start, width) -> its op


def _piece(family, axis, start, width):
    return family(int(axis), int(start), int(width))


def slice_cols(start: int, width: int) -> Slice:
    """The slice op of columns start … start+width−1 (one instance per pair)."""
    return _piece(_SLICES, 1, start, width)


def pad_cols(start: int, width: int) -> Pad:
    """The pad op putting a gradient back into columns start … start+width−1."""
    return _piece(_PADS, 1, start, width)


def slice_rows(start: int, n: int) -> Slice:
    """The slice op of rows start … start+n−1 (one instance per pair)."""
    return _piece(_SLICES, 0, start, n)


def pad_rows(start: int, n: int) -> Pad:
    """The pad op putting a gradient back into rows start … start+n−1."""
    return _piece(_PADS, 0, start, n)


class Concat(Op):
    """[x₀ | x₁ | …] side by side (axis 1: inputs (T, w_k) → (T, Σ w_k)) or stacked (axis 0: inputs
    (n_k, c) → (Σ n_k, c)), at least two inputs.  Cell: a reference to the input and cell it comes
    from.  Gradient: input k gets its slice of g (slice_cols / slice_rows at its offset)."""

    by_cells = True

    references = True

    def __init__(self, axis):
        self.axis = axis
        self.name = f"concat_{AXES[axis]}"

    def forward(self, *xs, **attrs):
        if len(xs) < 2:
            raise ValueError(f"{self.name} joins at least two tensors")
        return np.concatenate(xs, axis=self.axis)

    def formula(self, c, i, j):
        k_along = j if self.axis else i
        for k in range(c.n):
            w = c.shape(k)[self.axis]
            if k_along < w:
                return c.at(k, i, k_along) if self.axis else c.at(k, k_along, j)
            k_along -= w
        raise IndexError(f"{self.name}: {WORDS[self.axis][:-1]} out of range")

    def backward(self, out, g, wanted):
        offsets = np.cumsum([0] + [u.shape[self.axis] for u in out.inputs])
        return tuple(record(_piece(_SLICES, self.axis, a, u.shape[self.axis]), g) if w else None
                     for a, u, w in zip(offsets, out.inputs, wanted))


CONCAT_COLS, CONCAT_ROWS = Concat(1), Concat(0)


class Transpose(Op):
    """aᵀ: a (m, n) → (n, m), out[i, j] = a[j, i].  Cell: a reference.  Gradient: gᵀ."""

    name = "transpose"
    references = True

    def forward(self, a, **attrs):
        return a.T.copy()

    def formula(self, c, i, j):
        return c.at(0, j, i)

    def backward(self, out, g, wanted):
        return only(wanted, lambda: record(TRANSPOSE, g))


TRANSPOSE = Transpose()


class Reshape(Op):
    """The cells of a (m, n) read row by row into `rows` × `cols` (m·n = rows·cols), as numpy's and
    PyTorch's reshape: out[i, j] = a[k // n, k % n], k = i·cols + j.  Cell: a reference.  One
    instance per shape (`reshape(rows, cols)`).  Gradient: g reshaped back to (m, n)."""

    name = "reshape"
    references = True

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols

    def params(self):
        return {"rows": self.rows, "cols": self.cols}

    def forward(self, a, **attrs):
        return a.reshape(self.rows, self.cols).copy()

    def formula(self, c, i, j):
        k, n = i * self.cols + j, c.shape(0)[1]
        return c.at(0, k // n, k % n)

    def backward(self, out, g, wanted):
        return only(wanted, lambda: record(reshape(*out.inputs[0].shape), g))


_RESHAPES = Family(Reshape)


def reshape(rows: int, cols: int) -> Reshape:
    """The reshape op into rows × cols (one instance per shape)."""
    return _RESHAPES(int(rows), int(cols))

OPS = {op.name: op for op in (
    SUB, BROADCAST, MUL, ADD, ADD_N, ADD_MUL, DIV, MATMUL, MATMUL_NT, MATMUL_TN, SUM_ROWS, SUM_COLS, SUM_ALL,
    LINEAR, LINEAR2, ADD_PRODUCTS, COL_DOT, slice_cols(0, 1), pad_cols(0, 1), CONCAT_COLS,
    slice_rows(0, 1), pad_rows(0, 1), CONCAT_ROWS, NORMS, LINEAR_NT, NEG, MINUS, QUOTIENT, QUOTIENT_GRAD,
    TRANSPOSE, reshape(1, 1),
)}
"""One op per name (the template's [ops.<name>] entries); slice_cols, pad_cols, slice_rows,
pad_rows and reshape are families sharing one name, represented here by one instance (`instances()` lists
them all)."""


def instances() -> list:
    """Every op instance of this module: the single ones and each slice / pad made so far."""
    fixed = [op for op in OPS.values() if not isinstance(op, (Slice, Pad, Reshape))]
    return fixed + _SLICES.made() + _PADS.made() + _RESHAPES.made()


# --- what a model calls -------------------------------------------------------------------------

def add(a, b, name=None):
    return record(ADD, a, b, name=name)


def add_n(xs, name=None):
    """The sum of the tensors xs (at least two)."""
    xs = list(xs)
    if len(xs) < 2:
        raise ValueError("add_n adds at least two tensors")
    return record(ADD_N, *xs, name=name)


def mul(a, b, name=None):
    return record(MUL, a, b, name=name)


def divide(a, n, name=None):
    """a / n, n a constant (1, 1) tensor; the gradient reaches a only."""
    return record(DIV, a, n, name=name)


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


def linear2(x, W, h, U, b, name=None):
    """x·W + h·U + b."""
    return record(LINEAR2, x, W, h, U, b, name=name)


def add_products(a, b, c, d, name=None):
    """a ⊙ b + c ⊙ d."""
    return record(ADD_PRODUCTS, a, b, c, d, name=name)


def norms(xs, name=None):
    """(k, 1): the norm of each of the k tensors xs."""
    return record(NORMS, *xs, name=name)


def row(x, i, name=None):
    """Row i of x (m, c) as a (1, c) tensor."""
    return record(slice_rows(i, 1), x, name=name)


def rows_of(x, names):
    """Row r of x (m, c) as its own (1, c) tensor named names[r], for each of the m rows."""
    return [row(x, r, name=n) for r, n in enumerate(names)]


def concat_rows(xs, name=None):
    """The tensors stacked top to bottom; a single one is returned as it is."""
    xs = list(xs)
    return xs[0] if len(xs) == 1 else record(CONCAT_ROWS, *xs, name=name)


def sum_cols(a, name=None):
    """Each row's sum: (m, n) → (m, 1)."""
    return record(SUM_COLS, a, name=name)


def concat_cols(xs, name=None):
    """The tensors side by side; a single one is returned as it is."""
    xs = list(xs)
    return xs[0] if len(xs) == 1 else record(CONCAT_COLS, *xs, name=name)
