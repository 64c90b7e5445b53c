"""The ops a language model needs: softmax (plain and causal), cross-entropy, embedding lookup,
LayerNorm, GELU, sinusoidal positional encoding, column slices and concatenation (multi-head
split and merge).  Each op defines, like tracer.ops, its numpy forward, its gradient rule (made of
recorded ops) and the formula of each output cell.

Shapes: a sequence of T tokens is T rows, features are columns; every value is 2-D.

Portable formulas (Excel 2010+, LibreOffice, Google Sheets): besides tracer.ops' SUMPRODUCT,
MMULT, SUM, EXP, LN, MAX, SQRT and AVERAGE, these ops use INDEX (embedding lookup), SUMIF (its
gradient), TANH and PI (GELU), SIN and COS (positional encoding).  MAX, AVERAGE, SUM, SUMIF and
INDEX take ranges only as whole arguments; array arithmetic on a range happens only inside
SUMPRODUCT.  No IF, MOD, LAMBDA, LET or array formula: where a choice depends on the cell's
position (masked or not, sine or cosine, which head) the op makes it when it writes the formula.

Two things need no new op:
* scaling by a constant such as 1/√d_k is tracer.ops.MUL with a (1, 1) tensor (`scale`);
* a one-hot lookup X·E is tracer.ops.MATMUL; `embed` is the readable lookup by id.
"""

from __future__ import annotations

import numpy as np

from tracer.ops import MATMUL, MATMUL_NT, MUL, SUM_ROWS, Elementwise, Op, dot

SQRT_2_OVER_PI = np.sqrt(2 / np.pi)  # the formula: SQRT(2/PI())
GELU_A = 0.044715  # tanh-approximated GELU: x³ coefficient
GELU_3A = 0.134145  # 3 · 0.044715, written as the literal the formula uses
PE_BASE = 10000.0


# --- helpers ----------------------------------------------------------------------------------

def _rec(op, *xs, name=None, **attrs):
    """Record op on the inputs' tape."""
    return xs[0].tape.apply(op, *xs, name=name, **attrs)


def _grads(wanted, *makers):
    """One gradient per input: makers[k]() where wanted[k], else None."""
    return tuple(make() if w else None for w, make in zip(wanted, makers))


def _refuse(op_name, what):
    def fail():
        raise ValueError(f"{op_name}: no gradient with respect to {what}")
    return fail


def _row(c, k, i):
    """Row i of input k as a range (runs either way)."""
    return c.row(k, i)[0]


def _turned(c, k) -> bool:
    """Whether input k is shown turned (its rows run down the sheet)."""
    return c.row(k, 0)[1]


def _cols(c, k) -> int:
    return c.shape(k)[1]


def _rows(c, k) -> int:
    return c.shape(k)[0]


def _same_way(c, a, b, op_name):
    """Inputs a and b enter SUMPRODUCT as whole blocks: they must be laid out the same way."""
    if c.shape(a) != c.shape(b) or (_turned(c, a) != _turned(c, b) and c.shape(a) != (1, 1)):
        raise ValueError(f"{op_name}: its two {c.shape(a)} and {c.shape(b)} inputs must have the "
                         "same shape and be laid out the same way")


# --- 1, 2. softmax over rows, and the causal softmax ------------------------------------------

class Softmax(Op):
    """Row softmax, max-subtracted: x (T, V) → y (T, V),

        y[i, j] = exp(x[i, j] − m_i) / Σ_k exp(x[i, k] − m_i),   m_i = max_k x[i, k].

    Cell (i, j): EXP(x_ij − MAX(row i)) / SUMPRODUCT(EXP(row i − MAX(row i))).

    causal=True is the causal mask and the softmax in one op: scores x (T, T), row i (query i)
    sees only columns k ≤ i (keys up to itself), y[i, j] = 0 for j > i, and m_i and the sum run
    over k ≤ i.  Why not a separate mask op writing −1e9 (or −∞) above the diagonal: in a sheet
    the masked cells would be a magic constant in a T × T block of its own per head; here the
    mask is simply the range: row i's formula reads columns 0 … i, and the masked cells are the
    formula 0.  Numerically it is the same: exp(−1e9 − m) is exactly 0.  Gradient: the same
    softmax_grad, y ⊙ (g − rowsum(g ⊙ y)), which is 0 above the diagonal because y is.
    """

    def __init__(self, name, causal):
        self.name, self.causal = name, causal

    def forward(self, x, **attrs):
        if not self.causal:
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        seen = np.tri(*x.shape, dtype=bool)  # j ≤ i
        m = np.where(seen, x, -np.inf).max(axis=1, keepdims=True)
        e = np.where(seen, np.exp(np.where(seen, x - m, 0)), 0)
        return e / e.sum(axis=1, keepdims=True)

    def formula(self, c, i, j):
        last = min(i, _cols(c, 0) - 1) if self.causal else _cols(c, 0) - 1
        if j > last:
            return "0"
        row = c.span(0, i, 0, i, last)
        m = f"MAX({row})"
        return f"EXP({c.at(0, i, j)}-{m})/SUMPRODUCT(EXP({row}-{m}))"

    def backward(self, out, g, wanted):
        return _grads(wanted, lambda: _rec(SOFTMAX_GRAD, out, g))


class SoftmaxGrad(Op):
    """dx = y ⊙ (g − rowsum(g ⊙ y)): y (T, V) the softmax's output, g (T, V) its gradient → (T, V).
    Cell: y_ij*(g_ij − SUMPRODUCT(row i of g, row i of y))."""

    name = "softmax_grad"

    def forward(self, y, g, **attrs):
        return y * (g - (g * y).sum(axis=1, keepdims=True))

    def formula(self, c, i, j):
        return f"{c.at(0, i, j)}*({c.at(1, i, j)}-{dot(c.row(1, i), c.row(0, i))})"


SOFTMAX = Softmax("softmax", causal=False)
CAUSAL_SOFTMAX = Softmax("causal_softmax", causal=True)
SOFTMAX_GRAD = SoftmaxGrad()


# --- 3. cross-entropy with one-hot targets ----------------------------------------------------

class CrossEntropy(Op):
    """L = −(1/T) Σ_i Σ_j Y[i, j] ln P[i, j] = −(1/T) Σ_i ln P[i, target_i]: P (T, V) probabilities
    (after softmax, so every P > 0), Y (T, V) one-hot targets (a constant) → (1, 1).
    Cell: −SUMPRODUCT(Y, LN(P))/T (LN runs on every cell of P, all > 0; T a literal).

    Y one-hot rather than a column of target ids: the target of each row is visible as the 1 in
    its row, and the loss is one SUMPRODUCT, no lookup.  Gradient: xent_grad, −g·Y/(T·P); after a
    softmax, softmax_grad turns it into (P − Y)/T."""

    name = "xent"

    def forward(self, p, y, **attrs):
        return np.array([[-(y * np.log(p)).sum() / p.shape[0]]])

    def formula(self, c, i, j):
        _same_way(c, 0, 1, self.name)
        return f"-SUMPRODUCT({c.all(1)},LN({c.all(0)}))/{_rows(c, 0)}"

    def backward(self, out, g, wanted):
        p, y = out.inputs
        return _grads(wanted, lambda: _rec(XENT_GRAD, p, y, g), _refuse(self.name, "the targets"))


class CrossEntropyGrad(Op):
    """dP = −g·Y/(T·P): P (T, V), Y (T, V), g (1, 1) → (T, V); nonzero only at the targets."""

    name = "xent_grad"

    def forward(self, p, y, g, **attrs):
        return -g * y / (p.shape[0] * p)

    def formula(self, c, i, j):
        return f"-{c.at(2, i, j)}*{c.at(1, i, j)}/({_rows(c, 0)}*{c.at(0, i, j)})"


XENT, XENT_GRAD = CrossEntropy(), CrossEntropyGrad()


# --- 4. embedding lookup ----------------------------------------------------------------------

def _ids(ids, vocab):
    """The (T, 1) float ids as integer indices, checked."""
    if ids.ndim != 2 or ids.shape[1] != 1:
        raise ValueError(f"token ids must be a (T, 1) column, got {ids.shape}")
    idx = ids[:, 0].astype(np.int64)
    if np.any(idx != ids[:, 0]) or np.any(idx < 0) or np.any(idx >= vocab):
        raise ValueError(f"token ids must be integers in 0 … {vocab - 1}")
    return idx


class Embed(Op):
    """Lookup by id: E (V, d) the embedding matrix, ids (T, 1) token ids (a constant) → (T, d),
    out[i, j] = E[ids_i, j].  Cell: INDEX(E, id_i + 1, j + 1) (INDEX counts from 1).
    The same as X·E with X the (T, V) one-hot rows (tracer.ops.MATMUL), without the zeros."""

    name = "embed"

    def forward(self, E, ids, **attrs):
        return E[_ids(ids, E.shape[0])]

    def formula(self, c, i, j):
        where = (f"{j + 1},{c.at(1, i, 0)}+1" if _turned(c, 0) else f"{c.at(1, i, 0)}+1,{j + 1}")
        return f"INDEX({c.all(0)},{where})"

    def backward(self, out, g, wanted):
        E, ids = out.inputs
        return _grads(wanted, lambda: _rec(EMBED_GRAD, ids, g, vocab=E.shape[0]),
                      _refuse(self.name, "the token ids"))


class EmbedGrad(Op):
    """Scatter-add: ids (T, 1), g (T, d) → dE (V, d), dE[v, j] = Σ_{i: ids_i = v} g[i, j]
    (rows of tokens that do not occur are 0).  V comes as the attribute `vocab`.
    Cell: SUMIF(ids, v, column j of g): the spreadsheet's own "sum where the id is v", shorter
    and plainer than SUMPRODUCT((ids=v)*g_col)."""

    name = "embed_grad"

    def forward(self, ids, g, vocab=None, **attrs):
        if vocab is None:
            raise ValueError("embed_grad needs the vocabulary size: vocab=V")
        out = np.zeros((int(vocab), g.shape[1]), dtype=g.dtype)
        np.add.at(out, _ids(ids, int(vocab)), g)
        return out

    def formula(self, c, i, j):
        col, down, n = c.col(1, j)
        if n > 1 and down != c.col(0, 0)[1]:
            raise ValueError("embed_grad: the ids and the gradient's columns must run the same way")
        return f"SUMIF({c.all(0)},{i},{col})"


EMBED, EMBED_GRAD = Embed(), EmbedGrad()


# --- 5. LayerNorm, decomposed: μ, σ², x̂, y ----------------------------------------------------
# μ = mean_j x (T,1);  σ² = mean_j (x − μ)² (T,1, population);  x̂ = (x − μ)/√(σ² + ε) (T,d);
# y = x̂ ⊙ γ + β (T,d), γ and β (1,d) learned, ε (1,1) an input (a named cell).

class RowMean(Op):
    """μ_i = (1/d) Σ_j x[i, j]: x (T, d) → (T, 1).  Cell: AVERAGE(row i)."""

    name = "row_mean"

    def forward(self, x, **attrs):
        return x.sum(axis=1, keepdims=True) / x.shape[1]

    def formula(self, c, i, j):
        return f"AVERAGE({_row(c, 0, i)})"

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        return _grads(wanted, lambda: _rec(ROW_MEAN_GRAD, x, g))


class RowMeanGrad(Op):
    """dx[i, j] = g_i / d: x (T, d) (for its shape), g (T, 1) → (T, d).  Cell: g_i/d."""

    name = "row_mean_grad"

    def forward(self, x, g, **attrs):
        return np.broadcast_to(g / x.shape[1], x.shape).copy()

    def formula(self, c, i, j):
        return f"{c.at(1, i, j)}/{_cols(c, 0)}"


class RowVar(Op):
    """σ²_i = (1/d) Σ_j (x[i, j] − μ_i)²: x (T, d), μ (T, 1) → (T, 1) (population variance).
    Cell: SUMPRODUCT((row i − μ_i)^2)/d."""

    name = "row_var"

    def forward(self, x, mu, **attrs):
        return ((x - mu) ** 2).sum(axis=1, keepdims=True) / x.shape[1]

    def formula(self, c, i, j):
        return f"SUMPRODUCT(({_row(c, 0, i)}-{c.at(1, i, 0)})^2)/{_cols(c, 0)}"

    def backward(self, out, g, wanted):
        x, mu = out.inputs
        return _grads(wanted, lambda: _rec(ROW_VAR_GRAD_X, x, mu, g),
                      lambda: _rec(ROW_VAR_GRAD_MU, x, mu, g))


class RowVarGradX(Op):
    """∂σ²/∂x times g: dx[i, j] = 2 (x[i, j] − μ_i) g_i / d: x (T, d), μ (T, 1), g (T, 1) → (T, d)."""

    name = "row_var_grad_x"

    def forward(self, x, mu, g, **attrs):
        return 2 * (x - mu) * g / x.shape[1]

    def formula(self, c, i, j):
        return f"2*({c.at(0, i, j)}-{c.at(1, i, j)})*{c.at(2, i, j)}/{_cols(c, 0)}"


class RowVarGradMu(Op):
    """∂σ²/∂μ times g: dμ_i = −(2/d) g_i Σ_j (x[i, j] − μ_i): x (T, d), μ (T, 1), g (T, 1) → (T, 1).
    0 up to rounding when μ is the row's mean; recorded as the honest partial derivative."""

    name = "row_var_grad_mu"

    def forward(self, x, mu, g, **attrs):
        return -2 * g * (x - mu).sum(axis=1, keepdims=True) / x.shape[1]

    def formula(self, c, i, j):
        return f"-2*{c.at(2, i, 0)}*SUMPRODUCT({_row(c, 0, i)}-{c.at(1, i, 0)})/{_cols(c, 0)}"


class Normalize(Op):
    """x̂[i, j] = (x[i, j] − μ_i) / √(σ²_i + ε): x (T, d), μ (T, 1), σ² (T, 1), ε (1, 1) → (T, d).
    Cell: (x_ij − μ_i)/SQRT(σ²_i + ε).  Gradient: one partial derivative per input (ε none):
      dx = g/√(σ²+ε),   dμ_i = −Σ_j g_ij/√(σ²_i+ε),   dσ²_i = −Σ_j g_ij x̂_ij / (2(σ²_i+ε));
    the tape adds x's contributions through μ and σ² (row_mean_grad, row_var_grad_x)."""

    name = "normalize"

    def forward(self, x, mu, var, eps, **attrs):
        return (x - mu) / np.sqrt(var + eps)

    def formula(self, c, i, j):
        return f"({c.at(0, i, j)}-{c.at(1, i, j)})/SQRT({c.at(2, i, j)}+{c.at(3, i, j)})"

    def backward(self, out, g, wanted):
        _, _, var, eps = out.inputs
        return _grads(wanted, lambda: _rec(NORMALIZE_GRAD_X, var, eps, g),
                      lambda: _rec(NORMALIZE_GRAD_MU, var, eps, g),
                      lambda: _rec(NORMALIZE_GRAD_VAR, out, var, eps, g), _refuse(self.name, "ε"))


class NormalizeGradX(Op):
    """dx = g / √(σ² + ε): σ² (T, 1), ε (1, 1), g (T, d) → (T, d) (μ and σ² held fixed)."""

    name = "normalize_grad_x"

    def forward(self, var, eps, g, **attrs):
        return g / np.sqrt(var + eps)

    def formula(self, c, i, j):
        return f"{c.at(2, i, j)}/SQRT({c.at(0, i, j)}+{c.at(1, i, j)})"


class NormalizeGradMu(Op):
    """dμ_i = −Σ_j g[i, j] / √(σ²_i + ε): σ² (T, 1), ε (1, 1), g (T, d) → (T, 1)."""

    name = "normalize_grad_mu"

    def forward(self, var, eps, g, **attrs):
        return -g.sum(axis=1, keepdims=True) / np.sqrt(var + eps)

    def formula(self, c, i, j):
        return f"-SUM({_row(c, 2, i)})/SQRT({c.at(0, i, 0)}+{c.at(1, i, 0)})"


class NormalizeGradVar(Op):
    """dσ²_i = −Σ_j g[i, j] x̂[i, j] / (2 (σ²_i + ε)), since ∂x̂/∂σ² = −x̂ / (2(σ² + ε)):
    x̂ (T, d), σ² (T, 1), ε (1, 1), g (T, d) → (T, 1)."""

    name = "normalize_grad_var"

    def forward(self, xhat, var, eps, g, **attrs):
        return -(g * xhat).sum(axis=1, keepdims=True) / (2 * (var + eps))

    def formula(self, c, i, j):
        return f"-{dot(c.row(3, i), c.row(0, i))}/(2*({c.at(1, i, 0)}+{c.at(2, i, 0)}))"


class Affine(Op):
    """y = x̂ ⊙ γ + β: x̂ (T, d), γ (1, d), β (1, d) → (T, d).  Cell: x̂_ij*γ_j + β_j.
    Gradient: dx̂ = g ⊙ γ (tracer.ops.MUL), dγ_j = Σ_i g_ij x̂_ij (col_dot), dβ = Σ_i g_ij (SUM_ROWS)."""

    name = "affine"

    def forward(self, xhat, gamma, beta, **attrs):
        if gamma.shape != (1, xhat.shape[1]) or beta.shape != (1, xhat.shape[1]):
            raise ValueError(f"affine: γ and β must be (1, {xhat.shape[1]}), got {gamma.shape}, {beta.shape}")
        return xhat * gamma + beta

    def formula(self, c, i, j):
        return f"{c.at(0, i, j)}*{c.at(1, i, j)}+{c.at(2, i, j)}"

    def backward(self, out, g, wanted):
        xhat, gamma, _ = out.inputs
        return _grads(wanted, lambda: _rec(MUL, g, gamma), lambda: _rec(COL_DOT, g, xhat),
                      lambda: _rec(SUM_ROWS, g))


class ColDot(Op):
    """out_j = Σ_i a[i, j] b[i, j]: a, b (T, d) → (1, d).  Cell: SUMPRODUCT(column j of a, column j of b)."""

    name = "col_dot"

    def forward(self, a, b, **attrs):
        return (a * b).sum(axis=0, keepdims=True)

    def formula(self, c, i, j):
        return dot(c.col(0, j), c.col(1, j))


ROW_MEAN, ROW_MEAN_GRAD = RowMean(), RowMeanGrad()
ROW_VAR, ROW_VAR_GRAD_X, ROW_VAR_GRAD_MU = RowVar(), RowVarGradX(), RowVarGradMu()
NORMALIZE, NORMALIZE_GRAD_X, NORMALIZE_GRAD_MU, NORMALIZE_GRAD_VAR = (
    Normalize(), NormalizeGradX(), NormalizeGradMu(), NormalizeGradVar())
AFFINE, COL_DOT = Affine(), ColDot()


# --- 6. GELU (tanh approximation) --------------------------------------------------------------

def _gelu_u(x):
    return SQRT_2_OVER_PI * (x + GELU_A * x ** 3)


class Gelu(Op):
    """GELU, the tanh approximation (GPT-2's), not the exact x·Φ(x) with erf:
    y = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))): (T, d) → (T, d), cell by cell.
    Cell: 0.5*x*(1+TANH(SQRT(2/PI())*(x+0.044715*x^3)))."""

    name = "gelu"

    def forward(self, x, **attrs):
        return 0.5 * x * (1 + np.tanh(_gelu_u(x)))

    def formula(self, c, i, j):
        x = c.at(0, i, j)
        return f"0.5*{x}*(1+TANH(SQRT(2/PI())*({x}+{GELU_A}*{x}^3)))"

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        return _grads(wanted, lambda: _rec(GELU_GRAD, x, g))


class GeluGrad(Op):
    """dx = g ⊙ [½ (1 + tanh u) + ½ x (1 − tanh² u) √(2/π) (1 + 3·0.044715 x²)],
    u = √(2/π) (x + 0.044715 x³): x (T, d), g (T, d) → (T, d)."""

    name = "gelu_grad"

    def forward(self, x, g, **attrs):
        t = np.tanh(_gelu_u(x))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * SQRT_2_OVER_PI * (1 + GELU_3A * x ** 2))

    def formula(self, c, i, j):
        x, g = c.at(0, i, j), c.at(1, i, j)
        t = f"TANH(SQRT(2/PI())*({x}+{GELU_A}*{x}^3))"
        return f"{g}*(0.5*(1+{t})+0.5*{x}*(1-{t}^2)*SQRT(2/PI())*(1+{GELU_3A}*{x}^2))"


GELU, GELU_GRAD = Gelu(), GeluGrad()


# --- 7. sinusoidal positional encoding ----------------------------------------------------------

class PositionalEncoding(Op):
    """PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(p / 10000^(2k/d)):
    pos (T, 1) the positions 0 … T−1, dim (1, d) the dimension indices 0 … d−1 (constants) → (T, d).
    Cell (i, j): SIN(pos_i/10000^(dim_j/d)) for even j, COS(pos_i/10000^((dim_j−1)/d)) for odd j.
    Each cell is a formula of a position cell and a dimension cell, d and the base 10000 are
    literals; the op picks SIN or COS by the column when it writes the formula (no IF(MOD(...))).
    Not learned: no gradient rule."""

    name = "pos_encoding"

    def forward(self, pos, dim, **attrs):
        d = dim.shape[1]
        even = (np.arange(d) % 2 == 0)[None, :]
        angle = pos / PE_BASE ** (np.where(even, dim, dim - 1) / d)
        return np.where(even, np.sin(angle), np.cos(angle))

    def formula(self, c, i, j):
        p, k, d = c.at(0, i, 0), c.at(1, 0, j), _cols(c, 1)
        return f"SIN({p}/10000^({k}/{d}))" if j % 2 == 0 else f"COS({p}/10000^(({k}-1)/{d}))"


POS_ENCODING = PositionalEncoding()


# --- 8. multi-head split and merge: column slices and their concatenation -----------------------

class SliceCols(Op):
    """out[i, j] = x[i, a + j]: x (T, n) → (T, w), the columns a … a+w−1 (head k of width d_k:
    a = k·d_k, w = d_k).  Cell: a reference.  One instance per (a, w) (`slice_cols(a, w)`), all
    named "slice_cols".  Gradient: pad_cols, the gradient in the slice's columns and 0 elsewhere;
    a tensor split into h heads gets h such contributions, summed by the tape.  A model that
    keeps per-head weights W_q^k needs no split at all; merge (concat_cols) passes each head
    just its slice of the gradient."""

    name = "slice_cols"

    def __init__(self, start, width):
        self.start, self.width = start, width

    def forward(self, x, **attrs):
        if self.start + self.width > x.shape[1]:
            raise ValueError(f"slice_cols: columns {self.start} … {self.start + self.width - 1} "
                             f"of a tensor of {x.shape[1]} columns")
        return x[:, self.start:self.start + self.width].copy()

    def formula(self, c, i, j):
        return c.at(0, i, self.start + j)

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        return _grads(wanted, lambda: _rec(pad_cols(self.start, self.width), g, cols=x.shape[1]))


class PadCols(Op):
    """out[i, a + j] = g[i, j], 0 in every other column: g (T, w) → (T, cols) (the attribute
    `cols`).  Cell: a reference or 0."""

    name = "pad_cols"

    def __init__(self, start, width):
        self.start, self.width = start, width

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

    def forward(self, *xs, **attrs):
        if len(xs) < 2:
            raise ValueError("concat_cols joins at least two tensors")
        return np.concatenate(xs, axis=1)

    def formula(self, c, i, j):
        for k in range(c.n):
            w = _cols(c, k)
            if j < w:
                return c.at(k, i, j)
            j -= w
        raise IndexError("concat_cols: column out of range")

    def backward(self, out, g, wanted):
        offsets = np.cumsum([0] + [u.shape[1] for u in out.inputs])
        return tuple(_rec(slice_cols(int(a), u.shape[1]), g) if w else None
                     for a, u, w in zip(offsets, out.inputs, wanted))


CONCAT_COLS = ConcatCols()


# --- the registry ---------------------------------------------------------------------------

LM_OPS = {op.name: op for op in (
    SOFTMAX, CAUSAL_SOFTMAX, SOFTMAX_GRAD, XENT, XENT_GRAD,
    EMBED, EMBED_GRAD, ROW_MEAN, ROW_MEAN_GRAD, ROW_VAR, ROW_VAR_GRAD_X, ROW_VAR_GRAD_MU,
    NORMALIZE, NORMALIZE_GRAD_X, NORMALIZE_GRAD_MU, NORMALIZE_GRAD_VAR, AFFINE, COL_DOT,
    GELU, GELU_GRAD, POS_ENCODING,
    slice_cols(0, 1), pad_cols(0, 1), CONCAT_COLS,
)}
"""One op per name (the template's [ops.<name>] entries).  slice_cols and pad_cols are families
sharing one name: the entry holds a representative; `lm_op_instances()` lists every instance."""


def lm_op_instances() -> list:
    """Every op instance: the single ones and each slice_cols / pad_cols made so far."""
    fixed = [op for op in LM_OPS.values() if not isinstance(op, (SliceCols, PadCols))]
    return fixed + list(_SLICES.values()) + list(_PADS.values())


# --- 9. after training: cosine similarity and nearest neighbours --------------------------------

class Cosine(Op):
    """E (V, d) → (V, V): cos[i, j] = E_i · E_j / (|E_i| |E_j|), the cosine similarity of rows.
    Cell: SUMPRODUCT(row i, row j) / SQRT(SUMPRODUCT(row i, row i) · SUMPRODUCT(row j, row j))."""

    name = "cosine"

    def forward(self, E, **attrs):
        norms = np.sqrt(np.sum(E * E, axis=1, keepdims=True))
        return (E @ E.T) / (norms * norms.T)

    def formula(self, c, i, j):
        ri, rj = c.row(0, i), c.row(0, j)
        return f"{dot(ri, rj)}/SQRT({dot(ri, ri)}*{dot(rj, rj)})"


class Nearest(Op):
    """cos (V, V) → (V, k): the ids of each row's k most similar other rows, nearest first
    (attribute k).  Cell (i, n): MATCH(LARGE(row i, n + 2), row i, 0) − 1: LARGE(…, 1) is the row
    itself (cosine 1), MATCH finds the column of the value, ids count from 0.  Ties: the first
    column, like numpy's stable sort."""

    name = "nearest"

    def forward(self, cos, k=3, **attrs):
        order = np.argsort(-cos, axis=1, kind="stable")
        return order[:, 1:1 + int(k)].astype(np.float64)

    def formula(self, c, i, j):
        row = c.row(0, i)[0]
        return f"MATCH(LARGE({row},{j + 2}),{row},0)-1"


COSINE, NEAREST = Cosine(), Nearest()
# 1/√d_k, the attention scores' scale, as a formula of the cell holding d_k
RSQRT = Elementwise("rsqrt", lambda a: 1 / np.sqrt(a), "1/SQRT({0})")
LM_OPS.update({COSINE.name: COSINE, NEAREST.name: NEAREST, RSQRT.name: RSQRT})


def cosine(E, name=None):
    return _rec(COSINE, E, name=name)


def nearest(cos, k, name=None):
    return _rec(NEAREST, cos, name=name, k=k)


# --- what a model calls ----------------------------------------------------------------------

def softmax(x, name=None):
    """Row softmax of x (T, V)."""
    return _rec(SOFTMAX, x, name=name)


def causal_softmax(scores, name=None):
    """Masked attention weights: row i is the softmax of scores[i, 0 … i], 0 after."""
    return _rec(CAUSAL_SOFTMAX, scores, name=name)


def cross_entropy(probs, targets, name=None):
    """−(1/T) Σ targets ⊙ ln probs: the mean of −ln P[i, target_i] (targets one-hot, see one_hot)."""
    return _rec(XENT, probs, targets, name=name)


def one_hot(tape, ids, vocab, name="Y", **attrs):
    """A constant (T, V) one-hot matrix: row i has its 1 at column ids[i]."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if np.any(ids < 0) or np.any(ids >= vocab):
        raise ValueError(f"target ids must be in 0 … {vocab - 1}")
    y = np.zeros((ids.size, vocab))
    y[np.arange(ids.size), ids] = 1.0
    return tape.constant(name, y, **({"role": "data"} | attrs))


def token_ids(tape, ids, name="ids", **attrs):
    """A constant (T, 1) column of token ids (for embed)."""
    return tape.constant(name, np.asarray(ids, dtype=np.float64).reshape(-1, 1), **({"role": "data"} | attrs))


def embed(E, ids, name=None):
    """Row i: the embedding row of token ids[i] (E (V, d), ids (T, 1))."""
    return _rec(EMBED, E, ids, name=name)


def _named(base, part):
    return None if base is None else f"{base}_{part}"


def layer_norm(x, gamma, beta, eps, name=None):
    """LayerNorm over the last axis, recorded as μ = `<name>_mu`, σ² = `<name>_var`,
    x̂ = `<name>_xhat` and y = `<name>`.  eps: a (1, 1) tensor (e.g. a named hyperparameter cell).
    Every step records its exact partial derivatives; the tape sums x's three contributions."""
    mu = _rec(ROW_MEAN, x, name=_named(name, "mu"))
    var = _rec(ROW_VAR, x, mu, name=_named(name, "var"))
    xhat = _rec(NORMALIZE, x, mu, var, eps, name=_named(name, "xhat"))
    return _rec(AFFINE, xhat, gamma, beta, name=name)


def gelu(x, name=None):
    return _rec(GELU, x, name=name)


def positional_encoding(tape, T, d, name="PE", pos_name="pos", dim_name="dim"):
    """Record the constants pos (T, 1) = 0 … T−1 and dim (1, d) = 0 … d−1, and PE (T, d)."""
    pos = tape.constant(pos_name, np.arange(T, dtype=np.float64).reshape(T, 1), role="data")
    dim = tape.constant(dim_name, np.arange(d, dtype=np.float64).reshape(1, d), role="data")
    return tape.apply(POS_ENCODING, pos, dim, name=name)


def split_heads(x, heads, names=None):
    """x (T, h·d_k) → h tensors (T, d_k), head k = columns k·d_k … (k+1)·d_k − 1."""
    n = x.shape[1]
    if heads < 1 or n % heads:
        raise ValueError(f"cannot split {n} columns into {heads} heads")
    dk = n // heads
    names = names or [None] * heads
    return [_rec(slice_cols(k * dk, dk), x, name=names[k]) for k in range(heads)]


def merge_heads(heads, name=None):
    """The heads side by side (T, Σ d_k); a single head is returned as it is."""
    heads = list(heads)
    return heads[0] if len(heads) == 1 else _rec(CONCAT_COLS, *heads, name=name)


def scale(x, factor, name=None):
    """x times a (1, 1) tensor (e.g. 1/√d_k): tracer.ops.MUL, no new op."""
    return _rec(MUL, x, factor, name=name)


def causal_head(x, W_q, W_k, W_v, inv_sqrt_dk, prefix=""):
    """One head of causal self-attention on x (T×d): Q = x·W_q, K = x·W_k, V = x·W_v (T×d_k),
    S = Q·Kᵀ · 1/√d_k, A = causal softmax(S) (T×T), returns O = A·V (T×d_k); each step is
    recorded as prefix + Q, K, V, QK, S, A, O."""
    q, k, v = (_rec(MATMUL, x, w, name=prefix + n) for w, n in ((W_q, "Q"), (W_k, "K"), (W_v, "V")))
    scores = scale(_rec(MATMUL_NT, q, k, name=prefix + "QK"), inv_sqrt_dk, name=prefix + "S")
    return _rec(MATMUL, causal_softmax(scores, name=prefix + "A"), v, name=prefix + "O")
