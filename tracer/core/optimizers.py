"""The parameter update as recorded ops: plain SGD, or Adam with its whole state in the workbook.

    SGD    θ ← θ − lr · g
    Adam   t ← t + 1
           m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
           m̂ = m / (1 − β1^t)             v̂ = v / (1 − β2^t)
           Δ = lr · m̂ / (√v̂ + ε)          θ ← θ − Δ

Adam's state starts at m = v = 0 and t = 0 (constants on the inputs sheet); β1, β2 and ε are
named cells on the overview, like lr, so changing one in the spreadsheet recomputes everything.
State tensors are named after their parameter: m[W1], v[W1], m_hat[W1], v_hat[W1], step[W1].
"""

from __future__ import annotations

import numpy as np

from tracer.core.linalg import SUB
from tracer.core.op import Elementwise

SGD = Elementwise("sgd", lambda p, lr, g: p - lr * g, "{0}-{1}*{2}")  # θ − lr · ∂L/∂θ
# Adam: moments, bias correction, step; the counter t is a cell of its own
INCREMENT = Elementwise("increment", lambda t: t + 1, "{0}+1")
INCREMENT.integer = True  # a step counter
ADAM_M = Elementwise("adam_m", lambda m, b, g: b * m + (1 - b) * g, "{1}*{0}+(1-{1})*{2}")
# g*g and IFERROR(β^t, 0): a square or a power below the smallest double is 0 in numpy, Excel and
# IronCalc, but #NUM! in LibreOffice when written with ^ (β1^t after about 7,000 warm-up steps);
# a product underflows to 0 everywhere, and IFERROR turns only that power's error into its value 0
ADAM_V = Elementwise("adam_v", lambda v, b, g: b * v + (1 - b) * g * g, "{1}*{0}+(1-{1})*{2}*{2}")
BIAS_CORRECT = Elementwise("bias_correct", lambda m, b, t: m / (1 - b**t), "{0}/(1-IFERROR({1}^{2},0))")
ADAM_STEP = Elementwise(
    "adam_step", lambda lr, m, v, e: lr * m / (np.sqrt(v) + e), "{0}*{1}/(SQRT({2})+{3})"
)

OPS = {op.name: op for op in (SGD, INCREMENT, ADAM_M, ADAM_V, BIAS_CORRECT, ADAM_STEP)}


class Sgd:
    """θ ← θ − lr · g; no state."""

    def __init__(self, tape, lr):
        self.lr = lr
        self.initial: dict = {}  # the state's constants on the inputs sheet (none)
        self.state: dict = {}  # the state now, by tensor name

    def step(self, params: dict, grads: dict) -> dict:
        return {k: params[k].tape.apply(SGD, params[k], self.lr, grads[k], name=k) for k in params}


class Adam:
    """Adam's update; its state (t, m[θ], v[θ] by name) starts as constants on the inputs sheet
    (`initial`) and each step records the new state (`state` holds the latest)."""

    def __init__(self, tape, lr, hypers: dict, params: dict, label: str = ""):
        self.tape, self.lr, self.h = tape, lr, hypers
        self.t_name = "t" + (f"_{label}" if label else "")
        names = [self.t_name] + [f"m[{k}]" for k in params] + [f"v[{k}]" for k in params]
        shapes = [(1, 1)] + [p.shape for p in params.values()] * 2
        self.initial = {n: tape.constant(n, np.zeros(s), phase="input", role="state", **({"integer": True} if n == self.t_name else {}))
                        for n, s in zip(names, shapes)}
        self.state = dict(self.initial)

    def step(self, params: dict, grads: dict) -> dict:
        tape, h, s = self.tape, self.h, self.state
        t = s[self.t_name] = tape.apply(INCREMENT, s[self.t_name], name=self.t_name)
        new = {}
        for k, p in params.items():
            g = grads[k]
            m = s[f"m[{k}]"] = tape.apply(ADAM_M, s[f"m[{k}]"], h["beta1"], g, name=f"m[{k}]")
            v = s[f"v[{k}]"] = tape.apply(ADAM_V, s[f"v[{k}]"], h["beta2"], g, name=f"v[{k}]")
            m_hat = tape.apply(BIAS_CORRECT, m, h["beta1"], t, name=f"m_hat[{k}]")
            v_hat = tape.apply(BIAS_CORRECT, v, h["beta2"], t, name=f"v_hat[{k}]")
            step = tape.apply(ADAM_STEP, self.lr, m_hat, v_hat, h["adam_eps"], name=f"step[{k}]")
            new[k] = tape.apply(SUB, p, step, name=k)
        return new


def hyperparameters(tape, cfg) -> dict:
    """Adam's named cells (recorded once, shared by every optimizer of the run); none for SGD."""
    if cfg.optimizer != "adam":
        return {}
    return {name: tape.constant(name, [[getattr(cfg, name)]], phase="input", role="hyper",
                                defined_name=cell)
            for name, cell in (("beta1", "beta_1"), ("beta2", "beta_2"), ("adam_eps", "adam_eps"))}


def make(tape, cfg, lr, params: dict, hypers: dict, label: str = ""):
    """The optimizer the config asks for, acting on `params` with the learning-rate tensor `lr`."""
    return Adam(tape, lr, hypers, params, label) if cfg.optimizer == "adam" else Sgd(tape, lr)
