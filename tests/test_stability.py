"""Watch it learn: the default rates train without diverging far beyond the 4 traced iterations,
the documented GAN command (docs/models/gan.md) draws a digit and the documented VAE command generates digits.

Long runs go through --warmup (tested in test_training.py to compute exactly what the same number
of traced iterations computes), in numpy only: no workbook is written here."""

from __future__ import annotations

import numpy as np
import pytest
from documented import num, says

from tracer import models
from tracer.data import mnist
from tracer.models import MODELS, vae

# the documented commands (docs/models/gan.md, docs/models/vae.md)
GAN_DRAWS = {"batch": 15, "optimizer": "adam", "lr_d": 0.001, "lr_g": 0.001, "warmup": 2000}
VAE_GRID = {"batch": 20, "warmup": 3000, "grid": 5}


def run(model, **options):
    m = MODELS[model]
    return models.trace(m, m.Config(**options))


def warmup_losses(tape, name="loss"):
    return [float(v.mean()) for v in tape.meta["warmup"]["series"][name]]


def nearest(images, real):
    """For each image (row), the index of the real image (row) it correlates with most (Pearson)
    and that correlation."""
    a = images - images.mean(1, keepdims=True)
    b = real - real.mean(1, keepdims=True)
    c = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    return c.argmax(1), c.max(1)


# --- the VAE: 100 steps on every shipped digit --------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_vae_trains_100_steps_on_every_shipped_digit(optimizer):
    """`tracer run vae --iterations 100` with the default options (and --optimizer adam): no
    divergence on any of the 100 digits, and the loss after 100 steps is below half the first (the
    worst and the mean share as docs/models/vae.md states them)."""
    shares = []
    for digit in range(mnist.sample_size()):
        tape = run("vae", digit=digit, optimizer=optimizer, warmup=99, iterations=1, grid=0, samples=0)
        first = warmup_losses(tape)[0]
        last = float(next(t.value[0, 0] for t in tape.tensors if t.name == "loss" and t.iteration == 100))
        shares.append(last / first)
        assert last < first / 2, (digit, first, last)
    assert max(shares) < 0.5
    worst, mean = num(max(shares), 3), num(float(np.mean(shares)), 3)
    says("models/vae.md", f"(worst digit: {worst} of its first loss, mean {mean})" if optimizer == "sgd"
         else f"with Adam (worst {worst}, mean {mean})")


def test_vae_100_traced_iterations():
    losses = [float(t.value[0, 0]) for t in run("vae", iterations=100, grid=0, samples=0).tensors if t.name == "loss"]
    assert len(losses) == 100 and losses[-1] < losses[0] / 2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_four_iterations_show_a_falling_loss(optimizer, seed):
    losses = [float(t.value[0, 0]) for t in run("vae", seed=seed, digit=seed, optimizer=optimizer).tensors
              if t.name == "loss"]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_the_stability_check_can_fail():
    """Guard: the old default rate, lr 0.1, diverges within 100 steps (the error names it)."""
    from tracer.errors import TracerError

    with pytest.raises(TracerError, match="not finite in warm-up step"):
        run("vae", lr=0.1, warmup=99, iterations=1, grid=0, samples=0)


# --- every other model at 10× its default iterations --------------------------------------------

TENFOLD = [(name, options) for name, options in [
    ("gan", {}), ("skipgram", {"corpus": "en"}), ("skipgram", {"corpus": "en", "negative": 2}),
    ("attention", {"corpus": "en", "generate": 0}), ("transformer", {"corpus": "en", "generate": 0}),
]]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("model, options", TENFOLD, ids=[f"{m}{'-neg' if o.get('negative') else ''}" for m, o in TENFOLD])
def test_every_model_trains_ten_times_its_default_iterations(model, options, optimizer):
    k = MODELS[model].Config().iterations
    tape = run(model, optimizer=optimizer, warmup=9 * k, iterations=k, **options)  # no divergence: no error
    assert len([t for t in tape.tensors if t.name == MODELS[model].LOSSES[0]]) == k


@pytest.mark.parametrize("config", ["classic_222", "softmax_classifier", "xor"])
def test_every_mlp_example_trains_ten_times_its_iterations(config):
    k = models.mlp.Config(config=config).iterations
    tape = run("mlp", config=config, warmup=9 * k)
    name = tape.meta["losses"][0]
    losses = [float(v[0, 0]) for v in tape.meta["warmup"]["series"][name]]
    assert len(losses) == 9 * k and losses[-1] < losses[0]


# --- a GAN that draws a digit -------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_readme_gan_draws_a_digit(seed):
    """After the documented 2,000 warm-up steps, each generated image correlates with its nearest
    real image of the batch at 0.5 or more on average (at the first step: noise, about 0.05); D
    starts near 0.5 and ends telling them apart.  The seed's row of docs/models/gan.md's table is
    what this run measures."""
    tape = run("gan", seed=seed, iterations=1, **GAN_DRAWS)
    real = next(t.value for t in tape.tensors if t.name == "x_real")
    snapshots = dict(tape.meta["warmup"]["snapshots"])
    score = {step: nearest(snapshot["x_fake"], real)[1].mean() for step, snapshot in snapshots.items()}
    assert score[1] < 0.2
    assert score[GAN_DRAWS["warmup"]] >= 0.5, score
    d_real, d_fake = (np.array(warmup_losses(tape, name)) for name in ("D_real", "D_fake"))
    assert len(d_real) == len(d_fake) == GAN_DRAWS["warmup"]
    assert 0.4 < d_real[0] < 0.6 and 0.4 < d_fake[0] < 0.6, (d_real[0], d_fake[0])
    assert d_real[-100:].mean() > d_fake[-100:].mean()
    steps = sorted(score)
    says("models/gan.md", "| seed | " + " | ".join(f"step {s}" if s == 1 else str(s) for s in steps) + " |",
         f"| {seed} | " + " | ".join(num(score[s]) for s in steps[:-1]) + f" | **{num(score[steps[-1]])}** | "
         f"{num(d_real[-100:].mean())}, {num(d_fake[-100:].mean())} |")
    if seed == 0:  # the batch is the same for every seed
        _, average = nearest(real.mean(0, keepdims=True), real)
        says("models/gan.md", f"the blurry average of the 15 sevens would score {num(average[0])}")
        # why the GAN watches L_D only: L_G rises above 10× its first value while D wins
        l_g = warmup_losses(tape, "L_G")
        final = next(float(t.value[0, 0]) for t in tape.tensors if t.name == "L_G" and t.iteration)
        assert max(l_g) > models.training.GROWTH * l_g[0]
        says("training.md", f"L_G goes from {num(l_g[0])} to {num(max(l_g), 1)} at warm-up step "
                            f"{1 + int(np.argmax(l_g))} and ends at {num(final)}")


# --- the VAE as a generator ---------------------------------------------------------------------

def test_the_readme_vae_grid_shows_digits_morphing():
    """The latent grid of the documented command: every image is close to some digit of the batch
    (Pearson ≥ 0.5) and the grid holds at least two different digit classes (those and the rest of
    what docs/models/vae.md says of this run: the batch's digits, the warm-up's loss)."""
    tape = run("vae", iterations=1, **VAE_GRID)
    grid = next(t for t in tape.tensors if t.name == "[grid] x_hat")
    assert grid.phase == "after" and grid.shape == (25, 784) and grid.op is not None
    real, _ = mnist.load_batch(0, VAE_GRID["batch"], same_class=False)
    which, corr = nearest(grid.value, real)
    labels = mnist.load_labels()[which]
    assert corr.min() >= 0.5, corr
    assert len(set(labels.tolist())) >= 2, labels
    assert labels[0] != labels[-1]  # opposite corners: different digits
    loss = warmup_losses(tape)
    batch = " ".join(str(d) for d in mnist.load_labels()[:VAE_GRID["batch"]])
    classes = sorted(set(labels.tolist()))
    says("models/vae.md", f"The first 20 digits of the sample ({batch})", f"(loss {num(loss[0], 1)} → {num(loss[-1], 1)})",
         f"correlates at {num(np.floor(corr.min() * 100) / 100)} or more with some digit of the batch",
         "nearest digits " + ", ".join(map(str, classes[:-1])) + f" and {classes[-1]} for seed 0")


def test_the_latent_grid_and_the_samples():
    grid = vae.latent_grid(3, 2)
    assert grid.tolist() == [[-2, 2], [0, 2], [2, 2], [-2, 0], [0, 0], [2, 0], [-2, -2], [0, -2], [2, -2]]
    assert vae.latent_grid(2, 4).tolist() == [[-2, 2, 0, 0], [2, 2, 0, 0], [-2, -2, 0, 0], [2, -2, 0, 0]]
    assert vae.latent_grid(3, 1).tolist() == [[-2], [0], [2]]
    assert vae.latent_grid(1, 2).tolist() == [[0, 0]]
    tape = run("vae", iterations=1, grid=3, samples=2, latent=3)
    after = {t.name: t for t in tape.tensors if t.phase == "after"}
    assert after["z_grid"].value.tolist() == vae.latent_grid(3, 3).tolist()
    assert after["z_prior"].shape == (2, 3) and after["z_prior"].attrs["role"] == "draw"
    last = {t.name: t for t in tape.tensors if t.iteration == 1 and t.phase == "update"}
    # the decoder reads the trained parameters: the last update's W3, b3, W4, b4
    assert after["[grid] h_dec_pre"].inputs[1:] == (last["W3"], last["b3"])
    assert after["[sample] x_logit"].inputs[1:] == (last["W4"], last["b4"])
    z, W3, b3, W4, b4 = (t.value for t in (after["z_prior"], last["W3"], last["b3"], last["W4"], last["b4"]))
    expected = 1 / (1 + np.exp(-(np.maximum(z @ W3 + b3, 0) @ W4 + b4)))
    np.testing.assert_allclose(after["[sample] x_hat"].value, expected, rtol=1e-12)
    assert not any(t.phase == "after" for t in run("vae", iterations=1, grid=0, samples=0).tensors)
