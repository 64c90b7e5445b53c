"""Diffusion (DDPM, Ho, Jain and Abbeel 2020): the noise schedule as formulas of two named cells,
the noising of a batch at a step drawn for each example, the network's view of the clean digit,
and the reverse process that turns noise into a digit.

    to_signed        x (N, P) → 2x − 1                          pixels from [0, 1] to [−1, 1]
    linear_schedule  β_start, β_end (1, 1), t (T, 1) → β (T, 1)  β_t = β_start + (β_end − β_start)·(t − 1)/(T − 1)
    one_minus        a → 1 − a                                   α = 1 − β, and 1 − ᾱ
    running_product  α (T, 1) → ᾱ (T, 1)                         ᾱ_t = α_1·α_2·…·α_t (one product per cell)
    sqrt             a → √a                                      √ᾱ, √(1 − ᾱ)
    pick             a column (T, 1), steps (N, 1) → (N, 1)      each example's value at its step t: INDEX(column, t)
    noise_strip      √ᾱ (T, 1), x (N, P), √(1−ᾱ) (T, 1), ε (N, P) → (T, P)
                                                                 row t: the first example noised to step t
    denoise          x_t, √(1−ᾱ_t), ε̂, √ᾱ_t → x̂₀ = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t
    reverse_step(t)  x_t, ε̂, β, α, √(1−ᾱ) [, z] → x_{t−1} = (x_t − β_t/√(1−ᾱ_t)·ε̂) / √α_t + √β_t·z
                     (one instance per step t; z left out at t = 1, where DDPM adds no noise)

The noising itself, x_t = √ᾱ_t ⊙ x₀ + √(1 − ᾱ_t) ⊙ ε, is linalg's a ⊙ b + c ⊙ d.  None of these
ops is learned: the schedule and the data get no gradient, and the reverse process runs after
training, so none has a gradient rule.  Each formula applies SQRT to single cells only and
INDEX to one column (the formula rule).
"""

from __future__ import annotations

import numpy as np

from tracer.core.op import Elementwise, Family, Op, as_range, record

TO_SIGNED = Elementwise("to_signed", lambda a: 2 * a - 1, "2*{0}-1")
ONE_MINUS = Elementwise("one_minus", lambda a: 1 - a, "1-{0}")
SQRT = Elementwise("sqrt", np.sqrt, "SQRT({0})")
DENOISE = Elementwise("denoise", lambda x, b, e, a: (x - b * e) / a, "({0}-{1}*{2})/{3}")


class LinearSchedule(Op):
    """β (T, 1) from two named cells: β_t = β_start + (β_end − β_start)·(t − 1)/(T − 1), the steps
    t = 1 … T a column of their own (T ≥ 2).  Cell: beta_start+(beta_end-beta_start)*(t-1)/(T-1)."""

    name = "linear_schedule"

    def forward(self, start, end, t, **attrs):
        return start + (end - start) * (t - 1) / (t.shape[0] - 1)

    def formula(self, c, i, j):
        start, end = c.at(0, 0, 0), c.at(1, 0, 0)
        return f"{start}+({end}-{start})*({c.at(2, i, 0)}-1)/{c.shape(2)[0] - 1}"


class RunningProduct(Op):
    """ᾱ (T, 1): ᾱ_t = α_1·α_2·…·α_t, the product of the column down to row t.  Cell: the product
    written out, α_1*α_2*…*α_t (no function receives a range; the steps are at most a hundred)."""

    name = "running_product"

    def forward(self, a, **attrs):
        return np.cumprod(a, axis=0)

    def formula(self, c, i, j):
        return "*".join(c.at(0, k, j) for k in range(i + 1))


class Pick(Op):
    """Each example's value at its own step: column (T, 1), steps (N, 1) holding 1 … T → (N, 1),
    out_i = column[t_i].  Cell: INDEX(column, t_i) (INDEX counts from 1, as the steps do)."""

    name = "pick"

    def forward(self, column, t, **attrs):
        idx = t[:, 0].astype(np.int64)
        if np.any(idx != t[:, 0]) or np.any(idx < 1) or np.any(idx > column.shape[0]):
            raise ValueError(f"pick: steps must be whole numbers 1 … {column.shape[0]}")
        return column[idx - 1, :1]

    def formula(self, c, i, j):
        return f"INDEX({as_range(c.all(0))},{c.at(1, i, 0)})"


class NoiseStrip(Op):
    """The forward process of the first example at every step: √ᾱ (T, 1), x (N, P), √(1−ᾱ) (T, 1),
    ε (N, P) → (T, P), row t = √ᾱ_t·x[0] + √(1−ᾱ_t)·ε[0].  Cell: a*x+b*e of single cells."""

    by_cells = True

    name = "noise_strip"

    def forward(self, a, x, b, e, **attrs):
        return a * x[:1] + b * e[:1]

    def formula(self, c, i, j):
        return f"{c.at(0, i, 0)}*{c.at(1, 0, j)}+{c.at(2, i, 0)}*{c.at(3, 0, j)}"


class ReverseStep(Op):
    """One step of the reverse process at step t: x_t (S, P), ε̂ (S, P), β, α, √(1−ᾱ) (T, 1) and,
    for t > 1, the draw z (S, P) → x_{t−1} (S, P) = (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t + √β_t·z (σ_t² = β_t).
    One instance per (t, noise) (`reverse_step(t)`), all named "reverse_step"; the cell refers to
    row t of the schedule's columns."""

    by_cells = True

    name = "reverse_step"

    def __init__(self, t: int, noise: bool):
        self.t, self.noise = t, noise

    def params(self):
        return {"t": self.t}

    def forward(self, x, e, beta, alpha, s, z=None, **attrs):
        k = self.t - 1
        out = (x - beta[k, 0] / s[k, 0] * e) / np.sqrt(alpha[k, 0])
        return out + np.sqrt(beta[k, 0]) * z if self.noise else out

    def formula(self, c, i, j):
        k = self.t - 1
        beta, alpha, s = c.at(2, k, 0), c.at(3, k, 0), c.at(4, k, 0)
        f = f"({c.at(0, i, j)}-{beta}/{s}*{c.at(1, i, j)})/SQRT({alpha})"
        return f + f"+SQRT({beta})*{c.at(5, i, j)}" if self.noise else f


_STEPS = Family(ReverseStep)  # (t, noise) -> its op


def reverse_step_op(t: int, noise: bool) -> ReverseStep:
    """The reverse step at t (one instance per step and kind)."""
    return _STEPS(int(t), bool(noise))


LINEAR_SCHEDULE, RUNNING_PRODUCT, PICK, NOISE_STRIP = LinearSchedule(), RunningProduct(), Pick(), NoiseStrip()

OPS = {op.name: op for op in (TO_SIGNED, ONE_MINUS, SQRT, DENOISE, LINEAR_SCHEDULE, RUNNING_PRODUCT, PICK,
                              NOISE_STRIP, reverse_step_op(2, True))}  # reverse_step: a family, one representative


def instances() -> list:
    """Every op instance: the single ones and each reverse step made so far."""
    return [op for op in OPS.values() if not isinstance(op, ReverseStep)] + _STEPS.made()


# --- what a model calls -------------------------------------------------------------------------

def to_signed(x, name=None):
    return record(TO_SIGNED, x, name=name)


def one_minus(a, name=None):
    return record(ONE_MINUS, a, name=name)


def sqrt(a, name=None):
    return record(SQRT, a, name=name)


def linear_schedule(start, end, steps, name=None):
    """β (T, 1) from the named cells start and end over the column of steps 1 … T."""
    if steps.shape[0] < 2:
        raise ValueError("linear_schedule needs at least 2 steps")
    return record(LINEAR_SCHEDULE, start, end, steps, name=name)


def running_product(a, name=None):
    return record(RUNNING_PRODUCT, a, name=name)


def pick(column, steps, name=None):
    return record(PICK, column, steps, name=name)


def noise_strip(sqrt_abar, x, sqrt_one_minus_abar, eps, name=None):
    return record(NOISE_STRIP, sqrt_abar, x, sqrt_one_minus_abar, eps, name=name)


def denoise(x_t, b, eps_hat, a, name=None):
    """x̂₀ = (x_t − b·ε̂)/a, b = √(1−ᾱ_t) and a = √ᾱ_t of each example."""
    return record(DENOISE, x_t, b, eps_hat, a, name=name)


def reverse_step(t: int, x, eps_hat, beta, alpha, sqrt_one_minus_abar, z=None, name=None):
    """x_{t−1} from x_t; z None: no noise (the last step, t = 1)."""
    op = reverse_step_op(t, z is not None)
    inputs = (x, eps_hat, beta, alpha, sqrt_one_minus_abar) + ((z,) if z is not None else ())
    return record(op, *inputs, name=name)
