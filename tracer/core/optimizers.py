"""The parameter update as recorded ops: plain SGD, or Adam with its whole state in the workbook.

    SGD    θ ← θ − lr · g
    Adam   t ← t + 1
           m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
           m̂ = m / (1 − β1^t)             v̂ = v / (1 − β2^t)
           Δ = lr · m̂ / (√v̂ + ε)          θ ← θ − Δ

PyTorch's options (tracer.frontends.pytorch): SGD's momentum b ← μ·b + g, θ ← θ − lr·b (the
buffer b[θ] starts at 0, so its first value is g, as in torch.optim.SGD); weight decay
g ← g + λ·θ before either (L2); AdamW's decoupled decay θ ← θ·(1 − lr·λ) before Adam's step.

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

MOMENTUM = Elementwise("momentum", lambda b, mu, g: mu * b + g, "{1}*{0}+{2}")  # b ← μ·b + g
WEIGHT_DECAY = Elementwise("weight_decay", lambda g, wd, p: g + wd * p, "{0}+{1}*{2}")  # g + λ·θ
DECOUPLED_DECAY = Elementwise("decoupled_decay", lambda p, lr, wd: p * (1 - lr * wd), "{0}*(1-{1}*{2})")

OPS = {op.name: op for op in (SGD, INCREMENT, ADAM_M, ADAM_V, BIAS_CORRECT, ADAM_STEP, MOMENTUM, WEIGHT_DECAY,
                              DECOUPLED_DECAY)}


def _decayed(tape, grads: dict, params: dict, wd) -> dict:
    """g + λ·θ for every parameter (L2 weight decay), named g[θ]; the gradients as they are when wd is None."""
    if wd is None:
        return grads
    return {k: tape.apply(WEIGHT_DECAY, grads[k], wd, params[k], name=f"g[{k}]") for k in params}


class Sgd:
    """θ ← θ − lr · g; no state.  With `momentum` (a (1, 1) tensor μ): b[θ] ← μ·b[θ] + g, starting
    at 0, and θ ← θ − lr · b[θ].  With `weight_decay` λ: g + λ·θ in place of g."""

    def __init__(self, tape, lr, params: dict | None = None, momentum=None, weight_decay=None):
        self.tape, self.lr, self.momentum, self.wd = tape, lr, momentum, weight_decay
        self.initial: dict = {}  # the state's constants on the inputs sheet (momentum buffers)
        if momentum is not None:
            self.initial = {f"b[{k}]": tape.constant(f"b[{k}]", np.zeros(p.shape), phase="input", role="state")
                            for k, p in params.items()}
        self.state: dict = dict(self.initial)  # the state now, by tensor name

    def step(self, params: dict, grads: dict) -> dict:
        grads = _decayed(self.tape, grads, params, self.wd)
        if self.momentum is not None:
            for k in params:
                b = f"b[{k}]"
                grads[k] = self.state[b] = self.tape.apply(MOMENTUM, self.state[b], self.momentum, grads[k], name=b)
        return {k: params[k].tape.apply(SGD, params[k], self.lr, grads[k], name=k) for k in params}


class Adam:
    """Adam's update; its state (t, m[θ], v[θ] by name) starts as constants on the inputs sheet
    (`initial`) and each step records the new state (`state` holds the latest)."""

    def __init__(self, tape, lr, hypers: dict, params: dict, label: str = "", weight_decay=None,
                 decoupled: bool = False):
        """weight_decay λ (a (1, 1) tensor): g + λ·θ (Adam's L2), or with `decoupled` (AdamW)
        θ·(1 − lr·λ) before the step."""
        self.tape, self.lr, self.h = tape, lr, hypers
        self.wd, self.decoupled = weight_decay, decoupled
        self.t_name = "t" + (f"_{label}" if label else "")
        names = [self.t_name] + [f"m[{k}]" for k in params] + [f"v[{k}]" for k in params]
        shapes = [(1, 1)] + [p.shape for p in params.values()] * 2
        self.initial = {n: tape.constant(n, np.zeros(s), phase="input", role="state", **({"integer": True} if n == self.t_name else {}))
                        for n, s in zip(names, shapes)}
        self.state = dict(self.initial)

    def step(self, params: dict, grads: dict) -> dict:
        tape, h, s = self.tape, self.h, self.state
        t = s[self.t_name] = tape.apply(INCREMENT, s[self.t_name], name=self.t_name)
        if not self.decoupled:
            grads = _decayed(tape, grads, params, self.wd)
        new = {}
        for k, p in params.items():
            g = grads[k]
            m = s[f"m[{k}]"] = tape.apply(ADAM_M, s[f"m[{k}]"], h["beta1"], g, name=f"m[{k}]")
            v = s[f"v[{k}]"] = tape.apply(ADAM_V, s[f"v[{k}]"], h["beta2"], g, name=f"v[{k}]")
            m_hat = tape.apply(BIAS_CORRECT, m, h["beta1"], t, name=f"m_hat[{k}]")
            v_hat = tape.apply(BIAS_CORRECT, v, h["beta2"], t, name=f"v_hat[{k}]")
            step = tape.apply(ADAM_STEP, self.lr, m_hat, v_hat, h["adam_eps"], name=f"step[{k}]")
            if self.decoupled and self.wd is not None:
                p = tape.apply(DECOUPLED_DECAY, p, self.lr, self.wd, name=f"decayed[{k}]")
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
    return Adam(tape, lr, hypers, params, label) if cfg.optimizer == "adam" else Sgd(tape, lr, params)
