"""Every workbook's formulas stay portable: Excel 2007+, LibreOffice, Google Sheets.

Only a handful of old functions, no array formulas or array constants, no Excel 365 functions
(_xlfn.), no LAMBDA/LET, formulas under Excel's 8192-character limit, short sheet names, and a
range is only ever a whole argument of SUM/MMULT/SUMPRODUCT or inside SUMPRODUCT (array
arithmetic anywhere else would need an array formula).
"""

from __future__ import annotations

import re
import zipfile

import pytest

ALLOWED = {"SUMPRODUCT", "MMULT", "SUM", "EXP", "LN", "MAX", "IF", "SQRT", "COUNT", "AVERAGE", "NA",
           "INDEX", "SUMIF", "MATCH", "LARGE", "TANH", "PI", "SIN", "COS"}
# functions that take a range as an argument
WHOLE_RANGE = ("SUM", "MMULT", "COUNT", "AVERAGE", "MAX", "INDEX", "SUMIF", "MATCH", "LARGE")
LANGS = ["en", "es"]

TOKEN = re.compile(r"""
    (?P<ref>(?:'(?:[^']|'')+'!|[A-Za-z_][A-Za-z0-9_.]*!)?\$?[A-Z]{1,3}\$?\d+(?::\$?[A-Z]{1,3}\$?\d+)?)
  | (?P<func>[A-Z][A-Z0-9._]*)\(
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<op>[-+*/^&=<>]|<=|>=|<>)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
""", re.VERBOSE)


def tokens(formula: str):
    pos, out = 0, []
    while pos < len(formula):
        m = TOKEN.match(formula, pos)
        assert m and m.end() > pos, f"unexpected text at {pos} of {formula!r}"
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def check_formula(formula: str, defined: set[str]) -> None:
    """Parse one formula: known functions, known names, ranges only where portable."""
    toks = tokens(formula)
    stack = []  # enclosing calls: function name, or None for a bare parenthesis
    for n, (kind, text) in enumerate(toks):
        if kind == "func":
            assert text in ALLOWED, f"function {text} in {formula!r}"
            stack.append(text)
        elif kind == "open":
            stack.append(None)
        elif kind == "close":
            assert stack, f"unbalanced ')' in {formula!r}"
            stack.pop()
        elif kind == "name":
            assert text in defined, f"unknown name {text!r} in {formula!r}"
        elif kind == "ref" and ":" in text and "SUMPRODUCT" not in stack:
            # a range outside SUMPRODUCT: a whole argument of SUM or MMULT, nothing else
            before = toks[n - 1][0] if n else None
            after = toks[n + 1][0] if n + 1 < len(toks) else None
            assert stack and stack[-1] in WHOLE_RANGE, f"range {text} outside an aggregate: {formula!r}"
            assert before in ("func", "comma") and after in ("comma", "close"), \
                f"array arithmetic on {text} outside SUMPRODUCT: {formula!r}"
    assert not stack, f"unbalanced '(' in {formula!r}"


def test_the_checker_rejects_what_it_should():
    for bad in ["SUM(A1:A3*B1:B3)", "A1:A3+1", "EXP(A1:A3)", "_xlfn.STDEV(A1)", "LET(x,1,x)",
                "SUM({1,2})", "MAX(0,foo)", "MMULT(A1:A2*2,B1:B2)", "(A1", "AVERAGE(LN(A1:A3))",
                "COUNT(A1:A3)*A1:A3", "SQRT(A1:A2)"]:
        with pytest.raises(AssertionError):
            check_formula(bad, {"lr", "adam_eps"})
    for good in ["SUM(A1:A3)", "SUMPRODUCT(A1:A3*LN(B1:B3))", "MMULT('It 1'!A1:C1,B1:B3)+C4",
                 "B1-lr*B2", "-0.5*SUMPRODUCT(1+A1:A2-B1:B2^2-EXP(A1:A2))", "IF(A1>0,B1,0)",
                 "-SUMPRODUCT(LN(A1:A3))/COUNT(A1:A3)", "AVERAGE(A1:A3)", "lr*B1/(SQRT(B2)+adam_eps)"]:
        check_formula(good, {"lr", "adam_eps"})


@pytest.mark.parametrize("lang", LANGS)
def test_only_portable_functions_and_ranges(vae_book, lang):
    book = vae_book(lang)
    defined = set(book.defined_names)
    n = 0
    for sheet, formulas in book.formulas.items():
        for formula in formulas.values():
            check_formula(formula, defined)
            n += 1
    assert n > 100_000


@pytest.mark.parametrize("lang", LANGS)
def test_no_modern_or_array_syntax(vae_book, lang):
    book = vae_book(lang)
    used = set()
    for formulas in book.formulas.values():
        for f in formulas.values():
            assert "_xlfn" not in f and "_xlws" not in f and "{" not in f, f
            assert not re.search(r"\b(LAMBDA|LET|FILTER|SEQUENCE)\(", f), f
            assert len(f) + 1 < 8192  # with its '='
            used |= set(re.findall(r"([A-Z][A-Z0-9.]*)\(", f))
    assert used <= ALLOWED
    assert {"SUMPRODUCT", "MMULT", "EXP", "LN", "MAX", "IF"} <= used  # SUM: only for batches > 1
    assert book.array_formulas == []


@pytest.mark.parametrize("lang", LANGS)
def test_no_array_formulas_in_the_file(vae_workbook, lang):
    with zipfile.ZipFile(vae_workbook(lang)) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/sheet")]
        assert sheets
        for name in sheets:
            xml = archive.read(name).decode("utf-8")
            assert 't="array"' not in xml and 't="shared"' not in xml and "<f t=" not in xml
            assert "_xlfn" not in xml


@pytest.mark.parametrize("lang", LANGS)
def test_sheet_names_fit_excel(vae_book, lang):
    names = vae_book(lang).sheetnames
    assert len(names) == len(set(names))
    for name in names:
        assert 0 < len(name) <= 31
        assert not set(name) & set("[]:*?/\\")


# --- the other models and options ------------------------------------------------------------

OTHER = ["gan", "gan-adam-upscale", "gan-nearest-4", "vae-adam", "vae-size4", "skipgram", "skipgram-neg-bpe-adam",
         "attention", "attention-es-bpe-adam", "transformer", "transformer-es-bpe-gelu-adam",
         "mlp", "mlp-softmax", "mlp-xor"]


@pytest.mark.parametrize("key", OTHER)
def test_other_workbooks_are_portable(run_book, run_workbook, key):
    book = run_book(key)
    defined = set(book.defined_names)
    used = set()
    for formulas in book.formulas.values():
        for f in formulas.values():
            check_formula(f, defined)
            assert len(f) + 1 < 8192
            used |= set(re.findall(r"([A-Z][A-Z0-9.]*)\(", f))
    assert used <= ALLOWED and book.array_formulas == []
    with zipfile.ZipFile(run_workbook(key)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/sheet"):
                xml = archive.read(name).decode("utf-8")
                assert "<f t=" not in xml and "_xlfn" not in xml
    if "adam" in key:
        assert {"beta_1", "beta_2", "adam_eps"} <= defined and "SQRT" in used
    if key.startswith("skipgram"):
        assert {"INDEX", "SUMIF", "MATCH", "LARGE"} <= used
    if key.startswith("mlp"):
        assert "lr" in defined
    if key == "mlp-softmax":
        assert {"TANH", "EXP", "MAX", "LN", "SUMPRODUCT"} <= used
    if key == "mlp-xor":
        assert {"slope", "beta_1", "beta_2", "adam_eps"} <= defined and {"IF", "SQRT"} <= used
    if key == "vae-size4":
        assert "AVERAGE" in used  # the small digit: averages of the digit's pixels
    if key.startswith("gan"):
        assert {"slope", "lr_D", "lr_G"} <= defined and "COUNT" in used
