"""Prove a tracer workbook's formulas right by recalculating it in spreadsheet engines.

tracer writes every computed cell as a formula and stores the value numpy computed as that
formula's cached value.  :func:`verify_workbook` has one engine (tracer.engines: LibreOffice or
IronCalc) recalculate every formula from scratch and compares each result with the stored value;
:func:`verify_engines` does it in each engine chosen, each with its own report.  Agreement means
the formulas compute what numpy did, in that spreadsheet.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tracer import engines
from tracer.engines import libreoffice
from tracer.engines.workbook import (
    address,
    check_workbook,
    formula_cells,
    is_error_value,
    is_number,
    values_at,
)

MAX_MISMATCHES = 20  # how many mismatches a report keeps (all are counted)
REL_FLOOR = 1e-6  # relative errors are measured on the cells at least this large: below, rounding noise
# of ~1e-17 is already a large fraction of the value and only the absolute error means anything


@dataclass
class VerifyReport:
    """Outcome of recalculating a workbook and comparing with its stored values.

    ``max_abs_err`` is taken over the numeric formula cells, ``max_rel_err``
    over the ``n_rel`` of them at least :data:`REL_FLOOR` in size; ``worst``
    is the cell nearest to (or furthest beyond) the
    tolerance, i.e. the largest ``min(abs_err / atol, rel_err / rtol)``.
    ``mismatches`` keeps the first :data:`MAX_MISMATCHES`;
    ``n_mismatches`` counts them all.
    """

    path: Path
    engine: str = "LibreOffice"  # the engine's label
    rtol: float = 1e-9
    atol: float = 1e-12
    n_formulas: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    n_rel: int = 0
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
            f"{name}: {self.n_formulas:,} formula cells recalculated in {self.engine} ({self.recalc_seconds:.1f} s)",
            f"largest absolute error: {self.max_abs_err:.1e}",
            f"largest relative error: {self.max_rel_err:.1e} "
            f"(over the {self.n_rel:,} cells of size {REL_FLOOR:g} or more)"
            + (f"; the cell nearest to the tolerance: {self.worst}" if self.worst else ""),
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
        if scale >= REL_FLOOR:  # near 0, only the absolute error means anything
            report.n_rel += 1
            report.max_rel_err = max(report.max_rel_err, rel_err)
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
                    timeout: float = libreoffice.DEFAULT_TIMEOUT, engine: str = "libreoffice") -> VerifyReport:
    """Recalculate the workbook at path in one engine ("libreoffice" or "ironcalc") and check
    every formula.

    A formula cell agrees when its recalculated value equals the value stored
    in the file: numbers within ``|a-b| <= atol`` or
    ``|a-b| <= rtol * max(|a|, |b|)``, other values exactly.  Error values
    (#DIV/0!, #NAME?, ...) and missing results are failures.  Raises
    :class:`TracerError` for a missing or non-workbook file (before starting
    the engine) and when the engine is unavailable or fails.
    """
    path = Path(path)
    check_workbook(path)
    found = engines.preferred(engine)
    report = VerifyReport(path=path, engine=found.LABEL, rtol=rtol, atol=atol)

    start = time.perf_counter()
    formulas = formula_cells(path)
    report.n_formulas = sum(len(cells) for cells in formulas.values())
    if report.n_formulas == 0:
        report.compare_seconds = time.perf_counter() - start
        return report
    stored = values_at(path, formulas)
    reading = time.perf_counter() - start

    start = time.perf_counter()
    recalculated = found.recalculated_values(path, formulas, timeout=timeout)
    report.recalc_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for sheet in formulas:
        for r, c in sorted(formulas[sheet]):
            key = (sheet, r, c)
            _compare(report, address(sheet, r, c), stored.get(key), recalculated.get(key))
    report.compare_seconds = reading + time.perf_counter() - start
    return report


@dataclass
class Verification:
    """A workbook verified in one or more engines: a report each."""

    reports: list

    @property
    def ok(self) -> bool:
        return bool(self.reports) and all(r.ok for r in self.reports)

    @property
    def n_formulas(self) -> int:
        return self.reports[0].n_formulas if self.reports else 0

    def __getitem__(self, engine: str) -> VerifyReport:
        """The report of an engine, by name or label: v["ironcalc"]."""
        for r in self.reports:
            if engine.lower() == r.engine.lower():
                return r
        raise KeyError(f"no report of engine {engine!r}")

    def lines(self, limit: int | None = None) -> list[str]:
        """Each engine's report (its verdict as 'Engine: OK'), then the verdict of all."""
        out = []
        for r in self.reports:
            lines = r.lines(limit)
            out += lines[:-1] + [f"{r.engine}: {lines[-1]}"]
        return out + ["OK" if self.ok else "FAILED"]

    def format(self) -> str:
        return "\n".join(self.lines())


def verify_engines(path, engine: str | None = None, announce=None, **options) -> Verification:
    """verify_workbook in each engine `engine` chooses (tracer.engines.chosen: a name, "all", or
    None for every installed engine).  `announce(text)` is told before each engine starts."""
    path = Path(path)
    check_workbook(path)
    reports = []
    for found in engines.chosen(engine):
        if announce:
            announce(f"recalculating {path} in {found.LABEL}"
                     + (" (recalculation forced)" if found is libreoffice else "") + " ...")
        reports.append(verify_workbook(path, engine=found.NAME, **options))
    return Verification(reports)
