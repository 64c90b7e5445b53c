"""The GAN: the game in the right order, each player's update leaving the other untouched, the
numbers against an independent numpy implementation, gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck, runs_of
from tracer.core.tape import Tape
from tracer.data import mnist
from tracer.models import gan

SMALL = gan.Config(hidden=5, latent=3, iterations=2)
G_NAMES = ["G_W1", "G_b1", "G_W2", "G_b2"]
D_NAMES = ["D_W1", "D_b1", "D_W2", "D_b2"]
SECTIONS = ["generate", "discriminate", "d_loss", "d_backward", "d_update", "g_loss", "g_backward", "g_update"]


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def sections(tape, k):
    out = []
    for t in tape.tensors:
        if t.iteration == k and (not out or out[-1] != t.section):
            out.append(t.section)
    return out


@pytest.fixture(scope="module")
def small():
    return gan.trace(SMALL)


def test_each_iteration_plays_the_game_in_order(small):
    for k in (1, 2):
        assert sections(small, k) == SECTIONS
    up = gan.trace(gan.Config(hidden=3, iterations=1, upscale=2))
    assert sections(up, 1) == SECTIONS + ["upscale"]
    assert of(up, 1)["x_fake_up"].shape == (1, 56 * 56)


# --- an independent implementation ------------------------------------------------------------

def leaky(a, s):
    return np.maximum(a, 0) + s * np.minimum(a, 0)


def reference_iteration(x, z, G, D, cfg):
    """One round in plain numpy, gradients derived by hand: returns the values to compare."""
    s, n = cfg.slope, x.shape[0]
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    g_a1 = z @ G["G_W1"] + G["G_b1"]
    g_h = leaky(g_a1, s)
    fake = sig(g_h @ G["G_W2"] + G["G_b2"])

    def disc(P, inp):
        a1 = inp @ P["D_W1"] + P["D_b1"]
        h = leaky(a1, s)
        return a1, h, sig(h @ P["D_W2"] + P["D_b2"])

    a1r, hr, dr = disc(D, x)
    a1f, hf, df = disc(D, fake)
    L_D = -np.mean(np.log(dr)) - np.mean(np.log(1 - df))
    # ∂L_D/∂logit: real −(1 − D)/n, fake D/n (sigmoid + log collapse)
    gr, gf = -(1 - dr) / n, df / n
    grads_D = {"D_W2": hr.T @ gr + hf.T @ gf, "D_b2": gr.sum(0, keepdims=True) + gf.sum(0, keepdims=True)}
    ghr = (gr @ D["D_W2"].T) * np.where(a1r > 0, 1, s)
    ghf = (gf @ D["D_W2"].T) * np.where(a1f > 0, 1, s)
    grads_D["D_W1"] = x.T @ ghr + fake.T @ ghf
    grads_D["D_b1"] = ghr.sum(0, keepdims=True) + ghf.sum(0, keepdims=True)
    D_new = {k: D[k] - cfg.lr_d * grads_D[k] for k in D}
    a1g, hg, dg = disc(D_new, fake)
    L_G = -np.mean(np.log(dg))
    gg = -(1 - dg) / n  # ∂L_G/∂logit
    gx = ((gg @ D_new["D_W2"].T) * np.where(a1g > 0, 1, s)) @ D_new["D_W1"].T  # ∂L_G/∂x_fake
    g_a2 = gx * fake * (1 - fake)
    grads_G = {"G_W2": g_h.T @ g_a2, "G_b2": g_a2.sum(0, keepdims=True)}
    g_ga1 = (g_a2 @ G["G_W2"].T) * np.where(g_a1 > 0, 1, s)
    grads_G["G_W1"], grads_G["G_b1"] = z.T @ g_ga1, g_ga1.sum(0, keepdims=True)
    G_new = {k: G[k] - cfg.lr_g * grads_G[k] for k in G}
    return {"x_fake": fake, "D_real": dr, "D_fake": df, "L_D": L_D, "D_gen": dg, "L_G": L_G,
            "dL_G/dx_fake": gx, **{f"dL_D/d{k}": v for k, v in grads_D.items()},
            **{f"dL_G/d{k}": v for k, v in grads_G.items()}}, G_new, D_new


@pytest.mark.parametrize("cfg", [SMALL, gan.Config(hidden=4, latent=2, iterations=2, batch=3, digit=2, slope=0.1)],
                         ids=["one digit", "batch of 3"])
def test_matches_an_independent_numpy_gan(cfg):
    tape = gan.trace(cfg)
    x, _ = mnist.load_batch(cfg.digit, cfg.batch)
    G = {k: of(tape, 0)[k].value for k in G_NAMES}
    D = {k: of(tape, 0)[k].value for k in D_NAMES}
    for k in range(1, cfg.iterations + 1):
        it = of(tape, k)
        expected, G, D = reference_iteration(x, it["z"].value, G, D, cfg)
        for name, value in expected.items():
            np.testing.assert_allclose(it[name].value, np.atleast_2d(value), rtol=1e-10, atol=1e-13, err_msg=name)
        for name in G_NAMES + D_NAMES:  # the updates
            np.testing.assert_allclose(it[name].value, {**G, **D}[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_the_reference_itself_can_fail(small):
    """Guard: a wrong hand-derived rule (no LeakyReLU slope in the backward) disagrees."""
    x, _ = mnist.load_batch(0, 1)
    it = of(small, 1)
    G = {k: of(small, 0)[k].value for k in G_NAMES}
    D = {k: of(small, 0)[k].value for k in D_NAMES}
    wrong = gan.Config(**{**SMALL.__dict__, "slope": 0.0})
    expected, _, _ = reference_iteration(x, it["z"].value, G, D, wrong)
    assert not np.allclose(it["dL_D/dD_W1"].value, expected["dL_D/dD_W1"], rtol=1e-6)


# --- each player's move leaves the other untouched -------------------------------------------

def test_d_update_leaves_g_untouched_and_g_update_leaves_d_untouched(small):
    for k in (1, 2):
        it, prev = of(small, k), of(small, k - 1)
        d_update = [t for t in small.tensors if t.iteration == k and t.section == "d_update"]
        g_update = [t for t in small.tensors if t.iteration == k and t.section == "g_update"]
        assert {t.name for t in d_update} == set(D_NAMES)
        assert {t.name for t in g_update} == set(G_NAMES)
        for t in d_update:  # D's update reads only D's parameters, D's gradients and lr_D
            assert {u.name for u in t.inputs} <= set(D_NAMES) | {f"dL_D/d{t.name}", "lr_D"}
        for t in g_update:
            assert {u.name for u in t.inputs} <= set(G_NAMES) | {f"dL_G/d{t.name}", "lr_G"}
        # the G step's loss runs through the *updated* D; the next D step starts from it
        assert it["D_a1_gen"].inputs[1] is it["D_W1"] and it["D_W1"].section == "d_update"
        # the G update starts from G as it was before this iteration's D step
        assert it["G_W1"].inputs[0] is (prev["G_W1"])
        # and no gradient of L_D reaches G, none of L_G reaches D's parameters
        assert not {f"dL_D/d{n}" for n in G_NAMES + ["x_fake", "G_h", "G_a2"]} & set(it)
        assert not {f"dL_G/d{n}" for n in D_NAMES} & set(it)


def test_next_iteration_uses_both_updates(small):
    one, two = of(small, 1), of(small, 2)
    assert two["G_a1"].inputs[1] is one["G_W1"] and two["D_a1_real"].inputs[1] is one["D_W1"]


# --- gradcheck ----------------------------------------------------------------------------------

def test_gradcheck_checks_both_players_and_the_stop(small):
    for k in (1, 2):
        d_report, g_report = gradcheck(small, k)
        assert d_report.loss == "L_D" and [c.name for c in d_report.checks] == D_NAMES
        assert g_report.loss == "L_G" and [c.name for c in g_report.checks] == G_NAMES
        assert all(c.checked == c.size for r in (d_report, g_report) for c in r.checks)
        assert d_report.ok and g_report.ok, "\n".join(d_report.lines() + g_report.lines())
        (name, leaked, slope), = d_report.held
        assert name == "x_fake" and not leaked and slope > 1e-6  # L_D depends on it; the stop is real
        assert g_report.held == []


class LeakyTape(Tape):
    """A tape whose stop is broken: it records the held tensors but lets the gradient through."""

    def backward(self, loss, params, held=(), prefix="L"):
        grads = super().backward(loss, params, (), prefix)
        self.backward_runs[-1].held = tuple(held)
        return grads


def test_gradcheck_catches_a_gradient_leaking_into_the_generator():
    """Guard: if the stop at x_fake did not hold (and G were differentiated by L_D), gradcheck
    sees the gradient recorded into x_fake and fails, though every number is a true derivative."""
    tape = LeakyTape()
    rng = np.random.default_rng(0)
    P = {k: tape.constant(k, v, role="param") for k, v in gan.init_params(rng, 3, 2).items()}
    slope = tape.constant("slope", [[0.2]], role="hyper")
    x = tape.constant("x_real", mnist.load_digit(0)[0])
    tape.iteration = 1
    fake = gan.generator(tape.constant("z", rng.standard_normal((1, 2))), P, slope)
    from tracer.core.linalg import add
    from tracer.core.losses import neg_mean_ln, neg_mean_ln1m

    L_D = add(neg_mean_ln(gan.discriminator(x, P, slope, "real")),
              neg_mean_ln1m(gan.discriminator(fake, P, slope, "fake")), name="L_D")
    tape.backward(L_D, P, held=[fake], prefix="L_D")
    (report,) = gradcheck(tape, 1, sample=2)
    assert report.max_rel < 1e-6  # the gradients themselves are right ...
    assert report.leaks == ["x_fake"] and not report.ok  # ... but the stop failed
    assert "the stop FAILED" in "\n".join(report.lines())
    assert len(runs_of(tape, 1)) == 1


def test_gan_with_adam_gradchecks():
    tape = gan.trace(gan.Config(hidden=3, latent=2, iterations=2, optimizer="adam"))
    reports = gradcheck(tape, 2, sample=10)
    assert len(reports) == 2 and all(r.ok for r in reports)
    assert "t_D" in of(tape, 2) and "t_G" in of(tape, 2) and "m_hat[G_W2]" in of(tape, 2)


# --- options ------------------------------------------------------------------------------------

def test_batch_takes_digits_of_the_same_class():
    tape = gan.trace(gan.Config(hidden=3, iterations=1, batch=4, digit=0))
    x = of(tape, 0)["x_real"].value
    images, labels = mnist.load_images(), mnist.load_labels()
    rows = [i for i in range(100) if labels[i] == labels[0]][:4]
    np.testing.assert_array_equal(x, images[rows].reshape(4, 784) / 255.0)
    assert of(tape, 1)["D_real"].shape == (4, 1) and of(tape, 1)["z"].shape == (4, 4)


def test_default_losses_show_the_game():
    """With the defaults, D learns to reject the fake in the first move (D(x_fake) falls)."""
    tape = gan.trace(gan.Config())
    d_fake = [float(of(tape, k)["D_fake"].value.mean()) for k in range(1, 5)]
    l_d = [float(of(tape, k)["L_D"].value[0, 0]) for k in range(1, 5)]
    assert d_fake[1] < d_fake[0] and l_d[1] < l_d[0]


# --- the command --------------------------------------------------------------------------------

def test_cli_run_gan_writes_the_workbook_and_reports_both_losses(run_main, tmp_path):
    out_file = tmp_path / "g.xlsx"
    code, out, err = run_main("run", "gan", "--hidden", 3, "--iterations", 2, "--upscale", 2, "-o", out_file)
    assert code == 0, err
    assert out_file.exists() and "L_D " in out and "L_G " in out and "2 iterations" in out


@pytest.mark.parametrize("args, words", [
    (["--upscale", "3"], ["--upscale must be one of 2, 4", "got 3"]),
    (["--upscale-mode", "cubic"], ["--upscale-mode", "cubic"]),
    (["--batch", "50"], ["--batch 50 is too large", "class 7"]),
    (["--batch", "0"], ["--batch must be at least 1"]),
    (["--lr-g", "0"], ["--lr-g must be positive"]),
    (["--slope", "-1"], ["--slope must be at least 0"]),
])
def test_cli_bad_gan_options(run_main, tmp_path, args, words):
    out_file = tmp_path / "g.xlsx"
    code, out, err = run_main("run", "gan", *args, "-o", out_file)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, err
    assert not out_file.exists()


def test_cli_gradcheck_gan(run_main):
    code, out, err = run_main("gradcheck", "gan", "--hidden", 3, "--iterations", 1, "--sample", 5)
    assert code == 0, out + err
    assert "loss L_D" in out and "loss L_G" in out and "the stop holds" in out
    assert out.splitlines()[-1].endswith("-> OK")
