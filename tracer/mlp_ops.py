"""The ops a dense network (tracer.models.mlp) needs beyond tracer.ops and tracer.lm_ops: the tanh
activation and three losses.  Each op defines, like tracer.ops, its numpy forward, its gradient
rule (made of recorded ops) and the formula of each output cell.

    tanh       y = tanh(z)                               gradient  g ⊙ (1 − y²)
    half_sse   L = ½ Σ (y − ŷ)²                          gradient  g · (ŷ − y)
    mse        L = (1/n) Σ (ŷ − y)²                      gradient  g · 2 (ŷ − y) / n
    bce_mean   L = −(1/n) Σ [y ln ŷ + (1 − y) ln(1 − ŷ)]  gradient  g · ((1 − y)/(1 − ŷ) − y/ŷ) / n

ŷ (the network's output) and y (the targets) are N × k blocks, one row per example; n = N·k, the
number of their cells: the means run over every output of every example.  A loss takes ŷ first
and the targets second, like tracer.lm_ops.cross_entropy (softmax_ce reuses that op).

Portable formulas: TANH cell by cell; a loss is one SUMPRODUCT over the two whole blocks (array
arithmetic only inside SUMPRODUCT), which therefore must be laid out the same way (equal shapes
are: a 1 × k row of one example is shown turned, as a column, for both); n is written as a
literal, like the number of rows T in cross_entropy.
"""

from __future__ import annotations

import numpy as np

from tracer.lm_ops import _same_way
from tracer.ops import Elementwise, Op, Reduce, _apply, _no_grad, _only

# --- tanh ---------------------------------------------------------------------------------------

TANH_GRAD = Elementwise("tanh_grad", lambda y, g: g * (1 - y * y), "{1}*(1-{0}^2)")
TANH = Elementwise(
    "tanh", np.tanh, "TANH({0})",
    grad=lambda out, g, w, a: (_apply(TANH_GRAD, out, g),),
)


# --- losses of an output ŷ against its targets y ------------------------------------------------

class PairLoss(Reduce):
    """A (1, 1) loss of ŷ and y: `fn(ŷ, y)` in numpy, `excel` a template over their whole ranges
    {0} (ŷ) and {1} (y) and their cell count {n}; the gradient goes to ŷ only (y is data)."""

    def formula(self, c, i, j):
        _same_way(c, 0, 1, self.name)
        rows, cols = c.shape(0)
        return self.excel.format(c.all(0), c.all(1), n=rows * cols)


class PairLossGrad(Op):
    """The gradient of a PairLoss with respect to ŷ, cell by cell: inputs ŷ, y (same shape) and
    g (1, 1); `fn(ŷ, y, g, n)` in numpy, `excel` a template over the cells {0}, {1}, {2} and {n}."""

    def __init__(self, name, fn, excel):
        self.name, self.fn, self.excel = name, fn, excel

    def forward(self, yhat, y, g, **attrs):
        return self.fn(yhat, y, g, yhat.size)

    def formula(self, c, i, j):
        rows, cols = c.shape(0)
        return self.excel.format(*(c.at(k, i, j) for k in range(3)), n=rows * cols)


def _grad_to_output(grad_op):
    """The gradient rule of a loss: grad_op(ŷ, y, g) for ŷ, none for the targets."""
    return lambda out, g, w, yhat, y: _only(w, lambda: _apply(grad_op, yhat, y, g), _no_grad("the targets"))


HALF_SSE_GRAD = PairLossGrad("half_sse_grad", lambda p, y, g, n: g * (p - y), "{2}*({0}-{1})")
HALF_SSE = PairLoss(  # Mazur's E_total = Σ ½ (target − out)²
    "half_sse", lambda p, y: 0.5 * np.sum((y - p) ** 2), "0.5*SUMPRODUCT(({1}-{0})^2)",
    grad=_grad_to_output(HALF_SSE_GRAD),
)
MSE_GRAD = PairLossGrad("mse_grad", lambda p, y, g, n: g * 2 * (p - y) / n, "{2}*2*({0}-{1})/{n}")
MSE = PairLoss(
    "mse", lambda p, y: np.mean((p - y) ** 2), "SUMPRODUCT(({0}-{1})^2)/{n}",
    grad=_grad_to_output(MSE_GRAD),
)
BCE_MEAN_GRAD = PairLossGrad(
    "bce_mean_grad", lambda p, y, g, n: g * ((1 - y) / (1 - p) - y / p) / n,
    "{2}*((1-{1})/(1-{0})-{1}/{0})/{n}",
)
BCE_MEAN = PairLoss(
    "bce_mean", lambda p, y: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)),
    "-SUMPRODUCT({1}*LN({0})+(1-{1})*LN(1-{0}))/{n}",
    grad=_grad_to_output(BCE_MEAN_GRAD),
)

MLP_OPS = {op.name: op for op in (TANH, TANH_GRAD, HALF_SSE, HALF_SSE_GRAD, MSE, MSE_GRAD, BCE_MEAN, BCE_MEAN_GRAD)}


# --- what a model calls -------------------------------------------------------------------------

def tanh(a, name=None):
    return _apply(TANH, a, name=name)


def half_sse(yhat, y, name=None):
    """½ Σ (y − ŷ)² over every output of every example."""
    return _apply(HALF_SSE, yhat, y, name=name)


def mse(yhat, y, name=None):
    """The mean of (ŷ − y)² over every output of every example."""
    return _apply(MSE, yhat, y, name=name)


def bce_mean(yhat, y, name=None):
    """The binary cross-entropy, averaged over every output of every example (ŷ in (0, 1))."""
    return _apply(BCE_MEAN, yhat, y, name=name)
