"""The training loop every model shares: --warmup N steps run first, unrecorded, then the
--iterations K steps that the workbook traces.

A model writes one training step, `step(params) -> params` (its draws, forward pass, loss, backward
pass and update, recorded on the tape's current iteration), and calls `train`.  Warm-up steps run
that very code on the same tape with recording off (tracer.core.tape): the same ops compute the
same numbers, only nothing is kept.  After each warm-up step the parameters and the optimizers'
state (Adam's t, m, v) are cut loose from the step's graph; after the last one their values
become the values of the constants on the inputs sheet, so the traced iterations N+1 … N+K
continue exactly where the warm-up stopped.  The random draws come from the model's generator
in order, so N warm-up steps and K traced ones draw what N + K traced steps would.

What the warm-up leaves in `tape.meta["warmup"]`: its number of steps, the value of each charted
tensor at every step (`series`: the overview charts them before the traced iterations) and, at
about six evenly spaced steps, copies of the tensors pictured (`snapshots`).

A step diverged when its loss or new parameters are not finite, or when a loss it watches (the
model's WATCH, else its losses) grew above GROWTH times the absolute value of its first one: a
warm-up stops there (Diverged, at once); the traced iterations are checked after the run
(tracer.models.trace, with `overshoot`).
"""

from __future__ import annotations

import numpy as np

SNAPSHOTS = 6  # pictures kept from a warm-up, at evenly spaced steps from the first to the last
GROWTH = 10  # a loss above 10 × |its first value| has diverged, as one that is not finite has


class Diverged(Exception):
    """A warm-up step diverged: `what` happened ("loss is not finite", "loss grew from …") in
    warm-up step `step`."""

    def __init__(self, what: str, step: int):
        super().__init__(f"{what} in warm-up step {step}")
        self.what, self.step = what, step


def watched(tape) -> tuple:
    """The losses a divergence shows in: the model's WATCH, else its losses (an mlp file names its own)."""
    from tracer.models import MODELS  # (each model imports this module)

    model = MODELS.get(tape.meta.get("model"))
    return (getattr(model, "WATCH", None) or tape.meta.get("losses") or model.LOSSES) if model else ()


def overshoot(name: str, first: float, value: float) -> str | None:
    """'loss grew from 1.39 to 14 (more than 10× its first value)', or None when it did not."""
    if first and value > GROWTH * abs(first):
        return f"{name} grew from {first:.3g} to {value:.3g} (more than {GROWTH}× its first value)"
    return None


def snapshot_steps(n: int) -> list[int]:
    """About SNAPSHOTS steps from 1 to n, evenly spaced (every step when n is smaller)."""
    return sorted({round(1 + (n - 1) * i / (SNAPSHOTS - 1)) for i in range(SNAPSHOTS)}) if n > 1 else list(range(1, n + 1))


def train(tape, cfg, params: dict, step, optimizers=(), chart=(), pictures=()) -> dict:
    """Run `cfg.warmup` unrecorded steps, then `cfg.iterations` traced ones (iterations N+1 … N+K);
    returns the parameters after the last step.

    params: {name: tensor}, the initial parameters (constants of iteration 0); step(params) ->
    params: one training step; optimizers: those the step uses (their state is carried through
    the warm-up); chart: names of the tensors the overview charts (each step's value is kept);
    pictures: names of the tensors the pictures sheet shows (kept at the snapshot steps)."""
    n = getattr(cfg, "warmup", 0)
    if n:
        params = _warm_up(tape, n, params, step, optimizers, chart, pictures)
    for k in range(n + 1, n + cfg.iterations + 1):
        tape.iteration = k
        params = step(params)
    return params


def _warm_up(tape, n, params, step, optimizers, chart, pictures) -> dict:
    initial, starts = dict(params), [dict(opt.state) for opt in optimizers]
    series = {name: [] for name in chart}
    watch = [name for name in watched(tape) if name in series]
    shown, snapshots = set(snapshot_steps(n)), []
    wanted = set(chart) | set(pictures)
    tape.recording = False
    try:
        for k in range(1, n + 1):
            tape.iteration, tape.showing, tape.scratch = k, k in shown, []
            params = step(params)
            seen = {t.name: t for t in tape.scratch if t.name in wanted}
            _check_finite(tape, k, params, [seen[name] for name in chart if name in seen])
            for name in chart:
                if name in seen:
                    series[name].append(seen[name].value.copy())
            for name in (name for name in watch if series[name]):
                grown = overshoot(name, float(series[name][0].mean()), float(series[name][-1].mean()))
                if grown:
                    raise Diverged(grown, k)
            if k in shown:
                snapshots.append((k, {name: seen[name].value.copy() for name in pictures if name in seen}))
            params = {name: _cut(t) for name, t in params.items()}
            for opt in optimizers:
                opt.state = {name: _cut(t) for name, t in opt.state.items()}
    finally:
        tape.recording, tape.showing, tape.scratch = True, True, []
    # the values reached become those of the inputs sheet's constants
    for name, t in params.items():
        if t is not initial[name]:  # (a frozen parameter stays what it was)
            _settle(initial[name], t)
    for opt, start in zip(optimizers, starts):
        for name, t in opt.state.items():
            _settle(start[name], t)
        opt.state = start
    tape.meta["warmup"] = {"steps": n, "series": series, "snapshots": snapshots}
    return initial


def _cut(t):
    """The tensor's value as a constant of its own: the next step no longer holds this step's graph."""
    return t if t.op is None else t.tape.constant(t.name, t.value, phase=t.phase)


def _settle(constant, t) -> None:
    constant.value = t.value
    constant.attrs["source"] = "warmup"


def _check_finite(tape, k, params, charted) -> None:
    """A step whose loss or new parameters are not finite diverged: name its first non-finite tensor."""
    total = sum(float(t.value.sum()) for t in [*charted, *params.values()])
    if np.isfinite(total):
        return
    first = next((t for t in tape.scratch if not np.all(np.isfinite(t.value))), None)
    raise Diverged(f"{first.name if first is not None else 'the loss'} is not finite", k)
