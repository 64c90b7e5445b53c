"""The tape and the ops: every op keeps its numpy forward, its gradient rule and its cell formula
together, and the ops are grouped by kind.  Nothing here imports the rest of tracer.

    tape           the flat record of every tensor and the backward pass
    op             what an op is (Op, Elementwise, Reduce) and the tape's own ops (one, copy, sum)
    linalg         add, mul, matrix products, linear, sums over axes, column slices
    activations    relu, leaky_relu, sigmoid, tanh, gelu, exp_half, exp, softmax (plain, causal)
    losses         bce, kl, −mean ln, cross-entropy, ½ Σ squared errors, mse, mean bce, (−)mean
    normalization  LayerNorm, step by step
    embeddings     lookup by id, positional encoding, cosine similarity, nearest neighbours
    attention      the scale 1/√d_k, one causal head, split and merge of heads
    generation     take rows, divide, running sum, argmax, inverse-CDF sample (after training)
    resampling     the resolution amplifier (nearest, bilinear; ×2, ×4), average pooling
    diffusion      the noise schedule, the noising, the denoised estimate, the reverse step (DDPM)
    flows          log N(z; 0, I) and an affine coupling undone (RealNVP)
    optimizers     SGD and Adam as recorded ops
"""

from __future__ import annotations

from tracer.core import (
    activations,
    attention,
    diffusion,
    embeddings,
    flows,
    generation,
    linalg,
    losses,
    normalization,
    op,
    optimizers,
    resampling,
)

KINDS = (op, linalg, activations, losses, normalization, embeddings, attention, generation, resampling,
         diffusion, flows, optimizers)

OPS = {name: o for kind in KINDS for name, o in kind.OPS.items()}
"""Every op by name (the template's [ops.<name>] entries); a family of ops sharing one name
(slice_cols, pad_cols, take_rows) by one representative."""


def instances() -> list:
    """Every op instance, each family's members made so far included."""
    found = []
    for kind in KINDS:
        found += kind.instances() if hasattr(kind, "instances") else list(kind.OPS.values())
    return found
