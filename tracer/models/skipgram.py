"""Skip-gram (word2vec): word embeddings learned from the contexts words appear in.

The text is the first --sentences sentences of the corpus (or of --text). Every iteration takes
all of them (full-batch gradient descent, so the loss falls step after step): every position of
a sentence is a center word c_p, and every word within --window positions of it in the same
sentence a context word o_p: P (center, context) pairs in all.

    ids_c (P×1), ids_o (P×1)   the pairs' token ids (constants; the Tokens sheet names them)
    h     = E_in[ids_c]        (P×d)   the centers' embeddings: a lookup, INDEX(E_in, id+1, j+1)

  full softmax (--negative 0, the default):
    s     = h · E_outᵀ         (P×V)   a score for every word of the vocabulary
    p     = softmax(s)         (P×V)   row by row, max-subtracted
    L     = −(1/P) Σ ln p[p, o_p]      cross-entropy against the one-hot contexts Y (P×V)

  negative sampling (--negative K):
    u     = E_out[ids_o]       (P×d)   s⁺ = Σ_j h ⊙ u (P×1)
    n_k   = E_out[neg_k]       (P×d)   s⁻_k = Σ_j h ⊙ n_k (P×1), neg_k recorded draws ∝ count^0.75
    L     = −mean ln σ(s⁺) − Σ_k mean ln(1 − σ(s⁻_k))

    E ← E − lr · ∂L/∂E (or Adam), for E_in (V×d) and E_out (V×d).

After the last iteration: the cosine similarity of every pair of words, before and after
training, and each word's nearest neighbours, all as formulas of the embeddings.

Initialization (seeded): E_in and E_out from N(0, 0.1²); then the negative draws, if any.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import sigmoid, softmax
from tracer.core.embeddings import cosine, embed, nearest, token_ids
from tracer.core.linalg import add, matmul_nt, mul, sum_cols
from tracer.core.losses import cross_entropy, neg_mean_ln, neg_mean_ln1m, one_hot
from tracer.core.size import Shapes, Size, estimate, optimizer_state, update
from tracer.core.tape import Tape
from tracer.errors import TracerError
from tracer.models.base import TextTraining, lr_opt, opt
from tracer.models.training import train

NAME = "skipgram"
LOSSES = ("loss",)
SUMMARY = "skip-gram word embeddings from a small corpus (full softmax or negative sampling)"
INIT_SCALE = 0.1
NEIGHBOURS = 3


@dataclass
class Config(TextTraining):
    """The options of `tracer run skipgram` (one CLI option per field)."""

    iterations: int = opt(8, "training iterations (each one over every pair of the text)", min=1)
    sentences: int = opt(4, "use the first N sentences of the text (0: all of them)", min=0)
    lr: float = lr_opt("learning rate", sgd=4.0, adam=0.1)
    dim: int = opt(4, "embedding size d", min=1)
    window: int = opt(2, "context words on each side of the center word", min=1)
    negative: int = opt(0, "negative samples per pair (0: full softmax over the vocabulary)", min=0)


def pairs(sentence: list[int], window: int) -> list[tuple[int, int]]:
    """(center, context) ids: every word within `window` positions of each center."""
    out = []
    for p, center in enumerate(sentence):
        for q in range(max(0, p - window), min(len(sentence), p + window + 1)):
            if q != p:
                out.append((center, sentence[q]))
    return out


def pair_count(length: int, window: int) -> int:
    """len(pairs(sentence, window)) for a sentence of `length` tokens, without listing them: at each
    distance k = 1 … min(window, length − 1), 2·(length − k) ordered pairs."""
    k = min(window, length - 1)
    return k * (2 * length - k - 1) if k > 0 else 0


def size(cfg: Config) -> Size:
    """The run's size from its options (tracer.core.size), the text tokenized but not trained on."""
    tok = cfg.tokenize(cfg.lines()[:cfg.sentences or None], boundary=False)
    P, V, d, K = sum(pair_count(len(s), cfg.window) for s in tok.sentences), len(tok.vocab), cfg.dim, cfg.negative
    E = [(V, d), (V, d)]
    if K:  # per negative sample: its ids, embeddings, products, scores, σ and loss terms, and their gradients
        forward = Shapes([(P, 1), (P, d), (P, d), (P, 1), (P, 1), (P, 1), (1, 1), (1, 1)]) * K + \
                  [(P, 1), (P, d), (P, 1), (P, d), (P, d), (P, 1), (P, 1), (P, 1), (1, 1)]
        backward = Shapes([(P, d)] * 3 + [(P, 1)] * 2 + [(V, d)]) * K + [(P, d)] * 4 + [(P, 1)] * 2 + E + [(V, d)]
    else:
        forward = [(P, 1), (P, d), (P, V), (P, V), (P, 1), (P, V), (P, V), (P, 1), (1, 1)]  # …, p, Y, ℓ, L
        backward = [(P, V), (P, V), (P, d), (1, 1)] + E
    n = min(NEIGHBOURS, V - 1)
    est = estimate(E + optimizer_state(cfg.optimizer, E), forward + backward + update(cfg.optimizer, E),
                   cfg.iterations, after=[(V, V), (V, V), (V, n), (V, n)])
    return dataclasses.replace(est, terms=K + 1)  # ∂L/∂E_out and ∂L/∂h: a part per sample


def noise_distribution(tok) -> np.ndarray:
    """Unigram counts ^ 0.75, normalized (word2vec's distribution of negative words)."""
    counts = np.bincount([i for s in tok.sentences for i in s], minlength=len(tok.vocab)).astype(float)
    weights = counts ** 0.75
    return weights / weights.sum()


def trace(cfg: Config) -> Tape:
    tok = cfg.tokenize(cfg.lines()[:cfg.sentences or None], boundary=False)
    pr = [p for s in tok.sentences for p in pairs(s, cfg.window)]
    if not pr:
        raise TracerError("the text has no sentence of two or more tokens: skip-gram needs contexts")
    V = len(tok.vocab)
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": NAME, "tokenized": tok}
    params = {name: tape.constant(name, rng.normal(0.0, INIT_SCALE, (V, cfg.dim)), role="param")
              for name in ("E_in", "E_out")}
    first = params["E_in"]
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, params, optim.hyperparameters(tape, cfg))
    noise = noise_distribution(tok) if cfg.negative else None

    def step(params):
        tape.at("forward")
        centers = token_ids(tape, [c for c, _ in pr], name="ids_c")
        contexts = [o for _, o in pr]
        h = embed(params["E_in"], centers, name="h")
        if cfg.negative:
            u = embed(params["E_out"], token_ids(tape, contexts, name="ids_o"), name="u")
            pos = sum_cols(mul(h, u, name="h*u"), name="s_pos")
            tape.at("loss")
            loss = neg_mean_ln(sigmoid(pos, name="sig_pos"), name="L_pos")
            for n in range(1, cfg.negative + 1):
                tape.at("forward")
                draws = rng.choice(V, size=len(pr), p=noise)
                neg = embed(params["E_out"], token_ids(tape, draws, name=f"neg{n}", role="draw"), name=f"n{n}")
                s_neg = sum_cols(mul(h, neg, name=f"h*n{n}"), name=f"s_neg{n}")
                tape.at("loss")
                loss = add(loss, neg_mean_ln1m(sigmoid(s_neg, name=f"sig_neg{n}"), name=f"L_neg{n}"),
                           name="loss" if n == cfg.negative else f"L_{n}")
        else:
            scores = matmul_nt(h, params["E_out"], name="s")
            probs = softmax(scores, name="p")
            tape.at("loss")
            loss = cross_entropy(probs, one_hot(tape, contexts, V, name="Y"), name="loss")
        tape.at("backward")
        grads = tape.backward(loss, params)
        tape.at("update")
        return optimizer.step(params, grads)

    params = train(tape, cfg, params, step, [optimizer], LOSSES)
    tape.at("after", "evaluate")
    before = cosine(first, name="cos_before")
    after = cosine(params["E_in"], name="cos")
    nearest(before, min(NEIGHBOURS, V - 1), name="nearest_before")
    nearest(after, min(NEIGHBOURS, V - 1), name="nearest")
    return tape
