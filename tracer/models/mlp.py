"""A dense network fully described by a TOML file (tracer.data.mlp_config): layers, activations, the
numbers of every weight, the data, the loss and the training, so that a published backprop
exercise comes out number for number.

    a₀ = x                        (N × n₀: one row per example, all rows at once)
    zₖ = aₖ₋₁ · Wₖ + bₖ           (layer k = 1 … K; bₖ is added to every row)
    aₖ = f(zₖ)                    identity (aₖ is zₖ itself), sigmoid, tanh, relu, leaky_relu, softmax
    L  = loss(a_K, y)             mse, half_sse, bce or softmax_ce (tracer.core.losses): softmax_ce
                                  against one-hot rows is the mean of −ln a_K[i, class_i] (xent),
                                  against soft targets −(1/N) Σ y ⊙ ln a_K term by term (soft_xent)
    θ ← θ − lr · ∂L/∂θ            (or Adam: tracer.core.optimizers), for every parameter that is not frozen

Every tensor carries the name the file gives it (net_h, out_h, E_total, …), the gradients are
named after the loss (dE_total/dw_o), and the run carries the texts for those names.  Weights the
file leaves out are drawn from N(0, 1/fan_in) with numpy's default_rng(seed), layer by layer;
biases left out start at 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer.core import optimizers as optim
from tracer.core.activations import leaky_relu, relu, sigmoid, softmax, tanh
from tracer.core.linalg import linear
from tracer.core.losses import bce_mean, cross_entropy, half_sse, mse, soft_cross_entropy
from tracer.core.size import Size, estimate, optimizer_state, update
from tracer.core.tape import Tape
from tracer.data.mlp_config import DEFAULT_EXAMPLE, examples, load
from tracer.models.base import opt, warmup_opt
from tracer.models.training import train

NAME = "mlp"
LOSSES = ("loss",)  # the default loss name; a run names its own loss (tape.meta["losses"])
SUMMARY = "dense network described by a TOML file: layers, weights, data, loss and training (a textbook backprop exercise)"

LOSS = {"mse": mse, "half_sse": half_sse, "bce": bce_mean, "softmax_ce": soft_cross_entropy}


def loss_of(spec):
    """The file's loss; softmax_ce against one-hot targets as each row's −ln P(correct class)."""
    return cross_entropy if spec.one_hot else LOSS[spec.loss]


@dataclass
class Config:
    """The options of `tracer run mlp`: just the file; everything else is in it."""

    config: str = opt(None, f"the network as a TOML file, or a shipped example: {', '.join(examples())} "
                            f"[default: {DEFAULT_EXAMPLE}]", path=True, default_is=DEFAULT_EXAMPLE)
    warmup: int = warmup_opt("the file's iterations")

    def __post_init__(self):
        self.spec = load(self.config)  # checked: a malformed file is a one-line TracerError

    @property
    def iterations(self) -> int:
        return self.spec.iterations


def activate(kind: str, z, slope, name: str):
    """aₖ = f(zₖ) for every activation but identity."""
    if kind == "sigmoid":
        return sigmoid(z, name=name)
    if kind == "tanh":
        return tanh(z, name=name)
    if kind == "relu":
        return relu(z, name=name)
    if kind == "leaky_relu":
        return leaky_relu(z, slope, name=name)
    return softmax(z, name=name)


def forward(spec, p: dict, x, slope):
    """The layers, in order: a₀ = x, zₖ = aₖ₋₁·Wₖ + bₖ, aₖ = f(zₖ); returns a_K."""
    a = x
    for layer in spec.layers:
        z = linear(a, p[layer.weights_name], p[layer.bias_name], name=layer.pre_name)
        a = z if layer.activation == "identity" else activate(layer.activation, z, slope, layer.out_name)
    return a


def initial_params(spec) -> dict[str, tuple[np.ndarray, str]]:
    """{name: (value, where it comes from)}: the file's weights and biases ("given"), those it
    leaves out seeded (weights: "param", a seeded draw) or 0 (biases: "zero")."""
    rng = np.random.default_rng(spec.seed)
    params, fan_in = {}, spec.inputs.shape[1]
    for layer in spec.layers:
        shape = (fan_in, layer.units)
        params[layer.weights_name] = ((layer.weights, "given") if layer.weights is not None else
                                      (rng.normal(0.0, 1 / np.sqrt(fan_in), size=shape), "param"))
        params[layer.bias_name] = ((layer.bias, "given") if layer.bias is not None else
                                   (np.zeros((1, layer.units)), "zero"))
        fan_in = layer.units
    return params


def size(cfg: Config) -> Size:
    """The run's size from the file (tracer.core.size), before any weight is drawn."""
    spec = cfg.spec
    N, fan_in = spec.inputs.shape
    params, trained, forward = [], [], []
    for layer in spec.layers:
        for name, shape in ((layer.weights_name, (fan_in, layer.units)), (layer.bias_name, (1, layer.units))):
            params.append(shape)
            if name not in spec.frozen:
                trained.append(shape)
        forward += [(N, layer.units)] * (1 if layer.activation == "identity" else 2)
        forward += [(N, layer.units), (N, 1)] * (layer.activation == "softmax")  # its exponentials and sums
        fan_in = layer.units
    N, K = spec.targets.shape  # the loss, and its per-example terms (a row's, one-hot; else each output's)
    forward += [(1, 1)] + {"softmax_ce": [(N, 1) if spec.one_hot else (N, K)], "bce": [(N, K)]}.get(spec.loss, [])
    return estimate([spec.inputs.shape, spec.targets.shape] + params + optimizer_state(spec.optimizer, trained),
                    forward * 2 + trained + update(spec.optimizer, trained), spec.iterations)


def trace(cfg: Config) -> Tape:
    """Run the file's iterations on all its examples at once and return the tape."""
    spec = cfg.spec
    tape = Tape()
    tape.meta = {"model": NAME, "losses": (spec.loss_name,), "tensors": texts(spec),
                 "settings": settings(spec) | ({"warmup": cfg.warmup} if cfg.warmup else {})}
    x = tape.constant(spec.inputs_name, spec.inputs, role="data")
    y = tape.constant(spec.targets_name, spec.targets, role="data")
    p = {k: tape.constant(k, v, role="param", source=source) for k, (v, source) in initial_params(spec).items()}
    lr = tape.constant("lr", [[spec.lr]], role="hyper", defined_name="lr")
    slope = (tape.constant("slope", [[spec.leaky_slope]], role="hyper", defined_name="slope")
             if spec.uses_leaky else None)
    trained = [n for n in p if n not in spec.frozen]  # a frozen parameter keeps its one tensor throughout
    optimizer = optim.make(tape, spec, lr, {n: p[n] for n in trained}, optim.hyperparameters(tape, spec))

    def step(p):
        tape.at("forward")
        out = forward(spec, p, x, slope)
        tape.at("loss")
        L = loss_of(spec)(out, y, name=spec.loss_name)
        tape.at("backward")
        grads = tape.backward(L, {n: p[n] for n in trained}, prefix=spec.loss_name)
        tape.at("update")
        return p | optimizer.step({n: p[n] for n in trained}, grads)

    train(tape, cfg, p, step, [optimizer], (spec.loss_name,))
    return tape


# --- what the overview and the blocks say about the file's choices --------------------------------

SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
LOSS_WORDS = {
    "mse": ("mean squared error: the mean of (output − target)² over every output of every example",
            "error cuadrático medio: la media de (salida − objetivo)² sobre cada salida de cada ejemplo"),
    "half_sse": ("half the sum of squared errors: ½ Σ (target − output)² over every output of every example",
                 "la mitad de la suma de los errores al cuadrado: ½ Σ (objetivo − salida)² sobre cada salida de cada ejemplo"),
    "bce": ("binary cross-entropy, the mean over every output of every example",
            "entropía cruzada binaria, la media sobre cada salida de cada ejemplo"),
    "softmax_ce": ("cross-entropy of the softmax output, the mean over the examples of −Σ target · ln output",
                   "entropía cruzada de la salida softmax, la media sobre los ejemplos de −Σ objetivo · ln salida"),
}


def symbol(name: str) -> str:
    """The name with its trailing digits as subscripts: W1 → W₁, net_h → net_h."""
    return re.sub(r"\d+$", lambda m: m[0].translate(SUB), name)


def settings(spec) -> dict:
    """The overview's settings: what the file chose."""
    out = {"title": spec.title} if spec.title else {}
    out |= {
        "config": Path(spec.source).name,
        "units": "-".join(str(n) for n in [spec.inputs.shape[1]] + [layer.units for layer in spec.layers]),
        "activations": ", ".join(layer.activation for layer in spec.layers),
        "loss": f"{spec.loss} ({spec.loss_name})",
        "optimizer": spec.optimizer,
        "iterations": spec.iterations,
        "examples": spec.inputs.shape[0],
        "frozen": ", ".join(spec.frozen) or "-",
    }
    if any(layer.weights is None for layer in spec.layers):
        out["seed"] = spec.seed
    return out


def texts(spec) -> dict:
    """{name: {"symbol", "en", "es"}} for every tensor name the file chose (or defaulted)."""
    N, n0 = spec.inputs.shape
    rows = {"en": "", "es": ""}
    if spec.one_hot:
        rows = {"en": "; one-hot, a 1 at the correct class", "es": "; one-hot, un 1 en la clase correcta"}
    elif spec.loss == "softmax_ce":
        rows = {"en": "; each row probabilities summing to 1", "es": "; cada fila, probabilidades que suman 1"}
    out = {
        spec.inputs_name: (f"the inputs: {N} example{'s' * (N > 1)}, one per row, of {n0} values",
                           f"las entradas: {N} ejemplo{'s' * (N > 1)}, uno por fila, de {n0} valores"),
        spec.targets_name: ("the targets: what the network should output for each example (one row each)"
                            + rows["en"],
                            "los objetivos: lo que la red debería dar para cada ejemplo (una fila cada uno)"
                            + rows["es"]),
        spec.loss_name: (f"the loss: {LOSS_WORDS[spec.loss][0]}", f"la pérdida: {LOSS_WORDS[spec.loss][1]}"),
    }
    fan_in = n0
    for k, layer in enumerate(spec.layers, start=1):
        units = f"{layer.units} unit{'s' * (layer.units > 1)}"
        unidades = f"{layer.units} unidad{'es' * (layer.units > 1)}"
        source = (("given in the file", "dados en el archivo") if layer.weights is not None else
                  (f"drawn from N(0, 1/{fan_in}) with seed {spec.seed}", f"sorteados de N(0, 1/{fan_in}) con semilla {spec.seed}"))
        out[layer.weights_name] = (
            f"weights of layer {k} ({fan_in} × {layer.units}, {source[0]}): row i holds the weights from input i, column j those into unit j",
            f"pesos de la capa {k} ({fan_in} × {layer.units}, {source[1]}): la fila i tiene los pesos desde la entrada i, la columna j los que llegan a la unidad j")
        out[layer.bias_name] = (f"bias of layer {k} ({units}), added to every example",
                                f"sesgo de la capa {k} ({unidades}), se suma a cada ejemplo")
        for name in (layer.weights_name, layer.bias_name):
            if name in spec.frozen:
                out[name] = (out[name][0] + "; frozen: not trained", out[name][1] + "; congelado: no se entrena")
        if layer.activation == "identity":  # one tensor
            out[layer.out_name] = (f"output of layer {k} ({units}): identity, the pre-activation itself, inputs · weights + bias",
                                   f"salida de la capa {k} ({unidades}): identidad, la propia preactivación, entradas · pesos + sesgo")
        else:
            out[layer.pre_name] = (f"pre-activation of layer {k} ({units}): inputs · weights + bias",
                                   f"preactivación de la capa {k} ({unidades}): entradas · pesos + sesgo")
            out[layer.out_name] = (f"output of layer {k}: {layer.activation} of its pre-activation",
                                   f"salida de la capa {k}: {layer.activation} de su preactivación")
        if k == len(spec.layers):
            out[layer.out_name] = (out[layer.out_name][0] + "; the network's output",
                                   out[layer.out_name][1] + "; la salida de la red")
        fan_in = layer.units
    entries = {name: {"symbol": symbol(name), "en": en, "es": es} for name, (en, es) in out.items()}
    return entries
