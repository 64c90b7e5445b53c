"""A PyTorch model traced with tracer's own ops: the user's nn.Module, data, loss and optimizer.

    src = load("my_model.py", seed)          # the file defines model, data = (x, y), loss_fn, …
    program = Program(src)                    # captured, every node checked, shapes known
    program.size()                            # the run's size, before any work
    tape = program.trace(warmup, train)       # the same steps on tracer's tape, as formulas

Capture: torch.fx (symbolic tracing), not torch.export.  fx keeps each call of a torch.nn module
as one node named by its attribute path (encoder.0), so an nn.Linear becomes tracer's one
linear_nt op on the module's own weight and bias, named encoder.0.weight and encoder.0.bias, and a
loss module stays one loss; every node keeps the line of the user's file it came from (for the
tensors' names and for errors).  torch.export lowers the same model to ATen ops (addmm, t,
expand, …), renames the parameters (p_encoder_0_weight) and would show the compiler's steps, not
the code the student wrote.  Both refuse control flow that depends on tensor values.

Layout: tracer's tensors are 2-D.  A 0-D tensor is a 1 × 1 cell, a 1-D float tensor a row
(1 × n: it broadcasts against a matrix as PyTorch's does), a 1-D integer tensor (class or token
ids) a column (n × 1: the ids beside the rows they belong to); a tensor of more dimensions is
refused, naming its line.  Random draws in forward (torch.randn_like, …) are drawn by PyTorch
itself, in the order its own forward would draw them, and recorded as the iteration's constants.

PyTorch is imported here only, and only when a run needs it (`need_torch`).
"""

from __future__ import annotations

import ast
import math
import operator
import re
import runpy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracer.core import activations as act
from tracer.core import embeddings, linalg, losses, normalization
from tracer.core import optimizers as optim
from tracer.core.op import COPY, record
from tracer.core.size import Size, estimate
from tracer.errors import TracerError

INSTALL = 'PyTorch is not installed: pip install "tracer[torch]" (or pip install torch; the CPU build is enough)'
FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def need_torch():
    """The torch module, or the one line saying how to install it."""
    try:
        import torch
        import torch.fx  # noqa: F401
        from torch.fx.passes import shape_prop  # noqa: F401
    except ImportError:
        raise TracerError(INSTALL) from None
    return torch


# --- what the user gives: a file, or the objects from Python ---------------------------------------

@dataclass
class Source:
    """A model to trace: the module, its inputs x and targets y (tensors), the loss (a module such
    as nn.MSELoss() or a function loss_fn(output, y)), the optimizer (None: SGD, lr 0.01) and the
    number of traced iterations; `path`: the user's file, when there is one."""

    model: object
    x: object
    y: object
    loss_fn: object
    optimizer: object = None
    iterations: int = 4
    path: str | None = None

    @property
    def label(self) -> str:
        return Path(self.path).name if self.path else "your code"


def load(path, seed: int = 0) -> Source:
    """Run the user's file (after torch.manual_seed(seed), so its initial weights are the same each
    time) and take what it defines: model, data = (x, y), loss_fn, and optionally optimizer and
    iterations."""
    torch = need_torch()
    file = Path(path)
    if not file.is_file():
        raise TracerError(f"module file not found: {path}")
    torch.manual_seed(seed)
    try:
        found = runpy.run_path(str(file), run_name="tracer_module")
    except SyntaxError as e:
        raise TracerError(f"{file.name} line {e.lineno}: SyntaxError: {e.msg}") from None
    except Exception as e:  # the user's code failed: say where, in one line
        line = _line_of(e, file)
        raise TracerError(f"{file.name}{f' line {line}' if line else ''}: {type(e).__name__}: {_first_line(e)}") from None
    missing = [k for k in ("model", "data", "loss_fn") if k not in found]
    if missing:
        raise TracerError(f"{file.name} defines no `{missing[0]}`: it must define model (an nn.Module), "
                          "data = (x, y) (tensors) and loss_fn (e.g. nn.MSELoss()); optionally optimizer and iterations")
    data = found["data"]
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TracerError(f"{file.name}: data must be a pair (x, y) of tensors: the inputs and the targets")
    src = Source(found["model"], data[0], data[1], found["loss_fn"], found.get("optimizer"),
                 found.get("iterations", 4), str(file))
    check(src)
    return src


def check(src: Source) -> None:
    """What the objects must be, each a one-line error."""
    torch = need_torch()
    where = src.label
    if not isinstance(src.model, torch.nn.Module):
        raise TracerError(f"{where}: model must be a torch.nn.Module (got {type(src.model).__name__})")
    for what, t in (("x (the inputs)", src.x), ("y (the targets)", src.y)):
        if not isinstance(t, torch.Tensor):
            raise TracerError(f"{where}: {what} must be a tensor (got {type(t).__name__})")
        if t.dim() > 2:
            raise TracerError(f"{where}: {what} has {t.dim()} dimensions {tuple(t.shape)}: a sheet shows at most 2 "
                              "(one row per example)")
    if not callable(src.loss_fn):
        raise TracerError(f"{where}: loss_fn must be a loss module such as nn.MSELoss() or a function (output, y) -> loss")
    if src.optimizer is not None and not isinstance(src.optimizer, torch.optim.Optimizer):
        raise TracerError(f"{where}: optimizer must be a torch.optim optimizer (got {type(src.optimizer).__name__})")
    if isinstance(src.iterations, bool) or not isinstance(src.iterations, int) or src.iterations < 1:
        raise TracerError(f"{where}: iterations must be a whole number of at least 1 (got {src.iterations!r})")


def _first_line(e) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def _line_of(e, file: Path) -> int | None:
    """The line of `file` where the exception e was raised (its innermost frame in that file)."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == file.resolve()]
    return lines[-1] if lines else None


# --- capture: torch.fx, the shapes of every node ----------------------------------------------------

def capture(src: Source):
    """The fx graph of loss_fn(model(x), y), every node's output shape and dtype filled in by running
    it once in PyTorch (the random generator's state put back, so no draw is used up)."""
    torch = need_torch()
    from torch.fx.passes.shape_prop import ShapeProp

    class Objective(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = src.model
            if isinstance(src.loss_fn, torch.nn.Module):
                self.loss_fn = src.loss_fn
            else:
                self.__dict__["loss_call"] = src.loss_fn

        def forward(self, x, y):
            loss = self.loss_fn if "loss_fn" in self._modules else self.__dict__["loss_call"]
            return loss(self.model(x), y)

    class Shaped(torch.fx.Proxy):
        """The data's proxy, with the data's own shape and dtype: a loop over x.shape[0] or len(x)
        unrolls (the data is fixed, so is its shape), torch.zeros(…, dtype=x.dtype) is a constant."""

        @property
        def shape(self):
            return self.known.shape

        @property
        def dtype(self):
            return self.known.dtype

        def size(self, dim=None):
            return self.known.shape if dim is None else self.known.shape[dim]

        def dim(self):
            return self.known.dim()

        def __len__(self):
            return self.known.shape[0]

    data = {"x": src.x, "y": src.y}

    class Tracer(torch.fx.Tracer):
        def create_proxy(self, kind, target, *args, **kwargs):
            proxy = super().create_proxy(kind, target, *args, **kwargs)
            if kind == "placeholder":
                proxy.__class__, proxy.known = Shaped, data[target]
            return proxy

    tracer = Tracer()
    tracer.record_stack_traces = True
    root = Objective()
    try:
        graph = tracer.trace(root)
    except Exception as e:  # control flow on tensor values, an unsupported Python construct
        raise TracerError(f"torch.fx cannot trace {src.label}: {type(e).__name__}: {_first_line(e)}") from None
    gm = torch.fx.GraphModule(root, graph)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            ShapeProp(gm).propagate(src.x, src.y)
    except Exception as e:
        raise TracerError(f"{src.label}: PyTorch could not run the model on the data: {type(e).__name__}: "
                          f"{_first_line(e)}") from None
    return gm


def where(node, path: str | None) -> tuple[str, int] | None:
    """(file, line) of the user's code a node came from: the innermost frame in the user's file
    (or, without one, outside torch and tracer)."""
    frames = [(f, int(n)) for f, n in FRAME.findall(node.stack_trace or "")]
    if path is not None:
        mine = [(f, n) for f, n in frames if Path(f).resolve() == Path(path).resolve()]
        if mine:
            return mine[-1]
    theirs = [(f, n) for f, n in frames if not _library(f)]
    return theirs[-1] if theirs else None


def _library(file: str) -> bool:
    """Whether a frame's file is PyTorch's, tracer's or Python's own (not the user's code)."""
    import sysconfig

    torch = need_torch()
    if file.startswith("<"):
        return True
    path = Path(file).resolve()
    roots = (Path(torch.__file__).resolve().parent, Path(__file__).resolve().parents[1],
             Path(sysconfig.get_paths()["stdlib"]).resolve())
    return any(path.is_relative_to(root) for root in roots)


def statements(file: str) -> dict[int, ast.stmt]:
    """line → the innermost simple statement covering it, in a Python file (empty if unreadable)."""
    try:
        tree = ast.parse(Path(file).read_text("utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return, ast.Expr)):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                old = found.get(line)
                if old is None or old.lineno <= node.lineno:
                    found[line] = node
    return found


BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.MatMult: "matmul", ast.Pow: "pow"}


def _root_kind(expr) -> str | None:
    """What the root of an expression calls: tanh for torch.tanh(…), ln for self.ln(…), add for a + b."""
    if isinstance(expr, ast.Call):
        f = expr.func
        return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if isinstance(expr, ast.BinOp):
        return BINARY.get(type(expr.op))
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
        return "neg"
    if isinstance(expr, ast.Subscript):
        return "getitem"
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def _kinds(node) -> set:
    """The names a node answers to: a module call each part of its path (encoder, 0), a function
    or method its name."""
    if node.op == "call_module":
        return set(node.target.split("."))
    t = node.target
    return {t} if isinstance(t, str) else {getattr(t, "__name__", "")}


def assigned(stmt) -> str | None:
    """The variable a statement assigns, when it assigns one name."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


# --- the values: a tracer tensor and the shape PyTorch gives it --------------------------------------

@dataclass
class Val:
    """A PyTorch tensor on the tape: `t` its 2-D tensor, `shape` PyTorch's shape; `ids`: an integer
    tensor (class or token ids), a 1-D one held as a column."""

    t: object
    shape: tuple
    ids: bool = False


def two_d(shape, ids=False) -> tuple[int, int]:
    """The 2-D shape a tensor of PyTorch's `shape` has on the tape."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return (1, 1)
    if len(shape) == 1:
        return (shape[0], 1) if ids else (1, shape[0])
    if len(shape) == 2:
        return shape
    raise ValueError(f"{len(shape)}-D")


class Unsupported(Exception):
    """A node tracer has no op for: its description (the op) and why."""


def _describe(node, modules) -> str:
    if node.op == "call_module":
        return f"nn.{type(modules[node.target]).__name__}"
    if node.op == "call_method":
        return f".{node.target}()"
    target = node.target
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", "") or ""
    if module.startswith("torch.nn.functional"):
        return f"F.{name}"
    if module.startswith("torch") or "built-in method" in repr(target):
        return f"torch.{name}"
    return OPERATORS.get(target, name)


OPERATORS = {operator.getitem: "indexing [ ]", operator.add: "+", operator.sub: "-", operator.mul: "*",
             operator.truediv: "/", operator.matmul: "@", operator.neg: "unary -", operator.pow: "**"}  # as written


# --- the program: every node mapped to tracer's ops -----------------------------------------------

ARITHMETIC = {"add", "sub", "mul", "truediv", "div", "pow", "rsub", "matmul"}  # python numbers there become cells
RESERVED = {"x", "y", "loss", "lr", "t", "momentum", "weight_decay", "beta1", "beta2", "adam_eps"}


@dataclass
class Hyper:
    """A scalar the model uses: its tensor name, defined name, value and text."""

    name: str
    cell: str
    value: float
    en: str
    es: str
    symbol: str = ""


class Program:
    """The captured objective, checked node by node, ready to record its steps on a tape."""

    def __init__(self, src: Source):
        self.torch = torch = need_torch()
        self.src = src
        self.gm = capture(src)
        self.graph = self.gm.graph
        self.modules = dict(self.gm.named_modules())
        self.texts: dict[str, dict] = {}
        self.params = dict(src.model.named_parameters())  # name → torch parameter
        self.buffers = dict(src.model.named_buffers())
        self.trainable = [n for n, p in self.params.items() if p.requires_grad and self._used(n)]
        self.phase = {n: self._phase(n) for n in self.graph.nodes}
        self.loc = {n: where(n, src.path) for n in self.graph.nodes}
        self.shape = {n: self._meta(n) for n in self.graph.nodes}
        self.hypers: dict[tuple, Hyper] = {}  # (kind, key) → the cell
        self.names = self._names()
        self.optimizer = OptimizerSpec(src, self.params, self.trainable)
        self._check()
        self.optimizer.collect(self)

    # the nodes: where they come from, what they are called -----------------------------------------

    def _phase(self, node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        inside = [k for k in stack if k == "model" or str(k).startswith("model.")]
        return "forward" if inside or node.op == "placeholder" else "loss"

    def _meta(self, node):
        meta = node.meta.get("tensor_meta")
        return (tuple(meta.shape), meta.dtype) if hasattr(meta, "shape") else None

    def _used(self, name: str) -> bool:
        """Whether a parameter's module (or the parameter itself) appears in the graph."""
        path = f"model.{name}"
        for node in self.graph.nodes:
            if node.op == "get_attr" and node.target == path:
                return True
            if node.op == "call_module" and path.startswith(node.target + "."):
                return True
        return False

    def where_text(self, node) -> str:
        loc = self.loc.get(node)
        if loc:
            return f"line {loc[1]} of {Path(loc[0]).name}"
        if node.op == "call_module":  # inside an nn.Sequential: no line of the user's own
            return f"{node.target} of {self.src.label}"
        return f"a line of {self.src.label}"

    def _names(self) -> dict:
        """A unique, readable tensor name per node: x and y for the data, the loss `loss`, a module's
        output its attribute path (encoder.0), the last value of a statement `h = …` its variable
        (h, then h_2 … when a loop assigns it again), anything else fx's own name (mul_1)."""
        stmts = {}
        for node in self.graph.nodes:
            loc = self.loc[node]
            if loc and loc[0] not in stmts:
                stmts[loc[0]] = statements(loc[0])
        loss_node = next(n for n in self.graph.nodes if n.op == "output").args[0]
        taken = set(RESERVED) | set(self.params) | set(self.buffers)
        names, nodes = {}, list(self.graph.nodes)

        def unique(base):
            base = re.sub(r"[\s/]+", "_", base) or "t"
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
            return name

        def stmt_of(node):
            loc = self.loc.get(node)
            return stmts.get(loc[0], {}).get(loc[1]) if loc else None

        def is_value(node):
            """Whether the node is the value its statement assigns: of the statement's outermost
            kind (the call or operator at the root of its expression) and not itself an operand of
            another node of that kind in the same statement (a loop's h = tanh(…) each time)."""
            stmt = stmt_of(node)
            root = getattr(stmt, "value", None)
            kind = _root_kind(root) if root is not None else None
            if kind is None or kind not in _kinds(node):
                return False
            return not any(stmt_of(u) is stmt and kind in _kinds(u) for u in node.users)

        for node in nodes:
            if node.op == "placeholder":
                names[node] = "x" if node.target == "x" else "y"
                continue
            if node.op == "output" or (node.op == "get_attr" and _short(node.target) in taken):
                continue
            if node is loss_node:
                names[node] = "loss"
                continue
            var = assigned(stmt_of(node)) if is_value(node) else None
            if var:
                names[node] = unique(var)
            elif node.op == "call_module":
                names[node] = unique(_short(node.target))
            else:
                names[node] = unique(re.sub(r"^_tensor_constant", "const", node.name))
        return names

    def _check(self) -> None:
        """Every node has an op, every tensor at most 2-D, before any work: else one line naming
        the op and the line of the user's code.  Each node's scalar cells are made on the way (a
        number in the code, a module's setting): they live on the inputs."""
        for node in self.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            try:
                if _base(node) in ARITHMETIC:
                    for a in node.args:
                        if isinstance(a, (int, float)) and not isinstance(a, bool):
                            self.number(a)
                handler(self, node)(self, node, None, node.args, node.kwargs, collect=True)
                if self.shape[node] is not None:
                    two_d(self.shape[node][0])
            except Unsupported as e:
                self.refuse(node, str(e))
            except ValueError as e:
                self.refuse(node, f"gives a {e} tensor {self.shape[node][0]}: a sheet shows tensors of at most 2 "
                                  "dimensions (one row per example)")
        if self.optimizer.error:
            raise TracerError(self.optimizer.error)

    def refuse(self, node, why: str):
        where = self.where_text(node)
        raise TracerError(f"{_describe(node, self.modules)} at {where} is not supported: {why}")

    # scalars: cells on the overview -----------------------------------------------------------------

    def hyper(self, kind: str, key, value: float, en: str, es: str, symbol: str = "") -> Hyper:
        """The named cell of a scalar (one per kind and key): a number in the code, a module's
        setting (LeakyReLU's slope, LayerNorm's ε), an optimizer's hyperparameter."""
        if (kind, key) not in self.hypers:
            if kind == "num":
                text = _number(value)
                name = text
                cell = "num_" + text.replace("-", "m").replace(".", "_").replace("+", "")
            else:
                name = f"{kind}[{key}]" if key else kind
                cell = re.sub(r"[^A-Za-z0-9_.]", "_", f"{kind}_{key}" if key else kind)
            self.hypers[(kind, key)] = Hyper(name, cell, float(value), en, es, symbol or name)
        return self.hypers[(kind, key)]

    def number(self, value) -> Hyper:
        text = _number(value)
        return self.hyper("num", text, value, f"the number {text}, as written in `{self.src.label}`",
                          f"el número {text}, tal como está escrito en `{self.src.label}`")

    # recording --------------------------------------------------------------------------------------

    def record_inputs(self, tape) -> dict:
        """The inputs sheet: data, parameters, buffers, the cells of every scalar; the parameters
        returned by name."""
        torch = self.torch
        self.data = {}
        for name, t in (("x", self.src.x), ("y", self.src.y)):
            ids = not torch.is_floating_point(t)
            value = t.detach().to(torch.float64).numpy().reshape(two_d(t.shape, ids))
            self.data[name] = Val(tape.constant(name, value, role="data", **({"integer": True} if ids else {})),
                                  tuple(t.shape), ids)
        p = {}
        for name, param in self.params.items():
            value = param.detach().to(torch.float64).numpy().reshape(two_d(param.shape))
            p[name] = tape.constant(name, value, role="param", source="torch")
        self.consts = {name: tape.constant(name, b.detach().to(torch.float64).numpy().reshape(two_d(b.shape)),
                                           role="data") for name, b in self.buffers.items()}
        for node in self.graph.nodes:  # tensors the code makes from numbers (torch.zeros(3)): constants
            if node.op == "get_attr" and _short(node.target) not in self.params and _short(node.target) not in self.buffers:
                value = getattr(self.gm, node.target)
                self.consts[node.target] = tape.constant(self.names[node], value.detach().to(torch.float64).numpy()
                                                         .reshape(two_d(value.shape)), role="data")
        self.cells = {}
        for h in self.hypers.values():
            self.cells[h.name] = tape.constant(h.name, [[h.value]], role="hyper", defined_name=h.cell)
        return p

    def zeros(self, name, n):
        """A row of n zeros, a constant of the iteration (a recurrent layer's h_0, c_0)."""
        if name not in self.texts:
            self.texts[name] = {"symbol": name, "en": "the initial state: zeros", "es": "el estado inicial: ceros"}
        return self.tape.constant(name, np.zeros((1, n)), role="data")

    def cell(self, h: Hyper):
        return self.cells[h.name]

    def forward(self, tape, p: dict):
        """Record one forward pass and the loss; returns the loss tensor."""
        torch = self.torch
        self.tape, self.held, env = tape, [], {}
        for node in self.graph.nodes:
            if node.op == "placeholder":
                env[node] = self.data["x" if node.target == "x" else "y"]
            elif node.op == "get_attr":
                env[node] = self._attr(node, p)
            elif node.op == "output":
                loss = env[node.args[0]]
                if not isinstance(loss, Val) or loss.t.shape != (1, 1):
                    raise TracerError(f"{self.src.label}: loss_fn must return one number (a 0-D tensor)")
                return loss.t
            else:
                tape.at(self.phase[node])
                args = torch.fx.node.map_arg(node.args, env.__getitem__)
                kwargs = torch.fx.node.map_arg(node.kwargs, env.__getitem__)
                env[node] = handler(self, node)(self, node, self.names[node], args, kwargs, p=p)
        raise AssertionError("a graph without an output")

    def _attr(self, node, p):
        name = _short(node.target)
        if name in p:
            return Val(p[name], tuple(self.params[name].shape))
        if name in self.buffers:
            return Val(self.consts[name], tuple(self.buffers[name].shape))
        return Val(self.consts[node.target], tuple(getattr(self.gm, node.target).shape))

    def draw(self, node, name, fn, args, kwargs):
        """A random draw of forward, made by PyTorch (the same numbers its own forward draws next)
        and recorded as a constant of the iteration."""
        torch = self.torch
        shape, dtype = self.shape[node]
        args = [torch.empty(v.shape, dtype=dtype) if isinstance(v, Val) else v for v in args]
        value = fn(*args, **kwargs)
        t = value.detach().to(torch.float64).numpy().reshape(two_d(shape))
        return Val(self.tape.constant(name, t, role="draw"), shape)

    def trace_texts(self) -> dict:
        """{name: {symbol, en, es}} for every tensor the run records (tape.meta["tensors"])."""
        texts = dict(self.texts)
        for name, param in self.params.items():
            texts[name] = param_text(name, param, self.modules.get("model." + name.rsplit(".", 1)[0]),
                                     name in self.trainable, self.src.label)
        for name in self.buffers:
            texts[name] = {"symbol": name, "en": f"the buffer `{name}` of the model (a constant)",
                           "es": f"el búfer `{name}` del modelo (una constante)"}
        for h in self.hypers.values():
            texts[h.name] = {"symbol": h.symbol, "en": h.en, "es": h.es}
        x, y = self.src.x, self.src.y
        texts["x"] = {"symbol": "x", "en": f"the inputs x {tuple(x.shape)}, as `{self.src.label}` gives them",
                      "es": f"las entradas x {tuple(x.shape)}, tal como las da `{self.src.label}`"}
        ids = not self.torch.is_floating_point(y)
        texts["y"] = {"symbol": "y", "en": f"the targets y {tuple(y.shape)}" + ("; class ids, counted from 0" if ids else ""),
                      "es": f"los objetivos y {tuple(y.shape)}" + ("; ids de clase, contados desde 0" if ids else "")}
        texts["loss"] = {"symbol": "L", "en": f"the loss, `loss_fn(model(x), y)` (`{_loss_words(self)}`)",
                         "es": f"la pérdida, `loss_fn(model(x), y)` (`{_loss_words(self)}`)"}
        for node, name in self.names.items():
            if name in texts or node.op == "placeholder":
                continue
            texts[name] = self.node_text(node, name)
        texts |= self.optimizer.texts(self)
        return texts

    def code(self) -> str:
        """The text of the user's files the graph came from (the workbook quotes their lines)."""
        files = {loc[0] for loc in self.loc.values() if loc} | ({self.src.path} if self.src.path else set())
        texts = []
        for f in sorted(files):
            try:
                texts.append(Path(f).read_text("utf-8"))
            except (OSError, UnicodeDecodeError):
                pass
        return "\n".join(texts)

    def module_outputs(self) -> dict[str, str]:
        """{module path: the name of its output's tensor} (the first call of each module)."""
        out = {}
        for node, name in self.names.items():
            if node.op == "call_module" and node.target.startswith("model."):
                out.setdefault(_short(node.target), name)
        return out

    def param_symbol(self, name) -> str:
        return param_text(name, self.params[name], self.modules.get("model." + name.rsplit(".", 1)[0]), True, "")["symbol"]

    def node_text(self, node, name) -> dict:
        """What a node's tensor is, in words, with its line of code.  Code (names, the line) is
        in backticks: a document sets it as code, not as mathematics."""
        what = f"`{_describe(node, self.modules)}`"
        loc = self.loc.get(node)
        code = ""
        if loc:
            try:
                code = Path(loc[0]).read_text("utf-8").splitlines()[loc[1] - 1].strip()
            except (OSError, IndexError, UnicodeDecodeError):
                code = ""
        file = Path(loc[0]).name if loc else self.src.label
        if node.op == "get_attr":
            en, es = "a constant tensor the code makes (e.g. `torch.zeros`)", "un tensor constante que crea el código (p. ej. `torch.zeros`)"
        elif node.op == "call_module":
            path = _short(node.target)
            en, es = f"the output of `{path}` ({what})", f"la salida de `{path}` ({what})"
        elif node.op == "call_function" and getattr(node.target, "__name__", "").startswith("rand"):
            en = f"a random draw of {what}, made by PyTorch and recorded: a constant of this iteration"
            es = f"un sorteo aleatorio de {what}, hecho por PyTorch y registrado: una constante de esta iteración"
        else:
            en, es = f"{what}", f"{what}"
        if loc:  # the code in backticks: a document keeps it as text, not mathematics
            en += f", line {loc[1]} of `{file}`" + (f": `{code}`" if code else "")
            es += f", línea {loc[1]} de `{file}`" + (f": `{code}`" if code else "")
        return {"symbol": name, "en": en, "es": es}

    # the whole run ------------------------------------------------------------------------------------

    def size(self, iterations: int) -> Size:
        """The run's size from the captured shapes: the inputs; per iteration every node's output
        (a step block more for the ops in steps), as much again for the backward pass, a gradient
        and the update of each trained parameter."""
        def shape(s):
            return two_d(s) if len(s) <= 2 else (1, int(np.prod(s)))

        inputs = [shape(self.src.x.shape), shape(self.src.y.shape)]
        params = [shape(p.shape) for p in self.params.values()]
        trained = [shape(self.params[n].shape) for n in self.optimizer.names]
        forward = []
        for node in self.graph.nodes:
            s = self.shape[node]
            if s is not None and node.op not in ("placeholder", "get_attr", "output"):
                forward += [shape(s[0])] * (2 if _base(node) in STEPPED else 1)
            if _base(node) in ("RNN", "LSTM"):  # unrolled: per step the sum, its parts, the state (and the gates)
                T, H = self.shape[node.args[0]][0][0], self.modules[node.target].hidden_size
                forward += [(T, H)] * 2 + [(1, H)] * (T * (4 if _base(node) == "RNN" else 14))
        kind = "adam" if self.optimizer.kind in ("adam", "adamw") else "sgd"
        state = [s for s in trained] * (2 if kind == "adam" else int(self.optimizer.momentum is not None))
        updates = trained * (6 + 2 * (self.optimizer.weight_decay is not None) if kind == "adam" else
                             1 + (self.optimizer.momentum is not None) + (self.optimizer.weight_decay is not None))
        return estimate(inputs + params + state + [(1, 1)] * 8, forward * 2 + params + updates, iterations, bands=True)

    def trace(self, tape, run) -> None:
        """Record the run: the inputs, then `run(params, step, optimizers)` (tracer's training loop)
        with one step = forward, loss, backward, update."""
        p = self.record_inputs(tape)
        opt = self.optimizer.make(tape, self, p)
        trained = self.trainable

        def step(p):
            tape.at("forward")
            loss = self.forward(tape, p)
            tape.at("backward")
            grads = tape.backward(loss, {n: p[n] for n in trained}, held=self.held, prefix="loss")
            tape.at("update")
            names = [n for n in self.optimizer.names if n in grads]
            return p | opt.step({n: p[n] for n in names}, {n: grads[n] for n in names})

        run(p, step, [opt])


STEPPED = {"softmax", "log_softmax", "Softmax", "LogSoftmax", "CrossEntropyLoss", "cross_entropy", "LayerNorm",
           "layer_norm", "BCELoss", "binary_cross_entropy", "BCEWithLogitsLoss", "binary_cross_entropy_with_logits"}


def _base(node) -> str:
    """A node's kind in one word: the module's class, the method's or function's name."""
    if node.op == "call_module":
        return type(node.graph.owning_module.get_submodule(node.target)).__name__
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def _short(path: str) -> str:
    """A module or parameter path without the wrapper's prefix: model.encoder.0 → encoder.0."""
    return path[len("model."):] if path.startswith("model.") else path


def _number(value) -> str:
    return repr(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _loss_words(program) -> str:
    fn = program.src.loss_fn
    return type(fn).__name__ if hasattr(fn, "forward") else getattr(fn, "__name__", "a function")


SYMBOLS = {"weight": "W", "bias": "b"}
NORM_SYMBOLS = {"weight": "γ", "bias": "β"}


def param_text(name, param, module, trained, label) -> dict:
    """A parameter's text: W[encoder.0] for encoder.0.weight of an nn.Linear, b[…] for its bias,
    γ/β for a LayerNorm's, E[…] for an Embedding's; the name itself otherwise."""
    owner, _, leaf = name.rpartition(".")
    kind = type(module).__name__ if module is not None else ""
    table = NORM_SYMBOLS if kind == "LayerNorm" else {"weight": "E"} if kind == "Embedding" else SYMBOLS
    rnn = re.fullmatch(r"(weight|bias)_(ih|hh)_l0", leaf)  # nn.RNN, nn.LSTM: W_ih, W_hh, b_ih, b_hh
    letter = table.get(leaf) or (f"{SYMBOLS[rnn[1]]}_{rnn[2]}" if rnn else None)
    symbol = f"{letter}[{owner}]" if letter and owner else name
    shape = " × ".join(str(s) for s in param.shape) or "1"
    en = f"`{name}` ({shape}), the parameter as the model holds it" + (f", of `nn.{kind}`" if kind else "")
    es = f"`{name}` ({shape}), el parámetro tal como lo tiene el modelo" + (f", de `nn.{kind}`" if kind else "")
    if not trained:
        en, es = en + "; not trained (requires_grad=False)", es + "; no se entrena (requires_grad=False)"
    return {"symbol": symbol, "en": en, "es": es}


# --- the optimizer: torch.optim's, read into tracer's ops ---------------------------------------

class OptimizerSpec:
    """torch.optim.SGD (momentum, weight decay), Adam (weight decay) or AdamW, read from the user's
    optimizer: its kind, hyperparameters and parameters (by name); `error` when it cannot be
    traced.  Without one: SGD with lr 0.01 on every trainable parameter."""

    DEFAULT_LR = 0.01

    def __init__(self, src, params, trainable):
        self.error, self.kind, self.momentum, self.weight_decay = None, "sgd", None, None
        self.lr, self.betas, self.eps = self.DEFAULT_LR, (0.9, 0.999), 1e-8
        self.names = list(trainable)
        opt = src.optimizer
        if opt is None:
            return
        torch = need_torch()
        kinds = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}
        self.kind = kinds.get(type(opt))
        if self.kind is None:
            self.error = (f"{src.label}: optimizer {type(opt).__name__} is not supported: use torch.optim.SGD "
                          "(with or without momentum), Adam or AdamW")
            return
        groups = opt.param_groups
        settings = [{k: v for k, v in g.items() if k != "params"} for g in groups]
        if any(s != settings[0] for s in settings):
            self.error = f"{src.label}: the optimizer's parameter groups have different settings: give every parameter the same"
            return
        s = settings[0]
        by_id = {id(p): n for n, p in params.items()}
        held = [p for g in groups for p in g["params"]]
        if any(id(p) not in by_id for p in held):
            self.error = f"{src.label}: the optimizer holds a tensor that is not a parameter of the model"
            return
        if any(len(st) for st in opt.state.values()):
            self.error = f"{src.label}: the optimizer has already taken steps: make a new one for tracing"
            return
        self.names = [by_id[id(p)] for p in held if by_id[id(p)] in trainable]
        bad = [k for k in ("nesterov", "maximize", "amsgrad", "capturable", "differentiable") if s.get(k)]
        if bad or s.get("dampening", 0) != 0:
            what = bad[0] if bad else "dampening"
            self.error = f"{src.label}: {type(opt).__name__}'s {what} is not supported (tracer follows plain momentum)"
            return
        if isinstance(s.get("lr"), torch.Tensor):
            self.error = f"{src.label}: give the learning rate as a number"
            return
        self.lr = float(s["lr"])
        if self.kind == "sgd":
            self.momentum = float(s.get("momentum", 0)) or None
        else:
            self.betas, self.eps = tuple(float(b) for b in s["betas"]), float(s["eps"])
        self.weight_decay = float(s.get("weight_decay", 0)) or None

    def collect(self, program) -> None:
        """The optimizer's named cells."""
        label = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[self.kind]
        program.hyper("lr", "", self.lr, f"{label}'s learning rate", f"tasa de aprendizaje de {label}")
        if self.momentum is not None:
            program.hyper("momentum", "", self.momentum, "SGD's momentum μ: b ← μ·b + g", "momento μ de SGD: b ← μ·b + g", "μ")
        if self.weight_decay is not None:
            program.hyper("weight_decay", "", self.weight_decay,
                          f"{label}'s weight decay λ" + (": θ·(1 − lr·λ) before the step" if self.kind == "adamw" else ": g + λ·θ"),
                          f"decaimiento de pesos λ de {label}" + (": θ·(1 − lr·λ) antes del paso" if self.kind == "adamw" else ": g + λ·θ"),
                          "λ")
        if self.kind != "sgd":
            for key, cell, value, en, es, sym in (
                    ("beta1", "beta_1", self.betas[0], "Adam's β1, the decay of m", "β1 de Adam, el decaimiento de m", "β1"),
                    ("beta2", "beta_2", self.betas[1], "Adam's β2, the decay of v", "β2 de Adam, el decaimiento de v", "β2"),
                    ("adam_eps", "adam_eps", self.eps, "Adam's ε, added to √v̂", "ε de Adam, sumado a √v̂", "ε")):
                h = program.hyper(key, "", value, en, es, sym)
                h.cell = cell

    def make(self, tape, program, p):
        lr = program.cells["lr"]
        wd = program.cells.get("weight_decay")
        params = {n: p[n] for n in self.names}
        if self.kind == "sgd":
            return optim.Sgd(tape, lr, params, program.cells.get("momentum"), wd)
        hypers = {k: program.cells[k] for k in ("beta1", "beta2", "adam_eps")}
        return optim.Adam(tape, lr, hypers, params, weight_decay=wd, decoupled=self.kind == "adamw")

    def texts(self, program) -> dict:
        """Texts of the optimizer's own tensors: momentum buffers, decayed gradients, AdamW's decayed θ."""
        out = {}
        for n in self.names:
            sym = program.param_symbol(n)
            out[f"b[{n}]"] = {"symbol": f"b({sym})", "en": f"the momentum buffer of {sym}: b ← μ·b + g (it starts at 0)",
                              "es": f"el búfer de momento de {sym}: b ← μ·b + g (empieza en 0)"}
            out[f"g[{n}]"] = {"symbol": f"g({sym})", "en": f"the gradient of {sym} with weight decay: ∂L/∂θ + λ·θ",
                              "es": f"el gradiente de {sym} con decaimiento de pesos: ∂L/∂θ + λ·θ"}
            out[f"decayed[{n}]"] = {"symbol": f"{sym}·(1 − lr·λ)", "en": f"{sym} decayed before AdamW's step: θ·(1 − lr·λ)",
                                    "es": f"{sym} con decaimiento antes del paso de AdamW: θ·(1 − lr·λ)"}
        return out


# --- the handlers: one per kind of node -------------------------------------------------------------
# handler(program, node) → fn(program, node, name, args, kwargs, p=None, collect=False) → a Val (or a
# Python value); `collect`: only ask for the scalar cells the node needs.  Unsupported raises.

def _val(program, x, name=None):
    """A tensor operand: a Val as it is, a Python number as its named cell."""
    if isinstance(x, Val):
        if x.ids:
            raise TracerError(f"integer tensors (ids) can only index an nn.Embedding or be a loss's targets")
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return Val(program.cell(program.number(x)), ())
    raise TracerError(f"an operand of {name or 'an op'} is neither a tensor nor a number: {x!r}")


def _out(program, node, t):
    """The Val of a node's result, its 2-D tensor checked against PyTorch's shape."""
    shape = program.shape[node][0]
    want = two_d(shape)
    if t.shape != want:
        raise TracerError(f"{_describe(node, program.modules)} at {program.where_text(node)}: tracer made a "
                          f"{t.shape} tensor where PyTorch has {tuple(shape)}: this layout is not supported")
    return Val(t, shape)


def _as(program, node, v: Val, name):
    """v shaped as the node's result (a reshape only if the 2-D shape differs)."""
    shape = program.shape[node][0]
    want = two_d(shape)
    if v.t.shape == want:
        return Val(v.t, shape)
    return Val(record(linalg.reshape(*want), v.t, name=name), shape)


def binary(op, swap=False):
    def run(program, node, name, args, kwargs, p=None, collect=False):
        if collect:
            return None
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        if swap:
            a, b = b, a
        if kwargs.get("alpha", 1) != 1:
            raise TracerError("alpha= is not supported")
        return _out(program, node, record(op, _val(program, a).t, _val(program, b).t, name=name))
    return run


def unary(op):
    def run(program, node, name, args, kwargs, p=None, collect=False):
        if collect:
            return None
        return _out(program, node, record(op, _val(program, args[0]).t, name=name))
    return run


def power(program, node, name, args, kwargs, p=None, collect=False):
    exponent = args[1] if len(args) > 1 else kwargs.get("exponent")
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        raise Unsupported("only a number as the exponent")
    if collect:
        return program.number(exponent)
    return _out(program, node, record(act.POWER, _val(program, args[0]).t, program.cell(program.number(exponent)), name=name))


def square_root(program, node, name, args, kwargs, p=None, collect=False):
    if collect:
        return program.number(0.5)
    return _out(program, node, record(act.POWER, _val(program, args[0]).t, program.cell(program.number(0.5)), name=name))


def matmul(program, node, name, args, kwargs, p=None, collect=False):
    if collect:
        return None
    a, b = _val(program, args[0]), _val(program, args[1])
    if len(b.shape) == 1 and len(a.shape) == 2:  # (m, k) @ (k,) → (m,): a · bᵀ is a column, turned
        col = record(linalg.MATMUL_NT, a.t, b.t, name=f"{name}_col")
        return _out(program, node, record(linalg.TRANSPOSE, col, name=name))
    if len(b.shape) == 1:  # (k,) @ (k,) → a number
        return _out(program, node, record(linalg.MATMUL_NT, a.t, b.t, name=name))
    return _out(program, node, record(linalg.MATMUL, a.t, b.t, name=name))


def linear(program, node, name, args, kwargs, p=None, collect=False):
    if node.op == "call_module":
        if collect:
            return None
        path = _short(node.target)
        W, b = p[f"{path}.weight"], p.get(f"{path}.bias")
    else:
        if collect:
            return None
        W = _val(program, args[1]).t
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        b = b.t if isinstance(b, Val) else None
    x = _val(program, args[0]).t
    if b is None:
        return _out(program, node, record(linalg.MATMUL_NT, x, W, name=name))
    return _out(program, node, record(linalg.LINEAR_NT, x, W, b, name=name))


def identity(program, node, name, args, kwargs, p=None, collect=False):
    if collect:
        return None
    return args[0]


def detach(program, node, name, args, kwargs, p=None, collect=False):
    """x.detach(): a copy the backward pass treats as a constant (no gradient flows back through it)."""
    if collect:
        return None
    x = _val(program, args[0])
    t = record(COPY, x.t, name=name)
    program.held.append(t)
    return Val(t, x.shape)


def dropout(program, node, name, args, kwargs, p=None, collect=False):
    """Dropout: the identity in eval mode (model.eval()) or with p = 0; refused in train mode."""
    if node.op == "call_module":
        mod = program.modules[node.target]
        rate, training = mod.p, mod.training
    else:
        rate = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
        training = args[2] if len(args) > 2 else kwargs.get("training", True)
    if training and rate > 0:
        raise Unsupported("Dropout in train mode zeroes random cells anew in every pass; call model.eval() in your "
                          "file (Dropout is then the identity, as at test time) or set p=0")
    return identity(program, node, name, args, kwargs, collect=collect)


def relu(program, node, name, args, kwargs, p=None, collect=False):
    return unary(act.RELU)(program, node, name, args, kwargs, collect=collect)


def leaky_relu(program, node, name, args, kwargs, p=None, collect=False):
    if node.op == "call_module":
        slope, key = program.modules[node.target].negative_slope, _short(node.target)
    else:
        slope, key = (args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)), None
    key = key or _number(slope)
    h = program.hyper("slope", key, slope, f"LeakyReLU's slope for negative inputs (`{key}`)",
                      f"pendiente de LeakyReLU para entradas negativas (`{key}`)", f"slope[{key}]")
    if collect:
        return h
    return _out(program, node, record(act.LEAKY_RELU, _val(program, args[0]).t, program.cell(h), name=name))


def gelu(program, node, name, args, kwargs, p=None, collect=False):
    approximate = (program.modules[node.target].approximate if node.op == "call_module"
                   else kwargs.get("approximate", "none"))
    if collect:
        return None
    op = act.GELU if approximate == "tanh" else act.GELU_ERF
    return _out(program, node, record(op, _val(program, args[0]).t, name=name))


def _dim(program, node, args, kwargs, default=None):
    if node.op == "call_module":
        return program.modules[node.target].dim
    if len(args) > 1:
        return args[1]
    return kwargs.get("dim", default)


def softmax_like(op):
    def run(program, node, name, args, kwargs, p=None, collect=False):
        dim = _dim(program, node, args, kwargs)
        ndim = len(program.shape[node][0])
        if dim is None or dim % max(ndim, 1) != ndim - 1:
            raise Unsupported("only over the last dimension (dim=-1): one row at a time")
        if collect:
            return None
        return _out(program, node, record(op, _val(program, args[0]).t, name=name))
    return run


def layer_norm(program, node, name, args, kwargs, p=None, collect=False):
    if node.op != "call_module":
        raise Unsupported("use the module nn.LayerNorm")
    mod, path = program.modules[node.target], _short(node.target)
    if len(mod.normalized_shape) != 1 or not mod.elementwise_affine or mod.bias is None:
        raise Unsupported("nn.LayerNorm over the last dimension only, with its weight and bias")
    h = program.hyper("eps", path, mod.eps, f"LayerNorm's ε (`{path}`), added to the variance",
                      f"ε de LayerNorm (`{path}`), sumado a la varianza", f"ε[{path}]")
    if collect:
        return h
    for part, (en, es) in {"mu": ("the mean of each row", "la media de cada fila"),
                           "var": ("the variance of each row (population)", "la varianza de cada fila (poblacional)"),
                           "xhat": ("each row normalized: (x − μ)/√(σ² + ε)", "cada fila normalizada: (x − μ)/√(σ² + ε)")}.items():
        program.texts[f"{name}_{part}"] = {"symbol": f"{name}_{part}", "en": f"{en}, in `{path}`", "es": f"{es}, en `{path}`"}
    out = normalization.layer_norm(_val(program, args[0]).t, p[f"{path}.weight"], p[f"{path}.bias"], program.cell(h), name=name)
    return _out(program, node, out)


def embedding(program, node, name, args, kwargs, p=None, collect=False):
    if node.op != "call_module":
        raise Unsupported("use the module nn.Embedding")
    mod, path = program.modules[node.target], _short(node.target)
    if mod.padding_idx is not None or mod.max_norm is not None:
        raise Unsupported("nn.Embedding without padding_idx and max_norm")
    if collect:
        return None
    ids = args[0]
    if not (isinstance(ids, Val) and ids.ids and len(ids.shape) == 1):
        raise TracerError(f"nn.Embedding at {program.where_text(node)}: its input must be a 1-D tensor of ids (the data)")
    return _out(program, node, embeddings.embed(p[f"{path}.weight"], ids.t, name=name))


def reduce(kind):
    """sum / mean: of every cell, or of each row or column (dim=1 / dim=0)."""
    def run(program, node, name, args, kwargs, p=None, collect=False):
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = kwargs.get("keepdim", False)
        x = args[0]
        ndim = len(x.shape) if isinstance(x, Val) else 0
        if isinstance(dim, (tuple, list)):
            dim = None if len(dim) == ndim else dim[0] if len(dim) == 1 else dim
        if dim is not None and not isinstance(dim, int):
            raise Unsupported("over one dimension or all of them")
        if collect:
            return None
        x = _val(program, x)
        if dim is None or ndim <= 1:
            op = linalg.SUM_ALL if kind == "sum" else losses.MEAN
            t = record(op, x.t, name=name)
            return _as(program, node, Val(t, ()), name)
        dim %= ndim
        if kind == "mean" and dim == 0:
            raise Unsupported("mean over dim 0 (use .sum(0) / n)")
        op = {("sum", 0): linalg.SUM_ROWS, ("sum", 1): linalg.SUM_COLS, ("mean", 1): normalization.ROW_MEAN}[(kind, dim)]
        t = record(op, x.t, name=name if keep or dim == 0 else f"{name}_col")
        if dim == 1 and not keep:  # (N,) in PyTorch: a row here
            t = record(linalg.TRANSPOSE, t, name=name)
        return _out(program, node, t)
    return run


def reshape(program, node, name, args, kwargs, p=None, collect=False):
    """view, reshape, flatten, squeeze, unsqueeze: the same cells in PyTorch's new shape."""
    if collect:
        return None
    return _as(program, node, _val(program, args[0]), name)


def transpose(program, node, name, args, kwargs, p=None, collect=False):
    if collect:
        return None
    x = _val(program, args[0])
    if len(x.shape) < 2:
        return Val(x.t, x.shape)
    return _out(program, node, record(linalg.TRANSPOSE, x.t, name=name))


def permute(program, node, name, args, kwargs, p=None, collect=False):
    dims = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
    if tuple(d % 2 for d in dims) not in ((1, 0), (0, 1)):
        raise Unsupported("only of 2 dimensions")
    if tuple(d % 2 for d in dims) == (0, 1):
        return identity(program, node, name, args, kwargs, collect=collect)
    return transpose(program, node, name, args, kwargs, collect=collect)


def recurrent(program, node, name, args, kwargs, p=None, collect=False):
    """nn.RNN (tanh) and nn.LSTM, one layer, on one sequence x (T, d), unrolled step by step with
    PyTorch's own weights (W_ih, W_hh, b_ih, b_hh; an LSTM's gates i, f, g, o stacked in that
    order):  RNN  h_t = tanh(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh);  LSTM  the four gates from
    the same sum, c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t).  Returns (output (T, H), h_n)
    for the RNN and (output, (h_n, c_n)) for the LSTM, as PyTorch does."""
    mod, path = program.modules[node.target], _short(node.target)
    lstm = type(mod).__name__ == "LSTM"
    if (mod.num_layers != 1 or mod.bidirectional or not mod.bias or getattr(mod, "nonlinearity", "tanh") != "tanh"
            or getattr(mod, "proj_size", 0) or mod.batch_first or (mod.dropout and mod.training)):
        raise Unsupported("one layer, one direction, with biases (tanh for nn.RNN), batch_first=False, no proj_size")
    if len(args) > 1 or kwargs:
        raise Unsupported("from a zero state only (call it on x alone)")
    if collect:
        return None
    x = _val(program, args[0])
    if len(x.shape) != 2:
        raise TracerError(f"nn.{type(mod).__name__} at {program.where_text(node)}: one sequence, (T, d), unbatched")
    H = mod.hidden_size
    w = {k: p[f"{path}.{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    zeros = program.zeros(f"{name}_h0", H)
    a = record(linalg.LINEAR_NT, x.t, w["weight_ih"], w["bias_ih"], name=f"{name}_in")  # every x_t·W_ihᵀ + b_ih at once
    h, c, hs = zeros, (program.zeros(f"{name}_c0", H) if lstm else None), []
    for t in range(x.shape[0]):
        k = t + 1
        z = record(linalg.ADD, record(linalg.slice_rows(t, 1), a, name=f"{name}_in{k}"),
                   record(linalg.LINEAR_NT, h, w["weight_hh"], w["bias_hh"], name=f"{name}_rec{k}"), name=f"{name}_z{k}")
        if not lstm:
            h = record(act.TANH, z, name=f"{name}_h{k}")
        else:
            i, f, g, o = (record(linalg.slice_cols(n * H, H), z, name=f"{name}_{gate}{k}_pre")
                          for n, gate in enumerate("ifgo"))
            i, f, o = (record(act.SIGMOID, v, name=f"{name}_{gate}{k}") for v, gate in ((i, "i"), (f, "f"), (o, "o")))
            g = record(act.TANH, g, name=f"{name}_g{k}")
            c = linalg.add_products(f, c, i, g, name=f"{name}_c{k}")
            h = record(linalg.MUL, o, record(act.TANH, c, name=f"{name}_tanh_c{k}"), name=f"{name}_h{k}")
        hs.append(h)
    kind = type(mod).__name__
    parts = {"in": ("x·W_ihᵀ + b_ih for every step", "x·W_ihᵀ + b_ih para cada paso"),
             "in#": ("step {k}'s row of x·W_ihᵀ + b_ih", "la fila del paso {k} de x·W_ihᵀ + b_ih"),
             "rec#": ("h_{j}·W_hhᵀ + b_hh, the previous state's part", "h_{j}·W_hhᵀ + b_hh, la parte del estado anterior"),
             "z#": ("step {k}'s sum: x_{k}·W_ihᵀ + b_ih + h_{j}·W_hhᵀ + b_hh", "la suma del paso {k}: x_{k}·W_ihᵀ + b_ih + h_{j}·W_hhᵀ + b_hh"),
             "h#": ("the hidden state h_{k}", "el estado oculto h_{k}"), "c#": ("the cell state c_{k}", "el estado de celda c_{k}"),
             "tanh_c#": ("tanh(c_{k})", "tanh(c_{k})")}
    parts |= {f"{g}#_pre": (f"gate {g} at step {{k}}, before its function", f"la puerta {g} en el paso {{k}}, antes de su función")
              for g in "ifgo"}
    parts |= {f"{g}#": (f"gate {g} at step {{k}}", f"la puerta {g} en el paso {{k}}") for g in "ifgo"}
    for part, (en, es) in parts.items():
        for k in range(1, x.shape[0] + 1) if "#" in part else [0]:
            key = f"{name}_{part.replace('#', str(k))}"
            program.texts[key] = {"symbol": key, "en": f"{en.format(k=k, j=k - 1)} (`{path}`, `nn.{kind}`)",
                                  "es": f"{es.format(k=k, j=k - 1)} (`{path}`, `nn.{kind}`)"}
    out = _out(program, node_output(program, node, 0), linalg.concat_rows(hs, name=name))
    h_n, c_n = Val(h, (1, H)), (Val(c, (1, H)) if lstm else None)
    return (out, (h_n, c_n)) if lstm else (out, h_n)


def node_output(program, node, k):
    """A stand-in node for output k of a node that returns a tuple (its shape for _out)."""
    for user in node.users:
        if user.target is operator.getitem and user.args[1] == k and program.shape.get(user):
            return user
    raise TracerError(f"{_describe(node, program.modules)} at {program.where_text(node)}: its output is not used")


def cat(program, node, name, args, kwargs, p=None, collect=False):
    if collect:
        return None
    xs = [_val(program, v) for v in args[0]]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    ndim = len(xs[0].shape)
    if len(xs) == 1:
        return xs[0]
    axis = 1 if ndim == 1 or dim % ndim == 1 else 0
    return _out(program, node, record(linalg.CONCAT_COLS if axis else linalg.CONCAT_ROWS, *(v.t for v in xs), name=name))


def stack(program, node, name, args, kwargs, p=None, collect=False):
    """torch.stack of 1-D rows along dim 0: one below the other (a sequence's states, h_1 … h_T)."""
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if dim != 0:
        raise Unsupported("only of 1-D tensors along dim 0 (rows stacked into a matrix)")
    if collect:
        return None
    xs = [_val(program, v) for v in args[0]]
    if any(len(v.shape) != 1 for v in xs):
        raise TracerError(f"torch.stack at {program.where_text(node)}: only of 1-D tensors (rows)")
    return _out(program, node, linalg.concat_rows([v.t for v in xs], name=name))


def getitem(program, node, name, args, kwargs, p=None, collect=False):
    """A tuple's item (a model's several outputs), or a slice of a tensor: rows and columns a … b
    (step 1), a row x[i], a column x[:, j]."""
    x, index = args
    if not isinstance(node.args[0], type(node)) or program.shape.get(node.args[0]) is None:
        return None if collect else x[index]
    if collect:
        return None
    x = _val(program, x)
    index = index if isinstance(index, tuple) else (index,)
    if len(index) > len(x.shape) or any(i is Ellipsis or i is None for i in index):
        raise TracerError(f"indexing at {program.where_text(node)}: only rows and columns (x[a:b], x[:, j])")
    if len(x.shape) == 1:
        index = (slice(None),) + index  # a row: its cells are columns
    t = x.t
    for axis, i in enumerate(index):
        n = t.shape[axis]
        if isinstance(i, int):
            i = slice(i % n, i % n + 1)
        if not isinstance(i, slice) or i.step not in (None, 1):
            raise TracerError(f"indexing at {program.where_text(node)}: only ranges with step 1 and single indices")
        start, stop, _ = i.indices(n)
        if (start, stop) != (0, n):
            piece = linalg.slice_cols(start, stop - start) if axis else linalg.slice_rows(start, stop - start)
            t = record(piece, t, name=f"{name}_rows" if axis == 0 and index[1:] and index[1] != slice(None) else name)
    return _as(program, node, Val(t, ()), name)


def size_of(program, node, name, args, kwargs, p=None, collect=False):
    """x.size(), x.size(d), x.shape: PyTorch's shape, plain numbers."""
    if collect:
        return None
    x = args[0]
    if node.op == "call_function":  # getattr(x, "shape")
        return program.torch.Size(x.shape)
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    return program.torch.Size(x.shape) if dim is None else x.shape[dim]


def draw(fn):
    def run(program, node, name, args, kwargs, p=None, collect=False):
        if collect:
            return None
        return program.draw(node, name, fn, args, kwargs)
    return run


# --- losses ------------------------------------------------------------------------------------------

def _reduction(program, node, kwargs, default="mean"):
    if node.op == "call_module":
        mod = program.modules[node.target]
        red = mod.reduction
        weight = getattr(mod, "weight", None)
        extra = {k: getattr(mod, k) for k in ("ignore_index", "label_smoothing", "pos_weight") if hasattr(mod, k)}
    else:
        red, weight = kwargs.get("reduction", default), kwargs.get("weight")
        extra = {k: kwargs[k] for k in ("ignore_index", "label_smoothing", "pos_weight") if k in kwargs}
    if red not in ("mean", "sum"):
        raise Unsupported("reduction='mean' or 'sum' (the loss is one number)")
    if weight is not None or extra.get("pos_weight") is not None or extra.get("label_smoothing", 0):
        raise Unsupported("no class weights, pos_weight or label smoothing")
    return red


def _targets(program, y, node, ids_ok, floats_ok):
    if not isinstance(y, Val):
        raise TracerError(f"the targets of the loss at {program.where_text(node)} must be a tensor")
    if y.ids and not ids_ok:
        raise TracerError(f"the loss at {program.where_text(node)} wants float targets, not class ids")
    if not y.ids and not floats_ok:
        raise TracerError(f"the loss at {program.where_text(node)} wants class ids (an integer tensor)")
    return y


def _total(program, node, terms, red, name):
    """The mean or the sum of per-example terms: the loss."""
    return _out(program, node, record(losses.MEAN if red == "mean" else linalg.SUM_ALL, terms, name=name))


def mse_loss(program, node, name, args, kwargs, p=None, collect=False):
    red = _reduction(program, node, kwargs)
    if collect:
        return None
    yhat, y = _val(program, args[0]), _targets(program, args[1], node, False, True)
    return _out(program, node, record(losses.MSE if red == "mean" else losses.SSE, yhat.t, y.t, name=name))


def bce_loss(program, node, name, args, kwargs, p=None, collect=False):
    red = _reduction(program, node, kwargs)
    if collect:
        return None
    yhat, y = _val(program, args[0]), _targets(program, args[1], node, False, True)
    if red == "mean":
        return _out(program, node, record(losses.BCE_MEAN, yhat.t, y.t, name=name))
    return _out(program, node, record(losses.BCE, y.t, yhat.t, name=name))


def bce_logits_loss(program, node, name, args, kwargs, p=None, collect=False):
    red = _reduction(program, node, kwargs)
    if collect:
        return None
    z, y = _val(program, args[0]), _targets(program, args[1], node, False, True)
    op = losses.BCE_LOGITS_MEAN if red == "mean" else losses.BCE_LOGITS_SUM
    return _out(program, node, record(op, z.t, y.t, name=name))


def _check_classes(program, node, z, y):
    if len(z.shape) != 2 or (y.ids and (len(y.shape) != 1 or y.shape[0] != z.shape[0])):
        raise TracerError(f"the loss at {program.where_text(node)}: scores (N, C) and N class ids (or (N, C) probabilities)")


def nll_loss(program, node, name, args, kwargs, p=None, collect=False):
    red = _reduction(program, node, kwargs)
    if collect:
        return None
    logp, y = _val(program, args[0]), _targets(program, args[1], node, True, False)
    _check_classes(program, node, logp, y)
    program.texts[f"{name}_terms"] = {"symbol": f"ℓ[{name}]", "en": "each example's −log-probability of its class",
                                      "es": "el −log de la probabilidad de la clase de cada ejemplo"}
    terms = record(losses.NEG_PICK, logp.t, y.t, name=f"{name}_terms")
    return _total(program, node, terms, red, name)


def cross_entropy(program, node, name, args, kwargs, p=None, collect=False):
    """CrossEntropyLoss = the log-softmax of the scores, then each example's −log P of its class
    (class ids) or −Σ Y ⊙ log P (target probabilities), then their mean (or sum)."""
    red = _reduction(program, node, kwargs)
    if collect:
        return None
    z, y = _val(program, args[0]), _targets(program, args[1], node, True, True)
    _check_classes(program, node, z, y)
    logp = f"{name}_logp"
    program.texts[logp] = {"symbol": f"log P[{name}]", "en": "the log-softmax of the scores: log-probabilities of the classes",
                           "es": "el log-softmax de las puntuaciones: log-probabilidades de las clases"}
    a = record(act.LOG_SOFTMAX, z.t, name=logp)
    if y.ids:
        program.texts[f"{name}_terms"] = {"symbol": f"ℓ[{name}]", "en": "each example's −log P of its class",
                                          "es": "el −log P de la clase de cada ejemplo"}
        return _total(program, node, record(losses.NEG_PICK, a, y.t, name=f"{name}_terms"), red, name)
    if red != "mean":
        raise TracerError(f"the loss at {program.where_text(node)}: with target probabilities, reduction='mean' only")
    return _out(program, node, record(losses.SOFT_NLL, a, y.t, name=name))


# --- the table ---------------------------------------------------------------------------------------

def _table():
    torch = need_torch()
    nn, F = torch.nn, torch.nn.functional
    modules = {
        nn.Linear: linear, nn.ReLU: relu, nn.LeakyReLU: leaky_relu, nn.Sigmoid: unary(act.SIGMOID),
        nn.Tanh: unary(act.TANH), nn.GELU: gelu, nn.Softmax: softmax_like(act.SOFTMAX),
        nn.LogSoftmax: softmax_like(act.LOG_SOFTMAX), nn.LayerNorm: layer_norm, nn.Embedding: embedding,
        nn.Dropout: dropout, nn.Identity: identity, nn.Flatten: reshape, nn.Unflatten: reshape,
        nn.MSELoss: mse_loss, nn.BCELoss: bce_loss, nn.BCEWithLogitsLoss: bce_logits_loss,
        nn.CrossEntropyLoss: cross_entropy, nn.NLLLoss: nll_loss, nn.RNN: recurrent, nn.LSTM: recurrent,
    }
    functions = {
        operator.add: binary(linalg.ADD), operator.sub: binary(linalg.MINUS), operator.mul: binary(linalg.MUL),
        operator.truediv: binary(linalg.QUOTIENT), operator.neg: unary(linalg.NEG), operator.matmul: matmul,
        operator.pow: power, operator.getitem: getitem, getattr: size_of,
        torch.add: binary(linalg.ADD), torch.sub: binary(linalg.MINUS), torch.mul: binary(linalg.MUL),
        torch.div: binary(linalg.QUOTIENT), torch.neg: unary(linalg.NEG), torch.matmul: matmul, torch.mm: matmul,
        torch.pow: power, torch.sqrt: square_root, torch.exp: unary(act.EXP), torch.log: unary(act.LN),
        torch.tanh: unary(act.TANH), torch.sigmoid: unary(act.SIGMOID), torch.relu: relu,
        torch.sum: reduce("sum"), torch.mean: reduce("mean"), torch.cat: cat, torch.concat: cat, torch.stack: stack,
        torch.transpose: transpose, torch.t: transpose, torch.permute: permute, torch.flatten: reshape,
        torch.reshape: reshape, torch.squeeze: reshape, torch.unsqueeze: reshape,
        torch.softmax: softmax_like(act.SOFTMAX), torch.log_softmax: softmax_like(act.LOG_SOFTMAX),
        torch.randn_like: draw(torch.randn_like), torch.rand_like: draw(torch.rand_like),
        torch.randn: draw(torch.randn), torch.rand: draw(torch.rand),
        F.relu: relu, F.leaky_relu: leaky_relu, F.gelu: gelu, F.sigmoid: unary(act.SIGMOID), F.tanh: unary(act.TANH),
        F.softmax: softmax_like(act.SOFTMAX), F.log_softmax: softmax_like(act.LOG_SOFTMAX), F.linear: linear,
        F.dropout: dropout, F.mse_loss: mse_loss, F.binary_cross_entropy: bce_loss,
        F.binary_cross_entropy_with_logits: bce_logits_loss, F.cross_entropy: cross_entropy, F.nll_loss: nll_loss,
    }
    methods = {
        "add": binary(linalg.ADD), "sub": binary(linalg.MINUS), "mul": binary(linalg.MUL), "div": binary(linalg.QUOTIENT),
        "rsub": binary(linalg.MINUS, swap=True), "neg": unary(linalg.NEG), "matmul": matmul, "mm": matmul,
        "pow": power, "sqrt": square_root, "exp": unary(act.EXP), "log": unary(act.LN), "tanh": unary(act.TANH),
        "sigmoid": unary(act.SIGMOID), "relu": relu, "sum": reduce("sum"), "mean": reduce("mean"),
        "view": reshape, "reshape": reshape, "flatten": reshape, "squeeze": reshape, "unsqueeze": reshape,
        "t": transpose, "transpose": transpose, "permute": permute, "softmax": softmax_like(act.SOFTMAX),
        "log_softmax": softmax_like(act.LOG_SOFTMAX), "size": size_of, "contiguous": identity,
        "detach": detach,
    }
    return modules, functions, methods


_TABLES: list = []


def handler(program, node):
    """The handler of a node, or Unsupported."""
    if not _TABLES:
        _TABLES.append(_table())
    modules, functions, methods = _TABLES[0]
    if node.op == "call_module":
        found = modules.get(type(program.modules[node.target]))
    elif node.op == "call_method":
        found = methods.get(node.target)
    else:
        found = functions.get(node.target) if _hashable(node.target) else None
        if node.target is getattr and node.args[1] == "T":
            found = transpose
        elif node.target is getattr and node.args[1] != "shape":
            found = None
    if found is None:
        raise Unsupported("tracer has no op for it (the supported ops: docs/models/torch.md)")
    return found


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def supported() -> dict[str, list[str]]:
    """The names of what the front end maps, by kind (for the docs and their test)."""
    modules, functions, methods = _TABLES[0] if _TABLES else _table()

    def function(f):
        name = f.__name__
        if f in OPERATORS or f is getattr:
            return {getattr: "x.shape", operator.getitem: "x[a:b, c:d]"}.get(f, OPERATORS.get(f))
        return f"F.{name}" if "functional" in (f.__module__ or "") or f.__module__ == "torch._C._nn" else f"torch.{name}"

    return {"modules": sorted(f"nn.{m.__name__}" for m in modules),
            "functions": sorted({function(f) for f in functions}),
            "methods": sorted(f".{m}()" for m in methods)}
