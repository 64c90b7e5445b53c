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
ADAM_V = Elementwise("adam_v", lambda v, b, g: b * v + (1 - b) * g * g, "{1}*{0}+(1-{1})*{2}^2")
BIAS_CORRECT = Elementwise("bias_correct", lambda m, b, t: m / (1 - b**t), "{0}/(1-{1}^{2})")
ADAM_STEP = Elementwise(
    "adam_step", lambda lr, m, v, e: lr * m / (np.sqrt(v) + e), "{0}*{1}/(SQRT({2})+{3})"
)

OPS = {op.name: op for op in (SGD, INCREMENT, ADAM_M, ADAM_V, BIAS_CORRECT, ADAM_STEP)}


class Sgd:
    def __init__(self, tape, lr):
        self.lr = lr

    def step(self, params: dict, grads: dict) -> dict:
        return {k: params[k].tape.apply(SGD, params[k], self.lr, grads[k], name=k) for k in params}


class Adam:
    def __init__(self, tape, lr, hypers: dict, params: dict, label: str = ""):
        self.tape, self.lr, self.h = tape, lr, hypers
        self.t_name = "t" + (f"_{label}" if label else "")
        self.t = tape.constant(self.t_name, [[0.0]], phase="input", role="state", integer=True)
        self.m = {k: tape.constant(f"m[{k}]", np.zeros(p.shape), phase="input", role="state") for k, p in params.items()}
        self.v = {k: tape.constant(f"v[{k}]", np.zeros(p.shape), phase="input", role="state") for k, p in params.items()}

    def step(self, params: dict, grads: dict) -> dict:
        tape, h = self.tape, self.h
        self.t = tape.apply(INCREMENT, self.t, name=self.t_name)
        new = {}
        for k, p in params.items():
            g = grads[k]
            self.m[k] = tape.apply(ADAM_M, self.m[k], h["beta1"], g, name=f"m[{k}]")
            self.v[k] = tape.apply(ADAM_V, self.v[k], h["beta2"], g, name=f"v[{k}]")
            m_hat = tape.apply(BIAS_CORRECT, self.m[k], h["beta1"], self.t, name=f"m_hat[{k}]")
            v_hat = tape.apply(BIAS_CORRECT, self.v[k], h["beta2"], self.t, name=f"v_hat[{k}]")
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
