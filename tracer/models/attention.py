"""One causal self-attention layer, trained as a tiny next-token predictor.

    ids (T×1), targets (T×1)  the first --context tokens of the text and the token after each
    X     = E[ids] + PE                (T×d)   embedding lookup plus the sinusoidal positional encoding
    Q     = X·W_q, K = X·W_k, V = X·W_v (T×d_k)
    S     = (Q·Kᵀ) · 1/√d_k            (T×T)   attention scores
    A     = causal softmax(S)          (T×T)   row i attends to positions 0 … i only
    O     = A·V                        (T×d_k) the weighted sum of the values
    Z     = O·W_o + b_o                (T×V)   a linear head: a score for every next token
    P     = softmax(Z),  L = −(1/T) Σ ln P[i, target_i]   (cross-entropy on the next token)
    θ ← θ − lr·∂L/∂θ (or Adam) for E, W_q, W_k, W_v, W_o, b_o.

Initialization (seeded): every matrix from N(0, 1/fan_in) (E from N(0, 1)), b_o = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.core.attention import attention_head, inverse_sqrt
from tracer.core.embeddings import embed
from tracer.core.linalg import add, linear
from tracer.core.tape import Tape
from tracer.models.base import GenerativeText, lr_opt, opt
from tracer.models.next_token import positions, train
from tracer.models.next_token import size as sequence_size

NAME = "attention"
LOSSES = ("loss",)
SUMMARY = "causal self-attention layer learning to predict the next token"


@dataclass
class Config(GenerativeText):
    """The options of `tracer run attention` (one CLI option per field)."""

    lr: float = lr_opt("learning rate", sgd=0.2, adam=0.05)
    d_model: int = opt(8, "embedding size d", min=1)
    d_k: int = opt(4, "size of the queries, keys and values", min=1)
    context: int = opt(8, "tokens in the training sequence (T)", min=2)


def init_params(rng, V: int, d: int, d_k: int) -> dict[str, np.ndarray]:
    return {
        "E": rng.normal(0.0, 1.0, (V, d)),
        "W_q": rng.normal(0.0, 1 / np.sqrt(d), (d, d_k)),
        "W_k": rng.normal(0.0, 1 / np.sqrt(d), (d, d_k)),
        "W_v": rng.normal(0.0, 1 / np.sqrt(d), (d, d_k)),
        "W_o": rng.normal(0.0, 1 / np.sqrt(d_k), (d_k, V)),
        "b_o": np.zeros((1, V)),
    }


def size(cfg: Config):
    """The run's size from its options (tracer.core.size)."""
    d, dk = cfg.d_model, cfg.d_k
    return sequence_size(cfg, lambda V: [(V, d), (d, dk), (d, dk), (d, dk), (dk, V), (1, V)],
                         lambda m, V: [(m, d)] * 2 + [(m, dk)] * 3 + [(m, m)] * 3 + [(m, dk), (m, V)])


def logits(p, ids, pe, scale, prefix=""):
    """The layer from token ids (m×1) to next-token scores Z (m×V); p maps parameter names to
    tensors.  A generation step names its tensors with a prefix and uses the first m rows of PE."""
    x = add(embed(p["E"], ids, name=prefix + "X_emb"), positions(pe, ids, prefix), name=prefix + "X")
    out = attention_head(x, p["W_q"], p["W_k"], p["W_v"], scale, prefix)
    return linear(out, p["W_o"], p["b_o"], name=prefix + "Z")


def trace(cfg: Config) -> Tape:
    def build(tape, V, pe, rng):
        scale = inverse_sqrt(tape, cfg.d_k)
        return init_params(rng, V, cfg.d_model, cfg.d_k), lambda p, ids, prefix="": logits(p, ids, pe, scale, prefix)

    return train(cfg, NAME, build)
