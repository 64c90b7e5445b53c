"""A decoder-only transformer (pre-LayerNorm, as GPT-2), trained as a next-token predictor.

    ids (T×1), Y (T×V)  the first --context tokens of the text and, one-hot, the token after each
    X = E[ids] + PE                                 (T×d)   lookup plus sinusoidal positions
    for each block b = 1 … --layers:
        N₁ = LayerNorm(X; γ₁, β₁)                   (T×d)   population variance, ε inside the root
        for each head h = 1 … H (d_k = d/H):
            Q_h = N₁·W_q^h,  K_h = N₁·W_k^h,  V_h = N₁·W_v^h    (T×d_k)
            A_h = causal softmax(Q_h·K_hᵀ · 1/√d_k)          (T×T)
            O_h = A_h·V_h                                     (T×d_k)
        M  = [O_1 | … | O_H]·W_o                    (T×d)   heads side by side, then mixed
        X₁ = X + M                                  (T×d)   residual
        N₂ = LayerNorm(X₁; γ₂, β₂)
        F  = act(N₂·W_1 + b_1)·W_2 + b_2            (T×d_ff) → (T×d)   act: ReLU or GELU (--ffn)
        X  = X₁ + F                                 (T×d)   residual: the block's output
    N_f = LayerNorm(X; γ_f, β_f),  Z = N_f·W_head + b_head  (T×V)
    P = softmax(Z),  L = −(1/T) Σᵢ ln P[i, next token of i]
    θ ← θ − lr·∂L/∂θ (or Adam) for every parameter.

Names: block b's tensors are "b<b>.<name>", head h's "b<b>.h<h>.<name>" (the template's entries
"b.<name>" and "b.h.<name>").  Initialization (seeded): matrices from N(0, 1/fan_in), E from
N(0, 1), γ = 1, β = 0, biases 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tracer.core.activations import gelu, relu
from tracer.core.attention import attention_head, inverse_sqrt, merge_heads
from tracer.core.embeddings import embed
from tracer.core.linalg import add, linear, matmul
from tracer.core.normalization import layer_norm
from tracer.core.size import Shapes
from tracer.core.tape import Tape
from tracer.errors import TracerError
from tracer.models.base import GenerativeText, TextTraining, lr_opt, opt
from tracer.models.next_token import positions, train
from tracer.models.next_token import size as sequence_size

NAME = "transformer"
LOSSES = ("loss",)
SUMMARY = "decoder-only transformer (multi-head attention, LayerNorm, feed-forward) learning the next token"
ACTIVATIONS = {"relu": relu, "gelu": gelu}


@dataclass
class Blocks(TextTraining):
    """The transformer's size and its training text (shared with bert, which trains the same blocks)."""

    lr: float = lr_opt("learning rate", sgd=0.2, adam=0.02)
    layers: int = opt(1, "transformer blocks", min=1)
    d_model: int = opt(8, "embedding size d (a multiple of --heads)", min=1)
    heads: int = opt(2, "attention heads, each of size d_model/heads", min=1)
    d_ff: int = opt(32, "hidden size of the feed-forward layer (4·d_model in GPT)", min=1)
    ffn: str = opt("relu", "the feed-forward activation", choices=tuple(ACTIVATIONS))
    context: int = opt(8, "tokens in the training sequence (T)", min=2)
    ln_eps: float = opt(1e-5, "LayerNorm's ε inside the square root (a named cell)", positive=True)

    def check(self) -> None:
        super().check()
        if self.d_model % self.heads:
            raise TracerError(f"--d-model {self.d_model} must be a multiple of --heads {self.heads}")


@dataclass
class Config(Blocks, GenerativeText):
    """The options of `tracer run transformer` (one CLI option per field)."""


def init_params(rng, V: int, cfg: Config) -> dict[str, np.ndarray]:
    d, dk, f = cfg.d_model, cfg.d_model // cfg.heads, cfg.d_ff

    def w(rows, cols):
        return rng.normal(0.0, 1 / np.sqrt(rows), (rows, cols))

    p = {"E": rng.normal(0.0, 1.0, (V, d))}
    for b in range(1, cfg.layers + 1):
        p[f"b{b}.gamma1"], p[f"b{b}.beta1"] = np.ones((1, d)), np.zeros((1, d))
        for h in range(1, cfg.heads + 1):
            for m in ("W_q", "W_k", "W_v"):
                p[f"b{b}.h{h}.{m}"] = w(d, dk)
        p[f"b{b}.W_o"] = w(d, d)
        p[f"b{b}.gamma2"], p[f"b{b}.beta2"] = np.ones((1, d)), np.zeros((1, d))
        p[f"b{b}.W_1"], p[f"b{b}.b_1"] = w(d, f), np.zeros((1, f))
        p[f"b{b}.W_2"], p[f"b{b}.b_2"] = w(f, d), np.zeros((1, d))
    p["gamma_f"], p["beta_f"] = np.ones((1, d)), np.zeros((1, d))
    p["W_head"], p["b_head"] = w(d, V), np.zeros((1, V))
    return p


class Net:
    """The forward pass from token ids (m×1) to logits (m×V).  Training records it in numbered
    sections; a generation step (prefix "[greedy 2] " …) names every tensor with its prefix, stays
    in the generation's section and uses the first m rows of PE.  causal=False: every position
    attends to every other one (bert)."""

    def __init__(self, cfg, pe, scale, eps, causal=True):
        self.cfg, self.pe, self.scale, self.eps, self.causal = cfg, pe, scale, eps, causal

    def logits(self, p, ids, prefix="", pe=None):
        """pe: the positional encoding added (default: PE, or its first m rows in a generation step)."""
        def at(section):
            if not prefix:
                ids.tape.at("forward", section)

        at("embed")
        x = add(embed(p["E"], ids, name=prefix + "X_emb"), positions(self.pe, ids, prefix) if pe is None else pe,
                name=prefix + "X")
        for b in range(1, self.cfg.layers + 1):
            at(f"block_attention:{b}")
            x = self.attention(p, x, f"b{b}.", prefix)
            at(f"block_ffn:{b}")
            x = self.feed_forward(p, x, f"b{b}.", prefix)
        at("head")
        top = layer_norm(x, p["gamma_f"], p["beta_f"], self.eps, name=prefix + "LN_f")
        return linear(top, p["W_head"], p["b_head"], name=prefix + "Z")

    def attention(self, p, x, b, prefix):
        """X₁ = X + [O_1 | … | O_H]·W_o, each head on LayerNorm(X); b = "b1." names the block."""
        n = prefix + b
        normed = layer_norm(x, p[b + "gamma1"], p[b + "beta1"], self.eps, name=n + "LN1")
        heads = [attention_head(normed, *(p[f"{b}h{h}.W_{m}"] for m in "qkv"), self.scale, f"{n}h{h}.",
                                self.causal) for h in range(1, self.cfg.heads + 1)]
        mixed = matmul(merge_heads(heads, name=n + "O"), p[b + "W_o"], name=n + "M")
        return add(x, mixed, name=n + "X1")

    def feed_forward(self, p, x1, b, prefix):
        """X₂ = X₁ + act(LayerNorm(X₁)·W_1 + b_1)·W_2 + b_2."""
        n = prefix + b
        normed = layer_norm(x1, p[b + "gamma2"], p[b + "beta2"], self.eps, name=n + "LN2")
        hidden = ACTIVATIONS[self.cfg.ffn](linear(normed, p[b + "W_1"], p[b + "b_1"], name=n + "U"), name=n + "H")
        return add(x1, linear(hidden, p[b + "W_2"], p[b + "b_2"], name=n + "F"), name=n + "X2")


def shapes(cfg: Blocks):
    """(params(V), forward(m, V)): the shapes of the parameters, and those the blocks record from m
    token ids to their logits (tracer.core.size.Shapes: a block's and a head's shapes counted
    --layers and --heads times, never listed); bert's size uses them too."""
    d, H, f, L = cfg.d_model, cfg.heads, cfg.d_ff, cfg.layers
    dk = d // H

    def params(V):
        block = Shapes([(1, d)] * 2 + [(d, d)] + [(1, d)] * 2 + [(d, f), (1, f), (f, d), (1, d)]) + \
            Shapes([(d, dk)]) * (3 * H)
        return Shapes([(V, d), (1, d), (1, d), (d, V), (1, V)]) + block * L

    def forward(m, V):
        norm = [(m, 1), (m, 1), (m, d), (m, d)]  # LayerNorm: μ, σ², x̂, γ ⊙ x̂ + β
        head = Shapes([(m, dk)] * 3 + [(m, m)] * 3 + [(m, m), (m, 1)] + [(m, dk)])  # … A's exponentials and sums
        block = head * H + norm + [(m, d)] * 3 + norm + [(m, f), (m, f), (m, d), (m, d)]
        return block * L + [(m, d)] * 2 + norm + [(m, V)]

    return params, forward


def size(cfg: Config):
    """The run's size from its options (tracer.core.size): ∂L/∂LN1 adds a part through each head's
    W_q, W_k and W_v."""
    return dataclasses.replace(sequence_size(cfg, *shapes(cfg)), terms=3 * cfg.heads)


def make_net(tape, cfg: Blocks, pe, causal=True) -> Net:
    """The net with its constants recorded: 1/√d_k and LayerNorm's ε (a named cell)."""
    return Net(cfg, pe, inverse_sqrt(tape, cfg.d_model // cfg.heads),
               tape.constant("ln_eps", [[cfg.ln_eps]], role="hyper", defined_name="ln_eps"), causal)


def trace(cfg: Config) -> Tape:
    def build(tape, V, pe, rng):
        return init_params(rng, V, cfg), make_net(tape, cfg, pe).logits

    return train(cfg, NAME, build)
