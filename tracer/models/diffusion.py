"""A diffusion model (DDPM, Ho, Jain and Abbeel 2020) on MNIST digits: noise added step by step,
a network that learns to tell the noise, and after training the reverse process that turns
noise into a digit.

    x₀ = 2x − 1 ∈ [−1, 1]^(N×P)     N digits of one class (--batch), each averaged to S × S pixels
                                    (--size S, P = S²; x = avg_pool(digit), pixels / 255)
    β_t = β_start + (β_end − β_start)·(t − 1)/(T − 1),  t = 1 … T     (T = --steps; β_start, β_end named cells)
    α_t = 1 − β_t,   ᾱ_t = α_1·α_2·…·α_t,   √ᾱ_t,   √(1 − ᾱ_t)        (the schedule: formulas of the two cells)
    each step: t_i ~ U{1 … T} and ε ~ N(0, I) (N×P), recorded
    x_t   = √ᾱ_{t_i} ⊙ x₀ + √(1 − ᾱ_{t_i}) ⊙ ε                     (each example at its own step)
    e(t)  = the sinusoidal encoding of t (d = --time-dim columns, as the positional encoding)
    h     = ReLU([x_t | e(t)]·W₁ + b₁)    (N×H)
    ε̂     = h·W₂ + b₂                     (N×P)  the network ε_θ(x_t, t): the noise it thinks was added
    L     = mean (ε − ε̂)²                 θ ← θ − lr·∂L/∂θ (or Adam)
    views:  x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, the clean digit the network sees; the first digit
            noised to every step 1 … T with this iteration's ε (the forward process)
    after training, the reverse process from x_T ~ N(0, I) (recorded, --samples rows):
            x_{t−1} = (x_t − β_t/√(1 − ᾱ_t)·ε_θ(x_t, t))/√α_t + √β_t·z_t,   z_t ~ N(0, I) recorded, z_1 = 0

The pixels are scaled to [−1, 1] as in DDPM: a digit is then mostly −1 (its background), which
the noise must not hide; on [0, 1] the same network learns far worse digits.  The network's
hidden layer must be wider than the image: ε̂ has to pass x_t's P values through it.  H = 128
(the default) is what makes the reverse process draw a digit: after `--warmup 10000` (batch 4,
SGD) the loss is about 0.05 and every sample of seeds 0–2 correlates 0.69 or more with its
nearest training digit; with H = 64 the loss stays near 0.19 and the samples' correlations
average 0.33–0.45, some below 0.

Initialization (seeded, numpy's default_rng(seed)): W₁, W₂ from N(0, 1/fan_in), b₁ = b₂ = 0; then
each step draws t, then ε.  The reverse process draws x_T and the z's from default_rng([seed, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core import diffusion as dd
from tracer.core import optimizers as optim
from tracer.core.activations import relu
from tracer.core.embeddings import dimensions, sinusoidal
from tracer.core.linalg import add_products, concat_cols, linear
from tracer.core.losses import mse
from tracer.core.resampling import avg_pool
from tracer.core.size import Shapes, Size, estimate, optimizer_state, sheet, update
from tracer.core.tape import Tape
from tracer.data import mnist
from tracer.errors import TracerError
from tracer.models.base import Training, lr_opt, opt
from tracer.models.training import train

NAME = "diffusion"
LOSSES = ("loss",)  # printed by `tracer run`
CHART = ("loss",)  # what the overview charts, warm-up steps included
PICTURES = ("x0_hat",)  # what the warm-up keeps snapshots of
SIZES = (2, 4, 7, 14, 28)
MAX_STEPS = 100  # ᾱ_t is written out as a product of t cells
SUMMARY = "diffusion model (DDPM) on MNIST digits: noise added, noise predicted, then a digit drawn from noise"


@dataclass
class Config(Training):
    """The options of `tracer run diffusion` (one CLI option per field)."""

    lr: float = lr_opt("learning rate (change it in the workbook)", sgd=0.5, adam=0.003)
    steps: int = opt(10, "diffusion steps T", min=2, max=MAX_STEPS)
    beta_start: float = opt(0.1, "β_start, the noise variance added at the first step (a named cell)", positive=True,
                            below=1)
    beta_end: float = opt(0.6, "β_end, the noise variance added at the last step (a named cell)", positive=True,
                          below=1)
    hidden: int = opt(128, "hidden units H of the noise predictor ε_θ (best wider than the pixels S²)", min=1)
    time_dim: int = opt(8, "columns d of the sinusoidal encoding of the step t", min=1)
    batch: int = opt(4, "digits per step: --digit and the next ones of the same class", min=1)
    size: int = opt(7, "the digits' side in pixels: each averaged over blocks from 28 × 28 down to 14, 7, 4 or 2",
                    choices=SIZES)
    digit: int = opt(0, "which digit: index into the shipped 100 MNIST test digits (or into --mnist)")
    mnist: str = opt(None, "your own MNIST images file (IDX format, gzipped or not)", path=True)
    samples: int = opt(4, "after training: reverse processes run from x_T ~ N(0, I), one per row (0: none)",
                       min=0, max=32)

    def check(self) -> None:
        super().check()
        if self.beta_start > self.beta_end:  # DDPM's schedule adds more noise at each step, never less
            raise TracerError(f"--beta-start {self.beta_start:g} must be at most --beta-end {self.beta_end:g}: "
                              "the noise schedule increases from the first step to the last")


def network(x_t, t, dim, p, prefix=""):
    """ε̂ = ε_θ(x_t, t) = ReLU([x_t | e(t)]·W₁ + b₁)·W₂ + b₂; a reverse step names its tensors with a prefix."""
    temb = sinusoidal(t, dim, name=prefix + "temb")
    h_pre = linear(concat_cols([x_t, temb], name=prefix + "input"), p["W1"], p["b1"], name=prefix + "h_pre")
    return linear(relu(h_pre, name=prefix + "h"), p["W2"], p["b2"], name=prefix + "eps_hat")


def init_params(rng, pixels: int, time_dim: int, hidden: int) -> dict[str, np.ndarray]:
    return {"W1": rng.normal(0.0, 1 / np.sqrt(pixels + time_dim), (pixels + time_dim, hidden)),
            "b1": np.zeros((1, hidden)),
            "W2": rng.normal(0.0, 1 / np.sqrt(hidden), (hidden, pixels)),
            "b2": np.zeros((1, pixels))}


def schedule(tape, cfg: Config) -> dict:
    """β, α, ᾱ, √ᾱ, 1 − ᾱ, √(1 − ᾱ) (T × 1 each) as formulas of the named cells beta_start, beta_end."""
    start = tape.constant("beta_start", [[cfg.beta_start]], role="hyper", defined_name="beta_start")
    end = tape.constant("beta_end", [[cfg.beta_end]], role="hyper", defined_name="beta_end")
    steps = tape.constant("steps", np.arange(1, cfg.steps + 1, dtype=np.float64).reshape(-1, 1), role="data",
                          integer=True)
    s = {"beta": dd.linear_schedule(start, end, steps, name="beta")}
    s["alpha"] = dd.one_minus(s["beta"], name="alpha")
    s["alpha_bar"] = dd.running_product(s["alpha"], name="alpha_bar")
    s["sqrt_alpha_bar"] = dd.sqrt(s["alpha_bar"], name="sqrt_alpha_bar")
    s["sqrt_one_minus"] = dd.sqrt(dd.one_minus(s["alpha_bar"], name="one_minus_alpha_bar"),
                                  name="sqrt_one_minus_alpha_bar")
    return s


def size(cfg: Config) -> Size:
    """The run's size from its options (tracer.core.size)."""
    N, P, T, d, H, S = cfg.batch, cfg.size ** 2, cfg.steps, cfg.time_dim, cfg.hidden, cfg.samples
    params = [(P + d, H), (1, H), (H, P), (1, P)]
    data = [(N, 784)] + [(N, P)] * (1 + (P < 784))  # the digits, pooled, scaled to [−1, 1]
    inputs = data + [(1, d)] + [(T, 1)] * 7 + params + optimizer_state(cfg.optimizer, params)
    # t, ε, √ᾱ_t, √(1−ᾱ_t), x_t, the strip, e(t), the input, h_pre, h, ε̂, x̂₀, L
    forward = [(N, 1), (N, P), (N, 1), (N, 1), (N, P), (T, P), (N, d), (N, P + d), (N, H), (N, H), (N, P), (N, P),
               (1, 1)]
    backward = [(1, 1), (N, P), (N, H), (N, H)] + params
    step = [(S, 1), (S, d), (S, P + d), (S, H), (S, H), (S, P), (S, P), (S, P)]  # t, e(t), …, ε̂, z, x_{t−1}
    after = sheet(Shapes(step) * T + [(S, P)], bands=True) if S else Size(0, 0)
    return estimate(inputs, forward + backward + update(cfg.optimizer, params), cfg.iterations, after, bands=True)


def trace(cfg: Config) -> Tape:
    """Run cfg.warmup + cfg.iterations training steps on the batch, then the reverse process; the
    tape of the traced ones."""
    pixels, label = mnist.load_batch(cfg.digit, cfg.batch, cfg.mnist)
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": NAME, "label": label, "equation_values": {"T": cfg.steps, "P": cfg.size ** 2}}
    digit = tape.constant("digit", pixels, role="data")
    x = avg_pool(digit, 28 // cfg.size, name="x") if cfg.size < 28 else digit
    x0 = dd.to_signed(x, name="x0")
    sched = schedule(tape, cfg)
    dim = dimensions(tape, cfg.time_dim)
    p = {k: tape.constant(k, v, role="param")
         for k, v in init_params(rng, cfg.size ** 2, cfg.time_dim, cfg.hidden).items()}
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, p, optim.hyperparameters(tape, cfg))
    N, P = x0.shape

    def step(p):
        tape.at("forward", "noising")
        t = tape.constant("timestep", rng.integers(1, cfg.steps + 1, (N, 1)).astype(np.float64), role="draw",
                          integer=True)
        eps = tape.constant("eps", rng.standard_normal((N, P)), role="draw")
        a = dd.pick(sched["sqrt_alpha_bar"], t, name="sqrt_alpha_bar_t")
        b = dd.pick(sched["sqrt_one_minus"], t, name="sqrt_one_minus_alpha_bar_t")
        x_t = add_products(a, x0, b, eps, name="x_t")
        if tape.showing:  # only a picture: a warm-up step not shown skips it
            tape.at("forward", "forward_process")
            dd.noise_strip(sched["sqrt_alpha_bar"], x0, sched["sqrt_one_minus"], eps, name="forward_process")
        tape.at("forward", "network")
        eps_hat = network(x_t, t, dim, p)
        if tape.showing:
            dd.denoise(x_t, b, eps_hat, a, name="x0_hat")
        tape.at("loss")
        L = mse(eps_hat, eps, name="loss")
        tape.at("backward")
        grads = tape.backward(L, p)
        tape.at("update")
        return optimizer.step(p, grads)

    p = train(tape, cfg, p, step, [optimizer], CHART, PICTURES)
    reverse(tape, p, sched, dim, cfg, P)
    return tape


def reverse(tape, p, sched, dim, cfg, pixels) -> None:
    """After training: --samples reverse processes, x_T ~ N(0, I) down to x_0, every step a section."""
    if not cfg.samples:
        return
    draws = np.random.default_rng([cfg.seed, 1])
    S, T = cfg.samples, cfg.steps
    tape.at("after", f"reverse:{T}")
    x = tape.constant(f"x_{T}", draws.standard_normal((S, pixels)), role="draw")
    for t in range(T, 0, -1):
        tape.at("after", f"reverse:{t}")
        prefix = f"[t={t}] "
        steps = tape.constant(prefix + "step", np.full((S, 1), float(t)), role="data", integer=True)
        eps_hat = network(x, steps, dim, p, prefix)
        z = tape.constant(prefix + "z", draws.standard_normal((S, pixels)), role="draw") if t > 1 else None
        x = dd.reverse_step(t, x, eps_hat, sched["beta"], sched["alpha"], sched["sqrt_one_minus"], z, name=f"x_{t - 1}")
