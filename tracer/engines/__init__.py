"""Spreadsheet engines: reading a workbook (workbook), and recalculating it from scratch:
LibreOffice (headless, a forced-recalculation profile) and IronCalc (in process, from pip).
Both answer `recalculated_values(path, wanted)`; tracer.checks compares."""

from __future__ import annotations

from tracer.engines import ironcalc, libreoffice
from tracer.errors import TracerError

ENGINES = {m.NAME: m for m in (libreoffice, ironcalc)}  # in order of preference
CHOICES = (*ENGINES, "all")


def chosen(engine: str | None = None) -> list:
    """The engine modules a choice names: one by name, "all" (every one, each must be installed),
    or None (every installed one).  A requested engine that is missing is a TracerError that says
    how to install it."""
    if engine is None:
        found = [m for m in ENGINES.values() if m.available()]
        if not found:
            raise TracerError("no spreadsheet engine found: " + "; ".join(m.INSTALL_HINT for m in ENGINES.values()))
        return found
    if engine not in CHOICES:
        raise TracerError(f"unknown engine {engine!r}: choose one of {', '.join(CHOICES)}")
    wanted = list(ENGINES.values()) if engine == "all" else [ENGINES[engine]]
    for m in wanted:
        m.require()
    return wanted


def preferred(engine: str | None = None):
    """One engine: the one named, else the first installed (LibreOffice before IronCalc)."""
    return chosen(engine)[0]
