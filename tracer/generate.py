"""Text generation after training, recorded: greedy decoding and sampling at several temperatures.

Every generated token is a cell whose formula recomputes it from the model's logits: greedy takes
the largest logit (MATCH of the MAX), sampling divides the logits by the temperature τ (a named
cell on the overview), takes the softmax and its running sum (the cumulative distribution), and
counts how many cumulative values a recorded uniform draw u has passed (the inverse CDF).  Change
τ in the spreadsheet and the probabilities, the tokens and the texts after them recompute.

The ops (numpy forward, cell formula; generation happens after training, so no gradient: each
backward raises ValueError).  A token id is a float holding an integer; every value is 2-D.

    take_rows(start, n)  x (m, c) → (n, c): rows start … start+n−1         cell: a reference
    append_row           seq (m, 1), token (1, 1) → (m+1, 1)               cell: a reference
    divide               a (T, V), b (1, 1) → (T, V): a / b                cell: a/b
    cumsum               p (T, V) → (T, V): out[i, j] = p[i, 0] + … + p[i, j]
                                                             cell: SUM(row i from column 0 to j)
    argmax               z (T, V) → (T, 1): the first column of row i's largest value, 0-based
                                                             cell: MATCH(MAX(row),row,0)-1
    sample               cum (T, V), u (T, 1) → (T, 1): #{j < V−1 : cum[i, j] ≤ u_i}
                                                             cell: SUMPRODUCT((row's first V−1 cells<=u)*1)
    stack_rows           k ≥ 1 inputs (1, V) → (k, V): input r is row r     cell: a reference

Generation uses T = 1 (the last row of the logits).  Only SUM, MAX, MATCH and SUMPRODUCT appear.

`generate` records the whole run on the tape (see its docstring for names and sections).
"""

from __future__ import annotations

import numpy as np

from tracer.lm_ops import softmax
from tracer.ops import COPY, Elementwise, Op


def _refuse(name):
    return ValueError(f"{name}: no gradient: generation happens after training")


class _AfterTraining(Op):
    """An op used only with the trained parameters: never differentiated."""

    def backward(self, out, g, wanted):
        raise _refuse(self.name)


class TakeRows(_AfterTraining):
    """x (m, c) → (n, c), the rows start … start+n−1.  One instance per (start, n), all named
    "take_rows" (see take_rows_op)."""

    name = "take_rows"

    def __init__(self, start, n):
        self.start, self.n = start, n

    def forward(self, x, **attrs):
        if self.start < 0 or self.n < 1 or self.start + self.n > x.shape[0]:
            raise ValueError(f"take_rows: rows {self.start} … {self.start + self.n - 1} "
                             f"of a tensor of {x.shape[0]} rows")
        return x[self.start:self.start + self.n].copy()

    def formula(self, c, i, j):
        return c.at(0, self.start + i, j)


_TAKES: dict = {}  # (start, n) -> its op: one instance per configuration


def take_rows_op(start: int, n: int) -> TakeRows:
    """The op taking rows start … start+n−1 (one instance per pair)."""
    key = (int(start), int(n))
    if key not in _TAKES:
        _TAKES[key] = TakeRows(*key)
    return _TAKES[key]


class AppendRow(_AfterTraining):
    """seq (m, 1), token (1, 1) → (m+1, 1): the text with the new token at the end."""

    name = "append_row"

    def forward(self, seq, tok, **attrs):
        if seq.shape[1] != 1 or tok.shape != (1, 1):
            raise ValueError(f"append_row: needs a (m, 1) column and a (1, 1) token, got {seq.shape}, {tok.shape}")
        return np.vstack([seq, tok])

    def formula(self, c, i, j):
        return c.at(0, i, 0) if i < c.shape(0)[0] else c.at(1, 0, 0)


def _divide_grad(out, g, wanted, *inputs):
    raise _refuse("divide")


# z / τ: Elementwise broadcasts a (1, 1) divisor (the named cell τ) like MUL does a factor
DIVIDE = Elementwise("divide", lambda a, b: a / b, "{0}/{1}", grad=_divide_grad)


class Cumsum(_AfterTraining):
    """p (T, V) → (T, V), the running sum along each row (the cumulative distribution)."""

    name = "cumsum"

    def forward(self, p, **attrs):
        return np.cumsum(p, axis=1)

    def formula(self, c, i, j):
        # one range from the row's first cell to cell j: contiguous whether or not it is turned
        return f"SUM({c.span(0, i, 0, i, j)})"


class Argmax(_AfterTraining):
    """z (T, V) → (T, 1): the 0-based column of each row's largest value, the first on ties
    (numpy's argmax and MATCH's exact match both take the first)."""

    name = "argmax"

    def forward(self, z, **attrs):
        return np.argmax(z, axis=1).reshape(-1, 1).astype(np.float64)

    def formula(self, c, i, j):
        row = c.row(0, i)[0]
        return f"MATCH(MAX({row}),{row},0)-1"


class Sample(_AfterTraining):
    """cum (T, V), u (T, 1) → (T, 1): inverse-CDF sampling, the number of j < V−1 with
    cum[i, j] ≤ u_i.  For a cumulative distribution (nondecreasing rows) this is the first token
    whose cumulative probability exceeds u, i.e. min(#{j : cum[j] ≤ u}, V−1): the last cell is
    never compared, so a last cumulative value rounded below 1 (or below u) still gives V−1, and
    the formula needs no MIN.  A token of probability 0 is never drawn."""

    name = "sample"

    def forward(self, cum, u, **attrs):
        if u.shape != (cum.shape[0], 1):
            raise ValueError(f"sample: one draw per row: u must be ({cum.shape[0]}, 1), got {u.shape}")
        return np.count_nonzero(cum[:, :-1] <= u, axis=1).reshape(-1, 1).astype(np.float64)

    def formula(self, c, i, j):
        V = c.shape(0)[1]
        if V == 1:
            return "0"
        return f"SUMPRODUCT(({c.span(0, i, 0, i, V - 2)}<={c.at(1, i, 0)})*1)"


class StackRows(_AfterTraining):
    """k ≥ 1 inputs (1, V) → (k, V): input r is row r (next-token probabilities by temperature)."""

    name = "stack_rows"

    def forward(self, *xs, **attrs):
        if not xs or any(x.shape != (1, xs[0].shape[1]) for x in xs):
            raise ValueError(f"stack_rows: needs one or more (1, V) rows, got {[x.shape for x in xs]}")
        return np.vstack(xs)

    def formula(self, c, i, j):
        return c.at(i, 0, j)


APPEND_ROW, CUMSUM, ARGMAX, SAMPLE, STACK_ROWS = AppendRow(), Cumsum(), Argmax(), Sample(), StackRows()

GENERATE_OPS = {op.name: op for op in (take_rows_op(0, 1), APPEND_ROW, DIVIDE, CUMSUM, ARGMAX, SAMPLE, STACK_ROWS)}
"""One op per name (the template's [ops.<name>] entries); take_rows by a representative."""


def generate_op_instances() -> list:
    """Every op instance: the single ones and each take_rows made so far."""
    return [op for op in GENERATE_OPS.values() if not isinstance(op, TakeRows)] + list(_TAKES.values())


# --- what a model calls ------------------------------------------------------------------------

def _rec(op, *xs, name=None):
    return xs[0].tape.apply(op, *xs, name=name)


def take_rows(x, start, n, name=None):
    """Rows start … start+n−1 of x."""
    return _rec(take_rows_op(start, n), x, name=name)


def append_row(seq, tok, name=None):
    return _rec(APPEND_ROW, seq, tok, name=name)


def divide(a, b, name=None):
    return _rec(DIVIDE, a, b, name=name)


def cumsum(p, name=None):
    return _rec(CUMSUM, p, name=name)


def argmax(z, name=None):
    return _rec(ARGMAX, z, name=name)


def sample(cum, u, name=None):
    return _rec(SAMPLE, cum, u, name=name)


def stack_rows(xs, name=None):
    return _rec(STACK_ROWS, *xs, name=name)


# --- the run -----------------------------------------------------------------------------------

def _last_z(logits, ids, name):
    """The logits of the last position: the next token's."""
    if logits.shape[0] != ids.shape[0]:
        raise ValueError(f"generate: logits_of returned {logits.shape[0]} rows of logits for {ids.shape[0]} ids")
    return take_rows(logits, ids.shape[0] - 1, 1, name=name)


def _sampled(z, tau, rng, p):
    """One sampled token from the logits z at temperature tau: (token, P); p the name prefix."""
    P = softmax(divide(z, tau, name=p + "z/τ"), name=p + "P")
    cum = cumsum(P, name=p + "cum")
    u = z.tape.constant(p + "u", [[rng.uniform()]], role="draw")
    return sample(cum, u, name=p + "token"), P


def generate(tape, logits_of, prompt_ids, context, steps, temperatures, rng) -> list[tuple[str, list[int]]]:
    """Record, on the tape's current iteration and in the phase "after", greedy decoding and one
    sampled continuation per temperature, each `steps` tokens long.

    logits_of(ids (m, 1), prefix) -> logits (m, V): the trained model's forward for m ≤ context
    tokens, naming what it records prefix + name.  rng: a numpy Generator for the draws.

    Recorded (names exactly; k = 1, 2, … numbers the temperatures, n the generated token):
      section "generate_prompt" (step 1, shared: every chain starts from the prompt):
        "prompt" (P, 1) ids (role data); "tau<k>" (1, 1) = τ_k, phase input, role hyper, the
        named cell "tau_<k>" on the overview; the model's "[prompt] …"; "[prompt] z" (1, V) the
        last row; "[greedy 1] token" = argmax; per temperature "[τk 1] z/τ", "[τk 1] P" (softmax),
        "[τk 1] cum", "[τk 1] u" (a draw, role draw), "[τk 1] token" = sample; "P by temperature"
        (K, V) when there are temperatures; then "[greedy 1] text" and "[τk 1] text" (P+1, 1).
      section "generate_greedy:<n>" (n ≥ 2): "[greedy n] window" (context, 1), only when the
        text is longer than the context: its last `context` ids; the model's "[greedy n] …";
        "[greedy n] z", "[greedy n] token", "[greedy n] text" (P+n, 1).
      section "generate_sample:<n>:<τ:g>" (n ≥ 2), chain after chain: the same with "[τk n]"
        and z/τ, P, cum, u, token between z and text.
      section "generate_result": "generated (greedy)" and "generated (τk)", copies of each
        chain's final text (P+steps, 1).
    Draw order: the first step's u for every temperature, then each chain's steps 2 … steps.

    Returns [("greedy", ids), (f"{τ:g}", ids), …]: each chain's prompt + generated ids.
    The tape's phase and section are restored afterwards.
    """
    prompt_ids = [int(i) for i in prompt_ids]
    temperatures = [float(t) for t in temperatures]
    if not prompt_ids:
        raise ValueError("generate: the prompt is empty: give at least one token")
    if len(prompt_ids) > context:
        raise ValueError(f"generate: the prompt has {len(prompt_ids)} tokens, more than the context of {context}")
    if steps < 1:
        raise ValueError(f"generate: steps must be at least 1, got {steps}")
    for tau in temperatures:
        if not tau > 0:
            raise ValueError(f"generate: every temperature must be greater than 0, got {tau:g}")

    saved = tape.phase, tape.section
    tape.at("after", "generate_prompt")
    prompt = tape.constant("prompt", np.array(prompt_ids, dtype=np.float64).reshape(-1, 1), role="data",
                           decode=True)  # decode: the workbook shows each id's token beside it
    taus = [tape.constant(f"tau{k}", [[tau]], phase="input", role="hyper", defined_name=f"tau_{k}")
            for k, tau in enumerate(temperatures, start=1)]

    # step 1, shared: one forward pass over the prompt feeds every chain
    z = _last_z(logits_of(prompt, "[prompt] "), prompt, "[prompt] z")
    first = [argmax(z, name="[greedy 1] token")]
    probs = []
    for k, tau in enumerate(taus, start=1):
        token, P = _sampled(z, tau, rng, f"[τ{k} 1] ")
        first.append(token)
        probs.append(P)
    if probs:
        stack_rows(probs, name="P by temperature")
    labels = ["greedy"] + [f"τ{k}" for k in range(1, len(taus) + 1)]
    texts = [append_row(prompt, token, name=f"[{label} 1] text") for label, token in zip(labels, first)]

    # steps 2 …: each chain runs the model on its own text (its last `context` ids once longer)
    for c, (label, text) in enumerate(zip(labels, texts)):
        for n in range(2, steps + 1):
            p = f"[{label} {n}] "
            tape.at("after", f"generate_greedy:{n}" if c == 0 else f"generate_sample:{n}:{temperatures[c - 1]:g}")
            rows = text.shape[0]
            ids = text if rows <= context else take_rows(text, rows - context, context, name=p + "window")
            z = _last_z(logits_of(ids, p), ids, p + "z")
            token = argmax(z, name=p + "token") if c == 0 else _sampled(z, taus[c - 1], rng, p)[0]
            text = append_row(text, token, name=p + "text")
        texts[c] = text

    tape.at("after", "generate_result")
    finals = [tape.apply(COPY, text, name=f"generated ({label})", decode=True) for label, text in zip(labels, texts)]
    tape.at(*saved)
    names = ["greedy"] + [f"{tau:g}" for tau in temperatures]
    return [(name, [int(v) for v in t.value[:, 0]]) for name, t in zip(names, finals)]
