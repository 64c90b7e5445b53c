"""An Elman network (a simple recurrent network), trained as a next-token predictor, with
backpropagation through time (the shared parts: tracer.models.recurrent).

    x_t = E[id_t]                                  (1×d)   t = 1 … T, h_0 = 0
    a_t = x_t·W_xh + h_{t−1}·W_hh + b_h            (1×H)
    h_t = tanh(a_t)                                (1×H)
    Z = [h_1; …; h_T]·W_hy + b_y,  P = softmax(Z)  (T×V)
    L = −(1/T) Σ_t ln P[t, id_{t+1}]
    θ ← θ − lr·∂L/∂θ (or Adam) for E, W_xh, W_hh, b_h, W_hy, b_y.

Initialization (seeded, in this order): E from N(0, 1), W_xh from N(0, 1/d), W_hh from
N(0, 1/H), W_hy from N(0, 1/H); the biases 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core.activations import tanh
from tracer.core.linalg import linear2
from tracer.core.tape import Tape
from tracer.models import recurrent
from tracer.models.base import lr_opt

NAME = "rnn"
LOSSES = ("loss",)
SUMMARY = "recurrent (Elman) network learning the next token, backpropagation through time"


@dataclass
class Config(recurrent.Recurrent):
    """The options of `tracer run rnn` (one CLI option per field)."""

    lr: float = lr_opt("learning rate", sgd=0.5, adam=0.05)


def init_params(rng, V: int, cfg) -> dict[str, np.ndarray]:
    d, H = cfg.d_model, cfg.hidden
    p = {"E": rng.normal(0.0, 1.0, (V, d)),
         "W_xh": rng.normal(0.0, 1 / np.sqrt(d), (d, H)),
         "W_hh": rng.normal(0.0, 1 / np.sqrt(H), (H, H)),
         "b_h": np.zeros((1, H))}
    return p | recurrent.output_params(rng, V, H)


def step(p, x, state, name):
    """h_t = tanh(x_t·W_xh + h_{t−1}·W_hh + b_h)."""
    (h,) = state
    return (tanh(linear2(x, p["W_xh"], h, p["W_hh"], p["b_h"], name=name("a")), name=name("h")),)


CELL = recurrent.Cell(("h",), init_params, step)


def size(cfg: Config):
    """The run's size from its options (tracer.core.size)."""
    d, H = cfg.d_model, cfg.hidden
    # W_xh, W_hh, b_h; a_t, h_t; backward: ∂L/∂h_t and its 2 parts, ∂L/∂a_t, ∂L_T/∂h_t, ∂L_T/∂a_t; ∂L/∂x_t
    return recurrent.size(cfg, [(d, H), (H, H), (1, H)], [(1, H)] * 2, [(1, H)] * 6 + [(1, d)])


def trace(cfg: Config) -> Tape:
    return recurrent.train(cfg, NAME, CELL)
