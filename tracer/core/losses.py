"""Losses: a (1, 1) number from an output and what it should have been, each with its gradient.

    bce            recon = −Σ [x ln x̂ + (1−x) ln(1−x̂)]          the VAE's reconstruction (a sum)
    kl             −½ Σ (1 + log σ² − μ² − e^(log σ²))            KL(N(μ, σ²) ‖ N(0, I))
    neg_mean_ln    −mean ln a,  neg_mean_ln1m  −mean ln(1 − a)   a GAN's losses on D's answers
    xent           −(1/T) Σ_i Σ_j Y_ij ln P_ij                    cross-entropy, one-hot targets Y
    half_sse       ½ Σ (y − ŷ)²                                  gradient  g · (ŷ − y)
    mse            (1/n) Σ (ŷ − y)²                              gradient  g · 2 (ŷ − y) / n
    bce_mean       −(1/n) Σ [y ln ŷ + (1 − y) ln(1 − ŷ)]         gradient  g · ((1 − y)/(1 − ŷ) − y/ŷ) / n

ŷ (an output) and y (the targets) of the pair losses are N × k blocks, one row per example;
n = N·k: the means run over every output of every example.  A pair loss takes ŷ first and the
targets second, like xent.  Portable formulas: a loss is one SUMPRODUCT over whole blocks (array
arithmetic only inside SUMPRODUCT), which therefore must be laid out the same way; n and T are
written as literals.
"""

from __future__ import annotations

import numpy as np

from tracer.core.linalg import MUL
from tracer.core.op import Elementwise, Op, Reduce, no_grad, only, record, same_way

# --- the VAE: reconstruction and KL ---------------------------------------------------------------

BCE_GRAD = Elementwise(
    "bce_grad", lambda x, xh, g: g * ((1 - x) / (1 - xh) - x / xh), "{2}*((1-{0})/(1-{1})-{0}/{1})"
)
BCE = Reduce(  # recon = −Σ [x ln x̂ + (1−x) ln(1−x̂)]
    "bce",
    lambda x, xh: -np.sum(x * np.log(xh) + (1 - x) * np.log(1 - xh)),
    "-SUMPRODUCT({0}*LN({1})+(1-{0})*LN(1-{1}))",
    grad=lambda out, g, w, x, xh: only(w, no_grad("bce", "the data"), lambda: record(BCE_GRAD, x, xh, g)),
)
KL_LOGVAR_GRAD = Elementwise("kl_logvar_grad", lambda g, lv: g * (np.exp(lv) - 1) / 2, "{0}*(EXP({1})-1)/2")
KL = Reduce(  # kl = −½ Σ (1 + logvar − μ² − exp(logvar))
    "kl",
    lambda mu, lv: -0.5 * np.sum(1 + lv - mu**2 - np.exp(lv)),
    "-0.5*SUMPRODUCT(1+{1}-{0}^2-EXP({1}))",
    grad=lambda out, g, w, mu, lv: only(
        w, lambda: record(MUL, g, mu), lambda: record(KL_LOGVAR_GRAD, g, lv)
    ),
)


# --- a GAN: −mean ln D(x) and −mean ln(1 − D(x)) -----------------------------------------------

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
    grad=lambda out, g, w, a: (record(NEG_MEAN_LN_GRAD, a, g),),
)
NEG_MEAN_LN1M = Reduce(  # −mean ln(1 − D(x)): a GAN's loss on "fake" answers
    "neg_mean_ln1m", lambda a: -np.mean(np.log(1 - a)), "-SUMPRODUCT(LN(1-{0}))/COUNT({0})",
    grad=lambda out, g, w, a: (record(NEG_MEAN_LN1M_GRAD, a, g),),
)


# --- cross-entropy with one-hot targets ----------------------------------------------------------

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
        same_way(c, 0, 1, self.name)
        return f"-SUMPRODUCT({c.all(1)},LN({c.all(0)}))/{c.shape(0)[0]}"

    def backward(self, out, g, wanted):
        p, y = out.inputs
        return only(wanted, lambda: record(XENT_GRAD, p, y, g), no_grad(self.name, "the targets"))


class CrossEntropyGrad(Op):
    """dP = −g·Y/(T·P): P (T, V), Y (T, V), g (1, 1) → (T, V); nonzero only at the targets."""

    name = "xent_grad"

    def forward(self, p, y, g, **attrs):
        return -g * y / (p.shape[0] * p)

    def formula(self, c, i, j):
        return f"-{c.at(2, i, j)}*{c.at(1, i, j)}/({c.shape(0)[0]}*{c.at(0, i, j)})"


XENT, XENT_GRAD = CrossEntropy(), CrossEntropyGrad()


# --- a network's output against its targets: ½ Σ squared errors, mse, mean bce ------------------

class PairLoss(Reduce):
    """A (1, 1) loss of ŷ and y: `fn(ŷ, y)` in numpy, `excel` a template over their whole ranges
    {0} (ŷ) and {1} (y) and their cell count {n}; the gradient goes to ŷ only (y is data)."""

    def formula(self, c, i, j):
        same_way(c, 0, 1, self.name)
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


def _grad_to_output(grad_op, loss_name):
    """The gradient rule of a pair loss: grad_op(ŷ, y, g) for ŷ, none for the targets."""
    return lambda out, g, w, yhat, y: only(w, lambda: record(grad_op, yhat, y, g), no_grad(loss_name, "the targets"))


HALF_SSE_GRAD = PairLossGrad("half_sse_grad", lambda p, y, g, n: g * (p - y), "{2}*({0}-{1})")
HALF_SSE = PairLoss(  # Mazur's E_total = Σ ½ (target − out)²
    "half_sse", lambda p, y: 0.5 * np.sum((y - p) ** 2), "0.5*SUMPRODUCT(({1}-{0})^2)",
    grad=_grad_to_output(HALF_SSE_GRAD, "half_sse"),
)
MSE_GRAD = PairLossGrad("mse_grad", lambda p, y, g, n: g * 2 * (p - y) / n, "{2}*2*({0}-{1})/{n}")
MSE = PairLoss(
    "mse", lambda p, y: np.mean((p - y) ** 2), "SUMPRODUCT(({0}-{1})^2)/{n}",
    grad=_grad_to_output(MSE_GRAD, "mse"),
)
BCE_MEAN_GRAD = PairLossGrad(
    "bce_mean_grad", lambda p, y, g, n: g * ((1 - y) / (1 - p) - y / p) / n,
    "{2}*((1-{1})/(1-{0})-{1}/{0})/{n}",
)
BCE_MEAN = PairLoss(
    "bce_mean", lambda p, y: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)),
    "-SUMPRODUCT({1}*LN({0})+(1-{1})*LN(1-{0}))/{n}",
    grad=_grad_to_output(BCE_MEAN_GRAD, "bce_mean"),
)

OPS = {op.name: op for op in (
    BCE, BCE_GRAD, KL, KL_LOGVAR_GRAD, NEG_MEAN_LN, NEG_MEAN_LN1M, NEG_MEAN_LN_GRAD, NEG_MEAN_LN1M_GRAD,
    XENT, XENT_GRAD, HALF_SSE, HALF_SSE_GRAD, MSE, MSE_GRAD, BCE_MEAN, BCE_MEAN_GRAD,
)}


# --- what a model calls -------------------------------------------------------------------------

def bce(x, x_hat, name=None):
    return record(BCE, x, x_hat, name=name)


def kl_normal(mu, logvar, name=None):
    return record(KL, mu, logvar, name=name)


def neg_mean_ln(a, name=None):
    return record(NEG_MEAN_LN, a, name=name)


def neg_mean_ln1m(a, name=None):
    return record(NEG_MEAN_LN1M, a, name=name)


def cross_entropy(probs, targets, name=None):
    """−(1/T) Σ targets ⊙ ln probs: the mean of −ln P[i, target_i] (targets one-hot, see one_hot)."""
    return record(XENT, probs, targets, name=name)


def half_sse(yhat, y, name=None):
    """½ Σ (y − ŷ)² over every output of every example."""
    return record(HALF_SSE, yhat, y, name=name)


def mse(yhat, y, name=None):
    """The mean of (ŷ − y)² over every output of every example."""
    return record(MSE, yhat, y, name=name)


def bce_mean(yhat, y, name=None):
    """The binary cross-entropy, averaged over every output of every example (ŷ in (0, 1))."""
    return record(BCE_MEAN, yhat, y, name=name)


def one_hot(tape, ids, vocab, name="Y", **attrs):
    """A constant (T, V) one-hot matrix: row i has its 1 at column ids[i]."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if np.any(ids < 0) or np.any(ids >= vocab):
        raise ValueError(f"target ids must be in 0 … {vocab - 1}")
    y = np.zeros((ids.size, vocab))
    y[np.arange(ids.size), ids] = 1.0
    return tape.constant(name, y, **({"role": "data", "integer": True} | attrs))
