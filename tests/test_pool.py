"""Average pooling (tracer.core.resampling.avg_pool): rows of s² pixels shrunk by f, each pixel the
mean of an f × f block.  numpy's forward against a loop over blocks, the gradient rule against
finite differences and as the adjoint, the cell formulas recalculated in LibreOffice through the
real exporter, and a formula broken on purpose that the check catches."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import ops_template

from tracer.checks import verify
from tracer.core import OPS
from tracer.core.resampling import AvgPool, avg_pool, avg_pool_op
from tracer.core.tape import Tape
from tracer.render.layout import Layout
from tracer.render.template import LANGS, _load
from tracer.render.xlsx import write_xlsx

FACTORS = (2, 4, 7, 14)


def ref(x: np.ndarray, f: int) -> np.ndarray:
    """Each row an s × s image; each output pixel np.mean of its block, one block at a time."""
    s = round(x.shape[1] ** 0.5)
    m = s // f
    out = np.empty((x.shape[0], m * m))
    for n in range(x.shape[0]):
        img = x[n].reshape(s, s)
        for R in range(m):
            for C in range(m):
                out[n, R * m + C] = np.mean(img[R * f:(R + 1) * f, C * f:(C + 1) * f])
    return out


@pytest.mark.parametrize("f", FACTORS)
def test_forward_matches_the_block_means(f):
    x = np.random.default_rng(f).uniform(0, 1, (3, 784))
    np.testing.assert_allclose(avg_pool_op(f).forward(x), ref(x, f), rtol=1e-14, atol=1e-15)
    assert avg_pool_op(f).forward(np.full((1, 784), 0.25)).tolist() == [[0.25] * (28 // f) ** 2]


@pytest.mark.parametrize("f", FACTORS)
def test_gradient_is_the_adjoint_and_matches_differences(f):
    r = np.random.default_rng(100 + f)
    x, g = r.normal(size=(2, 784)), r.normal(size=(2, (28 // f) ** 2))
    op = avg_pool_op(f)
    back = op.grad_op.forward(g)
    assert np.sum(op.forward(x) * g) == pytest.approx(np.sum(x * back), rel=1e-12)
    h, k = 1e-6, 300
    up, down = x.copy(), x.copy()
    up[1, k] += h
    down[1, k] -= h
    numeric = (np.sum(op.forward(up) * g) - np.sum(op.forward(down) * g)) / (2 * h)
    assert numeric == pytest.approx(back[1, k], rel=1e-7)
    tape = Tape()  # the rule the tape uses: one gradient op, recorded
    xt = tape.constant("x", x)
    out = avg_pool(xt, f, name="small")
    (dx,) = op.backward(out, tape.constant("g", g), [True])
    np.testing.assert_array_equal(dx.value, back)


def test_bad_factors_and_rows():
    tape = Tape()
    x = tape.constant("x", np.zeros((1, 784)))
    for bad in (3, 0, 2.0, True):
        with pytest.raises(ValueError):
            avg_pool(x, bad)
    with pytest.raises(ValueError, match="not a square number"):
        avg_pool(tape.constant("y", np.zeros((1, 10))), 2)
    assert len(tape.tensors) == 2


def test_the_op_family():
    assert isinstance(OPS["avg_pool"], AvgPool) and OPS["avg_pool_grad"] is OPS["avg_pool"].grad_op
    assert avg_pool_op(4) is avg_pool_op(4) and avg_pool_op(4).params() == {"f": 4, "ff": 16}


def test_template_text_covers_both_ops():
    common = _load("common")["ops"]
    for name in ("avg_pool", "avg_pool_grad"):
        entry = common[name]
        for text in (entry["equation"], *(entry[lang] for lang in LANGS)):
            text.format("x", out="y", all="x", f=4, ff=16)
        assert "AVERAGE" in common["avg_pool"]["en"] and "AVERAGE" in common["avg_pool"]["es"]


# --- LibreOffice: the real exporter, recalculated -------------------------------------------

def build_tape():
    """A digit as a row (shown as a column) and a batch of two (shown as rows), pooled by every
    factor; the gradient op on both layouts."""
    r = np.random.default_rng(7)
    tape = Tape()
    row = tape.constant("x", r.uniform(0, 1, (1, 784)), role="data")
    batch = tape.constant("xs", r.uniform(0, 1, (2, 784)), role="data")
    tape.iteration = 1
    tape.at("forward")
    for f in FACTORS:
        for x in (row, batch):
            avg_pool(x, f, name=f"pool{f}({x.name})")
    tape.at("backward")
    for f in (2, 7):
        for rows in (1, 2):
            g = tape.constant(f"g{f}x{rows}", r.normal(size=(rows, (28 // f) ** 2)))
            tape.apply(avg_pool_op(f).grad_op, g, name=f"grad{f}({g.name})")
    return tape


def test_workbook_recalculates_to_numpy(soffice, tmp_path):
    tape = build_tape()
    path = tmp_path / "pool.xlsx"
    write_xlsx(Layout(tape, ops_template("en", "Pooling"), {}), path)
    report = verify.verify_workbook(path)
    assert report.ok, report.format()
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)


def test_a_wrong_range_is_caught(soffice, monkeypatch, tmp_path):
    """One block's first range one cell off: that cell, and only it, disagrees."""
    tape = Tape()
    x = tape.constant("x", np.random.default_rng(3).uniform(0, 1, (1, 16)), role="data")
    tape.iteration = 1
    tape.at("forward")
    avg_pool(x, 2, name="small")
    right = AvgPool.formula

    def broken(self, c, i, j):  # the first range starts one cell later: AVERAGE(B13:B13,…)
        f = right(self, c, i, j)
        return re.sub(r"([A-Z]+)(\d+)", lambda m: f"{m[1]}{int(m[2]) + 1}", f, count=1) if j == 3 else f

    monkeypatch.setattr(AvgPool, "formula", broken)
    path = tmp_path / "broken.xlsx"
    write_xlsx(Layout(tape, ops_template("en", "Pooling"), {}), path)
    report = verify.verify_workbook(path)
    assert not report.ok and report.n_mismatches == 1
