"""The walkthrough as a document: `-o walkthrough.tex` (LaTeX), `.pdf` (the .tex through pdflatex)
or `.md` (Markdown for a documentation site).

`build` turns the tape and the model's template into a neutral list of blocks; tracer.render.latex
and tracer.render.markdown only write them in their syntax, and tracer.render.figures draws the
pictures and the loss chart into a folder beside the document.  The blocks:

    Block("title" | "heading" | "subheading", text)
    Block("para", text)                       prose: its symbols set as mathematics (Prose)
    Block("settings", heading, rows)          the options: (label, value as typed)
    Block("equations", [Equation, …])         the model's equations
    Block("tensor", TensorView)               a tensor: equation, meaning, values
    Block("figure", Figure)                   a picture or the loss chart
    Block("table", caption, header, rows)     cells: Prose, Math, a number, or "–"

Every text is the template's Unicode; mathematics is already LaTeX math (tracer.render.mathtext),
the same for pdflatex and for MathJax.  The fixed wording is templates/document.toml.
"""

from __future__ import annotations

import math as pymath
import re
from dataclasses import dataclass, field
from itertools import groupby
from string import Formatter

import numpy as np

from tracer.render.mathtext import PLACEHOLDER, math, segments
from tracer.render.template import Template, _load
from tracer.render.textmode import unhandled  # noqa: F401  (the tests ask it of every template)

FULL_ROWS = FULL_COLS = 6  # a tensor this small is shown whole; a larger one by its corners
CORNER = 3  # rows (and columns) shown before the ⋮ (⋯) of a larger tensor, then the last one
DIGITS = 4  # significant digits of a matrix entry (a loss: 6)
MAX_IMAGES = 8  # images of a batch shown in one figure
CHAIN = 9  # steps of a chain shown (the first, the last and evenly between)


# ---------------------------------------------------------------------------------------------
# text and mathematics
# ---------------------------------------------------------------------------------------------

class Math(str):
    """LaTeX math (without the $ … $)."""


@dataclass
class Prose:
    """A sentence: pieces of text (Unicode, for the writer to escape) and of mathematics (LaTeX)."""

    pieces: list  # [(is_math, text), …]
    source: str = ""  # the template's text (Unicode)

    @classmethod
    def of(cls, text: str) -> Prose:
        return cls([(m, Math(math(p)) if m else p) for m, p in segments(text)], text)

    def plain(self) -> str:
        """The text as the template wrote it (for an image's alternative text, a search)."""
        return self.source or "".join(p for _, p in self.pieces)


@dataclass
class Equation:
    """One of the model's equations, or a tensor's: a label ("Generator:"), lines of mathematics
    (shown as a display) or, when it is more words than symbols, prose; and a comment."""

    label: Prose | None
    lines: list  # of Math: the display; empty when the equation is prose
    prose: Prose | None
    comment: Prose | None


PROSE_WORDS = 3  # an equation with more words than this (not symbols) reads as a sentence


def _placeholders(pattern: str, fields: dict) -> tuple[str, dict]:
    """The pattern with each {field} a private character (one math symbol to the converter), and
    what each becomes: its symbol as LaTeX, in braces ({all}, a sum, without)."""
    subs: dict[str, str] = {}

    def put(m):
        key = m[1]
        ch = chr(0xE000 + len(subs))
        value = fields.get(key, "")
        subs[ch] = math(value) if key == "all" else "{" + math(value) + "}"
        return ch

    return re.sub(r"\{(\w+)\}", put, pattern), subs


def _fill(text: str, subs: dict) -> str:
    return PLACEHOLDER.sub(lambda m: subs.get(m[0], ""), text)


def equation(text: str, fields: dict | None = None) -> Equation:
    """An equation of the template: [label:]  main  [  (comment)].  `fields` fill in a pattern's
    {0}, {out}, … (a tensor's equation) after the conversion, so that a symbol is converted whole
    (∂L/∂log σ² stays one fraction)."""
    text, subs = _placeholders(text, fields) if fields is not None else (text, {})
    comment = None
    m = re.fullmatch(r"(.*?\S)\s{2,}\(([^()]*(?:\([^()]*\)[^()]*)*)\)", text)
    if m:
        text, comment = m[1], m[2]
    label = None
    m = re.fullmatch(r"([^:=()]{1,40}):\s+(.+)", text)
    if m and not any(is_math for is_math, _ in segments(m[1])):
        label, text = m[1] + ":", m[2]
    pieces = segments(text)
    prose_words = [w for w in re.findall(r"[^\W\d_]{2,}", "".join(p for is_math, p in pieces if not is_math))
                   if not re.fullmatch(r"ReLU|sigmoid|softmax|tanh|exp|ln|log|max|min|mean|media|argmax", w)]
    starts_math = bool(pieces) and pieces[0][0]

    def prose(t):
        return Prose([(is_math, Math(_fill(math(p), subs)) if is_math else _fill(p, subs))
                      for is_math, p in segments(t)]) if t else None

    if starts_math and len(prose_words) <= PROSE_WORDS:
        parts = [p for p in re.split(r"(?:,|;)?\s{3,}", text) if p.strip()]
        lines = [Math(_fill(math(p.rstrip(",;")), subs)) for p in parts]
        return Equation(prose(label), lines, None, prose(comment))
    return Equation(prose(label), [], prose(text), prose(comment))


# ---------------------------------------------------------------------------------------------
# the blocks
# ---------------------------------------------------------------------------------------------

@dataclass
class Block:
    kind: str
    args: tuple

    def __init__(self, kind: str, *args):
        self.kind, self.args = kind, args


@dataclass
class TensorView:
    """A tensor as the document shows it."""

    name: str
    symbol: Math
    shape: tuple
    description: Prose
    equation: Equation | None
    note: Prose
    value: np.ndarray
    where: Prose  # where the workbook has all its values (a tensor shown by its corners)


@dataclass
class Figure:
    """A picture (heatmaps of tensors, as the workbook's pictures sheet) or a chart.  `kind`:
    "images" (each an array on the colour `scale`), "matrix" (one array, its rows and columns
    labelled: attention weights), "losses" (the loss chart) or "scatter"."""

    name: str  # the file's stem
    kind: str
    caption: Prose
    images: list = field(default_factory=list)  # of 2-D arrays
    scale: str = "gray"
    columns: int = 0  # images per row (0: all in one row)
    row_labels: list = field(default_factory=list)
    col_labels: list = field(default_factory=list)
    series: dict = field(default_factory=dict)  # a chart's: name -> values (or N × 2 points)
    secondary: list = field(default_factory=list)  # the chart's series on its right-hand axis
    axes: tuple = ("", "")


@dataclass
class Document:
    """The blocks and how many tensors (and loss values) they show."""

    blocks: list
    count: int
    figures: list = field(default_factory=list)
    model: str = ""


def cell(v, prose, plain, integer, real) -> str:
    """A table's cell in a writer's syntax: Math as $…$, Prose, text, a whole number, a number."""
    if isinstance(v, Math):
        return f"${v}$"
    if isinstance(v, Prose):
        return prose(v)
    if isinstance(v, str):
        return plain(v)
    if isinstance(v, int):
        return integer(v)
    return real(float(v))


def number(v) -> str:
    """A value as the documents print it in a table (six significant digits)."""
    return str(v) if isinstance(v, int) else f"{v:.6g}"


def entry(v: float) -> str:
    """A matrix entry: DIGITS significant digits (a non-zero never shows as 0)."""
    return f"{v:.{DIGITS}g}"


def corners(value: np.ndarray) -> tuple[list, list, np.ndarray]:
    """The rows and columns a tensor shows (indices, None where ⋮ or ⋯ stands) and the array."""
    def axis(n, full):
        return list(range(n)) if n <= full else list(range(CORNER)) + [None, n - 1]
    return axis(value.shape[0], FULL_ROWS), axis(value.shape[1], FULL_COLS), value


def whole(value: np.ndarray) -> bool:
    return value.shape[0] <= FULL_ROWS and value.shape[1] <= FULL_COLS


def _side(n: int) -> int:
    side = pymath.isqrt(n)
    return side if side * side == n and side > 1 else 0


class Builder:
    def __init__(self, tape, tpl: Template, config: dict | None):
        self.tape, self.tpl, self.lang = tape, tpl, tpl.lang
        self.words = _load("document")[tpl.lang]
        self.config = config
        self.blocks: list = []
        self.figures: list = []
        self.by_key = {(t.iteration, t.name): t for t in tape.tensors}
        self.k1 = min((t.iteration for t in tape.tensors if t.iteration), default=1)

    def w(self, key: str, **fmt) -> str:
        return self.words[key].format(**fmt)

    def add(self, kind: str, *args):
        self.blocks.append(Block(kind, *args))

    # -- pieces ------------------------------------------------------------------------------
    def view(self, t) -> TensorView:
        tpl = self.tpl
        pattern, fields = tpl.equation_parts(t)
        eq = equation(pattern, fields) if pattern else None
        sheet = self.tpl.t("inputs") if t.iteration == 0 else \
            self.tpl.t("after") if t.phase == "after" else self.tpl.t("iteration", k=t.iteration)
        return TensorView(t.name, Math(math(tpl.symbol(t.name))), t.shape, Prose.of(tpl.describe(t)), eq,
                          Prose.of(tpl.note(t)), t.value, Prose.of(self.w("where", sheet=sheet)))

    def phase_prose(self, section: str) -> str | None:
        """What a phase computes and why: the model's own [phases] text, else document.toml's."""
        key = section.split(":")[0]
        own = self.tpl.model.get("phases", {}).get(key, {}).get(self.lang)
        text = own or self.words.get("phase_" + key)
        if text is None:
            return None
        return Formatter().vformat(text, section.split(":")[1:], self._numbers())

    def _numbers(self) -> dict:
        """The run's numbers a phase's text may quote: {loss_first}, {loss_last}, …, each loss
        of the first and last iteration, and the settings."""
        out = {}
        names = self.tpl.losses(self.tape)
        iterations = sorted({t.iteration for t in self.tape.tensors if t.iteration > 0})
        for n in names:
            for label, k in (("first", iterations[0] if iterations else 0), ("last", iterations[-1] if iterations else 0)):
                t = self.by_key.get((k, n))
                if t is not None:
                    out[f"{n}_{label}"] = number(float(t.value.mean()))
        if names and f"{names[-1]}_first" in out:  # the total loss, whatever a run calls it (an mlp file)
            out.setdefault("loss_first", out[f"{names[-1]}_first"])
            out.setdefault("loss_last", out[f"{names[-1]}_last"])
        for key, value in (self.config or {}).items():
            out.setdefault(key, value)
        return _Defaults(out)

    # -- pictures ----------------------------------------------------------------------------
    def pictures_of(self, tensors, after: bool = False, kinds=("image", "matrix", "column")) -> list[Figure]:
        """The template's pictures of these tensors, one figure per picture entry, in the
        template's order (after training: every matching tensor of the run in one figure: the
        reverse chain x_T … x_0, a grid of decoded points)."""
        tpl, found = self.tpl, {}
        order = list(tpl.model.get("pictures", {}))
        ids = {(t.iteration, t.name): t for t in self.tape.tensors}
        for t in tensors:
            for key, entry, label in tpl.pictures_of(t.name):
                if entry.get("kind", "image") in kinds:
                    found.setdefault(key, (entry, label, []))[2].append(t)
        figures = []
        for key in sorted(found, key=order.index):
            entry, label, ts = found[key]
            kind = entry.get("kind", "image")
            name = f"{re.sub(r'[^A-Za-z0-9]+', '-', key).strip('-') or 'picture'}-{ts[0].iteration}"
            if after:
                name += "-after"
            if kind == "image":
                ts = [t for t in ts if _side(t.shape[1])]
                if not ts:
                    continue
                if len(ts) > 1:  # a chain (the reverse process x_T … x_0): a row per sample, its steps across
                    steps = [ts[round(k * (len(ts) - 1) / (CHAIN - 1))] for k in range(CHAIN)] if len(ts) > CHAIN else ts
                    shown = [t.value[n].reshape(_side(t.shape[1]), -1) for n in range(min(ts[0].shape[0], MAX_IMAGES))
                             for t in steps]
                    columns = len(steps)
                    last = tpl.pictures_of(ts[-1].name)[0][2]
                    label = f"{label} … {last.split(': ')[-1]}" if last != label else label
                else:
                    side = _side(ts[0].shape[1])
                    shown = [row.reshape(side, side) for row in ts[0].value]
                    shown = shown if after else shown[:MAX_IMAGES]
                    columns = _side(len(shown)) if entry.get("grid") else min(len(shown), MAX_IMAGES)
                figures.append(Figure(name, "images", Prose.of(label), shown, entry["scale"], columns or 1))
            elif kind == "matrix":
                for t in ts[:1] if not after else []:
                    tokens = ids.get((t.iteration, entry["labels"])) or ids.get((0, entry["labels"]))
                    labels = self.token_labels(tokens, t.shape[0])
                    figures.append(Figure(name, "matrix", Prose.of(label), [t.value], entry["scale"], 1,
                                          labels, labels[:t.shape[1]]))
            elif kind == "steps":
                rows = [t for t in ts if t.shape[0] == 1]
                if rows:
                    tokens = ids.get((0, entry["labels"]))
                    figures.append(Figure(name, "matrix", Prose.of(label), [np.vstack([t.value for t in rows])],
                                          entry["scale"], 1, self.token_labels(tokens, len(rows)),
                                          [str(j + 1) for j in range(rows[0].shape[1])]))
            elif kind == "column":
                for t in ts:
                    side = _side(t.shape[0])
                    if side:
                        figures.append(Figure(name, "images", Prose.of(label), [t.value[:, 0].reshape(side, side)],
                                              entry["scale"], 1))
        return figures

    def token_labels(self, ids_tensor, n: int) -> list[str]:
        tok = self.tape.meta.get("tokenized")
        if ids_tensor is None or tok is None:
            return [str(i + 1) for i in range(n)]
        ids = [int(v) for v in np.ravel(ids_tensor.value)[:n]]
        return [str(tok.vocab[i]) if 0 <= i < len(tok.vocab) else str(i) for i in ids]

    def figure(self, fig: Figure):
        fig.name = f"{len(self.figures) + 1:02d}-{fig.name}"
        self.figures.append(fig)
        self.add("figure", fig)

    # -- the document ------------------------------------------------------------------------
    def build(self) -> Document:
        tape, tpl, w = self.tape, self.tpl, self.w

        def is_hyper(t):
            return t.attrs.get("role") == "hyper"

        k1 = self.k1
        first = [t for t in tape.tensors if t.iteration == k1 and t.phase != "after"]
        inputs = [t for t in tape.tensors if t.iteration == 0 and not is_hyper(t)]
        hypers = [t for t in tape.tensors if t.iteration == 0 and is_hyper(t)]
        after = [t for t in tape.tensors if t.phase == "after"]
        runs = [(section, list(ts)) for section, ts in groupby(first, key=lambda t: t.section)]

        self.add("title", tpl.m("title"))
        self.add("para", Prose.of(tpl.m("intro")))
        own = tape.meta.get("settings")  # a run may describe its own settings
        config = own or self.config
        if config:
            self.add("settings", w("settings"), tpl.settings(config, options=not own))

        self.add("heading", w("model"))
        about = tpl.model.get("about", {}).get(self.lang)
        if about:
            self.add("para", Prose.of(Formatter().vformat(about, (), self._numbers())))
        self.add("equations", [equation(eq) for eq in tpl.equations(tape)])

        self.add("heading", w("inputs"))
        warm = tape.meta.get("warmup")
        self.add("para", Prose.of(w("inputs_intro") + (" " + w("warmup_inputs", n=warm["steps"], k=k1) if warm else "")))
        for t in inputs:
            self.add("tensor", self.view(t))
        for fig in self.pictures_of(inputs):
            self.figure(fig)
        self.add("subheading", w("hyper"))
        if hypers:
            self.add("table", "", [w("symbol"), w("meaning"), w("value")],
                     [[Math(math(tpl.symbol(t.name))), Prose.of(tpl.describe(t)),
                       float(t.value[0, 0]) if t.value.size == 1 else Math(", ".join(entry(float(v)) for v in t.value.ravel()))]
                      for t in hypers])
        else:
            self.add("para", Prose.of(w("none")))

        self.add("heading", w("loop", k=k1))
        self.add("para", Prose.of(w("loop_intro", k=k1)))
        for section, ts in runs:
            self.add("subheading", tpl.section(section))
            text = self.phase_prose(section)
            if text:
                self.add("para", Prose.of(text))
            for t in ts:
                self.add("tensor", self.view(t))
            for fig in self.pictures_of(ts):
                self.figure(fig)
        for fig in self.pictures_of(first, kinds=("steps",)):  # a state over the whole sequence
            self.figure(fig)

        if after:
            self.after(after)
        count = len(inputs) + len(hypers) + len(first) + self.losses(warm)
        return Document(self.blocks, count, self.figures, tape.meta.get("model", ""))

    def after(self, after: list):
        w, tpl = self.w, self.tpl
        self.add("heading", w("after"))
        text = self.phase_prose("after")
        if text:
            self.add("para", Prose.of(text))
        for fig in self.pictures_of(after, after=True):
            self.figure(fig)
        for entry in tpl.model.get("scatter", []):
            series = {}
            for s in entry["series"]:
                t = next((t for t in self.tape.tensors if t.name == s["tensor"] and t.shape[1] == 2), None)
                if t is not None:
                    series[s[self.lang]] = t.value
            if series:
                self.figure(Figure(f"scatter-{len(self.figures) + 1}", "scatter", Prose.of(entry[self.lang]),
                                   series=series, axes=tuple(entry["axes"])))
        generated = self.tape.meta.get("generated", [])
        if generated:
            self.add("subheading", w("generated"))
            self.add("table", "", [w("how"), w("text")],
                     [[Prose.of(w("greedy") if label == "greedy" else w("sampled", t=label)), Prose([(False, text)])]
                      for label, text in generated])
        filled = self.tape.meta.get("filled", [])
        if filled:
            self.add("subheading", w("filled"))
            self.add("table", "", [w("masked"), w("filled_in"), w("top")],
                     [[Prose([(False, masked)]), Prose([(False, text)]),
                       Prose([(False, "; ".join(", ".join(f"{token} {p:.2f}" for token, p in top) for top in tops))])]
                      for masked, text, tops in filled])

    def losses(self, warm) -> int:
        """The loss of every iteration: a table and a chart; returns how many values it shows
        beyond the first iteration's (those are counted with its tensors)."""
        tpl, w = self.tpl, self.w
        names = tpl.losses(self.tape)
        iterations = sorted({t.iteration for t in self.tape.tensors if t.iteration > 0})
        if not names:
            return 0
        by_key = self.by_key
        batch = {n for n in names if any(by_key[(k, n)].value.size > 1 for k in iterations if (k, n) in by_key)}
        rows = [[k] + [float(by_key[(k, n)].value.mean()) if (k, n) in by_key else "–" for n in names]
                for k in iterations]
        self.add("heading", w("losses"))
        self.add("table", "", [w("iteration")] + [Math(math(tpl.symbol(n)) + (rf"\ (\text{{{w('mean')}}})" if n in batch else ""))
                                                   for n in names], rows)
        if batch:
            self.add("para", Prose.of(w("losses_mean")))
        if warm:
            values = [f"{tpl.symbol(n)} {number(float(v[0].mean()))} → {number(float(v[-1].mean()))}"
                      for n, v in warm["series"].items() if n in names and v]
            self.add("para", Prose.of(w("warmup_losses", n=warm["steps"], values="; ".join(values))))
        series = {}
        for n in names:
            values = [float(by_key[(k, n)].value.mean()) for k in iterations if (k, n) in by_key]
            warm_values = [float(np.mean(v)) for v in (warm or {}).get("series", {}).get(n, [])]
            series[math(tpl.symbol(n))] = warm_values + values
        if len(iterations) + len((warm or {}).get("series", {}).get(names[0], [])) > 1:
            secondary = [math(tpl.symbol(n)) for n in tpl.model.get("losses", {}).get("secondary", [])]
            self.figure(Figure("losses", "losses", Prose.of(w("losses_chart")), series=series, secondary=secondary,
                               axes=(w("iteration"), w("loss"))))
        return sum(1 for k in iterations[1:] for n in names if (k, n) in by_key)


class _Defaults(dict):
    """format_map's mapping: an unknown {name} stays as written."""

    def __missing__(self, key):
        return "{" + key + "}"


def build(tape, tpl: Template, config: dict | None = None) -> Document:
    """The walkthrough of a traced run, as neutral blocks (see the module docstring)."""
    return Builder(tape, tpl, config).build()
