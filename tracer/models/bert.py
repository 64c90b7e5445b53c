"""BERT: the transformer's blocks (tracer.models.transformer) with bidirectional attention, trained
as a masked language model.

    ids (T×1)      the first --context tokens of the text; the vocabulary gets one more token, [MASK]
    each iteration:
      u  (T×1)     uniform draws in [0, 1), recorded
      m_i = 1 if u_i < rate or u_i = min u, else 0     which positions are masked (--mask-rate, a
                                                       named cell; always at least one)
      ids_in_i = [MASK]'s id where m_i = 1, else ids_i the masked input the model reads
      X = E[ids_in] + PE, the blocks with every head bidirectional (A = softmax(Q·Kᵀ/√d_k) row by
      row, no causal mask: every position sees every other one), N_f, Z = N_f·W_head + b_head,
      P = softmax(Z)
      ℓ_i = −ln P[i, ids_i],  L = Σ m_i ℓ_i / Σ m_i    cross-entropy at the masked positions only
      θ ← θ − lr·∂L/∂θ (or Adam) for every parameter
      then the evaluation loss on the updated θ: the same model on ids_eval, the text with a fixed
      mask m_eval (every second position from the second, 1, 3, 5, …: the same every iteration, a
      recorded constant, each hidden token between visible ones), L_eval = Σ m_eval,i ℓ_i / Σ m_eval,i.
      The training loss is measured on other positions each iteration, so it jumps; L_eval is
      measured on the same ones, so it shows what training does (the overview charts both)
    after training, fill in the blank: the model reads --fill (a sentence with [MASK]s; default: the
      text's first sentence with its second token masked); at each [MASK] the distribution P, the
      --top most likely tokens and their probabilities; the sentence with each [MASK] replaced by
      the most likely token.

Initialization: as the transformer's (E, then each block, then the head), from
numpy.random.default_rng(seed); the mask draws come from default_rng([seed, 2]).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from tracer.core.activations import softmax
from tracer.core.embeddings import (
    mask_ids,
    mask_positions,
    positional_encoding,
    token_ids,
)
from tracer.core.generation import argmax, fill_masks, take_rows, top_ids, top_values
from tracer.core.losses import masked_mean, nll
from tracer.core.size import estimate, optimizer_state, update
from tracer.core.tape import Tape
from tracer.data.text import SPACE
from tracer.errors import TracerError
from tracer.models import transformer
from tracer.models.base import opt
from tracer.models.next_token import fit, sequence, text_tape

NAME = "bert"
LOSSES = ("loss", "eval_loss")
SUMMARY = "BERT: transformer blocks with bidirectional attention learning to fill in masked tokens"
MASK = "[MASK]"
EVAL = "[eval] "  # the names of the evaluation pass's tensors: "[eval] P"


@dataclass
class Config(transformer.Blocks):
    """The options of `tracer run bert` (one CLI option per field)."""

    mask_rate: float = opt(0.15, "share of the positions masked in each iteration (a named cell; at least one is)",
                           min=0, below=1)
    fill: str = opt(None, "after training, the sentence to fill in, with [MASK] where a token is missing "
                          "[default: the text's first sentence with its second token masked]")
    top: int = opt(3, "after training, the most likely tokens shown at each [MASK]", min=1)


def with_mask(tok):
    """The tokenization with [MASK] added at the end of the vocabulary (its id is V − 1)."""
    return dataclasses.replace(tok, vocab=[*tok.vocab, MASK])


def eval_mask(T: int) -> np.ndarray:
    """m_eval (T×1): 1 at every second position from the second (1, 3, 5, …), else 0."""
    return (np.arange(T) % 2 == 1).astype(np.float64).reshape(T, 1)


def fill_ids(cfg, tok) -> list[int]:
    """The ids of the sentence to fill in: --fill with each [MASK] (any case) as [MASK]'s id, or the
    text's first sentence (at most --context tokens) with its second token masked."""
    mask = len(tok.vocab) - 1
    if cfg.fill is None:
        ids = list(tok.sentences[0][:cfg.context])
        ids[min(1, len(ids) - 1)] = mask
        return ids
    parts = re.split(r"\[mask\]", cfg.fill, flags=re.IGNORECASE)
    if len(parts) < 2:
        raise TracerError(f"--fill must contain {MASK} where a token is missing (got {cfg.fill!r})")
    ids = []
    for n, part in enumerate(parts):
        if n:
            ids.append(mask)
        piece = tok.encode(part, "--fill") if part.strip() else []
        if tok.kind == "char" and SPACE in tok.index:  # the spaces around a [MASK] are tokens too
            space = tok.index[SPACE]
            piece = [space] * (n > 0 and part[:1].isspace()) + piece + [space] * (
                n < len(parts) - 1 and part[-1:].isspace() and bool(part.strip()))
        ids += piece
    if len(ids) > cfg.context:
        raise TracerError(f"--fill gives {len(ids)} tokens: at most --context {cfg.context} fit")
    return ids


def size(cfg: Config):
    """The run's size from its options (tracer.core.size): the transformer's blocks, the masks of
    each iteration, the evaluation pass after each update, and the fill-in after training."""
    params, forward = transformer.shapes(cfg)
    tok, _, _ = sequence(cfg)
    V, T, d = len(tok.vocab) + 1, cfg.context, cfg.d_model  # the vocabulary and [MASK]
    ps = params(V)
    model = forward(T, V) + [(T, V), (T, 1), (T, V), (T, 1), (1, 1)]  # … P's exponentials, sums, P, ℓ, L
    train = model + [(T, 1)] * 3  # …, u, m, ids_in
    step = train * 2.5 + ps + update(cfg.optimizer, ps) + model  # forward, backward, update, the evaluation pass
    first = ps + optimizer_state(cfg.optimizer, ps) + [(T, 1), (1, 1), (T, 1), (T, 1), (T, 1), (1, d), (T, d)]
    after = forward(T, V) + [(T, 1), (T, 1), (cfg.top, 1), (cfg.top, 1), (T, 1)] + [(1, V)] * 4
    return dataclasses.replace(estimate(first, step, cfg.iterations, after), terms=3 * cfg.heads)  # as the transformer's


def trace(cfg: Config) -> Tape:
    base, inputs, _ = sequence(cfg)
    tok = with_mask(base)
    V, T = len(tok.vocab), cfg.context
    if cfg.top > V:
        raise TracerError(f"--top {cfg.top} is more than the {V} tokens of the vocabulary")
    filling = fill_ids(cfg, tok)
    tape = text_tape(NAME, tok)
    ids = token_ids(tape, inputs, name="ids", decode=True)
    mask_id = tape.constant("mask_id", [[V - 1]], role="data")
    rate = tape.constant("mask_rate", [[cfg.mask_rate]], role="hyper", defined_name="mask_rate")
    m_eval = tape.constant("m_eval", eval_mask(T), role="data", integer=True)
    ids_eval = mask_ids(ids, m_eval, mask_id, name="ids_eval")
    net = transformer.make_net(tape, cfg, positional_encoding(tape, T, cfg.d_model), causal=False)
    init = transformer.init_params(np.random.default_rng(cfg.seed), V, cfg)
    draws = np.random.default_rng([cfg.seed, 2])

    def loss_of(p):
        tape.at("forward", "mask")
        u = tape.constant("u", draws.uniform(size=(T, 1)), role="draw")
        m = mask_positions(u, rate, name="m")
        probs = softmax(net.logits(p, mask_ids(ids, m, mask_id, name="ids_in")), name="P")
        tape.at("loss")
        return masked_mean(nll(probs, ids, name="nll"), m, name="loss")

    def evaluate(p):  # on the updated parameters, the fixed mask: the same positions every iteration
        tape.at("forward", "eval")
        probs = softmax(net.logits(p, ids_eval, prefix=EVAL, pe=net.pe), name=EVAL + "P")
        tape.at("loss", "eval")
        masked_mean(nll(probs, ids, name=EVAL + "nll"), m_eval, name="eval_loss")

    p = fit(tape, cfg, init, loss_of, after_update=evaluate, chart=LOSSES)
    fill_in(tape, net, p, tok, filling, mask_id, cfg.top)
    return tape


def fill_in(tape, net, p, tok, filling, mask_id, top) -> None:
    """After training: the model on the sentence with its [MASK]s; at each one the distribution and
    the top tokens; the sentence filled in.  The texts go to tape.meta["filled"]."""
    tape.at("after", "fill")
    sentence = token_ids(tape, filling, name="fill", decode=True)
    logits = net.logits(p, sentence, prefix="[fill] ")
    best = argmax(logits, name="[fill] best")
    picks = []
    for n, row in enumerate((i for i, v in enumerate(filling) if v == mask_id.value[0, 0]), start=1):
        tape.at("after", f"fill_mask:{n}")
        probs = softmax(take_rows(logits, row, 1, name=f"[mask {n}] z"), name=f"[mask {n}] P")
        tops = top_ids(probs, top, name=f"[mask {n}] top")
        values = top_values(probs, top, name=f"[mask {n}] top P")
        picks.append([(tok.vocab[int(i)], float(v)) for i, v in zip(tops.value[:, 0], values.value[:, 0])])
    tape.at("after", "fill_result")
    filled = fill_masks(sentence, best, mask_id, name="filled")
    show = lambda ids: " ".join(tok.decode([int(i) for i in ids]))
    tape.meta["filled"] = [(show(filling), show(filled.value[:, 0]), picks)]
