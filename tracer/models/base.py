"""What every trainable model's options share: iterations, seed and the optimizer.

A model's `Config` is a dataclass whose fields become CLI options (`tracer run MODEL --help`);
`opt` attaches the help text and the checks the CLI applies (min=, positive=, below=, path=,
choices=).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def opt(default, help, **checks):
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class Training:
    iterations: int = opt(4, "training iterations, one sheet each", min=1)
    seed: int = opt(0, "seed of the initial weights and of the random draws", min=0)
    optimizer: str = opt("sgd", "sgd: θ ← θ − lr·g;  adam: moments m, v, bias correction, step",
                         choices=("sgd", "adam"))
    beta1: float = opt(0.9, "Adam: decay of the first moment m (a named cell)", min=0, below=1)
    beta2: float = opt(0.999, "Adam: decay of the second moment v (a named cell)", min=0, below=1)
    adam_eps: float = opt(1e-8, "Adam: ε added to √v̂ (a named cell)", positive=True)
