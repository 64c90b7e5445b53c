"""A normalizing flow (RealNVP, Dinh, Sohl-Dickstein and Bengio 2017) on 2-D points: invertible
couplings carry the data to a standard Gaussian, and the change of variables gives each point's
exact density.

    x ∈ R^(N×2)       N seeded points of --data (moons, rings, gaussians; tracer.data.points), x₁, x₂ its columns
    coupling k = 1 … K (--couplings), keeping coordinate 1 when k is odd, 2 when k is even:
        s = tanh(tanh(x_keep·W_s1 + b_s1)·W_s2 + b_s2)    (N×1; hidden layer N×H, H = --hidden)
        t = tanh(x_keep·W_t1 + b_t1)·W_t2 + b_t2
        (s's last tanh bounds it, −1 < s < 1: unbounded, exp(s) overflows at larger learning
        rates; docs/models/flow.md)
        y_keep = x_keep,   y_change = x_change ⊙ exp(s) + t
    z = f(x) = [z₁ | z₂], the coordinates after the last coupling
    log p(x) = log N(z; 0, I) + Σ_k s_k        log N(z; 0, I) = Σ_j (−½ z_j² − ½ ln 2π); the
                                               log-determinant of coupling k is Σ s_k (one s per row)
    L = −mean log p(x)                          θ ← θ − lr·∂L/∂θ (or Adam)
    after training (the trained parameters):
        the density p(x) = exp(log p(x)) on a G × G grid over the data's range (--grid)
        samples: z ~ N(0, I) (recorded, --samples rows) through the couplings undone, K down to 1:
                 x_change = (y_change − t(y_keep)) ⊙ exp(−s(y_keep))
        z = f(x) of the data, to compare with N(0, I)

Initialization (seeded, numpy's default_rng(seed)), coupling by coupling, s's net then t's: the
first layer's weights and biases from N(0, 1) (its input is one coordinate: the biases spread the
tanh curves over the data's range), the second layer's weights from N(0, 0.1²/H) and its bias 0,
so every coupling starts close to the identity and z close to x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import exp, tanh
from tracer.core.flows import coupling_inverse, log_normal
from tracer.core.linalg import add, add_mul, add_n, concat_cols, linear, slice_cols
from tracer.core.losses import neg_mean
from tracer.core.op import record
from tracer.core.size import Shapes, Size, estimate, optimizer_state, update
from tracer.core.tape import Tape
from tracer.data import points
from tracer.models.base import Training, lr_opt, opt
from tracer.models.training import train

NAME = "flow"
LOSSES = ("loss",)  # printed by `tracer run`
CHART = ("loss",)  # what the overview charts, warm-up steps included
SUMMARY = "normalizing flow (RealNVP) on 2-D points: invertible couplings, the exact density, then samples"
NETS = ("s", "t")
OUTPUT_SCALE = 0.1  # the second layer's weights: N(0, 0.1²/H), every coupling near the identity
GRID_MARGIN = 0.1  # the density grid spans the data's range, widened by this share on each side


@dataclass
class Config(Training):
    """The options of `tracer run flow` (one CLI option per field)."""

    lr: float = lr_opt("learning rate (change it in the workbook)", sgd=0.05, adam=0.003)
    data: str = opt("moons", "the 2-D data set: two half moons, two rings or four Gaussians", choices=points.KINDS)
    points: int = opt(64, "data points N (seeded, recorded)", min=2)
    couplings: int = opt(4, "affine coupling layers K, alternating which coordinate they keep", min=1, max=16)
    hidden: int = opt(8, "hidden units H of each coupling's s and t networks", min=1)
    grid: int = opt(21, "after training: the density on a G × G grid over the data's range (0: none)", min=0,
                    max=41)
    samples: int = opt(64, "after training: draws z ~ N(0, I) pushed through the inverse couplings (0: none)",
                       min=0, max=1000)


def init_params(rng, couplings: int, hidden: int) -> dict[str, np.ndarray]:
    params = {}
    for k in range(1, couplings + 1):
        for net in NETS:
            params[f"b{k}.W_{net}1"] = rng.normal(0.0, 1.0, (1, hidden))
            params[f"b{k}.b_{net}1"] = rng.normal(0.0, 1.0, (1, hidden))
            params[f"b{k}.W_{net}2"] = rng.normal(0.0, OUTPUT_SCALE / np.sqrt(hidden), (hidden, 1))
            params[f"b{k}.b_{net}2"] = np.zeros((1, 1))
    return params


def net(x_keep, p, k: int, which: str, prefix: str):
    """t of coupling k: tanh(x_keep·W₁ + b₁)·W₂ + b₂ (N×1); s: the same through one more tanh."""
    name = f"{prefix}b{k}.{which}"
    h = tanh(linear(x_keep, p[f"b{k}.W_{which}1"], p[f"b{k}.b_{which}1"], name=name + "_pre"), name=name + "_h")
    if which == "s":  # bounded, −1 < s < 1: unbounded, exp(s) overflows at larger learning rates (docs/models/flow.md)
        return tanh(linear(h, p[f"b{k}.W_{which}2"], p[f"b{k}.b_{which}2"], name=name + "_a"), name=name)
    return linear(h, p[f"b{k}.W_{which}2"], p[f"b{k}.b_{which}2"], name=name)


def kept(k: int) -> int:
    """The coordinate (0 or 1) coupling k keeps: the first in odd couplings, the second in even ones."""
    return (k - 1) % 2


def forward(tape, coords: list, p, couplings: int, prefix: str = "", section: str = ""):
    """z = f(x) and log p(x) = log N(z; 0, I) + Σ_k s_k from the two coordinates (N×1 each); each
    coupling in its own section (`section` + ":k") when a section is given."""
    coords, scales = list(coords), []
    for k in range(1, couplings + 1):
        if section:
            tape.at(tape.phase, f"{section}:{k}")
        keep = kept(k)
        s, t = net(coords[keep], p, k, "s", prefix), net(coords[keep], p, k, "t", prefix)
        coords[1 - keep] = add_mul(t, coords[1 - keep], exp(s, name=f"{prefix}b{k}.exp_s"), name=f"{prefix}b{k}.y")
        scales.append(s)
    if section:
        tape.at(tape.phase, "density")
    z = concat_cols(coords, name=prefix + "z")
    logdet = add_n(scales, name=prefix + "logdet") if len(scales) > 1 else scales[0]
    return z, add(log_normal(z, name=prefix + "log_pz"), logdet, name=prefix + "log_px")


def inverse(coords: list, p, couplings: int, prefix: str, tape=None):
    """x = f⁻¹(z) from the two coordinates of z: the couplings undone, K down to 1."""
    coords = list(coords)
    for k in range(couplings, 0, -1):
        if tape is not None:
            tape.at("after", f"inverse:{k}")
        keep = kept(k)
        s, t = net(coords[keep], p, k, "s", prefix), net(coords[keep], p, k, "t", prefix)
        coords[1 - keep] = coupling_inverse(coords[1 - keep], t, s, name=f"{prefix}b{k}.x")
    return coords


def columns(x, prefix: str = "", letter: str = "x"):
    """The two coordinates of points x (n×2), as references (n×1 each) named <letter>1, <letter>2."""
    return [record(slice_cols(j, 1), x, name=f"{prefix}{letter}{j + 1}") for j in range(2)]


def grid_points(x: np.ndarray, side: int) -> np.ndarray:
    """side² points over the data's range (widened by GRID_MARGIN), row-major as the picture shows
    them: x₁ left to right, x₂ from the top (largest) down."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = GRID_MARGIN * (hi - lo)
    lo, hi = lo - pad, hi + pad
    xs, ys = np.linspace(lo[0], hi[0], side), np.linspace(hi[1], lo[1], side)
    return np.stack([np.tile(xs, side), np.repeat(ys, side)], axis=1)


def size(cfg: Config) -> Size:
    """The run's size from its options (tracer.core.size): the backward pass holds a gradient of
    every forward tensor and of every parameter."""
    N, K, H, G2, M = cfg.points, cfg.couplings, cfg.hidden, cfg.grid ** 2, cfg.samples
    params = Shapes([(1, H), (1, H), (H, 1), (1, 1)] * 2) * K

    def through(n, last):  # a pass through the couplings on n points: the nets, exp(s), the new coordinate
        coupling = Shapes([(n, H), (n, H), (n, 1)] * 2 + [(n, 1), (n, 1)])
        return coupling * K + [(n, 1), (n, 1)] + [(n, 2)] * 2 + [(n, 1)] * last

    forward = through(N, 4) + [(1, 1)]
    after = (through(G2, 5) + [(G2, 2)]) * bool(G2) + (through(M, 0) + [(M, 2)]) * bool(M) + through(N, 4)
    return estimate(params + optimizer_state(cfg.optimizer, params) + [(N, 2), (N, 1), (N, 1)],
                    forward * 2 + params + update(cfg.optimizer, params), cfg.iterations, after, bands=True)


def trace(cfg: Config) -> Tape:
    """Run cfg.warmup + cfg.iterations training steps on the points, then the density, the samples
    and the data mapped to z; the tape of the traced ones."""
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": NAME}
    data = points.points(cfg.data, cfg.points, cfg.seed)
    x = tape.constant("x", data, role="data")
    coords = columns(x)
    p = {k: tape.constant(k, v, role="param") for k, v in init_params(rng, cfg.couplings, cfg.hidden).items()}
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, p, optim.hyperparameters(tape, cfg))

    def step(p):
        tape.at("forward")
        _, log_px = forward(tape, coords, p, cfg.couplings, section="coupling")
        tape.at("loss")
        L = neg_mean(log_px, name="loss")
        tape.at("backward")
        grads = tape.backward(L, p)
        tape.at("update")
        return optimizer.step(p, grads)

    p = train(tape, cfg, p, step, [optimizer], CHART)
    after_training(tape, p, data, coords, cfg)
    return tape


def after_training(tape, p, data, coords, cfg) -> None:
    """The trained flow: its density on a grid, samples through the inverse, the data mapped to z."""
    if cfg.grid:
        tape.at("after", "density_grid")
        grid = tape.constant("x_grid", grid_points(data, cfg.grid), role="data")
        _, log_px = forward(tape, columns(grid, "[grid] "), p, cfg.couplings, "[grid] ")
        exp(log_px, name="[grid] p")
    if cfg.samples:
        tape.at("after", "samples")
        z = tape.constant("z_prior", np.random.default_rng([cfg.seed, 1]).standard_normal((cfg.samples, 2)),
                          role="draw")
        x = inverse(columns(z, "[sample] ", "z"), p, cfg.couplings, "[sample] ", tape)
        tape.at("after", "samples")
        concat_cols(x, name="x_sample")
    tape.at("after", "mapped")
    forward(tape, coords, p, cfg.couplings, "[data] ")
