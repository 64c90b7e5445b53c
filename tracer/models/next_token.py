"""What the next-token models (attention, transformer) share: the training sequence, the loop
(softmax and cross-entropy on every next token, backward, update) and, after training, generation.

A model gives `train` a `build(tape, V, pe, rng)` that records its own constants and returns its
initial parameters {name: array} and its `logits(p, ids, prefix="")`: token ids (m×1) → next-token
scores (m×V), p mapping parameter names to tensors.  Training calls it with prefix ""; each
generation step with a prefix such as "[greedy 2] " that names every tensor it records.
"""

from __future__ import annotations

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import softmax
from tracer.core.embeddings import positional_encoding, token_ids
from tracer.core.generation import take_rows
from tracer.core.losses import cross_entropy, one_hot
from tracer.core.tape import Tape
from tracer.data.text import BOUNDARY
from tracer.errors import TracerError
from tracer.models import training
from tracer.models.generation import generate


def sequence(cfg):
    """The tokenization of the text (cut to what the sequence needs) and (inputs, targets): the
    first --context tokens and the token after each."""
    lines, need = cfg.lines(), cfg.context + 1
    # whole sentences until the sequence is long enough: a small vocabulary; BPE learns its
    # merges from the whole text (in a few sentences hardly any pair repeats)
    for n in range(len(lines) if cfg.tokenizer == "bpe" else 1, len(lines) + 1):
        tok = cfg.tokenize(lines[:n])
        if len(tok.ids) >= need:
            break
    if len(tok.ids) < need:
        raise TracerError(f"the text gives {len(tok.ids)} tokens: --context {cfg.context} needs {need}")
    return tok, tok.ids[:cfg.context], tok.ids[1:need]


def positions(pe, ids, prefix):
    """The positional encoding of a sequence: PE itself in training, its first m rows in a
    generation step (the text so far may be shorter than --context)."""
    return take_rows(pe, 0, ids.shape[0], name=prefix + "PE") if prefix else pe


def train(cfg, name: str, build) -> Tape:
    tok, inputs, nexts = sequence(cfg)
    V = len(tok.vocab)
    rng = np.random.default_rng(cfg.seed)
    tape = Tape()
    tape.meta = {"model": name, "tokenized": tok}
    ids = token_ids(tape, inputs, name="ids", decode=True)
    targets = one_hot(tape, nexts, V, name="Y")
    pe = positional_encoding(tape, cfg.context, cfg.d_model)
    init, logits = build(tape, V, pe, rng)
    p = {k: tape.constant(k, v, role="param") for k, v in init.items()}
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, p, optim.hyperparameters(tape, cfg))

    def step(p):
        tape.at("forward")
        probs = softmax(logits(p, ids), name="P")
        tape.at("loss")
        loss = cross_entropy(probs, targets, name="loss")
        tape.at("backward")
        grads = tape.backward(loss, p)
        tape.at("update")
        return optimizer.step(p, grads)

    p = training.train(tape, cfg, p, step, [optimizer], ("loss",))
    if cfg.generate:  # after training: text from the prompt, greedily and at each temperature
        prompt = cfg.prompt_ids(tok, inputs, cfg.context)
        runs = generate(tape, lambda seq, prefix: logits(p, seq, prefix), prompt, cfg.context, cfg.generate,
                        cfg.temperatures(), np.random.default_rng([cfg.seed, 1]))
        tape.meta["generated"] = [(label, tok.detokenize(ids).replace("\n", f" {BOUNDARY} "))
                                  for label, ids in runs]
    return tape
