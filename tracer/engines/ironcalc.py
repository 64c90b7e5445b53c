"""IronCalc as a recalculation engine: the open-source spreadsheet engine, in process, from pip.

`ironcalc.load_from_xlsx` reads a workbook with the values it has cached (it does not trust them
either: nothing is computed yet), `evaluate()` recalculates every formula from scratch, and the
values are read cell by cell.  IronCalc reads a formula saved in an .xlsx file the way Excel
reads one written before dynamic arrays: a scalar function given a range takes the one cell in
the formula's own row or column (implicit intersection, shown as `@`), or gives #VALUE!.  Which
is why tracer's formulas never hand a range to anything but an aggregate (docs/workbook.md: the formula
rule), and why a workbook that does is caught here.

One reading quirk is worked around: IronCalc 0.9 reads an empty cell marked as a number,
`<c r="B5" s="3" t="n"/>` (how openpyxl saves a formatted empty cell, e.g. a student's blank
answer), as the number 0, so COUNT would count it.  Such a file is recalculated from a copy
without that mark, which every other reader takes as the same empty cell.
"""

from __future__ import annotations

import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

from tracer.errors import TracerError, temporary_folder

NAME = "ironcalc"
LABEL = "IronCalc"
INSTALL_HINT = "IronCalc not found: install it with 'pip install ironcalc'"


def _module():
    try:
        import ironcalc
    except ImportError:
        return None
    return ironcalc


def available() -> bool:
    return _module() is not None


def require() -> None:
    """Raise TracerError with how to install IronCalc when it is missing."""
    if _module() is None:
        raise TracerError(INSTALL_HINT)


def recalculated_values(path: Path, wanted: dict[str, set[tuple[int, int]]],
                        timeout: float | None = None) -> dict[tuple[str, int, int], object]:
    """Recalculate every formula of the workbook at `path` and return the values of the wanted
    cells by (sheet, row, column), rows and columns from 1.  An error value is its text
    ("#VALUE!", "#N/IMPL!", …).  `timeout` is not used: IronCalc runs in this process."""
    with recalculating([path]) as values:
        return values(path, wanted)


@contextmanager
def recalculating(paths, timeout: float | None = None):
    """The same as tracer.engines.libreoffice.recalculating: yields `values(path, wanted)`; each
    workbook is loaded and recalculated when its values are asked for (in process, nothing to
    share between workbooks)."""
    require()

    def values(path, wanted: dict[str, set[tuple[int, int]]]) -> dict[tuple[str, int, int], object]:
        model = _recalculated(Path(path))
        sheets = {p["name"]: k for k, p in enumerate(model.get_worksheets_properties())}
        found = {}
        for sheet, cells in wanted.items():
            if sheet in sheets:
                k = sheets[sheet]
                for r, c in cells:
                    found[(sheet, r, c)] = model.get_cell_value(k, r, c)
        return found

    yield values


def _recalculated(path: Path):
    """The workbook at `path` loaded in IronCalc and recalculated from scratch."""
    ic = _module()
    with temporary_folder("tracer-ironcalc-") as tmp:
        try:
            model = ic.load_from_xlsx(str(_without_empty_numbers(path, tmp)), "en", "UTC")
            model.evaluate()
        except BaseException as e:  # IronCalc's WorkbookError, or a Rust panic (a BaseException)
            if not isinstance(e, ic.WorkbookError) and type(e).__name__ != "PanicException":
                raise
            detail = " ".join(str(e).split())[:300]
            raise TracerError(f"IronCalc could not recalculate {path.name}: {detail}") from None
    return model


_EMPTY_NUMBER = re.compile(rb'(<c\b[^>]*?)\s+t="n"(\s*/>)')  # <c r="B5" s="3" t="n"/>: an empty cell


def _without_empty_numbers(path: Path, tmp: Path) -> Path:
    """`path` itself, or a copy in `tmp` whose empty cells marked t="n" are plain empty cells."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = [n for n in archive.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")]
            if not any(b't="n"' in data and _EMPTY_NUMBER.search(data) for data in map(archive.read, parts)):
                return path
            copy = tmp / path.name
            with zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as out:
                for info in archive.infolist():
                    data = archive.read(info)
                    out.writestr(info, _EMPTY_NUMBER.sub(rb"\1\2", data) if info.filename in parts else data)
    except (OSError, zipfile.BadZipFile):
        return path  # not a zip: IronCalc says why it cannot read it
    return copy
