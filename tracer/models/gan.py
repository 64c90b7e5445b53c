"""A GAN learns one MNIST digit: the adversarial game, move by move.

    x_real ∈ [0,1]^(N×784)     N real digits of one class (pixels / 255)
    z ~ N(0, I) (N×Z), recorded once per iteration
    Generator       G_h    = LeakyReLU(z·G_W1 + G_b1)            (N×H)
                    x_fake = sigmoid(G_h·G_W2 + G_b2)            (N×784)
    Discriminator   D_h    = LeakyReLU(x·D_W1 + D_b1)            (N×H)
                    D(x)   = sigmoid(D_h·D_W2 + D_b2)            (N×1)
    L_D = −mean ln D(x_real) − mean ln(1 − D(x_fake))      x_fake held constant: no gradient into G
    L_G = −mean ln D'(x_fake)                              non-saturating, through the updated D'

Each iteration (and each of the --warmup steps before them): generate → discriminate real and fake → L_D → D's gradients → D's update →
L_G through the updated discriminator D' → G's gradients (through D') → G's update.  The G step
reuses the iteration's fake batch (one z draw per iteration).  Optionally the generated digits
are upscaled ×2 or ×4 (nearest or bilinear), as formulas of the generated cells.

Initialization (seeded, numpy's default_rng(seed)): every weight matrix (fan_in × fan_out) is
drawn from N(0, 1/fan_in), every bias starts at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import leaky_relu, sigmoid
from tracer.core.linalg import add, linear
from tracer.core.losses import neg_mean_ln, neg_mean_ln1m
from tracer.core.resampling import upscale
from tracer.core.size import Size, estimate, optimizer_state, update
from tracer.core.tape import Tape
from tracer.data import mnist
from tracer.models.base import Training, lr_opt, opt
from tracer.models.training import train

NAME = "gan"
LOSSES = ("L_D", "L_G")  # printed by `tracer run`
WATCH = ("L_D",)  # a divergence shows in D's loss; L_G rises far while D wins, then falls (docs/models/gan.md)
CHART = ("D_real", "D_fake", "L_D", "L_G")  # what the overview charts, warm-up steps included
PICTURES = ("x_fake", "x_fake_up")  # what the warm-up keeps snapshots of
SUMMARY = "GAN learning MNIST digits: generator and discriminator, move by move (SGD or Adam)"


@dataclass
class Config(Training):
    """The options of `tracer run gan` (one CLI option per field)."""

    # The generator's gradient comes through the discriminator and is ~100 times smaller than D's
    # own, so with SGD G needs a much larger rate to move at all; with these defaults D(x_fake)
    # falls and G visibly fights back within a few iterations.
    lr_d: float = lr_opt("discriminator's learning rate", sgd=0.005, adam=0.0005)
    lr_g: float = lr_opt("generator's learning rate", sgd=5.0, adam=0.05)
    hidden: int = opt(16, "hidden units of the generator and of the discriminator", min=1)
    latent: int = opt(4, "latent units Z of the generator's input noise", min=1)
    slope: float = opt(0.2, "LeakyReLU slope for negative inputs (a named cell)", min=0)
    batch: int = opt(1, "real digits per iteration: --digit and the next ones of the same class", min=1)
    digit: int = opt(0, "which digit: index into the shipped 100 MNIST test digits (or into --mnist)")
    mnist: str = opt(None, "your own MNIST images file (IDX format, gzipped or not)", path=True)
    upscale: int = opt(None, "resolution amplifier: also show the generated digits ×2 or ×4", choices=(2, 4))
    upscale_mode: str = opt("bilinear", "how the amplifier interpolates", choices=("nearest", "bilinear"))


def generator(z, p, slope):
    h = leaky_relu(linear(z, p["G_W1"], p["G_b1"], name="G_a1"), slope, name="G_h")
    return sigmoid(linear(h, p["G_W2"], p["G_b2"], name="G_a2"), name="x_fake")


def discriminator(x, p, slope, tag):
    """D(x) for the batch x; `tag` names the tensors (real, fake, gen)."""
    h = leaky_relu(linear(x, p["D_W1"], p["D_b1"], name=f"D_a1_{tag}"), slope, name=f"D_h_{tag}")
    return sigmoid(linear(h, p["D_W2"], p["D_b2"], name=f"D_a2_{tag}"), name=f"D_{tag}")


def init_params(rng, hidden: int, latent: int, pixels: int = 784) -> dict[str, np.ndarray]:
    shapes = {"G_W1": (latent, hidden), "G_W2": (hidden, pixels), "D_W1": (pixels, hidden), "D_W2": (hidden, 1)}
    params = {}
    for w, (fan_in, fan_out) in shapes.items():
        params[w] = rng.normal(0.0, 1 / np.sqrt(fan_in), size=(fan_in, fan_out))
        params[w.replace("W", "b")] = np.zeros((1, fan_out))
    order = ["G_W1", "G_b1", "G_W2", "G_b2", "D_W1", "D_b1", "D_W2", "D_b2"]
    return {k: params[k] for k in order}


def size(cfg: Config) -> Size:
    """The run's size from its options (tracer.core.size): D's gradients come through the real and
    the fake digits (a contribution each, and their sum), G's through D'."""
    N, P, H, Z = cfg.batch, 784, cfg.hidden, cfg.latent
    G = [(Z, H), (1, H), (H, P), (1, P)]
    D = [(P, H), (1, H), (H, 1), (1, 1)]
    forward = [(N, Z), (N, H), (N, H), (N, P), (N, P)] + [(N, H), (N, H), (N, 1), (N, 1)] * 3 + [(1, 1)] * 4
    step = forward * 2 + D * 3 + G + update(cfg.optimizer, D + G)
    if cfg.upscale:  # the amplifier, after the game: no gradient
        step += [(N, P * cfg.upscale ** 2)]
    return estimate([(N, P)] + G + D + optimizer_state(cfg.optimizer, D + G), step, cfg.iterations, bands=True)


def trace(cfg: Config) -> Tape:
    """Run cfg.warmup + cfg.iterations rounds of the game (a D step, then a G step); the tape of
    the traced ones."""
    pixels, label = mnist.load_batch(cfg.digit, cfg.batch, cfg.mnist)
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": NAME, "label": label}
    x_real = tape.constant("x_real", pixels, role="data")
    init = init_params(rng, cfg.hidden, cfg.latent)
    G = {k: tape.constant(k, v, role="param") for k, v in init.items() if k.startswith("G")}
    D = {k: tape.constant(k, v, role="param") for k, v in init.items() if k.startswith("D")}
    slope = tape.constant("slope", [[cfg.slope]], role="hyper", defined_name="slope")
    lr_d = tape.constant("lr_D", [[cfg.lr_d]], role="hyper", defined_name="lr_D")
    lr_g = tape.constant("lr_G", [[cfg.lr_g]], role="hyper", defined_name="lr_G")
    hypers = optim.hyperparameters(tape, cfg)
    opt_d = optim.make(tape, cfg, lr_d, D, hypers, label="D")
    opt_g = optim.make(tape, cfg, lr_g, G, hypers, label="G")

    def step(params):
        G = {k: v for k, v in params.items() if k.startswith("G")}
        D = {k: v for k, v in params.items() if k.startswith("D")}
        tape.at("forward", "generate")
        z = tape.constant("z", rng.standard_normal((cfg.batch, cfg.latent)), role="draw")
        x_fake = generator(z, G, slope)
        tape.at("forward", "discriminate")
        d_real = discriminator(x_real, D, slope, "real")
        d_fake = discriminator(x_fake, D, slope, "fake")
        tape.at("loss", "d_loss")
        L_D = add(neg_mean_ln(d_real, name="L_real"), neg_mean_ln1m(d_fake, name="L_fake"), name="L_D")
        tape.at("backward", "d_backward")
        grads = tape.backward(L_D, D, held=[x_fake], prefix="L_D")
        tape.at("update", "d_update")
        D = opt_d.step(D, grads)
        tape.at("loss", "g_loss")
        d_gen = discriminator(x_fake, D, slope, "gen")
        L_G = neg_mean_ln(d_gen, name="L_G")
        tape.at("backward", "g_backward")
        grads = tape.backward(L_G, G, prefix="L_G")
        tape.at("update", "g_update")
        G = opt_g.step(G, grads)
        if cfg.upscale and tape.showing:  # only a picture: a warm-up step not shown skips it
            tape.at("forward", "upscale")
            upscale(x_fake, cfg.upscale, cfg.upscale_mode, name="x_fake_up")
        return {**G, **D}

    train(tape, cfg, {**G, **D}, step, [opt_d, opt_g], CHART, PICTURES)
    return tape
