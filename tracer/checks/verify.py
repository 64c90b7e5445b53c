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
    formula_values,
    is_error_value,
    is_number,
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
    # a formula's empty-string result reads back as no value
    return value is None or value == ""


def _compare(report: VerifyReport, stored: dict, recalculated: dict) -> None:
    """Compare every formula cell (stored: its value in the file, by (sheet, row, column)) with its
    recalculated value and record the outcome in report; an address is made only for a cell the
    report names."""
    rtol, atol = report.rtol, report.atol
    max_abs = max_rel = 0.0
    n_rel = 0
    worst, worst_score = None, -1.0
    for key, a in stored.items():
        b = recalculated.get(key)
        if (type(b) is float or is_number(b)) and (type(a) is float or is_number(a)):
            x, y = float(a), float(b)
            abs_err = abs(x - y)
            scale = max(abs(x), abs(y))
            if abs_err != abs_err:  # NaN or inf on one side
                agree = x == y
                abs_err = rel_err = 0.0 if agree else math.inf
            else:
                rel_err = abs_err / scale if scale > 0 else 0.0
                agree = abs_err <= atol or abs_err <= rtol * scale
            score = min(_ratio(abs_err, atol), _ratio(rel_err, rtol))
            if abs_err > max_abs:
                max_abs = abs_err
            if scale >= REL_FLOOR:  # near 0, only the absolute error means anything
                n_rel += 1
                if rel_err > max_rel:
                    max_rel = rel_err
            if score > worst_score:
                worst, worst_score = key, score
        elif is_error_value(b):
            report.errors.append((address(*key), b))
            continue
        elif _empty(b):
            # A missing result is a failure unless the stored value is empty too
            # (a formula returning "" reads back as no value).
            agree = _empty(a)
        else:
            agree = a == b
        if not agree:
            report.n_mismatches += 1
            if len(report.mismatches) < MAX_MISMATCHES:
                report.mismatches.append((address(*key), a, b))
    report.max_abs_err, report.max_rel_err, report.n_rel = max_abs, max_rel, n_rel
    report.worst = address(*worst) if worst is not None else None


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
    return verify_all([path], rtol, atol, timeout, engine)[0]


def verify_all(paths, rtol: float = 1e-9, atol: float = 1e-12, timeout: float = libreoffice.DEFAULT_TIMEOUT,
               engine: str = "libreoffice") -> list[VerifyReport]:
    """verify_workbook of every workbook of `paths` in one engine, which recalculates them all at
    once (LibreOffice: one process for all).  Each workbook is read once, in one pass: its formula
    cells and their stored values (tracer.engines.workbook.formula_values, our own reader of the
    sheets' XML, independent of both the writer and the engines); the engine gives the
    recalculated values only.  A workbook the engine could not recalculate raises its
    TracerError, after the others are recalculated."""
    paths = [Path(p) for p in paths]
    for path in paths:
        check_workbook(path)
    found = engines.preferred(engine)
    reports = []
    start = time.perf_counter()
    with found.recalculating(paths, timeout) as values:
        batch = (time.perf_counter() - start) / len(paths)  # LibreOffice: each workbook's share of the run
        for path in paths:
            report = VerifyReport(path=path, engine=found.LABEL, rtol=rtol, atol=atol)
            start = time.perf_counter()
            stored = formula_values(path)
            report.n_formulas = len(stored)
            reading = time.perf_counter() - start
            if stored:
                wanted: dict[str, set] = {}
                for sheet, r, c in stored:
                    wanted.setdefault(sheet, set()).add((r, c))
                start = time.perf_counter()
                recalculated = values(path, wanted)
                report.recalc_seconds = batch + time.perf_counter() - start
                start = time.perf_counter()
                _compare(report, stored, recalculated)
                reading += time.perf_counter() - start
            report.compare_seconds = reading
            reports.append(report)
    return reports


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
    return verify_books([path], engine, announce, **options)[0]


def verify_books(paths, engine: str | None = None, announce=None, **options) -> list[Verification]:
    """verify_engines of every workbook of `paths`, each engine recalculating them all at once
    (LibreOffice: one process for all): a Verification per workbook, in order.  Every path is
    checked to be a workbook before any engine starts."""
    paths = [Path(p) for p in paths]
    for path in paths:
        check_workbook(path)
    what = str(paths[0]) if len(paths) == 1 else f"{len(paths)} workbooks"
    reports = []
    for found in engines.chosen(engine):
        if announce:
            announce(f"recalculating {what} in {found.LABEL}"
                     + (" (recalculation forced)" if found is libreoffice else "") + " ...")
        reports.append(verify_all(paths, engine=found.NAME, **options))
    return [Verification([r[k] for r in reports]) for k in range(len(paths))]
