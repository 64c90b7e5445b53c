"""The ops of text generation after training: greedy decoding and sampling at several temperatures.

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

The generation loop itself, which runs a trained model step after step, is
tracer.models.generation.
"""

from __future__ import annotations

import numpy as np

from tracer.core.op import Elementwise, Op, record


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
    references = True

    def __init__(self, start, n):
        self.start, self.n = start, n

    def params(self):
        return {"start": self.start, "n": self.n}

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
    references = True

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
    integer = True
    token_ids = True

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
    integer = True
    token_ids = True

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
    references = True

    def forward(self, *xs, **attrs):
        if not xs or any(x.shape != (1, xs[0].shape[1]) for x in xs):
            raise ValueError(f"stack_rows: needs one or more (1, V) rows, got {[x.shape for x in xs]}")
        return np.vstack(xs)

    def formula(self, c, i, j):
        return c.at(i, 0, j)


APPEND_ROW, CUMSUM, ARGMAX, SAMPLE, STACK_ROWS = AppendRow(), Cumsum(), Argmax(), Sample(), StackRows()

OPS = {op.name: op for op in (take_rows_op(0, 1), APPEND_ROW, DIVIDE, CUMSUM, ARGMAX, SAMPLE, STACK_ROWS)}
"""One op per name (the template's [ops.<name>] entries); take_rows by a representative."""


def instances() -> list:
    """Every op instance: the single ones and each take_rows made so far."""
    return [op for op in OPS.values() if not isinstance(op, TakeRows)] + list(_TAKES.values())


# --- what a model calls ------------------------------------------------------------------------

def take_rows(x, start, n, name=None):
    """Rows start … start+n−1 of x."""
    return record(take_rows_op(start, n), x, name=name)


def append_row(seq, tok, name=None):
    return record(APPEND_ROW, seq, tok, name=name)


def divide(a, b, name=None):
    return record(DIVIDE, a, b, name=name)


def cumsum(p, name=None):
    return record(CUMSUM, p, name=name)


def argmax(z, name=None):
    return record(ARGMAX, z, name=name)


def sample(cum, u, name=None):
    return record(SAMPLE, cum, u, name=name)


def stack_rows(xs, name=None):
    return record(STACK_ROWS, *xs, name=name)
