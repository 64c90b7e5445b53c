"""Play the student: fill an exercise workbook's blank cells programmatically (openpyxl), the way a
student's spreadsheet would hold them."""

from __future__ import annotations

from pathlib import Path

from openpyxl import load_workbook

from tracer.checks.check import _cells_of, read_recipe, rebuild


def answers(path: Path) -> list[tuple]:
    """[(tensor, i, j, sheet, row, col, reference value)] of every blank cell, in step order
    (rows and columns from 1)."""
    tape, layout, ex = rebuild(read_recipe(Path(path)))
    return [(t, i, j, layout.place[id(t)].sheet, r, c, float(t.value[i, j]))
            for t in ex.blank for i, j, r, c in _cells_of(layout, t)]


def fill(path: Path, out: Path, value=lambda cell: cell[-1], skip=lambda cell: False) -> Path:
    """Write a copy of the exercise with each blank cell set to value(cell) (default: the answer)."""
    wb = load_workbook(path)
    for cell in answers(path):
        if skip(cell):
            continue
        wb[cell[3]].cell(row=cell[4], column=cell[5], value=value(cell))
    wb.save(out)
    return Path(out)


def formulas(path: Path, out: Path, typed: dict | None = None) -> Path:
    """A student who types each blank cell as the step's formula (as the walkthrough would have it),
    except the cells in `typed` {(tensor name, iteration, i, j): value}, typed as given."""
    from tracer.render.layout import Cells

    tape, layout, ex = rebuild(read_recipe(Path(path)))
    typed = typed or {}
    wb = load_workbook(path)
    for t in ex.blank:
        cells = Cells(layout, t)
        for i, j, r, c in _cells_of(layout, t):
            key = (t.name, t.iteration, i, j)
            value = typed[key] if key in typed else "=" + t.op.formula(cells, i, j)
            wb[layout.place[id(t)].sheet].cell(row=r, column=c, value=value)
    wb.save(out)
    return Path(out)
