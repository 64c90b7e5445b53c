"""LayerNorm, recorded step by step so that each step is a block a learner can follow:

    μ  = mean_j x              (T, 1)   row_mean      AVERAGE of the row
    σ² = mean_j (x − μ)²       (T, 1)   row_var       population variance
    x̂  = (x − μ)/√(σ² + ε)     (T, d)   normalize     ε (1, 1) an input, e.g. a named cell
    y  = x̂ ⊙ γ + β             (T, d)   affine        γ, β (1, d) learned

Every step records its exact partial derivatives; the tape sums x's three contributions (through
μ, σ² and x̂ directly).
"""

from __future__ import annotations

import numpy as np

from tracer.core.linalg import COL_DOT, MUL, SUM_ROWS
from tracer.core.op import Op, dot, no_grad, only, record


class RowMean(Op):
    """μ_i = (1/d) Σ_j x[i, j]: x (T, d) → (T, 1).  Cell: AVERAGE(row i)."""

    name = "row_mean"

    def forward(self, x, **attrs):
        return x.sum(axis=1, keepdims=True) / x.shape[1]

    def formula(self, c, i, j):
        return f"AVERAGE({c.row(0, i)[0]})"

    def backward(self, out, g, wanted):
        (x,) = out.inputs
        return only(wanted, lambda: record(ROW_MEAN_GRAD, x, g))


class RowMeanGrad(Op):
    """dx[i, j] = g_i / d: x (T, d) (for its shape), g (T, 1) → (T, d).  Cell: g_i/d."""

    name = "row_mean_grad"

    def forward(self, x, g, **attrs):
        return np.broadcast_to(g / x.shape[1], x.shape).copy()

    def formula(self, c, i, j):
        return f"{c.at(1, i, j)}/{c.shape(0)[1]}"


class RowVar(Op):
    """σ²_i = (1/d) Σ_j (x[i, j] − μ_i)²: x (T, d), μ (T, 1) → (T, 1) (population variance).
    Cell: SUMPRODUCT((row i − μ_i)^2)/d."""

    name = "row_var"

    def forward(self, x, mu, **attrs):
        return ((x - mu) ** 2).sum(axis=1, keepdims=True) / x.shape[1]

    def formula(self, c, i, j):
        return f"SUMPRODUCT(({c.row(0, i)[0]}-{c.at(1, i, 0)})^2)/{c.shape(0)[1]}"

    def backward(self, out, g, wanted):
        x, mu = out.inputs
        return only(wanted, lambda: record(ROW_VAR_GRAD_X, x, mu, g),
                      lambda: record(ROW_VAR_GRAD_MU, x, mu, g))


class RowVarGradX(Op):
    """∂σ²/∂x times g: dx[i, j] = 2 (x[i, j] − μ_i) g_i / d: x (T, d), μ (T, 1), g (T, 1) → (T, d)."""

    name = "row_var_grad_x"

    def forward(self, x, mu, g, **attrs):
        return 2 * (x - mu) * g / x.shape[1]

    def formula(self, c, i, j):
        return f"2*({c.at(0, i, j)}-{c.at(1, i, j)})*{c.at(2, i, j)}/{c.shape(0)[1]}"


class RowVarGradMu(Op):
    """∂σ²/∂μ times g: dμ_i = −(2/d) g_i Σ_j (x[i, j] − μ_i): x (T, d), μ (T, 1), g (T, 1) → (T, 1).
    0 up to rounding when μ is the row's mean; recorded as the honest partial derivative."""

    name = "row_var_grad_mu"

    def forward(self, x, mu, g, **attrs):
        return -2 * g * (x - mu).sum(axis=1, keepdims=True) / x.shape[1]

    def formula(self, c, i, j):
        return f"-2*{c.at(2, i, 0)}*SUMPRODUCT({c.row(0, i)[0]}-{c.at(1, i, 0)})/{c.shape(0)[1]}"


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
        return only(wanted, lambda: record(NORMALIZE_GRAD_X, var, eps, g),
                      lambda: record(NORMALIZE_GRAD_MU, var, eps, g),
                      lambda: record(NORMALIZE_GRAD_VAR, out, var, eps, g), no_grad(self.name, "ε"))


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
        return f"-SUM({c.row(2, i)[0]})/SQRT({c.at(0, i, 0)}+{c.at(1, i, 0)})"


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
    Gradient: dx̂ = g ⊙ γ (MUL), dγ_j = Σ_i g_ij x̂_ij (col_dot), dβ = Σ_i g_ij (SUM_ROWS)."""

    name = "affine"

    def forward(self, xhat, gamma, beta, **attrs):
        if gamma.shape != (1, xhat.shape[1]) or beta.shape != (1, xhat.shape[1]):
            raise ValueError(f"affine: γ and β must be (1, {xhat.shape[1]}), got {gamma.shape}, {beta.shape}")
        return xhat * gamma + beta

    def formula(self, c, i, j):
        return f"{c.at(0, i, j)}*{c.at(1, i, j)}+{c.at(2, i, j)}"

    def backward(self, out, g, wanted):
        xhat, gamma, _ = out.inputs
        return only(wanted, lambda: record(MUL, g, gamma), lambda: record(COL_DOT, g, xhat),
                      lambda: record(SUM_ROWS, g))


ROW_MEAN, ROW_MEAN_GRAD = RowMean(), RowMeanGrad()
ROW_VAR, ROW_VAR_GRAD_X, ROW_VAR_GRAD_MU = RowVar(), RowVarGradX(), RowVarGradMu()
NORMALIZE, NORMALIZE_GRAD_X, NORMALIZE_GRAD_MU, NORMALIZE_GRAD_VAR = (
    Normalize(), NormalizeGradX(), NormalizeGradMu(), NormalizeGradVar())
AFFINE = Affine()


OPS = {op.name: op for op in (
    ROW_MEAN, ROW_MEAN_GRAD, ROW_VAR, ROW_VAR_GRAD_X, ROW_VAR_GRAD_MU,
    NORMALIZE, NORMALIZE_GRAD_X, NORMALIZE_GRAD_MU, NORMALIZE_GRAD_VAR, AFFINE,
)}


def _named(base, part):
    return None if base is None else f"{base}_{part}"


def layer_norm(x, gamma, beta, eps, name=None):
    """LayerNorm over the last axis, recorded as μ = `<name>_mu`, σ² = `<name>_var`,
    x̂ = `<name>_xhat` and y = `<name>`.  eps: a (1, 1) tensor (e.g. a named hyperparameter cell)."""
    mu = record(ROW_MEAN, x, name=_named(name, "mu"))
    var = record(ROW_VAR, x, mu, name=_named(name, "var"))
    xhat = record(NORMALIZE, x, mu, var, eps, name=_named(name, "xhat"))
    return record(AFFINE, xhat, gamma, beta, name=name)
