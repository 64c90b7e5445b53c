"""Losses: a (1, 1) number from an output and what it should have been, each with its gradient.

    bce            recon = −Σ [x ln x̂ + (1−x) ln(1−x̂)]          the VAE's reconstruction (a sum)
    kl             −½ Σ (1 + log σ² − μ² − e^(log σ²))            KL(N(μ, σ²) ‖ N(0, I))
    neg_mean_ln    −mean ln a,  neg_mean_ln1m  −mean ln(1 − a)   a GAN's losses on D's answers
    xent           −(1/T) Σ_i Σ_j Y_ij ln P_ij                    cross-entropy, one-hot targets Y
    soft_xent      −(1/N) Σ_i Σ_j T_ij ln P_ij                    cross-entropy, soft targets T (rows sum to 1)
    nll            ℓ_i = −ln P[i, y_i]   (T, 1)                   cross-entropy, target ids y (sparse)
    mean           (1/n) Σ a                                     e.g. L = mean of ℓ
    neg_mean       −(1/n) Σ a                                    e.g. L = −mean log p(x)
    masked_mean    Σ m_i a_i / Σ m_i                             the mean over the masked positions
    half_sse       ½ Σ (y − ŷ)²                                  gradient  g · (ŷ − y)
    mse            (1/n) Σ (ŷ − y)²                              gradient  g · 2 (ŷ − y) / n
    bce_mean       −(1/n) Σ [y ln ŷ + (1 − y) ln(1 − ŷ)]         gradient  g · ((1 − y)/(1 − ŷ) − y/ŷ) / n
    sse            Σ (ŷ − y)²                                    gradient  g · 2 (ŷ − y)
    bce_logits_mean, bce_logits_sum   the BCE of σ(z), from the logits z, the mean or the sum of
                   max(z, 0) − z y + ln(1 + e^(−|z|))            gradient  g · (σ(z) − y) (/ n)
    neg_pick       ℓ_i = −a[i, y_i]   (T, 1)                      a log-probability picked by id y_i
    soft_nll       −(1/N) Σ_i Σ_j Y_ij a_ij                      a the log-probabilities, Y the target ones

ŷ (an output) and y (the targets) of the pair losses are N × k blocks, one row per example;
n = N·k: the means run over every output of every example.  A pair loss takes ŷ first and the
targets second, like xent.

Portable formulas: a loss whose terms need LN or EXP is a Composite (tracer.core.op): first its
terms, one cell each (`<name>_terms`: bce_terms, kl_terms, neg_ln, neg_ln1m, xent_terms,
soft_xent_terms), then their SUM (or SUM/n for a mean, n a literal).  The others are one
SUMPRODUCT of arithmetic over whole blocks, which therefore must be laid out the same way.  Each gradient rule is the whole
loss's, with respect to its inputs.
"""

from __future__ import annotations

import numpy as np

from tracer.core.linalg import MUL
from tracer.core.op import (
    Composite,
    Elementwise,
    Op,
    Reduce,
    dot,
    no_grad,
    only,
    record,
    same_way,
    total,
)


class SumOfTerms(Composite):
    """A loss in two blocks: its terms, one per cell (`<name>_terms`, the op `terms` applied to
    the inputs in the order `order`), then their sum, divided by `per`: 1 (a sum), "cells" (the
    mean of every term) or "rows" (the mean over the examples of each row's sum).  `grad` is the
    whole loss's gradient rule, grad(out, g, wanted, *inputs)."""

    by_cells = True  # its formula is the SUM of its terms' block (one range per band)

    def __init__(self, name, terms, grad, n_in=2, order=(0, 1), per=1):
        self.name, self.grad, self.n_in, self.per = name, grad, n_in, per
        self.steps = (("terms", terms, *order),)

    def divisor(self, shape) -> int:
        return {1: 1, "cells": shape[0] * shape[1], "rows": shape[0]}[self.per]

    def finish(self, *xs):
        terms = xs[-1]
        return np.array([[np.sum(terms) / self.divisor(terms.shape)]])

    def formula(self, c, i, j):
        return total(c.all(c.n - 1), self.divisor(c.shape(c.n - 1)))


# --- the VAE: reconstruction and KL ---------------------------------------------------------------

# each pixel's −[x ln x̂ + (1−x) ln(1−x̂)]: inputs the targets, then the probabilities
BCE_TERMS = Elementwise(
    "bce_terms", lambda x, xh: -(x * np.log(xh) + (1 - x) * np.log(1 - xh)), "-({0}*LN({1})+(1-{0})*LN(1-{1}))"
)
BCE_GRAD = Elementwise(
    "bce_grad", lambda x, xh, g: g * ((1 - x) / (1 - xh) - x / xh), "{2}*((1-{0})/(1-{1})-{0}/{1})"
)
BCE = SumOfTerms(  # recon = −Σ [x ln x̂ + (1−x) ln(1−x̂)]: inputs x, x̂
    "bce", BCE_TERMS,
    grad=lambda out, g, w, x, xh: only(w, no_grad("bce", "the data"), lambda: record(BCE_GRAD, x, xh, g)),
)
# each latent unit's KL: −½ (1 + logvar − μ² − exp(logvar))
KL_TERMS = Elementwise(
    "kl_terms", lambda mu, lv: -0.5 * (1 + lv - mu**2 - np.exp(lv)), "-0.5*(1+{1}-{0}^2-EXP({1}))"
)
KL_LOGVAR_GRAD = Elementwise("kl_logvar_grad", lambda g, lv: g * (np.exp(lv) - 1) / 2, "{0}*(EXP({1})-1)/2")
KL = SumOfTerms(  # kl = −½ Σ (1 + logvar − μ² − exp(logvar)): inputs μ, logvar
    "kl", KL_TERMS,
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
NEG_LN = Elementwise("neg_ln", lambda a: -np.log(a), "-LN({0})")
NEG_LN1M = Elementwise("neg_ln1m", lambda a: -np.log(1 - a), "-LN(1-{0})")
NEG_MEAN_LN = SumOfTerms(  # −mean ln D(x): a GAN's loss on "real" answers
    "neg_mean_ln", NEG_LN, n_in=1, order=(0,), per="cells",
    grad=lambda out, g, w, a: only(w, lambda: record(NEG_MEAN_LN_GRAD, a, g)),
)
NEG_MEAN_LN1M = SumOfTerms(  # −mean ln(1 − D(x)): a GAN's loss on "fake" answers
    "neg_mean_ln1m", NEG_LN1M, n_in=1, order=(0,), per="cells",
    grad=lambda out, g, w, a: only(w, lambda: record(NEG_MEAN_LN1M_GRAD, a, g)),
)


# --- cross-entropy with one-hot targets ----------------------------------------------------------

class CrossEntropyTerms(Op):
    """ℓ_i = −ln P[i, target_i] = −ln Σ_j Y[i, j] P[i, j]: P (T, V), Y (T, V) one-hot → (T, 1),
    the loss at each position.  Cell: −LN(SUMPRODUCT(row i of Y, row i of P)) (the sum is the
    one probability its 1 picks)."""

    name = "xent_terms"

    def forward(self, p, y, **attrs):
        return -np.log((y * p).sum(axis=1, keepdims=True))

    def formula(self, c, i, j):
        same_way(c, 0, 1, "xent")
        return f"-LN({dot(c.row(1, i), c.row(0, i))})"


class CrossEntropy(Composite):
    """L = −(1/T) Σ_i Σ_j Y[i, j] ln P[i, j] = (1/T) Σ_i ℓ_i, ℓ_i = −ln P[i, target_i]: P (T, V)
    probabilities (after softmax, so every P > 0), Y (T, V) one-hot targets (a constant) → (1, 1),
    in two blocks: ℓ (`<name>_terms`, xent_terms), then SUM(ℓ)/T (T a literal).  numpy adds
    Σ_ij Y_ij ℓ_i, which is Σ_i ℓ_i in the order numpy adds −Σ Y ⊙ ln P: the loss keeps every bit
    of the one-formula cross-entropy it was before the split.

    Y one-hot rather than a column of target ids: the target of each row is visible as the 1 in
    its row, no lookup.  Gradient: xent_grad, −g·Y/(T·P); after a softmax, softmax_grad turns it
    into (P − Y)/T."""

    name = "xent"
    n_in = 2
    steps = (("terms", CrossEntropyTerms(), 0, 1),)

    def finish(self, p, y, terms):
        return np.array([[np.sum(y * terms) / p.shape[0]]])

    def formula(self, c, i, j):
        return total(c.all(2), c.shape(0)[0])

    def grad(self, out, g, wanted, p, y):
        return only(wanted, lambda: record(XENT_GRAD, p, y, g), no_grad(self.name, "the targets"))


class CrossEntropyGrad(Op):
    """dP = −g·Y/(T·P): P (T, V), Y (T, V), g (1, 1) → (T, V); nonzero only at the targets."""

    name = "xent_grad"

    def forward(self, p, y, g, **attrs):
        return -g * y / (p.shape[0] * p)

    def formula(self, c, i, j):
        return f"-{c.at(2, i, j)}*{c.at(1, i, j)}/({c.shape(0)[0]}*{c.at(0, i, j)})"


XENT, XENT_GRAD = CrossEntropy(), CrossEntropyGrad()
XENT_TERMS = XENT.steps[0][1]


# --- cross-entropy with soft targets (each row of T probabilities summing to 1) -----------------

# each output's −t_ij ln p_ij: inputs the probabilities P, then the targets T
SOFT_XENT_TERMS = Elementwise("soft_xent_terms", lambda p, t: -t * np.log(p), "-{1}*LN({0})")
SOFT_XENT = SumOfTerms(  # L = −(1/N) Σ_i Σ_j t_ij ln p_ij: inputs P, T; the gradient is xent's, −g·T/(N·P)
    "soft_xent", SOFT_XENT_TERMS, per="rows",
    grad=lambda out, g, w, p, t: only(w, lambda: record(XENT_GRAD, p, t, g), no_grad("soft_xent", "the targets")),
)


# --- cross-entropy with the targets as ids (sparse), one cell per position ----------------------

class NegPick(Op):
    """ℓ_i = −ln P[i, y_i] (`log`; P (T, V) probabilities: nll) or ℓ_i = −a[i, y_i] (a (T, V)
    log-probabilities: neg_pick), y (T, 1) target ids (a constant) → (T, 1), the loss at each
    position on its own.  Cell: −LN(INDEX(row i of P, y_i + 1)) (or −INDEX(…)): the lookup picks
    the one probability, LN gets that single cell.  Gradient: nll_grad, −g_i / P[i, y_i] at the
    target and 0 elsewhere (after a softmax, softmax_grad turns it into g_i·(P_i − onehot(y_i)));
    neg_pick_grad, −g_i at the target."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def forward(self, p, y, **attrs):
        picked = p[np.arange(p.shape[0]), _targets(y, p.shape[1])].reshape(-1, 1)
        return -np.log(picked) if self.log else -picked

    def formula(self, c, i, j):
        row, down, _ = c.row(0, i)
        k = f"{c.at(1, i, 0)}+1"
        pick = f"INDEX({row},{k},1)" if down else f"INDEX({row},1,{k})"
        return f"-LN({pick})" if self.log else f"-{pick}"

    def backward(self, out, g, wanted):
        p, y = out.inputs
        grad = NLL_GRAD if self.log else NEG_PICK_GRAD
        return only(wanted, lambda: record(grad, p, y, g), no_grad(self.name, "the targets"))


class NegLogPickGrad(Op):
    """dP[i, j] = −g_i / P[i, j] where j = y_i, else 0: P (T, V), y (T, 1), g (T, 1) → (T, V).
    Cell: IF(y_i = j, −g_i / P[i, j], 0)."""

    name = "nll_grad"

    def forward(self, p, y, g, **attrs):
        hit = np.arange(p.shape[1])[None, :] == _targets(y, p.shape[1])[:, None]
        return np.where(hit, -g / np.where(hit, p, 1.0), 0.0)

    def formula(self, c, i, j):
        return f"IF({c.at(1, i, 0)}={j},-{c.at(2, i, 0)}/{c.at(0, i, j)},0)"


def _targets(y, vocab):
    idx = y[:, 0].astype(np.int64)
    if y.ndim != 2 or y.shape[1] != 1 or np.any(idx != y[:, 0]) or np.any(idx < 0) or np.any(idx >= vocab):
        raise ValueError(f"target ids must be a column of integers in 0 … {vocab - 1}")
    return idx


class Mean(Op):
    """The mean of every cell: a (m, n) → (1, 1).  Cell: AVERAGE(a) (neg_mean: −AVERAGE(a), e.g. a
    flow's L = −mean log p(x)).  Gradient: mean_grad (neg_mean_grad)."""

    def __init__(self, name, sign=1):
        self.name, self.sign = name, sign
        self.grad_op = MeanGrad(name + "_grad", sign)

    def forward(self, a, **attrs):
        return np.array([[a.mean() if self.sign > 0 else -a.mean()]])

    def formula(self, c, i, j):
        return f"{'' if self.sign > 0 else '-'}AVERAGE({c.all(0)})"

    def backward(self, out, g, wanted):
        return only(wanted, lambda: record(self.grad_op, out.inputs[0], g))


class MeanGrad(Op):
    """da = g / n in every cell (−g / n for neg_mean): a (m, n) (for its shape), g (1, 1) → (m, n),
    n = m·n cells."""

    def __init__(self, name, sign=1):
        self.name, self.sign = name, sign

    def forward(self, a, g, **attrs):
        return np.broadcast_to((g if self.sign > 0 else -g) / a.size, a.shape).copy()

    def formula(self, c, i, j):
        rows, cols = c.shape(0)
        return f"{'' if self.sign > 0 else '-'}{c.at(1, 0, 0)}/{rows * cols}"


class MaskedMean(Op):
    """The mean over the chosen rows: a (T, 1), m (T, 1) weights 1 (chosen) or 0 → (1, 1),
    Σ m_i a_i / Σ m_i (a masked language model's loss: only the masked positions count).
    Cell: SUMPRODUCT(a, m)/SUM(m).  Gradient: masked_mean_grad; none for m."""

    name = "masked_mean"

    def forward(self, a, m, **attrs):
        return np.array([[(a * m).sum() / m.sum()]])

    def formula(self, c, i, j):
        same_way(c, 0, 1, self.name)
        return f"SUMPRODUCT({c.all(0)},{c.all(1)})/SUM({c.all(1)})"

    def backward(self, out, g, wanted):
        _, m = out.inputs
        return only(wanted, lambda: record(MASKED_MEAN_GRAD, m, g), no_grad(self.name, "the mask"))


class MaskedMeanGrad(Op):
    """da_i = g · m_i / Σ m: m (T, 1), g (1, 1) → (T, 1).  Cell: g*m_i/SUM(m)."""

    name = "masked_mean_grad"

    def forward(self, m, g, **attrs):
        return g * m / m.sum()

    def formula(self, c, i, j):
        return f"{c.at(1, 0, 0)}*{c.at(0, i, 0)}/SUM({c.all(0)})"


NLL, NLL_GRAD = NegPick("nll", log=True), NegLogPickGrad()
MEAN, NEG_MEAN, MASKED_MEAN, MASKED_MEAN_GRAD = Mean("mean"), Mean("neg_mean", -1), MaskedMean(), MaskedMeanGrad()
MEAN_GRAD, NEG_MEAN_GRAD = MEAN.grad_op, NEG_MEAN.grad_op


# --- a network's output against its targets: ½ Σ squared errors, mse, mean bce ------------------

class PairLoss(Reduce):
    """A (1, 1) loss of ŷ and y: `fn(ŷ, y)` in numpy, `excel` a template over their whole ranges
    {0} (ŷ) and {1} (y) and their cell count {n}; the gradient goes to ŷ only (y is data)."""

    def formula(self, c, i, j):
        same_way(c, 0, 1, self.name)
        rows, cols = c.shape(0)
        return self.excel.format(c.all(0), c.all(1), n=rows * cols, rows=rows)


class PairLossGrad(Op):
    """The gradient of a PairLoss with respect to ŷ, cell by cell: inputs ŷ, y (same shape) and
    g (1, 1); `fn(ŷ, y, g, n)` in numpy, `excel` a template over the cells {0}, {1}, {2} and {n}."""

    by_cells = True

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
BCE_MEAN = SumOfTerms(  # inputs ŷ, y; the terms read the targets first
    "bce_mean", BCE_TERMS, order=(1, 0), per="cells", grad=_grad_to_output(BCE_MEAN_GRAD, "bce_mean"),
)

SSE_GRAD = PairLossGrad("sse_grad", lambda p, y, g, n: g * 2 * (p - y), "{2}*2*({0}-{1})")
SSE = PairLoss("sse", lambda p, y: np.sum((p - y) ** 2), "SUMPRODUCT(({0}-{1})^2)", grad=_grad_to_output(SSE_GRAD, "sse"))


# --- from logits: the binary cross-entropy of σ(z), without σ(z) (PyTorch's BCEWithLogitsLoss) ---

# each cell's max(z, 0) − z·y + ln(1 + e^(−|z|)) = −[y ln σ(z) + (1 − y) ln(1 − σ(z))], never
# exp of a large number: inputs the logits z, then the targets y
BCE_LOGITS_TERMS = Elementwise(
    "bce_logits_terms", lambda z, y: np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))),
    "MAX({0},0)-{0}*{1}+LN(1+EXP(-ABS({0})))",
)
BCE_LOGITS_MEAN_GRAD = PairLossGrad(
    "bce_logits_mean_grad", lambda z, y, g, n: g * (1 / (1 + np.exp(-z)) - y) / n, "{2}*(1/(1+EXP(-{0}))-{1})/{n}")
BCE_LOGITS_SUM_GRAD = PairLossGrad(
    "bce_logits_sum_grad", lambda z, y, g, n: g * (1 / (1 + np.exp(-z)) - y), "{2}*(1/(1+EXP(-{0}))-{1})")
BCE_LOGITS_MEAN = SumOfTerms("bce_logits_mean", BCE_LOGITS_TERMS, per="cells",
                             grad=_grad_to_output(BCE_LOGITS_MEAN_GRAD, "bce_logits_mean"))
BCE_LOGITS_SUM = SumOfTerms("bce_logits_sum", BCE_LOGITS_TERMS,
                            grad=_grad_to_output(BCE_LOGITS_SUM_GRAD, "bce_logits_sum"))


# --- log-probabilities against target ids or target probabilities (NLLLoss, CrossEntropyLoss) ---

class NegPickGrad(Op):
    """da[i, j] = −g_i where j = y_i, else 0: a (T, V) (for its shape), y (T, 1), g (T, 1) → (T, V).
    Cell: IF(y_i = j, −g_i, 0)."""

    name = "neg_pick_grad"

    def forward(self, a, y, g, **attrs):
        hit = np.arange(a.shape[1])[None, :] == _targets(y, a.shape[1])[:, None]
        return np.where(hit, -g, 0.0)

    def formula(self, c, i, j):
        return f"IF({c.at(1, i, 0)}={j},-{c.at(2, i, 0)},0)"


NEG_PICK, NEG_PICK_GRAD = NegPick("neg_pick", log=False), NegPickGrad()


class SoftNllGrad(Op):
    """da = −g·Y/N: a (N, V) log-probabilities (for N), Y (N, V), g (1, 1) → (N, V)."""

    name = "soft_nll_grad"

    def forward(self, a, y, g, **attrs):
        return -g * y / a.shape[0]

    def formula(self, c, i, j):
        return f"-{c.at(2, i, j)}*{c.at(1, i, j)}/{c.shape(0)[0]}"


SOFT_NLL_GRAD = SoftNllGrad()
SOFT_NLL = PairLoss(  # −(1/N) Σ Y ⊙ log P: the cross-entropy of target probabilities Y from log P, N rows
    "soft_nll", lambda a, y: -np.sum(y * a) / a.shape[0], "-SUMPRODUCT({1},{0})/{rows}",
    grad=_grad_to_output(SOFT_NLL_GRAD, "soft_nll"),
)

OPS = {op.name: op for op in (
    SSE, SSE_GRAD, BCE_LOGITS_TERMS, BCE_LOGITS_MEAN, BCE_LOGITS_SUM, BCE_LOGITS_MEAN_GRAD, BCE_LOGITS_SUM_GRAD,
    NEG_PICK, NEG_PICK_GRAD, SOFT_NLL, SOFT_NLL_GRAD,
    BCE_TERMS, BCE, BCE_GRAD, KL_TERMS, KL, KL_LOGVAR_GRAD, NEG_LN, NEG_LN1M, NEG_MEAN_LN, NEG_MEAN_LN1M,
    NEG_MEAN_LN_GRAD, NEG_MEAN_LN1M_GRAD, XENT_TERMS, XENT, XENT_GRAD, SOFT_XENT_TERMS, SOFT_XENT, HALF_SSE, HALF_SSE_GRAD, MSE, MSE_GRAD,
    BCE_MEAN, BCE_MEAN_GRAD, NLL, NLL_GRAD, MEAN, MEAN_GRAD, NEG_MEAN, NEG_MEAN_GRAD, MASKED_MEAN, MASKED_MEAN_GRAD,
)}


# --- what a model calls -------------------------------------------------------------------------

def bce(x, x_hat, name=None):
    """−Σ [x ln x̂ + (1−x) ln(1−x̂)], recorded as its terms `<name>_terms` and their sum."""
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


def soft_cross_entropy(probs, targets, name=None):
    """−(1/N) Σ_i Σ_j targets_ij ln probs_ij, recorded as its N × k terms −t_ij ln p_ij
    (`<name>_terms`) and their sum over N: targets any rows of probabilities summing to 1."""
    return record(SOFT_XENT, probs, targets, name=name)


def nll(probs, ids, name=None):
    """−ln P[i, y_i] at each position i (T, 1): probs (T, V), ids (T, 1) the target ids."""
    return record(NLL, probs, ids, name=name)


def mean(a, name=None):
    """The mean of a's cells (1, 1)."""
    return record(MEAN, a, name=name)


def neg_mean(a, name=None):
    """−(the mean of a's cells) (1, 1)."""
    return record(NEG_MEAN, a, name=name)


def masked_mean(a, m, name=None):
    """Σ m_i a_i / Σ m_i (1, 1): the mean of a over the rows m marks with 1."""
    return record(MASKED_MEAN, a, m, name=name)


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
