"""The mlp model: a dense network described by a TOML file.

* the shipped classic_222 example reproduces Mazur's published hand values (2015), through the
  tape and through the workbook recalculated by LibreOffice;
* every activation × every loss against a numpy network written here from the equations (forward,
  loss, backprop and SGD), and finite differences (gradcheck) with SGD, Adam and frozen parameters;
* a malformed config is a one-line error naming the file, the line and the key (exit 2, no file);
* the dense network's ops (tanh and the pair losses), and the workbooks' formulas stay portable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from families import DENSE, ops_of
from test_portable import check_formula

from tracer.checks.gradcheck import gradcheck
from tracer.core import activations, losses
from tracer.core.tape import Tape
from tracer.data.mlp_config import examples, key_lines
from tracer.errors import TracerError
from tracer.models import mlp
from tracer.render.export import export
from tracer.render.layout import Cells, Layout, Place
from tracer.render.template import LANGS, Template

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["classic_222", "softmax_classifier", "xor"]

MLP_OPS = ops_of(DENSE)


def by_name(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


@pytest.fixture(scope="module")
def example_tape():
    made = {}

    def get(name):
        if name not in made:
            made[name] = mlp.trace(mlp.Config(config=name))
        return made[name]

    return get


# --- Mazur's published values ---------------------------------------------------------------------

# (tensor, iteration, cell, published value): out_h1 = 0.593269992 … (his digits; weights:
# w1 i1→h1 = w_h[0, 0], w2 i2→h1 = w_h[1, 0], w3 i1→h2 = w_h[0, 1], w4 i2→h2 = w_h[1, 1], w5 h1→o1 =
# w_o[0, 0], w6 h2→o1 = w_o[1, 0], w7 h1→o2 = w_o[0, 1], w8 h2→o2 = w_o[1, 1])
PUBLISHED = [
    ("out_h", 1, (0, 0), "0.593269992"), ("out_h", 1, (0, 1), "0.596884378"),
    ("out_o", 1, (0, 0), "0.75136507"), ("out_o", 1, (0, 1), "0.772928465"),
    ("E_total", 1, (0, 0), "0.298371109"),
    ("dE_total/dw_o", 1, (0, 0), "0.082167041"),
    ("w_o", 1, (0, 0), "0.35891648"), ("w_o", 1, (1, 0), "0.408666186"),
    ("w_o", 1, (0, 1), "0.511301270"), ("w_o", 1, (1, 1), "0.561370121"),
    ("w_h", 1, (0, 0), "0.149780716"), ("w_h", 1, (1, 0), "0.19956143"),
    ("w_h", 1, (0, 1), "0.24975114"), ("w_h", 1, (1, 1), "0.29950229"),
]


def agrees_with_published(value: float, published: str) -> bool:
    """Equal to the published digits: rounded to as many decimals, and within 1e-8."""
    decimals = len(published.split(".")[1])
    return round(value, decimals) == float(published) and abs(value - float(published)) <= 1e-8


def test_classic_222_reproduces_the_published_values(example_tape):
    tape = example_tape("classic_222")
    for name, k, (i, j), published in PUBLISHED:
        value = float(by_name(tape, k)[name].value[i, j])
        assert agrees_with_published(value, published), (name, i, j, value, published)
    # the inputs as Mazur gives them, his biases frozen and not updated
    zero = by_name(tape, 0)
    assert zero["w_h"].value.tolist() == [[0.15, 0.25], [0.20, 0.30]]
    assert zero["w_o"].value.tolist() == [[0.40, 0.50], [0.45, 0.55]]
    assert zero["b1"].value.tolist() == [[0.35, 0.35]] and zero["b2"].value.tolist() == [[0.60, 0.60]]
    one = by_name(tape, 1)
    assert "b1" not in one and "b2" not in one and "dE_total/db1" not in one and "dE_total/db2" not in one
    assert tape.meta["losses"] == ("E_total",)
    assert {"net_h", "out_h", "net_o", "out_o", "E_total", "dE_total/dnet_h"} <= set(one)


def test_classic_222_in_either_engine_gives_the_published_values(engine, tmp_path, example_tape):
    """The workbook, recalculated from scratch by LibreOffice and by IronCalc, shows Mazur's numbers
    in the cells of the blocks (and every formula agrees with numpy: tracer verify)."""
    from tracer.checks.verify import verify_workbook
    from tracer.engines import ENGINES

    tape = example_tape("classic_222")
    config = dataclasses.asdict(mlp.Config())
    path = tmp_path / "classic.xlsx"
    export(tape, config, path)
    report = verify_workbook(path, engine=engine)
    assert report.ok, report.format()
    layout = Layout(tape, Template.of(tape, "en"), config)
    where = {}
    for name, k, (i, j), _ in PUBLISHED:
        place = layout.place[id(by_name(tape, k)[name])]
        where[name, k, i, j] = (place.sheet, *(x + 1 for x in place.rc(i, j)))
    wanted = {}
    for sheet, r, c in where.values():
        wanted.setdefault(sheet, set()).add((r, c))
    values = ENGINES[engine].recalculated_values(path, wanted)
    for name, k, (i, j), published in PUBLISHED:
        value = values[where[name, k, i, j]]
        assert isinstance(value, float) and agrees_with_published(value, published), (name, value)


@pytest.mark.parametrize("name", EXAMPLES[1:])
def test_every_shipped_example_passes_verify(engine, tmp_path, example_tape, name):
    from tracer.checks.verify import verify_workbook

    path = tmp_path / f"{name}.xlsx"
    export(example_tape(name), dataclasses.asdict(mlp.Config(config=name)), path, "es")
    report = verify_workbook(path, engine=engine)
    assert report.ok, report.format()


def test_soft_targets_pass_verify(engine, tmp_path):
    """softmax_ce against soft targets: each output's −t·ln p as a formula, then their sum over N."""
    from tracer.checks.verify import verify_workbook

    config, _ = network(tmp_path, "tanh", "softmax_ce")
    tape = mlp.trace(mlp.Config(config=str(config)))
    assert {"soft_xent_terms", "soft_xent"} <= {t.op.name for t in tape.tensors if t.op is not None}
    path = tmp_path / "soft.xlsx"
    export(tape, dataclasses.asdict(mlp.Config(config=str(config))), path, "en")
    report = verify_workbook(path, engine=engine)
    assert report.ok, report.format()


# --- the shipped examples ------------------------------------------------------------------------

def test_the_shipped_examples_are_listed_and_documented():
    assert examples() == EXAMPLES
    assert mlp.Config().config is None and mlp.Config().spec.source == "classic_222.toml"
    for name in EXAMPLES:
        text = (ROOT / "tracer" / "data" / "examples" / f"{name}.toml").read_text("utf-8")
        assert text.startswith("#") and f"tracer run mlp --config {name}" in text
    classic = (ROOT / "tracer" / "data" / "examples" / "classic_222.toml").read_text("utf-8")
    for key in ("inputs", "targets", "names", "units", "activation", "weights", "bias", "kind",
                "name", "lr", "iterations", "optimizer", "frozen", "seed", "leaky_slope"):
        assert re.search(rf"^#?\s*{key}\s+", classic, re.M) or f"# {key}" in classic, key  # explained


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_passes_gradcheck(example_tape, name):
    tape = example_tape(name)
    for k in range(1, tape.meta["settings"]["iterations"] + 1):
        (report,) = gradcheck(tape, k)
        assert report.ok and report.max_rel < 1e-7, report.lines()


@pytest.mark.parametrize("name", EXAMPLES[1:])
def test_the_loss_falls_at_every_iteration(example_tape, name):
    tape = example_tape(name)
    loss = tape.meta["losses"][0]
    values = [t.value[0, 0] for t in tape.tensors if t.name == loss]
    assert len(values) == tape.meta["settings"]["iterations"] >= 5
    assert all(b < a for a, b in zip(values, values[1:])), values


def test_softmax_classifier_learns_every_class(example_tape):
    tape = example_tape("softmax_classifier")
    last = max(t.iteration for t in tape.tensors)
    P, Y = by_name(tape, last)["P"].value, by_name(tape, 0)["Y"].value
    assert np.allclose(P.sum(axis=1), 1) and (P.argmax(axis=1) == Y.argmax(axis=1)).all()
    ops = {t.op.name for t in tape.tensors if t.op}
    assert {"tanh", "tanh_grad", "softmax", "softmax_grad", "xent", "xent_grad"} <= ops


def test_the_run_carries_its_texts_and_settings(example_tape):
    """Every tensor the file names gets a symbol and words in both languages from the run itself;
    the overview shows what the file chose instead of the CLI options."""
    from tracer.render.document import unhandled

    for name in EXAMPLES:
        tape = example_tape(name)
        for lang in LANGS:
            tpl = Template.of(tape, lang)
            for t in tape.tensors:
                assert tpl.describe(t), (name, lang, t.name)
                text = tpl.symbol(t.name) + tpl.describe(t) + tpl.equation(t) + tpl.note(t)
                assert not unhandled(text), (name, t.name, unhandled(text))  # LaTeX knows every symbol
    tape = example_tape("classic_222")
    assert tape.meta["settings"] == {
        "title": {"en": "Mazur's step-by-step backpropagation example (2-2-2, sigmoid)",
                  "es": "El ejemplo de retropropagación paso a paso de Mazur (2-2-2, sigmoide)"}, "config": "classic_222.toml",
        "units": "2-2-2", "activations": "sigmoid, sigmoid", "loss": "half_sse (E_total)", "optimizer": "sgd",
        "iterations": 1, "examples": 1, "frozen": "b1, b2"}
    texts = tape.meta["tensors"]
    assert texts["net_h"]["en"].startswith("pre-activation of layer 1 (2 units)")
    assert texts["net_h"]["es"].startswith("preactivación de la capa 1 (2 unidades)")
    assert "frozen" in texts["b1"]["en"] and "congelado" in texts["b1"]["es"]
    assert Template.of(tape, "en").describe(by_name(tape, 1)["dE_total/dw_o"]) == "gradient of E_total with respect to w_o"
    common = Template("mlp").common["settings"]
    for key in {k for n in EXAMPLES for k in example_tape(n).meta["settings"]}:
        assert set(LANGS) <= set(common[key]), key
    assert example_tape("xor").meta["settings"]["seed"] == 19


def test_config_is_the_file_and_a_warmup_and_exposes_the_iterations():
    cfg = mlp.Config(config="xor")
    assert dataclasses.asdict(cfg) == {"config": "xor", "warmup": 0} and cfg.iterations == 12
    assert [f.name for f in dataclasses.fields(mlp.Config)] == ["config", "warmup"]
    assert dataclasses.fields(mlp.Config)[0].metadata.get("path")
    for name in EXAMPLES:
        assert name in dataclasses.fields(mlp.Config)[0].metadata["help"]


# --- an independent numpy network ----------------------------------------------------------------

SLOPE = 0.05


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


ACTIVATION = {  # f(z), f′ from (z, f(z))
    "identity": (lambda z: z, lambda z, a: np.ones_like(z)),
    "sigmoid": (_sigmoid, lambda z, a: a * (1 - a)),
    "tanh": (np.tanh, lambda z, a: 1 - a ** 2),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(float)),
    "leaky_relu": (lambda z: np.where(z > 0, z, SLOPE * z), lambda z, a: np.where(z > 0, 1.0, SLOPE)),
}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


LOSS = {  # (L, ∂L/∂ŷ) of the output ŷ and the targets y
    "mse": lambda p, y: (np.mean((p - y) ** 2), 2 * (p - y) / p.size),
    "half_sse": lambda p, y: (0.5 * np.sum((y - p) ** 2), p - y),
    "bce": lambda p, y: (-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), ((1 - y) / (1 - p) - y / p) / p.size),
    "softmax_ce": lambda p, y: (-np.sum(y * np.log(p)) / p.shape[0], -y / (p * p.shape[0])),
}


def reference_step(x, y, Ws, bs, activations, loss):
    """One forward pass, the loss and backpropagation, from the equations; returns
    (outputs of each layer, L, ∂L/∂W for each layer, ∂L/∂b for each layer)."""
    a, cache = x, []
    for W, b, act in zip(Ws, bs, activations):
        z = a @ W + b
        out = _softmax(z) if act == "softmax" else ACTIVATION[act][0](z)
        cache.append((a, z, out))
        a = out
    L, g = LOSS[loss](a, y)
    dW, db = [None] * len(Ws), [None] * len(Ws)
    for k in reversed(range(len(Ws))):
        a_in, z, out = cache[k]
        if activations[k] == "softmax":
            dz = out * (g - (g * out).sum(axis=1, keepdims=True))
        else:
            dz = g * ACTIVATION[activations[k]][1](z, out)
        dW[k], db[k] = a_in.T @ dz, dz.sum(axis=0, keepdims=True)
        g = dz @ Ws[k].T
    return [c[2] for c in cache], L, dW, db


def toml(value) -> str:
    """A Python value as TOML (strings, numbers, lists, inline tables)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def write_config(path: Path, data: dict, layers: list, loss: dict, training: dict) -> Path:
    parts = ["[data]"] + [f"{k} = {toml(v)}" for k, v in data.items()]
    for layer in layers:
        parts += ["", "[[layer]]"] + [f"{k} = {toml(v)}" for k, v in layer.items()]
    parts += ["", "[loss]"] + [f"{k} = {toml(v)}" for k, v in loss.items()]
    parts += ["", "[training]"] + [f"{k} = {toml(v)}" for k, v in training.items()]
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def network(tmp_path, hidden: str, loss: str, output: str | None = None, optimizer="sgd", frozen=(),
            iterations=2, seed=7, names=False, one_hot=False) -> tuple[Path, dict]:
    """A 3-4-3-k network on 5 examples with explicit random weights: both hidden layers `hidden`,
    the output layer what the loss needs (or `output`); softmax_ce's targets soft rows of
    probabilities (Dirichlet draws, none 0 or 1), or `one_hot`."""
    rng = np.random.default_rng([seed, len(hidden), len(loss)])
    output = output or {"bce": "sigmoid", "softmax_ce": "softmax"}.get(loss, hidden)
    k = 3 if output == "softmax" else 2
    sizes = [3, 4, 3, k]
    x = rng.normal(size=(5, 3))
    y = rng.uniform(0.05, 0.95, size=(5, k))
    if loss == "softmax_ce":
        y = np.eye(k)[rng.integers(0, k, 5)] if one_hot else rng.dirichlet(np.full(k, 2.0), size=5)
    layers = []
    for n, act in enumerate([hidden, hidden, output]):
        layer = {"units": sizes[n + 1], "activation": act,
                 "weights": rng.normal(0, 0.6, size=(sizes[n], sizes[n + 1])),
                 "bias": rng.normal(0.5, 0.3, size=sizes[n + 1]).tolist()}  # ReLU units alive
        if names:
            layer["names"] = {"weights": f"V{n}", "bias": f"c{n}", "pre": f"net{n}", "out": f"out{n}"}
        layers.append(layer)
    training = {"lr": 0.05, "iterations": iterations, "optimizer": optimizer, "frozen": list(frozen),
                "leaky_slope": SLOPE}
    spec = {"x": x, "y": y, "layers": layers, "training": training}
    return write_config(tmp_path / f"{hidden}-{loss}.toml", {"inputs": x, "targets": y}, layers,
                        {"kind": loss, "name": "J"}, training), spec


GRID = [(h, loss) for h in ACTIVATION for loss in LOSS] + [("tanh", "half_sse:softmax"), ("relu", "mse:sigmoid"),
                                                            ("tanh", "softmax_ce:one-hot"), ("relu", "softmax_ce:one-hot")]


@pytest.mark.parametrize("hidden, loss", GRID, ids=[f"{h}-{loss}" for h, loss in GRID])
def test_tape_equals_the_numpy_network(tmp_path, hidden, loss):
    """Forward, loss, every gradient and the SGD update of 2 iterations, against reference_step;
    and the traced gradients against finite differences.  softmax_ce with soft targets, or one-hot."""
    loss, _, output = loss.partition(":")
    one_hot = output == "one-hot"
    path, spec = network(tmp_path, hidden, loss, None if one_hot or not output else output, one_hot=one_hot)
    tape = mlp.trace(mlp.Config(config=str(path)))
    acts = [layer["activation"] for layer in spec["layers"]]
    Ws = [np.array(layer["weights"], dtype=float) for layer in spec["layers"]]
    bs = [np.array([layer["bias"]]) for layer in spec["layers"]]
    for k in (1, 2):
        it = by_name(tape, k)
        outs, L, dW, db = reference_step(spec["x"], spec["y"], Ws, bs, acts, loss)
        assert it["J"].value[0, 0] == pytest.approx(L, rel=1e-12)
        for n in range(3):
            out_name = f"z{n + 1}" if acts[n] == "identity" else f"a{n + 1}"
            np.testing.assert_allclose(it[out_name].value, outs[n], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(it[f"dJ/dW{n + 1}"].value, dW[n], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(it[f"dJ/db{n + 1}"].value, db[n], rtol=1e-10, atol=1e-14)
            Ws[n], bs[n] = Ws[n] - 0.05 * dW[n], bs[n] - 0.05 * db[n]
            np.testing.assert_allclose(it[f"W{n + 1}"].value, Ws[n], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(it[f"b{n + 1}"].value, bs[n], rtol=1e-12, atol=1e-14)
        assert np.abs(dW[0]).max() > 1e-6  # not vacuous: the gradient reaches the first layer
        (report,) = gradcheck(tape, k)
        assert report.ok, report.lines()
    if "identity" in acts:  # the layer's output is its pre-activation itself: no copy, no a1
        assert "a1" not in by_name(tape, 1) and by_name(tape, 1)["z2"].inputs[0] is by_name(tape, 1)["z1"]


@pytest.mark.parametrize("hidden", ["tanh", "relu", "leaky_relu", "identity", "sigmoid"])
def test_adam_and_frozen_parameters(tmp_path, hidden):
    """Adam on the trained parameters only; frozen ones keep their first tensor through every
    iteration, get no gradient and no optimizer state; gradcheck holds in every iteration."""
    path, spec = network(tmp_path, hidden, "softmax_ce", optimizer="adam", frozen=("c0", "V2"),
                         iterations=3, names=True)
    tape = mlp.trace(mlp.Config(config=str(path)))
    zero = by_name(tape, 0)
    for k in range(1, 4):
        it = by_name(tape, k)
        first = "out0" if hidden == "identity" else "net0"  # an identity layer's one tensor: `out`
        assert it[first].inputs[2] is zero["c0"] and it["net2"].inputs[1] is zero["V2"]
        assert "dJ/dc0" not in it and "dJ/dV2" not in it and "c0" not in it and "V2" not in it
        assert {"V0", "V1", "c1", "c2", "step[V0]", "m_hat[c2]"} <= set(it)
        run = tape.backward_runs[k - 1]
        assert set(run.params) == {"V0", "V1", "c1", "c2"}
        (report,) = gradcheck(tape, k)
        assert report.ok, report.lines()
    assert "m[c0]" not in zero and "m[V0]" in zero and zero["t"].value[0, 0] == 0
    np.testing.assert_array_equal(zero["c0"].value, np.array([spec["layers"][0]["bias"]]))
    assert {"beta1", "beta2", "adam_eps"} <= set(zero) and zero["beta1"].attrs["defined_name"] == "beta_1"
    if hidden == "leaky_relu":
        assert zero["slope"].value[0, 0] == SLOPE and zero["slope"].attrs["defined_name"] == "slope"
    else:
        assert "slope" not in zero


def test_seeded_weights_and_zero_biases(tmp_path):
    path = write_config(tmp_path / "s.toml", {"inputs": [[1.0, 2.0, 3.0]], "targets": [[0.5]]},
                        [{"units": 4, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
                        {"kind": "bce"}, {"lr": 0.1, "seed": 5})
    tape = mlp.trace(mlp.Config(config=str(path)))
    zero = by_name(tape, 0)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(zero["W1"].value, rng.normal(0, 1 / np.sqrt(3), size=(3, 4)))
    np.testing.assert_array_equal(zero["W2"].value, rng.normal(0, 1 / np.sqrt(4), size=(4, 1)))
    assert not zero["b1"].value.any() and zero["b2"].shape == (1, 1)
    assert tape.meta["settings"]["seed"] == 5 and "N(0, 1/3) with seed 5" in tape.meta["tensors"]["W1"]["en"]
    assert tape.meta["losses"] == ("loss",) and "loss" in by_name(tape, 1)


# --- malformed configs: one line, the place, exit 2, no file -------------------------------------------

BASE = """\
title = "a test network"

[data]
inputs = [[0.05, 0.10]]
targets = [[0.01, 0.99]]

[[layer]]
units = 2
activation = "sigmoid"
weights = [[0.15, 0.25],
           [0.20, 0.30]]
bias = 0.35
names = { weights = "W1", bias = "b1", pre = "net_h", out = "out_h" }

[[layer]]
units = 2
activation = "sigmoid"
weights = [[0.40, 0.50], [0.45, 0.55]]
bias = [0.60, 0.60]
names = { pre = "net_o", out = "out_o" }

[loss]
kind = "half_sse"
name = "E_total"

[training]
lr = 0.5
iterations = 1
optimizer = "sgd"
frozen = ["b1", "b2"]
"""
L1 = 'units = 2\nactivation = "sigmoid"\nweights = [[0.15'  # layer 1's first lines
L2 = 'units = 2\nactivation = "sigmoid"\nweights = [[0.40'  # layer 2's

# (id, edits of BASE: (text, its replacement) pairs, the place, words of the message, the text on
# the line the message names: None for the first edit's replacement, "" when it names no line)
BAD = [
    ("missing key", [(L2, 'units = 2\nweights = [[0.40')], "[[layer]] 2", "missing key 'activation'",
     "[[layer]]\nunits = 2\nweights"),
    ("missing table", [('[loss]\nkind = "half_sse"\nname = "E_total"\n', "")], "", "missing the [loss] table", ""),
    ("wrong shape", [("[[0.40, 0.50], [0.45, 0.55]]", "[[0.40, 0.50]]")], "[[layer]] 2, weights",
     "expected 2 rows of 2 values", "weights = [[0.40, 0.50]]"),
    ("ragged rows", [("[0.20, 0.30]]", "[0.20]]")], "[[layer]] 1, weights", "row 2 has 1 value, row 1 has 2",
     "weights = [[0.15"),
    ("wrong bias length", [("bias = [0.60, 0.60]", "bias = [0.60, 0.60, 0.60]")], "[[layer]] 2, bias",
     "expected 1 row of 2 values", None),
    ("unknown activation", [(L2, L2.replace('"sigmoid"', '"sigmiod"'))], "[[layer]] 2, activation",
     "unknown activation 'sigmiod' (did you mean 'sigmoid'?)", 'activation = "sigmiod"'),
    ("unknown loss", [('kind = "half_sse"', 'kind = "hinge"')], "[loss], kind", "unknown kind 'hinge'", None),
    ("unknown optimizer", [('optimizer = "sgd"', 'optimizer = "adamw"')], "[training], optimizer",
     "unknown optimizer 'adamw' (did you mean 'adam'?)", None),
    ("softmax not last", [(L1, L1.replace('"sigmoid"', '"softmax"'))], "[[layer]] 1, activation",
     "softmax only on the last layer", 'activation = "softmax"'),
    ("softmax_ce without softmax", [('kind = "half_sse"', 'kind = "softmax_ce"')], "[loss], kind",
     "softmax_ce needs a softmax output: the last [[layer]] has activation 'sigmoid'", None),
    ("bce without sigmoid", [('kind = "half_sse"', 'kind = "bce"'), (L2, L2.replace('"sigmoid"', '"tanh"'))],
     "[loss], kind", "bce needs a sigmoid output (between 0 and 1): the last [[layer]] has activation 'tanh'", None),
    ("frozen not a parameter", [('frozen = ["b1", "b2"]', 'frozen = ["b1", "b3"]')], "[training], frozen",
     "item 2: 'b3' is not a parameter (the parameters: W1, b1, W2, b2)", None),
    ("all frozen", [('frozen = ["b1", "b2"]', 'frozen = ["b1", "b2", "W1", "W2"]')], "[training], frozen",
     "every parameter is frozen", None),
    ("duplicate name", [('names = { pre = "net_o"', 'names = { pre = "net_h"')], "[[layer]] 2, names.pre",
     "the name 'net_h' is already taken by the pre-activation of layer 1", None),
    ("duplicate of a default", [('names = { pre = "net_o"', 'names = { weights = "b1", pre = "net_o"')],
     "[[layer]] 2, names.weights", "the name 'b1' is already taken by the bias of layer 1", None),
    ("reserved name", [('name = "E_total"', 'name = "lr"')], "[loss], name",
     "the name 'lr' is reserved for the learning rate", None),
    ("bad name", [('out = "out_o"', 'out = "out o"')], "[[layer]] 2, names.out", "expected a name of letters",
     'names = { pre = "net_o"'),
    ("non-numeric", [("[[0.40, 0.50], [0.45", '[[0.40, "0.50"], [0.45')], "[[layer]] 2, weights",
     "row 1, column 2: expected a number, got '0.50'", "weights = [[0.40"),
    ("boolean", [("bias = 0.35", "bias = true")], "[[layer]] 1, bias", "expected a number, got true", None),
    ("not finite", [("bias = 0.35", "bias = nan")], "[[layer]] 1, bias", "expected a number, got nan", None),
    ("lr zero", [("lr = 0.5", "lr = 0")], "[training], lr", "the learning rate must be positive (got 0)", None),
    ("lr negative", [("lr = 0.5", "lr = -0.5")], "[training], lr", "the learning rate must be positive (got -0.5)", None),
    ("lr text", [("lr = 0.5", 'lr = "0.5"')], "[training], lr", "expected a number, got '0.5'", None),
    ("lr missing", [("lr = 0.5\n", "")], "[training]", "missing key 'lr'", "[training]"),
    ("iterations zero", [("iterations = 1", "iterations = 0")], "[training], iterations", "must be at least 1 (got 0)", None),
    ("iterations fraction", [("iterations = 1", "iterations = 1.5")], "[training], iterations",
     "expected a whole number", None),
    ("unknown key in a layer", [(L1, L1.replace("activation", 'activation = "sigmoid"\nactivaton'))],
     "[[layer]] 1, activaton", "unknown key 'activaton' (did you mean 'activation'?)", "activaton"),
    ("unknown key in training", [("lr = 0.5", "lr = 0.5\nlearning_rate = 0.5")], "[training], learning_rate",
     "unknown key 'learning_rate'", "learning_rate"),
    ("unknown table", [("[training]", "[trainig]")], "trainig", "unknown key 'trainig' (did you mean 'training'?)", None),
    ("unknown name key", [('names = { pre = "net_o"', 'names = { pres = "net_o"')], "[[layer]] 2, names.pres",
     "unknown key 'pres' (did you mean 'pre'?)", None),
    ("rows of targets", [("targets = [[0.01, 0.99]]", "targets = [[0.01, 0.99], [0.5, 0.5]]")], "[data], targets",
     "2 rows of targets for 1 row of inputs", None),
    ("targets width", [("targets = [[0.01, 0.99]]", "targets = [[0.01, 0.99, 0.5]]")], "[data], targets",
     "expected 1 row of 2 values (one row per example, one value per unit of the last layer)", None),
    ("flat inputs", [("inputs = [[0.05, 0.10]]", "inputs = [0.05, 0.10]")], "[data], inputs", "expected a list of rows", None),
    ("syntax error", [("[loss]", "[loss")], "", "not valid TOML: ", ""),
]


def edited(edits) -> str:
    text = BASE
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def test_the_base_config_is_fine(tmp_path):
    path = tmp_path / "base.toml"
    path.write_text(BASE, encoding="utf-8")
    tape = mlp.trace(mlp.Config(config=str(path)))
    assert agrees_with_published(float(by_name(tape, 1)["E_total"].value[0, 0]), "0.298371109")


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_a_malformed_config_is_a_one_line_error_naming_its_place(tmp_path, run_main, case):
    name, edits, where, words, on_line = case
    text = edited(edits)
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out.xlsx"
    code, stdout, err = run_main("run", "mlp", "--config", path, "-o", out)
    assert code == 2 and "wrote" not in stdout
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and not out.exists()
    assert words in err, err
    if on_line == "":  # no line: the file and the table
        assert f"bad.toml{f' ({where})' if where else ''}: " in err, err
        if name == "syntax error":
            line = 1 + text[:text.index("[loss")].count("\n")
            assert f"(at line {line}, column" in err, err
        return
    marker = on_line or edits[0][1].splitlines()[0]
    line = 1 + text[:text.index(marker)].count("\n")
    assert f"bad.toml, line {line} ({where}): " in err, (err, line)
    with pytest.raises(TracerError):  # the same check without the CLI
        mlp.Config(config=str(path))


@pytest.mark.parametrize("args, words", [
    (["--config", "no_such_file.toml"], "config file not found: no_such_file.toml (or name a shipped example: "
                                        "classic_222, softmax_classifier, xor)"),
    (["--config", "clasic_222"], "config file not found: clasic_222"),
])
def test_a_missing_config_file_is_a_one_line_error(tmp_path, run_main, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_main("run", "mlp", *args)
    assert code == 2 and err.count("\n") == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


def test_a_config_that_is_not_utf8_or_is_a_folder(tmp_path, run_main):
    path = tmp_path / "latin.toml"
    path.write_bytes('title = "Año"\n'.encode("latin-1"))
    code, _, err = run_main("run", "mlp", "--config", path, "-o", tmp_path / "o.xlsx")
    assert code == 2 and "not a UTF-8 text file" in err and err.count("\n") == 1
    code, _, err = run_main("run", "mlp", "--config", tmp_path, "-o", tmp_path / "o.xlsx")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_a_bom_is_fine(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert mlp.Config(config=str(path)).iterations == 1


def test_key_lines_finds_keys_not_brackets_in_values():
    text = ('title = "a [b] # c"  # [not] a table\n'
            "[data]\n"
            "inputs = [\n"
            "  [1, 2],\n"
            "  [3, 4],\n"
            "]\n"
            'names.inputs = "u"\n'
            "[[layer]]\n"
            "units = 1\n"
            'note = """\n[training]\n"""\n'
            "[[layer]]\n"
            "units = 2\n"
            "[layer.names]\n"
            "out = 'o'\n")
    lines = key_lines(text)
    assert lines[("title",)] == 1 and lines[("data",)] == 2 and lines[("data", "inputs")] == 3
    assert lines[("data", "names", "inputs")] == 7 and lines[("data", "names")] == 7
    assert lines[("layer", 0)] == 8 and lines[("layer", 0, "units")] == 9
    assert ("training",) not in lines and ("layer", 0, 1) not in lines
    assert lines[("layer", 1)] == 13 and lines[("layer", 1, "units")] == 14
    assert lines[("layer", 1, "names", "out")] == 16


# --- the CLI -------------------------------------------------------------------------------------

def test_run_mlp_without_config_is_the_classic_example(tmp_path, run_main, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main("run", "mlp")
    assert code == 0, err
    assert re.match(r"wrote outputs/mlp\.xlsx: 1 iterations?, ", out) and "E_total 0.30" in out
    assert (tmp_path / "outputs" / "mlp.xlsx").is_file()


@pytest.mark.parametrize("args", [("--config", "softmax_classifier"), ("--config", "xor", "--lang", "es"),
                                  ("--lang", "es", "-o", "mazur.md"), ("--config", "softmax_classifier", "-o", "s.tex")])
def test_run_mlp_examples_and_languages(tmp_path, run_main, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main("run", "mlp", *args)
    assert code == 0, err
    written = Path(re.match(r"wrote (\S+):", out)[1])
    assert (tmp_path / written).is_file()
    if "softmax_classifier" in args:
        assert "L 0.92 -> 0.85 -> 0.78 -> 0.72 -> 0.65" in out
    if written.suffix == ".md":
        text = written.read_text("utf-8")
        assert r"{\text{net}_{h}} = {\text{input}} \cdot {w_{h}} + {b_{1}}" in text and r"E_{\text{total}}" in text


def test_run_mlp_with_a_file_of_ones_own(tmp_path, run_main):
    path = tmp_path / "mine.toml"
    path.write_text(BASE, encoding="utf-8")
    code, out, err = run_main("run", "mlp", "--config", path, "-o", tmp_path / "mine.xlsx")
    assert code == 0 and "E_total 0.30" in out and (tmp_path / "mine.xlsx").is_file()


def test_help_lists_the_examples(run_main):
    code, out, _ = run_main("run", "mlp", "--help")
    assert code == 0 and all(name in out for name in EXAMPLES) and "--config" in out


def test_gradcheck_command(run_main):
    code, out, _ = run_main("gradcheck", "mlp", "--config", "softmax_classifier")
    assert code == 0 and out.rstrip().endswith("OK") and "over 5 iterations" in out


# --- the workbooks' formulas --------------------------------------------------------------------------

# The workbooks' formulas are checked with every other model's in test_portable (RUNS "mlp*").


# --- the dense network's ops --------------------------------------------------------------------------

def test_mlp_ops_do_not_clash_with_other_ops():
    from families import BASIC, GENERATION, LANGUAGE, UPSCALE

    assert set(MLP_OPS) == {"tanh", "tanh_grad", "half_sse", "half_sse_grad", "mse", "mse_grad",
                            "bce_mean", "bce_mean_grad", "soft_xent", "soft_xent_terms"}
    assert not set(MLP_OPS) & (set(BASIC) | set(LANGUAGE) | set(UPSCALE) | set(GENERATION))
    assert all(op.name == name for name, op in MLP_OPS.items())


def _ref_loss(kind, p, y):
    cells = [(float(a), float(b)) for a, b in zip(p.ravel(), y.ravel())]
    if kind == "half_sse":
        return 0.5 * math.fsum((b - a) ** 2 for a, b in cells)
    if kind == "mse":
        return math.fsum((a - b) ** 2 for a, b in cells) / len(cells)
    if kind == "soft_xent":  # −(1/N) Σ t ln p, N the rows
        return -math.fsum(b * math.log(a) for a, b in cells) / p.shape[0]
    return -math.fsum(b * math.log(a) + (1 - b) * math.log(1 - a) for a, b in cells) / len(cells)


@pytest.mark.parametrize("kind", ["half_sse", "mse", "bce_mean", "soft_xent"])
@pytest.mark.parametrize("shape", [(1, 3), (4, 2), (3, 1)])
def test_losses_forward_and_gradient(kind, shape):
    rng = np.random.default_rng([3, len(kind), *shape])
    p, y = rng.uniform(0.05, 0.95, size=shape), rng.uniform(0, 1, size=shape)
    if kind == "soft_xent":  # each row of targets probabilities summing to 1
        y = y / y.sum(axis=1, keepdims=True)
    tape = Tape()
    P, Y = tape.constant("p", p), tape.constant("y", y)
    L = tape.apply(MLP_OPS[kind], P, Y, name="L")
    assert L.shape == (1, 1)
    assert L.value[0, 0] == pytest.approx(_ref_loss(kind.replace("_mean", ""), p, y), rel=1e-13)
    grads = tape.backward(L, {"p": P})
    numeric = np.empty(shape)
    for idx in np.ndindex(shape):
        up, down = p.copy(), p.copy()
        up[idx] += 1e-6
        down[idx] -= 1e-6
        numeric[idx] = (_ref_loss(kind.replace("_mean", ""), up, y) - _ref_loss(kind.replace("_mean", ""), down, y)) / 2e-6
    np.testing.assert_allclose(grads["p"].value, numeric, rtol=1e-6, atol=1e-8)
    tape = Tape()
    P, Y = tape.constant("p", p), tape.constant("y", y)
    L = tape.apply(MLP_OPS[kind], P, Y, name="L")
    with pytest.raises(ValueError, match="no gradient with respect to the targets"):
        tape.backward(L, {"y": Y})


def test_tanh_forward_and_gradient():
    z = np.array([[-2.0, -0.3, 0.0, 0.4, 3.0]])
    tape = Tape()
    Z = tape.constant("z", z)
    A = activations.tanh(Z, name="a")
    np.testing.assert_allclose(A.value, [[math.tanh(v) for v in z[0]]], rtol=1e-15)
    L = tape.apply(losses.HALF_SSE, A, tape.constant("y", np.zeros_like(z)), name="L")  # ½ Σ a²
    g = tape.backward(L, {"z": Z})["z"]
    np.testing.assert_allclose(g.value, np.tanh(z) * (1 - np.tanh(z) ** 2), rtol=1e-13)
    assert g.op is activations.TANH_GRAD


class _Layout:
    def __init__(self):
        self.place = {}


def test_formulas_follow_the_placement():
    tape = Tape()
    p, y = tape.constant("p", np.full((2, 3), 0.5)), tape.constant("y", np.zeros((2, 3)))
    g = tape.constant("g", [[1.0]])
    lay = _Layout()
    lay.place.update({id(p): Place("It 1", 4, 1, 2, 3), id(y): Place("In", 9, 2, 2, 3), id(g): Place("It 1", 0, 5, 1, 1)})
    for kind, expected in [("half_sse", "0.5*SUMPRODUCT(('In'!C10:E11-B5:D6)^2)"),
                           ("mse", "SUMPRODUCT((B5:D6-'In'!C10:E11)^2)/6"),
                           ("bce_mean", "SUM(B11:D12)/6"), ("soft_xent", "SUM(B11:D12)/2")]:
        out = tape.apply(MLP_OPS[kind], p, y, name=kind)
        lay.place[id(out)] = Place("It 1", 20, 1, 1, 1)
        if kind in ("bce_mean", "soft_xent"):  # first its terms, one per output
            terms = out.inputs[2]
            assert terms.name == f"{kind}_terms"
            lay.place[id(terms)] = Place("It 1", 10, 1, 2, 3)
            assert terms.op.formula(Cells(lay, terms), 1, 2) == {
                "bce_mean": "-('In'!E11*LN(D6)+(1-'In'!E11)*LN(1-D6))", "soft_xent": "-'In'!E11*LN(D6)"}[kind]
        assert out.op.formula(Cells(lay, out), 0, 0) == expected
        check_formula(expected.replace("'In'!", "In!"), set())
    grad = tape.apply(losses.MSE_GRAD, p, y, g, name="dp")
    lay.place[id(grad)] = Place("It 1", 30, 1, 2, 3)
    assert losses.MSE_GRAD.formula(Cells(lay, grad), 1, 2) == "F1*2*(D6-'In'!E11)/6"
    # a loss's two blocks must be laid out the same way: a turned row against an unturned one
    lay.place[id(y)] = Place("In", 9, 2, 2, 3, transposed=True)
    out = tape.apply(losses.MSE, p, y, name="mse2")
    lay.place[id(out)] = Place("It 1", 40, 1, 1, 1)
    with pytest.raises(ValueError, match="laid out the same way"):
        out.op.formula(Cells(lay, out), 0, 0)


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_the_wheel_ships_the_examples(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    names = set(zipfile.ZipFile(next(tmp_path.glob("tracer-*.whl"))).namelist())
    assert {f"tracer/data/examples/{n}.toml" for n in EXAMPLES} | {"tracer/data/examples/__init__.py",
                                                                   "tracer/templates/mlp.toml"} <= names
