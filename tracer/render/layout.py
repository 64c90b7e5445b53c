"""Where every tensor goes: sheets, numbered sections, titled blocks, pictures and the overview.

The layout reads the tape and the template and decides positions and texts; it writes nothing.
`Cells` turns positions into the references an op's formula needs (across sheets, by defined
name for hyperparameters).  Parts of a sheet are stacked top to bottom, so a writer can emit
every sheet in row order (XlsxWriter's constant-memory mode).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from tracer.core.size import MAX_COLS, MAX_ROWS, turned
from tracer.errors import TracerError
from tracer.render.template import Template

MAX_SHEET_NAME = 31
BLOCK_HEAD = 4  # title, equation, note, column numbers


def _image(t, n: int, side: int, scale: str) -> "PictureImage":
    """Row n of tensor t (s² values) as an s × s image."""
    return PictureImage(0, [[(t, n, r * side + c) for c in range(side)] for r in range(side)], scale, source=(t, n))


def _side(n: int) -> int:
    """The side of the square image of n pixels (0 when n is not a square of a side > 1)."""
    side = math.isqrt(n)
    return side if side * side == n and side > 1 else 0


def on_overview(t) -> bool:
    """Hyperparameters are named cells on the overview; every other tensor is a block."""
    return t.attrs.get("role") == "hyper"


def phase_style(t) -> str:
    """The colors of a tensor's block: its phase's (every constant of the inputs sheet: input)."""
    return t.phase if t.iteration else "input"


def block_cells(tape) -> int:
    """How many tensor cells the blocks hold (the length of a progress bar)."""
    return sum(t.value.size for t in tape.tensors if not on_overview(t))


def col_letter(c: int) -> str:
    s = ""
    c += 1
    while c:
        c, rem = divmod(c - 1, 26)
        s = chr(65 + rem) + s
    return s


COLS = [col_letter(c) for c in range(MAX_COLS)]


def quote_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


@dataclass
class Place:
    """Tensor cell (i, j) sits at sheet row row0 + i, column col0 + j (swapped when transposed)."""

    sheet: str
    row0: int
    col0: int
    rows: int
    cols: int
    transposed: bool = False

    def __post_init__(self):
        self.prefix = quote_sheet(self.sheet) + "!"  # for references from other sheets

    def rc(self, i: int, j: int) -> tuple[int, int]:
        return (self.row0 + j, self.col0 + i) if self.transposed else (self.row0 + i, self.col0 + j)

    @property
    def display(self) -> tuple[int, int]:
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    def addr(self, i: int, j: int, here: str, absolute=False) -> str:
        r, c = self.rc(i, j)
        a = f"${COLS[c]}${r + 1}" if absolute else f"{COLS[c]}{r + 1}"
        return a if here == self.sheet else self.prefix + a

    def span(self, i0, j0, i1, j1, here: str) -> str:
        (r0, c0), (r1, c1) = self.rc(i0, j0), self.rc(i1, j1)
        a = f"{COLS[c0]}{r0 + 1}" if (r0, c0) == (r1, c1) else f"{COLS[c0]}{r0 + 1}:{COLS[c1]}{r1 + 1}"
        return a if here == self.sheet else self.prefix + a


class Cells:
    """The cells of a tensor's inputs as seen from the sheet of the tensor (for op formulas)."""

    def __init__(self, layout: "Layout", t):
        self.here = layout.place[id(t)].sheet
        self.ins = [layout.place[id(u)] for u in t.inputs]
        self.names = [u.attrs.get("defined_name") for u in t.inputs]
        self.n = len(t.inputs)

    def at(self, k, i, j) -> str:
        if self.names[k]:
            return self.names[k]
        p = self.ins[k]
        return p.addr(i if p.rows > 1 else 0, j if p.cols > 1 else 0, self.here)

    def row(self, k, i):
        """(range, runs vertically, length) of row i of input k."""
        p = self.ins[k]
        return p.span(i, 0, i, p.cols - 1, self.here), p.transposed, p.cols

    def col(self, k, j):
        p = self.ins[k]
        return p.span(0, j, p.rows - 1, j, self.here), not p.transposed, p.rows

    def all(self, k) -> str:
        p = self.ins[k]
        return p.span(0, 0, p.rows - 1, p.cols - 1, self.here)

    def span(self, k, i0, j0, i1, j1) -> str:
        """The range from cell (i0, j0) to cell (i1, j1) of input k."""
        return self.ins[k].span(i0, j0, i1, j1, self.here)

    def shape(self, k) -> tuple[int, int]:
        return self.ins[k].rows, self.ins[k].cols


# --- the parts of a sheet -----------------------------------------------------------------------

@dataclass
class Text:
    row: int
    col: int
    text: str
    style: str = "text"


@dataclass
class Link:
    row: int
    col: int
    text: str
    sheet: str
    target_row: int


@dataclass
class Block:
    """A titled tensor: title, equation, note, column numbers, then the grid."""

    row: int
    tensor: object
    number: str
    title: str
    equation: str
    note: str
    place: Place
    tokens: list | None = None  # a column of token ids also shown as text: the token of each row

    @property
    def cells(self) -> int:
        """The cells the writer fills: the grid, 4 header texts, the column and row numbers, and
        with tokens their column and its heading."""
        rows, cols = self.place.display
        return rows * cols + 4 + cols + rows + (rows + 1 if self.tokens else 0)


@dataclass
class Hyper:
    """A named input cell on the overview (a hyperparameter formulas refer to by name)."""

    row: int
    label: str
    tensor: object
    place: Place


@dataclass
class Views:
    """A table of cells that each point at one tensor cell (loss table rows)."""

    row: int
    cells: list  # (col, None, text), (col, tensor, None): the 1 × 1 tensor (else its mean), or (col, tensor, (i, j))


SNAPSHOT_IMAGES = 5  # of a batch, a warm-up snapshot shows the first few images
SELF_SCALED = ("gray_auto", "diverging")  # colour scales that run from the image's own min to its max
EXTREMES_COLUMNS = 16  # at least: "min" and its value, "max" and its value, under a self-scaled image


@dataclass
class PictureImage:
    """A heatmap: pixel (r, c) shows the tensor cell pixels[r][c] = (tensor, i, j).  Labels (a
    matrix's tokens, a hidden unit's number) go left of each row and above each column: text, or
    (ids tensor, i), the token of that id (a formula, so it follows a recomputed id)."""

    col: int
    pixels: list | None  # rows of (tensor, i, j); None for a warm-up snapshot, whose pixels are `values`
    scale: str  # gray, gray_auto, diverging or attention (SCALES in tracer.render.xlsx; SELF_SCALED)
    left: list | None = None
    top: list | None = None
    values: object = None  # a warm-up snapshot's pixels (rows of numbers): written as values, not formulas
    source: tuple | None = None  # (tensor, row): the image is that row of the tensor (MIN/MAX read it)

    @property
    def height(self) -> int:
        return len(self.pixels if self.values is None else self.values)

    @property
    def width(self) -> int:
        return len(self.pixels[0] if self.values is None else self.values[0])

    @property
    def self_scaled(self) -> bool:
        """Shaded from its own minimum to its maximum: the picture shows both (MIN and MAX formulas)."""
        return self.scale in SELF_SCALED

    @property
    def extremes_width(self) -> int:
        """The columns under a self-scaled image that show its minimum and maximum (at least
        EXTREMES_COLUMNS, so that the numbers fit under a small image too)."""
        return max(self.width, EXTREMES_COLUMNS)

    @property
    def span(self) -> int:
        """The columns the image takes in its row, the minimum and maximum under it included."""
        return max(self.width, self.extremes_width if self.self_scaled else 0)


@dataclass
class Picture:
    """Side-by-side heatmaps: each square is a formula pointing at the tensor's cell (a snapshot's,
    a value); the column labels, if any image has them, take the first row; under a self-scaled
    image, its minimum and maximum."""

    row: int
    images: list  # of PictureImage

    @property
    def labelled(self) -> bool:
        return any(im.top for im in self.images)

    @property
    def height(self) -> int:
        """Rows used: the labels' row, the tallest image, and one for the minima and maxima if any
        image needs them."""
        return self.labelled + max(im.height for im in self.images) + any(im.self_scaled for im in self.images)


@dataclass
class Chart:
    row: int
    col: int
    title: str
    categories: tuple  # (sheet, col, first row, last row)
    series: list  # (name, sheet, col, first row, last row, on the secondary axis)
    x_title: str = ""  # the x axis's title (default: the iteration)
    log: bool = False  # a logarithmic y axis


@dataclass
class Sheet:
    name: str
    kind: str
    parts: list = field(default_factory=list)
    width: int = 2  # columns used
    freeze: tuple = (0, 0)


class Layout:
    def __init__(self, tape, template: Template, config: dict):
        self.tape, self.tpl = tape, template
        self.config = tape.meta.get("settings") or config  # a run may describe its own settings
        self.place: dict[int, Place] = {}
        self.exercise = None  # a student's version (tracer.checks.exercise) leaves some blocks blank
        self.sections: list[tuple[str, str, int]] = []  # (sheet, title, row) for the index
        tt = template.t
        self.warmup = tape.meta.get("warmup")  # steps run before the traced ones (tracer.models.training)
        self.traced = sorted({t.iteration for t in tape.tensors if t.iteration})  # N+1 … N+K
        self.overview = Sheet(tt("overview"), "overview")
        self.inputs = Sheet(tt("inputs"), "inputs", freeze=(2, 1))
        self.iters = [Sheet(tt("iteration", k=k), "iteration", freeze=(2, 1)) for k in self.traced]
        self._iter_sheets = dict(zip(self.traced, self.iters))
        # what a model computes with its trained parameters (generation, similarities): one sheet
        after = any(t.phase == "after" for t in tape.tensors)
        self.after = Sheet(tt("after"), "after", freeze=(2, 1)) if after else None
        self.pictures = Sheet(tt("pictures"), "pictures")
        tokenized = tape.meta.get("tokenized")
        self.tokens = Sheet(tt("tokens"), "tokens") if tokenized else None
        self.vocab_range = None  # set by _lay_tokens
        self.sheets = [self.overview, *([self.tokens] if tokenized else []), self.inputs, *self.iters,
                       *([self.after] if after else []), self.pictures]
        for s in self.sheets:
            if len(s.name) > MAX_SHEET_NAME:
                raise TracerError(f"sheet name {s.name!r} is longer than Excel's {MAX_SHEET_NAME} characters")
        self.hypers = [t for t in tape.tensors if on_overview(t)]  # placed by _lay_overview
        self._lay_tensor_sheets()
        if tokenized:
            self._lay_tokens(tokenized)
        self._lay_pictures()
        self._lay_overview()

    def options(self) -> str:
        """The settings of the run as command-line options: what produced the warm-up."""
        return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in self.config.items() if value is not None)

    # -- tensor sheets --------------------------------------------------------------------------
    def _sheet_of(self, t) -> Sheet:
        if t.phase == "after":
            return self.after
        return self.inputs if t.iteration == 0 else self._iter_sheets[t.iteration]

    def _fit(self, t, sheet: str, row0: int, col0: int) -> Place:
        rows, cols = t.shape
        transposed = turned(rows, cols)
        p = Place(sheet, row0, col0, rows, cols, transposed)
        if col0 + p.display[1] > MAX_COLS:
            p.transposed = not transposed
        if col0 + p.display[1] > MAX_COLS:
            raise TracerError(f"{t.name} ({rows}×{cols}) is too wide for a sheet ({MAX_COLS} columns)")
        return p

    def _lay_tensor_sheets(self):
        tt, tpl = self.tpl.t, self.tpl
        rows = {id(s): 0 for s in self.sheets}
        counters: dict[tuple, int] = {}
        current: dict[int, str] = {}
        numbers: dict[int, int] = {}  # the current section number of each sheet
        chain = [self.inputs, *self.iters, *([self.after] if self.after else [])]
        for k, s in enumerate(chain):  # k = 0 for the inputs
            head = tt("inputs") if k == 0 else s.name
            s.parts.append(Text(0, 1, head, "sheet_title"))
            s.parts.append(Link(0, 4, tt("back"), self.overview.name, 0))
            if k:
                s.parts.append(Link(0, 6, f"← {chain[k - 1].name}", chain[k - 1].name, 0))
                if k + 1 < len(chain):
                    s.parts.append(Link(0, 8, f"{chain[k + 1].name} →", chain[k + 1].name, 0))
            s.parts.append(Text(1, 1, tt("legend"), "note"))
            if k == 0 and self.warmup:
                s.parts.append(Text(2, 1, tt("warmup_inputs", n=self.warmup["steps"], options=self.options()), "bold"))
            rows[id(s)] = 3
        for t in self.tape.tensors:
            if on_overview(t):
                continue
            s = self._sheet_of(t)
            section = t.section if t.iteration else "input"
            r = rows[id(s)]
            if current.get(id(s)) != section:
                current[id(s)] = section
                numbers[id(s)] = sec = numbers.get(id(s), 0 if t.iteration else -1) + 1
                title = f"{sec}  {tpl.section(section)}"
                s.parts.append(Text(r, 0, title, "section_" + phase_style(t)))
                self.sections.append((s.name, title, r))
                r += 2
            sec = numbers[id(s)]
            counters[(id(s), sec)] = n = counters.get((id(s), sec), 0) + 1
            p = self._fit(t, s.name, r + BLOCK_HEAD, 1)
            self.place[id(t)] = p
            title = f"{tpl.symbol(t.name)}    {t.shape[0]} × {t.shape[1]}    {tpl.describe(t)}"
            block = Block(r, t, f"{sec}.{n}", title, tpl.equation(t), tpl.note(t), p)
            if t.attrs.get("decode") and self.tokens and t.shape[1] == 1:  # ids read as text
                block.tokens = [self.tape.meta["tokenized"].vocab[int(v)] for v in t.value[:, 0]]
            s.parts.append(block)
            s.width = max(s.width, 1 + p.display[1] + bool(block.tokens))
            r += BLOCK_HEAD + p.display[0] + 1
            if r > MAX_ROWS:
                raise TracerError(f"sheet {s.name!r} would need more than {MAX_ROWS} rows")
            rows[id(s)] = r

    # -- tokens: text → tokens → ids, the vocabulary, and how BPE learned it ------------------------
    def _lay_tokens(self, tok):
        s, tt = self.tokens, self.tpl.t
        parts = s.parts
        parts += [Text(0, 0, tt("tokens_title", kind=tok.kind), "sheet_title"),
                  Link(0, 6, tt("back"), self.overview.name, 0), Text(1, 0, tt("tokens_note"), "note")]
        r, width = 3, 2
        parts.append(Text(r, 0, tt("tokens_sentences"), "heading"))
        for n, ids in enumerate(tok.sentences, start=1):
            tokens = tok.decode(ids)
            r += 1
            parts.append(Views(r, [(0, None, tt("tokens_sentence", n=n))] +
                               [(1 + k, None, token) for k, token in enumerate(tokens)]))
            parts.append(Views(r + 1, [(0, None, tt("tokens_ids"))] + [(1 + k, None, i) for k, i in enumerate(ids)]))
            width = max(width, 1 + len(ids))
            r += 2
        r += 1
        parts.append(Text(r, 0, tt("tokens_vocab", n=len(tok.vocab)), "heading"))
        r += 1
        parts.append(Views(r, [(0, None, "id"), (1, None, tt("tokens_token"))]))
        # the named range `vocab`: INDEX(vocab, id + 1) is the token of an id anywhere in the book
        self.vocab_range = f"={quote_sheet(s.name)}!$B${r + 2}:$B${r + 1 + len(tok.vocab)}"
        for i, token in enumerate(tok.vocab):
            r += 1
            parts.append(Views(r, [(0, None, i), (1, None, token)]))
        if tok.kind == "bpe":
            r += 2
            parts.append(Text(r, 0, tt("tokens_merges"), "heading"))
            r += 1
            parts.append(Views(r, [(0, None, tt("tokens_step")), (1, None, tt("tokens_pair")),
                                   (2, None, tt("tokens_count")), (3, None, tt("tokens_new")),
                                   (4, None, tt("tokens_competitors"))]))
            for n, m in enumerate(tok.merges, start=1):
                r += 1
                others = "; ".join(f"{a} + {b}: {c}" for (a, b), c in m.competitors)
                parts.append(Views(r, [(0, None, n), (1, None, f"{m.pair[0]} + {m.pair[1]}"), (2, None, m.count),
                                       (3, None, m.token), (4, None, others or "-")]))
            if tok.stop_reason:
                parts.append(Text(r + 1, 0, tok.stop_reason, "note"))
        s.width = max(width, 6)

    # -- pictures -------------------------------------------------------------------------------
    def _lay_pictures(self):
        """Heatmaps, in the template's [pictures] order: a row of them per step, the warm-up's
        snapshots first (values, on the fixed colour scales), then each traced iteration (formulas
        pointing at the tensors' cells, the inputs' pictures first), then what the trained model
        computes (a grid of images when the entry asks for one).  An entry's kind: "image"
        (default; each row of a batch tensor N × s² as its own s × s image), "matrix" (a tensor as
        it is, e.g. attention weights, its rows and columns labelled with the tokens of `labels`,
        an id column) or "steps" (the numbered tensors h_1 … h_T of an iteration as the rows of
        one picture: a state over time, its rows labelled with the tokens read, its columns with
        the unit numbers).  Without any picture the sheet is left out."""
        s, tt, tpl = self.pictures, self.tpl.t, self.tpl
        order = list(tpl.model.get("pictures", {}))  # e.g. the upscaled digit next to the digit
        by_iter: dict[int, list] = {}
        after: list = []  # (rank, label, entry, tensor): after training
        steps: dict[tuple, list] = {}  # (iteration, rank) → the numbered tensors in order
        ids = {(t.iteration, t.name): t for t in self.tape.tensors}
        for t in self.tape.tensors:
            for key, entry, label in tpl.pictures_of(t.name):
                kind, rank, side = entry.get("kind", "image"), order.index(key), _side(t.shape[1])
                if kind == "image" and side and t.phase == "after":
                    after.append((rank, label, entry, t))
                elif kind == "image" and side:
                    by_iter.setdefault(t.iteration, []).extend(
                        (rank, label + (f"  #{n + 1}" if t.shape[0] > 1 else ""), _image(t, n, side, entry["scale"]))
                        for n in range(t.shape[0]))
                elif kind == "matrix" and t.iteration and t.phase != "after":
                    tokens = ids.get((t.iteration, entry["labels"])) or ids[(0, entry["labels"])]
                    names = [(tokens, i) for i in range(t.shape[0])]
                    pixels = [[(t, i, j) for j in range(t.shape[1])] for i in range(t.shape[0])]
                    by_iter.setdefault(t.iteration, []).append(
                        (rank, label, PictureImage(0, pixels, entry["scale"], names, names[:t.shape[1]])))
                elif kind == "steps" and t.iteration and t.phase != "after" and t.shape[0] == 1:
                    steps.setdefault((t.iteration, rank), (label, entry, []))[2].append(t)
        for (k, rank), (label, entry, rows) in steps.items():
            tokens = ids[(0, entry["labels"])]
            pixels = [[(t, 0, j) for j in range(t.shape[1])] for t in rows]
            by_iter.setdefault(k, []).append((rank, label, PictureImage(
                0, pixels, entry["scale"], [(tokens, i) for i in range(len(rows))],
                [str(j + 1) for j in range(rows[0].shape[1])])))
        snapshots = (self.warmup or {}).get("snapshots", [])
        if not (by_iter or after or snapshots):
            self.sheets.remove(s)
            self.pictures = None
            return
        note = tpl.model.get("pictures_note", {}).get(tpl.lang)  # how to read the model's pictures
        s.parts += [Text(0, 1, tt("pictures"), "sheet_title"), Link(0, 12, tt("back"), self.overview.name, 0),
                    Text(1, 1, " ".join([tt("picture_note"), *([tt("picture_note_warmup")] if self.warmup else []),
                                         *([note] if note else [])]), "note")]
        r = 3
        entries = tpl.pictures()
        for step, values in snapshots:  # on the fixed scales only
            items = [(order.index(e["key"]), tpl.m_picture(e["key"]) + (f"  #{n + 1}" if len(v) > 1 else ""),
                      PictureImage(0, None, e["scale"], values=v[n].reshape(_side(v.shape[1]), -1)))
                     for e in entries if e.get("kind", "image") == "image" and e["scale"] not in SELF_SCALED
                     and (v := values.get(e["tensor"])) is not None for n in range(min(len(v), SNAPSHOT_IMAGES))]
            if items:
                r = self._picture_row(r, tt("warmup_step", k=step), items)
        fixed = by_iter.pop(0, [])
        for k in sorted(by_iter) or ([0] if fixed else []):
            r = self._picture_row(r, tt("iteration", k=k) if k else "", fixed + sorted(by_iter.get(k, []), key=lambda e: e[0]))
        for _, label, entry, t in sorted(after, key=lambda e: e[0]):  # after training: each on rows of its own
            per_row = t.shape[0]
            if entry.get("grid") and math.isqrt(t.shape[0]) ** 2 == t.shape[0]:
                per_row = math.isqrt(t.shape[0])
            s.parts += [Text(r, 0, tt("after"), "bold"), Text(r, 1, label, "bold")]
            r += 1
            for first in range(0, t.shape[0], per_row):
                items = [(0, "", _image(t, n, _side(t.shape[1]), entry["scale"]))
                         for n in range(first, min(first + per_row, t.shape[0]))]
                r = self._picture_row(r - 1, "", items, titled=False)
            r += 1

    def _picture_row(self, r: int, label: str, items: list, titled: bool = True) -> int:
        """One row of images from (rank, label, PictureImage) items, left to right, each label above
        its image (none when not `titled`); returns the next free row."""
        s = self.pictures
        if label:
            s.parts.append(Text(r, 0, label, "bold"))
        images, col = [], 1
        for _, text, im in items:
            labelled = im.left is not None
            if titled:
                s.parts.append(Text(r, col, text, "bold"))
            im = dataclasses.replace(im, col=col + labelled)  # the row labels in the column before the grid
            images.append(im)
            col = im.col + im.span + (4 if labelled else 1)  # room for the next image's labels
        picture = Picture(r + 1, images)
        s.parts.append(picture)
        s.width = max(s.width, col)
        return r + 1 + picture.height + 1

    # -- overview -------------------------------------------------------------------------------
    def _lay_overview(self):
        s, tt, tpl = self.overview, self.tpl.t, self.tpl
        parts = s.parts
        parts += [Text(0, 0, tpl.m("title"), "sheet_title"), Text(1, 0, tpl.m("intro"), "text")]
        r = 3
        parts.append(Text(r, 0, tt("equations"), "heading"))
        for eq in tpl.equations():
            r += 1
            parts.append(Text(r, 0, eq, "equation"))
        r += 2
        parts += [Text(r, 0, tt("hyper"), "heading"), Text(r + 1, 0, tt("hyper_note"), "note")]
        r += 2
        for t in self.hypers:
            p = Place(s.name, r, 2, 1, 1)
            self.place[id(t)] = p
            parts.append(Hyper(r, f"{tpl.symbol(t.name)}  ({tpl.describe(t)})", t, p))
            r += 1
        r += 1
        parts.append(Text(r, 0, tt("settings"), "heading"))
        hyper_names = {t.name.lower() for t in self.hypers}
        for key, value in self.config.items():
            if key.lower() in hyper_names:
                continue  # shown above as a named cell
            if value is None:
                value = tt("default_" + key) if "default_" + key in self.tpl.words else "-"
            r += 1
            label = self.tpl.setting(key, option="settings" not in self.tape.meta)
            parts.append(Views(r, [(0, None, label), (2, None, value)]))
        label = self.tape.meta.get("label")
        if label is not None:
            r += 1
            parts.append(Views(r, [(0, None, tt("label")), (2, None, label if isinstance(label, str) else int(label))]))
        r += 2
        parts.append(Text(r, 0, tt("losses"), "heading"))
        recorded = {t.name for t in self.tape.tensors if t.iteration}
        names = [n for n in tpl.losses(self.tape) if n in recorded]
        secondary = tpl.model.get("losses", {}).get("secondary", [])
        r += 1
        parts.append(Views(r, [(0, None, tt("iteration_col"))] +
                           [(1 + n, None, tpl.symbol(name)) for n, name in enumerate(names)]))
        first = r + 1
        by_key = {(t.iteration, t.name): t for t in self.tape.tensors}
        marks = len(names) + 1  # the column saying which rows are values and which formulas
        series = (self.warmup or {}).get("series", {})
        for step in range(1, (self.warmup or {}).get("steps", 0) + 1):  # values: the warm-up ran in numpy
            r += 1
            row = [(0, None, step)] + [(1 + n, None, float(series[name][step - 1].mean()))
                                       for n, name in enumerate(names) if name in series]
            parts.append(Views(r, row + ([(marks, None, tt("warmup_rows"))] if step == 1 else [])))
        for k in self.traced:
            r += 1
            row = [(0, None, k)] + [(1 + n, by_key[(k, name)], None) for n, name in enumerate(names)]
            parts.append(Views(r, row + ([(marks, None, tt("traced_rows"))] if self.warmup and k == self.traced[0] else [])))
        if names:
            title = tt("chart_title_warmup", n=self.warmup["steps"]) if self.warmup else tt("chart_title")
            parts.append(Chart(first - 1, len(names) + 2 + bool(self.warmup), title, (s.name, 0, first, r),
                               [(tpl.symbol(name), s.name, 1 + n, first, r, name in secondary)
                                for n, name in enumerate(names)]))
        r = max(r + 2, first + 17)  # below the chart
        r = self._lay_curve(r)
        parts.append(Text(r, 0, tt("index"), "heading"))
        parts.append(Link(2, 0, tt("index") + " ↓", s.name, r))
        for sheet_name, title, row in self.sections:
            r += 1
            parts.append(Link(r, 0, f"{sheet_name}:  {title}", sheet_name, row))
        for sheet in (self.pictures, self.tokens):
            if sheet:
                r += 1
                parts.append(Link(r, 0, sheet.name, sheet.name, 0))
        s.width = 8

    def _lay_curve(self, r: int) -> int:
        """The model's [curve] (rnn, lstm: ‖∂L_T/∂h_t‖), if it has one: a (T, 1) tensor of every
        iteration as a table, a row per t and a column per iteration, each cell pointing at the
        tensor's cell, and a line chart of it on a logarithmic axis.  Returns the next free row."""
        curve = self.tpl.model.get("curve")
        if not curve:
            return r
        tt, lang, parts, name = self.tpl.t, self.tpl.lang, self.overview.parts, self.overview.name
        tensors = [t for t in self.tape.tensors if t.name == curve["tensor"] and t.iteration]
        if not tensors:
            return r
        parts += [Text(r, 0, curve[lang], "heading"), Text(r + 1, 0, curve[f"note_{lang}"], "note")]
        r += 2
        parts.append(Views(r, [(0, None, curve[f"x_{lang}"])] +
                           [(1 + n, None, tt("iteration", k=t.iteration)) for n, t in enumerate(tensors)]))
        first = r + 1
        for i in range(tensors[0].shape[0]):
            r += 1
            parts.append(Views(r, [(0, None, i + 1)] + [(1 + n, t, (i, 0)) for n, t in enumerate(tensors)]))
        parts.append(Chart(first - 1, len(tensors) + 2, curve[lang], (name, 0, first, r),
                           [(tt("iteration", k=t.iteration), name, 1 + n, first, r, False)
                            for n, t in enumerate(tensors)], x_title=curve[f"x_{lang}"], log=True))
        return max(r + 2, first + 17)
