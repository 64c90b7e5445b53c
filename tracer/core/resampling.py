"""A resolution amplifier: every row of a tensor is a square image, enlarged ×2 or ×4.

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

from tracer.core.op import Op

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


UPSCALE_NEAREST_2, UPSCALE_NEAREST_4 = Upscale("nearest", 2), Upscale("nearest", 4)
UPSCALE_BILINEAR_2, UPSCALE_BILINEAR_4 = Upscale("bilinear", 2), Upscale("bilinear", 4)
UPSCALES = {(op.mode, op.factor): op for op in (UPSCALE_NEAREST_2, UPSCALE_NEAREST_4,
                                                UPSCALE_BILINEAR_2, UPSCALE_BILINEAR_4)}
OPS = {op.name: op for up in UPSCALES.values() for op in (up, up.grad_op)}


def upscale(a, factor: int, mode: str, name=None):
    """Record `a` (rows of s² pixels) enlarged ×factor (2 or 4) by `mode` (nearest or bilinear)."""
    if isinstance(factor, bool) or factor not in FACTORS:
        raise ValueError(f"upscale factor must be 2 or 4, got {factor!r}")
    if mode not in MODES:
        raise ValueError(f"upscale mode must be 'nearest' or 'bilinear', got {mode!r}")
    side_of(a.shape[1])
    return a.tape.apply(UPSCALES[(mode, int(factor))], a, name=name)
