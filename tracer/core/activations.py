"""Activations: functions applied cell by cell (ReLU, LeakyReLU, sigmoid, tanh, GELU, exp(a/2))
and the softmax of each row (plain, and causal for attention), each with its gradient rule.

    relu        MAX(0, a)                   gradient  g where a > 0, else 0
    leaky_relu  a if a > 0 else slope·a     gradient  g or slope·g          (slope: a named cell)
    sigmoid     1/(1 + e^(−a))              gradient  g ⊙ y ⊙ (1 − y)
    tanh        TANH(a)                     gradient  g ⊙ (1 − y²)
    exp_half    e^(a/2)  (σ from log σ²)    gradient  g ⊙ y / 2
    exp         e^a  (a flow's scale)       gradient  g ⊙ y
    gelu        ½ a (1 + tanh(√(2/π)(a + 0.044715 a³)))                   (GPT-2's approximation)
    gelu_erf    ½ a (1 + erf(a/√2)) = a Φ(a)                              (exact: PyTorch's nn.GELU())
    ln          LN(a)                       gradient  g / a
    power       a^p  (p: a cell)            gradient  g ⊙ p a^(p−1)
    log_softmax row by row: x − max − ln Σ e^(x − max)      gradient  g − e^y · rowsum(g)
    softmax     row by row, max-subtracted  gradient  y ⊙ (g − rowsum(g ⊙ y))
                in steps: e = exp(x − max of the row) (softmax_exp), s = Σ of each row of e, y = e / s
"""

from __future__ import annotations

import numpy as np

import math

from tracer.core.linalg import QUOTIENT, SUM_COLS
from tracer.core.op import Composite, Elementwise, Op, dot, no_grad, only, record

SQRT_2_OVER_PI = np.sqrt(2 / np.pi)  # the formula: SQRT(2/PI())
GELU_A = 0.044715  # tanh-approximated GELU: x³ coefficient
GELU_3A = 0.134145  # 3 · 0.044715, written as the literal the formula uses


# --- cell by cell ---------------------------------------------------------------------------------

RELU_GRAD = Elementwise("relu_grad", lambda a, g: np.where(a > 0, g, 0.0), "IF({0}>0,{1},0)")
RELU = Elementwise(
    "relu", lambda a: np.maximum(a, 0.0), "MAX(0,{0})",
    grad=lambda out, g, w, a: (record(RELU_GRAD, a, g),),
)
SIGMOID_GRAD = Elementwise("sigmoid_grad", lambda y, g: g * y * (1 - y), "{1}*{0}*(1-{0})")
SIGMOID = Elementwise(
    "sigmoid", lambda a: 1 / (1 + np.exp(-a)), "1/(1+EXP(-{0}))",
    grad=lambda out, g, w, a: (record(SIGMOID_GRAD, out, g),),
)
LEAKY_RELU_GRAD = Elementwise(
    "leaky_relu_grad", lambda a, s, g: np.where(a > 0, g, s * g), "IF({0}>0,{2},{1}*{2})"
)
LEAKY_RELU = Elementwise(  # the slope is a named cell
    "leaky_relu", lambda a, s: np.where(a > 0, a, s * a), "IF({0}>0,{0},{1}*{0})",
    grad=lambda out, g, w, a, s: only(w, lambda: record(LEAKY_RELU_GRAD, a, s, g),
                                      no_grad("leaky_relu", "the slope")),
)
TANH_GRAD = Elementwise("tanh_grad", lambda y, g: g * (1 - y * y), "{1}*(1-{0}^2)")
TANH = Elementwise(
    "tanh", np.tanh, "TANH({0})",
    grad=lambda out, g, w, a: (record(TANH_GRAD, out, g),),
)
EXP_HALF_GRAD = Elementwise("exp_half_grad", lambda y, g: g * y / 2, "{1}*{0}/2")
EXP_HALF = Elementwise(  # σ = exp(logvar / 2)
    "exp_half", lambda a: np.exp(a / 2), "EXP({0}/2)",
    grad=lambda out, g, w, a: (record(EXP_HALF_GRAD, out, g),),
)
EXP_GRAD = Elementwise("exp_grad", lambda y, g: g * y, "{1}*{0}")
EXP = Elementwise(  # a coupling's scale exp(s)
    "exp", np.exp, "EXP({0})",
    grad=lambda out, g, w, a: (record(EXP_GRAD, out, g),),
)


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
        return only(wanted, lambda: record(GELU_GRAD, x, g))


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

_erf = np.vectorize(math.erf, otypes=[float])  # numpy has no erf; the spreadsheet's ERF is exact too


class GeluErf(Op):
    """GELU exactly, y = x Φ(x) = ½ x (1 + erf(x/√2)) (PyTorch's nn.GELU() by default; its tanh
    approximation is `gelu`): (T, d) → (T, d), cell by cell.  Cell: 0.5*x*(1+ERF(x/SQRT(2)))."""

    name = "gelu_erf"

    def forward(self, x, **attrs):
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))

    def formula(self, c, i, j):
        x = c.at(0, i, j)
        return f"0.5*{x}*(1+ERF({x}/SQRT(2)))"

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        return only(wanted, lambda: record(GELU_ERF_GRAD, x, g))


class GeluErfGrad(Op):
    """dx = g ⊙ (Φ(x) + x φ(x)) = g ⊙ (½ (1 + erf(x/√2)) + x e^(−x²/2) / √(2π)): x, g (T, d) → (T, d)."""

    name = "gelu_erf_grad"

    def forward(self, x, g, **attrs):
        return g * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))

    def formula(self, c, i, j):
        x, g = c.at(0, i, j), c.at(1, i, j)
        return f"{g}*(0.5*(1+ERF({x}/SQRT(2)))+{x}*EXP(-{x}*{x}/2)/SQRT(2*PI()))"


GELU_ERF, GELU_ERF_GRAD = GeluErf(), GeluErfGrad()

LN = Elementwise("ln", lambda a: np.log(a), "LN({0})",
                 grad=lambda out, g, w, a: only(w, lambda: record(QUOTIENT, g, a)))  # g / a
POWER_GRAD = Elementwise(  # g ⊙ p a^(p−1)
    "power_grad", lambda a, p, g: g * p * a ** (p - 1), "{2}*{1}*{0}^({1}-1)")
POWER = Elementwise(  # a^p, p a (1, 1) cell: a number written in a model's code (x ** 2)
    "power", lambda a, p: a ** p, "{0}^{1}",
    grad=lambda out, g, w, a, p: only(w, lambda: record(POWER_GRAD, a, p, g), no_grad("power", "the exponent")),
)


# --- the softmax of each row, and the causal softmax of attention -------------------------------

class ShiftedExp(Op):
    """A softmax's first step, the shifted exponentials: x (T, V) → e (T, V),
    e[i, j] = exp(x[i, j] − m_i), m_i = max_k x[i, k] (subtracting the row's maximum changes no
    probability and keeps exp from overflowing).  Cell (i, j): EXP(x_ij − MAX(row i)).
    causal=True: row i sees only columns k ≤ i (m_i runs over them), e[i, j] = 0 for j > i."""

    def __init__(self, name, causal):
        self.name, self.causal = name, causal

    def forward(self, x, **attrs):
        if not self.causal:
            return np.exp(x - x.max(axis=1, keepdims=True))
        seen = np.tri(*x.shape, dtype=bool)  # j ≤ i
        m = np.where(seen, x, -np.inf).max(axis=1, keepdims=True)
        return np.where(seen, np.exp(np.where(seen, x - m, 0)), 0)

    def formula(self, c, i, j):
        last = min(i, c.shape(0)[1] - 1) if self.causal else c.shape(0)[1] - 1  # the last column row i reads
        if j > last:
            return "0"
        return f"EXP({c.at(0, i, j)}-MAX({c.span(0, i, 0, i, last)}))"


class Softmax(Composite):
    """Row softmax, max-subtracted: x (T, V) → y (T, V),

        y[i, j] = exp(x[i, j] − m_i) / Σ_k exp(x[i, k] − m_i),   m_i = max_k x[i, k],

    in three blocks: e = the shifted exponentials (`<name>_exp`, one EXP per cell), s = the sum of
    each row of e (`<name>_sum`, T × 1), then y = e / s.  Cell (i, j): e_ij/s_i.

    causal=True is the causal mask and the softmax in one op: scores x (T, T), row i (query i)
    sees only columns k ≤ i (keys up to itself), y[i, j] = 0 for j > i, and m_i and the sum run
    over k ≤ i.  Why not a separate mask op writing −1e9 (or −∞) above the diagonal: in a sheet
    the masked cells would be a magic constant in a T × T block of its own per head; here the
    mask is simply the range: row i's exponentials read columns 0 … i, and the masked cells are
    the formula 0.  Numerically it is the same: exp(−1e9 − m) is exactly 0.  Gradient (of the
    whole softmax): softmax_grad, y ⊙ (g − rowsum(g ⊙ y)), which is 0 above the diagonal because
    y is.
    """

    def __init__(self, name, exp):
        self.name, self.causal = name, exp.causal
        self.steps = (("exp", exp, 0), ("sum", SUM_COLS, 1))

    def finish(self, x, e, s):
        return e / s

    def formula(self, c, i, j):
        if self.causal and j > i:
            return "0"
        return f"{c.at(1, i, j)}/{c.at(2, i, 0)}"

    @staticmethod
    def grad(out, g, wanted, x):
        return only(wanted, lambda: record(SOFTMAX_GRAD, out, g))


class SoftmaxGrad(Op):
    """dx = y ⊙ (g − rowsum(g ⊙ y)): y (T, V) the softmax's output, g (T, V) its gradient → (T, V).
    Cell: y_ij*(g_ij − SUMPRODUCT(row i of g, row i of y))."""

    name = "softmax_grad"

    def forward(self, y, g, **attrs):
        return y * (g - (g * y).sum(axis=1, keepdims=True))

    def formula(self, c, i, j):
        return f"{c.at(0, i, j)}*({c.at(1, i, j)}-{dot(c.row(1, i), c.row(0, i))})"


SOFTMAX_EXP, CAUSAL_SOFTMAX_EXP = ShiftedExp("softmax_exp", False), ShiftedExp("causal_softmax_exp", True)
SOFTMAX, CAUSAL_SOFTMAX = Softmax("softmax", SOFTMAX_EXP), Softmax("causal_softmax", CAUSAL_SOFTMAX_EXP)
SOFTMAX_GRAD = SoftmaxGrad()


class LogSoftmax(Composite):
    """Row log-softmax, max-subtracted as PyTorch computes it: x (T, V) → y (T, V),

        y[i, j] = x[i, j] − m_i − ln Σ_k exp(x[i, k] − m_i),   m_i = max_k x[i, k],

    in three blocks, the first two a softmax's: e = the shifted exponentials (`<name>_exp`),
    s = the sum of each row of e (`<name>_sum`), then y.  Cell (i, j): x_ij − MAX(row i) − LN(s_i).
    Gradient: log_softmax_grad, g − e^y ⊙ rowsum(g)."""

    name = "log_softmax"
    steps = (("exp", SOFTMAX_EXP, 0), ("sum", SUM_COLS, 1))

    def finish(self, x, e, s):
        return x - x.max(axis=1, keepdims=True) - np.log(s)

    def formula(self, c, i, j):
        return f"{c.at(0, i, j)}-MAX({c.span(0, i, 0, i, c.shape(0)[1] - 1)})-LN({c.at(2, i, 0)})"

    @staticmethod
    def grad(out, g, wanted, x):
        return only(wanted, lambda: record(LOG_SOFTMAX_GRAD, out, g))


class LogSoftmaxGrad(Op):
    """dx = g − e^y ⊙ rowsum(g): y (T, V) the log-softmax, g (T, V) its gradient → (T, V).
    Cell: g_ij − EXP(y_ij)*SUM(row i of g)."""

    name = "log_softmax_grad"

    def forward(self, y, g, **attrs):
        return g - np.exp(y) * g.sum(axis=1, keepdims=True)

    def formula(self, c, i, j):
        row = c.row(1, i)[0]
        return f"{c.at(1, i, j)}-EXP({c.at(0, i, j)})*{row if ':' not in row else f'SUM({row})'}"


LOG_SOFTMAX, LOG_SOFTMAX_GRAD = LogSoftmax(), LogSoftmaxGrad()

OPS = {op.name: op for op in (
    RELU, RELU_GRAD, SIGMOID, SIGMOID_GRAD, LEAKY_RELU, LEAKY_RELU_GRAD, TANH, TANH_GRAD,
    EXP_HALF, EXP_HALF_GRAD, EXP, EXP_GRAD, GELU, GELU_GRAD, SOFTMAX_EXP, CAUSAL_SOFTMAX_EXP, SOFTMAX, CAUSAL_SOFTMAX,
    SOFTMAX_GRAD, GELU_ERF, GELU_ERF_GRAD, LN, POWER, POWER_GRAD, LOG_SOFTMAX, LOG_SOFTMAX_GRAD,
)}


# --- what a model calls -------------------------------------------------------------------------

def relu(a, name=None):
    return record(RELU, a, name=name)


def sigmoid(a, name=None):
    return record(SIGMOID, a, name=name)


def leaky_relu(a, slope, name=None):
    return record(LEAKY_RELU, a, slope, name=name)


def tanh(a, name=None):
    return record(TANH, a, name=name)


def exp_half(a, name=None):
    return record(EXP_HALF, a, name=name)


def exp(a, name=None):
    return record(EXP, a, name=name)


def gelu(x, name=None):
    return record(GELU, x, name=name)


def softmax(x, name=None):
    """Row softmax of x (T, V), recorded as `<name>_exp`, `<name>_sum` and `<name>`."""
    return record(SOFTMAX, x, name=name)


def causal_softmax(scores, name=None):
    """Masked attention weights: row i is the softmax of scores[i, 0 … i], 0 after (in steps,
    like softmax)."""
    return record(CAUSAL_SOFTMAX, scores, name=name)
