"""Finite differences against the traced gradients: right rules pass, a wrong rule is caught.

The traced gradients are computed while tracing, so a broken gradient rule is patched in before
`vae.trace` runs.  Configs are small (hidden=5: W1 and W4 have 3920 elements each) yet keep some
units of both hidden layers alive, so no gradient tensor is all zeros (which would pass trivially).
"""

from __future__ import annotations

import numpy as np
import pytest

from tracer.checks.gradcheck import THRESHOLD, _replay, runs_of
from tracer.checks.gradcheck import gradcheck as gradcheck_runs
from tracer.core import activations, losses
from tracer.models import vae

SMALL = vae.Config(hidden=5, latent=2, iterations=1)


def gradcheck(tape, k, **kw):
    """The VAE has one backward pass per iteration: its report."""
    (report,) = gradcheck_runs(tape, k, **kw)
    return report


PARAMS = ["W1", "b1", "W_mu", "b_mu", "W_logvar", "b_logvar", "W3", "b3", "W4", "b4"]


def test_gradcheck_passes_on_every_element_of_a_small_vae():
    tape = vae.trace(SMALL)
    grads = tape.backward_runs[0].grads
    assert all(np.abs(grads[name].value).max() > 1e-4 for name in PARAMS)  # not trivially zero
    report = gradcheck(tape, 1)
    assert [c.name for c in report.checks] == PARAMS
    assert all(c.checked == c.size for c in report.checks)
    assert report.checks[0].size == 784 * 5
    assert report.ok and report.max_rel < 1e-6
    assert all(c.max_abs < 1e-8 for c in report.checks)
    assert report.lines()[-1].endswith("OK")


def test_gradcheck_samples_and_later_iterations():
    tape = vae.trace(vae.Config(hidden=5, iterations=2))
    report = gradcheck(tape, 2, sample=7)
    assert report.iteration == 2
    assert [c.checked for c in report.checks] == [min(7, c.size) for c in report.checks]
    assert report.ok, "\n".join(report.lines())


def test_replay_reproduces_the_recorded_loss():
    tape = vae.trace(SMALL)
    (run,) = runs_of(tape, 1)
    values = {id(u): u.value.astype(np.longdouble) for t in run.region for u in t.inputs}
    assert run.region[-1] is run.loss
    assert float(_replay(run.region, values)) == pytest.approx(run.loss.value[0, 0], rel=1e-13)


def wrong(monkeypatch, op, fn):
    monkeypatch.setattr(op, "fn", fn)


@pytest.mark.parametrize("breakage, broken, intact", [
    # σ'(a) off by 1 %: every parameter before the output is affected (biases: dense gradients)
    (lambda: (activations.SIGMOID_GRAD, lambda y, g: 1.01 * g * y * (1 - y)),
     ["b1", "b_mu", "b_logvar", "W3", "b3", "b4"], []),
    # the KL term's gradient for log σ² missing its −1: only the log-variance path is affected
    (lambda: (losses.KL_LOGVAR_GRAD, lambda g, lv: g * np.exp(lv) / 2), ["b_logvar", "b1"],
     ["b_mu", "W3", "b3", "W4", "b4"]),
    # ReLU passing the gradient of its negative inputs too (some units of h are off)
    (lambda: (activations.RELU_GRAD, lambda a, g: g), ["b1"], ["W4", "b4"]),
], ids=["sigmoid_grad", "kl_logvar_grad", "relu_grad"])
def test_a_wrong_gradient_rule_is_caught(monkeypatch, breakage, broken, intact):
    op, fn = breakage()
    wrong(monkeypatch, op, fn)
    report = gradcheck(vae.trace(SMALL), 1, sample=20)
    rel = {c.name: c.rel for c in report.checks}
    assert not report.ok and report.max_rel > 1e-6
    assert "FAILED" in report.lines()[-1]
    for name in broken:
        assert rel[name] > 1e-4, (name, rel[name])
    for name in intact:
        assert rel[name] < 1e-6, (name, rel[name])


def test_correct_tiny_gradients_pass():
    tape = vae.trace(vae.Config(hidden=3, latent=2, iterations=2))
    report = gradcheck(tape, 2)
    assert max(c.max_abs for c in report.checks) < 1e-9  # the traced gradients are right
    assert report.ok, "\n".join(report.lines())


# --- the command ------------------------------------------------------------------------------

def test_cli_gradcheck_ok(run_main):
    code, out, err = run_main("gradcheck", "vae", "--hidden", 5, "--iterations", 1)
    assert code == 0, out + err
    assert out.splitlines()[-1].endswith("-> OK")
    assert "3920/3920" in out  # every element of W1 (784 × 5)


def test_cli_gradcheck_fails_on_a_wrong_rule(run_main, monkeypatch):
    wrong(monkeypatch, activations.SIGMOID_GRAD, lambda y, g: 1.01 * g * y * (1 - y))
    code, out, err = run_main("gradcheck", "vae", "--hidden", 5, "--iterations", 2, "--sample", 5)
    assert code == 1, out + err
    assert out.splitlines()[-1].endswith("-> FAILED")
    assert out.count("FAILED (threshold") == 2  # both iterations
    assert f"{THRESHOLD:g}" in out
