"""Your own model: a PyTorch nn.Module, traced into the same workbook (tracer.frontends.pytorch).

    tracer run torch --module my_model.py

The file defines, by convention, `model` (an nn.Module), `data = (x, y)` (tensors: the inputs and
the targets), `loss_fn` (a loss module such as nn.MSELoss(), or a function (output, y) -> loss),
and optionally `optimizer` (torch.optim.SGD with or without momentum, Adam or AdamW, with their
hyperparameters; without one, SGD with lr 0.01) and `iterations` (4 by default).  tracer runs the
file after torch.manual_seed(--seed), captures loss_fn(model(x), y) with torch.fx and records every
node with its own ops: forward values, loss, gradients and updates equal PyTorch's.  From Python:
tracer.from_torch(model, x, y, loss_fn, optimizer, iterations).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from importlib import resources

from tracer.core.tape import Tape
from tracer.errors import TracerError
from tracer.frontends import pytorch as front
from tracer.models.base import opt, warmup_opt
from tracer.models.training import train

NAME = "torch"
LOSSES = ("loss",)
SUMMARY = "PyTorch model of your own (an nn.Module in a .py file): forward, loss, autograd's gradients, the optimizer's step"
EXAMPLES = "tracer.data.examples"
DEFAULT_MODULE = "torch_vae"  # the shipped example: a small VAE in nn.Linear on the shipped digit


def examples() -> list[str]:
    """The shipped example modules, by name."""
    return sorted(p.name[:-3] for p in resources.files(EXAMPLES).iterdir()
                  if p.name.endswith(".py") and not p.name.startswith("_"))


@dataclass
class Config:
    """The options of `tracer run torch`: the file (everything else is in it), a warm-up, the seed."""

    module: str = opt(None, f"your PyTorch file (defines model, data = (x, y), loss_fn; optionally optimizer, "
                            f"iterations), or a shipped example: {', '.join(examples())} [default: {DEFAULT_MODULE}]",
                      path=True, default_is=DEFAULT_MODULE)
    iterations: int = opt(None, "training iterations, one sheet each [default: the file's `iterations`, else 4]")
    warmup: int = warmup_opt("the traced iterations")
    seed: int = opt(0, "torch.manual_seed before the file runs: its initial weights and the draws in forward", min=0)

    def __post_init__(self):
        self.source = None  # given from Python (tracer.from_torch) instead of a file

    def check(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise TracerError(f"--iterations must be at least 1 (got {self.iterations})")

    def program(self) -> front.Program:
        """The captured model (made once: the file runs once per Config)."""
        if getattr(self, "_program", None) is None:
            src = self.source if self.source is not None else front.load(module_path(self.module), self.seed)
            if self.iterations is not None:
                src.iterations = self.iterations
            self.iterations = src.iterations  # from here on, the number the run traces
            self._program = front.Program(src)
        return self._program


def module_path(module) -> str:
    """A file's path, or a shipped example's by name."""
    from pathlib import Path

    if module is None:
        module = DEFAULT_MODULE
    if Path(str(module)).is_file():
        return str(module)
    stem = str(module)[:-3] if str(module).endswith(".py") else str(module)
    if stem in examples():
        return str(resources.files(EXAMPLES).joinpath(f"{stem}.py"))
    raise TracerError(f"module file not found: {module} (or name a shipped example: {', '.join(examples())})")


def size(cfg: Config):
    return cfg.program().size(cfg.program().src.iterations)


def trace(cfg: Config) -> Tape:
    program = cfg.program()
    tape = Tape()
    tape.meta = {"model": NAME, "losses": LOSSES, "settings": settings(cfg, program)}
    steps = SimpleNamespace(warmup=cfg.warmup, iterations=program.src.iterations)  # the file's, or --iterations
    program.trace(tape, lambda p, step, optimizers: train(tape, steps, p, step, optimizers, LOSSES))
    tape.meta["tensors"] = program.trace_texts()
    tape.meta["modules"] = program.module_outputs()  # which tensor each module's output is
    tape.meta["code"] = program.code()  # the user's code, quoted in the blocks' texts
    return tape


def settings(cfg: Config, program) -> dict:
    """The overview's settings: what the file chose."""
    src, o = program.src, program.optimizer
    torch = program.torch
    n = sum(p.numel() for p in program.params.values())
    hyper = {"sgd": f"SGD (lr {o.lr:g}" + (f", momentum {o.momentum:g}" if o.momentum else "") + ")",
             "adam": f"Adam (lr {o.lr:g}, betas {o.betas[0]:g}, {o.betas[1]:g}, eps {o.eps:g})",
             "adamw": f"AdamW (lr {o.lr:g}, betas {o.betas[0]:g}, {o.betas[1]:g}, eps {o.eps:g})"}[o.kind]
    if o.weight_decay:
        hyper = hyper[:-1] + f", weight decay {o.weight_decay:g})"
    if src.optimizer is None:
        hyper += ", the default"
    out = {
        "module": src.label,
        "model": type(src.model).__name__,
        "parameters": n,
        "parameter_tensors": len(program.params),
        "trained_tensors": len(program.trainable),
        "loss_fn": front._loss_words(program),
        "optimizer": hyper,
        "iterations": src.iterations,
        "capture": f"torch.fx, PyTorch {torch.__version__}",
        "dtype": str(next(iter(program.params.values())).dtype).replace("torch.", "") if program.params else "-",
    }
    if src.path is not None:
        out["seed"] = cfg.seed
    if cfg.warmup:
        out["warmup"] = cfg.warmup
    return out
