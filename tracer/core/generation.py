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
    top_ids, top_values  p (1, V) → (k, 1): the k most likely tokens, their probabilities
                                          cell: MATCH(LARGE(p,n+1),p,0)-1, LARGE(p,n+1)
    fill_masks           ids (m, 1), best (m, 1), [MASK]'s id → (m, 1)  cell: IF(id=mask,best,id)

Generation uses T = 1 (the last row of the logits).  Only SUM, MAX, MATCH, LARGE, IF and SUMPRODUCT appear.

The generation loop itself, which runs a trained model step after step, is
tracer.models.generation.
"""

from __future__ import annotations

import numpy as np

from tracer.core.linalg import Slice
from tracer.core.op import Elementwise, Family, Op, as_range, record


def _refuse(name):
    return ValueError(f"{name}: no gradient: generation happens after training")


class _AfterTraining(Op):
    """An op used only with the trained parameters: never differentiated."""

    def backward(self, out, g, wanted):
        raise _refuse(self.name)


class TakeRows(_AfterTraining, Slice):
    """x (m, c) → (n, c), the rows start … start+n−1: linalg's slice of rows, without a gradient.
    One instance per (start, n), all named "take_rows" (see take_rows_op)."""

    def __init__(self, start, n):
        super().__init__(0, start, n)
        self.name = "take_rows"

    def params(self):
        return {"start": self.start, "n": self.width}


_TAKES = Family(TakeRows)  # (start, n) -> its op


def take_rows_op(start: int, n: int) -> TakeRows:
    """The op taking rows start … start+n−1 (one instance per pair)."""
    return _TAKES(int(start), int(n))


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


def _refusing(name):
    """The gradient rule of an elementwise op used only after training: it refuses."""
    def grad(out, g, wanted, *inputs):
        raise _refuse(name)

    return grad


# z / τ: Elementwise broadcasts a (1, 1) divisor (the named cell τ) like MUL does a factor
DIVIDE = Elementwise("divide", lambda a, b: a / b, "{0}/{1}", grad=_refusing("divide"))


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
        row = as_range(c.row(0, i)[0])
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


class Top(_AfterTraining):
    """The k largest cells of a row, largest first: p (1, V) → (k, 1) (the attribute k), their
    token ids (`ids`: MATCH(LARGE(p, n+1), p, 0) − 1, 0-based) or their values (LARGE(p, n+1)).
    Ties: MATCH finds the first column of a value, numpy's stable sort the same one first."""

    def __init__(self, name, ids):
        self.name, self.ids = name, ids

    def forward(self, p, k=3, **attrs):
        if p.shape[0] != 1 or not 1 <= int(k) <= p.shape[1]:
            raise ValueError(f"{self.name}: needs one row of at least k = {k} values, got {p.shape}")
        order = np.argsort(-p[0], kind="stable")[:int(k)]
        return (order if self.ids else p[0, order]).astype(np.float64).reshape(-1, 1)

    def formula(self, c, i, j):
        row = c.row(0, 0)[0]
        return f"MATCH(LARGE({row},{i + 1}),{row},0)-1" if self.ids else f"LARGE({row},{i + 1})"


TOP_IDS, TOP_VALUES = Top("top_ids", True), Top("top_values", False)
TOP_IDS.integer = TOP_IDS.token_ids = True
# a masked text filled in: the model's choice where the id is [MASK]'s, the id itself elsewhere
FILL_MASKS = Elementwise("fill_masks", lambda ids, best, k: np.where(ids == k, best, ids), "IF({0}={2},{1},{0})",
                         grad=_refusing("fill_masks"))
FILL_MASKS.integer = FILL_MASKS.token_ids = True

APPEND_ROW, CUMSUM, ARGMAX, SAMPLE, STACK_ROWS = AppendRow(), Cumsum(), Argmax(), Sample(), StackRows()

OPS = {op.name: op for op in (take_rows_op(0, 1), APPEND_ROW, DIVIDE, CUMSUM, ARGMAX, SAMPLE, STACK_ROWS,
                              TOP_IDS, TOP_VALUES, FILL_MASKS)}
"""One op per name (the template's [ops.<name>] entries); take_rows by a representative."""


def instances() -> list:
    """Every op instance: the single ones and each take_rows made so far."""
    return [op for op in OPS.values() if not isinstance(op, TakeRows)] + _TAKES.made()


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


def top_ids(p, k, name=None):
    """The ids of the k largest cells of the row p (k, 1), largest first (shown with their tokens)."""
    return record(TOP_IDS, p, name=name, k=k, decode=True)


def top_values(p, k, name=None):
    """The k largest cells of the row p (k, 1), largest first."""
    return record(TOP_VALUES, p, name=name, k=k)


def fill_masks(ids, best, mask_id, name=None):
    """ids (m, 1) with each [MASK] (id mask_id, (1, 1)) replaced by the same row of best (m, 1)."""
    return record(FILL_MASKS, ids, best, mask_id, name=name, decode=True)
