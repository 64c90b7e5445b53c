"""The tape: records, names, backward with fan-out, stopping at the parameters."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.core import activations, linalg, losses, optimizers
from tracer.core import op as core_op
from tracer.core.tape import PHASES, Tape


def test_constant_and_apply_record_every_field():
    tape = Tape()
    tape.iteration, tape.phase = 3, "forward"
    a = tape.constant("a", [[1.0, -2.0, 3.0]], role="param")
    b = tape.constant("b", [[0.5, 0.5, 0.5]])
    c = tape.apply(linalg.MUL, a, b, name="c")
    assert tape.tensors == [a, b, c]
    assert (a.name, a.iteration, a.phase, a.shape, a.op, a.inputs) == ("a", 3, "forward", (1, 3), None, ())
    assert a.attrs == {"role": "param"}
    assert (c.name, c.iteration, c.phase, c.shape, c.op, c.inputs) == ("c", 3, "forward", (1, 3), linalg.MUL, (a, b))
    np.testing.assert_array_equal(c.value, [[0.5, -1.0, 1.5]])
    assert c.key == "3:c" and c.tape is tape
    tape.phase = "loss"
    d = tape.apply(losses.KL, a, b, name="d")
    assert d.phase == "loss" and d.shape == (1, 1)
    e = tape.constant("e", 1.0, phase="update")  # an explicit phase wins
    assert e.phase == "update"
    assert set(PHASES) == {"input", "forward", "loss", "backward", "update", "after"}


@pytest.mark.parametrize("value, shape", [(2.5, (1, 1)), ([1, 2, 3], (1, 3)), ([[1], [2]], (2, 1)),
                                          (np.arange(6).reshape(2, 3), (2, 3))])
def test_values_are_2d_float64(value, shape):
    t = Tape().constant("v", value)
    assert t.shape == shape and t.value.ndim == 2 and t.value.dtype == np.float64


def test_unnamed_tensors_get_numbered_names():
    tape = Tape()
    a = tape.constant(None, [[1.0]])
    b = tape.apply(core_op.COPY, a)
    assert (a.name, b.name) == ("t1", "t2")


def test_duplicate_names_in_one_iteration_raise():
    tape = Tape()
    tape.iteration = 1
    a = tape.constant("a", [[1.0]])
    with pytest.raises(ValueError, match="duplicate tensor name 'a' in iteration 1"):
        tape.constant("a", [[2.0]])
    with pytest.raises(ValueError, match="duplicate"):
        tape.apply(core_op.COPY, a, name="a")
    tape.iteration = 2
    again = tape.constant("a", [[3.0]])  # another iteration: fine
    assert again.key == "2:a"
    b = tape.constant("b", [[0.0]])
    with pytest.raises(ValueError, match="duplicate tensor name 'a' in iteration 2"):
        tape.rename(b, "a")


def fan_out_tape():
    """p → a = exp(p/2) → y1 = a·c1, y2 = a·c2 → L = KL(y1, y2): `a` feeds two ops."""
    tape = Tape()
    tape.iteration, tape.phase = 1, "forward"
    p = tape.constant("p", [[0.3, -0.7, 1.1]], role="param")
    c1 = tape.constant("c1", [[1.5, -0.5, 2.0]])
    c2 = tape.constant("c2", [[-0.3, 0.8, 0.25]])
    a = tape.apply(activations.EXP_HALF, p, name="a")
    y1 = tape.apply(linalg.MUL, a, c1, name="y1")
    y2 = tape.apply(linalg.MUL, a, c2, name="y2")
    tape.phase = "loss"
    loss = tape.apply(losses.KL, y1, y2, name="L")
    tape.phase = "backward"
    grads = tape.backward(loss, {"p": p})
    return tape, grads


def test_fan_out_records_contributions_and_their_sum():
    tape, grads = fan_out_tape()
    by_name = {t.name: t for t in tape.tensors}
    via1, via2, total = by_name["dL/da via y1"], by_name["dL/da via y2"], by_name["dL/da"]
    assert total.op is core_op.SUM_N and total.op.name == "sum"
    assert set(total.inputs) == {via1, via2}
    np.testing.assert_array_equal(total.value, via1.value + via2.value)
    assert total.phase == via1.phase == "backward"
    # each contribution is the gradient through its consumer alone
    a, c1, c2 = by_name["a"].value, by_name["c1"].value, by_name["c2"].value
    y1, y2 = a * c1, a * c2
    np.testing.assert_allclose(via1.value, y1 * c1, rtol=1e-14)  # ∂KL/∂μ = μ, times c1
    np.testing.assert_allclose(via2.value, (np.exp(y2) - 1) / 2 * c2, rtol=1e-14)
    # and the parameter gradient is the chain through exp(p/2)
    np.testing.assert_allclose(grads["p"].value, total.value * a / 2, rtol=1e-14)
    assert grads["p"].name == "dL/dp"
    # single-consumer gradients are named plainly, no 'via'
    assert "dL/dy1" in by_name and "dL/dy2" in by_name and "dL/dL" in by_name
    assert by_name["dL/dL"].op is core_op.ONE and by_name["dL/dL"].value.tolist() == [[1.0]]
    # no gradient for tensors the parameter does not reach
    assert not {"dL/dc1", "dL/dc2"} & set(by_name)


def test_backward_gradient_matches_finite_differences():
    tape, grads = fan_out_tape()
    by_name = {t.name: t for t in tape.tensors}
    c1, c2 = by_name["c1"].value, by_name["c2"].value

    def f(p):
        a = np.exp(p / 2)
        mu, lv = a * c1, a * c2
        return -0.5 * np.sum(1 + lv - mu**2 - np.exp(lv))

    p = by_name["p"].value
    h = 1e-6
    numeric = [(f(p + h * e) - f(p - h * e)) / (2 * h) for e in np.eye(3)[:, None, :]]
    np.testing.assert_allclose(grads["p"].value.ravel(), numeric, rtol=1e-7)


def test_backward_stops_at_the_parameters():
    """Iteration 2 starts from iteration 1's update records; its backward must not go further."""
    tape = Tape()
    x = tape.constant("x", [[0.5, -1.0, 2.0]])
    w0 = tape.constant("w", [[0.2, 0.1, -0.3]], role="param")
    lr = tape.constant("lr", [[0.1]], defined_name="lr")
    params = {"w": w0}
    for k in (1, 2):
        tape.iteration, tape.phase = k, "forward"
        z = tape.apply(linalg.MUL, x, params["w"], name="z")
        tape.phase = "loss"
        zero = tape.constant("zero", np.zeros((1, 3)))
        loss = tape.apply(losses.KL, z, zero, name="L")  # ½ Σ z²
        tape.phase = "backward"
        before = len(tape.tensors)
        grads = tape.backward(loss, params)
        new = tape.tensors[before:]
        assert all(t.iteration == k and t.phase == "backward" for t in new)
        assert {t.name for t in new} == {"dL/dL", "dL/dz", "dL/dw"}  # not dL/dzero (a constant)
        # dL/dw = x ⊙ z = x² w
        np.testing.assert_allclose(grads["w"].value, x.value**2 * params["w"].value, rtol=1e-14)
        assert tape.backward_runs[-1].loss is loss and tape.backward_runs[-1].grads == grads
        tape.phase = "update"
        params = {"w": tape.apply(optimizers.SGD, params["w"], lr, grads["w"], name="w")}
    # iteration 2's parameter is iteration 1's update record, an op with inputs of its own,
    # yet nothing of iterations 0 and 1 got a gradient in iteration 2
    assert len(tape.backward_runs) == 2
    w1 = tape.backward_runs[1].params["w"]
    assert w1.iteration == 1 and w1.phase == "update" and w1.op is optimizers.SGD
    grads_2 = [t for t in tape.tensors if t.iteration == 2 and t.name.startswith("dL/d")]
    assert all(u.iteration in (0, 1, 2) for t in grads_2 for u in t.inputs)
    assert not any(t.name.startswith("dL/d") for t in tape.tensors if t.iteration in (0,))
    assert sum(t.name == "dL/dw" for t in tape.tensors) == 2


def test_eps_is_shared_by_the_forward_and_the_backward_pass(vae_tape):
    for k in range(1, 5):
        it = {t.name: t for t in vae_tape.tensors if t.iteration == k}
        eps, z, dsigma = it["eps"], it["z"], it["dL/dsigma"]
        assert z.inputs[2] is eps
        assert any(u is eps for u in dsigma.inputs)
        assert dsigma.op is linalg.MUL
        np.testing.assert_array_equal(dsigma.value, it["dL/dz"].value * eps.value)


def test_vae_fan_out_names(vae_tape):
    """h feeds μ and log σ²; μ and log σ² feed z (or σ) and the KL term."""
    for k in range(1, 5):
        it = {t.name: t for t in vae_tape.tensors if t.iteration == k}
        for base, consumers in [("h", ("mu", "logvar")), ("mu", ("z", "kl")), ("logvar", ("sigma", "kl"))]:
            total = it[f"dL/d{base}"]
            parts = [it[f"dL/d{base} via {c}"] for c in consumers]
            assert total.op is core_op.SUM_N and set(total.inputs) == set(parts)
            np.testing.assert_array_equal(total.value, sum(p.value for p in parts))
        assert "dL/dx" not in it and "dL/deps" not in it and "dL/dlr" not in it


def test_tensor_used_twice_by_one_op():
    """sq = p ⊙ p: both inputs of one op are the same tensor (e.g. a square)."""
    tape = Tape()
    p = tape.constant("p", [[0.5, -1.0]])
    sq = tape.apply(linalg.MUL, p, p, name="sq")
    loss = tape.apply(losses.KL, sq, tape.constant("zero", np.zeros((1, 2))), name="L")  # ½ Σ p⁴
    grads = tape.backward(loss, {"p": p})
    np.testing.assert_allclose(grads["p"].value, 2 * p.value**3)


def sliced_tape(pieces, axis):
    """L = Σ (tanh of each piece of x·W)²: x·W (3×4) read through the slices `pieces` [(start, width)]."""
    tape = Tape()
    tape.iteration, tape.phase = 1, "forward"
    x = tape.constant("x", np.arange(6.0).reshape(3, 2) / 7 - 0.4)
    w = tape.constant("W", [[0.3, -0.7, 1.1, 0.2], [0.5, 0.1, -0.4, 0.9]], role="param")
    xw = linalg.matmul(x, w, name="XW")
    cut = linalg.slice_cols if axis else linalg.slice_rows
    parts = [activations.tanh(tape.apply(cut(a, n), xw, name=f"x_{a}"), name=f"t_{a}") for a, n in pieces]
    tape.phase = "loss"
    joined = linalg.concat_cols(parts) if axis else linalg.concat_rows(parts)
    loss = tape.apply(linalg.SUM_ALL, linalg.mul(joined, joined, name="sq"), name="L")
    tape.phase = "backward"
    return tape, tape.backward(loss, {"W": w})


@pytest.mark.parametrize("axis", [0, 1])
def test_a_tensor_read_by_slices_that_tile_it_gets_their_gradients_joined(axis):
    """x_1 … x_T, the rows of X: ∂L/∂X = [∂L/∂x_1; …; ∂L/∂x_T], no padded T × d copy per piece;
    slices that leave a part of the tensor unread still give padded contributions, summed."""
    pieces = [(0, 1), (1, 1), (2, 1)] if axis == 0 else [(0, 1), (1, 2), (3, 1)]
    tape, grads = sliced_tape(pieces, axis)
    by_name = {t.name: t for t in tape.tensors}
    joined = by_name["dL/dXW"]
    assert joined.op is (linalg.CONCAT_COLS if axis else linalg.CONCAT_ROWS)
    assert [u.name for u in joined.inputs] == [f"dL/dx_{a}" for a, _ in pieces]
    assert not [t for t in tape.tensors if t.op is not None and t.op.name.startswith("pad")]
    xw = by_name["XW"].value
    np.testing.assert_allclose(joined.value, 2 * np.tanh(xw) * (1 - np.tanh(xw) ** 2), rtol=1e-13)
    np.testing.assert_allclose(grads["W"].value, by_name["x"].value.T @ joined.value, rtol=1e-13)
    part, _ = sliced_tape(pieces[:-1], axis)  # the last row or column unread: pads, and their sum
    names = {t.name: t for t in part.tensors}
    assert names["dL/dXW"].op is core_op.SUM_N
    assert {u.op.name for u in names["dL/dXW"].inputs} == {f"pad_{'cols' if axis else 'rows'}"}
