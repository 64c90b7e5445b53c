"""Printing workbooks as LibreOffice does (to PDF, with each sheet's page setup) and reading the
pages back; the fonts the pages are set in (Carlito: Calibri's metrics), read from the font files
themselves; and where a cell's text would be cut on the page."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import pytest

from tracer.engines.libreoffice import find_soffice

# The pages each default workbook printed on before issue 22 (LibreOffice 7.4, Carlito, English; as
# planned, and printed), measured on main at 35fd242 (BERT at 574d972, with its evaluation loss);
# and the hand-sized VAE's (--size 4 --hidden 2).
BEFORE = {"vae": 1681, "gan": 905, "skipgram": 207, "attention": 356, "transformer": 1078, "bert": 691,
          "rnn": 567, "lstm": 1804, "mlp": 8, "diffusion": 323, "flow": 2376}
BEFORE_HAND_SIZED = 70
CARLITO_HINT = ("the print tests need the Carlito font (Calibri's metrics, which LibreOffice uses for the "
                "workbooks' Calibri): install it, e.g. 'apt-get install fonts-crosextra-carlito'")
PRINT_TIMEOUT = 1200  # seconds for one LibreOffice process printing its share of the workbooks


# --- fonts --------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def font_file(family: str, style: str = "Regular") -> Path | None:
    """The file fontconfig picks for the family and style, if it is that family."""
    try:
        out = subprocess.run(["fc-match", "-f", "%{family}\t%{file}", f"{family}:style={style}"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found, _, path = out.partition("\t")
    return Path(path) if family.lower() in found.lower() and path else None


def require_carlito() -> None:
    """Fail (not skip) with how to install it when Carlito is missing: the pages then differ."""
    if font_file("Carlito") is None:
        pytest.fail(CARLITO_HINT)


@lru_cache(maxsize=None)
def advances(path: Path) -> dict[str, float]:
    """Every character a TrueType font maps, with its advance width in ems (its cmap and hmtx)."""
    data = path.read_bytes()
    tables = {}
    for k in range(struct.unpack(">H", data[4:6])[0]):
        tag, _, offset, _ = struct.unpack(">4sIII", data[12 + 16 * k: 28 + 16 * k])
        tables[tag.decode()] = offset
    units = struct.unpack(">H", data[tables["head"] + 18: tables["head"] + 20])[0]
    metrics = struct.unpack(">H", data[tables["hhea"] + 34: tables["hhea"] + 36])[0]
    hmtx = tables["hmtx"]
    widths = [struct.unpack(">H", data[hmtx + 4 * g: hmtx + 4 * g + 2])[0] / units for g in range(metrics)]
    cmap, out = tables["cmap"], {}
    for k in range(struct.unpack(">H", data[cmap + 2: cmap + 4])[0]):
        platform, encoding, offset = struct.unpack(">HHI", data[cmap + 4 + 8 * k: cmap + 12 + 8 * k])
        at = cmap + offset
        if (platform, encoding) != (3, 1) or struct.unpack(">H", data[at: at + 2])[0] != 4:
            continue  # the Unicode BMP subtable, format 4: segments of character codes
        n = struct.unpack(">H", data[at + 6: at + 8])[0] // 2

        def array(k, fmt="H"):  # the k-th of the four arrays of n numbers (after a pad before the 2nd)
            start = at + 14 + 2 * n * k + 2 * (k > 0)
            return struct.unpack(f">{n}{fmt}", data[start: start + 2 * n]), start

        (ends, _), (starts, _), (deltas, _), (offsets, ro) = array(0), array(1), array(2, "h"), array(3)
        for i in range(n):
            for c in range(starts[i], min(ends[i], 0xFFFE) + 1):
                if offsets[i]:
                    at_glyph = ro + 2 * i + offsets[i] + 2 * (c - starts[i])
                    g = struct.unpack(">H", data[at_glyph: at_glyph + 2])[0]
                    g = (g + deltas[i]) & 0xFFFF if g else 0
                else:
                    g = (c + deltas[i]) & 0xFFFF
                if g:
                    out[chr(c)] = widths[min(g, metrics - 1)]
    return out


def text_points(text: str, size: float, bold: bool = False, italic: bool = False) -> float:
    """How wide LibreOffice sets the text, in points: Carlito's advances, DejaVu Sans's (the font it
    falls back to) for a character Carlito lacks."""
    style = {(False, False): "Regular", (True, False): "Bold", (False, True): "Italic", (True, True): "Bold Italic"}
    carlito = advances(font_file("Carlito", style[bold, italic]))
    fallback = font_file("DejaVu Sans", "Bold" if bold else "Book")
    other = advances(fallback) if fallback else {}
    return sum(carlito.get(c, other.get(c, 1.0) if not (0x300 <= ord(c) < 0x370) else 0.0) for c in text) * size


# --- printing -----------------------------------------------------------------------------------

def print_all(books: list[Path], out: Path, processes: int = 2) -> dict[Path, Path]:
    """The workbooks printed by LibreOffice to PDFs in `out` ({workbook: its PDF}): as many
    LibreOffice processes as `processes`, each printing its share in one call (each with its own
    profile and temporary folder)."""
    soffice = find_soffice()
    out.mkdir(parents=True, exist_ok=True)
    shares = [[] for _ in range(processes)]
    for book in sorted(books, key=lambda b: -b.stat().st_size):  # the largest first, to the lightest share
        min(shares, key=lambda s: sum(b.stat().st_size for b in s)).append(book)
    names = {book: f"{k}-{book.stem}" for k, book in enumerate(books)}  # no two with one name
    errors = []

    def run(share, k):
        with tempfile.TemporaryDirectory(prefix="tracer-print-") as tmp:
            tmp = Path(tmp)
            (tmp / "profile" / "user").mkdir(parents=True)
            (tmp / "in").mkdir()
            (tmp / "tmp").mkdir()
            copies = []
            for book in share:
                copies.append(tmp / "in" / f"{names[book]}.xlsx")
                shutil.copyfile(book, copies[-1])
            env = {**os.environ, "TMPDIR": str(tmp / "tmp")}
            result = subprocess.run([soffice, f"-env:UserInstallation={(tmp / 'profile').as_uri()}", "--headless",
                                     "--norestore", "--convert-to", "pdf", "--outdir", str(out), *map(str, copies)],
                                    capture_output=True, text=True, env=env, timeout=PRINT_TIMEOUT)
            if result.returncode:
                errors.append(result.stderr[-500:])

    threads = [threading.Thread(target=run, args=(share, k)) for k, share in enumerate(shares) if share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pdfs = {book: out / f"{names[book]}.pdf" for book in books}
    missing = [book.name for book, pdf in pdfs.items() if not pdf.is_file()]
    assert not missing and not errors, (missing, errors)
    return pdfs


def to_pdf(path: Path, tmp: Path) -> Path:
    """One workbook printed by LibreOffice to a PDF in a folder of tmp."""
    return print_all([Path(path)], Path(tmp) / "pdf", processes=1)[Path(path)]


def page_count(pdf: Path) -> int:
    import pypdf

    return len(pypdf.PdfReader(pdf).pages)


def pages(pdf: Path, numbers=None) -> list[str]:
    """The text of the PDF's pages (of those numbered, from 1, if given)."""
    import pypdf

    reader = pypdf.PdfReader(pdf)
    wanted = range(1, len(reader.pages) + 1) if numbers is None else numbers
    return [reader.pages[n - 1].extract_text() for n in wanted]


def footer(text: str) -> tuple[str, int, int]:
    """(sheet, page, pages) from a page's footer (LibreOffice sets it first in the page's text)."""
    m = re.match(r"(.*) (\d+) / (\d+)\n", text)
    return m[1], int(m[2]), int(m[3])


def squeezed(text: str) -> str:
    """The text without its white space, and without the characters Carlito lacks: a PDF's text
    breaks lines where the page does, and a character LibreOffice sets in another font (∈, ₖ, x̂)
    comes out of it elsewhere, or as another."""
    carlito = advances(font_file("Carlito"))
    text = re.sub(r".[\u0300-\u036f]+", "", text)  # a letter with an accent of its own (x̂): set in another font
    return "".join(c for c in text if c in carlito and not c.isspace())


# --- where a text is cut ------------------------------------------------------------------------

def column_points(width: float) -> float:
    """A column's width in points as LibreOffice draws it: the stored width (characters, the
    padding included) times its digit of Carlito 11, 7.43 px."""
    return width * 7.43 * 0.75


def print_box(parts) -> tuple[int, int, int, int]:
    """(first row, last row, first column, last column), 1-based, of the sheet's print area."""
    from openpyxl.utils import range_boundaries

    c0, r0, c1, r1 = range_boundaries(parts.print_area.split("!")[-1].replace("$", ""))
    return r0, r1, c0, c1


def cut_texts(parts, padding: float = 2.0) -> list[str]:
    """Every text of the sheet that does not print whole: one running into the next filled cell
    of its row (or out of the print area), in LibreOffice's Carlito; one taller than its row; a
    label written upwards longer than its row is tall."""
    r0, r1, c0, c1 = print_box(parts)
    widths = {}
    for first, last, width in parts.col_widths:
        for c in range(first, min(last, c1) + 1):
            widths[c] = column_points(width)
    edges = [0.0]
    for c in range(1, c1 + 1):
        edges.append(edges[-1] + widths.get(c, column_points(8.43 + 5 / 7)))  # edges[c]: the right edge of c
    filled = {}
    for (r, c), (kind, value, _) in parts.cells.items():
        if kind != "blank" and r0 <= r <= r1 and value not in (None, ""):
            filled.setdefault(r, []).append(c)
    for row in filled.values():
        row.sort()
    problems = []
    for (r, c), (kind, value, _) in parts.cells.items():
        if kind not in ("string", "formula_string") or not value or not (r0 <= r <= r1 and c0 <= c <= c1):
            continue
        size, bold, italic, align, rotation = parts.font_at(r, c)
        height = parts.row_heights.get(r, 15.0)
        wide = text_points(str(value), size, bold, italic) + padding
        if rotation:
            if wide > height:
                problems.append(f"{parts.name}!{r},{c}: {value!r} ({wide:.0f} pt) upwards in a row {height:.0f} pt tall")
            continue
        if size * 1.2 > height + 0.5:
            problems.append(f"{parts.name}!{r},{c}: {value!r} in {size} pt in a row {height:.0f} pt tall")
        row = filled.get(r, [])
        k = row.index(c)
        right = edges[row[k + 1] - 1] if k + 1 < len(row) else edges[c1]
        left = edges[row[k - 1]] if k else 0.0
        if align in ("right",):
            fits = edges[c] - wide >= left
        elif align in ("center", "centerContinuous"):
            middle = (edges[c - 1] + edges[c]) / 2
            fits = middle - wide / 2 >= left and middle + wide / 2 <= right
        else:
            fits = edges[c - 1] + wide <= right
        if not fits:
            problems.append(f"{parts.name}!{r},{c}: {value!r} is {wide:.0f} pt wide in "
                            f"{(right if align != 'right' else edges[c]) - (edges[c - 1] if align != 'right' else left):.0f} pt")
    return problems


def chart_anchors(path: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """{sheet: [(first column, first row, last column, last row) of each chart]}, 1-based: the cells
    a chart covers, as the drawing anchors them."""
    import zipfile
    from posixpath import dirname, join, normpath
    from xml.etree import ElementTree as ET

    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rel = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
    xdr = "{http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing}"

    def targets(z, part):
        rels = join(dirname(part), "_rels", part.rsplit("/", 1)[1] + ".rels")
        if rels not in z.namelist():
            return {}
        return {r.get("Id"): normpath(join(dirname(part), r.get("Target"))) for r in ET.fromstring(z.read(rels))}

    out = {}
    with zipfile.ZipFile(path) as z:
        sheets = targets(z, "xl/workbook.xml")
        for sh in ET.fromstring(z.read("xl/workbook.xml")).iter(f"{main}sheet"):
            part = sheets[sh.get(f"{rel}id")]
            drawing = ET.fromstring(z.read(part)).find(f"{main}drawing")
            if drawing is None:
                continue
            anchors = ET.fromstring(z.read(targets(z, part)[drawing.get(f"{rel}id")]))
            out[sh.get("name")] = [tuple(int(a.find(f"{xdr}{end}/{xdr}{what}").text) + 1
                                         for end in ("from", "to") for what in ("col", "row"))
                                   for a in anchors.iter(f"{xdr}twoCellAnchor")]
    return out
