"""What the README and docs/ say about a run, checked against the run: a test computes a number and
asserts that the page states it, so no documented number goes stale.

    says("models/vae.md", f"| loss (SGD, lr 0.005) | {cells(losses)} |")

passes when the page holds that text (whitespace, line breaks included, compared as one space), and
otherwise fails with the text the page should hold, ready to paste.  `page` is a path under docs/,
or "README.md"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def text_of(page: str) -> str:
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    if not path.exists():
        pytest.skip("needs the source tree")
    return path.read_text("utf-8")


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def says(page: str, *texts: str) -> None:
    """Assert that `page` states each of `texts` (as computed by the caller from a run)."""
    body = flat(text_of(page))
    missing = [t for t in texts if flat(t) not in body]
    assert not missing, f"{page} should say (this is what the run gives): " + " | ".join(repr(t) for t in missing)


def num(x: float, digits: int = 2) -> str:
    """A number as the docs write it: fixed decimals, a proper minus sign."""
    return f"{x:.{digits}f}".replace("-", "−")


def arrow(values, digits: int = 2, sep: str = " → ") -> str:
    """'2.33 → 1.79 → 1.70 → 1.63'"""
    return sep.join(num(v, digits) for v in values)


def count(n: int) -> str:
    """'87,978'"""
    return f"{n:,}"


def sci(x: float, digits: int = 1) -> str:
    """'5.8e-5' (the docs' short scientific notation: no leading zeros in the exponent)."""
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def table_row(page: str, first: str) -> list[str]:
    """The cells of the table row of `page` whose first cell is `first` (exactly one such row)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text_of(page).splitlines() if line.startswith("|")]
    found = [row for row in rows if row[0] == first]
    assert len(found) == 1, f"{page}: {len(found)} table rows start with {first!r}"
    return found[0]
