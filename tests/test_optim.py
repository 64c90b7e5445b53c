"""Adam, recorded: its state against a plain numpy Adam, its gradients against finite
differences, its options checked; the default Adam VAE learns."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.models import vae

PARAMS = ["W1", "b1", "W_mu", "b_mu", "W_logvar", "b_logvar", "W3", "b3", "W4", "b4"]


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


@pytest.mark.parametrize("options", [{}, {"beta1": 0.5, "beta2": 0.9, "adam_eps": 1e-3, "lr": 0.02}],
                         ids=["defaults", "other hyperparameters"])
def test_adam_state_matches_a_plain_numpy_adam(options):
    cfg = vae.Config(hidden=4, iterations=4, optimizer="adam", **options)
    tape = vae.trace(cfg)
    theta = {k: of(tape, 0)[k].value.copy() for k in PARAMS}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    for t in range(1, cfg.iterations + 1):
        it = of(tape, t)
        assert it["t"].value[0, 0] == t
        for k in PARAMS:
            g = it[f"dL/d{k}"].value  # the traced gradient (gradcheck proves it separately)
            m[k] = cfg.beta1 * m[k] + (1 - cfg.beta1) * g
            v[k] = cfg.beta2 * v[k] + (1 - cfg.beta2) * g * g
            m_hat, v_hat = m[k] / (1 - cfg.beta1 ** t), v[k] / (1 - cfg.beta2 ** t)
            theta[k] = theta[k] - cfg.lr * m_hat / (np.sqrt(v_hat) + cfg.adam_eps)
            for name, want in ((f"m[{k}]", m[k]), (f"v[{k}]", v[k]), (f"m_hat[{k}]", m_hat),
                               (f"v_hat[{k}]", v_hat), (k, theta[k])):
                np.testing.assert_allclose(it[name].value, want, rtol=1e-12, atol=1e-15, err_msg=f"{name} at {t}")


def test_first_adam_step_is_lr_times_the_sign_of_the_gradient():
    """Textbook fact: at t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε) ≈ lr·sign(g)."""
    cfg = vae.Config(hidden=4, iterations=1, optimizer="adam")
    it = of(vae.trace(cfg), 1)
    g, step = it["dL/db4"].value, it["step[b4]"].value
    big = np.abs(g) > 1e-3
    np.testing.assert_allclose(step[big], cfg.lr * np.sign(g[big]), rtol=1e-4)


def test_adam_gradients_pass_gradcheck():
    tape = vae.trace(vae.Config(hidden=3, iterations=3, optimizer="adam"))
    for k in (1, 3):
        (report,) = gradcheck(tape, k, sample=15)
        assert report.ok, "\n".join(report.lines())


def test_default_adam_vae_learns():
    tape = vae.trace(vae.Config(optimizer="adam"))
    losses = [float(of(tape, k)["loss"].value[0, 0]) for k in range(1, 5)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_sgd_records_no_adam_state():
    tape = vae.trace(vae.Config(hidden=2, iterations=1))
    assert not [t for t in tape.tensors if t.attrs.get("role") == "state"]
    assert {t.op.name for t in tape.tensors if t.phase == "update"} == {"sgd"}


def test_default_learning_rate_follows_the_optimizer():
    assert vae.Config().lr == 0.005 and vae.Config(optimizer="adam").lr == 0.01
    assert vae.Config(optimizer="adam", lr=0.5).lr == 0.5


@pytest.mark.parametrize("args, words", [
    (["--optimizer", "rmsprop"], ["--optimizer", "rmsprop"]),
    (["--optimizer", "adam", "--beta1", "1"], ["--beta1 must be below 1"]),
    (["--optimizer", "adam", "--beta2", "-0.1"], ["--beta2 must be at least 0"]),
    (["--optimizer", "adam", "--adam-eps", "0"], ["--adam-eps must be positive"]),
])
@pytest.mark.parametrize("model", ["vae", "gan"])
def test_bad_optimizer_options_are_one_line_errors(run_main, tmp_path, model, args, words):
    out_file = tmp_path / "x.xlsx"
    code, out, err = run_main("run", model, *args, "-o", out_file)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    for w in words:
        assert w in err, err
    assert not out_file.exists()
