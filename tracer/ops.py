"""Every op in one place: its numpy forward, its gradient rule and the formula of each output cell.

All values are 2-D (a row vector is 1×n, a scalar 1×1).  A gradient rule receives the output
tensor `out`, its gradient `g` and which inputs want a gradient; it returns one tensor per input
(None where not wanted), made by applying ops, so gradients are recorded tensors with formulas.

A formula is written against `c`, the cells of the op's inputs as seen from the output's sheet
(see tracer.layout.Cells): `c.at(k, i, j)` is input k's cell (broadcast like numpy), `c.row(k, i)`
/ `c.col(k, j)` a row / column range, `c.all(k)` the whole block.
"""

from __future__ import annotations

import numpy as np


class Op:
    name = "op"

    def forward(self, *xs, **attrs):
        raise NotImplementedError

    def backward(self, out, g, wanted):
        raise NotImplementedError(f"op {self.name!r} has no gradient rule")

    def formula(self, c, i, j) -> str:
        raise NotImplementedError


def _apply(op, *xs, name=None):
    return xs[0].tape.apply(op, *xs, name=name)


def _only(wanted, *makers):
    """Build the gradient of input k only when it is wanted (makers are thunks)."""
    return tuple(make() if w else None for w, make in zip(wanted, makers))


class Elementwise(Op):
    """out[i, j] = f(inputs[i, j] ...), numpy broadcasting; `excel` is a "{0}+{1}" template or a
    function of the list of input cell references."""

    def __init__(self, name, fn, excel, grad=None):
        self.name, self.fn, self.excel, self.grad = name, fn, excel, grad

    def forward(self, *xs, **attrs):
        return self.fn(*xs)

    def backward(self, out, g, wanted):
        if self.grad is None:
            return super().backward(out, g, wanted)
        return self.grad(out, g, wanted, *out.inputs)

    def formula(self, c, i, j):
        refs = [c.at(k, i, j) for k in range(c.n)]
        return self.excel(refs) if callable(self.excel) else self.excel.format(*refs)


def dot(a, b) -> str:
    """Σ a_k b_k of two equally long ranges: SUMPRODUCT when both run the same way, MMULT of a
    row by a column when they cross (SUMPRODUCT needs equal shapes), a product for one cell."""
    (ra, va, na), (rb, vb, _) = a, b
    if na == 1:
        return f"{ra}*{rb}"
    if va == vb:
        return f"SUMPRODUCT({ra},{rb})"
    return f"MMULT({rb},{ra})" if va else f"MMULT({ra},{rb})"


# --- gradient-only ops: they appear in the backward pass and the update -----------------------

ONE = Elementwise("one", lambda a: np.ones_like(a), "1")  # dL/dL = 1
COPY = Elementwise("copy", lambda a: a.copy(), "{0}")
SUM_N = Elementwise("sum", lambda *xs: sum(xs), lambda refs: "+".join(refs))
RELU_GRAD = Elementwise("relu_grad", lambda a, g: np.where(a > 0, g, 0.0), "IF({0}>0,{1},0)")
SIGMOID_GRAD = Elementwise("sigmoid_grad", lambda y, g: g * y * (1 - y), "{1}*{0}*(1-{0})")
EXP_HALF_GRAD = Elementwise("exp_half_grad", lambda y, g: g * y / 2, "{1}*{0}/2")
BCE_GRAD = Elementwise(
    "bce_grad", lambda x, xh, g: g * ((1 - x) / (1 - xh) - x / xh), "{2}*((1-{0})/(1-{1})-{0}/{1})"
)
KL_LOGVAR_GRAD = Elementwise("kl_logvar_grad", lambda g, lv: g * (np.exp(lv) - 1) / 2, "{0}*(EXP({1})-1)/2")
SGD = Elementwise("sgd", lambda p, lr, g: p - lr * g, "{0}-{1}*{2}")  # θ − lr · ∂L/∂θ
SUB = Elementwise("sub", lambda a, b: a - b, "{0}-{1}")
BROADCAST = Elementwise(  # the gradient of a sum: each summed cell gets the sum's gradient
    "broadcast", lambda a, g: np.broadcast_to(g, a.shape).copy(), "{1}"
)
# Adam (tracer.optim): moments, bias correction, step; the counter t is a cell of its own
INCREMENT = Elementwise("increment", lambda t: t + 1, "{0}+1")
ADAM_M = Elementwise("adam_m", lambda m, b, g: b * m + (1 - b) * g, "{1}*{0}+(1-{1})*{2}")
ADAM_V = Elementwise("adam_v", lambda v, b, g: b * v + (1 - b) * g * g, "{1}*{0}+(1-{1})*{2}^2")
BIAS_CORRECT = Elementwise("bias_correct", lambda m, b, t: m / (1 - b**t), "{0}/(1-{1}^{2})")
ADAM_STEP = Elementwise(
    "adam_step", lambda lr, m, v, e: lr * m / (np.sqrt(v) + e), "{0}*{1}/(SQRT({2})+{3})"
)


# --- forward ops ------------------------------------------------------------------------------

# An input that was broadcast (a 1×1 factor, a 1×n row) gets its gradient summed back (_to).
MUL = Elementwise(
    "mul", lambda a, b: a * b, "{0}*{1}",
    grad=lambda out, g, w, a, b: _only(
        w, lambda: _reduced(_apply(MUL, g, b), a.shape), lambda: _reduced(_apply(MUL, g, a), b.shape)
    ),
)
ADD = Elementwise(
    "add", lambda a, b: a + b, "{0}+{1}",
    grad=lambda out, g, w, a, b: _only(w, lambda: _to(g, a.shape), lambda: _to(g, b.shape)),
)
ADD_MUL = Elementwise(  # z = μ + σ ⊙ ε
    "add_mul", lambda a, b, e: a + b * e, "{0}+{1}*{2}",
    grad=lambda out, g, w, a, b, e: _only(
        w, lambda: _to(g, a.shape), lambda: _reduced(_apply(MUL, g, e), b.shape),
        lambda: _reduced(_apply(MUL, g, b), e.shape),
    ),
)
RELU = Elementwise(
    "relu", lambda a: np.maximum(a, 0.0), "MAX(0,{0})",
    grad=lambda out, g, w, a: (_apply(RELU_GRAD, a, g),),
)
SIGMOID = Elementwise(
    "sigmoid", lambda a: 1 / (1 + np.exp(-a)), "1/(1+EXP(-{0}))",
    grad=lambda out, g, w, a: (_apply(SIGMOID_GRAD, out, g),),
)
LEAKY_RELU_GRAD = Elementwise(
    "leaky_relu_grad", lambda a, s, g: np.where(a > 0, g, s * g), "IF({0}>0,{2},{1}*{2})"
)
LEAKY_RELU = Elementwise(  # the slope is a named cell
    "leaky_relu", lambda a, s: np.where(a > 0, a, s * a), "IF({0}>0,{0},{1}*{0})",
    grad=lambda out, g, w, a, s: _only(w, lambda: _apply(LEAKY_RELU_GRAD, a, s, g), _no_grad("the slope")),
)
EXP_HALF = Elementwise(  # σ = exp(logvar / 2)
    "exp_half", lambda a: np.exp(a / 2), "EXP({0}/2)",
    grad=lambda out, g, w, a: (_apply(EXP_HALF_GRAD, out, g),),
)


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
            return _only(wanted, lambda: _apply(MATMUL_NT, g, b), lambda: _apply(MATMUL_TN, a, g))
        if self.tb:  # C = A·Bᵀ
            return _only(wanted, lambda: _apply(MATMUL, g, b), lambda: _apply(MATMUL_TN, g, a))
        return _only(wanted, lambda: _apply(MATMUL_NT, b, g), lambda: _apply(MATMUL, a, g))  # AᵀB


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
        return (_apply(BROADCAST, out.inputs[0], g),)


SUM_ROWS, SUM_COLS, SUM_ALL = SumTo("sum_rows", True, False), SumTo("sum_cols", False, True), SumTo("sum_all", True, True)


def _to(g, shape):
    """The gradient g summed back to the shape of an input that was broadcast (else a copy)."""
    rows, cols = shape[0] == 1 < g.shape[0], shape[1] == 1 < g.shape[1]
    op = {(False, False): COPY, (True, False): SUM_ROWS, (False, True): SUM_COLS, (True, True): SUM_ALL}
    return _apply(op[(rows, cols)], g)


def _reduced(g, shape):
    """g itself when it already has the input's shape, else summed over the broadcast axes."""
    return g if g.shape == shape else _to(g, shape)


class Linear(Op):
    """x·W + b: x (m, k), W (k, n), b (1, n) → (m, n)."""

    name = "linear"

    def forward(self, x, W, b, **attrs):
        return x @ W + b

    def formula(self, c, i, j):
        return f"{dot(c.row(0, i), c.col(1, j))}+{c.at(2, i, j)}"

    def backward(self, out, g, wanted):
        x, W, b = out.inputs
        return _only(
            wanted,
            lambda: _apply(MATMUL_NT, g, W),  # ∂L/∂x = ∂L/∂out · Wᵀ
            lambda: _apply(MATMUL_TN, x, g),  # ∂L/∂W = xᵀ · ∂L/∂out
            lambda: _apply(SUM_ROWS, g),  # ∂L/∂b = column sums of ∂L/∂out
        )


LINEAR = Linear()


class Reduce(Op):
    """A scalar from whole blocks: `excel` is a template over the inputs' ranges."""

    def __init__(self, name, fn, excel, grad):
        self.name, self.fn, self.excel, self.grad = name, fn, excel, grad

    def forward(self, *xs, **attrs):
        return np.array([[self.fn(*xs)]])

    def formula(self, c, i, j):
        return self.excel.format(*(c.all(k) for k in range(c.n)))

    def backward(self, out, g, wanted):
        return self.grad(out, g, wanted, *out.inputs)


def _no_grad(what):
    def fail():
        raise ValueError(f"no gradient with respect to {what}")

    return fail


BCE = Reduce(  # recon = −Σ [x ln x̂ + (1−x) ln(1−x̂)]
    "bce",
    lambda x, xh: -np.sum(x * np.log(xh) + (1 - x) * np.log(1 - xh)),
    "-SUMPRODUCT({0}*LN({1})+(1-{0})*LN(1-{1}))",
    grad=lambda out, g, w, x, xh: _only(w, _no_grad("the data"), lambda: _apply(BCE_GRAD, x, xh, g)),
)
KL = Reduce(  # kl = −½ Σ (1 + logvar − μ² − exp(logvar))
    "kl",
    lambda mu, lv: -0.5 * np.sum(1 + lv - mu**2 - np.exp(lv)),
    "-0.5*SUMPRODUCT(1+{1}-{0}^2-EXP({1}))",
    grad=lambda out, g, w, mu, lv: _only(
        w, lambda: _apply(MUL, g, mu), lambda: _apply(KL_LOGVAR_GRAD, g, lv)
    ),
)



class MeanLnGrad(Op):
    """The gradient of −mean ln a (or of −mean ln(1 − a) when `complement`) times g: each cell
    −g / (N·a)  (or g / (N·(1 − a))), N = COUNT of a's cells."""

    def __init__(self, name, complement):
        self.name, self.complement = name, complement

    def forward(self, a, g, **attrs):
        return g / (a.size * (1 - a)) if self.complement else -g / (a.size * a)

    def formula(self, c, i, j):
        a, g, n = c.at(0, i, j), c.at(1, i, j), f"COUNT({c.all(0)})"
        return f"{g}/({n}*(1-{a}))" if self.complement else f"-{g}/({n}*{a})"


NEG_MEAN_LN_GRAD = MeanLnGrad("neg_mean_ln_grad", False)
NEG_MEAN_LN1M_GRAD = MeanLnGrad("neg_mean_ln1m_grad", True)
NEG_MEAN_LN = Reduce(  # −mean ln D(x): a GAN's loss on "real" answers
    "neg_mean_ln", lambda a: -np.mean(np.log(a)), "-SUMPRODUCT(LN({0}))/COUNT({0})",
    grad=lambda out, g, w, a: (_apply(NEG_MEAN_LN_GRAD, a, g),),
)
NEG_MEAN_LN1M = Reduce(  # −mean ln(1 − D(x)): a GAN's loss on "fake" answers
    "neg_mean_ln1m", lambda a: -np.mean(np.log(1 - a)), "-SUMPRODUCT(LN(1-{0}))/COUNT({0})",
    grad=lambda out, g, w, a: (_apply(NEG_MEAN_LN1M_GRAD, a, g),),
)

OPS = {op.name: op for op in (
    ONE, COPY, SUM_N, RELU_GRAD, SIGMOID_GRAD, EXP_HALF_GRAD, BCE_GRAD, KL_LOGVAR_GRAD, SGD,
    SUB, BROADCAST, INCREMENT, ADAM_M, ADAM_V, BIAS_CORRECT, ADAM_STEP,
    MUL, ADD, ADD_MUL, RELU, SIGMOID, EXP_HALF, MATMUL, MATMUL_NT, MATMUL_TN, SUM_ROWS, SUM_COLS,
    SUM_ALL, LINEAR,
    BCE, KL, LEAKY_RELU, LEAKY_RELU_GRAD, NEG_MEAN_LN, NEG_MEAN_LN1M, NEG_MEAN_LN_GRAD, NEG_MEAN_LN1M_GRAD,
)}


# --- what a model calls: the equations read like the math -----------------------------------

def linear(x, W, b, name=None):
    return _apply(LINEAR, x, W, b, name=name)


def relu(a, name=None):
    return _apply(RELU, a, name=name)


def sigmoid(a, name=None):
    return _apply(SIGMOID, a, name=name)


def leaky_relu(a, slope, name=None):
    return _apply(LEAKY_RELU, a, slope, name=name)


def neg_mean_ln(a, name=None):
    return _apply(NEG_MEAN_LN, a, name=name)


def neg_mean_ln1m(a, name=None):
    return _apply(NEG_MEAN_LN1M, a, name=name)


def exp_half(a, name=None):
    return _apply(EXP_HALF, a, name=name)


def add(a, b, name=None):
    return _apply(ADD, a, b, name=name)


def add_mul(a, b, e, name=None):
    return _apply(ADD_MUL, a, b, e, name=name)


def bce(x, x_hat, name=None):
    return _apply(BCE, x, x_hat, name=name)


def kl_normal(mu, logvar, name=None):
    return _apply(KL, mu, logvar, name=name)
