"""Central finite differences of the loss against the traced gradients.

The loss is recomputed by replaying the recorded forward ops with one parameter element nudged
by ±h, so the check compares the ops' forward code with their gradient rules.  The replay runs
in extended precision (numpy's longdouble): in float64, rounding in a loss of ~500 limits the
differences to ~1e-8 absolute, too coarse for gradients of ~1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 1e-6
FLOOR = 1e-3  # errors are relative to max(largest |gradient| of the tensor, FLOOR)
PRECISION = np.longdouble


def replay(loss, overrides: dict[int, np.ndarray], cache: dict[int, np.ndarray]):
    """The loss recomputed from the recorded graph with some tensors' values replaced.
    `cache` holds values already known (it is filled with every value computed)."""

    def value(t):
        if id(t) in overrides:
            return overrides[id(t)]
        if id(t) not in cache:
            cache[id(t)] = (t.value.astype(PRECISION) if t.op is None
                            else t.op.forward(*(value(u) for u in t.inputs), **t.attrs))
        return cache[id(t)]

    return value(loss)[0, 0]  # kept in extended precision: the caller subtracts two of these


def _not_depending_on(p, loss, values: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The values of the tensors that do not depend on p (they stay fixed while p is nudged)."""
    depends: dict[int, bool] = {}

    def dep(t):
        if id(t) not in depends:
            depends[id(t)] = any([dep(u) for u in t.inputs]) or t is p  # visit every input
        return depends[id(t)]

    dep(loss)
    return {k: v for k, v in values.items() if not depends[k]}


@dataclass
class Check:
    name: str
    checked: int
    size: int
    max_abs: float
    rel: float  # largest |numeric − traced| / max(largest |traced| of the tensor, FLOOR)


@dataclass
class Report:
    iteration: int
    checks: list[Check] = field(default_factory=list)

    @property
    def max_rel(self) -> float:
        return max((c.rel for c in self.checks), default=0.0)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and self.max_rel <= THRESHOLD

    def lines(self) -> list[str]:
        out = [f"iteration {self.iteration}: central differences vs traced gradients"]
        for c in self.checks:
            out.append(f"  dL/d{c.name:<10} {c.checked:>6}/{c.size:<6} elements  "
                       f"max abs err {c.max_abs:.2e}  rel err {c.rel:.2e}")
        verdict = "OK" if self.ok else f"FAILED (threshold {THRESHOLD:g})"
        out.append(f"largest relative error: {self.max_rel:.2e}  {verdict}")
        return out


def gradcheck(tape, iteration: int = 1, sample: int | None = None, h: float = 1e-6, seed: int = 0) -> Report:
    """Check every parameter element (or `sample` seeded elements per tensor) of one iteration.
    The relative error of a tensor is its largest absolute error over its largest gradient, or
    over FLOOR when all its gradients are smaller: the differences themselves are only good to
    ~1e-10, so a tensor of gradients ~1e-6 would otherwise fail on that noise alone."""
    loss, params, grads = tape.backward_runs[iteration - 1]
    rng = np.random.default_rng(seed)
    report = Report(iteration)
    values: dict[int, np.ndarray] = {}
    replay(loss, {}, values)
    for name, p in params.items():
        fixed = _not_depending_on(p, loss, values)
        traced = grads[name].value
        flat = np.arange(p.value.size)
        if sample is not None and sample < flat.size:
            flat = np.sort(rng.choice(flat, size=sample, replace=False))
        numeric = np.empty(flat.size)
        nudged = p.value.astype(PRECISION)
        for n, k in enumerate(flat):
            idx = np.unravel_index(k, p.value.shape)
            old = nudged[idx]
            nudged[idx] = old + h
            up = replay(loss, {id(p): nudged}, dict(fixed))
            nudged[idx] = old - h
            down = replay(loss, {id(p): nudged}, dict(fixed))
            nudged[idx] = old
            numeric[n] = float((up - down) / (2 * h))
        err = np.abs(numeric - traced.ravel()[flat])
        scale = max(float(np.abs(traced).max()), FLOOR)
        report.checks.append(Check(name, flat.size, p.value.size, float(err.max()), float(err.max()) / scale))
    return report
