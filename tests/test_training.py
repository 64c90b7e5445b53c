"""--warmup N: the shared training loop (tracer/models/training.py).  N unrecorded steps and K traced
ones compute exactly what N + K traced steps compute; the warm-up's final parameters (and Adam's
state) equal a plain numpy run of the same steps; the warm-up keeps nothing but its charted values
and a few snapshots; a diverging warm-up is a one-line error naming the step."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from test_gan import D_NAMES, G_NAMES, reference_iteration
from test_vae import PARAMS, hand_backprop

from tracer import api, models
from tracer.data import mnist
from tracer.errors import TracerError
from tracer.models import MODELS, training
from tracer.render.export import long_rows, records

# (model, options without iterations/warmup): every trainable model, both optimizers, batches, draws
CASES = {
    "vae-sgd-batch": ("vae", {"batch": 2, "hidden": 3}),
    "vae-adam": ("vae", {"hidden": 3, "optimizer": "adam"}),
    "gan-sgd-upscale": ("gan", {"hidden": 3, "batch": 2, "upscale": 2}),
    "gan-adam": ("gan", {"hidden": 3, "optimizer": "adam"}),
    "skipgram-negative": ("skipgram", {"negative": 2, "corpus": "en"}),
    "attention-adam": ("attention", {"optimizer": "adam", "corpus": "en", "generate": 2}),
    "transformer": ("transformer", {"corpus": "en", "generate": 2, "d_ff": 8}),
    "rnn-adam": ("rnn", {"corpus": "en", "optimizer": "adam", "generate": 2}),
    "lstm": ("lstm", {"corpus": "en", "generate": 2}),
    "bert": ("bert", {"corpus": "en"}),
    "diffusion-adam": ("diffusion", {"optimizer": "adam", "hidden": 6, "size": 4, "steps": 4, "samples": 1}),
    # flow (issue 17)
    "flow-adam": ("flow", {"optimizer": "adam", "couplings": 3, "hidden": 3, "grid": 3, "samples": 2}),
    "torch": ("torch", {}),  # the shipped VAE module: PyTorch's draws, in the same order
}


def test_every_trainable_model_is_warmed_up_here():
    """Every model with --warmup is in CASES but the mlp, whose iterations its file sets
    (test_mlp_warmup_then_its_iterations below)."""
    assert {m for m, _ in CASES.values()} | {"mlp"} == {
        name for name, m in MODELS.items() if "warmup" in {f.name for f in dataclasses.fields(m.Config)}}


def trace(model, **options):
    m = MODELS[model]
    return models.trace(m, m.Config(**options))


def traced(tape):
    """{(iteration, name): value} of everything recorded after the inputs."""
    return {(t.iteration, t.name): t.value for t in tape.tensors if t.iteration}


@pytest.mark.parametrize("case", CASES)
def test_warmup_then_traced_equals_traced_all_along(case):
    """3 warm-up steps + 2 traced = the last 2 of 5 traced steps, bit for bit; the inputs sheet's
    parameters and optimizer state are those the 3rd step made."""
    model, options = CASES[case]
    warm = trace(model, warmup=3, iterations=2, **options)
    full = trace(model, iterations=5, **options)
    got, want = traced(warm), traced(full)
    assert {k for k, _ in got} == {4, 5}
    assert set(got) == {key for key in want if key[0] in (4, 5)}
    for key, value in got.items():
        if key[1].endswith("_before"):  # skip-gram's similarities before the traced iterations
            continue
        np.testing.assert_array_equal(value, want[key], err_msg=str(key))
    # the constants of iteration 0: the parameters and the optimizer's state after step 3
    step3 = {t.name: t for t in full.tensors if t.iteration == 3 and t.phase == "update"}
    settled = [t for t in warm.tensors if t.iteration == 0 and t.attrs.get("source") == "warmup"]
    assert settled and {t.attrs["role"] for t in settled} <= {"param", "state"}
    for t in settled:
        np.testing.assert_array_equal(t.value, step3[t.name].value, err_msg=t.name)
    assert len(warm.tensors) == len([t for t in full.tensors if t.iteration in (0, 4, 5)]), \
        "the warm-up keeps no tensor"
    assert warm.meta["warmup"]["steps"] == 3


def test_mlp_warmup_then_its_iterations(tmp_path):
    """The mlp's iterations come from its file: 4 warm-up steps + the file's 12 = 16 in the file."""
    xor = (mnist.importlib.resources.files("tracer.data") / "examples" / "xor.toml").read_text()
    longer = tmp_path / "xor16.toml"
    longer.write_text(re.sub(r"(?m)^iterations = 12", "iterations = 16", xor))
    warm = trace("mlp", config="xor", warmup=4)
    full = trace("mlp", config=str(longer))
    got, want = traced(warm), traced(full)
    assert {k for k, _ in got} == set(range(5, 17))
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key], err_msg=str(key))
    assert warm.meta["settings"]["warmup"] == 4


# --- the same steps in plain numpy ------------------------------------------------------------

def numpy_adam(p, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), m, v


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_vae_warmup_equals_a_plain_numpy_run(optimizer):
    cfg = {"batch": 3, "digit": 4, "hidden": 5, "seed": 3, "optimizer": optimizer}
    n = 40
    tape = trace("vae", warmup=n, iterations=1, **cfg)
    c = models.vae.Config(**cfg)
    x, _ = mnist.load_batch(4, 3, same_class=False)
    rng = np.random.default_rng(3)
    p = models.vae.init_params(rng, 5, 2)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(w) for k, w in p.items()}
    losses = []
    for t in range(1, n + 1):
        loss, g = hand_backprop(x, p, rng.standard_normal((3, 2)))
        losses.append(loss)
        for k in PARAMS:
            if optimizer == "sgd":
                p[k] = p[k] - c.lr * g[k]
            else:
                p[k], m[k], v[k] = numpy_adam(p[k], g[k], m[k], v[k], t, c.lr)
    zero = {t.name: t.value for t in tape.tensors if t.iteration == 0}
    for k in PARAMS:
        np.testing.assert_allclose(zero[k], p[k], rtol=1e-9, atol=1e-12, err_msg=k)
        if optimizer == "adam":
            np.testing.assert_allclose(zero[f"m[{k}]"], m[k], rtol=1e-9, atol=1e-14, err_msg=k)
            np.testing.assert_allclose(zero[f"v[{k}]"], v[k], rtol=1e-9, atol=1e-18, err_msg=k)
    if optimizer == "adam":
        assert zero["t"].tolist() == [[n]]
    series = tape.meta["warmup"]["series"]["loss"]
    np.testing.assert_allclose([float(s[0, 0]) for s in series], losses, rtol=1e-12)


def test_gan_warmup_equals_a_plain_numpy_run():
    cfg = models.gan.Config(hidden=4, latent=2, batch=2, digit=1, warmup=25, iterations=1, lr_g=1.0)
    tape = models.trace(models.gan, cfg)
    x, _ = mnist.load_batch(1, 2)
    rng = np.random.default_rng(0)
    init = models.gan.init_params(rng, 4, 2)
    G, D = {k: init[k] for k in G_NAMES}, {k: init[k] for k in D_NAMES}
    d_fake = []
    for _ in range(25):
        expected, G, D = reference_iteration(x, rng.standard_normal((2, 2)), G, D, cfg)
        d_fake.append(expected["D_fake"].mean())
    zero = {t.name: t.value for t in tape.tensors if t.iteration == 0}
    for k, value in {**G, **D}.items():
        np.testing.assert_allclose(zero[k], value, rtol=1e-9, atol=1e-12, err_msg=k)
    got = [float(s.mean()) for s in tape.meta["warmup"]["series"]["D_fake"]]
    np.testing.assert_allclose(got, d_fake, rtol=1e-10)


def test_the_numpy_comparison_can_fail():
    """Guard: one warm-up step fewer gives other parameters than the numpy run above expects."""
    a = trace("vae", warmup=40, iterations=1, batch=3, digit=4, hidden=5, seed=3)
    b = trace("vae", warmup=39, iterations=1, batch=3, digit=4, hidden=5, seed=3)
    w = [{t.name: t.value for t in tape.tensors if t.iteration == 0}["W4"] for tape in (a, b)]
    assert not np.allclose(w[0], w[1], rtol=1e-9, atol=1e-12)


# --- what the warm-up leaves -----------------------------------------------------------------

def test_series_and_snapshots():
    tape = trace("gan", warmup=20, iterations=1, hidden=3, batch=2, upscale=2)
    warm = tape.meta["warmup"]
    assert set(warm["series"]) == set(models.gan.CHART)
    assert all(len(values) == 20 for values in warm["series"].values())
    assert warm["series"]["D_real"][0].shape == (2, 1)  # each step's whole value, the batch's column
    steps = [k for k, _ in warm["snapshots"]]
    assert steps == training.snapshot_steps(20) == [1, 5, 9, 12, 16, 20]
    for _, pictures in warm["snapshots"]:
        assert pictures["x_fake"].shape == (2, 784) and pictures["x_fake_up"].shape == (2, 56 * 56)
    assert training.snapshot_steps(3) == [1, 2, 3] and training.snapshot_steps(1) == [1]
    assert training.snapshot_steps(2000) == [1, 401, 801, 1200, 1600, 2000]


def test_every_model_charts_what_its_template_charts():
    from tracer.render.template import Template

    for name in ("vae", "gan"):
        assert list(MODELS[name].CHART) == Template(name).model["losses"]["names"]


def test_the_warmup_is_reproducible_and_the_seed_matters():
    one = trace("vae", warmup=15, iterations=1, hidden=3)
    two = trace("vae", warmup=15, iterations=1, hidden=3)
    other = trace("vae", warmup=15, iterations=1, hidden=3, seed=1)
    assert [t.value.tolist() for t in one.tensors] == [t.value.tolist() for t in two.tensors]
    assert not np.array_equal(one.tensors[1].value, other.tensors[1].value)


def test_json_and_csv_carry_the_warmup_as_records_of_their_own_phase():
    tape = trace("vae", warmup=5, iterations=2, hidden=3)
    recs = list(records(tape))
    phases = [r["phase"] for r in recs]
    first_traced = next(i for i, r in enumerate(recs) if r["iteration"] and r["phase"] != "warmup")
    warm = [r for r in recs if r["phase"] == "warmup"]
    assert phases.index("warmup") < first_traced and all(p != "warmup" for p in phases[first_traced:])
    assert all(r["iteration"] == 0 for r in recs[:phases.index("warmup")])
    assert [(r["iteration"], r["name"]) for r in warm] == [(k, n) for k in range(1, 6) for n in ("recon", "kl", "loss")]
    assert [r["value"][0][0] for r in warm if r["name"] == "loss"] == \
        [float(v[0, 0]) for v in tape.meta["warmup"]["series"]["loss"]]
    assert {r["op"] for r in warm} == {"warmup"} and all(r["inputs"] == [] for r in warm)
    rows = [row for row in long_rows(tape) if row[1] == "warmup"]
    assert len(rows) == 15 and rows[0][:4] == (1, "warmup", "recon", 0)
    assert {r["iteration"] for r in recs if r["phase"] not in ("warmup", "input")} == {6, 7}


def test_the_run_reports_the_warmup_losses():
    r = api.run("vae", warmup=10, iterations=2, hidden=3)
    assert len(r.warmup_losses["loss"]) == 10 and len(r.losses["loss"]) == 2
    assert api.run("vae", iterations=2, hidden=3).warmup_losses == {}


# --- divergence -----------------------------------------------------------------------------

def test_a_diverging_warmup_names_the_step_the_tensor_and_a_stable_rate():
    with pytest.raises(TracerError) as e:
        api.run("vae", warmup=200, lr=0.1)
    message = str(e.value)
    assert "\n" not in message
    assert re.fullmatch(r"training diverged: \S+ is not finite in warm-up step \d+; try a smaller learning rate: "
                        r"--lr 0\.005 \(the default; now 0\.1\)", message), message


def test_a_diverging_traced_iteration_after_a_warmup_names_its_number():
    with pytest.raises(TracerError, match=r"not finite in iteration (\d+);") as e:
        api.run("vae", warmup=3, iterations=100, lr=0.1)
    assert int(re.search(r"iteration (\d+)", str(e.value))[1]) > 3


def test_below_the_default_rate_the_advice_is_a_quarter_of_the_rate():
    cfg = models.vae.Config(lr=0.004)
    assert models._rates(cfg) == "try a smaller learning rate: --lr 0.001 (a quarter of 0.004)"
    cfg = models.gan.Config(lr_d=1.0)
    assert models._rates(cfg) == ("try a smaller learning rate: --lr-d 0.005 (the default; now 1), "
                                  "--lr-g 1.25 (a quarter of 5)")


# a loss grown above 10× its first value is a divergence too (issue 21): runs that diverge, and
# the message's first words; each one trains at the rate the message advises
DIVERGING = [
    ("diffusion", {"size": 2, "batch": 1}, "loss grew from 1.39 to 14 (more than 10× its first value) in iteration 2"),
    ("diffusion", {"size": 2, "batch": 2, "warmup": 500}, "loss grew from 0.97 to 24.7 (more than 10× its first value) "
                                                          "in warm-up step 2"),
    ("diffusion", {"size": 4, "batch": 1, "warmup": 500}, "loss grew from 1.37 to 18.3 (more than 10× its first value) "
                                                          "in warm-up step 4"),
    ("flow", {"hidden": 64, "warmup": 2000}, "loss grew from 2.44 to 136 (more than 10× its first value) "
                                             "in warm-up step 12"),
    ("flow", {"hidden": 128, "warmup": 2000}, "loss grew from 2.29 to 3.96e+03 (more than 10× its first value) "
                                              "in warm-up step 4"),
    ("vae", {"lr": 0.1, "warmup": 200}, "recon_terms is not finite in warm-up step 7"),
]
AFTER = {"diffusion": {"samples": 0}, "flow": {"grid": 0, "samples": 0}, "vae": {"grid": 0, "samples": 0}}  # not training


@pytest.mark.parametrize("model, options, what", DIVERGING, ids=[f"{m}-{'-'.join(map(str, o.values()))}" for m, o, _ in DIVERGING])
def test_a_diverging_run_is_refused_and_trains_at_the_rate_advised(model, options, what):
    options = {"iterations": 4, **options, **AFTER[model]}
    with pytest.raises(TracerError) as e:
        api.run(model, **options)
    message = str(e.value)
    assert message.startswith(f"training diverged: {what}; try a smaller learning rate: --lr "), message
    advised = float(re.search(r"--lr (\S+)", message)[1])
    # no error over at least 500 steps (every loss within 10× the first), and the last 50 lower than the first
    run = api.run(model, **{**options, "lr": advised, "warmup": max(500, options.get("warmup", 0))})
    losses = [*run.warmup_losses["loss"], *run.losses["loss"]]
    assert np.mean(losses[-50:]) < losses[0]


def test_the_growth_check_can_fail(monkeypatch):
    """Guard: without it, issue 21's diffusion run is a normal run again (1.39 → 14 → 40 → 1021)."""
    from documented import arrow, says

    monkeypatch.setattr(training, "GROWTH", float("inf"))
    losses = api.run("diffusion", size=2, batch=1, samples=0).losses["loss"]
    assert losses[-1] > 100 * losses[0]
    says("models/diffusion.md", f"`--size 2 --batch 1` goes {arrow(losses, 2)} and is refused at iteration 2")


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("warmup", [0, 2])
def test_every_model_watches_its_losses_in_the_warmup_and_the_traced_iterations(monkeypatch, name, warmup):
    """With the bound lowered to half the first value, the first step is already above it: the
    message names the step and the watched loss (the GAN: L_D only, L_G rises while D wins)."""
    monkeypatch.setattr(training, "GROWTH", 0.5)
    model = MODELS[name]
    options = {"corpus": "en"} if hasattr(model.Config, "corpus") else {}
    options |= {} if name == "mlp" else {"iterations": 1}  # classic_222: 1 iteration
    with pytest.raises(TracerError) as e:
        models.trace(model, model.Config(warmup=warmup, **options))
    where = "warm-up step 1" if warmup else f"iteration {warmup + 1}"
    watched = {"gan": "L_D", "mlp": "E_total"}.get(name, "loss")
    assert re.fullmatch(rf"training diverged: {watched} grew from (\S+) to \1 \(more than 0\.5× its first value\) "
                        rf"in {where}; try a smaller learning rate.*", str(e.value)), str(e.value)


def test_the_finiteness_check_can_fail(monkeypatch):
    """Guard: without the check the warm-up runs on with NaNs and nothing is reported."""
    monkeypatch.setattr(training, "_check_finite", lambda *a: None)
    with np.errstate(all="ignore"):
        tape = models.vae.trace(models.vae.Config(warmup=200, lr=0.1, grid=0, samples=0))
    assert not np.isfinite(tape.meta["warmup"]["series"]["loss"][-1]).all()


def test_the_warmup_option_is_checked():
    with pytest.raises(TracerError, match="--warmup must be at least 0"):
        api.run("vae", warmup=-1)
    for name, m in MODELS.items():
        assert "warmup" in {f.name for f in dataclasses.fields(m.Config)}, name


# --- the commands after a warm-up ------------------------------------------------------------

def test_gradcheck_after_a_warmup_with_a_batch():
    reports = api.gradcheck("vae", batch=2, warmup=5, iterations=2, hidden=3)
    assert [r.iteration for r in reports] == [6, 7] and all(r.ok for r in reports)
    reports = api.gradcheck("gan", warmup=4, iterations=1, hidden=3, batch=2, optimizer="adam")
    assert [r.iteration for r in reports] == [5, 5] and all(r.ok for r in reports)


def test_the_command_reports_the_warmup(run_main, tmp_path):
    code, out, err = run_main("run", "vae", "--warmup", "20", "--iterations", "2", "--hidden", "3",
                              "-o", tmp_path / "w.json")
    assert code == 0, err
    assert re.search(r"20 warm-up steps \+ 2 iterations, .* loss 54\d\.\d\d => \d+\.\d\d \(warm-up\) -> ", out), out


def test_an_exercise_after_a_warmup_numbers_its_iterations(tmp_path):
    _, ex, _ = api.exercise("vae", "update", tmp_path / "ex.xlsx", blank_iterations="7",
                               warmup=5, iterations=2, hidden=2, grid=0, samples=0)
    assert {t.iteration for t in ex.blank} == {7}
    with pytest.raises(TracerError, match="iteration numbers 6 … 7"):
        api.exercise("vae", "update", tmp_path / "ex2.xlsx", blank_iterations="1", warmup=5, iterations=2, hidden=2)


def test_half_the_rate_is_not_enough():
    """docs/training.md: why the advice is a quarter of the rate, not half."""
    with pytest.raises(TracerError, match="loss grew"):
        api.run("diffusion", size=2, batch=2, warmup=500, lr=0.25, samples=0)
    with pytest.raises(TracerError, match="training diverged"):
        api.run("flow", hidden=64, warmup=2000, lr=0.025, grid=0, samples=0)


def test_the_documented_overshoot_message(refused, tmp_path):
    from documented import says  # (the VAE's divergence message: test_docs_numbers)

    says("training.md", refused("run", "diffusion", "--size", "2", "--batch", "1", "-o", tmp_path / "out.xlsx"))
