"""Attention, built from the other ops: the scale 1/√d_k, one head (causal, or bidirectional as in
BERT), and the split and merge of heads.

    S = Q·Kᵀ · 1/√d_k        matmul_nt, then mul by a (1, 1) tensor (no op of its own)
    A = causal softmax(S)    activations.CAUSAL_SOFTMAX: row i reads columns 0 … i only
      or softmax(S)          bidirectional: each row reads every column (no mask)
    O = A·V                  matmul
"""

from __future__ import annotations

import numpy as np

from tracer.core.activations import causal_softmax, softmax
from tracer.core.linalg import CONCAT_COLS, MATMUL, MATMUL_NT, MUL, slice_cols
from tracer.core.op import Elementwise, record

# 1/√d_k, the attention scores' scale, as a formula of the cell holding d_k
RSQRT = Elementwise("rsqrt", lambda a: 1 / np.sqrt(a), "1/SQRT({0})")

OPS = {RSQRT.name: RSQRT}


def scale(x, factor, name=None):
    """x times a (1, 1) tensor (e.g. 1/√d_k): linalg.MUL, no new op."""
    return record(MUL, x, factor, name=name)


def inverse_sqrt(tape, d_k: int):
    """The constant d_k and the tensor 1/√d_k computed from it."""
    return tape.apply(RSQRT, tape.constant("d_k", [[float(d_k)]], role="data", integer=True), name="1/sqrt(d_k)")


def attention_head(x, W_q, W_k, W_v, inv_sqrt_dk, prefix="", causal=True):
    """One head of self-attention on x (T×d): Q = x·W_q, K = x·W_k, V = x·W_v (T×d_k),
    S = Q·Kᵀ · 1/√d_k, A = causal softmax(S) (or, not causal, the softmax of every row) (T×T),
    returns O = A·V (T×d_k); each step is recorded as prefix + Q, K, V, QK, S, A, O."""
    q, k, v = (record(MATMUL, x, w, name=prefix + n) for w, n in ((W_q, "Q"), (W_k, "K"), (W_v, "V")))
    scores = scale(record(MATMUL_NT, q, k, name=prefix + "QK"), inv_sqrt_dk, name=prefix + "S")
    weights = (causal_softmax if causal else softmax)(scores, name=prefix + "A")
    return record(MATMUL, weights, v, name=prefix + "O")


def split_heads(x, heads, names=None):
    """x (T, h·d_k) → h tensors (T, d_k), head k = columns k·d_k … (k+1)·d_k − 1."""
    n = x.shape[1]
    if heads < 1 or n % heads:
        raise ValueError(f"cannot split {n} columns into {heads} heads")
    dk = n // heads
    names = names or [None] * heads
    return [record(slice_cols(k * dk, dk), x, name=names[k]) for k in range(heads)]


def merge_heads(heads, name=None):
    """The heads side by side (T, Σ d_k); a single head is returned as it is."""
    heads = list(heads)
    return heads[0] if len(heads) == 1 else record(CONCAT_COLS, *heads, name=name)
