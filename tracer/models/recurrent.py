"""What the recurrent next-token models (rnn, lstm) share: the data, the unrolled forward pass,
the loss, backpropagation through time, the vanishing-gradient view and generation.

    ids (T×1), y (T×1)      the first --context tokens of the text and, as ids, the token after each
    X   = E[ids]            (T×d)   embedding lookup (no positions: the recurrence knows the order)
    x_t = row t of X        (1×d)   t = 1 … T
    state_t = cell(x_t, state_{t−1})        state_0 = 0 (constants h_0, and c_0 for the LSTM)
    H   = [h_1; …; h_T]     (T×H)   every step's hidden state, stacked
    Z   = H·W_hy + b_y,  P = softmax(Z)     (T×V)
    ℓ_t = −ln P[t, y_t],  L = mean ℓ        sparse cross-entropy: the targets are ids
    backward: the tape's backward pass through the unrolled steps is backpropagation through time:
      ∂L/∂h_t = (via H: from the output at t) + (via the next step: from h_{t+1} through W_hh …),
      ∂L/∂W_hh = Σ_t (via step t), …,  ∂L/∂X = [∂L/∂x_1; …; ∂L/∂x_T] (each step's 1×d row, stacked)
    vanishing: L_T = −ln softmax(h_T·W_hy + b_y)[y_T], the last step's loss alone, and a second
      backward pass from it down to h_1: ‖∂L_T/∂h_t‖ for t = 1 … T (how much of the last step's
      error reaches step t), charted on the Overview.
    θ ← θ − lr·∂L/∂θ (or Adam); after training, generation: the prompt read step by step, then
      the recurrence runs on, one new token at a time.

A model gives its `Cell`: the names of its state (("h",) or ("h", "c")), `init_params(rng, V,
cfg)` {name: array} (E, W_hy, b_y and its own) and `step(p, x, state, name) -> state`, which
records its tensors under name(base) (e.g. name("h") = "h_3").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tracer.core.activations import softmax
from tracer.core.embeddings import embed, token_ids
from tracer.core.linalg import concat_rows, linear, norms, row, rows_of
from tracer.core.losses import mean, nll
from tracer.core.size import Shapes
from tracer.models.base import GenerativeText, opt
from tracer.models.generation import Stateful
from tracer.models.next_token import fit, generate_after, sequence, text_tape
from tracer.models.next_token import size as sequence_size


@dataclass
class Recurrent(GenerativeText):
    """The options the recurrent models share (each adds its learning rate and its own)."""

    d_model: int = opt(8, "embedding size d", min=1)
    hidden: int = opt(8, "hidden units H", min=1)
    context: int = opt(8, "tokens in the training sequence (T): the steps the network is unrolled "
                          "and backpropagated through", min=2)


@dataclass(frozen=True)
class Cell:
    """One step of a recurrent network: its state's names, its parameters, its step."""

    state_names: tuple
    init_params: Callable
    step: Callable


def output_params(rng, V: int, H: int) -> dict[str, np.ndarray]:
    """The output layer: W_hy from N(0, 1/H), b_y = 0."""
    return {"W_hy": rng.normal(0.0, 1 / np.sqrt(H), (H, V)), "b_y": np.zeros((1, V))}


class Unrolled:
    """The network unrolled over a sequence, in training (names "x_3", "h_3", …, a section per
    step) and in generation (the same names after a prefix such as "[greedy 2] ")."""

    def __init__(self, cell, tape, hidden: int):
        self.cell, self.tape = cell, tape
        self.zero = tuple(tape.constant(f"{s}_0", np.zeros((1, hidden)), role="data") for s in cell.state_names)

    def run(self, p, ids, prefix=""):
        """Every state from state_0 on, reading the ids (m×1) one by one."""
        X = embed(p["E"], ids, name=prefix + "X")
        states = [self.zero]
        for t, x in enumerate(rows_of(X, [f"{prefix}x_{t}" for t in range(1, ids.shape[0] + 1)]), start=1):
            if not prefix:
                self.tape.at("forward", f"step:{t}")
            states.append(self.cell.step(p, x, states[-1], lambda base, t=t: f"{prefix}{base}_{t}"))
        return states

    def reader(self, p) -> Stateful:
        """The trained network for generation: it reads the prompt, then each new token from the
        state the text has reached."""
        def scores(state, prefix):
            return linear(state[0], p["W_hy"], p["b_y"], name=prefix + "z")

        def start(prompt, prefix):
            state = self.run(p, prompt, prefix)[-1]
            return scores(state, prefix), state

        def resume(text, token, state, prefix):
            t = text.shape[0]
            x = embed(p["E"], token, name=f"{prefix}x_{t}")
            state = self.cell.step(p, x, state, lambda base: f"{prefix}{base}_{t}")
            return scores(state, prefix), state

        return Stateful(start, resume)


def size(cfg, cell_params, forward_step, backward_step):
    """The run's size (tracer.core.size): cell_params the shapes of the cell's own parameters (each
    step records its part of their gradients: ∂L/∂W = Σ_t …); forward_step the shapes one step
    records besides x_t, backward_step those its backward passes record besides that part (the
    gradients, the parts of those read twice, L_T's own pass).  Each counted T times, never listed."""
    d, H = cfg.d_model, cfg.hidden
    own, step = Shapes(cell_params), Shapes([(1, d)] + forward_step)  # x_t and the cell's tensors

    def params(V):
        return own + [(V, d), (H, V), (1, V)]

    def stacked(m, V):  # X, H, Z, P's exponentials and sums, or their gradients (∂L/∂X …)
        return [(m, d), (m, H), (m, V), (m, V), (m, 1)]

    def forward(m, V):
        return step * m + stacked(m, V)

    def backward(m, V):
        return (own + backward_step) * m + stacked(m, V) + [(1, V)] * 6  # …; L_T's scores and probabilities

    # ∂L/∂W_hh, ∂L/∂b_h, …: a formula adds one part per step
    return dataclasses.replace(sequence_size(cfg, params, forward, lambda m, V: step + [(1, V)], backward),
                               terms=cfg.context)


def train(cfg, name: str, cell: Cell):
    tok, inputs, nexts = sequence(cfg)
    T = cfg.context
    rng = np.random.default_rng(cfg.seed)
    tape = text_tape(name, tok)
    ids = token_ids(tape, inputs, name="ids", decode=True)
    y = token_ids(tape, nexts, name="y", decode=True)
    net = Unrolled(cell, tape, cfg.hidden)
    init = cell.init_params(rng, len(tok.vocab), cfg)
    steps = []  # the states of the current iteration

    def loss_of(p):
        tape.at("forward", "embed")
        steps[:] = net.run(p, ids)
        tape.at("forward", "output")
        H = concat_rows([state[0] for state in steps[1:]], name="H")
        probs = softmax(linear(H, p["W_hy"], p["b_y"], name="Z"), name="P")
        tape.at("loss")
        return mean(nll(probs, y, name="nll"), name="loss")

    def vanishing(p, loss):
        """L_T alone, from h_T, and its gradient down to h_1: ‖∂L_T/∂h_t‖ for t = 1 … T."""
        tape.at("loss", "vanishing")
        h_T = steps[-1][0]
        probs = softmax(linear(h_T, p["W_hy"], p["b_y"], name="z_T"), name="P_T")
        last = nll(probs, row(y, T - 1, name="y_T"), name="L_T")
        tape.at("backward", "vanishing")
        tape.backward(last, {"h_1": steps[1][0]}, prefix="L_T")
        grads = {t.name: t for t in tape.tensors if t.iteration == tape.iteration and t.phase == "backward"}
        norms([grads[f"dL_T/dh_{t}"] for t in range(1, T + 1)], name="|dL_T/dh|")

    p = fit(tape, cfg, init, loss_of, vanishing)
    generate_after(tape, cfg, tok, inputs, net.reader(p))
    return tape
