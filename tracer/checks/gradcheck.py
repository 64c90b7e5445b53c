"""Central finite differences of each loss against the traced gradients.

The loss is recomputed by replaying the recorded ops of the backward pass's region (the forward
and loss tensors the gradient flowed through) with one parameter element nudged by ±h, so the
check compares the ops' forward code with their gradient rules.  Everything outside the region
(data, draws, held tensors such as a GAN's fake image in the discriminator step, the other
player's parameters) keeps its recorded value, exactly as the backward pass treated it.  The
replay runs in extended precision (numpy's longdouble): in float64, rounding in a loss of ~500
limits the differences to ~1e-8 absolute, too coarse for gradients of ~1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 1e-6
FLOOR = 1e-3  # errors are relative to max(largest |gradient| of the tensor, FLOOR)
PRECISION = np.longdouble


def _replay(steps, values: dict[int, np.ndarray]):
    """Recompute `steps` (tensors in topological order) from `values`, which it extends."""
    for t in steps:
        values[id(t)] = t.op.forward(*(values[id(u)] for u in t.inputs), **t.attrs)
    return values[id(steps[-1])][0, 0] if steps else None


def _downstream(p, region) -> list:
    """The region's tensors that depend on p, in order."""
    hit, out = {id(p)}, []
    for t in region:
        if any(id(u) in hit for u in t.inputs):
            hit.add(id(t))
            out.append(t)
    return out


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
    loss: str = "L"
    held: list = field(default_factory=list)  # (name, gradient recorded into it?, |directional derivative|)
    checks: list[Check] = field(default_factory=list)

    @property
    def max_rel(self) -> float:
        return max((c.rel for c in self.checks), default=0.0)

    @property
    def leaks(self) -> list[str]:
        """Held tensors a gradient was recorded into: the stop of gradient failed."""
        return [name for name, leaked, _ in self.held if leaked]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and self.max_rel <= THRESHOLD and not self.leaks

    def lines(self) -> list[str]:
        out = [f"iteration {self.iteration}, loss {self.loss}: central differences vs traced gradients"]
        for name, leaked, slope in self.held:
            out.append(f"  {name} held constant: the loss depends on it (directional derivative {slope:.2e}) "
                       + ("but a gradient WAS recorded into it: the stop FAILED" if leaked
                          else "yet no gradient was recorded into it: the stop holds"))
        for c in self.checks:
            out.append(f"  d{self.loss}/d{c.name:<10} {c.checked:>6}/{c.size:<6} elements  "
                       f"max abs err {c.max_abs:.2e}  rel err {c.rel:.2e}")
        verdict = "OK" if self.ok else f"FAILED (threshold {THRESHOLD:g})"
        out.append(f"largest relative error: {self.max_rel:.2e}  {verdict}")
        return out


def runs_of(tape, iteration: int) -> list:
    return [run for run in tape.backward_runs if run.loss.iteration == iteration]


def gradcheck(tape, iteration: int = 1, sample: int | None = None, h: float = 1e-6, seed: int = 0) -> list[Report]:
    """One report per backward pass of the iteration (a GAN has two: D's loss and G's loss).
    Every parameter element is checked, or `sample` seeded elements per tensor.  The relative
    error of a tensor is its largest absolute error over its largest gradient, or over FLOOR
    when all its gradients are smaller: the differences themselves are only good to ~1e-10, so
    a tensor of gradients ~1e-6 would otherwise fail on that noise alone."""
    return [_check_run(tape, run, sample, h, seed) for run in runs_of(tape, iteration)]


def _check_run(tape, run, sample, h, seed) -> Report:
    rng = np.random.default_rng(seed)
    prefix = run.prefix
    grad_names = {t.name for t in tape.tensors if t.iteration == run.loss.iteration}
    report = Report(run.loss.iteration, prefix)
    inside = {id(t) for t in run.region}
    base: dict[int, np.ndarray] = {}
    for t in run.region:
        for u in t.inputs:
            if id(u) not in inside:
                base[id(u)] = u.value.astype(PRECISION)
    _replay(run.region, base)
    for held in run.held:  # the loss does depend on a held tensor: its stop is a real one
        direction = rng.standard_normal(held.shape).astype(PRECISION)
        direction /= np.sqrt(np.sum(direction * direction))
        steps, value = _downstream(held, run.region), base[id(held)]
        up = _replay(steps, {**base, id(held): value + h * direction})
        down = _replay(steps, {**base, id(held): value - h * direction})
        report.held.append((held.name, f"d{prefix}/d{held.name}" in grad_names, abs(float((up - down) / (2 * h)))))
    for name, p in run.params.items():
        traced = run.grads[name].value
        steps = _downstream(p, run.region)
        flat = np.arange(p.value.size)
        if sample is not None and sample < flat.size:
            flat = np.sort(rng.choice(flat, size=sample, replace=False))
        numeric = np.empty(flat.size)
        nudged = p.value.astype(PRECISION)
        for n, k in enumerate(flat):
            idx = np.unravel_index(k, p.value.shape)
            old = nudged[idx]
            nudged[idx] = old + h
            up = _replay(steps, {**base, id(p): nudged})
            nudged[idx] = old - h
            down = _replay(steps, {**base, id(p): nudged})
            nudged[idx] = old
            numeric[n] = float((up - down) / (2 * h))
        err = np.abs(numeric - traced.ravel()[flat])
        scale = max(float(np.abs(traced).max()), FLOOR)
        report.checks.append(Check(name, flat.size, p.value.size, float(err.max()), float(err.max()) / scale))
    return report
