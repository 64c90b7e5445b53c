"""Printing a workbook as LibreOffice does (to PDF, with each sheet's page setup) and reading the
pages back: their number and their text."""

from __future__ import annotations

from pathlib import Path

from tracer.engines.libreoffice import convert


def to_pdf(path: Path, tmp: Path) -> Path:
    """The workbook printed by LibreOffice to a PDF in a folder of tmp."""
    return convert(path, Path(tmp) / "pdf", "pdf")


def pages(pdf: Path) -> list[str]:
    """The text of every page of the PDF."""
    import pypdf

    return [page.extract_text() for page in pypdf.PdfReader(pdf).pages]
