"""The ops of the diffusion model (tracer.core.diffusion): the schedule from two cells, its running
product, a value picked at each example's step, the noising strip, the denoised estimate and the
reverse step.

* numpy forwards against independent references (loops over cells, math.prod, math.sqrt);
* none of them is learned (no gradient rule): the schedule and the data get no gradient, and the
  reverse process runs after training;
* the cell formulas recalculated in LibreOffice through the real exporter, and a formula broken
  on purpose that the check catches.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ops_template
from families import DIFFUSION, ops_of

from tracer.checks import verify
from tracer.core import diffusion as dd
from tracer.core.tape import Tape
from tracer.render.layout import Layout
from tracer.render.xlsx import write_xlsx

T, N, P = 6, 3, 4


def draws(seed=0):
    r = np.random.default_rng(seed)
    start, end = 0.05, 0.4
    t = np.arange(1, T + 1, dtype=float).reshape(-1, 1)
    steps = r.integers(1, T + 1, (N, 1)).astype(float)
    return start, end, t, steps, r.uniform(0, 1, (N, P)), r.normal(size=(N, P)), r.normal(size=(N, P))


def ref_schedule(start, end):
    """β, α, ᾱ, √ᾱ, √(1 − ᾱ) as lists, one step at a time."""
    beta = [start + (end - start) * k / (T - 1) for k in range(T)]
    alpha = [1 - b for b in beta]
    abar = [math.prod(alpha[:k + 1]) for k in range(T)]
    return beta, alpha, abar, [math.sqrt(a) for a in abar], [math.sqrt(1 - a) for a in abar]


def test_every_op_is_in_the_family():
    assert set(ops_of(DIFFUSION)) == {"to_signed", "one_minus", "sqrt", "denoise", "linear_schedule",
                                      "running_product", "pick", "noise_strip", "reverse_step"}


def test_forwards_match_loops():
    start, end, t, steps, x, e, z = draws()
    beta, alpha, abar, sa, sb = ref_schedule(start, end)
    col = lambda v: np.array(v).reshape(-1, 1)  # noqa: E731
    np.testing.assert_allclose(dd.LINEAR_SCHEDULE.forward(np.array([[start]]), np.array([[end]]), t), col(beta),
                               rtol=1e-15)
    np.testing.assert_allclose(dd.ONE_MINUS.forward(col(beta)), col(alpha), rtol=1e-15)
    np.testing.assert_allclose(dd.RUNNING_PRODUCT.forward(col(alpha)), col(abar), rtol=1e-14)
    np.testing.assert_allclose(dd.SQRT.forward(col(abar)), col(sa), rtol=1e-15)
    np.testing.assert_allclose(dd.TO_SIGNED.forward(x), [[2 * v - 1 for v in row] for row in x], rtol=1e-15)
    picked = dd.PICK.forward(col(sa), steps)
    assert picked.tolist() == [[sa[int(s) - 1]] for s in steps[:, 0]]
    x0 = 2 * x - 1
    strip = dd.NOISE_STRIP.forward(col(sa), x0, col(sb), e)
    assert strip.shape == (T, P)
    for k in range(T):
        for j in range(P):
            assert strip[k, j] == pytest.approx(sa[k] * x0[0, j] + sb[k] * e[0, j], rel=1e-14)
    a, b = dd.PICK.forward(col(sa), steps), dd.PICK.forward(col(sb), steps)
    x_t = a * x0 + b * e
    np.testing.assert_allclose(dd.DENOISE.forward(x_t, b, e, a), x0, rtol=1e-12, atol=1e-12)  # the true ε undoes it
    for t_ in (T, 1):
        k = t_ - 1
        want = [[(x_t[i, j] - beta[k] / sb[k] * e[i, j]) / math.sqrt(alpha[k]) + (math.sqrt(beta[k]) * z[i, j]
                 if t_ > 1 else 0) for j in range(P)] for i in range(N)]
        args = (x_t, e, col(beta), col(alpha), col(sb)) + ((z,) if t_ > 1 else ())
        np.testing.assert_allclose(dd.reverse_step_op(t_, t_ > 1).forward(*args), want, rtol=1e-13)


def test_pick_refuses_steps_outside_the_column():
    column = np.ones((T, 1))
    for bad in (0.0, T + 1.0, 1.5):
        with pytest.raises(ValueError, match="whole numbers"):
            dd.PICK.forward(column, np.array([[1.0], [bad]]))


def test_a_schedule_needs_two_steps():
    tape = Tape()
    one = tape.constant("a", [[0.1]])
    with pytest.raises(ValueError, match="at least 2 steps"):
        dd.linear_schedule(one, one, tape.constant("t", [[1.0]]))


def test_reverse_steps_are_one_instance_per_step_and_kind():
    assert dd.reverse_step_op(3, True) is dd.reverse_step_op(3, True)
    assert dd.reverse_step_op(3, True) is not dd.reverse_step_op(3, False)
    assert dd.reverse_step_op(4, False).params() == {"t": 4}


# --- LibreOffice: the real exporter, recalculated ----------------------------------------------

def build_tape(seed=0):
    """Every op once, as the model uses them (the schedule on the inputs, the rest in an iteration)."""
    start, end, t, steps, x, e, z = draws(seed)
    tape = Tape()
    s = tape.constant("beta_start", [[start]], role="hyper", defined_name="beta_start")
    f = tape.constant("beta_end", [[end]], role="hyper", defined_name="beta_end")
    t = tape.constant("steps", t, role="data", integer=True)
    beta = dd.linear_schedule(s, f, t, name="beta")
    alpha = dd.one_minus(beta, name="alpha")
    abar = dd.running_product(alpha, name="alpha_bar")
    sa, sb = dd.sqrt(abar, name="sa"), dd.sqrt(dd.one_minus(abar, name="1-abar"), name="sb")
    x0 = dd.to_signed(tape.constant("x", x, role="data"), name="x0")
    tape.iteration = 1
    tape.at("forward")
    steps = tape.constant("t", steps, role="draw", integer=True)
    eps, zz = tape.constant("eps", e, role="draw"), tape.constant("z", z, role="draw")
    a, b = dd.pick(sa, steps, name="a"), dd.pick(sb, steps, name="b")
    dd.noise_strip(sa, x0, sb, eps, name="strip")
    x_t = tape.constant("x_t", a.value * x0.value + b.value * e, role="data")
    dd.denoise(x_t, b, eps, a, name="x0_hat")
    x_1 = dd.reverse_step(2, x_t, eps, beta, alpha, sb, zz, name="x_1")
    dd.reverse_step(1, x_1, eps, beta, alpha, sb, None, name="x_0")
    return tape


def recalculated(tape, path):
    """The ops' workbook, written and checked by `verify`: its report."""
    write_xlsx(Layout(tape, ops_template("en", "Diffusion"), {}), path)
    return verify.verify_workbook(path)


def test_workbook_recalculates_to_numpy(soffice, tmp_path):
    tape = build_tape()
    report = recalculated(tape, tmp_path / "diffusion_ops.xlsx")
    assert report.ok, report.format()
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)
    assert {t.op.name for t in tape.tensors if t.op} == set(ops_of(DIFFUSION))


def test_a_wrong_step_is_caught(soffice, monkeypatch, tmp_path):
    """The running product one factor short in its last cell: the check catches it."""
    right = dd.RunningProduct.formula

    def broken(self, c, i, j):
        f = right(self, c, i, j)
        return f.rsplit("*", 1)[0] if i == T - 1 else f

    monkeypatch.setattr(dd.RunningProduct, "formula", broken)
    report = recalculated(build_tape(), tmp_path / "broken.xlsx")
    assert not report.ok and report.n_mismatches >= 1
