"""One tape: a flat record per tensor, forward, loss, backward and update alike.

A model runs its forward code on tensors; every op appends a record (name, iteration, phase,
value, op, inputs).  `Tape.backward` walks the records of the current iteration in reverse and
asks each op for its gradient rule, which itself records ops, so gradients (and, later, the
parameter updates) are tensors with formulas like any other.

A tape can also run unrecorded (`recording = False`): the same ops compute the same values, but
nothing is kept beyond the current step's tensors (`scratch`), so a model's own code can train
for thousands of steps before the steps that are traced (tracer.models.training: --warmup).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracer.core.op import ONE, SUM_N

PHASES = ("input", "forward", "loss", "backward", "update", "after")  # after: with the trained parameters


@dataclass(eq=False, slots=True)
class Tensor:
    """One recorded tensor.  `value` is always a 2-D float64 array (a scalar is 1×1)."""

    tape: "Tape" = field(repr=False)
    name: str
    iteration: int
    phase: str
    value: np.ndarray = field(repr=False)
    op: object = None  # an Op (tracer.core.op); None for constants (inputs, draws, parameters)
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)
    section: str = ""  # the workbook section (a step of the training loop); the phase by default

    @property
    def shape(self) -> tuple[int, int]:
        return self.value.shape

    @property
    def key(self) -> str:
        """Unique, deterministic id: iteration and name."""
        return f"{self.iteration}:{self.name}"


@dataclass(eq=False)
class BackwardRun:
    """One call of Tape.backward, for gradcheck: the loss, the parameters, their gradients, the
    tensors held constant, and the region the gradient flowed through (forward/loss tensors of
    the iteration, in topological order) which a replay recomputes."""

    loss: Tensor
    params: dict
    grads: dict
    held: tuple
    region: list
    prefix: str = "L"  # the gradients are named d<prefix>/d<tensor>


class Tape:
    """The ordered list of every tensor of a run."""

    def __init__(self):
        self.tensors: list[Tensor] = []
        self.iteration = 0
        self.phase = "input"
        self.section = None  # None: each tensor's section is its phase
        self._keys: set[str] = set()
        self._auto = 0
        self.meta: dict = {}
        self.backward_runs: list[BackwardRun] = []  # for gradcheck
        self.recording = True  # False: tensors go to `scratch` only (a warm-up step), nothing is kept
        self.showing = True  # False: a model may skip what only a picture needs (a warm-up step not shown)
        self.scratch: list[Tensor] = []

    def _record(self, name, value, op=None, inputs=(), phase=None, **attrs) -> Tensor:
        value = np.asarray(value, dtype=np.float64)
        if value.ndim != 2:
            value = value.reshape(1, -1) if value.ndim < 2 else value
        phase = phase or self.phase
        if not self.recording:  # no names to keep unique: the tensor lives for one step
            t = Tensor(self, name or "t", self.iteration, phase, value, op, tuple(inputs), attrs, self.section or phase)
            self.scratch.append(t)
            return t
        if name is None:
            self._auto += 1
            name = f"t{self._auto}"
        t = Tensor(self, name, self.iteration, phase, value, op, tuple(inputs), attrs,
                   self.section or phase)
        if t.key in self._keys:
            raise ValueError(f"duplicate tensor name {name!r} in iteration {self.iteration}")
        self._keys.add(t.key)
        self.tensors.append(t)
        return t

    def constant(self, name, value, phase=None, **attrs) -> Tensor:
        """An input cell: data, an initial parameter, a recorded random draw or a hyperparameter."""
        return self._record(name, value, phase=phase, **attrs)

    def apply(self, op, *inputs: Tensor, name=None, **attrs) -> Tensor:
        """Run `op` forward on the inputs' values and record the result.  An op in steps
        (tracer.core.op.Composite) first records each step, as `<name>_<suffix>`."""
        if getattr(op, "steps", ()) and len(inputs) == op.n_in:
            made = list(inputs)
            for suffix, step, *ks in op.steps:
                made.append(self.apply(step, *(made[k] for k in ks), name=name and f"{name}_{suffix}"))
            inputs = tuple(made)
        value = op.forward(*[t.value for t in inputs], **attrs)
        return self._record(name, value, op, inputs, **attrs)

    def at(self, phase: str, section: str | None = None) -> None:
        """Tensors recorded from now on belong to `phase` and to the workbook section `section`
        (by default the phase itself)."""
        self.phase, self.section = phase, section

    def rename(self, t: Tensor, name: str) -> None:
        if not self.recording:
            t.name = name
            return
        self._keys.discard(t.key)
        t.name = name
        if t.key in self._keys:
            raise ValueError(f"duplicate tensor name {name!r} in iteration {t.iteration}")
        self._keys.add(t.key)

    def backward(self, loss: Tensor, params: dict[str, Tensor], held=(), prefix: str = "L") -> dict[str, Tensor]:
        """Record d<prefix>/d<name> for every tensor between `params` and `loss`; return the
        params' gradients (named d<prefix>/d<param name>).

        The gradient flows through the forward and loss tensors of the current iteration only:
        it stops at the parameters, at the tensors in `held` (treated as constants, e.g. the fake
        image in a GAN's discriminator step) and at anything an optimizer made (an updated
        parameter of another player is a constant here).  Where a tensor feeds several ops,
        each op's contribution is recorded as `d<prefix>/d<name> via <consumer>` and their
        recorded sum is `d<prefix>/d<name>`; where its only readers are slices that tile it (X read
        row by row as x_1 … x_T), their gradients joined are its gradient ([∂L/∂x_1; …; ∂L/∂x_T]).
        """
        leaves = {id(p) for p in params.values()}
        stop = leaves | {id(h) for h in held}
        order, seen = [], set()

        def inside(t):
            return t.op is not None and t.iteration == loss.iteration and t.phase not in ("backward", "update", "after")

        # depth-first post-order = topological order; a stack, not recursion, so that no option
        # (e.g. skip-gram's --negative, a chain of K additions) can exceed Python's recursion limit
        stack = [(loss, False)]
        while stack:
            t, expanded = stack.pop()
            if expanded:
                order.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.append((t, True))
            if id(t) not in stop and inside(t):
                stack.extend((u, False) for u in reversed(t.inputs) if id(u) not in seen)
        needs = set(leaves)
        for t in order:
            if id(t) not in stop and inside(t) and any(id(u) in needs for u in t.inputs):
                needs.add(id(t))

        contributions: dict[int, list[tuple[Tensor, str]]] = {}
        tiled, pieces = _tiled(order, needs, leaves), {}  # id(u) -> [(start, gradient, slice)]
        grads: dict[int, Tensor] = {}
        seed = self.apply(ONE, loss, name=f"d{prefix}/d{loss.name}")
        grads[id(loss)] = seed
        for t in reversed(order):
            if id(t) not in needs:
                continue
            if id(t) in tiled:
                ordered = sorted(pieces[id(t)], key=lambda piece: piece[0])
                grads[id(t)] = ordered[0][2].join([g for _, g, _ in ordered], name=f"d{prefix}/d{t.name}")
            elif id(t) != id(loss):
                if id(t) not in contributions:  # a step of a Composite: its op's rule went around it
                    continue
                grads[id(t)] = self._total(t, contributions[id(t)], prefix)
            if id(t) in leaves:
                continue
            if id(t.inputs[0]) in tiled:  # a piece of a tiled tensor: its gradient waits to be joined
                pieces.setdefault(id(t.inputs[0]), []).append((t.op.piece()[1], grads[id(t)], t.op))
                continue
            wanted = [id(u) in needs for u in t.inputs]
            for u, g_u, w in zip(t.inputs, t.op.backward(t, grads[id(t)], wanted), wanted):
                if w and g_u is not None:
                    contributions.setdefault(id(u), []).append((g_u, t.name))
        result = {name: grads[id(p)] for name, p in params.items() if id(p) in grads}
        if self.recording:
            region = [t for t in order if inside(t) and id(t) not in stop]
            self.backward_runs.append(BackwardRun(loss, dict(params), result, tuple(held), region, prefix))
        return result

    def _total(self, t: Tensor, parts: list[tuple[Tensor, str]], prefix: str) -> Tensor:
        target = f"d{prefix}/d{t.name}"
        if len(parts) == 1:
            self.rename(parts[0][0], target)
            return parts[0][0]
        consumers = [c for _, c in parts]
        for n, (g, consumer) in enumerate(parts):
            if consumers.count(consumer) > 1:  # one op using the tensor twice, e.g. p ⊙ p
                consumer = f"{consumer} #{consumers[:n + 1].count(consumer)}"
            self.rename(g, f"{target} via {consumer}")
        return self.apply(SUM_N, *(g for g, _ in parts), name=target)


def _tiled(order, needs, leaves) -> set[int]:
    """The tensors of a backward pass read only by slices that tile them: each reader a piece of
    it along one axis, the pieces side by side covering it once (X read as x_1 … x_T)."""
    readers: dict[int, list] = {}
    for t in order:
        if id(t) in needs and id(t) not in leaves:
            for u in t.inputs:
                readers.setdefault(id(u), []).append(t)
    tiled = set()
    for u in order:
        ts = readers.get(id(u), [])
        if len(ts) < 2 or id(u) not in needs or any(len(t.inputs) != 1 or t.op.piece() is None for t in ts):
            continue
        spans = sorted(t.op.piece() for t in ts)
        axis, end = spans[0][0], 0
        for along, start, width in spans:
            if along != axis or start != end:
                break
            end += width
        else:
            if end == u.shape[axis]:
                tiled.add(id(u))
    return tiled
