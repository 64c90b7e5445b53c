"""A long short-term memory network (LSTM), trained as a next-token predictor, with
backpropagation through time through every gate and the cell state (the shared parts:
tracer.models.recurrent).

    x_t = E[id_t]                                           (1×d)   t = 1 … T, h_0 = c_0 = 0
    i_t = σ(x_t·W_xi + h_{t−1}·W_hi + b_i)   input gate    (1×H)   (pre-activation a^i_t, …)
    f_t = σ(x_t·W_xf + h_{t−1}·W_hf + b_f)   forget gate
    o_t = σ(x_t·W_xo + h_{t−1}·W_ho + b_o)   output gate
    g_t = tanh(x_t·W_xg + h_{t−1}·W_hg + b_g) candidate
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                          cell state
    h_t = o_t ⊙ tanh(c_t)                                    hidden state
    Z = [h_1; …; h_T]·W_hy + b_y,  P = softmax(Z),  L = −(1/T) Σ_t ln P[t, id_{t+1}]
    θ ← θ − lr·∂L/∂θ (or Adam) for E, the 12 gate parameters, W_hy, b_y.

The gradient reaches c_{t−1} through f_t (∂c_t/∂c_{t−1} = f_t): with f near 1 the cell state
carries it back over many steps, which a plain RNN's tanh and W_hh shrink at every step.

Initialization (seeded, in this order): E from N(0, 1); per gate i, f, o, g: W_x· from N(0, 1/d),
W_h· from N(0, 1/H); W_hy from N(0, 1/H); the biases 0 except the forget gate's, b_f =
--forget-bias (1 by default, as Gers, Schmidhuber and Cummins 2000 and Jozefowicz, Zaremba and
Sutskever 2015 advise): at the start f ≈ σ(1) ≈ 0.73, so the cell keeps most of its state and
the gradient through it does not vanish from the first iteration on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core.activations import sigmoid, tanh
from tracer.core.linalg import add_products, linear2, mul
from tracer.core.tape import Tape
from tracer.models import recurrent
from tracer.models.base import lr_opt, opt

NAME = "lstm"
LOSSES = ("loss",)
SUMMARY = "long short-term memory (LSTM) network learning the next token, through every gate"
GATES = {"i": sigmoid, "f": sigmoid, "o": sigmoid, "g": tanh}


@dataclass
class Config(recurrent.Recurrent):
    """The options of `tracer run lstm` (one CLI option per field)."""

    lr: float = lr_opt("learning rate", sgd=1.0, adam=0.05)
    forget_bias: float = opt(1.0, "initial bias of the forget gate b_f (every cell)")


def init_params(rng, V: int, cfg) -> dict[str, np.ndarray]:
    d, H = cfg.d_model, cfg.hidden
    p = {"E": rng.normal(0.0, 1.0, (V, d))}
    for gate in GATES:
        p[f"W_x{gate}"] = rng.normal(0.0, 1 / np.sqrt(d), (d, H))
        p[f"W_h{gate}"] = rng.normal(0.0, 1 / np.sqrt(H), (H, H))
        p[f"b_{gate}"] = np.full((1, H), cfg.forget_bias if gate == "f" else 0.0)
    return p | recurrent.output_params(rng, V, H)


def step(p, x, state, name):
    """The gates from x_t and h_{t−1}, then c_t = f ⊙ c_{t−1} + i ⊙ g and h_t = o ⊙ tanh(c_t)."""
    h, c = state
    i, f, o, g = (act(linear2(x, p[f"W_x{gate}"], h, p[f"W_h{gate}"], p[f"b_{gate}"], name=name("a" + gate)),
                      name=name(gate)) for gate, act in GATES.items())
    c = add_products(f, c, i, g, name=name("c"))
    return mul(o, tanh(c, name=name("tanh_c")), name=name("h")), c


CELL = recurrent.Cell(("h", "c"), init_params, step)


def size(cfg: Config):
    """The run's size from its options (tracer.core.size): per step 4 gates (pre-activation and
    activation), c, tanh c and h."""
    d, H = cfg.d_model, cfg.hidden
    # backward, per step on average (counted on a run): the gradients of the 11, the parts of h's and
    # c's (through H, the next step's 4 gates, c_{t+1}), L_T's own pass; ∂L/∂x_t and its part per gate
    return recurrent.size(cfg, [(d, H), (H, H), (1, H)] * 4, [(1, H)] * 11, [(1, H)] * 34 + [(1, d)] * 5)


def trace(cfg: Config) -> Tape:
    return recurrent.train(cfg, NAME, CELL)
