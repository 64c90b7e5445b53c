"""What the text models share: the training sequence, the training loop (forward, loss, backward,
update), and for the next-token models (attention, transformer, rnn, lstm) generation after
training.

`fit` is the loop every text model uses: it records the parameters, the learning rate and the
optimizer, and each iteration calls the model's `loss_of(p)` (its forward pass and loss, p mapping
parameter names to tensors), then records the backward pass and the update.

`train` is the attention layer's and the transformer's whole run: they give it a
`build(tape, V, pe, rng)` that records its own constants and returns its initial parameters
{name: array} and its `logits(p, ids, prefix="")`: token ids (m×1) → next-token scores (m×V).
Training calls it with prefix ""; each generation step with a prefix such as "[greedy 2] " that
names every tensor it records.
"""

from __future__ import annotations

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import softmax
from tracer.core.embeddings import positional_encoding, token_ids
from tracer.core.generation import take_rows
from tracer.core.losses import cross_entropy, one_hot
from tracer.core.size import BLOCK_ROWS, Shapes, Size, estimate, optimizer_state, sheet, summed, update
from tracer.core.tape import Tape
from tracer.data.text import BOUNDARY
from tracer.errors import TracerError
from tracer.models import training
from tracer.models.generation import generate


def sequence(cfg):
    """The tokenization of the text (cut to what the sequence needs) and (inputs, targets): the
    first --context tokens and the token after each."""
    lines, need = cfg.lines(), cfg.context + 1
    # the fewest whole sentences that make the sequence long enough: a small vocabulary (found by
    # bisection: more sentences never give fewer tokens); BPE learns its merges from the whole text
    # (in a few sentences hardly any pair repeats)
    low, high = (len(lines) if cfg.tokenizer == "bpe" else 1), len(lines)
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if len(cfg.tokenize(lines[:mid]).ids) >= need else (mid + 1, high)
    tok = cfg.tokenize(lines[:high])
    if len(tok.ids) < need:
        raise TracerError(f"the text gives {len(tok.ids)} tokens: --context {cfg.context} needs {need}")
    return tok, tok.ids[:cfg.context], tok.ids[1:need]


def positions(pe, ids, prefix):
    """The positional encoding of a sequence: PE itself in training, its first m rows in a
    generation step (the text so far may be shorter than --context)."""
    return take_rows(pe, 0, ids.shape[0], name=prefix + "PE") if prefix else pe


def size(cfg, params, forward, resume=None, backward=None) -> Size:
    """The run's size from its options (tracer.core.size): params(V) the shapes of the model's
    parameters, forward(m, V) the shapes it records from m token ids to their logits Z (m×V).
    backward(m, V): the shapes the backward pass records (by default about one and a half times
    the forward's: a gradient per tensor and the parts of those read twice), besides a gradient per
    parameter.  resume(m, V): what a generation step records on a text of m tokens (by default the
    model on the text again: forward; a recurrent model only reads the new token)."""
    tok, inputs, _ = sequence(cfg)
    V, T, d = len(tok.vocab), cfg.context, cfg.d_model
    ps = params(V)
    train = Shapes(forward(T, V)) + [(T, V), (1, 1)]  # … P, loss
    step = train + (backward(T, V) if backward else train * 1.5) + ps + update(cfg.optimizer, ps)
    first = [(T, 1), (T, V), (T, 1), (1, d), (T, d)] + ps + optimizer_state(cfg.optimizer, ps)  # ids, Y, pos, dim, PE
    after = (_generation(cfg, forward, resume or forward, V, len(cfg.prompt_ids(tok, inputs, T)))
             if cfg.generate else Size(0, 0))
    return estimate(first, step, cfg.iterations, after)


def _generation(cfg, forward, resume, V: int, start: int) -> Size:
    """What generation records: a chain per temperature and the greedy one, each step the model on
    the text so far (its last --context tokens when longer), a choice and the longer text."""
    T, d, steps, K = cfg.context, cfg.d_model, cfg.generate, len(cfg.temperatures())
    chains, pick = 1 + K, Shapes([(1, V), (1, V), (1, V), (1, 1), (1, 1)])  # z/τ, P, cum, u, token
    total = sheet(forward(start, V) + [(start, 1), (start, d), (1, V), (1, 1)] + [(K, V)] * (K > 0) + pick * K)

    def step(m, window=False):  # a step on a text of m tokens (a window of it when longer)
        return sheet(resume(m, V) + [(m, d), (1, V), (1, 1)] + [(T, 1)] * window)

    # steps 2 … of each chain, on texts of start + 1 … start + steps − 1 tokens
    last = start + steps - 1
    total += (summed(step, start + 1, min(T, last)) + step(T, True) * max(0, last - max(T, start))) * chains
    total += sheet(Shapes([(1, V), (1, V), (1, V), (1, 1)]) * (K * (steps - 1)))
    n = steps  # the texts: start + 1 … start + steps tokens per chain, and each chain's final one
    texts = n * start + n * (n + 1) // 2 + start + steps
    return total + Size(chains * texts, chains * (texts + BLOCK_ROWS * (n + 1)), chains * (n + 1))


def text_tape(name: str, tok) -> Tape:
    """A new tape for the text model `name` on the tokenized text `tok`."""
    tape = Tape()
    tape.meta = {"model": name, "tokenized": tok}
    return tape


def fit(tape, cfg, init: dict, loss_of, after_backward=None, after_update=None, chart=("loss",)) -> dict:
    """Train (tracer.models.training: --warmup steps unrecorded, then the traced iterations): the
    initial parameters `init` {name: array} become constants, then each step records loss_of(p)
    (the forward pass, in phase "forward", and the loss: loss_of switches to "loss" itself), the
    backward pass, after_backward(p, loss) if given (more tensors of the backward phase, for the
    traced iterations only), the update, and after_update(p) on the updated parameters if given
    (bert's evaluation loss; in warm-up steps too).  `chart`: the tensors the overview charts.
    Returns the trained parameters {name: tensor}."""
    p = {k: tape.constant(k, v, role="param") for k, v in init.items()}
    lr = tape.constant("lr", [[cfg.lr]], role="hyper", defined_name="lr")
    optimizer = optim.make(tape, cfg, lr, p, optim.hyperparameters(tape, cfg))

    def step(p):
        tape.at("forward")
        loss = loss_of(p)
        tape.at("backward")
        grads = tape.backward(loss, p)
        if after_backward and tape.recording:
            after_backward(p, loss)
        tape.at("update")
        p = optimizer.step(p, grads)
        if after_update:
            after_update(p)
        return p

    return training.train(tape, cfg, p, step, [optimizer], chart)


def generate_after(tape, cfg, tok, inputs, logits_of) -> None:
    """After training (with --generate), text from the prompt, greedily and at each temperature;
    logits_of as tracer.models.generation.generate takes it.  The texts go to tape.meta."""
    if not cfg.generate:
        return
    prompt = cfg.prompt_ids(tok, inputs, cfg.context)
    runs = generate(tape, logits_of, prompt, cfg.context, cfg.generate, cfg.temperatures(),
                    np.random.default_rng([cfg.seed, 1]))
    tape.meta["generated"] = [(label, tok.detokenize(ids).replace("\n", f" {BOUNDARY} ")) for label, ids in runs]


def train(cfg, name: str, build) -> Tape:
    tok, inputs, nexts = sequence(cfg)
    V = len(tok.vocab)
    rng = np.random.default_rng(cfg.seed)
    tape = text_tape(name, tok)
    ids = token_ids(tape, inputs, name="ids", decode=True)
    targets = one_hot(tape, nexts, V, name="Y")
    pe = positional_encoding(tape, cfg.context, cfg.d_model)
    init, logits = build(tape, V, pe, rng)

    def loss_of(p):
        probs = softmax(logits(p, ids), name="P")
        tape.at("loss")
        return cross_entropy(probs, targets, name="loss")

    p = fit(tape, cfg, init, loss_of)
    generate_after(tape, cfg, tok, inputs, lambda seq, prefix: logits(p, seq, prefix))
    return tape
