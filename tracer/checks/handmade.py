"""Grade a workbook a student built by hand, laid out however they liked, against a model's steps.

A map (TOML) says where each tensor is: a table per part of the run, a line per tensor

    [inputs]                 # iteration 0: the data, the initial parameters, the hyperparameters
    W1 = "Pesos!B2:C17"      # rows × columns as the tensor's shape, or the transpose
    [iteration.1]
    x_hat = "Iter1!C10:C25"  # a 1 × 16 row, written down a column: read transposed
    "dL/dW1" = ""            # "": not in the workbook
    [after]                  # after training (generation)

Tensors are named as `tracer run` names them, or by the symbols its workbooks show (x̂, ∂L/∂W₁).
A tensor the map leaves out may be a defined name of the workbook instead: the tensor's name with
every character a name cannot hold as "_", then "_" and its iteration (W1_0, dL_dW1_1, x_hat_after).

What the map places is read from the student's cells.  A placed tensor computed from nothing else
placed is an input (the student's own data, initial parameters, draws: the replay starts from
them); every other placed tensor is graded, with the rules of tracer.checks.check: the reference
is each step replayed on the student's inputs, an own mistake is told from a carried error by
the step replayed on the student's own cells.  Unplaced inputs keep tracer's own values (from the
options); unplaced steps are not graded.  The map is checked (its size, every name, every shape,
every range inside a sheet) before anything is read.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer.checks.check import Grade, TensorGrade, check_unzipped_size, mark, recalculate_stale
from tracer.checks.exercise import names_of, plain
from tracer.core.size import MAX_COLS, MAX_ROWS
from tracer.engines.workbook import address, check_workbook, is_number, reading, values_at
from tracer.errors import TracerError, read_bytes
from tracer.render.template import Template

MAX_MAP = 1_000_000  # bytes
INPUTS, ITERATION, AFTER = "inputs", "iteration", "after"
RANGE = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d{1,7})(?::\$?([A-Za-z]{1,3})\$?(\d{1,7}))?")
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def table_of(t) -> str:
    """The map's table of a tensor: inputs, iteration.K or after."""
    if t.phase == "after":
        return AFTER
    return INPUTS if t.iteration == 0 else f"{ITERATION}.{t.iteration}"


def defined_name(t) -> str:
    """The workbook name that stands for tensor t: W1_0, dL_dW1_1, x_hat_after."""
    suffix = "after" if t.phase == "after" else str(t.iteration)
    return re.sub(r"[^A-Za-z0-9_.]", "_", t.name) + "_" + suffix


# --- the template ---------------------------------------------------------------------------------

def _key(name: str) -> str:
    return name if BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _comment(text: str, width: int = 100) -> list[str]:
    """Text as '# ' lines of at most `width` characters."""
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line]


def template(tape, lang: str, options: str) -> str:
    """A map listing every tensor of the run, each with its shape and meaning, every place empty;
    `options`: the run's options as the command line gives them (' --size 4 --hidden 2')."""
    tpl = Template.of(tape, lang)
    out = [*_comment(tpl.t("map_title", model=tape.meta["model"], options=options)), *_comment(tpl.t("map_how"))]
    table = None
    for t in tape.tensors:
        if table_of(t) != table:
            table = table_of(t)
            title = (tpl.t("map_inputs") if table == INPUTS else tpl.t("map_after") if table == AFTER
                     else tpl.t("map_iteration", k=t.iteration))
            out += ["", f"[{table}]  # {title}"]
        equation = tpl.equation(t)
        meaning = f"{tpl.symbol(t.name)}: {tpl.describe(t)}" + (f"; {equation}" if equation else "")
        out.append(f'{_key(t.name) + " = " + chr(34) * 2:<28} # {t.shape[0]}×{t.shape[1]}  {meaning}  '
                   f"[{defined_name(t)}]")
    return "\n".join(out) + "\n"


# --- reading a map --------------------------------------------------------------------------------

@dataclass
class Place:
    """Where a tensor is in the student's workbook."""

    tensor: object
    text: str  # as the map (or the defined name) writes it
    sheet: str
    row: int  # its first cell (from 1)
    col: int
    transposed: bool

    def positions(self) -> list[tuple[int, int, int, int]]:
        """(i, j, sheet row, sheet column) of every element."""
        rows, cols = self.tensor.shape
        return [(i, j, self.row + (j if self.transposed else i), self.col + (i if self.transposed else j))
                for i in range(rows) for j in range(cols)]


def _tables(tape) -> dict[str, dict[str, object]]:
    """Each table of the map, and in it every way to name each of its tensors (name or symbol,
    as written or plain)."""
    symbols = names_of(tape)
    tables: dict[str, dict[str, object]] = {}
    for t in tape.tensors:
        keys = tables.setdefault(table_of(t), {})
        for key in (t.name, *symbols[t.name]):
            keys.setdefault(key, t)
            keys.setdefault(plain(key), t)
    return tables


def read_map(path: Path, tape) -> dict[int, tuple[object, str]]:
    """{id(tensor): (tensor, place as written)} of the map's non-empty lines, every name checked."""
    raw = read_bytes(path, str(path), "a map (TOML)", MAX_MAP + 1)
    if len(raw) > MAX_MAP:
        raise TracerError(f"{path.name}: a map must be at most {MAX_MAP:,} bytes")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TracerError(f"{path.name} is not a TOML map: {e}") from None
    tables = _tables(tape)
    found: dict[int, tuple[object, str]] = {}

    def entries():
        for name, value in data.items():
            if name == ITERATION and isinstance(value, dict):
                for k, table in value.items():
                    yield f"{ITERATION}.{k}", table
            else:
                yield name, value

    for table, lines in entries():
        if table not in tables or not isinstance(lines, dict):
            raise TracerError(f"{path.name}: [{table}] is not a part of this run; its parts: "
                              f"{', '.join(f'[{k}]' for k in tables)}")
        for key, where in lines.items():
            t = tables[table].get(key) or tables[table].get(plain(key))
            if t is None:
                near = difflib.get_close_matches(key, [u.name for u in tables[table].values()], 1)
                raise TracerError(f"{path.name}: [{table}] has no tensor {key!r}"
                                  + (f" (did you mean {near[0]!r}?)" if near else "")
                                  + "; `tracer map` lists them")
            if not isinstance(where, str):
                raise TracerError(f"{path.name}: [{table}] {key} must be a place in quotes, e.g. \"Sheet1!B2:C5\"")
            if where.strip():
                if id(t) in found:
                    raise TracerError(f"{path.name}: [{table}] places {t.name} twice")
                found[id(t)] = (t, where.strip())
    return found


def parse_place(t, text: str, sheets: dict, what: str) -> Place:
    """The place "Sheet!B2:C5" of tensor t, checked: a sheet of the workbook, inside the grid and
    the sheet's cells, the tensor's shape (or its transpose).  `sheets`: name -> (last row, last
    column) of its cells (None when the workbook does not say)."""
    sheet, bang, cells = text.rpartition("!")
    sheet = sheet.strip()
    if sheet.startswith("'") and sheet.endswith("'") and len(sheet) > 1:
        sheet = sheet[1:-1].replace("''", "'")
    m = RANGE.fullmatch(cells.strip())
    if not bang or not m:
        raise TracerError(f"{what}: {text!r} is not a place like \"Sheet1!B2:C5\" or \"Sheet1!B2\"")
    if sheet not in sheets:
        raise TracerError(f"{what}: {text!r}: the workbook has no sheet {sheet!r} (its sheets: "
                          f"{', '.join(repr(s) for s in sheets)})")
    from openpyxl.utils import column_index_from_string, get_column_letter

    c1, r1 = column_index_from_string(m[1].upper()), int(m[2])
    c2, r2 = (column_index_from_string(m[3].upper()), int(m[4])) if m[3] else (c1, r1)
    r1, r2, c1, c2 = min(r1, r2), max(r1, r2), min(c1, c2), max(c1, c2)
    last = sheets[sheet]
    if r1 < 1 or r2 > MAX_ROWS or c2 > MAX_COLS or (last and (r1 > last[0] or c1 > last[1])):
        end = f" (its cells end at {get_column_letter(last[1])}{last[0]})" if last else ""
        raise TracerError(f"{what}: {text!r} is outside the sheet {sheet!r}{end}")
    rows, cols = r2 - r1 + 1, c2 - c1 + 1
    if (rows, cols) not in (t.shape, t.shape[::-1]):
        raise TracerError(f"{what}: {text!r} is {rows}×{cols}; {t.name} is {t.shape[0]}×{t.shape[1]} "
                          "(rows × columns, or the transpose)")
    return Place(t, text, sheet, r1, c1, (rows, cols) != t.shape)


def locate(path: Path, map_path: Path | None, tape) -> dict[int, Place]:
    """Every tensor the map (or a defined name of the workbook) places, checked."""
    mapped = read_map(map_path, tape) if map_path is not None else {}
    with reading(path) as wb:
        sheets = {ws.title: ((ws.max_row, ws.max_column) if ws.max_row and ws.max_column else None)
                  for ws in wb.worksheets}
        names = {}
        for name, dn in wb.defined_names.items():
            try:
                (dest,) = list(dn.destinations)
            except (ValueError, TypeError, AttributeError):  # a constant, a formula, several ranges
                continue
            names[name.lower()] = f"{dest[0]}!{dest[1]}"
    places = {}
    for t in tape.tensors:
        if id(t) in mapped:
            text = mapped[id(t)][1]
            what = f"{map_path.name}: [{table_of(t)}] {t.name}"
        elif defined_name(t).lower() in names:
            text = names[defined_name(t).lower()]
            what = f"{path.name}: the defined name {defined_name(t)}"
        else:
            continue
        places[id(t)] = parse_place(t, text, sheets, what)
    if not places:
        raise TracerError(f"nothing to grade: {map_path.name if map_path else 'no map'} places no tensor and "
                          f"{path.name} has no defined name of one (`tracer map` lists them)")
    return places


# --- grading --------------------------------------------------------------------------------------

def _part(tpl, t) -> str:
    """Iteration 1, After training: where in the run t is."""
    return tpl.t("map_after") if t.phase == "after" else tpl.t("map_iteration", k=t.iteration)


def _names(tpl, tensors) -> str:
    """x, W₁, … and after the inputs ε (iteration 1)."""
    return ", ".join(tpl.symbol(t.name) + (f" ({_part(tpl, t).lower()})" if t.iteration else "") for t in tensors)


def grade_handmade(path, map_path, tape, lang: str, tolerance, engine: str | None = None) -> Grade:
    """Grade the hand-built workbook at `path` against the run `tape` (traced with the student's
    options), the places given by the map at `map_path` (or None: defined names only)."""
    path = Path(path)
    check_workbook(path)
    check_unzipped_size(path, sum(t.value.size for t in tape.tensors))
    places = locate(path, Path(map_path) if map_path is not None else None, tape)
    upstream: dict[int, bool] = {}  # whether a tensor is computed from a placed one
    for t in tape.tensors:
        upstream[id(t)] = any(id(u) in places or upstream[id(u)] for u in t.inputs)
    inputs = [t for t in tape.tensors if id(t) in places and not upstream[id(t)]]
    graded = [t for t in tape.tensors if id(t) in places and upstream[id(t)]]
    tpl = Template.of(tape, lang)
    if not graded:
        raise TracerError(f"nothing to grade: what the map places ({_names(tpl, inputs)}) are inputs; place the "
                          "steps computed from them too")
    wanted: dict[str, set] = {}
    for t in inputs + graded:
        wanted.setdefault(places[id(t)].sheet, set()).update((r, c) for _, _, r, c in places[id(t)].positions())
    values = values_at(path, wanted)
    sources = {}
    for t in inputs:
        p, value = places[id(t)], np.empty(t.shape)
        for i, j, r, c in p.positions():
            v = values.get((p.sheet, r, c))
            if not is_number(v):
                shown = "is empty" if v in (None, "") else f"holds {v!r}"
                raise TracerError(f"{path.name}: {address(p.sheet, r, c)} ({t.name}[{i + 1}, {j + 1}], an input read "
                                  f"from {p.text}) {shown}: an input must be a number (is the place right?)")
            value[i, j] = float(v)
        sources[id(t)] = value
    answers = {s: {(p.sheet, r, c) for t in graded for p in [places[id(t)]] for _, _, r, c in p.positions()
                   if p.sheet == s} for s in wanted}
    formulas = values_at(path, {s: {(r, c) for _, r, c in cells} for s, cells in answers.items()}, data_only=False)
    formulas = {k: formulas.get(k) for cells in answers.values() for k in cells}
    recalculated = recalculate_stale(path, formulas, values, engine)
    grades = [TensorGrade(t, places[id(t)].sheet, f"{_part(tpl, t)} · {tpl.symbol(t.name)} ({places[id(t)].text})", tpl.equation(t),
                          places[id(t)].positions()) for t in graded]
    mark(tape, grades, values, tolerance, sources)
    result = Grade(path, None, tolerance, grades, tpl, recalculated)
    result.heading = tpl.t("check_handmade", file=path.name, model=tape.meta["model"],
                           map=map_path.name if map_path is not None else "-", cells=f"{result.total():,}",
                           tolerance=tolerance.describe(tpl))
    last = max(k for k, t in enumerate(tape.tensors) if id(t) in places)
    needed = _ancestors(graded, places)
    own_inputs = [t for t in tape.tensors if t.op is None and id(t) not in places and id(t) in needed]
    left_out = [t for t in tape.tensors[:last + 1] if t.op is not None and id(t) not in places and t.iteration]
    result.notes = [tpl.t("check_map_inputs", names=_names(tpl, inputs))]
    if own_inputs:
        result.notes.append(tpl.t("check_map_own_inputs", names=_names(tpl, own_inputs)))
    if left_out:
        result.notes.append(tpl.t("check_map_unmapped", names=_names(tpl, left_out)))
    return result


def _ancestors(tensors, places) -> set[int]:
    """Ids of every tensor the given ones are computed from, up to the placed ones."""
    seen, todo = set(), list(tensors)
    while todo:
        for u in todo.pop().inputs:
            if id(u) not in seen:
                seen.add(id(u))
                if id(u) not in places:
                    todo.append(u)
    return seen
