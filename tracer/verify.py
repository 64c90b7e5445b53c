"""Prove a tracer workbook's formulas right by recalculating it in LibreOffice.

tracer writes every computed cell as a formula and stores the value numpy
computed as that formula's cached value.  :func:`verify_workbook` has
LibreOffice recalculate every formula from scratch and compares each result
with the stored value.  Agreement means the formulas compute what numpy did.

LibreOffice normally trusts the cached values of an .xlsx file and does not
recalculate on load, which would make the check prove nothing.
:func:`recalculate` therefore runs it with a throwaway user profile whose
settings force a full recalculation on load.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter, range_boundaries
from openpyxl.worksheet.formula import ArrayFormula

from tracer.errors import TracerError

INSTALL_HINT = (
    "LibreOffice (soffice) not found: install it, "
    "e.g. 'apt-get install -y libreoffice-calc-nogui'"
)

DEFAULT_TIMEOUT = 600.0  # seconds for one LibreOffice conversion
MAX_MISMATCHES = 20  # how many mismatches a report keeps (all are counted)

# Error values as spreadsheets store them; LibreOffice may also write "Err:502".
ERROR_VALUES = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A",
     "#GETTING_DATA", "#SPILL!", "#CALC!"}
)
_LO_ERROR = re.compile(r"Err:\d+\Z")

# LibreOffice settings that force a recalculation of every formula on load
# (0 = always recalculate, 1 = never, 2 = ask) for .xlsx and .ods files.
_FORCE_RECALC_XCU = """\
<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
           xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


# --------------------------------------------------------------------------
# Running LibreOffice
# --------------------------------------------------------------------------

def find_soffice() -> str:
    """Return the path of the LibreOffice executable.

    The environment variable ``TRACER_SOFFICE`` (a path or a command name)
    takes precedence; otherwise ``soffice`` or ``libreoffice`` is looked up
    on ``PATH``.  Raises :class:`TracerError` when none is found.
    """
    override = os.environ.get("TRACER_SOFFICE")
    if override:
        found = shutil.which(override)
        if found is None:
            raise TracerError(f"TRACER_SOFFICE={override!r} is not an executable; {INSTALL_HINT}")
        return found
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise TracerError(INSTALL_HINT)


def _write_profile(profile: Path) -> None:
    """Create a LibreOffice user profile that recalculates every file on load."""
    user = profile / "user"
    user.mkdir(parents=True)
    (user / "registrymodifications.xcu").write_text(_FORCE_RECALC_XCU, encoding="utf-8")


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run cmd in its own process group; on timeout kill the whole group.

    soffice starts helper processes, so killing only the direct child could
    leave a LibreOffice instance behind.
    """
    posix = os.name == "posix"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=posix)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()
        raise TracerError(f"LibreOffice did not finish within {timeout:g} s") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def recalculate(src: Path, outdir: Path, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Recalculate every formula of the workbook src in LibreOffice.

    Writes the recalculated workbook to ``outdir / src.name`` and returns
    that path.  outdir must not be src's own folder (that would overwrite
    src).  Raises :class:`TracerError` if LibreOffice is missing, fails,
    times out or produces no file.
    """
    src = Path(src).resolve()
    outdir = Path(outdir).resolve()
    target = outdir / src.name
    if target == src:
        raise TracerError(f"recalculation would overwrite {src.name}: choose another folder")
    soffice = find_soffice()
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tracer-lo-") as tmp:
        tmp = Path(tmp)
        profile = tmp / "profile"
        _write_profile(profile)
        # Convert a copy with a plain name in a fresh folder: the output name
        # is then known and nothing in outdir is overwritten by surprise.
        work = tmp / "in"
        work.mkdir()
        copy = work / "book.xlsx"
        shutil.copyfile(src, copy)
        converted = tmp / "out"
        cmd = [
            soffice,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless", "--norestore",
            "--convert-to", "xlsx",
            "--outdir", str(converted),
            str(copy),
        ]
        result = _run(cmd, timeout)
        produced = converted / "book.xlsx"
        if result.returncode != 0 or not produced.is_file():
            detail = " ".join((result.stderr or result.stdout or "").split())[:300]
            raise TracerError(
                f"LibreOffice could not recalculate {src.name} "
                f"(exit code {result.returncode}){': ' + detail if detail else ''}"
            )
        shutil.move(str(produced), target)
    return target


# --------------------------------------------------------------------------
# Reading workbooks
# --------------------------------------------------------------------------

def _open(path: Path, data_only: bool):
    """Open an .xlsx read-only with openpyxl; a TracerError if it is not one."""
    try:
        return load_workbook(path, read_only=True, data_only=data_only)
    except Exception:
        raise TracerError(f"not an Excel workbook: {path.name}") from None


def check_workbook(path: Path) -> None:
    """Raise TracerError unless path is an existing .xlsx workbook file."""
    if not path.exists():
        raise TracerError(f"no such file: {path}")
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise TracerError(f"not an Excel workbook: {path.name}")
    with zipfile.ZipFile(path) as archive:
        if "xl/workbook.xml" not in archive.namelist():
            raise TracerError(f"not an Excel workbook: {path.name}")


def _formula_cells(path: Path) -> dict[str, set[tuple[int, int]]]:
    """Map each sheet name to the (row, column) positions of its formula cells.

    Every cell covered by an array formula counts as a formula cell.
    """
    wb = _open(path, data_only=False)
    try:
        found: dict[str, set[tuple[int, int]]] = {}
        for ws in wb.worksheets:
            ws.reset_dimensions()  # do not trust the stored dimension
            cells: set[tuple[int, int]] = set()
            for row in ws.iter_rows():
                for cell in row:
                    if cell.data_type != "f":
                        continue
                    if isinstance(cell.value, ArrayFormula) and cell.value.ref:
                        c1, r1, c2, r2 = range_boundaries(cell.value.ref)
                        cells.update((r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1))
                    else:
                        cells.add((cell.row, cell.column))
            if cells:
                found[ws.title] = cells
    finally:
        wb.close()
    return found


def values_at(path: Path, wanted: dict[str, set[tuple[int, int]]],
               data_only: bool = True) -> dict[tuple[str, int, int], object]:
    """Read the stored (cached) values of the wanted cells of a workbook (their formulas, as
    "=…" strings, with data_only=False); rows and columns count from 1.

    Cells, or whole sheets, that are absent are simply missing from the result.
    """
    wb = _open(path, data_only=data_only)
    try:
        values: dict[tuple[str, int, int], object] = {}
        for ws in wb.worksheets:
            cells = wanted.get(ws.title)
            if not cells:
                continue
            ws.reset_dimensions()
            last_row = max(r for r, _ in cells)
            for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
                if r > last_row:
                    break
                for c, value in enumerate(row, start=1):
                    if (r, c) in cells:
                        values[(ws.title, r, c)] = value
    finally:
        wb.close()
    return values


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------

def is_error_value(value: object) -> bool:
    """True for a spreadsheet error value such as '#DIV/0!' or 'Err:502'."""
    return isinstance(value, str) and (value in ERROR_VALUES or bool(_LO_ERROR.match(value)))


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def address(sheet: str, row: int, col: int) -> str:
    """A1-style address with the sheet, quoted when needed: Sheet!B2, 'My sheet'!B2."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sheet):
        sheet = "'" + sheet.replace("'", "''") + "'"
    return f"{sheet}!{get_column_letter(col)}{row}"


@dataclass
class VerifyReport:
    """Outcome of recalculating a workbook and comparing with its stored values.

    ``max_abs_err`` and ``max_rel_err`` are taken over the numeric formula
    cells; ``worst`` is the cell nearest to (or furthest beyond) the
    tolerance, i.e. the largest ``min(abs_err / atol, rel_err / rtol)``.
    ``mismatches`` keeps the first :data:`MAX_MISMATCHES`;
    ``n_mismatches`` counts them all.
    """

    path: Path
    rtol: float = 1e-9
    atol: float = 1e-12
    n_formulas: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    worst: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    mismatches: list[tuple[str, object, object]] = field(default_factory=list)
    n_mismatches: int = 0
    recalc_seconds: float = 0.0
    compare_seconds: float = 0.0
    _worst_score: float = field(default=-1.0, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when there was something to check and every formula agreed."""
        return self.n_formulas > 0 and not self.errors and self.n_mismatches == 0

    def lines(self, limit: int | None = None) -> list[str]:
        """Human-readable summary, one string per line; `limit` caps the listed error values."""
        name = Path(self.path).name
        if self.n_formulas == 0:
            return [f"{name}: no formula cells: nothing to verify", "FAILED"]
        out = [
            f"{name}: {self.n_formulas} formula cells recalculated in LibreOffice",
            f"largest absolute error: {self.max_abs_err:.3g}",
            f"largest relative error: {self.max_rel_err:.3g} (over the cells whose absolute error exceeds {self.atol:g})"
            + (f" (worst cell {self.worst})" if self.worst else ""),
            f"tolerance: rtol={self.rtol:g}, atol={self.atol:g}",
        ]
        if self.errors:
            out.append(f"{len(self.errors)} error values:")
            out += [f"  {addr}: {value}" for addr, value in self.errors[:limit]]
            if limit is not None and len(self.errors) > limit:
                out.append(f"  ... and {len(self.errors) - limit} more (--all lists every one)")
        if self.n_mismatches:
            out.append(f"{self.n_mismatches} cells disagree (stored -> recalculated):")
            out += [f"  {addr}: {stored!r} -> {recalc!r}" for addr, stored, recalc in self.mismatches]
            hidden = self.n_mismatches - len(self.mismatches)
            if hidden:
                out.append(f"  ... and {hidden} more")
        out.append("OK" if self.ok else "FAILED")
        return out

    def format(self) -> str:
        """The :meth:`lines` joined into one text."""
        return "\n".join(self.lines())


def _empty(value: object) -> bool:
    # openpyxl reads a formula's empty-string result as None.
    return value is None or value == ""


def _compare(report: VerifyReport, addr: str, stored: object, recalc: object) -> None:
    """Compare one formula cell and record the outcome in report."""
    if is_error_value(recalc):
        report.errors.append((addr, recalc))
        return
    agree = True
    if is_number(stored) and is_number(recalc):
        a, b = float(stored), float(recalc)
        abs_err = abs(a - b)
        scale = max(abs(a), abs(b))
        if math.isnan(abs_err):  # NaN or inf on one side
            agree = a == b
            abs_err = rel_err = 0.0 if agree else math.inf
        else:
            rel_err = abs_err / scale if scale > 0 else 0.0
            agree = abs_err <= report.atol or abs_err <= report.rtol * scale
        score = min(_ratio(abs_err, report.atol), _ratio(rel_err, report.rtol))
        if abs_err > report.max_abs_err:
            report.max_abs_err = abs_err
        if rel_err > report.max_rel_err and abs_err > report.atol:  # near 0, only the absolute error means anything
            report.max_rel_err = rel_err
        if report.worst is None or score > report._worst_score:
            report.worst, report._worst_score = addr, score
    elif _empty(recalc):
        # A missing result is a failure unless the stored value is empty too
        # (a formula returning "" reads back as None).
        agree = _empty(stored)
    else:
        agree = stored == recalc
    if not agree:
        report.n_mismatches += 1
        if len(report.mismatches) < MAX_MISMATCHES:
            report.mismatches.append((addr, stored, recalc))


def _ratio(err: float, tol: float) -> float:
    if err == 0:
        return 0.0
    return err / tol if tol > 0 else math.inf


def verify_workbook(path, rtol: float = 1e-9, atol: float = 1e-12,
                    timeout: float = DEFAULT_TIMEOUT) -> VerifyReport:
    """Recalculate the workbook at path in LibreOffice and check every formula.

    A formula cell agrees when its recalculated value equals the value stored
    in the file: numbers within ``|a-b| <= atol`` or
    ``|a-b| <= rtol * max(|a|, |b|)``, other values exactly.  Error values
    (#DIV/0!, #NAME?, ...) and missing results are failures.  Raises
    :class:`TracerError` for a missing or non-workbook file (before starting
    LibreOffice) and when LibreOffice is unavailable or fails.
    """
    path = Path(path)
    check_workbook(path)
    report = VerifyReport(path=path, rtol=rtol, atol=atol)

    start = time.perf_counter()
    formulas = _formula_cells(path)
    report.n_formulas = sum(len(cells) for cells in formulas.values())
    if report.n_formulas == 0:
        report.compare_seconds = time.perf_counter() - start
        return report
    stored = values_at(path, formulas)
    reading = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="tracer-verify-") as tmp:
        start = time.perf_counter()
        recalculated_path = recalculate(path, Path(tmp), timeout=timeout)
        report.recalc_seconds = time.perf_counter() - start

        start = time.perf_counter()
        recalculated = values_at(recalculated_path, formulas)
    for sheet in formulas:
        for r, c in sorted(formulas[sheet]):
            key = (sheet, r, c)
            _compare(report, address(sheet, r, c), stored.get(key), recalculated.get(key))
    report.compare_seconds = reading + time.perf_counter() - start
    return report
