"""Every workbook's formulas stay portable: Excel 2010+, LibreOffice, Google Sheets, IronCalc.

The formula rule: no function other than an aggregate ever receives a range (or an array
expression made of ranges), and inside an aggregate ranges combine only through + − * / ^ and
comparisons; array arithmetic at all only inside SUMPRODUCT (the other aggregates take a range as
a whole argument).  Excel and LibreOffice evaluate LN(range) inside SUMPRODUCT as an array, other
engines take one cell of it (implicit intersection) or give #VALUE!, so nothing may depend on it.
Besides: only a handful of old functions, no array formulas or array constants, no Excel 365
functions (_xlfn.), no LAMBDA/LET, formulas under Excel's 8192-character limit, short sheet names.
"""

from __future__ import annotations

import re
import zipfile

import pytest

# the functions that take whole ranges; every other function gets single cells (or numbers)
AGGREGATES = {"SUM", "SUMPRODUCT", "MMULT", "MAX", "MIN", "AVERAGE", "COUNT", "LARGE", "MATCH", "INDEX", "SUMIF"}
ALLOWED = AGGREGATES | {"EXP", "LN", "IF", "IFERROR", "SQRT", "TANH", "PI", "SIN", "COS", "NA",
                        "ABS", "ERF"}  # ABS, ERF: the PyTorch front end (BCEWithLogitsLoss, exact GELU)
RANGE_NAMES = {"vocab"}  # defined names that stand for a range, not a cell
# the arguments (from 0) that must be a range, even of one cell (A1:A1): IronCalc refuses a cell there
RANGE_ARGS = {"SUMIF": {0, 2}, "INDEX": {0}, "MATCH": {1}, "LARGE": {0}}
ARITHMETIC = set("+-*/^=<>")  # how ranges may combine inside SUMPRODUCT
LANGS = ["en", "es"]

TOKEN = re.compile(r"""
    (?P<string>"(?:[^"]|"")*")
  | (?P<ref>(?:'(?:[^']|'')+'!|[A-Za-z_][A-Za-z0-9_.]*!)?\$?[A-Z]{1,3}\$?\d+(?::\$?[A-Z]{1,3}\$?\d+)?)
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
    """Parse one formula: known functions, known names, ranges only where every engine agrees."""
    toks = tokens(formula)
    stack = []  # enclosing calls: function name, or None for a bare parenthesis
    args = []  # beside it: which argument of that call the parser is in
    for n, (kind, text) in enumerate(toks):
        calls = [f for f in stack if f]  # the enclosing functions, innermost last
        if stack and args[-1] in RANGE_ARGS.get(stack[-1], ()) and toks[n - 1][0] in ("func", "comma"):
            assert kind == "ref" and ":" in text or kind == "name" and text in RANGE_NAMES, \
                f"argument {args[-1] + 1} of {stack[-1]} must be a range (A1:A1 for one cell): {formula!r}"
        if kind == "func":
            assert text in ALLOWED, f"function {text} in {formula!r}"
            stack.append(text)
            args.append(0)
        elif kind == "open":
            stack.append(None)
            args.append(0)
        elif kind == "close":
            assert stack, f"unbalanced ')' in {formula!r}"
            stack.pop()
            args.pop()
        elif kind == "comma" and args:
            args[-1] += 1
        elif kind == "name":
            assert text in defined, f"unknown name {text!r} in {formula!r}"
        elif kind == "op" and text not in ARITHMETIC:
            assert not set(calls) & AGGREGATES, f"{text!r} inside an aggregate: {formula!r}"
        if kind == "ref" and ":" in text or kind == "name" and text in RANGE_NAMES:
            assert calls, f"range {text} outside a function: {formula!r}"
            assert calls[-1] in AGGREGATES, f"{calls[-1]} receives the range {text}: {formula!r}"
            if calls[-1] != "SUMPRODUCT":  # a whole argument of SUM, MMULT, MAX, INDEX, …
                before = toks[n - 1][0] if n else None
                after = toks[n + 1][0] if n + 1 < len(toks) else None
                assert stack[-1] == calls[-1] and before in ("func", "comma") and after in ("comma", "close"), \
                    f"array arithmetic on {text} outside SUMPRODUCT: {formula!r}"
    assert not stack, f"unbalanced '(' in {formula!r}"


def test_the_checker_rejects_what_it_should():
    for bad in ["SUM(A1:A3*B1:B3)", "A1:A3+1", "EXP(A1:A3)", "_xlfn.STDEV(A1)", "LET(x,1,x)",
                "SUM({1,2})", "MAX(0,foo)", "MMULT(A1:A2*2,B1:B2)", "(A1", "AVERAGE(LN(A1:A3))",
                "COUNT(A1:A3)*A1:A3", "SQRT(A1:A2)", "SUMPRODUCT(A1:A3*LN(B1:B3))",
                "-SUMPRODUCT(LN(A1:A3))/COUNT(A1:A3)", "-0.5*SUMPRODUCT(1+A1:A2-B1:B2^2-EXP(A1:A2))",
                "SUMPRODUCT((ABS(A1:A3-B1:B3)<=0.001)*1)", "LN(SUM(A1:A3)&A1:A3)", "SUMPRODUCT(A1:A3&B1:B3)",
                "INDEX(vocab*2,1)", "LEN(vocab)", "SUM((A1:A3))", "SUMIF(A1,0,B1:B1)", "SUMIF(A1:A1,0,B1)",
                "INDEX(B5,1,1)", "MATCH(MAX(B1),B1,0)", "LARGE(B1,1)"]:
        with pytest.raises(AssertionError):
            check_formula(bad, {"lr", "adam_eps", "vocab"})
    for good in ["SUM(A1:A3)", "SUMPRODUCT(A1:A3*B1:B3)", "MMULT('It 1'!A1:C1,B1:B3)+C4",
                 "B1-lr*B2", "-0.5*(1+A1-B1^2-EXP(A1))", "IF(A1>0,B1,0)", "SUM(A1:A3)/3", "AVERAGE(A1:A3)",
                 "lr*B1/(SQRT(B2)+adam_eps)", "EXP(B5-MAX(B5:I5))", "-LN(SUMPRODUCT(A1:C1,A2:C2))",
                 "SUMPRODUCT((((A1:A3-B1:B3)^2)^0.5<=0.001*(B1:B3^2)^0.5+1e-09)*1)",
                 '"✎ "&COUNT(A1:A3)&"/3"', "INDEX(vocab,B5+1)", "SUMPRODUCT((A1:A3<=B5)*1)",
                 "SUMIF(A1:A1,0,'In'!B1:B1)", "MATCH(LARGE(B1:B1,2),B1:B1,0)-1", "MATCH(MAX(B1),B1:B1,0)-1"]:
        check_formula(good, {"lr", "adam_eps", "vocab"})


def test_the_checker_catches_both_examples_of_the_issue():
    """The two formulas that made another engine fail (issue 12): a BCE with LN over ranges inside
    SUMPRODUCT (#VALUE! in IronCalc), a softmax with EXP over a range (silently 1 elsewhere)."""
    recon = "-SUMPRODUCT(Inputs!B10:B793*LN(B886:B1669)+(1-Inputs!B10:B793)*LN(1-B886:B1669))"
    softmax = "EXP(B89-MAX(B89:C89))/SUMPRODUCT(EXP(B89:C89-MAX(B89:C89)))"
    for formula, culprit in ((recon, "LN receives the range B886:B1669"),
                             (softmax, "EXP receives the range B89:C89")):
        with pytest.raises(AssertionError, match=culprit):
            check_formula(formula, set())
    check_formula("EXP(B89-MAX(B89:C89))", set())  # the first step of today's softmax


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
         "rnn", "lstm-es-bpe-adam", "bert", "bert-es-char-adam", "mlp", "mlp-softmax", "mlp-xor"]


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
    # the layout's own formulas are walked too: the loss table, the mean of a batch, a token's text
    overview = book.formulas[book.sheetnames[0]]
    assert overview and any(f.startswith("AVERAGE(") for f in overview.values()) == (key == "gan-adam-upscale")
    shows_tokens = key.startswith(("attention", "transformer", "bert", "rnn", "lstm", "skipgram"))  # beside ids, as labels
    assert any(f.startswith("INDEX(vocab,") for fs in book.formulas.values() for f in fs.values()) == shows_tokens


def every_op_tape():
    """The ops no model of RUNS records (an mlp's mean BCE, every amplifier and its gradient, a
    slice's pad, a row slice's pad, the sum of a 1 × 1 factor's gradient, average pooling's gradient,
    the cross-entropy against soft targets), each applied and differentiated."""
    import numpy as np

    from tracer.core import activations, linalg, losses, resampling
    from tracer.core.tape import Tape

    rng = np.random.default_rng(12)
    tape = Tape()
    x = tape.constant("x", rng.uniform(0.1, 0.9, (2, 9)), role="param")
    s = tape.constant("s", [[0.5]], role="param")
    y = tape.constant("y", rng.integers(0, 2, (2, 4)).astype(float), role="data")
    tape.iteration = 1
    for k, (factor, mode) in enumerate(((2, "nearest"), (2, "bilinear"), (4, "nearest"), (4, "bilinear")), 1):
        tape.at("forward")
        up = resampling.upscale(x, factor, mode, name=f"up{k}")
        head = tape.apply(linalg.slice_cols(0, 4), linalg.mul(s, up, name=f"s·up{k}"), name=f"head{k}")
        loss = losses.bce_mean(activations.sigmoid(head, name=f"p{k}"), y, name=f"L{k}")
        tape.at("backward")
        tape.backward(loss, {"x": x, "s": s}, prefix=f"L{k}")
    tape.at("forward")  # average pooling (the hand-sized VAE pools data, which gets no gradient)
    pooled = resampling.avg_pool(tape.constant("img", rng.uniform(0, 1, (2, 16)), role="param"), 2, name="pool")
    loss = losses.bce_mean(activations.sigmoid(pooled, name="pp"), y, name="Lpool")
    tape.at("backward")
    tape.backward(loss, {"img": pooled.inputs[0]}, prefix="Lpool")
    tape.at("forward")  # a row read alone, the other left: its gradient put back in place (pad_rows)
    top = tape.apply(linalg.slice_rows(0, 1), linalg.mul(s, x, name="s·x"), name="x_top")
    head = tape.apply(linalg.slice_cols(0, 4), top, name="top4")
    loss = losses.bce_mean(activations.sigmoid(head, name="pt"), tape.constant("y_top", y.value[:1]), name="Ltop")
    tape.at("backward")
    tape.backward(loss, {"x": x, "s": s}, prefix="Ltop")
    tape.at("forward")  # the cross-entropy against soft targets (an mlp file's softmax_ce)
    probs = activations.softmax(tape.constant("z", rng.normal(size=(2, 3)), role="param"), name="P")
    loss = losses.soft_cross_entropy(probs, tape.constant("T", rng.dirichlet(np.ones(3), 2), role="data"), name="Lsoft")
    tape.at("backward")
    tape.backward(loss, {"z": probs.inputs[0]}, prefix="Lsoft")
    return tape


def test_every_op_writes_portable_formulas(run_tape):
    """Every op's formulas, cell by cell in a real layout: those of the RUNS workbooks are walked
    above; here the ops they do not record (and those of the PyTorch front end, test_torch_ops'
    tape).  Together: every op of tracer.core.OPS."""
    from conftest import RUNS, ops_template

    from tracer import core
    from tracer.render.layout import Cells, Layout

    from test_torch_ops import build_tape as torch_ops_tape  # the PyTorch front end's ops (no PyTorch needed)

    walked = set()
    for tape in (every_op_tape(), torch_ops_tape()):
        layout = Layout(tape, ops_template("en", "every op"), {})
        for t in tape.tensors:
            if t.op is not None:
                cells = Cells(layout, t)
                for i in range(t.shape[0]):
                    for j in range(t.shape[1]):
                        check_formula(t.op.formula(cells, i, j), set())
                walked.add(t.op.name)
    in_runs = {t.op.name for key in RUNS for t in run_tape(key)[1].tensors if t.op is not None}
    assert walked | in_runs == set(core.OPS)
    assert {"bce_mean", "pad_cols", "pad_rows", "sum_all", "upscale_bilinear_4_grad"} <= walked - in_runs


def test_self_check_cells_are_portable(tmp_path, run_main):
    """A student's version with self-check cells: every formula of the file, the verdict cells too."""
    from conftest import read_book

    path = tmp_path / "ex.xlsx"
    code, _, err = run_main("exercise", "mlp", "--blank", "forward,loss,backward", "--self-check", "-o", path)
    assert code == 0, err
    book = read_book(path)
    verdicts = [f for fs in book.formulas.values() for f in fs.values() if f.startswith("IF(COUNT(")]
    assert len(verdicts) > 5
    for fs in book.formulas.values():
        for f in fs.values():
            check_formula(f, set(book.defined_names))
