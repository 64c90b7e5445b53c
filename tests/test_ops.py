"""Every op of tracer.ops: numpy forward against independent references, gradient rules against
central finite differences, and the shape of the formulas it writes.

The cell formulas are recalculated in LibreOffice in test_workbook_verify.py (one sheet with every
op on batch shapes, plus the whole VAE workbook).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from families import BASIC, ops_of

from tracer.core import linalg, losses, optimizers
from tracer.core import op as core_op
from tracer.core.tape import Tape
from tracer.render.layout import Cells, Place

RNG_SEED = 20240611

BASIC_OPS = ops_of(BASIC)


def _rng(tag: str):
    return np.random.default_rng([RNG_SEED, sum(map(ord, tag))])


def normal(rng, *shape):
    return rng.normal(0.0, 1.0, size=shape)


def away(rng, *shape):
    """Values at least 0.2 away from 0 (ReLU's kink), both signs."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 2.0, size=shape)


def prob(rng, *shape):
    return rng.uniform(0.05, 0.95, size=shape)


def pixels(rng, *shape):
    """Data in [0, 1] with exact 0s and 1s, like MNIST pixels / 255."""
    x = rng.integers(0, 256, size=shape) / 255.0
    x.flat[0], x.flat[-1] = 0.0, 1.0
    return x


# --- independent references -------------------------------------------------------------------

def elementwise(f):
    """Broadcast the arrays like numpy would, then apply the scalar function f cell by cell."""
    def ref(*arrays):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in arrays])
        out = np.empty(arrays[0].shape)
        for idx in np.ndindex(out.shape):
            out[idx] = f(*(float(a[idx]) for a in arrays))
        return out
    return ref


def ref_sum_rows(a):
    m, n = a.shape
    return np.array([[math.fsum(a[i, j] for i in range(m)) for j in range(n)]])


def ref_sum_cols(a):
    m, n = a.shape
    return np.array([[math.fsum(a[i, j] for j in range(n))] for i in range(m)])


def ref_sum_all(a):
    return np.array([[math.fsum(a.ravel())]])


def ref_bce(x, xh):
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            total -= x[i, j] * math.log(xh[i, j]) + (1 - x[i, j]) * math.log(1 - xh[i, j])
    return np.array([[total]])


def ref_kl(mu, lv):
    total = 0.0
    for i in range(mu.shape[0]):
        for j in range(mu.shape[1]):
            total += 1 + lv[i, j] - mu[i, j] ** 2 - math.exp(lv[i, j])
    return np.array([[-0.5 * total]])


REFERENCE = {
    "one": elementwise(lambda a: 1.0),
    "copy": elementwise(lambda a: a),
    "sum": elementwise(lambda *xs: math.fsum(xs)),
    "relu_grad": elementwise(lambda a, g: g if a > 0 else 0.0),
    "sigmoid_grad": elementwise(lambda y, g: g * y * (1 - y)),
    "exp_half_grad": elementwise(lambda y, g: g * y / 2),
    "bce_grad": elementwise(lambda x, xh, g: g * ((1 - x) / (1 - xh) - x / xh)),
    "kl_logvar_grad": elementwise(lambda g, lv: g * (math.exp(lv) - 1) / 2),
    "sgd": elementwise(lambda p, lr, g: p - lr * g),
    "mul": elementwise(lambda a, b: a * b),
    "add": elementwise(lambda a, b: a + b),
    "add_mul": elementwise(lambda a, b, e: a + b * e),
    "div": elementwise(lambda a, n: a / n),
    "relu": elementwise(lambda a: a if a > 0 else 0.0),
    "sigmoid": elementwise(lambda a: 0.5 * (1 + math.tanh(a / 2))),
    "exp_half": elementwise(lambda a: math.sqrt(math.exp(a))),
    "matmul": lambda a, b: np.einsum("ik,kj->ij", a, b),
    "matmul_nt": lambda a, b: np.einsum("ik,jk->ij", a, b),
    "matmul_tn": lambda a, b: np.einsum("ki,kj->ij", a, b),
    "sum_rows": ref_sum_rows,
    "sum_cols": ref_sum_cols,
    "sum_all": ref_sum_all,
    "linear": lambda x, W, b: np.einsum("ik,kj->ij", x, W) + b,
    "bce": ref_bce,
    "bce_terms": elementwise(lambda x, xh: -(x * math.log(xh) + (1 - x) * math.log1p(-xh))),
    "kl": ref_kl,
    "kl_terms": elementwise(lambda mu, lv: -0.5 * (1 + lv - mu * mu - math.exp(lv))),
    # Adam and the update
    "sub": elementwise(lambda a, b: a - b),
    "broadcast": lambda a, g: np.array([[g[0 if g.shape[0] == 1 else i, 0 if g.shape[1] == 1 else j]
                                          for j in range(a.shape[1])] for i in range(a.shape[0])]),
    "increment": elementwise(lambda t: t + 1),
    "adam_m": elementwise(lambda m, b, g: m + (1 - b) * (g - m)),  # the same, rearranged
    "adam_v": elementwise(lambda v, b, g: v + (1 - b) * (g ** 2 - v)),
    "bias_correct": elementwise(lambda m, b, t: m / (1 - math.pow(b, t))),
    "adam_step": elementwise(lambda lr, m, v, e: lr * m / (math.sqrt(v) + e)),
    # the GAN
    "leaky_relu": elementwise(lambda a, s: max(a, 0.0) + s * min(a, 0.0)),
    "leaky_relu_grad": elementwise(lambda a, s, g: g if a > 0 else s * g),
    "neg_mean_ln": lambda a: np.array([[-math.fsum(math.log(v) for v in a.ravel()) / a.size]]),
    "neg_mean_ln1m": lambda a: np.array([[-math.fsum(math.log1p(-v) for v in a.ravel()) / a.size]]),
    "neg_ln": elementwise(lambda a: -math.log(a)),
    "neg_ln1m": elementwise(lambda a: -math.log1p(-a)),
    "neg_mean_ln_grad": lambda a, g: np.vectorize(lambda v, w: -w / (a.size * v))(a, g),
    "neg_mean_ln1m_grad": lambda a, g: np.vectorize(lambda v, w: w / (a.size * (1 - v)))(a, g),
}


def forward_cases():
    """(op name, case id, input arrays): batch shapes, broadcasting, row vectors, scalars."""
    r = _rng("forward")
    return [
        ("one", "2x3", [normal(r, 2, 3)]),
        ("copy", "2x3", [normal(r, 2, 3)]),
        ("sum", "3 inputs", [normal(r, 2, 3), normal(r, 2, 3), normal(r, 2, 3)]),
        ("sum", "2 scalars", [normal(r, 1, 1), normal(r, 1, 1)]),
        ("relu_grad", "2x3", [away(r, 2, 3), normal(r, 2, 3)]),
        ("sigmoid_grad", "2x3", [prob(r, 2, 3), normal(r, 2, 3)]),
        ("exp_half_grad", "1x5", [np.exp(normal(r, 1, 5)), normal(r, 1, 5)]),
        ("bce_grad", "scalar g", [pixels(r, 2, 3), prob(r, 2, 3), normal(r, 1, 1)]),
        ("kl_logvar_grad", "scalar g", [normal(r, 1, 1), normal(r, 1, 4)]),
        ("sgd", "lr scalar", [normal(r, 3, 4), np.array([[0.1]]), normal(r, 3, 4)]),
        ("mul", "same", [normal(r, 2, 3), normal(r, 2, 3)]),
        ("mul", "row broadcast", [normal(r, 2, 3), normal(r, 1, 3)]),
        ("mul", "scalar broadcast", [normal(r, 1, 1), normal(r, 2, 3)]),
        ("mul", "outer broadcast", [normal(r, 2, 1), normal(r, 1, 3)]),
        ("add", "same", [normal(r, 2, 3), normal(r, 2, 3)]),
        ("add", "scalars", [normal(r, 1, 1), normal(r, 1, 1)]),
        ("add", "column broadcast", [normal(r, 3, 1), normal(r, 3, 4)]),
        ("add_mul", "row vectors", [normal(r, 1, 4), np.exp(normal(r, 1, 4)), normal(r, 1, 4)]),
        ("add_mul", "broadcast", [normal(r, 2, 3), normal(r, 1, 3), normal(r, 1, 1)]),
        ("div", "scalar by the batch size", [normal(r, 1, 1), np.array([[3.0]])]),
        ("div", "2x3 by a scalar", [normal(r, 2, 3), np.array([[4.0]])]),
        ("relu", "2x3", [away(r, 2, 3)]),
        ("sigmoid", "3x4", [3 * normal(r, 3, 4)]),
        ("exp_half", "1x5", [normal(r, 1, 5)]),
        ("matmul", "2x3.3x4", [normal(r, 2, 3), normal(r, 3, 4)]),
        ("matmul", "outer", [normal(r, 3, 1), normal(r, 1, 4)]),
        ("matmul", "inner", [normal(r, 1, 3), normal(r, 3, 1)]),
        ("matmul_nt", "2x3.4x3", [normal(r, 2, 3), normal(r, 4, 3)]),
        ("matmul_tn", "3x2.3x4", [normal(r, 3, 2), normal(r, 3, 4)]),
        ("sum_rows", "5x3", [normal(r, 5, 3)]),
        ("sum_rows", "1x4", [normal(r, 1, 4)]),
        ("sum_cols", "5x3", [normal(r, 5, 3)]),
        ("sum_cols", "4x1", [normal(r, 4, 1)]),
        ("sum_all", "5x3", [normal(r, 5, 3)]),
        ("linear", "batch 2", [normal(r, 2, 3), normal(r, 3, 4), normal(r, 1, 4)]),
        ("linear", "row vector", [normal(r, 1, 6), normal(r, 6, 2), normal(r, 1, 2)]),
        ("bce", "2x3", [pixels(r, 2, 3), prob(r, 2, 3)]),
        ("bce", "1x5", [pixels(r, 1, 5), prob(r, 1, 5)]),
        ("bce_terms", "2x3", [pixels(r, 2, 3), prob(r, 2, 3)]),
        ("kl", "1x4", [normal(r, 1, 4), normal(r, 1, 4)]),
        ("kl_terms", "1x4", [normal(r, 1, 4), normal(r, 1, 4)]),
        ("kl", "2x3", [normal(r, 2, 3), normal(r, 2, 3)]),
        ("sub", "3x4", [normal(r, 3, 4), normal(r, 3, 4)]),
        ("broadcast", "column", [normal(r, 3, 4), normal(r, 3, 1)]),
        ("broadcast", "row", [normal(r, 3, 4), normal(r, 1, 4)]),
        ("increment", "scalar", [np.array([[3.0]])]),
        ("adam_m", "beta scalar", [normal(r, 3, 4), np.array([[0.9]]), normal(r, 3, 4)]),
        ("adam_v", "beta scalar", [np.abs(normal(r, 3, 4)), np.array([[0.999]]), normal(r, 3, 4)]),
        ("bias_correct", "t = 3", [normal(r, 2, 3), np.array([[0.9]]), np.array([[3.0]])]),
        ("adam_step", "scalars", [np.array([[0.01]]), normal(r, 2, 3), np.abs(normal(r, 2, 3)), np.array([[1e-8]])]),
        ("leaky_relu", "2x3", [away(r, 2, 3), np.array([[0.2]])]),
        ("leaky_relu_grad", "2x3", [away(r, 2, 3), np.array([[0.2]]), normal(r, 2, 3)]),
        ("neg_mean_ln", "3x1", [prob(r, 3, 1)]),
        ("neg_mean_ln1m", "3x1", [prob(r, 3, 1)]),
        ("neg_ln", "3x1", [prob(r, 3, 1)]),
        ("neg_ln1m", "3x1", [prob(r, 3, 1)]),
        ("neg_mean_ln_grad", "3x1", [prob(r, 3, 1), normal(r, 1, 1)]),
        ("neg_mean_ln1m_grad", "3x1", [prob(r, 3, 1), normal(r, 1, 1)]),
    ]


FORWARD = forward_cases()


def test_every_op_has_a_reference_and_a_case():
    assert set(REFERENCE) == set(BASIC_OPS)
    assert {name for name, _, _ in FORWARD} == set(BASIC_OPS)
    assert all(op.name == name for name, op in BASIC_OPS.items())


@pytest.mark.parametrize("name, case, inputs", FORWARD, ids=[f"{n}-{c}" for n, c, _ in FORWARD])
def test_forward_matches_reference(name, case, inputs):
    op = BASIC_OPS[name]
    expected = REFERENCE[name](*inputs)
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(op, *ts, name="out")
    assert out.value.dtype == np.float64
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.value, expected, rtol=1e-13, atol=1e-14)
    assert out.op is op and out.inputs[:len(ts)] == tuple(ts)
    # an op in steps: each step recorded first, named after the output, then read by the op
    steps = out.inputs[len(ts):]
    assert [(u.name, u.op) for u in steps] == [(f"out_{suffix}", step) for suffix, step, *_ in getattr(op, "steps", ())]
    np.testing.assert_array_equal(op.forward(*inputs), out.value)  # forward alone makes the steps itself


def test_copy_is_a_copy():
    a = np.arange(6.0).reshape(2, 3)
    b = core_op.COPY.forward(a)
    b[0, 0] = 99
    assert a[0, 0] == 0


# --- gradient rules against central differences -----------------------------------------------

def grad_cases():
    """(op name, inputs, indices of the inputs to differentiate)."""
    r = _rng("grad")
    return [
        ("mul", [normal(r, 2, 3), normal(r, 2, 3)], (0, 1)),
        ("add", [normal(r, 2, 3), normal(r, 2, 3)], (0, 1)),
        ("add_mul", [normal(r, 2, 3), np.exp(normal(r, 2, 3)), normal(r, 2, 3)], (0, 1, 2)),
        ("add_mul", [normal(r, 1, 4), np.exp(normal(r, 1, 4)), normal(r, 1, 4)], (0, 1)),  # ε fixed
        ("div", [normal(r, 2, 3), np.array([[3.0]])], (0,)),  # no gradient to the divisor (a constant)
        ("relu", [away(r, 3, 4)], (0,)),
        ("sigmoid", [2 * normal(r, 2, 3)], (0,)),
        ("exp_half", [normal(r, 2, 3)], (0,)),
        ("matmul", [normal(r, 2, 3), normal(r, 3, 4)], (0, 1)),
        ("matmul", [normal(r, 3, 1), normal(r, 1, 4)], (0, 1)),
        ("matmul_nt", [normal(r, 2, 3), normal(r, 4, 3)], (0, 1)),
        ("matmul_tn", [normal(r, 3, 2), normal(r, 3, 4)], (0, 1)),
        ("linear", [normal(r, 2, 3), normal(r, 3, 4), normal(r, 1, 4)], (0, 1, 2)),
        ("linear", [normal(r, 1, 5), normal(r, 5, 2), normal(r, 1, 2)], (1, 2)),
        ("bce", [pixels(r, 2, 3), prob(r, 2, 3)], (1,)),
        ("kl", [normal(r, 1, 4), normal(r, 1, 4)], (0, 1)),
        ("kl", [normal(r, 2, 3), normal(r, 2, 3)], (0, 1)),
        ("leaky_relu", [away(r, 3, 4), np.array([[0.2]])], (0,)),
        ("neg_mean_ln", [prob(r, 3, 1)], (0,)),
        ("sum_rows", [normal(r, 4, 3)], (0,)),
        ("sum_cols", [normal(r, 4, 3)], (0,)),
        ("sum_all", [normal(r, 4, 3)], (0,)),
        ("neg_mean_ln1m", [prob(r, 4, 1)], (0,)),
    ]


GRAD = grad_cases()
NO_GRADIENT_RULE = {"one", "copy", "sum", "relu_grad", "sigmoid_grad", "exp_half_grad", "bce_grad",
                    "kl_logvar_grad", "sgd", "sub", "broadcast", "increment",
                    "adam_m", "adam_v", "bias_correct", "adam_step", "leaky_relu_grad",
                    "neg_mean_ln_grad", "neg_mean_ln1m_grad",
                    "bce_terms", "kl_terms", "neg_ln", "neg_ln1m"}  # steps: differentiated with their op


def weighted_loss(tape, out, weights):
    """Σ weights ⊙ out as a recorded (1,1) tensor, made only of ops: 1ᵀ (out ⊙ R) 1."""
    m, n = out.shape
    w = tape.constant("R", weights)
    prod = tape.apply(linalg.MUL, out, w, name="out*R")
    cols = tape.apply(linalg.MATMUL_TN, tape.constant("ones_m", np.ones((m, 1))), prod, name="col sums")
    return tape.apply(linalg.MATMUL_NT, cols, tape.constant("ones_n", np.ones((1, n))), name="L")


def traced_gradients(name, inputs, wrt, weights):
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(BASIC_OPS[name], *ts, name="out")
    loss = weighted_loss(tape, out, weights)
    grads = tape.backward(loss, {f"in{k}": ts[k] for k in wrt})
    return tape, loss, grads


def central_differences(f, inputs, k, h=1e-6):
    g = np.empty_like(inputs[k])
    for idx in np.ndindex(inputs[k].shape):
        up = [a.copy() for a in inputs]
        down = [a.copy() for a in inputs]
        up[k][idx] += h
        down[k][idx] -= h
        g[idx] = (f(*up) - f(*down)) / (2 * h)
    return g


def test_every_op_is_gradient_checked_or_has_no_rule():
    checked = {name for name, _, _ in GRAD}
    assert checked | NO_GRADIENT_RULE == set(BASIC_OPS)
    assert not checked & NO_GRADIENT_RULE


@pytest.mark.parametrize("name, inputs, wrt", GRAD, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(GRAD)])
def test_gradient_matches_central_differences(name, inputs, wrt):
    out_shape = REFERENCE[name](*inputs).shape
    weights = _rng("weights" + name).normal(size=out_shape)
    tape, loss, grads = traced_gradients(name, inputs, wrt, weights)

    def f(*xs):
        return float(np.sum(weights * REFERENCE[name](*xs)))

    assert loss.shape == (1, 1)
    assert loss.value[0, 0] == pytest.approx(f(*inputs), rel=1e-12)
    assert set(grads) == {f"in{k}" for k in wrt}
    for k in wrt:
        traced = grads[f"in{k}"]
        assert traced.name == f"dL/din{k}"
        assert traced.phase == "input"  # recorded in the phase the tape was in
        assert traced.shape == inputs[k].shape
        numeric = central_differences(f, inputs, k)
        np.testing.assert_allclose(traced.value, numeric, rtol=1e-6, atol=1e-7,
                                   err_msg=f"dL/d input {k} of {name}")
    # inputs that were not asked for get no gradient record
    for k in set(range(len(inputs))) - set(wrt):
        assert not any(t.name == f"dL/din{k}" for t in tape.tensors)


def test_gradient_rules_use_every_gradient_op():
    """The backward passes of the cases above record every gradient-only op (except sgd, which is
    the update, and sum, which tests/test_tape.py checks on a tensor with two consumers)."""
    used = set()
    for name, inputs, wrt in GRAD:
        weights = np.ones(REFERENCE[name](*inputs).shape)
        tape, loss, _ = traced_gradients(name, inputs, wrt, weights)
        used |= {t.op.name for t in tape.tensors[tape.tensors.index(loss) + 1:]}
    assert {"one", "copy", "relu_grad", "sigmoid_grad", "exp_half_grad", "bce_grad",
            "kl_logvar_grad", "mul", "matmul", "matmul_nt", "matmul_tn", "sum_rows",
            "leaky_relu_grad", "neg_mean_ln_grad", "neg_mean_ln1m_grad"} <= used


@pytest.mark.parametrize("name", sorted(NO_GRADIENT_RULE))
def test_ops_without_a_rule_refuse_to_differentiate(name):
    case = next(inputs for n, _, inputs in FORWARD if n == name)
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(case)]
    out = tape.apply(BASIC_OPS[name], *ts, name="out")
    loss = weighted_loss(tape, out, np.ones(out.shape))
    with pytest.raises(NotImplementedError, match=name):
        tape.backward(loss, {"in0": ts[0]})


@pytest.mark.parametrize("name", ["bce", "kl", "neg_mean_ln", "neg_mean_ln1m"])
def test_the_steps_of_a_loss_get_no_gradient(name):
    """A loss in steps: the backward pass goes from the loss straight to its inputs, by the
    loss's own rule; its terms get no gradient record (the tape passes them by)."""
    inputs = next(ins for n, _, ins in FORWARD if n == name)
    tape, loss, _ = traced_gradients(name, inputs, range(len(inputs)) if name == "kl" else (len(inputs) - 1,),
                                     np.ones((1, 1)))
    out = next(t for t in tape.tensors if t.name == "out")
    (terms,) = out.inputs[len(inputs):]
    assert terms.name == "out_terms" and terms.shape == inputs[-1].shape
    assert not any(t.name.startswith("dL/dout_terms") for t in tape.tensors)
    grad_ops = {t.op.name for t in tape.tensors[tape.tensors.index(loss) + 1:]}
    assert not {"bce_terms", "kl_terms", "neg_ln", "neg_ln1m", "sum_all", "broadcast"} & grad_ops


def test_bce_has_no_gradient_for_the_data():
    r = _rng("bce data")
    tape = Tape()
    x, xh = tape.constant("x", pixels(r, 1, 4)), tape.constant("xh", prob(r, 1, 4))
    loss = tape.apply(losses.BCE, x, xh, name="recon")
    with pytest.raises(ValueError, match="no gradient with respect to the data"):
        tape.backward(loss, {"x": x, "xh": xh})


def test_div_has_no_gradient_for_the_divisor():
    tape = Tape()
    a, n = tape.constant("a", np.array([[2.0]])), tape.constant("n", np.array([[4.0]]))
    loss = tape.apply(linalg.DIV, a, n, name="mean")
    assert loss.value[0, 0] == 0.5
    with pytest.raises(ValueError, match="no gradient with respect to the divisor"):
        tape.backward(loss, {"a": a, "n": n})


# --- formulas ---------------------------------------------------------------------------------

def test_dot_chooses_sumproduct_mmult_or_product():
    row, col = ("A1:C1", False, 3), ("E1:E3", True, 3)
    assert core_op.dot(row, col) == "MMULT(A1:C1,E1:E3)"
    assert core_op.dot(col, row) == "MMULT(A1:C1,E1:E3)"  # MMULT wants the row first
    assert core_op.dot(col, ("G1:G3", True, 3)) == "SUMPRODUCT(E1:E3,G1:G3)"
    assert core_op.dot(row, ("A2:C2", False, 3)) == "SUMPRODUCT(A1:C1,A2:C2)"
    assert core_op.dot(("B7", True, 1), ("C9", False, 1)) == "B7*C9"


class _Layout:
    def __init__(self):
        self.place = {}


def _cells(layout, out):
    return Cells(layout, out)


def test_matmul_formulas_follow_the_placement():
    """a (2×3) · b (3×4): a row of a against a column of b, in each orientation."""
    tape = Tape()
    a = tape.constant("a", np.zeros((2, 3)))
    b = tape.constant("b", np.zeros((3, 4)))
    c = tape.apply(linalg.MATMUL, a, b, name="c")
    lay = _Layout()
    lay.place[id(c)] = Place("Out", 0, 0, 2, 4)
    for ta, tb, expected in [
        (False, False, "MMULT('In'!B2:D2,'In'!H2:H4)"),  # a's row across, b's column down
        (True, False, "SUMPRODUCT('In'!B2:B4,'In'!H2:H4)"),  # both down
        (False, True, "SUMPRODUCT('In'!B2:D2,'In'!H2:J2)"),  # both across
        (True, True, "MMULT('In'!H2:J2,'In'!B2:B4)"),  # a's row down, b's column across
    ]:
        lay.place[id(a)] = Place("In", 1, 1, 2, 3, ta)
        lay.place[id(b)] = Place("In", 1, 7, 3, 4, tb)
        assert linalg.MATMUL.formula(_cells(lay, c), 0, 0) == expected, (ta, tb)


def test_elementwise_formula_broadcasts_and_uses_defined_names():
    tape = Tape()
    p = tape.constant("p", np.zeros((2, 3)))
    lr = tape.constant("lr", [[0.1]], defined_name="lr")
    g = tape.constant("g", np.zeros((1, 3)))  # broadcast over rows
    new = tape.apply(optimizers.SGD, p, lr, g, name="p_new")
    lay = _Layout()
    lay.place[id(p)] = Place("S", 0, 0, 2, 3)
    lay.place[id(lr)] = Place("Overview", 5, 2, 1, 1)
    lay.place[id(g)] = Place("S", 4, 0, 1, 3, transposed=True)  # A5:A7
    lay.place[id(new)] = Place("S", 10, 0, 2, 3)
    cells = _cells(lay, new)
    assert optimizers.SGD.formula(cells, 0, 0) == "A1-lr*A5"
    assert optimizers.SGD.formula(cells, 1, 2) == "C2-lr*A7"


def test_loss_in_steps_and_sum_rows_formulas():
    """recon: its terms, one LN formula per pixel, then their SUM; KL likewise; −mean ln: the
    terms, then their SUM over the count (one cell: the cell itself)."""
    tape = Tape()
    x = tape.constant("x", np.zeros((1, 5)))
    xh = tape.constant("xh", np.full((1, 5), 0.5))
    recon = tape.apply(losses.BCE, x, xh, name="recon")
    terms = recon.inputs[2]
    mu, lv = tape.constant("mu", np.zeros((1, 2))), tape.constant("lv", np.zeros((1, 2)))
    kl = tape.apply(losses.KL, mu, lv, name="kl")
    d3, d1 = tape.constant("d3", np.full((3, 1), 0.5)), tape.constant("d1", [[0.5]])
    m3, m1 = tape.apply(losses.NEG_MEAN_LN, d3, name="m3"), tape.apply(losses.NEG_MEAN_LN1M, d1, name="m1")
    g = tape.constant("g", np.zeros((3, 2)))
    s = tape.apply(linalg.SUM_ROWS, g, name="s")
    lay = _Layout()
    lay.place.update({id(x): Place("In puts", 0, 1, 1, 5, True), id(xh): Place("It 1", 0, 1, 1, 5, True),
                      id(terms): Place("It 1", 9, 1, 1, 5, True), id(recon): Place("It 1", 19, 1, 1, 1),
                      id(mu): Place("It 1", 40, 1, 1, 2, True), id(lv): Place("It 1", 43, 1, 1, 2, True),
                      id(kl.inputs[2]): Place("It 1", 46, 1, 1, 2, True), id(kl): Place("It 1", 49, 1, 1, 1),
                      id(d3): Place("It 1", 50, 1, 3, 1), id(m3.inputs[1]): Place("It 1", 54, 1, 3, 1),
                      id(m3): Place("It 1", 58, 1, 1, 1), id(d1): Place("It 1", 60, 1, 1, 1),
                      id(m1.inputs[1]): Place("It 1", 61, 1, 1, 1), id(m1): Place("It 1", 62, 1, 1, 1),
                      id(g): Place("It 1", 20, 1, 3, 2), id(s): Place("It 1", 30, 1, 1, 2, True)})
    assert losses.BCE_TERMS.formula(_cells(lay, terms), 0, 3) == "-('In puts'!B4*LN(B4)+(1-'In puts'!B4)*LN(1-B4))"
    assert losses.BCE.formula(_cells(lay, recon), 0, 0) == "SUM(B10:B14)"
    assert losses.KL_TERMS.formula(_cells(lay, kl.inputs[2]), 0, 1) == "-0.5*(1+B45-B42^2-EXP(B45))"
    assert losses.KL.formula(_cells(lay, kl), 0, 0) == "SUM(B47:B48)"
    assert losses.NEG_LN.formula(_cells(lay, m3.inputs[1]), 2, 0) == "-LN(B53)"
    assert losses.NEG_MEAN_LN.formula(_cells(lay, m3), 0, 0) == "SUM(B55:B57)/3"
    assert losses.NEG_LN1M.formula(_cells(lay, m1.inputs[1]), 0, 0) == "-LN(1-B61)"
    assert losses.NEG_MEAN_LN1M.formula(_cells(lay, m1), 0, 0) == "B62"
    assert linalg.SUM_ROWS.formula(_cells(lay, s), 0, 1) == "SUM(C21:C23)"


@pytest.mark.parametrize("name", ["add", "mul", "add_mul"])
def test_gradient_of_a_broadcast_input(name):
    r = _rng("broadcast " + name)
    inputs = [normal(r, 1, 3), normal(r, 2, 3)] + ([normal(r, 2, 3)] if name == "add_mul" else [])
    weights = normal(r, 2, 3)
    _, _, grads = traced_gradients(name, inputs, (0,), weights)

    def f(*xs):
        return float(np.sum(weights * REFERENCE[name](*xs)))

    assert grads["in0"].shape == (1, 3)
    np.testing.assert_allclose(grads["in0"].value, central_differences(f, inputs, 0), rtol=1e-6, atol=1e-7)
