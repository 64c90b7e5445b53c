"""The normalizing flow (RealNVP): its ops against loop references and central differences; every
iteration's forward pass, log-determinants, log p(x), loss, gradients (backpropagation through
exp(s) and the log-determinants, written by hand) and SGD/Adam updates against an independent
numpy implementation; the density grid, the samples through the inverse and z = f(x) after
training; the inverse undoes the forward to 1e-12; gradcheck on every parameter element; the
documented warm-up (seeds 0-2); the data sets; bad options; the workbooks verify in LibreOffice
and IronCalc (en, es, SGD, Adam, with and without warm-up) with their heatmap and scatter charts.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile

import numpy as np
import pytest
from documented import arrow, num, says, table_row
from families import FLOW, ops_of
from test_lm_ops import check_gradient, rng
from test_recurrent import adam

from tracer.checks.gradcheck import gradcheck
from tracer.core import activations, flows, linalg, losses
from tracer.data import points
from tracer.models import flow
from tracer.render.layout import COLS, Layout, Picture, Scatter
from tracer.render.template import Template

FLOW_OPS = ops_of(FLOW)
LN_2PI = math.log(2 * math.pi)


# --- 1. the ops -----------------------------------------------------------------------------------------

def ref_log_normal_terms(z):
    return np.array([[-0.5 * z[i, j] ** 2 - 0.5 * LN_2PI for j in range(z.shape[1])] for i in range(z.shape[0])])


def ref_log_normal(z):
    return np.array([[math.fsum(-0.5 * v * v - 0.5 * LN_2PI for v in row)] for row in z])


REFERENCE = {
    "exp": lambda a: np.vectorize(math.exp)(a),
    "exp_grad": lambda y, g: np.array([[g[i, j] * y[i, j] for j in range(y.shape[1])] for i in range(y.shape[0])]),
    "add_n": lambda *xs: np.array([[math.fsum(x[i, j] for x in xs) for j in range(xs[0].shape[1])]
                                   for i in range(xs[0].shape[0])]),
    "neg_mean": lambda a: np.array([[-math.fsum(a.ravel()) / a.size]]),
    "neg_mean_grad": lambda a, g: np.full(a.shape, -g[0, 0] / a.size),
    "log_normal_terms": ref_log_normal_terms,
    "log_normal": ref_log_normal,
    "log_normal_grad": lambda z, g: np.array([[-z[i, j] * g[i, 0] for j in range(z.shape[1])]  # g: a row's
                                              for i in range(z.shape[0])]),
    "coupling_inverse": lambda y, t, s: np.array([[(y[i, j] - t[i, j]) * math.exp(-s[i, j])
                                                   for j in range(y.shape[1])] for i in range(y.shape[0])]),
}


def op_cases():
    n = rng("flow ops").normal
    return [
        ("exp", activations.EXP, [n(size=(3, 2))]),
        ("exp_grad", activations.EXP_GRAD, [np.exp(n(size=(3, 1))), n(size=(3, 1))]),
        ("add_n two", linalg.ADD_N, [n(size=(4, 1)), n(size=(4, 1))]),
        ("add_n four", linalg.ADD_N, [n(size=(4, 1)) for _ in range(4)]),
        ("neg_mean", losses.NEG_MEAN, [n(size=(5, 1))]),
        ("neg_mean_grad", losses.NEG_MEAN_GRAD, [n(size=(5, 1)), n(size=(1, 1))]),
        ("log_normal_terms", flows.LOG_NORMAL_TERMS, [n(size=(4, 2))]),
        ("log_normal", flows.LOG_NORMAL, [n(size=(4, 2))]),
        ("log_normal_grad", flows.LOG_NORMAL_GRAD, [n(size=(4, 2)), n(size=(4, 1))]),
        ("coupling_inverse", flows.COUPLING_INVERSE, [n(size=(3, 1)), n(size=(3, 1)), n(size=(3, 1))]),
    ]


OP_CASES = op_cases()
GRAD_CASES = [  # (case, op, inputs, inputs checked)
    ("exp", activations.EXP, [rng("g").normal(size=(3, 2))], (0,)),
    ("add_n", linalg.ADD_N, [rng("g").normal(size=(4, 1)) for _ in range(3)], (0, 1, 2)),
    ("neg_mean", losses.NEG_MEAN, [rng("g").normal(size=(4, 2))], (0,)),
    ("log_normal", flows.LOG_NORMAL, [rng("g").normal(size=(4, 2))], (0,)),
]
NO_GRADIENT_RULE = {"exp_grad", "neg_mean_grad", "log_normal_terms", "log_normal_grad", "coupling_inverse"}


def test_every_flow_op_has_a_case_a_reference_and_a_gradient_check():
    assert {op.name for _, op, _ in OP_CASES} == set(FLOW_OPS) == set(REFERENCE)
    assert {op.name for _, op, _, _ in GRAD_CASES} | NO_GRADIENT_RULE == set(FLOW_OPS)


@pytest.mark.parametrize("case, op, inputs", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_op_forward_matches_its_reference(case, op, inputs):
    np.testing.assert_allclose(op.forward(*inputs), REFERENCE[op.name](*inputs), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case, op, inputs, wrt", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_op_gradient_matches_central_differences(case, op, inputs, wrt):
    check_gradient(case, op, inputs, wrt, REFERENCE[op.name])


def test_the_formulas_of_the_new_ops():
    """The cell formulas: a literal −0.5 (Excel's unary minus binds tighter than ^, so −z^2 would
    square −z), EXP per cell, no range outside an aggregate."""
    assert flows.LOG_NORMAL_TERMS.excel == "-0.5*{0}^2-0.5*LN(2*PI())"
    assert flows.COUPLING_INVERSE.excel == "({0}-{1})*EXP(-{2})"
    assert activations.EXP.excel == "EXP({0})"


# --- 2. the model, written again from its docstring (no tracer code) ------------------------------------

def nets(c, p, k):
    """s and t of coupling k on the kept coordinate c, with their hidden layers."""
    hs = np.tanh(c @ p[f"b{k}.W_s1"] + p[f"b{k}.b_s1"])
    s = np.tanh(hs @ p[f"b{k}.W_s2"] + p[f"b{k}.b_s2"])
    ht = np.tanh(c @ p[f"b{k}.W_t1"] + p[f"b{k}.b_t1"])
    return hs, s, ht, ht @ p[f"b{k}.W_t2"] + p[f"b{k}.b_t2"]


def np_forward(p, x, K):
    """z = f(x), log p(x) and what the backward pass needs."""
    c = [x[:, :1], x[:, 1:]]
    saved, logdet = [], 0.0
    for k in range(1, K + 1):
        keep = (k - 1) % 2
        hs, s, ht, t = nets(c[keep], p, k)
        saved.append((keep, c[keep], c[1 - keep], hs, s, ht))
        c[1 - keep] = c[1 - keep] * np.exp(s) + t
        logdet = logdet + s
    z = np.hstack(c)
    log_px = (-0.5 * z ** 2 - 0.5 * LN_2PI).sum(axis=1, keepdims=True) + logdet
    return z, log_px, saved


def np_loss_and_grads(p, x, K):
    """L = −mean log p(x) and ∂L/∂θ by hand: back through log N, the log-determinants (each
    coupling's s gets −1/N from its own log-det), exp(s), t and the two tanh networks."""
    N = x.shape[0]
    z, log_px, saved = np_forward(p, x, K)
    g = np.full((N, 1), -1.0 / N)  # ∂L/∂log p(x)
    dc = [-z[:, :1] * g, -z[:, 1:] * g]  # ∂L/∂z = −z ⊙ g
    grads = {}
    for k in range(K, 0, -1):
        keep, c_keep, c_old, hs, s, ht = saved[k - 1]
        dy = dc[1 - keep]
        ds = g + dy * c_old * np.exp(s)  # the log-determinant's share + through exp(s)
        dt = dy
        dc[1 - keep] = dy * np.exp(s)
        da = ds * (1 - s ** 2)
        grads[f"b{k}.W_s2"], grads[f"b{k}.b_s2"] = hs.T @ da, da.sum(axis=0, keepdims=True)
        dpre_s = (da @ p[f"b{k}.W_s2"].T) * (1 - hs ** 2)
        grads[f"b{k}.W_t2"], grads[f"b{k}.b_t2"] = ht.T @ dt, dt.sum(axis=0, keepdims=True)
        dpre_t = (dt @ p[f"b{k}.W_t2"].T) * (1 - ht ** 2)
        for net, dpre in (("s", dpre_s), ("t", dpre_t)):
            grads[f"b{k}.W_{net}1"] = c_keep.T @ dpre
            grads[f"b{k}.b_{net}1"] = dpre.sum(axis=0, keepdims=True)
        dc[keep] = dc[keep] + dpre_s @ p[f"b{k}.W_s1"].T + dpre_t @ p[f"b{k}.W_t1"].T
    return -log_px.mean(), grads, z, log_px


def np_inverse(p, z, K):
    c = [z[:, :1], z[:, 1:]]
    for k in range(K, 0, -1):
        keep = (k - 1) % 2
        _, s, _, t = nets(c[keep], p, k)
        c[1 - keep] = (c[1 - keep] - t) * np.exp(-s)
    return np.hstack(c)


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def params(tape, k):
    return {t.name: of(tape, k)[t.name].value.copy() for t in tape.tensors if t.attrs.get("role") == "param"}


CONFIGS = {
    "defaults": {},
    "adam": {"optimizer": "adam"},
    "rings-k3-h5": {"data": "rings", "couplings": 3, "hidden": 5, "points": 20, "iterations": 3},
    "gaussians-k1": {"data": "gaussians", "couplings": 1, "hidden": 2, "points": 9, "iterations": 2},
    "adam-warmup": {"optimizer": "adam", "warmup": 25, "couplings": 2, "hidden": 3},
}


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_iteration_matches_an_independent_numpy_flow(options):
    cfg = flow.Config(**options)
    tape = flow.trace(cfg)
    K = cfg.couplings
    x = of(tape, 0)["x"].value
    np.testing.assert_array_equal(x, points.points(cfg.data, cfg.points, cfg.seed))
    p = params(tape, 0)
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(w) for n, w in p.items()}
    first = cfg.warmup + 1  # Adam's step counter goes on from the warm-up
    if cfg.warmup and cfg.optimizer == "adam":  # the moments the warm-up reached are constants too
        m = {n: of(tape, 0)[f"m[{n}]"].value.copy() for n in p}
        v = {n: of(tape, 0)[f"v[{n}]"].value.copy() for n in p}
    for k in range(1, cfg.iterations + 1):
        it = of(tape, cfg.warmup + k)  # after a warm-up of N steps, iterations N+1 … N+K
        loss, grads, z, log_px = np_loss_and_grads(p, x, K)
        assert it["loss"].value[0, 0] == pytest.approx(loss, rel=1e-12), k
        np.testing.assert_allclose(it["z"].value, z, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(it["log_px"].value, log_px, rtol=1e-11, atol=1e-13)
        if k == 1:  # every coupling's forward tensors and its log-determinant
            c = [x[:, :1], x[:, 1:]]
            for b in range(1, K + 1):
                keep = (b - 1) % 2
                hs, s, ht, t = nets(c[keep], p, b)
                for name, want in ((f"b{b}.s_h", hs), (f"b{b}.s", s), (f"b{b}.t_h", ht), (f"b{b}.t", t),
                                   (f"b{b}.exp_s", np.exp(s))):
                    np.testing.assert_allclose(it[name].value, want, rtol=1e-11, atol=1e-14, err_msg=name)
                c[1 - keep] = c[1 - keep] * np.exp(s) + t
                np.testing.assert_allclose(it[f"b{b}.y"].value, c[1 - keep], rtol=1e-11, atol=1e-14)
            logdet = it["logdet"] if K > 1 else it["b1.s"]
            np.testing.assert_allclose(logdet.value, sum(it[f"b{b}.s"].value for b in range(1, K + 1)), rtol=1e-14)
        for name, want in grads.items():
            np.testing.assert_allclose(it[f"dL/d{name}"].value, want, rtol=1e-9, atol=1e-13, err_msg=f"{k} {name}")
        for name in p:
            if cfg.optimizer == "sgd":
                p[name] = p[name] - cfg.lr * grads[name]
            else:
                p[name], m[name], v[name] = adam(p[name], grads[name], m[name], v[name], first + k - 1, cfg)
            np.testing.assert_allclose(it[name].value, p[name], rtol=1e-9, atol=1e-12, err_msg=f"{k} new {name}")


def test_after_training_the_density_the_samples_and_z_match_numpy():
    cfg = flow.Config(couplings=3, hidden=4, grid=5, samples=7, iterations=2)
    tape = flow.trace(cfg)
    p, last = params(tape, cfg.iterations), of(tape, cfg.iterations)
    x = of(tape, 0)["x"].value
    grid = last["x_grid"].value
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * (hi - lo)
    assert grid.shape == (25, 2) and grid[0].tolist() == pytest.approx([lo[0] - pad[0], hi[1] + pad[1]])
    assert grid[-1].tolist() == pytest.approx([hi[0] + pad[0], lo[1] - pad[1]])
    assert grid[1, 0] > grid[0, 0] and grid[5, 1] < grid[0, 1]  # x₁ across, x₂ from the top down
    _, log_p_grid, _ = np_forward(p, grid, cfg.couplings)
    np.testing.assert_allclose(last["[grid] p"].value, np.exp(log_p_grid), rtol=1e-11)
    z = last["z_prior"].value
    np.testing.assert_array_equal(z, np.random.default_rng([cfg.seed, 1]).standard_normal((7, 2)))
    np.testing.assert_allclose(last["x_sample"].value, np_inverse(p, z, cfg.couplings), rtol=1e-11, atol=1e-13)
    z_data, log_px, _ = np_forward(p, x, cfg.couplings)
    np.testing.assert_allclose(last["[data] z"].value, z_data, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(last["[data] log_px"].value, log_px, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("K", [1, 2, 4, 7])
def test_the_inverse_undoes_the_forward_to_1e_12(K):
    """f⁻¹(f(x)) = x and f(f⁻¹(z)) = z, through the model's own traced forward and inverse."""
    from tracer.core.tape import Tape

    rng_ = np.random.default_rng(K)
    p = flow.init_params(rng_, K, 6)
    for name in p:  # trained-looking parameters, not the near-identity start
        p[name] = p[name] + rng_.normal(0, 0.7, p[name].shape)
    tape = Tape()
    x = points.points("moons", 40, K)
    pt = {n: tape.constant(n, v, role="param") for n, v in p.items()}
    z, _ = flow.forward(tape, flow.columns(tape.constant("x", x)), pt, K)
    back = np.hstack([c.value for c in flow.inverse(flow.columns(z, "z"), pt, K, "[inv] ")])
    assert np.abs(z.value - x).max() > 0.1  # the flow moved the points
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-12)
    draws = rng_.standard_normal((30, 2))
    x_back = np.hstack([c.value for c in flow.inverse(flow.columns(tape.constant("zz", draws), "zz"), pt, K, "[s] ")])
    z_again, _ = flow.forward(tape, flow.columns(tape.constant("xb", x_back), "xb"), pt, K, "[f] ")
    np.testing.assert_allclose(z_again.value, draws, rtol=0, atol=1e-12)


def test_s_is_bounded_and_the_log_determinant_is_its_sum():
    tape = flow.trace(flow.Config(iterations=1))
    it = of(tape, 1)
    s = [it[f"b{k}.s"] for k in range(1, 5)]
    assert all(np.abs(t.value).max() < 1 for t in s)
    assert [u.name for u in it["logdet"].inputs] == [t.name for t in s]
    assert [u.name for u in it["log_px"].inputs] == ["log_pz", "logdet"]
    # the backward pass: each s gets the log-determinant's gradient and the one through exp(s)
    assert {u.name for u in it["dL/db2.s"].inputs} == {"dL/db2.s via logdet", "dL/db2.s via b2.exp_s"}
    assert it["dL/db2.s via b2.exp_s"].op.name == "exp_grad"


# --- 3. gradcheck, the warm-up --------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"optimizer": "adam", "couplings": 3, "data": "rings"}])
def test_gradcheck_every_parameter_element(options):
    cfg = flow.Config(iterations=2, **options)
    tape = flow.trace(cfg)
    for k in (1, 2):
        (report,) = gradcheck(tape, k)
        assert {c.name for c in report.checks} == set(params(tape, 0))
        assert all(c.checked == c.size for c in report.checks)
        assert report.ok and report.max_rel < 1e-6, report.lines()


def nearest(a, b):
    """The mean over a's points of the distance to the nearest point of b."""
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1).mean())


# docs/models/flow.md: (the gain in nats, the samples' nearest distance, its share of the prior's)
WARMUP_GAIN, WARMUP_NEAREST, WARMUP_SHARE = 0.9, 0.2, 0.5  # SGD, measured 1.00-1.36 nats, 0.13-0.16
ADAM_GAIN, ADAM_NEAREST = 1.8, 0.15  # --optimizer adam, measured 2.09-2.29 nats, 0.10-0.11


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_documented_warmup_learns_the_moons(seed, optimizer):
    """`tracer run flow --warmup 2000` (and with --optimizer adam): the mean log-likelihood of the
    data rises by at least the documented gain from the first warm-up step to the last traced
    iteration, and the samples sit on the data: their mean distance to the nearest data point is
    below the documented bound and below WARMUP_SHARE of the raw prior draws' (0.43-0.52)."""
    tape = flow.trace(flow.Config(seed=seed, warmup=2000, optimizer=optimizer))
    first = -float(tape.meta["warmup"]["series"]["loss"][0][0, 0])
    last = -float(of(tape, 2004)["loss"].value[0, 0])
    x, last_it = of(tape, 0)["x"].value, of(tape, 2004)
    samples, prior = nearest(last_it["x_sample"].value, x), nearest(last_it["z_prior"].value, x)
    gain, bound = (WARMUP_GAIN, WARMUP_NEAREST) if optimizer == "sgd" else (ADAM_GAIN, ADAM_NEAREST)
    assert last - first >= gain, (first, last)
    assert samples < bound and samples < WARMUP_SHARE * prior, (samples, prior)
    warmed = float(tape.meta["warmup"]["series"]["loss"][-1][0, 0])  # the loss of the last warm-up step
    traced = [float(of(tape, k)["loss"].value[0, 0]) for k in range(2001, 2005)]
    page = "models/flow.md"
    if optimizer == "sgd":  # its digits are chaotic: the page states a range, for seed 0
        if seed == 0:
            assert all(1.0 < v < 1.4 for v in [warmed, *traced]), (warmed, traced)
            says(page, f"| SGD after `--warmup 2000` | 0.05 | {num(-first)} ⇒ between 1.0 and 1.4 (warm-up), then each "
                       "traced loss between 1.0 and 1.4")
        return
    assert table_row(page, "log-likelihood")[seed + 1] == f"{num(first)} → {num(last)} (+{num(last - first)})"
    assert table_row(page, "samples / prior draws to the data")[seed + 1] == f"{num(samples, 3)} / {num(prior, 3)}"
    if seed == 0:
        says(page, f"| Adam after `--warmup 2000` | 0.003 | {num(-first)} ⇒ {num(warmed)} (warm-up) → {arrow(traced)} | |")


def test_the_sgd_warmup_is_chaotic_and_adams_is_not():
    """docs/models/flow.md: one part in 10¹² more learning rate changes the SGD warm-up's traced losses
    in the second decimal, and leaves Adam's at the same two decimals."""
    def traced(**options):
        tape = flow.trace(flow.Config(warmup=2000, **options))
        return np.array([t.value[0, 0] for t in tape.tensors if t.name == "loss"])

    assert np.abs(traced() - traced(lr=0.05000000000005)).max() > 0.01
    adam = traced(optimizer="adam"), traced(optimizer="adam", lr=0.003 * (1 + 1e-12))
    assert [num(v) for v in adam[0]] == [num(v) for v in adam[1]]
    says("models/flow.md", "`--lr 0.05000000000005` (one part in 10¹² more) gives other losses in the second decimal",
         "the same change leaves its losses at " + num(adam[0][-1]))


def test_the_warmup_check_can_fail():
    """Without the warm-up the same measures fail: the check tells a trained flow from a new one."""
    tape = flow.trace(flow.Config())
    losses_ = [t.value[0, 0] for t in tape.tensors if t.name == "loss"]
    last = of(tape, 4)
    assert losses_[0] - losses_[-1] < WARMUP_GAIN
    assert nearest(last["x_sample"].value, of(tape, 0)["x"].value) > WARMUP_NEAREST


# --- 4. the data, the options ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", points.KINDS)
def test_the_data_sets_are_seeded_and_shaped(kind):
    a, b, c = points.points(kind, 50, 0), points.points(kind, 50, 0), points.points(kind, 50, 1)
    assert a.shape == (50, 2) and np.array_equal(a, b) and not np.array_equal(a, c)
    if kind == "rings":
        r = np.hypot(a[:, 0], a[:, 1])
        assert np.abs(r[:25] - 0.75).max() < 0.5 and np.abs(r[25:] - 1.75).max() < 0.5
    if kind == "gaussians":
        assert np.abs(np.abs(a) - 1).max() < 1.0 and (np.sign(a[:4]) == [[1, 1], [-1, 1], [-1, -1], [1, -1]]).all()


@pytest.mark.parametrize("args, message", [
    (["--data", "spirals"], "--data"),
    (["--points", "1"], "--points must be at least 2"),
    (["--couplings", "0"], "--couplings must be at least 1"),
    (["--couplings", "17"], "--couplings must be at most 16"),
    (["--hidden", "0"], "--hidden must be at least 1"),
    (["--grid", "42"], "--grid must be at most 41"),
    (["--samples", "-1"], "--samples must be at least 0"),
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "1e300"], "training diverged"),
    (["--points", "5000000"], "limit"),
])
def test_bad_options_are_one_line_errors(refused, tmp_path, args, message):
    out = tmp_path / "f.xlsx"
    assert message in refused("run", "flow", *args, "-o", out)
    assert not out.exists()


# --- 5. the workbooks -----------------------------------------------------------------------------------

KEYS = [("flow", "en"), ("flow", "es"), ("flow-rings-adam-warmup", "en"), ("flow-rings-adam-warmup", "es"),
        ("flow-gaussians-k1-adam", "en"), ("flow-sgd-warmup", "es")]


@pytest.mark.parametrize("key, lang", KEYS)
def test_workbooks_verify(engine, verified, key, lang):
    report = verified(key, lang, engine)
    assert report.ok, report.format()
    assert report.n_formulas > 500


def test_the_density_is_a_heatmap_of_the_grid(run_tape):
    cfg, tape = run_tape("flow")
    layout = Layout(tape, Template("flow", "en"), dataclasses.asdict(cfg))
    images = [im for p in layout.pictures.parts if isinstance(p, Picture) for im in p.images]
    (density,) = [t for t in tape.tensors if t.name == "[grid] p"]
    (im,) = images
    assert (im.height, im.width) == (cfg.grid, cfg.grid) and im.scale == "gray_auto"
    assert [[(t is density, i, j) for t, i, j in row] for row in im.pixels] == \
        [[(True, r * cfg.grid + c, 0) for c in range(cfg.grid)] for r in range(cfg.grid)]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_overview_has_scatter_charts_of_the_formula_cells(run_tape, run_workbook, lang):
    cfg, tape = run_tape("flow")
    tpl = Template("flow", lang)
    layout = Layout(tape, tpl, dataclasses.asdict(cfg))
    charts = [p for p in layout.overview.parts if isinstance(p, Scatter)]
    assert [[(name, t.name) for name, t in c.series] for c in charts] == \
        [[(s[lang], s["tensor"]) for s in chart["series"]] for chart in tpl.model["scatter"]]
    assert all(t.phase == "after" for c in charts for _, t in c.series if t.name != "x")
    with zipfile.ZipFile(run_workbook("flow", lang)) as archive:
        xml = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/charts/chart")]
    scatter = [c for c in xml if "<c:scatterChart>" in c]
    assert len(scatter) == 2 and sum("<c:lineChart>" in c for c in xml) == 1
    samples = next(t for t in tape.tensors if t.name == "x_sample")
    place = layout.place[id(samples)]
    sheet = place.sheet if " " not in place.sheet else f"'{place.sheet}'"
    col = lambda j: f"{sheet}!${COLS[place.rc(0, j)[1]]}${place.rc(0, j)[0] + 1}"  # noqa: E731
    assert col(0) in scatter[0] and col(1) in scatter[0]  # x₁ across, x₂ up: the samples' formula cells


def test_the_limits_of_the_bounded_s():
    """docs/models/flow.md, 'Its limits': at the default rate --hidden 64 and 128 diverge early in
    the warm-up (the messages: test_training.py's DIVERGING) and train 2,000 steps at a quarter of
    it, their loss falling by at least 40 % (no digits: SGD's warm-up is chaotic)."""
    from tracer import api

    for hidden in (64, 128):
        run = api.run("flow", hidden=hidden, lr=0.0125, warmup=2000, iterations=1, grid=0, samples=0)
        assert run.losses["loss"][-1] < 0.6 * run.warmup_losses["loss"][0]
