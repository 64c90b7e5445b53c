"""How wide a text prints in the workbook's font: Calibri 11 in Excel, Carlito (the same metrics)
in LibreOffice.  The layout wraps notes, titles and legends with it, so that no text runs past the
page or into the next cell; it counts the way LibreOffice draws, and rounds up where it must guess.

The widths of the printable ASCII characters are Carlito's own advance widths, in thousandths of
an em (tests/test_print.py reads them back from the font file).  Any other character: its ASCII
letter when it is an accented one (á, ñ), nothing when it combines with the one before (x̂), else
an em's GUESS, or WIDE for the few wide symbols the templates use (a font LibreOffice falls back to
for a symbol Carlito lacks draws it wider)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

ASCII = "".join(chr(c) for c in range(32, 127))
REGULAR = (
    226, 326, 401, 498, 507, 715, 682, 221, 303, 303, 498, 498, 250, 306, 252, 386, 507, 507, 507, 507, 507, 507,
    507, 507, 507, 507, 268, 268, 498, 498, 498, 463, 894, 579, 544, 533, 615, 488, 459, 631, 623, 252, 319, 520,
    420, 855, 646, 662, 517, 673, 543, 459, 487, 642, 567, 890, 519, 487, 468, 307, 386, 307, 498, 498, 291, 479,
    525, 423, 525, 498, 305, 471, 525, 229, 239, 455, 229, 799, 525, 527, 525, 525, 349, 391, 335, 525, 452, 715,
    433, 453, 395, 314, 460, 314, 498)
BOLD = (
    226, 326, 438, 498, 507, 729, 705, 233, 312, 312, 498, 498, 258, 306, 267, 430, 507, 507, 507, 507, 507, 507,
    507, 507, 507, 507, 276, 276, 498, 498, 498, 463, 898, 606, 561, 529, 630, 488, 459, 637, 631, 267, 331, 547,
    423, 874, 659, 676, 532, 686, 563, 473, 495, 653, 591, 906, 551, 520, 478, 325, 430, 325, 498, 498, 300, 494,
    537, 418, 537, 503, 316, 474, 537, 246, 255, 480, 246, 813, 537, 538, 537, 537, 355, 399, 347, 537, 473, 745,
    459, 474, 397, 344, 475, 344, 498)
ITALIC = 45  # an italic letter is at most this much wider than the upright one (thousandths of an em)
GUESS, WIDE = 620, 910
WIDE_SYMBOLS = set("→←↑↓⇒⇐⇔↦∈∉⊙⊕⊗✎✓✗…∝≪≫⏎½Φφ")
_WIDTHS = {False: dict(zip(ASCII, REGULAR)), True: dict(zip(ASCII, BOLD))}


def char_width(c: str, bold: bool = False) -> float:
    """The advance of c, in thousandths of an em."""
    widths = _WIDTHS[bold]
    if c in widths:
        return widths[c]
    if unicodedata.combining(c):
        return 0
    base = unicodedata.normalize("NFD", c)[0]
    if base in widths:
        return widths[base]
    return WIDE if c in WIDE_SYMBOLS else GUESS


def text_width(text: str, size: float = 11, bold: bool = False, italic: bool = False) -> float:
    """The width of the text in points, in Carlito (or Calibri) of `size` points."""
    return sum(char_width(c, bold) + (ITALIC if italic else 0) for c in text) * size / 1000


def wrap(text: str, width: float, size: float = 11, bold: bool = False, italic: bool = False,
         indent: str = "") -> list[str]:
    """The text in lines no wider than `width` points, broken at spaces (a word wider than a line
    is cut where it must be); the lines after the first start with `indent`."""
    return list(_wrap(text, width, size, bold, italic, indent))


@lru_cache(maxsize=8192)  # a note comes back in every iteration
def _wrap(text: str, width: float, size: float, bold: bool, italic: bool, indent: str) -> tuple[str, ...]:
    def wide(part):
        return text_width(part, size, bold, italic)

    space, out, line, used = wide(" "), [], None, 0.0
    for word in text.split(" "):
        w = wide(word)
        if line is not None and used + space + w <= width:
            line, used = f"{line} {word}", used + space + w
            continue
        if line is None and w <= width:
            line, used = word, w
            continue
        if line is not None:
            out.append(line)
        line = (indent if out else "") + word
        while wide(line) > width and len(line.strip()) > 1:  # a word longer than a line: cut where it must be
            cut = len(line) - 1
            while cut > 1 and wide(line[:cut]) > width:
                cut -= 1
            out.append(line[:cut])
            line = indent + line[cut:]
        used = wide(line)
    out.append(line or "")
    return tuple(out)
