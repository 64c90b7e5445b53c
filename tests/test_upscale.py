"""tracer.upscale: rows of s² pixels enlarged ×2 / ×4, nearest or bilinear (corners aligned).

numpy forwards against references written differently (loops over float coordinates, scipy
when installed), the gradient rule against the dense transpose, the cell formulas evaluated in
Python against the forward, then recalculated in LibreOffice through the real exporter (Layout +
write_xlsx), and a formula broken on purpose that the LibreOffice check catches.

The workbook's equations and notes are templates/common.toml's.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from conftest import ops_template

from tracer.checks import verify
from tracer.core import OPS, linalg
from tracer.core.resampling import OPS as RESAMPLING_OPS
from tracer.core.resampling import (
    UPSCALE_BILINEAR_2,
    UPSCALE_NEAREST_2,
    UPSCALES,
    Upscale,
    UpscaleGrad,
    upscale,
)
from tracer.core.tape import Tape
from tracer.render.layout import Cells, Layout, Place
from tracer.render.template import LANGS, Template, _load
from tracer.render.xlsx import write_xlsx

UPSCALE_OPS = {name: op for name, op in RESAMPLING_OPS.items() if name.startswith("upscale")}
CASES = [(mode, f) for mode in ("nearest", "bilinear") for f in (2, 4)]
IDS = [f"{m}-{f}" for m, f in CASES]


def rng(tag: str):
    return np.random.default_rng([20240611, sum(map(ord, tag))])


# --- independent references: one image at a time, float coordinates ------------------------

def ref_image(img: np.ndarray, f: int, mode: str) -> np.ndarray:
    s = img.shape[0]
    S = f * s
    out = np.empty((S, S))
    for R in range(S):
        for C in range(S):
            if mode == "nearest":
                out[R, C] = img[R // f, C // f]
                continue
            y, x = R * (s - 1) / (S - 1), C * (s - 1) / (S - 1)
            y0, x0 = min(math.floor(y), s - 1), min(math.floor(x), s - 1)
            y1, x1 = min(y0 + 1, s - 1), min(x0 + 1, s - 1)
            fy, fx = y - y0, x - x0
            out[R, C] = ((1 - fy) * (1 - fx) * img[y0, x0] + (1 - fy) * fx * img[y0, x1]
                         + fy * (1 - fx) * img[y1, x0] + fy * fx * img[y1, x1])
    return out


def ref_rows(a: np.ndarray, f: int, mode: str) -> np.ndarray:
    s = math.isqrt(a.shape[1])
    return np.stack([ref_image(row.reshape(s, s), f, mode).ravel() for row in a])


def ref_matrix(s: int, f: int, mode: str) -> np.ndarray:
    """M with forward(x) = x · M: row k is the enlargement of the unit image e_k."""
    return ref_rows(np.eye(s * s), f, mode)


# --- forward ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, f", CASES, ids=IDS)
def test_forward_matches_the_loop_reference(mode, f):
    x = rng("forward" + mode).uniform(0, 1, (2, 784))
    tape = Tape()
    out = upscale(tape.constant("x", x), f, mode, name="big")
    assert out.name == "big" and out.op is UPSCALES[(mode, f)] and out.shape == (2, (28 * f) ** 2)
    expected = ref_rows(x, f, mode)
    if mode == "nearest":
        np.testing.assert_array_equal(out.value, expected)
    else:
        np.testing.assert_allclose(out.value, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mode, f", CASES, ids=IDS)
@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_small_sides(mode, f, s):
    x = rng(f"small{s}").normal(size=(3, s * s))
    np.testing.assert_allclose(UPSCALES[(mode, f)].forward(x), ref_rows(x, f, mode), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("mode, f", CASES, ids=IDS)
def test_forward_matches_scipy(mode, f):
    from scipy import ndimage  # the test extra installs it: an independent reference
    x = rng("scipy").normal(size=(2, 784))
    # bilinear: order 1 without grid_mode puts output R at input R·(s−1)/(S−1) (corners aligned);
    # nearest: order 0 with grid_mode aligns pixel centres, (R + ½)/f − ½ rounds to ⌊R/f⌋
    bilinear = mode == "bilinear"
    expected = np.stack([ndimage.zoom(row.reshape(28, 28), f, order=int(bilinear), grid_mode=not bilinear,
                                      mode="nearest").ravel() for row in x])
    np.testing.assert_allclose(UPSCALES[(mode, f)].forward(x), expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("f", [2, 4])
def test_bilinear_keeps_the_corner_pixels(f):
    x = rng("corners").normal(size=(2, 784))
    out = UPSCALES[("bilinear", f)].forward(x).reshape(2, 28 * f, 28 * f)
    img = x.reshape(2, 28, 28)
    for (r, c), (R, C) in zip([(0, 0), (0, 27), (27, 0), (27, 27)],
                              [(0, 0), (0, -1), (-1, 0), (-1, -1)]):
        np.testing.assert_array_equal(out[:, R, C], img[:, r, c])


@pytest.mark.parametrize("f", [2, 4])
def test_nearest_of_a_constant_image_is_constant(f):
    out = UPSCALES[("nearest", f)].forward(np.full((2, 784), 0.3))
    assert out.shape == (2, (28 * f) ** 2) and np.all(out == 0.3)


@pytest.mark.parametrize("f", [2, 4])
def test_bilinear_of_a_linear_ramp_is_the_ramp_exactly(f):
    """v(r, c) = 3r + 5c + 7: bilinear interpolation reproduces it at y = R·27/(S−1), x alike,
    and with integer weights the value is the exact rational rounded once."""
    s, S = 28, 28 * f
    r, c = np.divmod(np.arange(s * s), s)
    out = UPSCALES[("bilinear", f)].forward((3 * r + 5 * c + 7.0)[None, :]).reshape(S, S)
    expected = np.array([[float(Fraction(3 * R * (s - 1) + 5 * C * (s - 1), S - 1) + 7)
                          for C in range(S)] for R in range(S)])
    np.testing.assert_array_equal(out, expected)


def test_every_output_pixel_copies_or_averages_its_neighbours():
    """Nearest: a 2 × 2 block per pixel; bilinear: inside the hull of its 4 neighbours."""
    x = rng("blocks").uniform(0, 1, (1, 784))
    near = UPSCALE_NEAREST_2.forward(x).reshape(56, 56)
    for dr in (0, 1):
        for dc in (0, 1):
            assert np.array_equal(near[dr::2, dc::2], x.reshape(28, 28))
    bil = UPSCALE_BILINEAR_2.forward(x).reshape(56, 56)
    y0 = np.floor(np.arange(56) * 27 / 55).astype(int)
    y1 = np.minimum(y0 + 1, 27)
    img = x.reshape(28, 28)
    around = np.stack([img[np.ix_(a, b)] for a in (y0, y1) for b in (y0, y1)])
    assert np.all(around.min(axis=0) - 1e-15 <= bil) and np.all(bil <= around.max(axis=0) + 1e-15)


# --- formulas, evaluated in Python ------------------------------------------------------------

class FakeCells:
    """Cells that name input k's cell (i, j) `v[j]` of row i, to evaluate a formula in Python."""

    n = 1

    def __init__(self, shape):
        self._shape = shape

    def at(self, k, i, j):
        return f"v[{j}]"

    def shape(self, k):
        return self._shape


FORMULA = re.compile(r"[v\[\]0-9+*/()]+")  # references, integers, + * / and parentheses only


@pytest.mark.parametrize("op", list(UPSCALE_OPS.values()), ids=list(UPSCALE_OPS))
def test_formulas_compute_exactly_what_numpy_computes(op):
    """Every cell's formula, evaluated with Python floats (IEEE doubles, left to right like a
    spreadsheet), equals the numpy forward bit for bit."""
    f = op.factor if isinstance(op, Upscale) else op.up.factor
    n_in = 784 if isinstance(op, Upscale) else (28 * f) ** 2
    x = rng("eval" + op.name).normal(size=(1, n_in))
    out = op.forward(x)
    v = x[0].tolist()
    cells = FakeCells(x.shape)
    for j in range(out.shape[1]):
        text = op.formula(cells, 0, j)
        assert FORMULA.fullmatch(text), text
        assert eval(text, {}, {"v": v}) == out[0, j], (j, text)


def test_formula_shapes():
    """Plain references on the grid, 2-term averages on grid lines, 4 terms over (S−1)²."""
    tape = Tape()
    x = tape.constant("x", np.zeros((2, 9)))
    up = tape.apply(UPSCALE_BILINEAR_2, x)
    near = tape.apply(UPSCALES[("nearest", 4)], x)
    lay = type("L", (), {})()
    lay.place = {id(x): Place("In", 1, 1, 2, 9), id(up): Place("Out", 1, 1, 2, 36),
                 id(near): Place("Out", 5, 1, 2, 144)}
    c = Cells(lay, up)
    # s = 3, S = 6: y = R·2/5; x row 1 is 'In'!B3:J3
    assert UPSCALE_BILINEAR_2.formula(c, 1, 0) == "'In'!B3"
    assert UPSCALE_BILINEAR_2.formula(c, 1, 35) == "'In'!J3"
    assert UPSCALE_BILINEAR_2.formula(c, 1, 5) == "'In'!D3"  # top right corner
    assert UPSCALE_BILINEAR_2.formula(c, 1, 1) == "('In'!B3*3+'In'!C3*2)/5"  # x = 2/5
    assert UPSCALE_BILINEAR_2.formula(c, 1, 6) == "('In'!B3*3+'In'!E3*2)/5"  # y = 2/5
    assert UPSCALE_BILINEAR_2.formula(c, 1, 7) == "(('In'!B3*3+'In'!C3*2)*3+('In'!E3*3+'In'!F3*2)*2)/25"
    assert UPSCALE_BILINEAR_2.formula(c, 0, 8) == "(('In'!B2+'In'!C2*4)*3+('In'!E2+'In'!F2*4)*2)/25"
    cn = Cells(lay, near)
    assert [UPSCALES[("nearest", 4)].formula(cn, 0, j) for j in (0, 3, 4, 11, 12)] == \
        ["'In'!B2", "'In'!B2", "'In'!C2", "'In'!D2", "'In'!B2"]
    assert UPSCALES[("nearest", 4)].formula(cn, 1, 143) == "'In'!J3"


def test_bilinear_weights_over_the_common_denominator():
    """s = 28, ×2: q = 55, y = R·27/55; ×4: q = 111."""
    c = FakeCells((1, 784))
    assert UPSCALE_BILINEAR_2.formula(c, 0, 1) == "(v[0]*28+v[1]*27)/55"
    assert UPSCALE_BILINEAR_2.formula(c, 0, 56 + 1) == "((v[0]*28+v[1]*27)*28+(v[28]*28+v[29]*27)*27)/3025"
    assert UPSCALES[("bilinear", 4)].formula(c, 0, 112 * 111 + 111) == "v[783]"
    assert UPSCALES[("bilinear", 4)].formula(c, 0, 1) == "(v[0]*84+v[1]*27)/111"


# --- gradient: the transpose ------------------------------------------------------------------

def weighted_loss(tape, out, weights):
    """Σ weights ⊙ out as a recorded (1,1) tensor, made only of ops: 1ᵀ (out ⊙ W) 1."""
    m, n = out.shape
    prod = tape.apply(linalg.MUL, out, tape.constant("W", weights), name="out*W")
    cols = tape.apply(linalg.MATMUL_TN, tape.constant("ones_m", np.ones((m, 1))), prod, name="col sums")
    return tape.apply(linalg.MATMUL_NT, cols, tape.constant("ones_n", np.ones((1, n))), name="L")


@pytest.mark.parametrize("mode, f", CASES, ids=IDS)
@pytest.mark.parametrize("s", [1, 3, 4])
def test_gradient_is_the_transpose(mode, f, s):
    r = rng(f"grad{mode}{f}{s}")
    x0 = r.normal(size=(2, s * s))
    weights = r.normal(size=(2, (f * s) ** 2))
    tape = Tape()
    x = tape.constant("x", x0)
    loss = weighted_loss(tape, upscale(x, f, mode, name="up"), weights)
    grads = tape.backward(loss, {"x": x})
    g = grads["x"]
    up = UPSCALES[(mode, f)]
    assert g.name == "dL/dx" and g.op is up.grad_op and g.op.name == f"{up.name}_grad"
    assert g.inputs[0].name == "dL/dup" and g.shape == x0.shape
    np.testing.assert_allclose(g.value, weights @ ref_matrix(s, f, mode).T, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode, f", CASES, ids=IDS)
def test_gradient_is_the_adjoint_at_28(mode, f):
    """⟨up(x), g⟩ = ⟨x, upᵀ(g)⟩ for a 28 × 28 image."""
    r = rng("adjoint")
    x, g = r.normal(size=(2, 784)), r.normal(size=(2, (28 * f) ** 2))
    up = UPSCALES[(mode, f)]
    lhs, rhs = np.sum(up.forward(x) * g), np.sum(x * up.grad_op.forward(g))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_nearest_gradient_sums_each_block():
    g = rng("blocks g").normal(size=(1, 56 * 56))
    expected = g.reshape(28, 2, 28, 2).sum(axis=(1, 3)).reshape(1, 784)
    np.testing.assert_allclose(UPSCALE_NEAREST_2.grad_op.forward(g), expected, rtol=1e-14)


# --- errors -----------------------------------------------------------------------------------

def test_bad_factor_mode_or_row_length():
    tape = Tape()
    x = tape.constant("x", np.zeros((2, 784)))
    with pytest.raises(ValueError, match=r"upscale factor must be 2 or 4, got 3"):
        upscale(x, 3, "bilinear")
    with pytest.raises(ValueError, match=r"upscale factor must be 2 or 4, got True"):
        upscale(x, True, "nearest")
    with pytest.raises(ValueError, match=r"upscale mode must be 'nearest' or 'bilinear', got 'cubic'"):
        upscale(x, 2, "cubic")
    bad = tape.constant("bad", np.zeros((2, 783)))
    with pytest.raises(ValueError, match=r"square images .*: 783 columns is not a square number "
                                         r"\(27² = 729, 28² = 784\)"):
        upscale(bad, 2, "nearest")
    with pytest.raises(ValueError, match=r"upscale_bilinear_4 needs rows that are square images"):
        tape.apply(UPSCALES[("bilinear", 4)], bad)  # the op itself checks too
    with pytest.raises(ValueError, match=r"side is a multiple of 4: got 30 × 30"):
        UPSCALES[("nearest", 4)].grad_op.forward(np.zeros((1, 900)))
    assert len(tape.tensors) == 2  # nothing recorded


def test_the_op_table():
    assert set(UPSCALE_OPS) == {f"upscale_{m}_{f}{g}" for m, f in CASES for g in ("", "_grad")}
    assert all(op.name == name for name, op in UPSCALE_OPS.items())
    for name in UPSCALE_OPS:  # the one registry holds the same ops
        assert OPS[name] is UPSCALE_OPS[name]
    assert all(isinstance(op, (Upscale, UpscaleGrad)) for op in UPSCALE_OPS.values())


# --- workbook text (to be merged into templates/common.toml) ----------------------------------

def upscale_template(lang: str) -> Template:
    return ops_template(lang, "Upscale")


def test_template_text_covers_every_op():
    entries = {name: entry for name, entry in _load("common")["ops"].items() if name in UPSCALE_OPS}
    assert set(entries) == set(UPSCALE_OPS)
    for name, entry in entries.items():
        assert entry["equation"].startswith("{out}") and set(entry) == {"equation", *LANGS}, name
        for lang in LANGS:
            assert "{0}" in entry[lang] and entry[lang].format("x̂") != entry[lang], (name, lang)
        if name.startswith("upscale_bilinear") and not name.endswith("_grad"):
            for words in ("R·(s−1)/(S−1)", "(1−fy)(1−fx)", "(1−fy)·fx", "fy·(1−fx)", "fy·fx", "(S−1)²"):
                assert words in entry["en"] and words in entry["es"], (name, words)
            assert "corners aligned" in entry["en"] and "esquinas alineadas" in entry["es"]
    tape = Tape()
    x = tape.constant("x_hat", np.zeros((1, 784)))
    up = tape.apply(UPSCALE_BILINEAR_2, x, name="big")
    for lang in LANGS:
        tpl = upscale_template(lang)
        assert tpl.equation(up).startswith("big[R, C] = (1−fy)(1−fx)·x_hat[y₀, x₀]")
        assert tpl.note(up).count("x_hat") == 2


# --- LibreOffice: the real exporter, recalculated -------------------------------------------

def build_tape():
    """Inputs (iteration 0): a batch of two 28 × 28 images, one 5 × 5 image as a row (the layout
    shows a row vector as a column), a 3 × 3 batch and 1 × 1 images; iteration 1: every op on each
    of them, and every gradient op on a batch of 28 × 28 sized gradients and on a row.

    (XlsxWriter's constant-memory mode costs sheet width × rows: the 12544-column ×4 batch and a
    12544-row ×4 column of a 28 × 28 row vector on one sheet take ~35 s to write, so the row
    vector is 5 × 5 here.)"""
    r = rng("workbook")
    tape = Tape()
    xs = [tape.constant("x", r.uniform(0, 1, (2, 784)), role="data"),
          tape.constant("x row", r.uniform(0, 1, (1, 25)), role="data"),
          tape.constant("x3", r.normal(size=(2, 9)), role="data"),
          tape.constant("x1", r.normal(size=(2, 1)), role="data")]
    tape.iteration = 1
    tape.at("forward")
    for up in UPSCALES.values():
        for x in xs:
            tape.apply(up, x, name=f"{up.name}({x.name})")
    tape.at("backward")
    for up in UPSCALES.values():
        for shape in ((2, 784), (1, 9)):
            g = tape.constant(f"g {up.name} {shape}", r.normal(size=(shape[0], shape[1] * up.factor ** 2)))
            tape.apply(up.grad_op, g, name=f"{up.grad_op.name}({g.name})")
    return tape


@pytest.fixture(scope="module")
def exported(module_engine, tmp_path_factory):
    tape = build_tape()
    layout = Layout(tape, upscale_template("en"), {})
    path = tmp_path_factory.mktemp("upscale") / "upscale.xlsx"
    write_xlsx(layout, path)
    return tape, layout, verify.verify_workbook(path, engine=module_engine)


def test_workbook_recalculates_to_numpy(exported):
    tape, layout, report = exported
    assert {t.op.name for t in tape.tensors if t.op} == set(UPSCALE_OPS)
    assert report.ok, report.format()
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)
    # LibreOffice writes its results with 15 significant digits: ±5e-15 relative is all it can show;
    # IronCalc keeps every digit but sums a long weighted average in its own order (measured 1e-13)
    assert report.max_rel_err < (1e-14 if report.engine == "LibreOffice" else 1e-12), report.format()


def test_workbook_shows_the_equations_and_notes(exported):
    tape, layout, _ = exported
    blocks = [p for s in layout.iters for p in s.parts if hasattr(p, "tensor") and p.tensor.op]
    assert len(blocks) == sum(1 for t in tape.tensors if t.op)
    for b in blocks:
        assert b.equation.startswith(b.tensor.name) and b.tensor.inputs[0].name in b.note
    row = layout.place[id(next(t for t in tape.tensors if t.name == "upscale_bilinear_4(x row)"))]
    # a long row vector in bands of 16 (tracer.core.size.shown), not a column of 400 rows
    assert not row.transposed and row.bands == 25 and row.display == (25 * 2 - 1, 16)


def test_a_wrong_weight_is_caught(engine, monkeypatch, tmp_path):
    """One weight of one cell changed (3 → 4 in ((A*3+B*2)*3+(C*3+D*2)*2)/25): LibreOffice's
    value for that cell, and only that cell, disagrees with the stored numpy value."""
    r = rng("broken")
    tape = Tape()
    x = tape.constant("x", r.normal(size=(2, 9)), role="data")
    tape.iteration = 1
    tape.at("forward")
    up = tape.apply(UPSCALE_BILINEAR_2, x, name="up")
    right = Upscale.formula
    target = (1, 7)

    def broken(self, c, i, j):
        f = right(self, c, i, j)
        return f.replace("*3+", "*4+", 1) if self is UPSCALE_BILINEAR_2 and (i, j) == target else f

    monkeypatch.setattr(Upscale, "formula", broken)
    layout = Layout(tape, upscale_template("en"), {})
    path = tmp_path / "broken.xlsx"
    write_xlsx(layout, path)
    report = verify.verify_workbook(path, engine=engine)

    sheet = layout.iters[0].name
    cell = layout.place[id(up)].addr(*target, sheet)
    A, B, C, D = (x.value[1, k] for k in (0, 1, 3, 4))
    assert not report.ok and report.errors == [] and report.n_mismatches == 1
    (addr, stored, recalculated), = report.mismatches
    assert addr == f"'{sheet}'!{cell}"
    assert stored == up.value[target] == ((A * 3 + B * 2) * 3 + (C * 3 + D * 2) * 2) / 25
    assert recalculated == pytest.approx(((A * 4 + B * 2) * 3 + (C * 3 + D * 2) * 2) / 25, rel=1e-14)
