"""The diffusion model (DDPM): every iteration's forward pass, loss, gradients and update (SGD and
Adam, with and without a warm-up) and the whole reverse process against an independent numpy
implementation written from the model's docstring; gradcheck on every parameter element; the
schedule as formulas of the two named cells; the documented warm-up draws a digit (seeds 0–2);
bad options as one-line errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from documented import arrow, num, says, table_row

from tracer.checks.gradcheck import gradcheck
from tracer.models import diffusion

PARAMS = ("W1", "b1", "W2", "b2")
CONFIGS = {
    "defaults": {},
    "adam": {"optimizer": "adam"},
    "warmup-sgd": {"warmup": 7, "iterations": 2, "hidden": 9, "size": 4, "steps": 5},
    "warmup-adam": {"warmup": 6, "iterations": 2, "optimizer": "adam", "batch": 2, "time_dim": 3, "size": 2},
    "size-14": {"size": 14, "hidden": 5, "iterations": 1, "samples": 2, "steps": 3, "beta_end": 0.9},
}
PAGE = "models/diffusion.md"
WARMUP = {"warmup": 10000}  # docs/models/diffusion.md's documented command: tracer run diffusion --warmup 10000


def of(tape, k):
    return {t.name: t.value for t in tape.tensors if t.iteration == k}


# --- the model, written again from its docstring (no tracer code) -----------------------------

def pooled(digits, size):
    """Each 28 × 28 digit averaged over (28/size)² blocks, row by row."""
    f = 28 // size
    return digits.reshape(-1, size, f, size, f).mean(axis=(2, 4)).reshape(len(digits), -1)


def schedule(b1, bT, T):
    beta = np.array([b1 + (bT - b1) * (t - 1) / (T - 1) for t in range(1, T + 1)])
    alpha = 1 - beta
    abar = np.array([np.prod(alpha[:t]) for t in range(1, T + 1)])
    return beta, alpha, abar


def encoding(t, d):
    """sin(t / 10000^(j/d)) in even columns j, cos(t / 10000^((j−1)/d)) in odd ones."""
    j = np.arange(d)
    angle = t.reshape(-1, 1) / 10000.0 ** ((j - j % 2) / d)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))


def network(p, x, t, d):
    inp = np.hstack([x, encoding(t, d)])
    pre = inp @ p["W1"] + p["b1"]
    h = np.maximum(pre, 0)
    return inp, pre, h, h @ p["W2"] + p["b2"]


def step(p, x0, t, eps, abar, d):
    """The iteration's tensors by tape name and the gradients by parameter."""
    a, b = np.sqrt(abar[t - 1]).reshape(-1, 1), np.sqrt(1 - abar[t - 1]).reshape(-1, 1)
    x_t = a * x0 + b * eps
    inp, pre, h, eps_hat = network(p, x_t, t, d)
    n = eps.size
    g = 2 * (eps_hat - eps) / n
    dh = g @ p["W2"].T
    dpre = dh * (pre > 0)
    grads = {"W2": h.T @ g, "b2": g.sum(0, keepdims=True), "W1": inp.T @ dpre, "b1": dpre.sum(0, keepdims=True)}
    out = {"x_t": x_t, "h_pre": pre, "h": h, "eps_hat": eps_hat, "loss": np.mean((eps - eps_hat) ** 2),
           "x0_hat": (x_t - b * eps_hat) / a, "forward_process": np.sqrt(abar)[:, None] * x0[0]
           + np.sqrt(1 - abar)[:, None] * eps[0]}
    return out, grads


def update(cfg, p, grads, state):
    if cfg.optimizer == "sgd":
        return {k: p[k] - cfg.lr * grads[k] for k in p}
    new = {}
    for k in p:
        m, v, t = state[k]
        m, v, t = cfg.beta1 * m + (1 - cfg.beta1) * grads[k], cfg.beta2 * v + (1 - cfg.beta2) * grads[k] ** 2, t + 1
        state[k] = (m, v, t)
        mh, vh = m / (1 - cfg.beta1 ** t), v / (1 - cfg.beta2 ** t)
        new[k] = p[k] - cfg.lr * mh / (np.sqrt(vh) + cfg.adam_eps)
    return new


@pytest.mark.parametrize("name", CONFIGS)
def test_every_iteration_and_the_reverse_process_match_numpy(name):
    cfg = diffusion.Config(**CONFIGS[name])
    tape = diffusion.trace(cfg)
    inputs = of(tape, 0)
    x0 = 2 * pooled(inputs["digit"], cfg.size) - 1
    np.testing.assert_allclose(inputs["x0"], x0, rtol=1e-13, atol=1e-14)
    beta, alpha, abar = schedule(cfg.beta_start, cfg.beta_end, cfg.steps)
    np.testing.assert_allclose(inputs["alpha_bar"][:, 0], abar, rtol=1e-13)
    np.testing.assert_allclose(inputs["sqrt_one_minus_alpha_bar"][:, 0], np.sqrt(1 - abar), rtol=1e-13)
    p = {k: inputs[k] for k in PARAMS}
    state = {k: (inputs[f"m[{k}]"], inputs[f"v[{k}]"], inputs["t"][0, 0]) if cfg.optimizer == "adam" else None
             for k in PARAMS}
    iterations = sorted({t.iteration for t in tape.tensors if t.phase == "update"})
    assert iterations == list(range(cfg.warmup + 1, cfg.warmup + cfg.iterations + 1))
    for k in iterations:
        got = of(tape, k)
        t = got["timestep"][:, 0].astype(int)
        assert 1 <= t.min() and t.max() <= cfg.steps
        want, grads = step(p, x0, t, got["eps"], abar, cfg.time_dim)
        for key, value in want.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-10, atol=1e-12, err_msg=f"{key} at {k}")
        for key in PARAMS:
            np.testing.assert_allclose(got[f"dL/d{key}"], grads[key], rtol=1e-9, atol=1e-13, err_msg=key)
        p = update(cfg, p, grads, state)
        for key in PARAMS:
            np.testing.assert_allclose(got[key], p[key], rtol=1e-9, atol=1e-13, err_msg=f"{key} updated at {k}")
    after = of(tape, iterations[-1])
    x = after[f"x_{cfg.steps}"]
    assert x.shape == (cfg.samples, cfg.size ** 2)
    for t in range(cfg.steps, 0, -1):
        eps_hat = network(p, x, np.full(cfg.samples, float(t)), cfg.time_dim)[3]
        np.testing.assert_allclose(after[f"[t={t}] eps_hat"], eps_hat, rtol=1e-9, atol=1e-12)
        z = after[f"[t={t}] z"] if t > 1 else 0.0
        assert (f"[t={t}] z" in after) == (t > 1)  # no noise at the last step
        x = (x - beta[t - 1] / np.sqrt(1 - abar[t - 1]) * eps_hat) / np.sqrt(alpha[t - 1]) + np.sqrt(beta[t - 1]) * z
        np.testing.assert_allclose(after[f"x_{t - 1}"], x, rtol=1e-9, atol=1e-12, err_msg=f"x_{t - 1}")


def test_the_draws_are_recorded_and_seeded():
    a, b, c = (diffusion.trace(diffusion.Config(seed=s, iterations=1)) for s in (0, 0, 1))
    draws = lambda tape: [t.value for t in tape.tensors if t.attrs.get("role") == "draw"]  # noqa: E731
    assert all(np.array_equal(u, v) for u, v in zip(draws(a), draws(b)))
    assert not np.array_equal(draws(a)[1], draws(c)[1])
    names = [t.name for t in a.tensors if t.attrs.get("role") == "draw"]
    assert names[:3] == ["timestep", "eps", "x_10"] and names.count("[t=2] z") == 1 and "[t=1] z" not in names


def test_the_schedule_is_formulas_of_the_two_named_cells():
    tape = diffusion.trace(diffusion.Config(iterations=1, samples=0))
    made = {t.name: t for t in tape.tensors if t.iteration == 0}
    assert made["beta_start"].attrs["defined_name"] == "beta_start"
    assert made["beta_end"].attrs["defined_name"] == "beta_end"
    assert list(made["beta"].inputs[:2]) == [made["beta_start"], made["beta_end"]]
    chain = ["alpha", "alpha_bar", "sqrt_alpha_bar", "one_minus_alpha_bar", "sqrt_one_minus_alpha_bar"]
    assert all(made[n].op is not None for n in ["beta", *chain])
    assert not any(t.phase == "after" for t in tape.tensors)  # --samples 0: no reverse process


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_gradcheck_every_parameter_element(optimizer):
    tape = diffusion.trace(diffusion.Config(optimizer=optimizer, iterations=2, hidden=6, size=4, steps=4))
    for k in (1, 2):
        (report,) = gradcheck(tape, k)
        assert {c.name for c in report.checks} == set(PARAMS)
        assert all(c.checked == c.size for c in report.checks)
        assert report.ok and report.max_rel < 1e-6, report.lines()


def nearest_correlation(samples, digits):
    """Each sample's Pearson correlation with the training digit it is most correlated with."""
    a = samples - samples.mean(1, keepdims=True)
    b = digits - digits.mean(1, keepdims=True)
    return ((a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))).max(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_documented_warmup_draws_a_digit_from_noise(seed):
    """docs/models/diffusion.md: `tracer run diffusion --warmup 10000`: every sample's final x_0 correlates >= 0.5
    with its nearest training digit (measured 0.69 or more at seeds 0–2), and pure noise does not."""
    tape = diffusion.trace(diffusion.Config(seed=seed, **WARMUP))
    made = {t.name: t.value for t in tape.tensors}
    r = nearest_correlation(made["x_0"], made["x0"])
    assert r.shape == (4,) and r.min() >= 0.5, r
    noise = nearest_correlation(made["x_10"], made["x0"])
    assert noise.max() < 0.5  # the check can fail: the start is noise
    assert table_row(PAGE, str(seed))[1:] == [", ".join(num(v) for v in r), ", ".join(num(v) for v in noise)]
    if seed == 0:
        warm, loss = [float(v.mean()) for v in tape.meta["warmup"]["series"]["loss"]], [t.value[0, 0] for t in tape.tensors if t.name == "loss"]
        says(PAGE, f"| `--warmup 10000` (SGD) | 0.5 | warm-up {num(warm[0])} → {num(np.mean(warm[-100:]))} (the mean of its "
                   f"last 100 steps); then {arrow(loss, 3)} | |")


def test_without_warmup_the_samples_are_no_digit():
    """The same statistic after the 4 traced steps alone stays low: the warm-up is what does it."""
    tape = diffusion.trace(diffusion.Config())
    made = {t.name: t.value for t in tape.tensors}
    r = nearest_correlation(made["x_0"], made["x0"])
    assert r.min() < 0.5
    says(PAGE, f"Without a warm-up the samples are still noise (at most {num(r.max())})")


@pytest.mark.parametrize("args, message", [
    (["--size", "5"], "--size"),
    (["--steps", "1"], "--steps must be at least 2"),
    (["--steps", "101"], "--steps"),
    (["--beta-end", "1"], "--beta-end"),
    (["--beta-start", "0"], "--beta-start must be positive"),
    (["--hidden", "0"], "--hidden must be at least 1"),
    (["--time-dim", "0"], "--time-dim must be at least 1"),
    (["--samples", "33"], "--samples"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--lr", "1e9"], "training diverged"),
    # DDPM's schedule increases: a decreasing one is refused (an equal one, constant noise, is not)
    (["--beta-start", "0.6", "--beta-end", "0.1"], "--beta-start 0.6 must be at most --beta-end 0.1"),
    (["--beta-start", "0.61"], "--beta-start 0.61 must be at most --beta-end 0.6"),
    # issue 21: 1.39 → 14 → 40 → 1021 was reported as a normal run
    (["--size", "2", "--batch", "1"], "training diverged: loss grew from 1.39 to 14 (more than 10× its first value) "
                                      "in iteration 2; try a smaller learning rate: --lr 0.125 (a quarter of 0.5)"),
])
def test_bad_options_are_one_line_errors(refused, tmp_path, args, message):
    out = tmp_path / "d.xlsx"
    assert message in refused("run", "diffusion", *args, "-o", out)
    assert not out.exists()


def test_an_equal_beta_start_and_end_is_a_constant_schedule():
    tape = diffusion.trace(diffusion.Config(beta_start=0.3, beta_end=0.3, iterations=1, samples=0, size=4))
    beta = next(t for t in tape.tensors if t.name == "beta").value
    assert np.all(beta == 0.3)
