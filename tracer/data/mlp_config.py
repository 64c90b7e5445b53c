"""An mlp config: a dense network, its data, its loss and its training, fully described by a TOML
file (`tracer run mlp --config FILE.toml`).  `load` reads and checks the file and returns a Spec;
every problem is a TracerError of one line naming the file, the line and the key, e.g.

    my_net.toml, line 14 ([[layer]] 2, activation): unknown activation 'sigmiod' (did you mean 'sigmoid'?)

The keys (the shipped examples in tracer/data/examples/ explain each one in comments):

    title = "..."                      optional, shown on the overview; or one per language:
                                       title = { en = "...", es = "..." }
    [data]    inputs = [[...], ...]    one row per example (N × n₀)
              targets = [[...], ...]   one row per example (N × units of the last layer)
              names = { inputs = "x", targets = "y" }                     optional
    [[layer]] units = 2                one table per layer, in order
              activation = "sigmoid"   identity | sigmoid | tanh | relu | leaky_relu | softmax (last only)
              weights = [[...], ...]   optional (inputs × units); else seeded N(0, 1/inputs)
              bias = [...] or 0.35     optional (one per unit, or one number for all); else zeros
              names = { weights = "W1", bias = "b1", pre = "z1", out = "a1" }   optional
    [loss]    kind = "half_sse"        mse | half_sse | bce | softmax_ce
              name = "E_total"         optional, default "loss"
    [training] lr = 0.5                required, > 0
              iterations = 1           optional, default 1
              optimizer = "sgd"        optional: sgd | adam (beta1, beta2, eps optional)
              frozen = ["b1", "b2"]    optional: parameters that are not trained
              seed = 0                 optional: for weights the file does not give
              leaky_slope = 0.01       optional: the slope of every leaky_relu layer (a named cell)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tracer.errors import TracerError, close_names, read_bytes

EXAMPLES = "tracer.data.examples"  # the package of the shipped example configs
DEFAULT_EXAMPLE = "classic_222"
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
LOSS_KINDS = ("mse", "half_sse", "bce", "softmax_ce")
OPTIMIZERS = ("sgd", "adam")
NAME = re.compile(r"[^\W\d]\w*")  # a tensor name: letters, digits and _, not starting with a digit
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ROLES = {"weights": "the weights", "bias": "the bias", "pre": "the pre-activation", "out": "the output"}

KEYS = {  # the keys each table may hold (by its path; every [[layer]] alike)
    (): ("title", "data", "layer", "loss", "training"),
    ("data",): ("inputs", "targets", "names"),
    ("data", "names"): ("inputs", "targets"),
    ("layer",): ("units", "activation", "weights", "bias", "names"),
    ("layer", "names"): ("weights", "bias", "pre", "out"),
    ("loss",): ("kind", "name"),
    ("training",): ("lr", "iterations", "optimizer", "frozen", "seed", "leaky_slope", "beta1", "beta2", "eps"),
}


@dataclass
class Layer:
    units: int
    activation: str
    weights: np.ndarray | None  # (inputs × units) from the file, or None: seeded
    bias: np.ndarray | None  # (1 × units) from the file, or None: zeros
    weights_name: str
    bias_name: str
    pre_name: str  # the pre-activation z = a·W + b
    out_name: str  # the activation's output; for identity the pre-activation itself (one tensor)


@dataclass
class Spec:
    """A checked config: everything mlp.trace needs.  optimizer, beta1, beta2 and adam_eps are
    what tracer.optim reads."""

    source: str  # the file as messages and the overview name it
    title: str | dict | None  # a text, or one per language
    inputs: np.ndarray  # N × n₀
    targets: np.ndarray  # N × units of the last layer
    inputs_name: str
    targets_name: str
    layers: list
    loss: str
    loss_name: str
    lr: float
    iterations: int
    optimizer: str
    frozen: tuple
    seed: int
    leaky_slope: float
    beta1: float
    beta2: float
    adam_eps: float

    @property
    def uses_leaky(self) -> bool:
        return any(layer.activation == "leaky_relu" for layer in self.layers)

    @property
    def one_hot(self) -> bool:
        """softmax_ce against one-hot rows (a single 1, the correct class), not soft targets."""
        return self.loss == "softmax_ce" and bool(np.all((self.targets == 0) | (self.targets == 1)))


# --- where a key is: its line, found by scanning the text (tomllib gives no positions) ------------

def _key(text: str, pos: int) -> tuple[list[str], int]:
    """The parts of a (dotted, possibly quoted) key starting at pos, and where it ends."""
    parts = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] in "\"'":
            end = text.find(text[pos], pos + 1)
            end = len(text) if end < 0 else end
            parts.append(text[pos + 1:end])
            pos = end + 1
        else:
            m = BARE_KEY.match(text, pos)
            if not m:
                return parts, pos
            parts.append(m.group())
            pos = m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


class _Value:
    """What is still open after a line: brackets of an array or inline table, a multi-line string."""

    def __init__(self):
        self.depth, self.quote = 0, None

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.quote is not None

    def scan(self, line: str, i: int = 0) -> None:
        while i < len(line):
            if self.quote:
                end = line.find(self.quote, i)
                if end < 0:
                    return
                i, self.quote = end + 3, None
            elif line.startswith(('"""', "'''"), i):
                self.quote, i = line[i:i + 3], i + 3
            elif line[i] == "#":
                return
            elif line[i] in "\"'":
                q, i = line[i], i + 1
                while i < len(line) and line[i] != q:
                    i += 2 if q == '"' and line[i] == "\\" else 1
                i += 1
            else:
                self.depth += (line[i] in "[{") - (line[i] in "]}")
                i += 1


def key_lines(text: str) -> dict[tuple, int]:
    """The line (from 1) of every table header and key of a TOML text, by path: ("loss", "kind"),
    ("layer", 1) for the second [[layer]] header, ("layer", 1, "activation") for its key."""
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}  # array of tables -> how many so far
    table: tuple = ()
    value = _Value()

    def resolve(parts):
        path = ()
        for part in parts:
            path += (part,)
            if path in counts:
                path += (counts[path] - 1,)
        return path

    for n, line in enumerate(text.splitlines(), start=1):
        if value.open:
            value.scan(line)
            continue
        body = line.lstrip()
        if not body or body.startswith("#"):
            continue
        if body.startswith("[["):
            parts, _ = _key(body, 2)
            path = resolve(parts[:-1]) + tuple(parts[-1:])
            counts[path] = counts.get(path, 0) + 1
            table = path + (counts[path] - 1,)
            lines.setdefault(path, n)
            lines[table] = n
        elif body.startswith("["):
            table = resolve(_key(body, 1)[0])
            lines.setdefault(table, n)
        else:
            parts, end = _key(body, 0)
            for k in range(1, len(parts) + 1):
                lines.setdefault(table + tuple(parts[:k]), n)
            eq = body.find("=", end)
            if eq >= 0:
                value.scan(body, eq + 1)
    return lines


def place(path: tuple) -> str:
    """How a message names a key: ("layer", 1, "activation") → "[[layer]] 2, activation",
    ("data", "names", "inputs") → "[data], names.inputs", ("title",) → "title"."""
    if not path:
        return ""
    head, rest = path[0], list(path[1:])
    if head == "layer":
        text = "[[layer]]" + (f" {rest.pop(0) + 1}" if rest and isinstance(rest[0], int) else "")
    elif head in ("data", "loss", "training"):
        text = f"[{head}]"
    else:
        return ".".join(map(str, path))
    return f"{text}, {'.'.join(map(str, rest))}" if rest else text


def _count(n: int, word: str) -> str:
    """3 rows, 1 row."""
    return f"{n} {word}{'s' * (n != 1)}"


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


# --- reading and checking ----------------------------------------------------------------------

def examples() -> list[str]:
    """The names of the shipped example configs."""
    return sorted(p.name[:-5] for p in resources.files(EXAMPLES).iterdir() if p.name.endswith(".toml"))


def read(source: str | None) -> tuple[str, str]:
    """(the name messages use, the text) of a config file, or of a shipped example by name."""
    source = DEFAULT_EXAMPLE if source is None else str(source)
    path = Path(source)
    if not path.exists():
        stem = source[:-5] if source.endswith(".toml") else source
        if stem in examples():
            return f"{stem}.toml", resources.files(EXAMPLES).joinpath(f"{stem}.toml").read_text("utf-8")
        raise TracerError(f"config file not found: {source} (or name a shipped example: {', '.join(examples())})")
    data = read_bytes(path, source, "a config")
    try:
        return source, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TracerError(f"{source}: not a UTF-8 text file") from None


def load(source: str | None) -> Spec:
    """Read and check the config `source` (a path, a shipped example's name, None: the default
    example)."""
    name, text = read(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TracerError(f"{name}: not valid TOML: {exc}") from None
    return _Reader(name, text).spec(data)


class _Reader:
    def __init__(self, source: str, text: str):
        self.source, self.lines = source, key_lines(text)

    def fail(self, path: tuple, message: str):
        """Stop with a one-line message: the file, the line of the key (or of its table), the key."""
        line = next((self.lines[path[:k]] for k in range(len(path), 0, -1) if path[:k] in self.lines), None)
        where = place(path)
        at = (f", line {line} ({where})" if line and where else f", line {line}" if line
              else f" ({where})" if where else "")
        raise TracerError(f"{self.source}{at}: {message}")

    # -- values --
    def table(self, value, path: tuple, required=()) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected a table, got {_show(value)}")
        known = KEYS[tuple(p for p in path if not isinstance(p, int))]
        for key in value:
            if key not in known:
                close = close_names(key, known, 1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                self.fail(path + (key,), f"unknown key {key!r} ({hint})")
        for key in required:
            if key not in value:
                self.fail(path, f"missing key {key!r}")
        return value

    def number(self, value, path: tuple, at: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(path, f"{at}expected a number, got {_show(value)}")
        return float(value)

    def integer(self, value, path: tuple, least: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number, got {_show(value)}")
        if value < least:
            self.fail(path, f"must be at least {least} (got {value})")
        return value

    def choice(self, value, path: tuple, choices) -> str:
        if not isinstance(value, str) or value not in choices:
            close = close_names(str(value), choices, 1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(choices)}"
            self.fail(path, f"unknown {path[-1]} {_show(value)} ({hint})")
        return value

    def name(self, value, path: tuple) -> str:
        if not isinstance(value, str) or not NAME.fullmatch(value):
            self.fail(path, f"expected a name of letters, digits and _ that starts with a letter, got {_show(value)}")
        return value

    def matrix(self, value, path: tuple, what: str) -> np.ndarray:
        """A list of rows of numbers, all equally long."""
        if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
            self.fail(path, f"expected a list of rows ({what}), e.g. [[0.05, 0.10]], got {_show(value)}")
        for i, row in enumerate(value):
            if len(row) != len(value[0]) or not row:
                self.fail(path, f"row {i + 1} has {_count(len(row), 'value')}, row 1 has {len(value[0])}: "
                                "all rows must be equally long")
            for j, v in enumerate(row):
                self.number(v, path, f"row {i + 1}, column {j + 1}: ")
        return np.array(value, dtype=np.float64)

    def shape(self, array: np.ndarray, path: tuple, rows: int, cols: int, why: str) -> None:
        if array.shape != (rows, cols):
            self.fail(path, f"expected {_count(rows, 'row')} of {_count(cols, 'value')} ({why}), "
                            f"got {_count(array.shape[0], 'row')} of {array.shape[1]}")

    # -- the file --
    def spec(self, data: dict) -> Spec:
        self.table(data, ())
        for key in ("data", "layer", "loss", "training"):
            if key not in data:
                self.fail((), "missing the [[layer]] tables (one per layer)" if key == "layer"
                          else f"missing the [{key}] table")
        title = data.get("title")
        if isinstance(title, dict):  # one per language
            if not title or not all(isinstance(v, str) for v in title.values()):
                self.fail(("title",), f"expected texts in quotes, one per language (en = \"…\", es = \"…\"), got {_show(title)}")
        elif title is not None and not isinstance(title, str):
            self.fail(("title",), f"expected a text in quotes, got {_show(title)}")
        names: dict[str, tuple] = {}  # each tensor name -> (its path, what it names, given in the file)
        x, y, x_name, y_name = self.data(data["data"], names)
        layers = self.layers(data["layer"], x.shape[1], names)
        kind, loss_name = self.loss(data["loss"], layers, y, names)
        self.shape(y, ("data", "targets"), x.shape[0], layers[-1].units,
                   "one row per example, one value per unit of the last layer")
        training = self.training(data["training"], layers, names)
        return Spec(self.source, title, x, y, x_name, y_name, layers, kind, loss_name, **training)

    def claim(self, names: dict, name: str, path: tuple, what: str, given: bool) -> str:
        """Record that `name` names `what`; a name used twice is an error at the given one."""
        if name in names:
            other_path, other, other_given = names[name]
            if not given and other_given:
                path, what, other, given = other_path, other, what, other_given
            self.fail(path, f"the name {name!r} is already taken by {other}" + ("" if given else " (a default name)"))
        names[name] = (path, what, given)
        return name

    def data(self, table, names: dict):
        path = ("data",)
        table = self.table(table, path, required=("inputs", "targets"))
        x = self.matrix(table["inputs"], path + ("inputs",), "one row of inputs per example")
        y = self.matrix(table["targets"], path + ("targets",), "one row of targets per example")
        if y.shape[0] != x.shape[0]:
            self.fail(path + ("targets",), f"{_count(y.shape[0], 'row')} of targets for {_count(x.shape[0], 'row')} "
                                           "of inputs: one row per example")
        given = self.table(table.get("names", {}), path + ("names",))
        chosen = []
        for key, default, what in (("inputs", "x", "the inputs"), ("targets", "y", "the targets")):
            at = path + ("names", key)
            name = self.name(given[key], at) if key in given else default
            chosen.append(self.claim(names, name, at, what, key in given))
        return x, y, *chosen

    def layers(self, tables, fan_in: int, names: dict) -> list:
        if not isinstance(tables, list):
            self.fail(("layer",), "write each layer as its own [[layer]] table")
        layers = []
        for k, table in enumerate(tables):
            path = ("layer", k)
            table = self.table(table, path, required=("units", "activation"))
            units = self.integer(table["units"], path + ("units",), 1)
            activation = self.choice(table["activation"], path + ("activation",), ACTIVATIONS)
            if activation == "softmax" and k + 1 < len(tables):
                self.fail(path + ("activation",), f"softmax only on the last layer (this is layer {k + 1} of {len(tables)})")
            if activation == "softmax" and units < 2:
                self.fail(path + ("units",), "a softmax layer needs at least 2 units (one per class)")
            weights = bias = None
            if "weights" in table:
                weights = self.matrix(table["weights"], path + ("weights",), "one row per input of the layer")
                self.shape(weights, path + ("weights",), fan_in, units,
                           f"one row per input of layer {k + 1}, one value per unit")
            if "bias" in table:
                value = table["bias"]
                if isinstance(value, list):
                    bias = np.array([[self.number(v, path + ("bias",), f"value {j + 1}: ") for j, v in enumerate(value)]])
                    self.shape(bias, path + ("bias",), 1, units, "one value per unit, or one number for every unit")
                else:
                    bias = np.full((1, units), self.number(value, path + ("bias",)))
            given = self.table(table.get("names", {}), path + ("names",))
            n = k + 1
            chosen = {key: self.name(given[key], path + ("names", key)) if key in given else f"{letter}{n}"
                      for key, letter in (("weights", "W"), ("bias", "b"), ("pre", "z"), ("out", "a"))}
            keys = ["weights", "bias", "pre", "out"]
            if activation == "identity":  # one tensor: the output is the pre-activation, named by `out` if given
                key = "out" if "out" in given else "pre"
                chosen["pre"] = chosen["out"] = chosen[key]
                keys = ["weights", "bias", key]
            for key in keys:
                self.claim(names, chosen[key], path + ("names", key), f"{ROLES[key]} of layer {n}", key in given)
            layers.append(Layer(units, activation, weights, bias, chosen["weights"], chosen["bias"],
                                chosen["pre"], chosen["out"]))
            fan_in = units
        if not layers:
            self.fail(("layer",), "the network needs at least one [[layer]]")
        return layers

    def loss(self, table, layers: list, y: np.ndarray, names: dict):
        path = ("loss",)
        table = self.table(table, path, required=("kind",))
        kind = self.choice(table["kind"], path + ("kind",), LOSS_KINDS)
        last = layers[-1].activation
        if kind == "softmax_ce" and last != "softmax":
            self.fail(path + ("kind",), f"softmax_ce needs a softmax output: the last [[layer]] has activation {last!r}")
        if kind == "bce" and last != "sigmoid":
            self.fail(path + ("kind",), f"bce needs a sigmoid output (between 0 and 1): the last [[layer]] has activation {last!r}")
        at = ("data", "targets")
        if kind == "bce" and not np.all((y >= 0) & (y <= 1)):
            self.fail(at, "with bce every target must be between 0 and 1")
        if kind == "softmax_ce":
            bad = np.flatnonzero((y < 0).any(axis=1) | (np.abs(y.sum(axis=1) - 1) > 1e-9))
            if bad.size:
                self.fail(at, f"row {bad[0] + 1}: with softmax_ce each row of targets must be probabilities "
                              "summing to 1 (one-hot: a single 1, the correct class)")
        name = self.name(table["name"], path + ("name",)) if "name" in table else "loss"
        self.claim(names, name, path + ("name",), "the loss", "name" in table)
        return kind, name

    def training(self, table, layers: list, names: dict) -> dict:
        path = ("training",)
        table = self.table(table, path, required=("lr",))
        lr = self.number(table["lr"], path + ("lr",))
        if not lr > 0:
            self.fail(path + ("lr",), f"the learning rate must be positive (got {table['lr']})")
        optimizer = self.choice(table.get("optimizer", "sgd"), path + ("optimizer",), OPTIMIZERS)
        iterations = self.integer(table.get("iterations", 1), path + ("iterations",), 1)
        seed = self.integer(table.get("seed", 0), path + ("seed",), 0)
        slope = self.number(table.get("leaky_slope", 0.01), path + ("leaky_slope",))
        if slope < 0:
            self.fail(path + ("leaky_slope",), f"must be at least 0 (got {slope:g})")
        beta = {}
        for key, default in (("beta1", 0.9), ("beta2", 0.999)):
            beta[key] = self.number(table.get(key, default), path + (key,))
            if not 0 <= beta[key] < 1:
                self.fail(path + (key,), f"must be at least 0 and below 1 (got {beta[key]:g})")
        eps = self.number(table.get("eps", 1e-8), path + ("eps",))
        if not eps > 0:
            self.fail(path + ("eps",), f"must be positive (got {eps:g})")
        reserved = {"lr": "the learning rate"}
        if any(layer.activation == "leaky_relu" for layer in layers):  # the named cells of the run
            reserved["slope"] = "the LeakyReLU slope"
        if optimizer == "adam":
            reserved |= {"t": "Adam's step counter", "beta1": "Adam's β₁", "beta2": "Adam's β₂", "adam_eps": "Adam's ε"}
        for name, what in reserved.items():
            if name in names:
                at, owner, _ = names[name]
                self.fail(at, f"the name {name!r} is reserved for {what}: choose another name for {owner}")
        params = [n for layer in layers for n in (layer.weights_name, layer.bias_name)]
        frozen = table.get("frozen", [])
        if not isinstance(frozen, list):
            self.fail(path + ("frozen",), f"expected a list of parameter names, e.g. [\"b1\", \"b2\"], got {_show(frozen)}")
        for k, name in enumerate(frozen):
            if name not in params:
                self.fail(path + ("frozen",), f"item {k + 1}: {_show(name)} is not a parameter (the parameters: {', '.join(params)})")
        if set(frozen) >= set(params):
            self.fail(path + ("frozen",), "every parameter is frozen: nothing would be trained")
        return {"lr": lr, "iterations": iterations, "optimizer": optimizer, "seed": seed, "leaky_slope": slope,
                "frozen": tuple(n for n in params if n in frozen), "adam_eps": eps, **beta}
