"""The VAE model: training falls, the records link iterations, and the traced gradients equal a
backpropagation written by hand from the equations of tracer/models/vae.py."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.core import optimizers
from tracer.data import mnist
from tracer.models import vae

PARAMS = ("W1", "b1", "W_mu", "b_mu", "W_logvar", "b_logvar", "W3", "b3", "W4", "b4")


def by_name(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def params_entering(tape, k):
    """The parameter tensors iteration k starts from: the inputs of its backward run."""
    return tape.backward_runs[k - 1].params


def test_default_loss_falls_at_every_iteration(vae_tape):
    losses = [by_name(vae_tape, k)["loss"].value[0, 0] for k in range(1, 5)]
    assert len(losses) == 4
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert [t.iteration for t in vae_tape.tensors if t.name == "loss"] == [1, 2, 3, 4]


def test_one_eps_per_iteration_recorded_as_a_constant(vae_tape, vae_config):
    eps = [t for t in vae_tape.tensors if t.name == "eps"]
    assert [t.iteration for t in eps] == [1, 2, 3, 4]
    for t in eps:
        assert t.op is None and t.inputs == ()
        assert t.phase == "forward" and t.attrs.get("role") == "draw"
        assert t.shape == (1, vae_config.latent)
    assert not np.array_equal(eps[0].value, eps[1].value)


def test_inputs_are_recorded_once(vae_tape, vae_config):
    zero = by_name(vae_tape, 0)
    assert set(zero) == {"x", *PARAMS, "lr"}
    assert all(t.op is None and t.phase == "input" for t in zero.values())
    np.testing.assert_array_equal(zero["x"].value, mnist.load_digit(vae_config.digit)[0])
    assert zero["lr"].value.tolist() == [[vae_config.lr]] and zero["lr"].attrs["defined_name"] == "lr"
    assert vae_tape.meta == {"model": "vae", "label": 7, "equation_values": {"pixels": 784}}


def test_parameters_of_the_next_iteration_are_the_update_records(vae_tape):
    zero = by_name(vae_tape, 0)
    for k in range(1, 5):
        entering = params_entering(vae_tape, k)
        assert list(entering) == list(PARAMS)
        for name, p in entering.items():
            if k == 1:
                assert p is zero[name]
            else:
                update = by_name(vae_tape, k - 1)[name]
                assert p is update
                assert update.phase == "update" and update.op is optimizers.SGD
        it = by_name(vae_tape, k)
        assert it["h_pre"].inputs[1] is entering["W1"] and it["h_pre"].inputs[2] is entering["b1"]
        assert it["h_pre"].inputs[0] is zero["x"]
        # nothing of an earlier iteration is used except x, lr and the parameters entering
        allowed = {id(zero["x"]), id(zero["lr"])} | {id(p) for p in entering.values()}
        for t in it.values():
            for u in t.inputs:
                assert u.iteration == k or id(u) in allowed, (t.name, u.name, u.iteration)


def test_updates_are_sgd_steps(vae_tape, vae_config):
    for k in range(1, 5):
        it = by_name(vae_tape, k)
        entering = params_entering(vae_tape, k)
        for name in PARAMS:
            new = it[name]
            p, lr, g = new.inputs
            assert p is entering[name] and lr.name == "lr" and g is it[f"dL/d{name}"]
            np.testing.assert_array_equal(new.value, p.value - vae_config.lr * g.value)


def hand_backprop(x, p, eps):
    """The VAE's forward pass and loss gradient, written out by hand (vae.py's docstring): the
    negative ELBO of each digit (row of x), averaged over the N digits."""
    n = x.shape[0]
    a1 = x @ p["W1"] + p["b1"]
    h = np.maximum(a1, 0)
    mu = h @ p["W_mu"] + p["b_mu"]
    lv = h @ p["W_logvar"] + p["b_logvar"]
    s = np.exp(lv / 2)
    z = mu + s * eps
    a3 = z @ p["W3"] + p["b3"]
    hd = np.maximum(a3, 0)
    a4 = hd @ p["W4"] + p["b4"]
    xh = 1 / (1 + np.exp(-a4))
    recon = -np.sum(x * np.log(xh) + (1 - x) * np.log(1 - xh)) / n
    kl = -0.5 * np.sum(1 + lv - mu**2 - np.exp(lv)) / n

    d_a4 = (xh - x) / n  # BCE after a sigmoid
    d_hd = d_a4 @ p["W4"].T
    d_a3 = d_hd * (a3 > 0)
    d_z = d_a3 @ p["W3"].T
    d_mu = d_z + mu / n  # through z, and the KL term
    d_lv = d_z * eps * s / 2 + (np.exp(lv) - 1) / (2 * n)  # through σ, and the KL term
    d_h = d_mu @ p["W_mu"].T + d_lv @ p["W_logvar"].T
    d_a1 = d_h * (a1 > 0)
    grads = {
        "W1": x.T @ d_a1, "b1": d_a1.sum(0, keepdims=True),
        "W_mu": h.T @ d_mu, "b_mu": d_mu.sum(0, keepdims=True),
        "W_logvar": h.T @ d_lv, "b_logvar": d_lv.sum(0, keepdims=True),
        "W3": z.T @ d_a3, "b3": d_a3.sum(0, keepdims=True),
        "W4": hd.T @ d_a4, "b4": d_a4.sum(0, keepdims=True),
    }
    return recon + kl, grads


@pytest.mark.parametrize("cfg", [None, vae.Config(hidden=5, latent=3, iterations=3, seed=1, digit=17, lr=0.02),
                                 vae.Config(hidden=4, latent=2, iterations=2, seed=2, digit=5, batch=3, lr=0.01)],
                         ids=["default", "other", "batch of 3"])
def test_traced_gradients_equal_hand_written_backprop(cfg, vae_tape):
    tape = vae_tape if cfg is None else vae.trace(cfg)
    iterations = len(tape.backward_runs)
    x = by_name(tape, 0)["x"].value
    for k in range(1, iterations + 1):
        it = by_name(tape, k)
        entering = params_entering(tape, k)
        loss, grads = hand_backprop(x, {n: t.value for n, t in entering.items()}, it["eps"].value)
        assert it["loss"].value[0, 0] == pytest.approx(loss, rel=1e-12)
        traced = tape.backward_runs[k - 1].grads
        for name in PARAMS:
            got, want = traced[name].value, grads[name]
            assert got.shape == want.shape == entering[name].shape
            scale = np.abs(want).max()
            assert scale > 0, (k, name)  # not vacuous: no all-zero gradient in these configs
            assert np.abs(got - want).max() <= 1e-10 * max(scale, 1e-300), (k, name)


def test_init_is_seeded_and_scaled():
    a = vae.init_params(np.random.default_rng(0), 8, 2)
    b = vae.init_params(np.random.default_rng(0), 8, 2)
    c = vae.init_params(np.random.default_rng(1), 8, 2)
    assert set(a) == set(PARAMS)
    for name in PARAMS:
        np.testing.assert_array_equal(a[name], b[name])
        if name == "b3":  # the decoder's ReLU units start active
            assert np.all(a[name] == vae.DECODER_BIAS) and a[name].shape == (1, 8)
        elif name.startswith("b"):
            assert not a[name].any() and a[name].shape[0] == 1
        else:
            assert not np.array_equal(a[name], c[name])
    assert a["W1"].shape == (784, 8) and a["W4"].shape == (8, 784) and a["W_mu"].shape == (8, 2)
    std = a["W1"].std() * np.sqrt(784) / vae.INIT_SCALE  # N(0, 0.1²/fan_in): 6272 draws
    assert 0.95 < std < 1.05


def test_trace_is_deterministic_per_seed():
    cfg = vae.Config(hidden=3, iterations=2)
    one, two = vae.trace(cfg), vae.trace(cfg)
    other = vae.trace(vae.Config(hidden=3, iterations=2, seed=1))
    assert [t.name for t in one.tensors] == [t.name for t in two.tensors]
    assert all(np.array_equal(s.value, t.value) for s, t in zip(one.tensors, two.tensors))
    assert not np.array_equal(by_name(one, 0)["W1"].value, by_name(other, 0)["W1"].value)
    assert not np.array_equal(by_name(one, 1)["eps"].value, by_name(other, 1)["eps"].value)


# --- the hand-sized VAE: --size S ---------------------------------------------------------------

def test_size_averages_the_digit_into_blocks():
    """--size 4: x is the digit averaged over 7 × 7 blocks (a formula of the digit's pixels), and
    the network is sized to its 16 pixels."""
    tape = vae.trace(vae.Config(size=4, hidden=2, iterations=2))
    by_name = {(t.name, t.iteration): t for t in tape.tensors}
    digit, x = by_name[("digit", 0)], by_name[("x", 0)]
    assert digit.op is None and digit.shape == (1, 784)
    assert x.op.name == "avg_pool" and x.inputs == (digit,) and x.shape == (1, 16)
    blocks = digit.value.reshape(4, 7, 4, 7).mean(axis=(1, 3)).reshape(1, 16)
    np.testing.assert_allclose(x.value, blocks, rtol=1e-14)
    assert by_name[("W1", 0)].shape == (16, 2) and by_name[("x_hat", 1)].shape == (1, 16)
    losses = [by_name[("loss", k)].value.item() for k in (1, 2)]
    assert losses[1] < losses[0]


def test_default_size_keeps_the_digit_itself(vae_tape):
    assert not any(t.name == "digit" for t in vae_tape.tensors)
    assert next(t for t in vae_tape.tensors if t.name == "x").op is None


def test_a_hand_sized_backward_pass():
    """--size 4 --hidden 2: one iteration's whole backward pass is a few hundred cells."""
    tape = vae.trace(vae.Config(size=4, hidden=2, iterations=1))
    cells = sum(t.value.size for t in tape.tensors if t.phase == "backward")
    assert 100 < cells <= 300
    reports = gradcheck(tape, 1)
    assert all(r.ok for r in reports)
