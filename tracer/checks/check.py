"""Grade a student's filled exercise workbook, cell by cell, the way a teacher would.

1. Read the recipe the workbook carries (tracer.checks.exercise) and rebuild the reference trace.
2. Check that the given cells (data, initial parameters, draws, hyperparameters) and the blank
   blocks' titles are the exercise's: otherwise the file was made for another exercise.
3. Read the student's cells as the application saved them (cached values; a formula saved with
   no value is recalculated in a spreadsheet engine: LibreOffice when installed, else IronCalc).
4. Replay the steps on the student's own numbers ("the student's world"): each given block is
   recomputed from the student's cells, as the spreadsheet itself would.  A wrong cell is an
   own mistake unless the step, applied to the student's own inputs, gives the student's value:
   then the step was done right on wrong inputs and the error is carried.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracer import engines, models
from tracer.checks.exercise import CLASS_KEYS, build, seal
from tracer.engines.workbook import (
    address,
    check_workbook,
    is_error_value,
    is_number,
    reading,
    values_at,
)
from tracer.errors import TracerError, temporary_folder
from tracer.render.atomic import FIXED_DATE, atomic_path, document_date
from tracer.render.layout import Block, Cells, Layout
from tracer.render.template import Template
from tracer.render.xlsx import ATOL, INFO_SHEET, RTOL

RIGHT, OWN, CARRIED, MISSING = "right", "own mistake", "carried error", "missing"


@dataclass
class Tolerance:
    """When a student's number counts as the reference's."""

    decimals: int | None = None  # right within half a unit of the last decimal: a rounded answer is right
    rtol: float = RTOL

    def close(self, student, reference):
        s, r = np.asarray(student, dtype=float), np.asarray(reference, dtype=float)
        if self.decimals is not None:
            return np.abs(s - r) <= 0.5 * 10.0 ** -self.decimals * (1 + 1e-9) + 1e-15
        return np.abs(s - r) <= self.rtol * np.abs(r) + ATOL

    def describe(self, tpl) -> str:
        """When a cell is right, in the words of the template `tpl`."""
        if self.decimals is not None:
            return tpl.t("check_decimals", decimals=self.decimals, half=f"{0.5 * 10.0 ** -self.decimals:g}")
        return tpl.t("check_rtol", rtol=f"{self.rtol:g}")


@dataclass
class Cell:
    i: int
    j: int
    address: str
    student: object  # as read: a number, text, or None
    status: str
    reference: float
    from_inputs: float  # the step applied to the student's own inputs
    row: int = 0  # where it is on its sheet (from 1, as openpyxl counts)
    col: int = 0


@dataclass
class TensorGrade:
    """One graded tensor: where its cells are (positions: (i, j, sheet row, sheet column), from 1)
    and, once graded, each cell's status."""

    tensor: object
    sheet: str
    label: str  # how the report names it: 'Iteration 1 · 3.7 ∂L/∂a₄'
    equation: str
    positions: list
    block: Block | None = None  # in a workbook tracer wrote
    cells: list = field(default_factory=list)

    def count(self, status) -> int:
        return sum(c.status == status for c in self.cells)

    @property
    def first_own(self) -> Cell | None:
        return next((c for c in self.cells if c.status == OWN), None)


@dataclass
class Grade:
    path: Path
    recipe: dict | None  # a workbook `tracer exercise` wrote; None for a hand-built one (tracer.checks.handmade)
    tolerance: Tolerance
    tensors: list  # TensorGrade, in step order
    template: object = None
    recalculated: tuple | None = None  # (engine label, cells) when formulas saved without a value were recalculated
    heading: str = ""  # what was graded (the first line of the report): made by the recipe's exercise by default
    notes: list = field(default_factory=list)  # lines after the heading (a hand-built workbook: what the map left out)

    def total(self, status=None) -> int:
        return sum(len(g.cells) if status is None else g.count(status) for g in self.tensors)

    @property
    def score(self) -> float:
        return 100.0 * self.total(RIGHT) / max(1, self.total())

    @property
    def score_carried_right(self) -> float:
        """The score with each carried error counted as right (each step done right on the numbers it had)."""
        return 100.0 * (self.total(RIGHT) + self.total(CARRIED)) / max(1, self.total())

    @property
    def first_own(self) -> tuple[TensorGrade, Cell] | None:
        """The first own mistake of the whole exercise, in step order: (its tensor's grade, its cell)."""
        return next(((g, g.first_own) for g in self.tensors if g.first_own), None)

    @property
    def student(self) -> dict:
        """{"name": …, "id": …} of a class's exercise (tracer.checks.roster), else {}."""
        return dict((self.recipe or {}).get("student") or {})

    def lines(self) -> list[str]:
        """The report, in the exercise's language."""
        t = self.template.t
        out = [self.heading or self._heading(), *self.notes]
        if self.recalculated:
            engine, n = self.recalculated
            out.append(t("check_recalculated", n=f"{n:,}", engine=engine))
        for g in self.tensors:
            counts = [t("check_right", n=g.count(RIGHT))]
            wrong = g.count(OWN) + g.count(CARRIED)
            if wrong:
                counts.append(t("check_wrong", n=wrong, own=g.count(OWN), carried=g.count(CARRIED)))
            if g.count(MISSING):
                counts.append(t("check_missing", n=g.count(MISSING)))
            out.append(f"{g.label} ({g.tensor.shape[0]}×{g.tensor.shape[1]}): " + ", ".join(counts))
            own = g.first_own
            if own:
                out.append("    " + t("check_first_own", mistake=self.mistake(g, own)))
        out.append(t("check_score", score=f"{self.score:.1f}", right=f"{self.total(RIGHT):,}",
                     total=f"{self.total():,}",
                     own=self.total(OWN), carried=self.total(CARRIED), missing=self.total(MISSING)))
        if self.total(CARRIED):
            out.append(t("check_carried_right", score=f"{self.score_carried_right:.1f}"))
        if self.first_own:
            g, own = self.first_own
            out.append(t("check_first", where=g.label, address=own.address))
        return out

    def _heading(self) -> str:
        """What the exercise asked: its file, model, blank selection, cells and tolerance."""
        r, t, words = self.recipe, self.template.t, self.template.words
        blank = ", ".join(words.get("phase_" + item.strip(), item.strip()) for item in r["blank"].split(","))
        iterations = words["check_all"] if r["iterations"].strip().lower() == "all" else r["iterations"]
        heading = t("check_header", file=self.path.name, model=r["model"], blank=blank, iterations=iterations,
                    cells=f"{self.total():,}", tolerance=self.tolerance.describe(self.template))
        name = self.student.get("name") or self.student.get("id")
        return f"{heading} · {t('roster_student', name=name)}" if name else heading

    def mistake(self, g: TensorGrade, c: Cell) -> str:
        t = self.template.t
        shown = f"{c.student!r}" if isinstance(c.student, str) else f"{c.student:.6g}"
        expect = (t("check_from_inputs", step=f"{c.from_inputs:.6g}", reference=f"{c.reference:.6g}")
                  if math.isfinite(c.from_inputs) else t("check_reference", reference=f"{c.reference:.6g}"))
        text = t("check_mistake", address=c.address, i=c.i + 1, j=c.j + 1, student=shown, expect=expect,
                 equation=g.equation)
        hint = text_hint(c.student, self.template)
        return f"{text} ({hint})" if hint else text


# --- reading the workbook -----------------------------------------------------------------------

def read_recipe(path: Path) -> dict:
    """The recipe on the workbook's hidden sheet, its seal checked (tracer.checks.exercise.seal)."""
    check_workbook(path)
    check_unzipped_size(path, 0, part="xl/sharedStrings.xml", limit=MAX_STRINGS)  # what opening it reads whole
    with reading(path) as wb:
        if INFO_SHEET not in wb.sheetnames:
            raise TracerError(f"{path.name} was not made by `tracer exercise` (it has no '{INFO_SHEET}' sheet); "
                              "make one with: tracer exercise MODEL --blank …")
        chunks = [row[1] for row in wb[INFO_SHEET].iter_rows(min_row=2, max_col=2, values_only=True)
                  if len(row) > 1 and isinstance(row[1], str)]
    try:
        recipe = json.loads("".join(chunks))
        assert recipe["format"] == 1 and {"model", "config", "blank", "iterations", "fingerprint"} <= set(recipe)
        assert recipe.get("seal") == seal(recipe)
    except Exception:
        raise TracerError(f"{path.name}: its '{INFO_SHEET}' sheet was edited or damaged; "
                          "grade the workbook as the exercise handed it out") from None
    return recipe


def rebuild(recipe: dict):
    """The reference trace, its layout and the exercise, from a workbook's recipe (its options and
    their size checked before anything is traced)."""
    import base64

    model = models.MODELS.get(recipe["model"])
    if model is None:
        raise TracerError(f"the exercise is for a model this tracer does not know: {recipe['model']!r}")
    with temporary_folder("tracer-check-") as tmp:
        config = dict(recipe["config"])
        for name, f in recipe.get("files", {}).items():  # the files its options named
            try:
                data = base64.b64decode(f["data"], validate=True)
                local = tmp / Path(f["name"]).name
            except (binascii.Error, KeyError, TypeError, ValueError):
                raise TracerError(f"the file of --{name.replace('_', '-')} inside the exercise's '{INFO_SHEET}' "
                                  "sheet is damaged; grade the workbook as the exercise handed it out") from None
            local.write_bytes(data)
            config[name] = str(local)
        try:
            cfg = model.Config(**config)
        except TypeError:
            raise TracerError("the exercise was made by another version of tracer (its options differ)") from None
        tape = models.trace(model, cfg, ".xlsx")  # the limits, before any work
    ex = build(tape, model.NAME, recipe["config"], recipe.get("files", {}), recipe["lang"], recipe["blank"],
               recipe["iterations"], recipe.get("self_check", False), {k: recipe[k] for k in CLASS_KEYS if k in recipe})
    if ex.recipe["fingerprint"] != recipe["fingerprint"]:
        raise TracerError("the exercise cannot be rebuilt exactly: it was made by another version of tracer, "
                          f"or its '{INFO_SHEET}' sheet was edited")
    layout = Layout(tape, Template.of(tape, recipe["lang"]), recipe["config"], ex)  # laid out as handed out
    return tape, layout, ex


BYTES_PER_NUMBER = 4_000  # far more than a number of the run takes in a workbook (about 260 bytes in tracer's, all its cells)


MAX_STRINGS = 64_000_000  # bytes of a workbook's shared strings (its text, read whole when it is opened)


def check_unzipped_size(path: Path, cells: int, part: str | None = None, limit: int | None = None) -> None:
    """Refuse a workbook far larger, unzipped, than a run of `cells` numbers can take (a zip bomb, or a
    sheet filled far beyond the exercise) before reading it: what a file makes tracer read is
    bounded.  `part`: only that member, at most `limit` bytes."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            size = sum(i.file_size for i in z.infolist() if part is None or i.filename == part)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise TracerError(f"{path.name} is damaged: its .xlsx (zip) archive is broken") from None
    if size > (limit or BYTES_PER_NUMBER * (cells + 10_000)):
        raise TracerError(f"{path.name} is {size / 1e6:,.0f} MB unzipped, far more than its {cells:,} numbers take: "
                          "not read")


def _cells_of(layout, t):
    """(i, j, sheet row, sheet column), rows and columns counting from 1 as openpyxl does."""
    p = layout.place[id(t)]
    for i in range(p.rows):
        for j in range(p.cols):
            r, c = p.rc(i, j)
            yield i, j, r + 1, c + 1


def _check_given(path, layout, tape, blocks, values) -> None:
    """The given cells and the blank blocks' titles must be the exercise's."""
    for t in tape.tensors:
        if t.op is not None:
            continue
        sheet = layout.place[id(t)].sheet
        for i, j, r, c in _cells_of(layout, t):
            v, where = values.get((sheet, r, c)), address(sheet, r, c)
            if isinstance(v, str) and not is_error_value(v):
                raise TracerError(f"{where} holds the text {v!r} where the number {t.name}[{i + 1}, {j + 1}] belongs")
            if not is_number(v) or not math.isclose(v, t.value[i, j], rel_tol=1e-9, abs_tol=1e-12):
                raise TracerError(f"{path.name} was made for another model or configuration (or a given cell was "
                                  f"changed): {where} should hold {t.name}[{i + 1}, {j + 1}] = {t.value[i, j]:.6g}, "
                                  f"it holds {v!r}")
    for t, b in blocks.items():
        sheet = layout.place[id(t)].sheet
        if values.get((sheet, b.row + 1, 2)) != b.title:
            raise TracerError(f"{path.name} was made for another model or configuration: "
                              f"{address(sheet, b.row + 1, 2)} should be the title of the block {b.title!r}")


def _check_formulas(path, layout, tape, ex, formulas) -> None:
    """Every given formula cell must still hold the exercise's formula: a student who typed a number
    over a given gradient would otherwise be graded on a sheet that is not the exercise."""
    for t in tape.tensors:
        if t.op is None or id(t) in ex.blank_ids:
            continue
        cells, sheet = Cells(layout, t), layout.place[id(t)].sheet
        for i, j, r, c in _cells_of(layout, t):
            expected, found = t.op.formula(cells, i, j), formulas.get((sheet, r, c))
            if _formula_text(found) != _formula_text(expected):
                shown = repr(found) if len(repr(found)) <= 60 else repr(found)[:57] + "…"
                raise TracerError(f"{path.name}: the given cell {address(sheet, r, c)} ({t.name}[{i + 1}, {j + 1}]) was "
                                  f"changed: it should hold the exercise's formula, it holds {shown}; only the white "
                                  "cells are the student's")


_QUOTED_SHEET = re.compile(r"'((?:[^']|'')*)'!")
_NUMBER = re.compile(r"(?<![A-Z0-9_.$])(\d+\.?\d*(?:E[-+]?\d+)?|\.\d+(?:E[-+]?\d+)?)")


def _formula_text(formula) -> str | None:
    """A formula as every spreadsheet writes it alike: no '=', sheet names unquoted, no spaces or $,
    upper case, no _xlfn. prefixes, numbers in one notation (LibreOffice unquotes sheet names,
    Excel may write 1E-3 for 0.001); None for a cell that holds no formula."""
    text = getattr(formula, "text", formula)  # an openpyxl ArrayFormula
    if not isinstance(text, str) or not text.strip():
        return None
    text = _QUOTED_SHEET.sub(lambda m: m[1].replace("''", "'") + "!", text.strip().removeprefix("="))
    text = "".join(text.split()).upper().replace("$", "").replace("_XLFN.", "").replace("_XLWS.", "")
    return _NUMBER.sub(lambda m: repr(float(m[1])), text)


def read_student(path: Path, layout, tape, ex, engine=None) -> tuple[dict, dict, tuple | None]:
    """(blocks of the blank tensors, the cells' values as the student's application saved them)."""
    blocks = {}
    for s in layout.sheets:
        for part in s.parts:
            if isinstance(part, Block) and id(part.tensor) in ex.blank_ids:
                blocks[part.tensor] = part
    def cells(tensors) -> dict[str, set]:
        found: dict[str, set] = {}
        for t in tensors:
            found.setdefault(layout.place[id(t)].sheet, set()).update((r, c) for _, _, r, c in _cells_of(layout, t))
        return found

    answer_cells = cells(ex.blank)
    wanted = cells([*ex.blank, *(u for u in tape.tensors if u.op is None)])
    for t, b in blocks.items():
        wanted[layout.place[id(t)].sheet].add((b.row + 1, 2))
    with reading(path) as wb:
        names = set(wb.sheetnames)
    missing = [s for s in wanted if s not in names]
    if missing:
        raise TracerError(f"{path.name} lacks the sheet{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(s) for s in missing)} of the exercise")
    values = values_at(path, wanted)
    _check_given(path, layout, tape, blocks, values)
    given = cells(u for u in tape.tensors if u.op is not None and id(u) not in ex.blank_ids)
    formulas = values_at(path, {s: answer_cells.get(s, set()) | given.get(s, set()) for s in {*answer_cells, *given}},
                         data_only=False)
    _check_formulas(path, layout, tape, ex, formulas)
    formulas = {k: formulas.get(k) for s, rc in answer_cells.items() for k in ((s, r, c) for r, c in rc)}
    return blocks, values, recalculate_stale(path, formulas, values, engine)


class Later(Exception):
    """The workbook needs recalculating, and the engine is to recalculate it later, with others
    (tracer.checks.gradebook: one LibreOffice process for a folder's files)."""


@dataclass
class Recalculated:
    """An engine that has already recalculated the workbook: `values(path, wanted)` (tracer.engines.
    libreoffice.recalculating), as `engine` for grade; or, with values None, one that will (Later)."""

    label: str
    values: object = None


def recalculate_stale(path: Path, formulas: dict, values: dict, engine) -> tuple | None:
    """A formula the student typed, saved without its value (e.g. written by a script): its value
    from a spreadsheet engine, into `values`.  (engine label, cells), or None when none was needed.
    `engine`: a name (None: the preferred one) or a Recalculated."""
    stale = {k for k, f in formulas.items() if isinstance(f, str) and f.startswith("=") and values.get(k) is None}
    if not stale:
        return None
    wanted = {s: {(r, c) for s2, r, c in stale if s2 == s} for s in {k[0] for k in stale}}
    if isinstance(engine, Recalculated):
        if engine.values is None:
            raise Later(engine.label)
        values.update(engine.values(path, wanted))
        return engine.label, len(stale)
    found = engines.preferred(engine)
    values.update(found.recalculated_values(path, wanted))
    return found.LABEL, len(stale)


# --- grading --------------------------------------------------------------------------------------

def _mine(v) -> tuple[float, float]:
    """A student's cell in the replay, as the two ways a spreadsheet reads it: (in arithmetic and
    SUMPRODUCT, where an empty cell is 0 and SUMPRODUCT skips text; where empty and text are errors).
    An error value is an error both ways."""
    if is_number(v):
        return float(v), float(v)
    return (math.nan, math.nan) if is_error_value(v) else (0.0, math.nan)


NUMBER_AS_TEXT = re.compile(r"\s*[-+−]?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?\s*")


def text_hint(v, tpl) -> str:
    """For text that reads as a number ("0,35891648", typed where the spreadsheet expects a decimal
    point, or a number stored as text): the words that say so, and the number; else ""."""
    if not isinstance(v, str) or is_error_value(v) or not NUMBER_AS_TEXT.fullmatch(v):
        return ""
    number = v.strip().replace(",", ".").replace("−", "-")
    return tpl.t("check_text", student=repr(v), number=number)


def _replay(t, inputs) -> np.ndarray:
    """The step t applied to `inputs` (its inputs' values); a value a spreadsheet would show as an
    error (#NUM!, #VALUE!: not finite, or the step cannot run at all, e.g. on an empty id) is NaN."""
    try:
        out = np.broadcast_to(np.asarray(t.op.forward(*inputs, **t.attrs), dtype=float), t.shape)
    except Exception:  # e.g. an id the student left empty or wrote as text
        return np.full(t.shape, math.nan)
    return np.where(np.isfinite(out), out, math.nan)


def grade(path: Path, tolerance: Tolerance, original: Path | None = None, engine=None) -> Grade:
    """Grade the filled exercise at `path`; `engine` recalculates the formulas the student saved
    without a value ("libreoffice", "ironcalc"; None: the first installed, LibreOffice first; or a
    Recalculated, see recalculate_stale)."""
    path = Path(path)
    recipe = read_recipe(path)
    if original is not None:
        handed_out = read_recipe(Path(original))
        keys = ("model", "config", "blank", "iterations", "fingerprint")
        if any(recipe.get(k) != handed_out.get(k) for k in keys):
            raise TracerError(f"{path.name} was made for another model or configuration than {Path(original).name} "
                              f"({recipe['model']} {recipe['config']} vs {handed_out['model']} {handed_out['config']})")
    tape, layout, ex = rebuild(recipe)
    check_unzipped_size(path, sum(t.value.size for t in tape.tensors))
    blocks, values, recalculated = read_student(path, layout, tape, ex, engine)
    graded = []
    for t in ex.blank:
        b, sheet = blocks[t], layout.place[id(t)].sheet
        graded.append(TensorGrade(t, sheet, f"{sheet} · {b.number} {layout.tpl.symbol(t.name)}", b.equation,
                                  list(_cells_of(layout, t)), b))
    mark(tape, graded, values, tolerance)
    return Grade(path, recipe, tolerance, graded, layout.tpl, recalculated)


def mark(tape, graded: list, values: dict, tolerance: Tolerance, sources: dict | None = None) -> None:
    """Give every cell of each TensorGrade its status; `values[(sheet, row, column)]`: the
    student's cells as read.  Two replays of the steps in order: the reference (each step on the
    given inputs: `sources` maps the id of a given tensor to the student's value of it, a
    hand-built workbook's; without it, the traced values are the reference) and the student's
    world, where each graded tensor is what the student wrote, read twice (see _mine): where
    empty cells and text count as 0, and where they are errors."""
    by_id = {id(g.tensor): g for g in graded}
    last = max(k for k, t in enumerate(tape.tensors) if id(t) in by_id)
    sources = sources or {}
    reference: dict[int, np.ndarray] = {}
    world: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with np.errstate(all="ignore"):
        for t in tape.tensors[:last + 1]:
            if t.op is None or id(t) in sources:
                reference[id(t)] = v = sources.get(id(t), t.value)
                world[id(t)] = (v, v)
                continue
            reference[id(t)] = _replay(t, [reference[id(u)] for u in t.inputs]) if sources else t.value
            as_zero, as_error = (_replay(t, [world[id(u)][k] for u in t.inputs]) for k in (0, 1))
            g = by_id.get(id(t))
            if g is None:
                world[id(t)] = (as_zero, as_error)
                continue
            mine = (np.full(t.shape, math.nan), np.full(t.shape, math.nan))
            for i, j, r, c in g.positions:
                v = values.get((g.sheet, r, c))
                mine[0][i, j], mine[1][i, j] = _mine(v)
                ref, own = float(reference[id(t)][i, j]), float(as_zero[i, j])
                if v is None or v == "":
                    status = MISSING
                elif is_error_value(v):  # carried when the step, on the student's cells, is an error too
                    status = CARRIED if math.isnan(as_error[i, j]) else OWN
                elif not is_number(v):
                    status = OWN  # text or TRUE/FALSE: wrong
                elif tolerance.close(v, ref):
                    status = RIGHT
                elif math.isfinite(own) and tolerance.close(v, own):
                    status = CARRIED
                else:
                    status = OWN
                g.cells.append(Cell(i, j, address(g.sheet, r, c), v, status, ref, own, r, c))
            world[id(t)] = mine


# --- the annotated copy -------------------------------------------------------------------------

COLORS = {OWN: "FFC7CE", CARRIED: "FFEB9C", MISSING: "D9D9D9"}
NOTES = {OWN: "check_note_own", CARRIED: "check_note_carried", MISSING: "check_note_missing"}


def write_report(grade_: Grade, out: Path) -> int:
    """A copy of the student's workbook: each wrong or missing cell coloured (own mistakes red,
    carried errors yellow, missing grey) with a note; a Grade sheet with the report in front."""
    from openpyxl import load_workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, PatternFill

    out = Path(out)
    if out.suffix.lower() != ".xlsx":
        raise TracerError(f"--report {out.name}: the report is a workbook and must end in .xlsx")
    if out.resolve() == grade_.path.resolve():
        raise TracerError("--report must not overwrite the student's workbook")
    try:
        wb = load_workbook(grade_.path)
    except Exception as e:  # grading read only the cells it needed; the copy needs every part
        raise TracerError(f"{grade_.path.name} is damaged and cannot be copied ({(str(e).splitlines() or [''])[0]})") from None
    fills = {k: PatternFill("solid", start_color=v, end_color=v) for k, v in COLORS.items()}
    t = grade_.template.t
    marked = 0
    for g in grade_.tensors:
        ws = wb[g.sheet]
        for c in g.cells:
            if c.status == RIGHT:
                continue
            cell = ws.cell(row=c.row, column=c.col)
            cell.fill = fills[c.status]
            reference, step = f"{c.reference:.10g}", f"{c.from_inputs:.10g}"
            note = t(NOTES[c.status], reference=reference, step=step)
            if c.status == OWN and math.isfinite(c.from_inputs):
                note += t("check_note_step", step=step)
            hint = text_hint(c.student, grade_.template)
            note += f" ({hint})" if hint else ""
            cell.comment = Comment(note, "tracer check", width=260, height=90)
            marked += 1
    sheet = wb.create_sheet(t("check_sheet"), 0)
    wrapped = Alignment(wrap_text=True, vertical="top")  # a long line wraps in its cell, on screen and on paper
    for n, line in enumerate(grade_.lines(), start=1):
        sheet.cell(row=n, column=1, value=line).alignment = wrapped
    sheet.column_dimensions["A"].width = 140
    # printed landscape, one page wide (as the workbook's own sheets), its lines whole
    sheet.page_setup.orientation = "landscape"
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
    sheet.print_area = f"A1:A{max(1, sheet.max_row)}"
    sheet.oddFooter.left.text, sheet.oddFooter.right.text = "&A", "&P / &N"
    wb.active = 0
    wb.calculation.fullCalcOnLoad = True  # openpyxl keeps no cached values: recompute on opening
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        _save(wb, tmp)
    return marked


def _save(wb, path: Path) -> None:
    """openpyxl's save, with the same bytes for the same workbook: its modified date and the date of
    every zip member are document_date(), not the time of saving."""
    from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

    from openpyxl.writer.excel import ExcelWriter

    date = document_date()
    stamp = max(date, FIXED_DATE).timetuple()[:6]  # a zip member's date cannot be before 1980

    class Archive(ZipFile):
        def writestr(self, name, data, *args, **kwargs):
            if isinstance(name, str):
                name = ZipInfo(name, date_time=stamp)
                name.compress_type, name.external_attr = ZIP_DEFLATED, 0o600 << 16
            super().writestr(name, data, *args, **kwargs)

        def write(self, filename, arcname=None, *args, **kwargs):  # a sheet, from openpyxl's temporary file
            self.writestr(arcname or str(filename), Path(filename).read_bytes())

    wb.properties.modified = date.replace(tzinfo=None)
    ExcelWriter(wb, Archive(path, "w", ZIP_DEFLATED, allowZip64=True)).save()
