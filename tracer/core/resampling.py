"""Resampling square images: the resolution amplifier (every row of a tensor, a square image,
enlarged ×2 or ×4) and average pooling (shrunk by a factor f, each pixel the mean of an f × f block).

Average pooling, avg_pool(f): a row of s² columns (s a multiple of f) → (s/f)²; output pixel (R, C)
is the AVERAGE of the f × f block of input pixels (f·R + a, f·C + b), 0 ≤ a, b < f: in the cell,
AVERAGE of f ranges of f cells each (one per image row of the block; a row of the image is
contiguous in the sheet whichever way the tensor is laid out).  Its gradient, avg_pool_grad(f):
every input pixel gets its block's gradient / f².

The amplifier:

A row of n = s² columns is an s × s image, pixel (r, c) at column r·s + c; the output row is the
S × S image (S = f·s) with the same convention.  Both modes are separable resamplings: along each
axis, output coordinate T is a weighted sum of input coordinates with integer weights over an
integer denominator, so a cell formula is exact arithmetic on the source cells only:

* nearest:  output (R, C) = input (R // f, C // f): the formula is the source cell itself.
* bilinear, corners aligned (align_corners=True): output R sits at input y = R·(s−1)/(S−1);
  with y₀ = ⌊y⌋, fy = y − y₀ (and x, x₀, fx from C alike) the value is
  (1−fy)(1−fx)·A + (1−fy)·fx·B + fy·(1−fx)·C + fy·fx·D, A..D the pixels (y₀, x₀), (y₀, x₀+1),
  (y₀+1, x₀), (y₀+1, x₀+1).  With q = S − 1, y₀, ry = divmod(R·(s−1), q) and fy = ry/q exactly,
  so the formula is ``((A*wx0+B*wx1)*wy0+(C*wx0+D*wx1)*wy1)/q²`` with integer weights
  wy0 = q − ry, wy1 = ry (and wx alike); a term of weight 0 is left out: on a grid row the
  formula is ``(A*wx0+B*wx1)/q``, on a grid point simply ``A``.

numpy computes exactly the arithmetic the formula writes, in the same order (products, sums
left to right, one division), so a recalculated workbook agrees with the recorded values.

The gradient rule is the transpose: input pixel (r, c) receives Σ w(R→r)·w(C→c)·g[R, C] over
the output pixels it contributed to, recorded with the `upscale_*_grad` ops (same machinery,
weights over the common denominator q per axis).
"""

from __future__ import annotations

from functools import lru_cache
from math import isqrt, lcm

import numpy as np

from tracer.core.op import Family, Op

FACTORS = (2, 4)
MODES = ("nearest", "bilinear")


def side_of(n: int, what: str = "upscale") -> int:
    """The side s of a row of n = s² columns; a ValueError when n is not a square."""
    s = isqrt(n) if n > 0 else 0
    if n < 1 or s * s != n:
        near = max(isqrt(max(n, 0)), 1)
        hint = f" ({near}² = {near * near}, {near + 1}² = {(near + 1) ** 2})" if n > 0 else ""
        raise ValueError(f"{what} needs rows that are square images (s × s pixels in s² columns): "
                         f"{n} columns is not a square number{hint}")
    return s


# --- one axis: output coordinate t = Σ_k w_k · input[src_k] / den ----------------------------

def _axis(mode: str, factor: int, s: int):
    """Per output coordinate (S = factor·s of them): its terms ((source, integer weight), ...) and
    its denominator.  A coordinate that lands on an input coordinate is one term of weight 1."""
    S = factor * s
    if mode == "nearest":
        return [((R // factor, 1),) for R in range(S)], [1] * S
    p, q = s - 1, S - 1  # s = 1: p = 0, every output is pixel 0
    terms, dens = [], []
    for R in range(S):
        y0, ry = divmod(R * p, q)
        if ry == 0:
            terms.append(((y0, 1),))
            dens.append(1)
        else:
            terms.append(((y0, q - ry), (y0 + 1, ry)))
            dens.append(q)
    return terms, dens


def _transposed(terms, dens, n_in: int):
    """The adjoint of an axis: input coordinate r gets Σ over the outputs R that used it of
    weight(R→r)/den_R · g[R], written over the common denominator Q = lcm(den_R)."""
    Q = lcm(*dens) if dens else 1
    back = [[] for _ in range(n_in)]
    for R, (ts, d) in enumerate(zip(terms, dens)):
        for src, w in ts:
            back[src].append((R, w * (Q // d)))
    return [tuple(b) for b in back], [Q] * n_in


class Resampling:
    """out[n, T·m + U] = (Σ_a wy_a · (Σ_b wx_b · in[n, src_a·s + src_b])) / (den_T · den_U), the same
    1-D plan along rows (T) and columns (U); `s`, `m` are the input and output sides."""

    def __init__(self, terms, dens, s: int):
        self.terms, self.dens, self.s, self.m = terms, dens, s, len(terms)
        k = max((len(t) for t in terms), default=0)
        self.src = np.zeros((self.m, k), dtype=np.int64)
        self.w = np.zeros((self.m, k))
        self.valid = np.zeros((self.m, k), dtype=bool)
        for t, ts in enumerate(terms):
            for a, (src, w) in enumerate(ts):
                self.src[t, a], self.w[t, a], self.valid[t, a] = src, w, True
        self.den = np.asarray(dens, dtype=np.float64)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The formula's arithmetic, vectorised: sums left to right from the first term (0 + t₁ is
        t₁ exactly), missing terms skipped (not added as 0 · value), one division at the end."""
        n, s, m = x.shape[0], self.s, self.m
        k = self.src.shape[1]
        out = np.zeros((n, m, m))
        for a in range(k):
            inner = np.zeros((n, m, m))
            rows = self.src[:, a][:, None] * s  # (m, 1): source row of output row T, term a
            for b in range(k):
                term = x[:, rows + self.src[:, b][None, :]] * self.w[:, b][None, None, :]
                inner = np.where(self.valid[:, b][None, None, :], inner + term, inner)
            term = inner * self.w[:, a][None, :, None]
            out = np.where(self.valid[:, a][None, :, None], out + term, out)
        return (out / (self.den[:, None] * self.den[None, :])).reshape(n, m * m)

    def formula(self, c, i, j) -> str:
        T, U = divmod(j, self.m)
        ys, xs = self.terms[T], self.terms[U]
        den = self.dens[T] * self.dens[U]

        def times(ref, w):
            return ref if w == 1 else f"{ref}*{w}"

        def inner(src_y):
            return "+".join(times(c.at(0, i, src_y * self.s + src_x), w) for src_x, w in xs)

        if not ys or not xs:
            return "0"
        parts = []
        for src_y, w in ys:
            row = inner(src_y)
            parts.append(times(f"({row})" if "+" in row and (w != 1 or len(ys) > 1) else row, w))
        total = "+".join(parts)
        if den == 1:
            return total
        return f"({total})/{den}" if "+" in total else f"{total}/{den}"


@lru_cache(maxsize=None)
def _plan(mode: str, factor: int, s: int, transposed: bool) -> Resampling:
    terms, dens = _axis(mode, factor, s)
    if transposed:
        return Resampling(*_transposed(terms, dens, s), factor * s)
    return Resampling(terms, dens, s)


# --- the ops --------------------------------------------------------------------------------

class Upscale(Op):
    """Every row (an s × s image) enlarged to (f·s) × (f·s), nearest or bilinear."""

    def __init__(self, mode: str, factor: int):
        self.mode, self.factor = mode, factor
        self.name = f"upscale_{mode}_{factor}"
        self.grad_op = UpscaleGrad(self)

    def plan(self, n_cols: int) -> Resampling:
        return _plan(self.mode, self.factor, side_of(n_cols, self.name), False)

    def forward(self, a, **attrs):
        return self.plan(a.shape[1]).apply(a)

    def formula(self, c, i, j):
        return self.plan(c.shape(0)[1]).formula(c, i, j)

    def backward(self, out, g, wanted):
        (a,) = out.inputs
        return (a.tape.apply(self.grad_op, g) if wanted[0] else None,)


class UpscaleGrad(Op):
    """The transpose of an Upscale: rows of (f·s)² gradients back to rows of s² pixels."""

    def __init__(self, up: Upscale):
        self.up, self.name = up, f"{up.name}_grad"

    def plan(self, n_cols: int) -> Resampling:
        S = side_of(n_cols, self.name)
        if S % self.up.factor:
            raise ValueError(f"{self.name} needs images whose side is a multiple of "
                             f"{self.up.factor}: got {S} × {S}")
        return _plan(self.up.mode, self.up.factor, S // self.up.factor, True)

    def forward(self, g, **attrs):
        return self.plan(g.shape[1]).apply(g)

    def formula(self, c, i, j):
        return self.plan(c.shape(0)[1]).formula(c, i, j)


# --- average pooling ----------------------------------------------------------------------------

class AvgPool(Op):
    """Every row (an s × s image) shrunk to (s/f) × (s/f): each pixel the mean of an f × f block.
    One instance per factor (`avg_pool_op(f)`), all named "avg_pool"."""

    by_cells = True

    name = "avg_pool"

    def __init__(self, factor: int):
        self.factor = factor
        self.grad_op = AvgPoolGrad(self)

    def params(self):
        return {"f": self.factor, "ff": self.factor ** 2}

    def sides(self, n_cols: int) -> tuple[int, int]:
        """(s, s/f) of rows of n_cols = s² pixels."""
        s = side_of(n_cols, self.name)
        if s % self.factor:
            raise ValueError(f"{self.name}: a {s} × {s} image cannot be cut into {self.factor} × {self.factor} blocks")
        return s, s // self.factor

    def forward(self, a, **attrs):
        _, m = self.sides(a.shape[1])
        f = self.factor
        blocks = a.reshape(a.shape[0], m, f, m, f)
        total = np.zeros((a.shape[0], m, m))
        for dr in range(f):  # the formula's order: block row by block row, left to right
            for dc in range(f):
                total = total + blocks[:, :, dr, :, dc]
        return (total / (f * f)).reshape(a.shape[0], m * m)

    def formula(self, c, i, j):
        s, m = self.sides(c.shape(0)[1])
        f = self.factor
        R, C = divmod(j, m)
        first = [(R * f + dr) * s + C * f for dr in range(f)]
        return "AVERAGE(" + ",".join(c.span(0, i, k, i, k + f - 1) for k in first) + ")"

    def backward(self, out, g, wanted):
        (a,) = out.inputs
        return (a.tape.apply(self.grad_op, g) if wanted[0] else None,)


class AvgPoolGrad(Op):
    """The gradient of an AvgPool: rows of (s/f)² → rows of s², each pixel its block's value / f²."""

    by_cells = True

    name = "avg_pool_grad"

    def __init__(self, pool: AvgPool):
        self.pool = pool

    def params(self):
        return self.pool.params()

    def forward(self, g, **attrs):
        f = self.pool.factor
        m = side_of(g.shape[1], self.name)
        return np.repeat(np.repeat(g.reshape(g.shape[0], m, m), f, axis=1), f, axis=2).reshape(
            g.shape[0], (m * f) ** 2) / (f * f)

    def formula(self, c, i, j):
        f = self.pool.factor
        m = side_of(c.shape(0)[1], self.name)
        r, col = divmod(j, m * f)
        return f"{c.at(0, i, (r // f) * m + col // f)}/{f * f}"


_POOLS = Family(AvgPool)  # factor -> its op


def avg_pool_op(factor: int) -> AvgPool:
    """The average pooling by `factor` (one instance per factor)."""
    return _POOLS(int(factor))


def avg_pool(a, factor: int, name=None):
    """Record `a` (rows of s² pixels, s a multiple of factor) shrunk to (s/factor)² by averaging."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"avg_pool factor must be a whole number ≥ 1, got {factor!r}")
    op = avg_pool_op(factor)
    op.sides(a.shape[1])
    return a.tape.apply(op, a, name=name)


# --- the amplifier's ops --------------------------------------------------------------------------

UPSCALE_NEAREST_2, UPSCALE_NEAREST_4 = Upscale("nearest", 2), Upscale("nearest", 4)
UPSCALE_BILINEAR_2, UPSCALE_BILINEAR_4 = Upscale("bilinear", 2), Upscale("bilinear", 4)
UPSCALES = {(op.mode, op.factor): op for op in (UPSCALE_NEAREST_2, UPSCALE_NEAREST_4,
                                                UPSCALE_BILINEAR_2, UPSCALE_BILINEAR_4)}
OPS = {op.name: op for up in UPSCALES.values() for op in (up, up.grad_op)}
OPS |= {op.name: op for op in (avg_pool_op(2), avg_pool_op(2).grad_op)}  # a family: one representative


def instances() -> list:
    """Every op instance: the amplifier's and each average pooling made so far."""
    return [op for up in UPSCALES.values() for op in (up, up.grad_op)] + [
        op for pool in _POOLS.made() for op in (pool, pool.grad_op)]


def upscale(a, factor: int, mode: str, name=None):
    """Record `a` (rows of s² pixels) enlarged ×factor (2 or 4) by `mode` (nearest or bilinear)."""
    if isinstance(factor, bool) or factor not in FACTORS:
        raise ValueError(f"upscale factor must be 2 or 4, got {factor!r}")
    if mode not in MODES:
        raise ValueError(f"upscale mode must be 'nearest' or 'bilinear', got {mode!r}")
    side_of(a.shape[1])
    return a.tape.apply(UPSCALES[(mode, int(factor))], a, name=name)
