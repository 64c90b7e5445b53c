"""The VAE of the walkthrough: N MNIST digits, SGD (or Adam) on the negative ELBO, then the trained
decoder as a generator.

    x ∈ [0,1]^(N×P)              h      = ReLU(x·W1 + b1)           (N×H)
    (P = 784, or with --size S each digit averaged over blocks to S × S: x = avg_pool(digits), P = S²)
    mu     = h·W_mu + b_mu  (N×J)   logvar = h·W_logvar + b_logvar  (N×J)
    sigma  = exp(logvar / 2)        z      = mu + sigma ⊙ eps,  eps ~ N(0, I) recorded
    h_dec  = ReLU(z·W3 + b3) (N×H)  x_hat  = sigmoid(h_dec·W4 + b4)  (N×P)
    recon  = −(1/N) Σ [x ln x_hat + (1−x) ln(1−x_hat)]    kl = −(1/2N) Σ (1 + logvar − mu² − exp(logvar))
    loss   = recon + kl             θ ← θ − lr · ∂loss/∂θ   (or Adam: tracer.core.optimizers)

Each digit's negative ELBO is a sum over its 784 pixels and J latent units; a batch of N digits
(--batch, the digits from --digit on, any class) averages it over the digits, so a rate suits
any N.  With N = 1 recon and kl are the plain sums; with N > 1 the sums over the batch are
recorded (recon_sum, kl_sum) and divided by N.

Initialization (seeded, numpy's default_rng(seed)): each weight matrix W (fan_in × fan_out) is
drawn from N(0, (0.1)²/fan_in) — LeCun normal scaled by 0.1, so the first reconstruction is close
to 0.5 everywhere — every bias starts at 0 except b3 = 0.5: the decoder's ReLU units start
active, so the decoder learns the digit through W4 at once instead of waiting for the encoder to
push μ far out.  The encoder's first layer is where SGD is fragile: a step on W1 moves h by
lr·|x|² (|x|² ≈ 100 for a digit) times its gradient, a sum over 784 pixels; hence the small
default rate (0.005), stable for 100 steps on each of the 100 shipped digits.  Then one eps draw
(N×J) per step.

After training (phase "after"): the trained decoder on a --grid × --grid square of latent points
over [−2, 2]² (J > 2: the first two units, the rest 0; J = 1: --grid points on [−2, 2]) and on
--samples draws z ~ N(0, I) (recorded, from their own generator): every pixel a formula of the
trained parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import exp_half, relu, sigmoid
from tracer.core.linalg import add, add_mul, divide, linear
from tracer.core.losses import bce, kl_normal
from tracer.core.resampling import avg_pool
from tracer.core.size import Size, estimate, optimizer_state, update
from tracer.core.tape import Tape
from tracer.data import mnist
from tracer.models.base import Training, lr_opt, opt
from tracer.models.training import train

NAME = "vae"
INIT_SCALE = 0.1
DECODER_BIAS = 0.5  # b3's initial value: the decoder's ReLU units start active
LOSSES = ("loss",)  # printed by `tracer run`
CHART = ("recon", "kl", "loss")  # what the overview charts, warm-up steps included
PICTURES = ("x_hat",)  # what the warm-up keeps snapshots of
SIZES = (2, 4, 7, 14, 28)  # sides that cut 28 into whole blocks
SUMMARY = "variational autoencoder learning MNIST digits (forward, ELBO, backprop, SGD or Adam), then generating"
GRID_RADIUS = 2.0  # the latent grid spans [−2, 2] in each of its two units


@dataclass
class Config(Training):
    """The options of `tracer run vae` (one CLI option per field)."""

    lr: float = lr_opt("learning rate (change it in the workbook)", sgd=0.005, adam=0.01)
    hidden: int = opt(8, "hidden units H of encoder and decoder", min=1)
    latent: int = opt(2, "latent units J", min=1)
    batch: int = opt(1, "digits per step: --digit and the next ones, any class (the loss is their mean)", min=1)
    size: int = opt(28, "the digit's side in pixels: 28, or averaged over blocks down to 14, 7, 4 or 2 "
                        "(--size 4 --hidden 2: an exercise to work by hand)", choices=SIZES)
    digit: int = opt(0, "which digit: index into the shipped 100 MNIST test digits (or into --mnist)")
    mnist: str = opt(None, "your own MNIST images file (IDX format, gzipped or not)", path=True)
    grid: int = opt(3, "after training: decode a G × G grid of latent points over [−2, 2]² (0: none)", min=0, max=10)
    samples: int = opt(2, "after training: decode this many draws z ~ N(0, I) (0: none)", min=0, max=32)


def decoder(z, p, prefix=""):
    """x̂ = sigmoid(ReLU(z·W3 + b3)·W4 + b4); a generation names its tensors with a prefix."""
    h_dec_pre = linear(z, p["W3"], p["b3"], name=prefix + "h_dec_pre")
    h_dec = relu(h_dec_pre, name=prefix + "h_dec")
    x_logit = linear(h_dec, p["W4"], p["b4"], name=prefix + "x_logit")
    return sigmoid(x_logit, name=prefix + "x_hat")


def loss(p: dict, x, eps, n=None):
    """One forward pass and the negative ELBO; p maps parameter names to tensors; n: the batch
    size as a (1, 1) tensor when N > 1 (the loss is then the mean over the digits)."""
    tape = x.tape
    tape.at("forward")
    h_pre = linear(x, p["W1"], p["b1"], name="h_pre")
    h = relu(h_pre, name="h")
    mu = linear(h, p["W_mu"], p["b_mu"], name="mu")
    logvar = linear(h, p["W_logvar"], p["b_logvar"], name="logvar")
    sigma = exp_half(logvar, name="sigma")
    z = add_mul(mu, sigma, eps, name="z")
    x_hat = decoder(z, p)
    tape.at("loss")
    if n is None:
        recon, kl = bce(x, x_hat, name="recon"), kl_normal(mu, logvar, name="kl")
    else:
        recon = divide(bce(x, x_hat, name="recon_sum"), n, name="recon")
        kl = divide(kl_normal(mu, logvar, name="kl_sum"), n, name="kl")
    return add(recon, kl, name="loss")


def init_params(rng, hidden: int, latent: int, pixels: int = 784) -> dict[str, np.ndarray]:
    shapes = {"W1": (pixels, hidden), "W_mu": (hidden, latent), "W_logvar": (hidden, latent),
              "W3": (latent, hidden), "W4": (hidden, pixels)}
    params = {}
    for w, (fan_in, fan_out) in shapes.items():
        params[w] = rng.normal(0.0, INIT_SCALE / np.sqrt(fan_in), size=(fan_in, fan_out))
        params["b" + w[1:]] = np.full((1, fan_out), DECODER_BIAS if w == "W3" else 0.0)
    return params


def size(cfg: Config) -> Size:
    """The run's size from its options (tracer.core.size): the backward pass holds a gradient of
    every forward tensor and of every parameter; after training, the decoder on the grid and the
    samples."""
    P, H, J, N = cfg.size ** 2, cfg.hidden, cfg.latent, cfg.batch
    params = [(P, H), (1, H), (H, J), (1, J), (H, J), (1, J), (J, H), (1, H), (H, P), (1, P)]
    # eps, μ, log σ², σ, z; h_pre, h, h_dec_pre, h_dec; x_logit, x̂, recon's terms; KL's terms; recon, kl, loss
    forward = [(N, J)] * 5 + [(N, H)] * 4 + [(N, P)] * 3 + [(N, J)] + [(1, 1)] * (3 + 2 * (N > 1))
    after = [shape for m in (cfg.grid ** (2 if J > 1 else 1), cfg.samples) if m
             for shape in [(m, J), (m, H), (m, H), (m, P), (m, P)]]
    digits = [(N, 784)] + [(N, P)] * (P < 784)  # the digits, and pooled (--size) the x computed from them
    return estimate(digits + params + optimizer_state(cfg.optimizer, params),
                    forward * 2 + params + update(cfg.optimizer, params), cfg.iterations, after, bands=True)


def latent_grid(side: int, latent: int) -> np.ndarray:
    """side² latent points (rows), row-major as the picture shows them: the first unit from −2 to 2
    left to right, the second from 2 down to −2; the other units 0.  J = 1: side points on a line;
    side 1: the origin."""
    values = np.linspace(-GRID_RADIUS, GRID_RADIUS, side) if side > 1 else np.zeros(1)
    if latent == 1:
        return values.reshape(-1, 1)
    z = np.zeros((side * side, latent))
    z[:, 0] = np.tile(values, side)
    z[:, 1] = np.repeat(values[::-1], side)
    return z


def trace(cfg: Config) -> Tape:
    """Run cfg.warmup + cfg.iterations training steps on the batch, then generate; the tape of the
    traced ones."""
    pixels, _ = mnist.load_batch(cfg.digit, cfg.batch, cfg.mnist, same_class=False)
    labels = mnist.load_labels(cfg.mnist)
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": NAME, "equation_values": {"pixels": cfg.size ** 2}}
    if labels is not None:
        batch = [int(v) for v in labels[cfg.digit:cfg.digit + cfg.batch]]
        tape.meta["label"] = batch[0] if cfg.batch == 1 else ", ".join(map(str, batch))
    if cfg.size == 28:
        x = tape.constant("x", pixels, role="data")
    else:  # each digit averaged over 28/S × 28/S blocks: S × S pixels, each a formula of the digit's
        x = avg_pool(tape.constant("digit", pixels, role="data"), 28 // cfg.size, name="x")
    n = tape.constant("N", [[float(cfg.batch)]], role="data", integer=True) if cfg.batch > 1 else None
    p = {k: tape.constant(k, v, role="param")
         for k, v in init_params(rng, cfg.hidden, cfg.latent, cfg.size ** 2).items()}
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, p, optim.hyperparameters(tape, cfg))

    def step(p):
        tape.at("forward")
        eps = tape.constant("eps", rng.standard_normal((cfg.batch, cfg.latent)), role="draw")
        L = loss(p, x, eps, n)
        tape.at("backward")
        grads = tape.backward(L, p)
        tape.at("update")
        return optimizer.step(p, grads)

    p = train(tape, cfg, p, step, [optimizer], CHART, PICTURES)
    generate(tape, p, cfg)
    return tape


def generate(tape, p, cfg) -> None:
    """After training: the decoder on the latent grid and on draws from the prior."""
    if cfg.grid:
        tape.at("after", "latent_grid")
        decoder(tape.constant("z_grid", latent_grid(cfg.grid, cfg.latent), role="data"), p, "[grid] ")
    if cfg.samples:
        tape.at("after", "samples")
        draws = np.random.default_rng([cfg.seed, 1]).standard_normal((cfg.samples, cfg.latent))
        decoder(tape.constant("z_prior", draws, role="draw"), p, "[sample] ")
