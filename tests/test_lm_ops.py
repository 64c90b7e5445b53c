"""tracer.lm_ops: the ops of a language model.

* numpy forwards against independent references (loops, math, other algebraic forms);
* gradient rules against central differences of those references (a tiny tape, Tape.backward,
  a weighted-sum loss), op by op and through whole chains (LayerNorm, softmax + cross-entropy,
  a small attention model checked by tracer.gradcheck);
* the cell formulas: their text, their portability, and their values recalculated in LibreOffice
  (the real exporter with a Template; and a sheet laid out by hand where inputs run across and
  down in every combination), plus a formula broken on purpose that the check catches.

The workbook's equations and notes are templates/common.toml's.
"""

from __future__ import annotations

import math
import re
import statistics
import types

import numpy as np
import pytest
import xlsxwriter
from conftest import ops_template
from families import BASIC, LANGUAGE, ops_of

from tracer.checks import verify
from tracer.checks.gradcheck import gradcheck
from tracer.core import (
    OPS,
    activations,
    attention,
    embeddings,
    linalg,
    losses,
    normalization,
)
from tracer.core import op as core_op
from tracer.core.tape import Tape
from tracer.engines.workbook import address
from tracer.render.layout import Block, Cells, Layout, Place
from tracer.render.template import LANGS, Template
from tracer.render.xlsx import write_xlsx

LM_OPS = ops_of(LANGUAGE)


def rng(tag: str):
    return np.random.default_rng([20240611, sum(map(ord, tag)), len(tag)])


def one_hot(ids, vocab):
    y = np.zeros((len(ids), vocab))
    y[np.arange(len(ids)), ids] = 1.0
    return y


def positive(r, *shape):
    return r.uniform(0.2, 2.0, size=shape)


def stats(x):
    """The row mean and population variance of x."""
    return x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)


def probs(r, T, V):
    """Rows of probabilities (each row sums to 1), none tiny."""
    p = r.uniform(0.2, 1.0, size=(T, V))
    return p / p.sum(axis=1, keepdims=True)


# --- independent references -------------------------------------------------------------------

def cellwise(f, shape_of=0):
    """out[i, j] = f(i, j, *inputs) over the shape of input `shape_of`."""
    def ref(*xs):
        out = np.empty(xs[shape_of].shape)
        for i, j in np.ndindex(out.shape):
            out[i, j] = f(i, j, *xs)
        return out
    return ref


def rowwise(f):
    """A (T, 1) column: f(row, i, *inputs) per row of input 0."""
    def ref(*xs):
        return np.array([[f(list(xs[0][i]), i, *xs)] for i in range(xs[0].shape[0])])
    return ref


def ref_softmax(x, causal=False):
    out = np.zeros(x.shape)
    for i in range(x.shape[0]):
        n = min(i + 1, x.shape[1]) if causal else x.shape[1]
        m = max(x[i, :n])
        e = [math.exp(v - m) for v in x[i, :n]]
        s = math.fsum(e)
        out[i, :n] = [v / s for v in e]
    return out


def ref_softmax_grad(y, g):
    """The Jacobian of each row, diag(y) − y yᵀ, times g."""
    return np.stack([(np.diag(yr) - np.outer(yr, yr)) @ gr for yr, gr in zip(y, g)])


def targets_of(y):
    return [int(np.flatnonzero(row)[0]) for row in y]


def ref_softmax_exp(x, causal=False):
    """e^(x − the row's max) over the columns a row sees; 0 after them (causal)."""
    out = np.zeros(x.shape)
    for i in range(x.shape[0]):
        n = min(i + 1, x.shape[1]) if causal else x.shape[1]
        m = max(x[i, :n])
        out[i, :n] = [math.exp(v - m) for v in x[i, :n]]
    return out


def ref_xent_terms(p, y):
    """−ln of each row's target probability."""
    return np.array([[-math.log(p[i, t])] for i, t in enumerate(targets_of(y))])


def ref_xent(p, y):
    return np.array([[-math.fsum(math.log(p[i, t]) for i, t in enumerate(targets_of(y))) / p.shape[0]]])


def ref_softmax_xent(z, p, y):
    """softmax then cross-entropy, from the logits: −mean (z[i, t_i] − log Σ_j e^{z_ij}); p is
    not read."""
    total = 0.0
    for i, t in enumerate(targets_of(y)):
        m = max(z[i])
        total += z[i, t] - m - math.log(math.fsum(math.exp(v - m) for v in z[i]))
    return np.array([[-total / z.shape[0]]])


def ref_embed(E, ids):
    return np.array([E[int(k)] for k in ids[:, 0]])


def ref_embed_grad(ids, g, vocab):
    out = np.zeros((vocab, g.shape[1]))
    for v in range(vocab):
        for j in range(g.shape[1]):
            out[v, j] = math.fsum(g[i, j] for i in range(g.shape[0]) if ids[i, 0] == v)
    return out


def ref_layer_norm_xhat(x, eps):
    """Textbook LayerNorm without γ, β: statistics' exact mean and population variance of each
    row of x."""
    out = np.empty(x.shape)
    for i, row in enumerate(x):
        m, v = statistics.fmean(row), statistics.pvariance(row)
        out[i] = [(a - m) / math.sqrt(v + eps[0, 0]) for a in row]
    return out


def ref_layernorm_grad(xhat, var, eps, g):
    """gᵀ J per row with the Jacobian J[j, k] = ∂x̂_j/∂x_k = (δ_jk − 1/d − x̂_j x̂_k / d) / s."""
    d = xhat.shape[1]
    out = np.empty(xhat.shape)
    for i in range(xhat.shape[0]):
        s = math.sqrt(var[i, 0] + eps[0, 0])
        J = (np.eye(d) - 1 / d - np.outer(xhat[i], xhat[i]) / d) / s
        out[i] = g[i] @ J
    return out


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def _u(x):
    return math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)


def ref_gelu(x):
    """x·σ(2u): the same tanh approximation, since ½(1 + tanh u) = σ(2u)."""
    return cellwise(lambda i, j, a: a[i, j] * _sigmoid(2 * _u(a[i, j])))(x)


def ref_gelu_grad(x, g):
    def f(i, j, a, gg):
        v = a[i, j]
        s = _sigmoid(2 * _u(v))
        du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * v * v)
        return gg[i, j] * (s + v * s * (1 - s) * 2 * du)
    return cellwise(f)(x, g)


def ref_pos_encoding(pos, dim):
    """Vaswani et al.: PE(p, 2k) = sin(p / 10000^(2k/d)), PE(p, 2k+1) = cos(p / 10000^(2k/d))."""
    d = dim.shape[1]
    assert list(dim[0]) == list(range(d))
    out = np.empty((pos.shape[0], d))
    for r, p in enumerate(pos[:, 0]):
        for k in range((d + 1) // 2):
            w = p / 10000 ** (2 * k / d)
            out[r, 2 * k] = math.sin(w)
            if 2 * k + 1 < d:
                out[r, 2 * k + 1] = math.cos(w)
    return out


def ref_concat(*xs):
    return np.array([[v for x in xs for v in x[i]] for i in range(xs[0].shape[0])])


def ref_cosine(E):
    n = E.shape[0]
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = math.fsum(E[i] * E[j]) / math.sqrt(math.fsum(E[i] ** 2) * math.fsum(E[j] ** 2))
    return out


def ref_nearest(cos, k=2):
    """By hand: for each row, repeatedly take the largest remaining other column (first on ties)."""
    out = []
    for i, row in enumerate(cos):
        left = [j for j in range(len(row)) if j != i]
        picked = []
        for _ in range(k):
            best = max(left, key=lambda j: (row[j], -j))
            picked.append(best)
            left.remove(best)
        out.append(picked)
    return np.array(out, dtype=float)


REFERENCE = {
    "rsqrt": lambda a: np.vectorize(lambda v: 1 / math.sqrt(v))(a),
    "cosine": ref_cosine,
    "nearest": ref_nearest,
    "softmax": ref_softmax,
    "causal_softmax": lambda x: ref_softmax(x, causal=True),
    "softmax_exp": ref_softmax_exp,
    "causal_softmax_exp": lambda x: ref_softmax_exp(x, causal=True),
    "softmax_grad": ref_softmax_grad,
    "xent_terms": ref_xent_terms,
    "xent": ref_xent,
    "xent_grad": cellwise(lambda i, j, p, y, g: -g[0, 0] * y[i, j] / (p.shape[0] * p[i, j])),
    "embed": ref_embed,
    "embed_grad": ref_embed_grad,
    "row_mean": rowwise(lambda row, i, x: statistics.fmean(row)),
    "row_mean_grad": cellwise(lambda i, j, x, g: g[i, 0] / x.shape[1]),
    "row_var": rowwise(lambda row, i, x, mu: math.fsum((v - mu[i, 0]) ** 2 for v in row) / len(row)),
    "row_var_grad_x": cellwise(lambda i, j, x, mu, g: 2 * (x[i, j] - mu[i, 0]) * g[i, 0] / x.shape[1]),
    "row_var_grad_mu": rowwise(lambda row, i, x, mu, g: -2 * g[i, 0] * math.fsum(v - mu[i, 0] for v in row) / len(row)),
    "normalize": cellwise(lambda i, j, x, mu, var, eps: (x[i, j] - mu[i, 0]) / math.sqrt(var[i, 0] + eps[0, 0])),
    "normalize_grad_x": cellwise(lambda i, j, var, eps, g: g[i, j] / math.sqrt(var[i, 0] + eps[0, 0]), shape_of=2),
    "normalize_grad_mu": lambda var, eps, g: np.array(
        [[-math.fsum(g[i]) / math.sqrt(var[i, 0] + eps[0, 0])] for i in range(g.shape[0])]),
    "normalize_grad_var": lambda xh, var, eps, g: np.array(
        [[-math.fsum(g[i] * xh[i]) * 0.5 / (var[i, 0] + eps[0, 0])] for i in range(g.shape[0])]),
    "affine": cellwise(lambda i, j, xh, gam, bet: gam[0, j] * xh[i, j] + bet[0, j]),
    "col_dot": lambda a, b: np.array([[math.fsum(a[:, j] * b[:, j]) for j in range(a.shape[1])]]),
    "gelu": ref_gelu,
    "gelu_grad": ref_gelu_grad,
    "pos_encoding": ref_pos_encoding,
    "slice_cols": None,  # per instance: see slice_ref
    "pad_cols": None,
    "concat_cols": ref_concat,
}


def slice_ref(start, width):
    return lambda x: np.array([[x[i, start + j] for j in range(width)] for i in range(x.shape[0])])


def pad_ref(start, width, cols):
    return lambda g: np.array([[g[i, j - start] if start <= j < start + width else 0.0
                                for j in range(cols)] for i in range(g.shape[0])])


# --- forward ----------------------------------------------------------------------------------

def forward_cases():
    """(case id, op, inputs, attrs, reference)."""
    r = rng("forward")
    n = r.normal
    x35, x16 = n(size=(3, 5)), n(size=(1, 6))
    p35, y35 = probs(r, 3, 5), one_hot([4, 0, 2], 5)
    xh = n(size=(3, 5))
    var, eps = positive(r, 3, 1), np.array([[1e-5]])
    xs = [
        ("softmax 3x5", activations.SOFTMAX, [x35]),
        ("softmax 1x6", activations.SOFTMAX, [x16]),
        ("softmax large logits", activations.SOFTMAX, [40 * n(size=(2, 4)) + 700]),  # exp would overflow unshifted
        ("causal_softmax 4x4", activations.CAUSAL_SOFTMAX, [n(size=(4, 4))]),
        ("causal_softmax 3x5", activations.CAUSAL_SOFTMAX, [x35]),
        ("causal_softmax 5x3", activations.CAUSAL_SOFTMAX, [n(size=(5, 3))]),
        ("softmax_exp 3x5", activations.SOFTMAX_EXP, [x35]),
        ("causal_softmax_exp 3x5", activations.CAUSAL_SOFTMAX_EXP, [x35]),
        ("causal_softmax_exp 5x3", activations.CAUSAL_SOFTMAX_EXP, [n(size=(5, 3))]),
        ("softmax_grad", activations.SOFTMAX_GRAD, [p35, n(size=(3, 5))]),
        ("xent_terms 3x5", losses.XENT_TERMS, [p35, y35]),
        ("xent 3x5", losses.XENT, [p35, y35]),
        ("xent 1x6", losses.XENT, [probs(r, 1, 6), one_hot([5], 6)]),
        ("xent_grad", losses.XENT_GRAD, [p35, y35, n(size=(1, 1))]),
        ("embed", embeddings.EMBED, [n(size=(6, 4)), np.array([[2.0], [5.0], [2.0]])]),
        ("embed V=1", embeddings.EMBED, [n(size=(1, 3)), np.array([[0.0], [0.0]])]),
        ("row_mean", normalization.ROW_MEAN, [x35]),
        ("row_mean_grad", normalization.ROW_MEAN_GRAD, [x35, n(size=(3, 1))]),
        ("row_var", normalization.ROW_VAR, [x35, n(size=(3, 1))]),
        ("row_var_grad_x", normalization.ROW_VAR_GRAD_X, [x35, n(size=(3, 1)), n(size=(3, 1))]),
        ("row_var_grad_mu", normalization.ROW_VAR_GRAD_MU, [x35, n(size=(3, 1)), n(size=(3, 1))]),
        ("normalize", normalization.NORMALIZE, [x35, n(size=(3, 1)), var, eps]),
        ("normalize_grad_x", normalization.NORMALIZE_GRAD_X, [var, eps, n(size=(3, 5))]),
        ("normalize_grad_mu", normalization.NORMALIZE_GRAD_MU, [var, eps, n(size=(3, 5))]),
        ("normalize_grad_var", normalization.NORMALIZE_GRAD_VAR, [xh, var, eps, n(size=(3, 5))]),
        ("affine", normalization.AFFINE, [xh, n(size=(1, 5)), n(size=(1, 5))]),
        ("col_dot", linalg.COL_DOT, [n(size=(3, 5)), xh]),
        ("gelu", activations.GELU, [3 * n(size=(3, 4))]),
        ("gelu_grad", activations.GELU_GRAD, [3 * n(size=(3, 4)), n(size=(3, 4))]),
        ("pos_encoding 5x6", embeddings.POS_ENCODING, [np.arange(5.0).reshape(5, 1), np.arange(6.0).reshape(1, 6)]),
        ("pos_encoding 3x5", embeddings.POS_ENCODING, [np.arange(3.0).reshape(3, 1), np.arange(5.0).reshape(1, 5)]),
        ("concat_cols 2", linalg.CONCAT_COLS, [n(size=(3, 2)), n(size=(3, 2))]),
        ("concat_cols 3 uneven", linalg.CONCAT_COLS, [n(size=(2, 1)), n(size=(2, 3)), n(size=(2, 2))]),
    ]
    cases = [(cid, op, ins, {}, REFERENCE[op.name]) for cid, op, ins in xs]
    ids6 = np.array([[2.0], [5.0], [2.0], [0.0]])
    cases.append(("embed_grad", embeddings.EMBED_GRAD, [ids6, n(size=(4, 3))], {"vocab": 7},
                  lambda ids, g: ref_embed_grad(ids, g, 7)))
    for a, w in ((0, 2), (2, 2), (1, 3)):
        cases.append((f"slice_cols {a},{w}", linalg.slice_cols(a, w), [n(size=(3, 4))], {}, slice_ref(a, w)))
        cases.append((f"pad_cols {a},{w}", linalg.pad_cols(a, w), [n(size=(3, w))], {"cols": 5}, pad_ref(a, w, 5)))
    for x in (x35, x16):  # with x's own statistics: textbook LayerNorm without γ, β
        cases.append((f"normalize {x.shape} own statistics", normalization.NORMALIZE, [x, *stats(x), eps], {},
                      lambda x, mu, var, e: ref_layer_norm_xhat(x, e)))
    E = n(size=(5, 3))
    cases.append(("cosine 5x3", embeddings.COSINE, [E], {}, ref_cosine))
    cases.append(("rsqrt 1x1", attention.RSQRT, [np.array([[4.0]])], {}, lambda a: np.array([[0.5]])))
    cases.append(("nearest k=2", embeddings.NEAREST, [ref_cosine(E)], {"k": 2}, lambda c: ref_nearest(c, 2)))
    return cases


FORWARD = forward_cases()


def test_every_op_has_a_reference_and_a_case():
    assert set(REFERENCE) == set(LM_OPS)
    assert {op.name for _, op, _, _, _ in FORWARD} == set(LM_OPS)
    assert all(op.name == name for name, op in LM_OPS.items())
    assert not set(LM_OPS) & set(BASIC)  # no name clashes with the basic ops


@pytest.mark.parametrize("case, op, inputs, attrs, ref", FORWARD, ids=[c[0] for c in FORWARD])
def test_forward_matches_reference(case, op, inputs, attrs, ref):
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(op, *ts, name="out", **attrs)
    expected = ref(*inputs)
    assert out.value.dtype == np.float64 and out.shape == expected.shape
    np.testing.assert_allclose(out.value, expected, rtol=1e-12, atol=1e-13)
    steps = out.inputs[len(ts):]  # an op in steps records them first, named after it
    assert [(u.name, u.op) for u in steps] == [(f"out_{suffix}", step) for suffix, step, *_ in getattr(op, "steps", ())]
    for u in steps:  # (a softmax's row sums are the basic sum_cols, checked in test_ops)
        step_ref = REFERENCE.get(u.op.name, u.op.forward)
        np.testing.assert_allclose(u.value, step_ref(*(v.value for v in u.inputs)), rtol=1e-12, atol=1e-13)


def test_forward_facts():
    r = rng("facts")
    x = r.normal(size=(4, 4))
    y = activations.SOFTMAX.forward(x)
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-15)
    c = activations.CAUSAL_SOFTMAX.forward(x)
    assert np.all(np.triu(c, 1) == 0) and c[0, 0] == 1
    np.testing.assert_allclose(c.sum(axis=1), 1, rtol=1e-15)
    # the causal softmax is the softmax of scores masked with a large negative number
    np.testing.assert_allclose(c, activations.SOFTMAX.forward(np.where(np.tri(4, dtype=bool), x, -1e9)), rtol=1e-15)
    # the lookup is the one-hot matrix product
    E, ids = r.normal(size=(5, 3)), np.array([[4.0], [1.0], [4.0]])
    np.testing.assert_array_equal(embeddings.EMBED.forward(E, ids), one_hot([4, 1, 4], 5) @ E)
    # LayerNorm: each row of x̂ has mean 0 and variance 1 (up to ε)
    xh = normalization.NORMALIZE.forward(x, *stats(x), np.array([[0.0]]))
    np.testing.assert_allclose(xh.mean(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(xh.var(axis=1), 1, rtol=1e-14)
    # split then merge is the identity
    h = r.normal(size=(3, 6))
    parts = [linalg.slice_cols(k * 2, 2).forward(h) for k in range(3)]
    np.testing.assert_array_equal(linalg.CONCAT_COLS.forward(*parts), h)


def test_gelu_is_the_tanh_approximation():
    """Close to the exact x·Φ(x) (erf) but not equal: the approximation's error is below 1e-3."""
    x = np.linspace(-5, 5, 201).reshape(1, -1)
    exact = np.array([[v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x[0]]])
    err = np.abs(activations.GELU.forward(x) - exact)
    assert 1e-5 < err.max() < 1e-3


def test_positional_encoding_helper():
    tape = Tape()
    pe = embeddings.positional_encoding(tape, 4, 6, name="PE")
    pos, dim = pe.inputs
    assert (pos.name, pos.shape, dim.name, dim.shape) == ("pos", (4, 1), "dim", (1, 6))
    assert pe.shape == (4, 6) and np.all(pe.value[0, 0::2] == 0) and np.all(pe.value[0, 1::2] == 1)
    np.testing.assert_allclose(pe.value, ref_pos_encoding(pos.value, dim.value), rtol=1e-15, atol=1e-16)


# --- gradient rules against central differences -----------------------------------------------

def weighted_loss(tape, out, weights):
    """Σ weights ⊙ out as a recorded (1, 1) tensor, made only of tracer.ops ops."""
    m, n = out.shape
    prod = tape.apply(linalg.MUL, out, tape.constant("R", weights), name="out*R")
    cols = tape.apply(linalg.MATMUL_TN, tape.constant("ones_m", np.ones((m, 1))), prod, name="col sums")
    return tape.apply(linalg.MATMUL_NT, cols, tape.constant("ones_n", np.ones((1, n))), name="L")


def central_differences(f, inputs, k, h=1e-6):
    g = np.empty_like(inputs[k])
    for idx in np.ndindex(inputs[k].shape):
        up, down = [a.copy() for a in inputs], [a.copy() for a in inputs]
        up[k][idx] += h
        down[k][idx] -= h
        g[idx] = (f(*up) - f(*down)) / (2 * h)
    return g


def grad_cases():
    """(case id, op, inputs, indices to differentiate, reference)."""
    r = rng("grad")
    n = r.normal
    x35 = n(size=(3, 5))
    y35 = one_hot([1, 4, 4], 5)
    eps = np.array([[1e-3]])
    xs = [
        ("softmax", activations.SOFTMAX, [x35], (0,)),
        ("softmax row", activations.SOFTMAX, [n(size=(1, 6))], (0,)),
        ("causal_softmax", activations.CAUSAL_SOFTMAX, [n(size=(4, 4))], (0,)),
        ("causal_softmax 3x5", activations.CAUSAL_SOFTMAX, [x35], (0,)),
        ("xent", losses.XENT, [probs(r, 3, 5), y35], (0,)),
        ("embed", embeddings.EMBED, [n(size=(6, 3)), np.array([[1.0], [4.0], [1.0], [0.0]])], (0,)),
        ("row_mean", normalization.ROW_MEAN, [x35], (0,)),
        ("row_var", normalization.ROW_VAR, [x35, n(size=(3, 1))], (0, 1)),
        ("normalize", normalization.NORMALIZE, [x35, n(size=(3, 1)), positive(r, 3, 1), eps], (0, 1, 2)),
        ("normalize row", normalization.NORMALIZE, [n(size=(1, 4)), n(size=(1, 1)), positive(r, 1, 1), eps], (0, 1, 2)),
        ("affine", normalization.AFFINE, [x35, n(size=(1, 5)), n(size=(1, 5))], (0, 1, 2)),
        ("gelu", activations.GELU, [3 * n(size=(3, 4))], (0,)),
        ("concat_cols", linalg.CONCAT_COLS, [n(size=(3, 2)), n(size=(3, 1)), n(size=(3, 2))], (0, 1, 2)),
    ]
    cases = [(cid, op, ins, wrt, REFERENCE[op.name]) for cid, op, ins, wrt in xs]
    cases.append(("slice_cols", linalg.slice_cols(2, 2), [n(size=(3, 6))], (0,), slice_ref(2, 2)))
    return cases


GRAD = grad_cases()
NO_GRADIENT_RULE = {"softmax_grad", "xent_grad", "embed_grad", "row_mean_grad",
                    "row_var_grad_x", "row_var_grad_mu", "normalize_grad_x", "normalize_grad_mu",
                    "normalize_grad_var", "col_dot", "gelu_grad", "pos_encoding",
                    "pad_cols", "cosine", "nearest", "rsqrt",
                    "softmax_exp", "causal_softmax_exp", "xent_terms"}  # steps: differentiated with their op


def traced(op, inputs, wrt, weights):
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(op, *ts, name="out")
    loss = weighted_loss(tape, out, weights)
    return tape, loss, tape.backward(loss, {f"in{k}": ts[k] for k in wrt})


def test_every_op_is_gradient_checked_or_has_no_rule():
    checked = {op.name for _, op, _, _, _ in GRAD}
    assert checked | NO_GRADIENT_RULE == set(LM_OPS) and not checked & NO_GRADIENT_RULE


@pytest.mark.parametrize("case, op, inputs, wrt, ref", GRAD, ids=[c[0] for c in GRAD])
def test_gradient_matches_central_differences(case, op, inputs, wrt, ref):
    check_gradient(case, op, inputs, wrt, ref)


def check_gradient(case, op, inputs, wrt, ref):
    """The op's gradient rule, through Tape.backward of a weighted sum, against central
    differences of the reference ref for every input in wrt."""
    weights = rng("weights" + case).normal(size=ref(*inputs).shape)
    _, loss, grads = traced(op, inputs, wrt, weights)

    def f(*xs):
        return float(np.sum(weights * ref(*xs)))

    assert loss.value[0, 0] == pytest.approx(f(*inputs), rel=1e-12, abs=1e-14)
    for k in wrt:
        g = grads[f"in{k}"]
        assert g.name == f"dL/din{k}" and g.shape == inputs[k].shape
        np.testing.assert_allclose(g.value, central_differences(f, inputs, k), rtol=1e-6, atol=1e-8,
                                   err_msg=f"{case}: input {k}")


@pytest.mark.parametrize("name", sorted(NO_GRADIENT_RULE))
def test_ops_without_a_rule_refuse_to_differentiate(name):
    _, op, inputs, attrs, _ = next(c for c in FORWARD if c[1].name == name)
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(op, *ts, name="out", **attrs)
    loss = weighted_loss(tape, out, np.ones(out.shape))
    with pytest.raises(NotImplementedError, match=name):
        tape.backward(loss, {f"in{k}": t for k, t in enumerate(ts)})


def test_gradient_rules_record_the_expected_ops():
    """Which gradient ops each rule records (one per wanted input)."""
    expected = {
        "softmax": {"softmax_grad"}, "causal_softmax": {"softmax_grad"}, "xent": {"xent_grad"},
        "embed": {"embed_grad"}, "row_mean": {"row_mean_grad"},
        "row_var": {"row_var_grad_x", "row_var_grad_mu"},
        "normalize": {"normalize_grad_x", "normalize_grad_mu", "normalize_grad_var"},
        "affine": {"mul", "col_dot", "sum_rows"},
        "gelu": {"gelu_grad"}, "concat_cols": {"slice_cols"}, "slice_cols": {"pad_cols"},
    }
    for case, op, inputs, wrt, ref in GRAD:
        tape, _, _ = traced(op, inputs, wrt, np.ones(ref(*inputs).shape))
        start = next(n for n, t in enumerate(tape.tensors) if t.name == "dL/dout")
        after = tape.tensors[start + 1:]  # what the op's own rule recorded
        assert {t.op.name for t in after} == expected[op.name], case


def test_the_data_get_no_gradient():
    r = rng("data")
    for op, inputs, k, words in [
        (losses.XENT, [probs(r, 2, 3), one_hot([0, 2], 3)], 1, "the targets"),
        (embeddings.EMBED, [r.normal(size=(4, 2)), np.array([[1.0], [3.0]])], 1, "the token ids"),
        (normalization.NORMALIZE, [r.normal(size=(2, 3)), r.normal(size=(2, 1)), positive(r, 2, 1), np.array([[1e-5]])], 3, "ε"),
    ]:
        with pytest.raises(ValueError, match=f"no gradient with respect to {words}"):
            traced(op, inputs, (0, k), np.ones(op.forward(*inputs).shape))


# --- chains: softmax + cross-entropy, LayerNorm ----------------------------------------------------

def _probs_loss(z, y):
    tape = Tape()
    Z, Y = tape.constant("Z", z), tape.constant("Y", y)
    tape.iteration = 1
    tape.at("forward")
    P = activations.softmax(Z, name="P")
    loss = losses.cross_entropy(P, Y, name="L")
    tape.at("backward")
    grads = tape.backward(loss, {"Z": Z})
    return tape, loss, grads


def test_softmax_cross_entropy_gradient_is_p_minus_y_over_t():
    r = rng("ce")
    z, y = 2 * r.normal(size=(4, 6)), one_hot([5, 0, 3, 3], 6)
    tape, loss, grads = _probs_loss(z, y)
    p = ref_softmax(z)
    assert loss.value[0, 0] == pytest.approx(ref_softmax_xent(z, p, y)[0, 0], rel=1e-13)
    np.testing.assert_allclose(grads["Z"].value, (p - y) / 4, rtol=1e-12, atol=1e-15)
    f = lambda zz: ref_softmax_xent(zz, None, y)[0, 0]
    np.testing.assert_allclose(grads["Z"].value, central_differences(f, [z], 0), rtol=1e-6, atol=1e-9)
    by_name = {t.name: t for t in tape.tensors if t.iteration == 1}
    assert by_name["dL/dP"].op is losses.XENT_GRAD and by_name["dL/dZ"].op is activations.SOFTMAX_GRAD


def _layer_norm(x, gamma, beta, eps_value, weights):
    tape = Tape()
    X = tape.constant("X", x)
    G, B = tape.constant("gamma", gamma), tape.constant("beta", beta)
    eps = tape.constant("eps", [[eps_value]], role="hyper", defined_name="ln_eps")
    tape.iteration = 1
    tape.at("forward")
    y = normalization.layer_norm(X, G, B, eps, name="ln")
    loss = weighted_loss(tape, y, weights)
    tape.at("backward")
    grads = tape.backward(loss, {"X": X, "gamma": G, "beta": B})
    return tape, y, grads


def ref_layer_norm(x, gamma, beta, eps):
    """numpy's own mean and var (population: ddof=0)."""
    mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize("shape", [(3, 5), (1, 4)], ids=["3x5", "1x4"])
def test_layer_norm_whole(shape):
    r = rng(f"ln{shape}")
    x, gamma, beta = r.normal(size=shape), r.normal(size=(1, shape[1])), r.normal(size=(1, shape[1]))
    eps, weights = 1e-3, r.normal(size=shape)
    tape, y, grads = _layer_norm(x, gamma, beta, eps, weights)
    np.testing.assert_allclose(y.value, ref_layer_norm(x, gamma, beta, eps), rtol=1e-13, atol=1e-14)
    names = [t.name for t in tape.tensors if t.iteration == 1 and t.phase == "forward"]
    assert names[:4] == ["ln_mu", "ln_var", "ln_xhat", "ln"]
    inputs = [x, gamma, beta]

    def f(a, g, b):
        return float(np.sum(weights * ref_layer_norm(a, g, b, eps)))

    for k, name in enumerate(("X", "gamma", "beta")):
        np.testing.assert_allclose(grads[name].value, central_differences(f, inputs, k), rtol=1e-6, atol=1e-8)
    back = {t.name: t.op.name for t in tape.tensors if t.phase == "backward"}
    assert back["dL/dX"] == "sum" and back["dL/dln_mu"] == "sum"
    assert {"dL/dX via ln_xhat", "dL/dX via ln_var", "dL/dX via ln_mu"} <= set(back)
    # the chain's gradient is the textbook one, x's Jacobian through μ and σ² written out
    xhat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    np.testing.assert_allclose(grads["X"].value, ref_layernorm_grad(xhat, x.var(axis=1, keepdims=True),
                                                                     np.array([[eps]]), weights * gamma),
                               rtol=1e-10, atol=1e-13)


# --- a small attention model: every op in one backward pass, checked by tracer.gradcheck ----------

VOCAB, D, T, HEADS = 7, 4, 5, 2


def model_inputs(tape, r):
    """Iteration 0: the parameters and the data of the little model."""
    return {
        "E": tape.constant("E", 0.5 * r.normal(size=(VOCAB, D)), role="param"),
        "gamma": tape.constant("gamma", 1 + 0.1 * r.normal(size=(1, D)), role="param"),
        "beta": tape.constant("beta", 0.1 * r.normal(size=(1, D)), role="param"),
        "W_out": tape.constant("W_out", r.normal(size=(D, VOCAB)) / 2, role="param"),
        "eps": tape.constant("eps", [[1e-5]], role="hyper", defined_name="ln_eps"),
        "scale": tape.constant("scale", [[1 / math.sqrt(D // HEADS)]], role="data"),
        "ids": embeddings.token_ids(tape, [3, 1, 4, 1, 5]),
        "Y": losses.one_hot(tape, [1, 4, 1, 5, 6], VOCAB),
    }


def model_step(tape, c):
    """x = E[ids] + PE → LN → 2 heads of causal self-attention (on the normalized x itself) →
    merge → GELU → logits → softmax → cross-entropy; then the backward pass."""
    tape.at("forward")
    x = linalg.add(embeddings.embed(c["E"], c["ids"], name="x_tok"), embeddings.positional_encoding(tape, T, D), name="x")
    h = normalization.layer_norm(x, c["gamma"], c["beta"], c["eps"], name="ln")
    heads = []
    for k, hk in enumerate(attention.split_heads(h, HEADS, names=[f"h{k}" for k in range(HEADS)])):
        scores = attention.scale(core_op.record(linalg.MATMUL_NT, hk, hk, name=f"S{k}"), c["scale"], name=f"S{k}_scaled")
        A = activations.causal_softmax(scores, name=f"A{k}")
        heads.append(core_op.record(linalg.MATMUL, A, hk, name=f"O{k}"))
    a = activations.gelu(attention.merge_heads(heads, name="O"), name="a")
    logits = core_op.record(linalg.MATMUL, a, c["W_out"], name="logits")
    tape.at("loss")
    loss = losses.cross_entropy(activations.softmax(logits, name="P"), c["Y"], name="loss")
    tape.at("backward")
    params = {k: c[k] for k in ("E", "gamma", "beta", "W_out")}
    return loss, tape.backward(loss, params)


def test_attention_model_passes_gradcheck():
    tape = Tape()
    c = model_inputs(tape, rng("model"))
    tape.iteration = 1
    _, grads = model_step(tape, c)
    assert set(grads) == {"E", "gamma", "beta", "W_out"}
    # rows of E for tokens that never occur get exactly 0
    used = {3, 1, 4, 5}
    assert all(np.all(grads["E"].value[v] == 0) == (v not in used) for v in range(VOCAB))
    (report,) = gradcheck(tape, 1)
    assert report.ok and report.max_rel < 1e-8, "\n".join(report.lines())
    assert report.held == []
    names = {t.op.name for t in tape.tensors if t.op}
    lm = {n for n in names if n in LM_OPS}
    assert lm == ({"embed", "pos_encoding", "row_mean", "row_var", "normalize", "affine", "slice_cols",
                   "causal_softmax", "causal_softmax_exp", "concat_cols", "gelu", "softmax", "softmax_exp",
                   "xent", "xent_terms", "embed_grad", "row_mean_grad",
                   "row_var_grad_x", "row_var_grad_mu", "normalize_grad_x", "normalize_grad_mu",
                   "normalize_grad_var", "col_dot", "softmax_grad", "xent_grad", "gelu_grad"})
    # the heads' slices tile the normalized x: its gradient is theirs side by side (concat_cols), not padded copies
    assert "pad_cols" not in names and {u.name for u in next(t for t in tape.tensors if t.name == "dL/dln").inputs} == {"dL/dh0", "dL/dh1"}


def test_helpers_check_their_arguments():
    tape = Tape()
    x = tape.constant("x", np.zeros((2, 6)))
    with pytest.raises(ValueError, match="cannot split 6 columns into 4 heads"):
        attention.split_heads(x, 4)
    assert attention.merge_heads([x]) is x
    with pytest.raises(ValueError, match="at least two"):
        tape.apply(linalg.CONCAT_COLS, x)
    with pytest.raises(ValueError, match=r"integers in 0 … 4"):
        tape.apply(embeddings.EMBED, tape.constant("E", np.zeros((5, 2))), tape.constant("ids", [[5.0]]))
    with pytest.raises(ValueError, match=r"integers in 0 … 4"):
        tape.apply(embeddings.EMBED, tape.constant("E2", np.zeros((5, 2))), tape.constant("ids2", [[1.5]]))
    with pytest.raises(ValueError, match="γ and β must be"):
        tape.apply(normalization.AFFINE, x, tape.constant("g", np.ones((2, 6))), tape.constant("b", np.ones((1, 6))))
    with pytest.raises(ValueError, match="columns 4 … 7 of a tensor of 6"):
        tape.apply(linalg.slice_cols(4, 4), x)
    with pytest.raises(ValueError, match="vocab"):
        tape.apply(embeddings.EMBED_GRAD, tape.constant("i3", [[0.0]]), tape.constant("g3", [[1.0]]))
    assert linalg.slice_cols(2, 3) is linalg.slice_cols(2, 3) and linalg.slice_cols(2, 3) in linalg.instances()
    assert attention.scale(x, tape.constant("s", [[0.5]])).op is linalg.MUL


# --- formulas: their text ---------------------------------------------------------------------

def _cells(places, out):
    return Cells(types.SimpleNamespace(place=places), out)


def test_formula_text():
    tape = Tape()
    x = tape.constant("x", np.zeros((2, 3)))
    E = tape.constant("E", np.zeros((6, 4)))
    ids = tape.constant("ids", np.zeros((2, 1)))
    pos, dim = tape.constant("pos", np.zeros((2, 1))), tape.constant("dim", np.arange(4.0)[None])
    outs = {name: tape.apply(op, *ins) for name, op, ins in [
        ("sm", activations.SOFTMAX, [x]), ("cs", activations.CAUSAL_SOFTMAX, [x]), ("emb", embeddings.EMBED, [E, ids]),
        ("pe", embeddings.POS_ENCODING, [pos, dim]), ("mu", normalization.ROW_MEAN, [x]), ("sl", linalg.slice_cols(1, 2), [x])]}
    g = tape.constant("g", np.zeros((2, 4)))
    outs["eg"] = tape.apply(embeddings.EMBED_GRAD, ids, g, vocab=6)
    places = {id(x): Place("In", 1, 1, 2, 3), id(E): Place("In", 10, 1, 6, 4), id(ids): Place("In", 1, 7, 2, 1),
              id(pos): Place("S", 0, 0, 2, 1), id(dim): Place("S", 0, 2, 1, 4, transposed=True),
              id(g): Place("S", 10, 1, 2, 4)}
    places.update({id(t): Place("S", 40, 1, *t.shape) for t in outs.values()})
    for name in ("sm", "cs"):  # a softmax's steps: the exponentials (rows 21-22), the row sums (column H)
        _, e, total = outs[name].inputs
        places.update({id(e): Place("S", 20, 1, *e.shape), id(total): Place("S", 20, 7, *total.shape)})
        outs[name + "_exp"], outs[name + "_sum"] = e, total

    def f(name, i, j):
        return outs[name].op.formula(_cells(places, outs[name]), i, j)

    assert f("sm_exp", 1, 2) == "EXP('In'!D3-MAX('In'!B3:D3))"
    assert f("sm_sum", 1, 0) == "SUM(B22:D22)"
    assert f("sm", 1, 2) == "D22/H22"
    assert f("cs_exp", 0, 0) == "EXP('In'!B2-MAX('In'!B2))"
    assert f("cs_exp", 1, 1) == "EXP('In'!C3-MAX('In'!B3:C3))"
    assert f("cs_exp", 0, 1) == f("cs_exp", 0, 2) == f("cs_exp", 1, 2) == "0"
    assert f("cs", 1, 1) == "C22/H22"
    assert f("cs", 0, 1) == f("cs", 0, 2) == f("cs", 1, 2) == "0"
    assert f("emb", 1, 2) == "INDEX('In'!B11:E16,'In'!H3+1,3)"
    assert f("eg", 4, 3) == "SUMIF('In'!H2:H3,4,E11:E12)"
    assert f("pe", 1, 2) == "SIN(A2/10000^(C3/4))"  # dim runs down: column 2 is C3
    assert f("pe", 1, 3) == "COS(A2/10000^((C4-1)/4))"
    assert f("mu", 1, 0) == "AVERAGE('In'!B3:D3)"
    assert f("sl", 1, 0) == "'In'!C3" and f("sl", 0, 1) == "'In'!D2"
    # E shown turned (rows run down): INDEX takes the column first
    places[id(E)] = Place("In", 10, 1, 6, 4, transposed=True)
    assert f("emb", 1, 2) == "INDEX('In'!B11:G14,3,'In'!H3+1)"


def test_formulas_refuse_blocks_laid_out_differently():
    tape = Tape()
    p, y = tape.constant("p", np.full((2, 3), 1 / 3)), tape.constant("y", one_hot([0, 1], 3))
    loss = tape.apply(losses.XENT, p, y)
    ids, g = tape.constant("ids", np.zeros((2, 1))), tape.constant("g", np.zeros((2, 3)))
    dE = tape.apply(embeddings.EMBED_GRAD, ids, g, vocab=3)
    places = {id(p): Place("S", 0, 0, 2, 3), id(y): Place("S", 5, 0, 2, 3, transposed=True),
              id(loss): Place("S", 20, 0, 1, 1), id(ids): Place("S", 30, 0, 2, 1),
              id(g): Place("S", 30, 3, 2, 3, transposed=True), id(dE): Place("S", 40, 0, 3, 3)}
    terms = loss.inputs[2]
    places[id(terms)] = Place("S", 25, 0, 2, 1)
    with pytest.raises(ValueError, match="laid out the same way"):
        losses.XENT_TERMS.formula(_cells(places, terms), 0, 0)
    places[id(y)] = Place("S", 5, 0, 2, 3)  # laid out like P: one SUMPRODUCT of two rows per term
    assert losses.XENT_TERMS.formula(_cells(places, terms), 1, 0) == "-LN(SUMPRODUCT(A7:C7,A2:C2))"
    assert losses.XENT.formula(_cells(places, loss), 0, 0) == "SUM(A26:A27)/2"
    with pytest.raises(ValueError, match="run the same way"):
        embeddings.EMBED_GRAD.formula(_cells(places, dE), 0, 0)


# --- the workbook text: the entries for templates/common.toml ------------------------------------

def lm_template(lang: str) -> Template:
    return ops_template(lang, "LM ops")


def test_template_text_covers_every_op():
    """Every op's text, in templates/common.toml (PROPOSED_TOML was merged there), uses only its
    own inputs."""
    from tracer.render.template import _load

    common = _load("common")["ops"]
    entries = {name: common[name] for name in LM_OPS}
    for name, entry in entries.items():
        assert {"equation", *LANGS} <= set(entry) <= {"equation", "equation_es", *LANGS}, name
        assert entry["equation"].startswith("{out}"), name
        case = next(c for c in FORWARD if c[1].name == name)
        n_in = len(case[2]) + len(getattr(case[1], "steps", ()))  # an op in steps reads its steps too
        for text in (entry["equation"], entry.get("equation_es", ""), *(entry[lang] for lang in LANGS)):
            used = {int(k) for k in re.findall(r"\{(\d+)\}", text)}
            assert used <= set(range(n_in)), (name, text)
            text.format(*[f"s{k}" for k in range(n_in)], out="y", all="+", **OPS[name].params())  # no stray braces
        for lang in LANGS:
            assert "{0}" in entry[lang] or name == "concat_cols", (name, lang)
    assert "population variance" in entries["row_var"]["en"] and "poblacional" in entries["row_var"]["es"]
    assert "tanh approximation" in entries["gelu"]["en"] and "aproximación con tanh" in entries["gelu"]["es"]


# --- formulas in LibreOffice: the real exporter ---------------------------------------------------

def build_tape():
    """Iteration 0: the inputs; iteration 1: every op applied to them (row vectors too, which the
    layout shows turned); iteration 2: the little attention model, forward and backward
    (formulas of formulas, across sheets)."""
    r = rng("workbook")
    n = r.normal
    tape = Tape()
    C = lambda name, v: tape.constant(name, v, role="data")
    x35, x16 = C("x35", n(size=(3, 5))), C("x16", n(size=(1, 6)))
    big = C("big", 40 * n(size=(2, 4)) + 700)
    s44 = C("s44", n(size=(4, 4)))
    g35, g16, g1 = C("g35", n(size=(3, 5))), C("g16", n(size=(1, 6))), C("g1", n(size=(1, 1)))
    p35, y35 = C("p35", probs(r, 3, 5)), C("y35", one_hot([4, 0, 2], 5))
    p16, y16 = C("p16", probs(r, 1, 6)), C("y16", one_hot([3], 6))
    E, ids = C("E6", n(size=(6, 4))), C("ids3", np.array([[2.0], [5.0], [2.0]]))
    E1, ids1 = C("E1", n(size=(1, 3))), C("ids1", np.array([[0.0], [0.0]]))
    gE, gE1 = C("gE", n(size=(3, 4))), C("gE1", n(size=(1, 4)))
    col3, col1 = C("col3", n(size=(3, 1))), C("col1", n(size=(1, 1)))
    var3, var1 = C("var3", positive(r, 3, 1)), C("var1", positive(r, 1, 1))
    gam, bet = C("gamma5", n(size=(1, 5))), C("beta5", n(size=(1, 5)))
    xg = C("xg", 3 * n(size=(3, 4)))
    gg = C("gg", n(size=(3, 4)))
    pos, dim = C("pos", np.arange(5.0).reshape(5, 1)), C("dim", np.arange(6.0).reshape(1, 6))
    h36 = C("h36", n(size=(3, 6)))
    c = model_inputs(tape, r)
    eps = c["eps"]

    tape.iteration = 1
    tape.at("forward")
    a = lambda op, *ins, **attrs: tape.apply(op, *ins, **attrs)
    for x in (x35, x16, big):
        a(activations.SOFTMAX, x)
    for x in (s44, x35, x16):
        a(activations.CAUSAL_SOFTMAX, x)
    a(activations.SOFTMAX_GRAD, p35, g35)
    a(activations.SOFTMAX_GRAD, p16, g16)
    for p, y in ((p35, y35), (p16, y16)):
        a(losses.XENT, p, y)
        a(losses.XENT_GRAD, p, y, g1)

    a(embeddings.EMBED, E, ids)
    a(embeddings.EMBED, E1, ids1)
    a(embeddings.EMBED_GRAD, ids, gE, vocab=6)
    a(embeddings.EMBED_GRAD, C("id0", [[4.0]]), gE1, vocab=6)
    for x, g, col, var in ((x35, g35, col3, var3), (x16, g16, col1, var1)):
        mu = a(normalization.ROW_MEAN, x)
        a(normalization.ROW_MEAN_GRAD, x, col)
        v = a(normalization.ROW_VAR, x, mu)
        a(normalization.ROW_VAR_GRAD_X, x, mu, col)
        a(normalization.ROW_VAR_GRAD_MU, x, mu, col)
        a(normalization.NORMALIZE, x, col, var, eps)
        xh = a(normalization.NORMALIZE, x, mu, v, eps)
        a(normalization.NORMALIZE_GRAD_X, var, eps, g)
        a(normalization.NORMALIZE_GRAD_MU, var, eps, g)
        a(normalization.NORMALIZE_GRAD_VAR, xh, var, eps, g)
        a(linalg.COL_DOT, g, xh)
    a(normalization.AFFINE, x35, gam, bet)
    a(activations.GELU, xg)
    a(activations.GELU_GRAD, xg, gg)
    a(embeddings.POS_ENCODING, pos, dim)
    cos = a(embeddings.COSINE, C("E53", np.random.default_rng(5).normal(size=(5, 3))))
    a(attention.RSQRT, C("dk", np.array([[3.0]])))
    tape.apply(embeddings.NEAREST, cos, name="nearest of cos", k=3)
    a(embeddings.POS_ENCODING, C("pos3", np.arange(3.0).reshape(3, 1)), C("dim5", np.arange(5.0).reshape(1, 5)))
    heads = [a(linalg.slice_cols(k * 2, 2), h36) for k in range(3)]
    a(linalg.CONCAT_COLS, *heads)
    a(linalg.CONCAT_COLS, col3, h36, x35)
    a(linalg.pad_cols(2, 2), heads[0], cols=6)
    a(linalg.pad_cols(0, 1), col3, cols=3)

    tape.iteration = 2
    model_step(tape, c)
    return tape


@pytest.fixture(scope="module")
def exported(module_engine, tmp_path_factory):
    tape = build_tape()
    layout = Layout(tape, lm_template("en"), {})
    path = tmp_path_factory.mktemp("lm_ops") / "lm_ops.xlsx"
    write_xlsx(layout, path)
    return tape, layout, verify.verify_workbook(path, rtol=1e-12, atol=1e-14, engine=module_engine)


def test_workbook_recalculates_to_numpy(exported):
    tape, _, report = exported
    assert {t.op.name for t in tape.tensors if t.op} >= set(LM_OPS)
    assert report.ok, report.format()
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)


def test_workbook_shows_the_equations_and_notes(exported):
    tape, layout, _ = exported
    blocks = [p for s in layout.iters for p in s.parts if isinstance(p, Block) and p.tensor.op]
    assert len(blocks) == sum(1 for t in tape.tensors if t.op)
    lm_blocks = [b for b in blocks if b.tensor.op.name in LM_OPS]
    assert {b.tensor.op.name for b in lm_blocks} == set(LM_OPS)
    for b in lm_blocks:
        assert b.equation.startswith(layout.tpl.symbol(b.tensor.name)) and b.note, b.tensor.name
    ln = next(b for b in blocks if b.tensor.name == "ln_xhat")
    assert ln.equation == "ln_xhat[i, j] = (x[i, j] − ln_muᵢ) / √(ln_varᵢ + eps)"
    for lang in LANGS:  # both languages render every entry
        tpl = lm_template(lang)
        for b in lm_blocks:
            assert tpl.note(b.tensor) and tpl.equation(b.tensor)


# --- portability --------------------------------------------------------------------------------

def check_formula(formula: str, defined=("ln_eps",)):
    """tests/test_portable.py's rule (one rule for the whole project); returns the functions used."""
    from test_portable import check_formula as portable

    portable(formula, set(defined))
    return set(re.findall(r"([A-Z][A-Z0-9.]*)\(", formula))


def test_the_checker_rejects_what_it_should():
    for bad in ["SUM(EXP(A1:A3))", "MAX(A1:A3-1)", "EXP(A1:A3)", "ERF(A1)", "INDEX(A1:A3*2,1,1)",
                "SUMIF(A1:A3,1,B1:B3*2)", "TANH(A1:A2)", "LET(x,1,x)"]:
        with pytest.raises(AssertionError):
            check_formula(bad)
    for good in ["EXP(B5-MAX(B5:I5))", "INDEX('In'!B2:E7,H3+1,3)", "-LN(SUMPRODUCT(B2:D2,B7:D7))",
                 "SUMIF(A1:A3,2,C1:C3)", "0.5*A1*(1+TANH(SQRT(2/PI())*(A1+0.044715*A1^3)))"]:
        check_formula(good)


def test_every_formula_is_portable(exported):
    tape, layout, _ = exported
    used = set()
    for t in tape.tensors:
        if t.op is None:
            continue
        cells = Cells(layout, t)
        for i, j in np.ndindex(t.shape):
            f = t.op.formula(cells, i, j)
            assert len(f) < 8191 and "{" not in f
            if t.op.name in LM_OPS:
                used |= check_formula(f)
    # (MMULT too, where two rows cross: see the hand-made layout below)
    assert used == {"SUMPRODUCT", "SUM", "EXP", "LN", "MAX", "SQRT", "AVERAGE", "INDEX", "SUMIF",
                    "TANH", "PI", "SIN", "COS", "MATCH", "LARGE"}


# --- formulas in LibreOffice: inputs laid out across and down in every combination --------------

class HandSheet:
    """Tensors placed by hand on two sheets, turned or not, written like the exporter does (the
    constants as numbers, the ops' formulas with numpy's values stored)."""

    def __init__(self):
        self.tape, self.layout = Tape(), types.SimpleNamespace(place={})
        self.rng = rng("hand")
        self.cursor = {"In puts": 1, "Ops": 1}

    def _put(self, t, sheet, turned):
        p = Place(sheet, self.cursor[sheet], 1, *t.shape, transposed=turned)
        self.layout.place[id(t)] = p
        self.cursor[sheet] += p.display[0] + 1
        return t

    def const(self, value, turned=False, **attrs):
        return self._put(self.tape.constant(None, value, **attrs), "In puts", turned)

    def apply(self, op, *ins, turned=False, **attrs):
        first = len(self.tape.tensors)
        out = self.tape.apply(op, *ins, **attrs)
        for t in self.tape.tensors[first:]:  # an op in steps: its steps, then itself
            self._put(t, "Ops", turned)
        return out

    def build(self):
        c, a, r = self.const, self.apply, self.rng

        def n(*shape, turned=False):
            return c(r.normal(size=shape), turned)

        eps = c([[1e-5]], defined_name="ln_eps")
        for tx in (False, True):
            x = n(3, 5, turned=tx)
            a(activations.SOFTMAX, x, turned=not tx)
            a(activations.CAUSAL_SOFTMAX, x, turned=not tx)
            for ty in (False, True):
                y = c(probs(r, 3, 5), turned=ty)
                a(activations.SOFTMAX_GRAD, y, x, turned=tx)  # MMULT when they cross
                mu = a(normalization.ROW_MEAN, x, turned=ty)
                v = a(normalization.ROW_VAR, x, mu)
                xh = a(normalization.NORMALIZE, x, mu, v, eps, turned=ty)
                g = n(3, 5, turned=ty)
                a(normalization.NORMALIZE_GRAD_VAR, xh, v, eps, n(3, 5, turned=not ty), turned=tx)
                a(normalization.NORMALIZE_GRAD_MU, v, eps, g, turned=tx)
                a(linalg.COL_DOT, g, xh, turned=tx)
                a(normalization.ROW_VAR_GRAD_MU, x, mu, n(3, 1, turned=ty))
        for tp in (False, True):
            Z = n(2, 4, turned=not tp)
            P, Y = c(activations.SOFTMAX.forward(Z.value), turned=tp), c(one_hot([1, 3], 4), turned=tp)
            a(losses.XENT, P, Y)
            for tE in (False, True):
                E = n(5, 3, turned=tE)
                ids = c(np.array([[4.0], [0.0], [4.0], [2.0]]), turned=tp)
                a(embeddings.EMBED, E, ids, turned=not tE)
                a(embeddings.EMBED_GRAD, ids, n(4, 3, turned=tp), vocab=5, turned=tE)
            a(embeddings.POS_ENCODING, c(np.arange(4.0).reshape(4, 1), turned=tp), c(np.arange(5.0)[None], turned=not tp),
              turned=tp)
            h = n(3, 4, turned=tp)
            parts = [a(linalg.slice_cols(k * 2, 2), h, turned=not tp) for k in range(2)]
            a(linalg.CONCAT_COLS, parts[0], n(3, 1), parts[1], turned=tp)
            a(linalg.pad_cols(1, 2), parts[1], cols=4, turned=not tp)
            a(normalization.AFFINE, h, n(1, 4, turned=tp), n(1, 4, turned=not tp))
        return self

    def write(self, path):
        wb = xlsxwriter.Workbook(path)
        sheets = {name: wb.add_worksheet(name) for name in ("In puts", "Ops")}
        formulas = {}
        for t in self.tape.tensors:
            p = self.layout.place[id(t)]
            for i, j in np.ndindex(t.shape):
                r, col = p.rc(i, j)
                if t.op is None:
                    sheets[p.sheet].write_number(r, col, float(t.value[i, j]))
                    continue
                f = t.op.formula(Cells(self.layout, t), i, j)
                sheets[p.sheet].write_formula(r, col, "=" + f, None, float(t.value[i, j]))
                formulas[address(p.sheet, r + 1, col + 1)] = f
            if t.attrs.get("defined_name"):
                wb.define_name(t.attrs["defined_name"], f"={p.addr(0, 0, '', absolute=True)}")
        wb.close()
        return formulas


def test_any_layout_recalculates_to_numpy(engine, tmp_path):
    sheet = HandSheet().build()
    path = tmp_path / "lm_hand.xlsx"
    formulas = sheet.write(path)
    text = "\n".join(formulas.values())
    assert "MMULT(" in text and "SUMPRODUCT(" in text and "'In puts'!" in text
    for f in formulas.values():
        check_formula(f)
    report = verify.verify_workbook(path, rtol=1e-12, atol=1e-14, engine=engine)
    assert report.ok, report.format()
    assert report.n_formulas == len(formulas)


# --- a broken formula is caught -----------------------------------------------------------------

def test_a_sample_variance_is_caught(engine, monkeypatch, tmp_path):
    """One cell of σ² divided by d − 1 (the sample variance) instead of d: LibreOffice's value for
    that cell, and only that cell, disagrees with the stored numpy value."""
    r = rng("broken")
    tape = Tape()
    x = tape.constant("x", r.normal(size=(3, 5)), role="data")
    tape.iteration = 1
    tape.at("forward")
    mu = tape.apply(normalization.ROW_MEAN, x, name="mu")
    var = tape.apply(normalization.ROW_VAR, x, mu, name="var")
    right = normalization.RowVar.formula

    def broken(self, c, i, j):
        f = right(self, c, i, j)
        return f[:-2] + "/4" if i == 1 else f

    monkeypatch.setattr(normalization.RowVar, "formula", broken)
    layout = Layout(tape, lm_template("en"), {})
    path = tmp_path / "broken.xlsx"
    write_xlsx(layout, path)
    report = verify.verify_workbook(path, engine=engine)

    sheet = layout.iters[0].name
    cell = layout.place[id(var)].addr(1, 0, sheet)
    assert not report.ok and report.errors == [] and report.n_mismatches == 1
    (addr, stored, recalculated), = report.mismatches
    assert addr == f"'{sheet}'!{cell}" and stored == var.value[1, 0]
    assert recalculated == pytest.approx(np.var(x.value[1], ddof=1), rel=1e-13)
