"""IronCalc as a recalculation engine: the open-source spreadsheet engine, in process, from pip.

`ironcalc.load_from_xlsx` reads a workbook with the values it has cached (it does not trust them
either: nothing is computed yet), `evaluate()` recalculates every formula from scratch, and the
values are read cell by cell.  IronCalc reads a formula saved in an .xlsx file the way Excel
reads one written before dynamic arrays: a scalar function given a range takes the one cell in
the formula's own row or column (implicit intersection, shown as `@`), or gives #VALUE!.  Which
is why tracer's formulas never hand a range to anything but an aggregate (README: the formula
rule), and why a workbook that does is caught here.
"""

from __future__ import annotations

from pathlib import Path

from tracer.errors import TracerError

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
    ic = _module()
    if ic is None:
        raise TracerError(INSTALL_HINT)
    path = Path(path)
    try:
        model = ic.load_from_xlsx(str(path), "en", "UTC")
        model.evaluate()
    except Exception as e:  # IronCalc's WorkbookError, or a panic it turns into an exception
        detail = " ".join(str(e).split())[:300]
        raise TracerError(f"IronCalc could not recalculate {path.name}: {detail}") from None
    sheets = {p["name"]: k for k, p in enumerate(model.get_worksheets_properties())}
    values = {}
    for sheet, cells in wanted.items():
        if sheet not in sheets:
            continue
        k = sheets[sheet]
        for r, c in cells:
            values[(sheet, r, c)] = model.get_cell_value(k, r, c)
    return values
