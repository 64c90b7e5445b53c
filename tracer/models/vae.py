"""The VAE of the walkthrough: one MNIST digit, 4 iterations of SGD (or Adam) on the negative ELBO.

    x ∈ [0,1]^(1×P)              h      = ReLU(x·W1 + b1)           (1×H)
    (P = 784, or with --size S the digit averaged over blocks to S × S: x = avg_pool(digit), P = S²)
    mu     = h·W_mu + b_mu  (1×J)   logvar = h·W_logvar + b_logvar  (1×J)
    sigma  = exp(logvar / 2)        z      = mu + sigma ⊙ eps,  eps ~ N(0, I) recorded
    h_dec  = ReLU(z·W3 + b3) (1×H)  x_hat  = sigmoid(h_dec·W4 + b4)  (1×P)
    recon  = −Σ [x ln x_hat + (1−x) ln(1−x_hat)]    kl = −½ Σ (1 + logvar − mu² − exp(logvar))
    loss   = recon + kl             θ ← θ − lr · ∂loss/∂θ   (or Adam: tracer.core.optimizers)

Initialization (seeded, numpy's default_rng(seed)): each weight matrix W (fan_in × fan_out) is
drawn from N(0, (0.1)²/fan_in) — LeCun normal scaled by 0.1, so the first reconstruction is close
to 0.5 everywhere and the default lr = 0.1 makes the loss fall at every step — and every bias
starts at 0; then one eps draw per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import exp_half, relu, sigmoid
from tracer.core.linalg import add, add_mul, linear
from tracer.core.losses import bce, kl_normal
from tracer.core.resampling import avg_pool
from tracer.core.tape import Tape
from tracer.data import mnist
from tracer.models.base import Training, lr_opt, opt

NAME = "vae"
INIT_SCALE = 0.1
LOSSES = ("loss",)  # printed by `tracer run`
SIZES = (2, 4, 7, 14, 28)  # sides that cut 28 into whole blocks
SUMMARY = "variational autoencoder learning one MNIST digit (forward, ELBO, backprop, SGD or Adam)"



@dataclass
class Config(Training):
    """The options of `tracer run vae` (one CLI option per field)."""

    lr: float = lr_opt("learning rate (change it in the workbook)", sgd=0.1, adam=0.01)
    hidden: int = opt(8, "hidden units H of encoder and decoder", min=1)
    latent: int = opt(2, "latent units J", min=1)
    size: int = opt(28, "the digit's side in pixels: 28, or averaged over blocks down to 14, 7, 4 or 2 "
                        "(--size 4 --hidden 2: an exercise to work by hand)", choices=SIZES)
    digit: int = opt(0, "which digit: index into the shipped 100 MNIST test digits (or into --mnist)")
    mnist: str = opt(None, "your own MNIST images file (IDX format, gzipped or not)", path=True)


def loss(p: dict, x, eps):
    """One forward pass and the negative ELBO; p maps parameter names to tensors."""
    tape = x.tape
    tape.at("forward")
    h_pre = linear(x, p["W1"], p["b1"], name="h_pre")
    h = relu(h_pre, name="h")
    mu = linear(h, p["W_mu"], p["b_mu"], name="mu")
    logvar = linear(h, p["W_logvar"], p["b_logvar"], name="logvar")
    sigma = exp_half(logvar, name="sigma")
    z = add_mul(mu, sigma, eps, name="z")
    h_dec_pre = linear(z, p["W3"], p["b3"], name="h_dec_pre")
    h_dec = relu(h_dec_pre, name="h_dec")
    x_logit = linear(h_dec, p["W4"], p["b4"], name="x_logit")
    x_hat = sigmoid(x_logit, name="x_hat")
    tape.at("loss")
    recon = bce(x, x_hat, name="recon")
    kl = kl_normal(mu, logvar, name="kl")
    return add(recon, kl, name="loss")


def init_params(rng, hidden: int, latent: int, pixels: int = 784) -> dict[str, np.ndarray]:
    shapes = {"W1": (pixels, hidden), "W_mu": (hidden, latent), "W_logvar": (hidden, latent),
              "W3": (latent, hidden), "W4": (hidden, pixels)}
    params = {}
    for w, (fan_in, fan_out) in shapes.items():
        params[w] = rng.normal(0.0, INIT_SCALE / np.sqrt(fan_in), size=(fan_in, fan_out))
        params["b" + w[1:]] = np.zeros((1, fan_out))
    return params


def trace(cfg: Config) -> Tape:
    """Run `cfg.iterations` SGD steps on one digit and return the full tape."""
    pixels, label = mnist.load_digit(cfg.digit, cfg.mnist)
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": NAME, "label": label, "equation_values": {"pixels": cfg.size ** 2}}
    if cfg.size == 28:
        x = tape.constant("x", pixels, role="data")
    else:  # the digit averaged over 28/S × 28/S blocks: S × S pixels, each a formula of the digit's
        x = avg_pool(tape.constant("digit", pixels, role="data"), 28 // cfg.size, name="x")
    p = {k: tape.constant(k, v, role="param")
         for k, v in init_params(rng, cfg.hidden, cfg.latent, cfg.size ** 2).items()}
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, p, optim.hyperparameters(tape, cfg))
    for k in range(1, cfg.iterations + 1):
        tape.iteration = k
        tape.at("forward")
        eps = tape.constant("eps", rng.standard_normal((1, cfg.latent)), role="draw")
        L = loss(p, x, eps)
        tape.at("backward")
        grads = tape.backward(L, p)
        tape.at("update")
        p = optimizer.step(p, grads)
    return tape
