"""What every op is made of: its numpy forward, its gradient rule and the formula of each output cell.

All values are 2-D (a row vector is 1×n, a scalar 1×1).  A gradient rule receives the output
tensor `out`, its gradient `g` and which inputs want a gradient; it returns one tensor per input
(None where not wanted), made by applying ops, so gradients are recorded tensors with formulas.

A formula is written against `c`, the cells of the op's inputs as seen from the output's sheet
(see tracer.render.layout.Cells): `c.at(k, i, j)` is input k's cell (broadcast like numpy),
`c.row(k, i)` / `c.col(k, j)` a row / column as (range, runs down the sheet, length), `c.all(k)`
the whole block, `c.span(k, i0, j0, i1, j1)` a rectangle, `c.shape(k)` its shape.

An op whose formula would apply a function to every cell of a range (a softmax's exponentials,
the logarithms of a loss) is a `Composite`: each such step gets its own block of per-element
cells, then the op aggregates them.  No function other than an aggregate (SUM, SUMPRODUCT,
MMULT, MAX, AVERAGE, COUNT, LARGE, MATCH, INDEX, SUMIF) ever receives a range, so every
spreadsheet computes the same (docs/workbook.md: the formula rule; tests/test_portable.py checks it).

The ops themselves live by kind: linalg, activations, losses, normalization, embeddings,
attention, generation, resampling, optimizers.  This module also holds the three plumbing ops the
tape itself uses: ONE (the seed dL/dL), COPY and SUM_N (the sum of a tensor's gradient parts).
"""

from __future__ import annotations

import numpy as np


class Op:
    name = "op"
    integer = False  # every output cell is a whole number: an id, a count
    references = False  # every output cell is a reference to an input cell (or 0): whole numbers stay whole
    token_ids = False  # every output cell is a token id (of the run's vocabulary)
    # its formula reads its inputs only cell by cell, by `dot` and in SUM: an input may be shown in bands
    by_cells = False

    def forward(self, *xs, **attrs):
        raise NotImplementedError

    def backward(self, out, g, wanted):
        raise NotImplementedError(f"op {self.name!r} has no gradient rule")

    def formula(self, c, i, j) -> str:
        raise NotImplementedError

    def piece(self):
        """(axis, start, width) for an op whose output is a piece of its one input (a slice), else
        None: a tensor read only by pieces that tile it gets its gradient by joining theirs
        (`join`, tracer.core.tape), as a student writes [∂L/∂x_1; …; ∂L/∂x_T]."""
        return None

    def params(self) -> dict:
        """What an op of a family (a slice of columns, a block of rows) fixes, for its equation and
        words: e.g. {"start": 2} for the rows taken from the third on."""
        return {}


class Family:
    """Ops of one kind made on demand, one instance per configuration (a slice's columns, a
    pooling's factor, a reverse step's t): family(*key) gives the same instance for the same key,
    `made()` lists every one made so far (their texts share one [ops.<name>] entry)."""

    def __init__(self, make):
        self.make, self._made = make, {}

    def __call__(self, *key):
        if key not in self._made:
            self._made[key] = self.make(*key)
        return self._made[key]

    def made(self) -> list:
        return list(self._made.values())


def holds_token_ids(t, memo: dict) -> bool:
    """Whether every cell of t is a token id: ids given as such (attribute decode), ids an op
    picks (argmax, sample, nearest), and references to token ids (a text, a window, a copy)."""
    if id(t) not in memo:
        memo[id(t)] = bool(t.attrs.get("decode")) or (t.op is not None and (
            t.op.token_ids or (t.op.references and all(holds_token_ids(u, memo) for u in t.inputs))))
    return memo[id(t)]


def record(op, *xs, name=None, **attrs):
    """Apply op to the tensors xs on their tape and record the result."""
    return xs[0].tape.apply(op, *xs, name=name, **attrs)


def only(wanted, *makers):
    """One gradient per input: makers[k]() where wanted[k], else None (makers are thunks)."""
    return tuple(make() if w else None for w, make in zip(wanted, makers))


def no_grad(op_name, what):
    """A gradient maker for an input that gets none (data, targets, token ids): it refuses."""
    def fail():
        raise ValueError(f"{op_name}: no gradient with respect to {what}")

    return fail


class Elementwise(Op):
    """out[i, j] = f(inputs[i, j] ...), numpy broadcasting; `excel` is a "{0}+{1}" template or a
    function of the list of input cell references."""

    by_cells = True

    def __init__(self, name, fn, excel, grad=None):
        self.name, self.fn, self.excel, self.grad = name, fn, excel, grad

    def forward(self, *xs, **attrs):
        return self.fn(*xs)

    def backward(self, out, g, wanted):
        if self.grad is None:
            return super().backward(out, g, wanted)
        return self.grad(out, g, wanted, *out.inputs)

    def formula(self, c, i, j):
        refs = [c.at(k, i, j) for k in range(c.n)]
        return self.excel(refs) if callable(self.excel) else self.excel.format(*refs)


class Reduce(Op):
    """A scalar from whole blocks: `excel` is a template over the inputs' ranges, `grad` the rule
    grad(out, g, wanted, *inputs)."""

    def __init__(self, name, fn, excel, grad):
        self.name, self.fn, self.excel, self.grad = name, fn, excel, grad

    def forward(self, *xs, **attrs):
        return np.array([[self.fn(*xs)]])

    def formula(self, c, i, j):
        return self.excel.format(*(c.all(k) for k in range(c.n)))

    def backward(self, out, g, wanted):
        return self.grad(out, g, wanted, *out.inputs)


class Composite(Op):
    """An op computed in steps a learner can follow, each step a tensor of its own (its own block of
    cells): `steps` are (suffix, op, k, …), the step named `<name>_<suffix>` being op applied to
    the values numbered k (0 … n_in − 1 the op's inputs, then the steps made so far).

    Tape.apply records the steps, then the op on its inputs followed by its steps;
    `finish(*inputs, *steps)` is its value (forward(*inputs) alone makes the steps itself) and
    its formula reads the step cells.  `grad(out, g, wanted, *inputs)` is the gradient rule of
    the whole op with respect to its own inputs: the steps get none (the tape passes them by),
    so the backward pass is the op's textbook rule, e.g. softmax's y ⊙ (g − Σ g ⊙ y)."""

    n_in = 1
    steps: tuple = ()
    grad = None

    def with_steps(self, xs) -> list:
        values = list(xs)
        for _, op, *ks in self.steps:
            values.append(op.forward(*(values[k] for k in ks)))
        return values

    def forward(self, *xs, **attrs):
        return self.finish(*(self.with_steps(xs) if len(xs) == self.n_in else xs))

    def finish(self, *xs):
        raise NotImplementedError

    def backward(self, out, g, wanted):
        n = self.n_in
        return tuple(self.grad(out, g, wanted[:n], *out.inputs[:n])) + (None,) * len(self.steps)


def total(rng: str, n: int = 1) -> str:
    """The sum of a range, divided by n (a mean) when n > 1; a single cell is itself."""
    s = f"SUM({rng})" if ":" in rng else rng
    return s if n == 1 else f"{s}/{n}"


def as_range(ref: str) -> str:
    """A reference as a range even when it is one cell (B5 → B5:B5): SUMIF, INDEX, MATCH and LARGE
    take a range, and IronCalc gives #VALUE! (or #N/A) for a single-cell reference there."""
    return ref if ":" in ref else f"{ref}:{ref.rsplit('!', 1)[-1]}"


def dot(a, b) -> str:
    """Σ a_k b_k of two equally long ranges (c.row / c.col results): SUMPRODUCT when both run the
    same way, MMULT of a row by a column when they cross (SUMPRODUCT needs equal shapes), a
    product for one cell.  A line shown in bands (tracer.render.layout.Line: `cuts`, `part`) is
    taken band by band: a sum of such terms."""
    cuts_a, cuts_b = getattr(a, "cuts", ()), getattr(b, "cuts", ())
    if cuts_a or cuts_b:  # (most lines lie in one band: no set to build, per cell, for them)
        ends = [0, *sorted({*cuts_a, *cuts_b}), a[2]]
        return "+".join(dot(a.part(s, e), b.part(s, e)) for s, e in zip(ends, ends[1:]))
    (ra, va, na), (rb, vb, _) = a, b
    if na == 1:
        return f"{ra}*{rb}"
    if va == vb:
        return f"SUMPRODUCT({ra},{rb})"
    return f"MMULT({rb},{ra})" if va else f"MMULT({ra},{rb})"


def same_way(c, a, b, op_name):
    """Inputs a and b enter SUMPRODUCT as whole blocks: they must be laid out the same way."""
    turned = c.row(a, 0)[1], c.row(b, 0)[1]
    if c.shape(a) != c.shape(b) or (turned[0] != turned[1] and c.shape(a) != (1, 1)):
        raise ValueError(f"{op_name}: its two {c.shape(a)} and {c.shape(b)} inputs must have the "
                         "same shape and be laid out the same way")


# --- the tape's own ops: the seed of a backward pass, a copy, the sum of gradient parts ----------

ONE = Elementwise("one", lambda a: np.ones_like(a), "1")  # dL/dL = 1
COPY = Elementwise("copy", lambda a: a.copy(), "{0}")
COPY.references = True
SUM_N = Elementwise("sum", lambda *xs: sum(xs), lambda refs: "+".join(refs))

OPS = {op.name: op for op in (ONE, COPY, SUM_N)}
