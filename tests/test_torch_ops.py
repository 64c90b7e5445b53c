"""The ops the PyTorch front end added (tracer.core: PyTorch's layouts, losses and optimizer steps),
without PyTorch: numpy forwards against references written cell by cell with `math`, gradient
rules against central differences, the formulas recalculated in LibreOffice and IronCalc through
the real exporter, and a formula broken on purpose that the check catches.  (Against PyTorch
itself: tests/test_torch.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ops_template
from families import TORCH, ops_of
from test_ops import central_differences

from tracer.checks import verify
from tracer.core import activations as act
from tracer.core import linalg, losses
from tracer.core import optimizers as optim
from tracer.core.tape import Tape
from tracer.render.layout import Layout
from tracer.render.xlsx import write_xlsx

OPS = ops_of(TORCH) | {"reshape": linalg.reshape(3, 4)}  # the family's member the case uses
R = np.random.default_rng(26)


def normal(*shape):
    return R.normal(size=shape)


def cells(f, *arrays):
    """f applied cell by cell, numpy broadcasting the arrays first."""
    arrays = np.broadcast_arrays(*[np.asarray(a, float) for a in arrays])
    out = np.empty(arrays[0].shape)
    for idx in np.ndindex(out.shape):
        out[idx] = f(*(float(a[idx]) for a in arrays))
    return out


def rows(f, a):
    return np.array([f(list(r)) for r in a])


def log_softmax_row(r):
    m = max(r)
    s = sum(math.exp(v - m) for v in r)
    return [v - m - math.log(s) for v in r]


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def bce_logit(z, y):
    return -(y * math.log(sigmoid(z)) + (1 - y) * math.log(1 - sigmoid(z)))


def pick(a, y):
    return np.array([[-a[i, int(y[i, 0])]] for i in range(a.shape[0])])


IDS = np.array([[2.0], [0.0], [1.0]])
PROBS = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8]])

# (op, inputs, reference, inputs to differentiate (for ops with a gradient rule))
CASES = {
    "linear_nt": ([normal(3, 4), normal(2, 4), normal(1, 2)],
                  lambda x, W, b: np.array([[sum(x[i, k] * W[j, k] for k in range(4)) + b[0, j] for j in range(2)]
                                            for i in range(3)]), (0, 1, 2)),
    "neg": ([normal(2, 3)], lambda a: cells(lambda v: -v, a), (0,)),
    "minus": ([normal(2, 3), normal(1, 3)], lambda a, b: cells(lambda u, v: u - v, a, b), (0, 1)),
    "quotient": ([normal(2, 3), 1.5 + np.abs(normal(2, 1))], lambda a, b: cells(lambda u, v: u / v, a, b), (0, 1)),
    "quotient_grad": ([normal(2, 3), normal(2, 3), 1 + np.abs(normal(2, 3))],
                      lambda g, a, b: cells(lambda gg, u, v: -gg * u / v ** 2, g, a, b), None),
    "transpose": ([normal(2, 3)], lambda a: np.array([[a[j, i] for j in range(2)] for i in range(3)]), (0,)),
    "reshape": ([normal(2, 6)], lambda a: np.array([[a.flat[i * 4 + j] for j in range(4)] for i in range(3)]), (0,)),
    "ln": ([0.2 + np.abs(normal(2, 3))], lambda a: cells(math.log, a), (0,)),
    "power": ([0.2 + np.abs(normal(2, 3)), np.array([[2.5]])], lambda a, p: cells(lambda u, q: u ** q, a, p), (0,)),
    "power_grad": ([0.2 + np.abs(normal(2, 3)), np.array([[3.0]]), normal(2, 3)],
                   lambda a, p, g: cells(lambda u, q, gg: gg * q * u ** (q - 1), a, p, g), None),
    "gelu_erf": ([2 * normal(3, 4)], lambda a: cells(lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2))), a), (0,)),
    "gelu_erf_grad": ([normal(2, 3), normal(2, 3)],
                      lambda x, g: cells(lambda v, gg: gg * (0.5 * (1 + math.erf(v / math.sqrt(2)))
                                                            + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)), x, g), None),
    "log_softmax": ([3 * normal(3, 4)], lambda a: rows(log_softmax_row, a), (0,)),
    "log_softmax_grad": ([rows(log_softmax_row, normal(3, 4)), normal(3, 4)],
                         lambda y, g: g - np.exp(y) * g.sum(axis=1, keepdims=True), None),
    "sse": ([normal(3, 2), normal(3, 2)], lambda p, y: np.array([[sum((p - y).ravel() ** 2)]]), (0,)),
    "sse_grad": ([normal(3, 2), normal(3, 2), normal(1, 1)], lambda p, y, g: cells(lambda u, v, w: w * 2 * (u - v), p, y, g), None),
    "bce_logits_terms": ([4 * normal(3, 2), R.uniform(size=(3, 2))], lambda z, y: cells(bce_logit, z, y), None),
    "bce_logits_mean": ([4 * normal(3, 2), R.uniform(size=(3, 2))],
                        lambda z, y: np.array([[cells(bce_logit, z, y).mean()]]), (0,)),
    "bce_logits_sum": ([4 * normal(3, 2), R.uniform(size=(3, 2))],
                       lambda z, y: np.array([[cells(bce_logit, z, y).sum()]]), (0,)),
    "bce_logits_mean_grad": ([normal(3, 2), R.uniform(size=(3, 2)), normal(1, 1)],
                             lambda z, y, g: cells(lambda u, v, w: w * (sigmoid(u) - v) / 6, z, y, g), None),
    "bce_logits_sum_grad": ([normal(3, 2), R.uniform(size=(3, 2)), normal(1, 1)],
                            lambda z, y, g: cells(lambda u, v, w: w * (sigmoid(u) - v), z, y, g), None),
    "neg_pick": ([rows(log_softmax_row, normal(3, 3)), IDS], pick, (0,)),
    "neg_pick_grad": ([normal(3, 3), IDS, normal(3, 1)],
                      lambda a, y, g: np.array([[-g[i, 0] if j == y[i, 0] else 0.0 for j in range(3)] for i in range(3)]), None),
    "soft_nll": ([rows(log_softmax_row, normal(3, 3)), PROBS],
                  lambda a, y: np.array([[-sum(y[i, j] * a[i, j] for i in range(3) for j in range(3)) / 3]]), (0,)),
    "soft_nll_grad": ([normal(3, 3), PROBS, normal(1, 1)], lambda a, y, g: -g * y / 3, None),
    "momentum": ([normal(2, 3), np.array([[0.9]]), normal(2, 3)], lambda b, m, g: cells(lambda u, v, w: v * u + w, b, m, g), None),
    "weight_decay": ([normal(2, 3), np.array([[0.01]]), normal(2, 3)],
                     lambda g, wd, p: cells(lambda u, v, w: u + v * w, g, wd, p), None),
    "decoupled_decay": ([normal(2, 3), np.array([[0.1]]), np.array([[0.01]])],
                        lambda p, lr, wd: cells(lambda u, v, w: u * (1 - v * w), p, lr, wd), None),
}


def test_every_op_has_a_case():
    assert set(CASES) == set(OPS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_the_reference(name):
    inputs, ref, _ = CASES[name]
    got = OPS[name].forward(*inputs)
    np.testing.assert_allclose(got, ref(*inputs), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", sorted(n for n, (_, _, wrt) in CASES.items() if wrt))
def test_gradient_matches_central_differences(name):
    inputs, ref, wrt = CASES[name]
    weights = np.random.default_rng(1).normal(size=ref(*inputs).shape)
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(OPS[name], *ts, name="out")
    w = tape.constant("w", weights)
    loss = tape.apply(linalg.SUM_ALL, tape.apply(linalg.MUL, out, w, name="out*w"), name="L")
    grads = tape.backward(loss, {f"in{k}": ts[k] for k in wrt})
    for k in wrt:
        numeric = central_differences(lambda *xs: float(np.sum(weights * ref(*xs))), inputs, k)
        np.testing.assert_allclose(grads[f"in{k}"].value, numeric, rtol=1e-6, atol=1e-7, err_msg=f"{name} input {k}")


def test_the_gradient_check_can_fail(monkeypatch):
    """A wrong rule is caught: minus with plus's gradient rule (b would get +g, not −g)."""
    monkeypatch.setattr(linalg.MINUS, "grad", linalg.ADD.grad)
    with pytest.raises(AssertionError, match="minus input 1"):
        test_gradient_matches_central_differences("minus")


def test_reshape_and_power_are_families_and_have_no_gradient_to_the_exponent():
    assert linalg.reshape(3, 4) is linalg.reshape(3, 4) and linalg.reshape(3, 4).params() == {"rows": 3, "cols": 4}
    tape = Tape()
    a, p = tape.constant("a", [[2.0]]), tape.constant("p", [[3.0]])
    with pytest.raises(ValueError, match="exponent"):
        tape.backward(tape.apply(act.POWER, a, p, name="c"), {"p": p})


def test_optimizers_follow_torch_optim():
    """SGD with momentum and weight decay, Adam with L2, AdamW, two steps each, against the update
    rules of torch.optim written out in numpy."""
    theta, g1, g2 = normal(2, 2), normal(2, 2), normal(2, 2)
    lr, mu, wd, b1, b2, eps = 0.1, 0.9, 0.01, 0.9, 0.999, 1e-8

    def run(make):
        tape = Tape()
        p = {"w": tape.constant("w", theta)}
        cells = {n: tape.constant(n, [[v]]) for n, v in (("lr", lr), ("mu", mu), ("wd", wd), ("b1", b1), ("b2", b2), ("e", eps))}
        opt = make(tape, cells, p)
        for k, g in enumerate((g1, g2), start=1):
            tape.iteration = k
            p = opt.step(p, {"w": tape.constant(f"g{k}", g)})
        return p["w"].value

    sgd = run(lambda t, c, p: optim.Sgd(t, c["lr"], p, c["mu"], c["wd"]))
    w, b = theta.copy(), np.zeros((2, 2))
    for g in (g1, g2):
        d = g + wd * w
        b = mu * b + d
        w = w - lr * b
    np.testing.assert_allclose(sgd, w, rtol=1e-14)

    for decoupled in (False, True):
        got = run(lambda t, c, p: optim.Adam(t, c["lr"], {"beta1": c["b1"], "beta2": c["b2"], "adam_eps": c["e"]},
                                             p, weight_decay=c["wd"], decoupled=decoupled))
        w, m, v = theta.copy(), np.zeros((2, 2)), np.zeros((2, 2))
        for k, g in enumerate((g1, g2), start=1):
            if decoupled:
                w = w * (1 - lr * wd)
            else:
                g = g + wd * w
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            w = w - (lr / (1 - b1 ** k)) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** k) + eps)
        np.testing.assert_allclose(got, w, rtol=1e-13)


# --- the formulas, recalculated ------------------------------------------------------------------

def build_tape():
    """Every op of the family once, its inputs as constants."""
    tape = Tape()
    for name, (inputs, _, _) in sorted(CASES.items()):
        ts = [tape.constant(f"{name}_in{k}", a, **({"integer": True} if a is IDS else {})) for k, a in enumerate(inputs)]
        tape.apply(OPS[name], *ts, name=name)
    return tape


def recalculated(tape, path, engine):
    write_xlsx(Layout(tape, ops_template("en", "PyTorch's ops"), {}), path)
    return verify.verify_workbook(path, engine=engine)


def test_the_formulas_recalculate_to_numpy(engine, tmp_path):
    tape = build_tape()
    report = recalculated(tape, tmp_path / "torch_ops.xlsx", engine)
    assert report.ok, report.format()
    assert {t.op.name for t in tape.tensors if t.op} == set(OPS) | {"softmax_exp", "sum_cols"}  # log_softmax's steps
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)


def test_a_broken_formula_is_caught(tmp_path):
    tape = build_tape()
    t = next(t for t in tape.tensors if t.name == "log_softmax")
    t.value = t.value + 1e-6  # the stored value no longer what the formula computes
    report = recalculated(tape, tmp_path / "broken.xlsx", "ironcalc")
    assert not report.ok
