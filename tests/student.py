"""Play the student: fill an exercise workbook's blank cells programmatically (openpyxl), the way a
student's spreadsheet would hold them."""

from __future__ import annotations

from pathlib import Path

from openpyxl import load_workbook

from tracer.check import _cells_of, read_recipe, rebuild


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
