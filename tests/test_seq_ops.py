"""The ops of the sequence models (rnn, lstm, bert): a recurrent step's linear2, the LSTM's
add_products, row slices and stacks, the sparse cross-entropy (nll) and its means, BERT's mask
ops and the gradient norms of the vanishing-gradient view.

* numpy forwards against independent references (loops over cells);
* gradient rules against central differences of those references;
* the cell formulas recalculated in LibreOffice, every op with its inputs laid out both ways (a
  row vector is shown turned), and every new formula obeying the rule that no function but an
  aggregate receives a range (no array arithmetic anywhere, SUMPRODUCT included).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import ops_template
from families import SEQUENCE, ops_of
from test_lm_ops import check_gradient, probs, rng

from tracer.checks import verify
from tracer.core import embeddings, linalg, losses
from tracer.core.tape import Tape
from tracer.render.layout import Cells, Layout
from tracer.render.xlsx import write_xlsx

SEQ_OPS = ops_of(SEQUENCE)


# --- independent references: loops over cells -----------------------------------------------------

def ref_linear2(x, W, h, U, b):
    out = np.zeros((x.shape[0], W.shape[1]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (math.fsum(x[i, k] * W[k, j] for k in range(W.shape[0]))
                         + math.fsum(h[i, k] * U[k, j] for k in range(U.shape[0])) + b[0, j])
    return out


def ref_add_products(a, b, c, d):
    return np.array([[a[i, j] * b[i, j] + c[i, j] * d[i, j] for j in range(a.shape[1])] for i in range(a.shape[0])])


def ref_norms(*xs):
    return np.array([[math.sqrt(math.fsum(v * v for v in x.ravel()))] for x in xs])


def ref_slice_rows(start, n):
    return lambda x: np.array([list(x[start + i]) for i in range(n)])


def ref_pad_rows(start, n, rows):
    def ref(g, **attrs):
        out = np.zeros((rows, g.shape[1]))
        for i in range(n):
            out[start + i] = g[i]
        return out
    return ref


def ref_concat_rows(*xs):
    return np.array([list(row) for x in xs for row in x])


def ref_nll(p, y):
    return np.array([[-math.log(p[i, int(y[i, 0])])] for i in range(p.shape[0])])


def ref_nll_grad(p, y, g):
    return np.array([[-g[i, 0] / p[i, j] if j == int(y[i, 0]) else 0.0 for j in range(p.shape[1])]
                     for i in range(p.shape[0])])


def ref_mean(a):
    return np.array([[math.fsum(a.ravel()) / a.size]])


def ref_mean_grad(a, g):
    return np.full(a.shape, g[0, 0] / a.size)


def ref_masked_mean(a, m):
    chosen = [a[i, 0] for i in range(a.shape[0]) if m[i, 0] == 1]
    return np.array([[math.fsum(chosen) / len(chosen)]])


def ref_masked_mean_grad(m, g):
    return np.array([[g[0, 0] * m[i, 0] / m.sum()] for i in range(m.shape[0])])


def ref_mask_positions(u, rate):
    smallest = min(u[:, 0])
    return np.array([[1.0 if v < rate[0, 0] or v == smallest else 0.0] for v in u[:, 0]])


def ref_mask_ids(ids, m, k):
    return np.array([[k[0, 0] if m[i, 0] == 1 else ids[i, 0]] for i in range(ids.shape[0])])


REFERENCE = {"linear2": ref_linear2, "add_products": ref_add_products, "norms": ref_norms,
             "concat_rows": ref_concat_rows, "nll": ref_nll, "nll_grad": ref_nll_grad, "mean": ref_mean,
             "mean_grad": ref_mean_grad, "masked_mean": ref_masked_mean, "masked_mean_grad": ref_masked_mean_grad,
             "mask_positions": ref_mask_positions, "mask_ids": ref_mask_ids}


def forward_cases():
    """(case id, op, inputs, attrs, reference)."""
    r = rng("seq forward")
    n = r.normal
    ids = np.array([[2.0], [0.0], [4.0]])
    u = np.array([[0.5], [0.31], [0.9], [0.7]])
    cases = [
        ("linear2", linalg.LINEAR2, [n(size=(1, 3)), n(size=(3, 4)), n(size=(1, 5)), n(size=(5, 4)), n(size=(1, 4))], {}),
        ("linear2 batch", linalg.LINEAR2, [n(size=(2, 3)), n(size=(3, 2)), n(size=(2, 2)), n(size=(2, 2)), n(size=(1, 2))], {}),
        ("add_products", linalg.ADD_PRODUCTS, [n(size=(1, 4)) for _ in range(4)], {}),
        ("norms", linalg.NORMS, [n(size=(1, 3)), n(size=(1, 3)), n(size=(2, 2))], {}),
        ("norms one", linalg.NORMS, [n(size=(1, 1))], {}),
        ("concat_rows", linalg.CONCAT_ROWS, [n(size=(1, 3)), n(size=(2, 3)), n(size=(1, 3))], {}),
        ("nll", losses.NLL, [probs(r, 3, 5), ids], {}),
        ("nll one row", losses.NLL, [probs(r, 1, 6), np.array([[5.0]])], {}),
        ("nll_grad", losses.NLL_GRAD, [probs(r, 3, 5), ids, n(size=(3, 1))], {}),
        ("mean", losses.MEAN, [n(size=(4, 1))], {}),
        ("mean 2x3", losses.MEAN, [n(size=(2, 3))], {}),
        ("mean_grad", losses.MEAN_GRAD, [n(size=(4, 1)), n(size=(1, 1))], {}),
        ("masked_mean", losses.MASKED_MEAN, [n(size=(4, 1)), np.array([[0.0], [1.0], [1.0], [0.0]])], {}),
        ("masked_mean_grad", losses.MASKED_MEAN_GRAD, [np.array([[0.0], [1.0], [1.0], [0.0]]), n(size=(1, 1))], {}),
        ("mask_positions", embeddings.MASK_POSITIONS, [u, np.array([[0.6]])], {}),
        ("mask_positions: the smallest draw always", embeddings.MASK_POSITIONS, [u, np.array([[0.0]])], {}),
        ("mask_ids", embeddings.MASK_IDS, [np.array([[3.0], [1.0], [4.0], [1.0]]), np.array([[1.0], [0.0], [0.0], [1.0]]),
                                           np.array([[6.0]])], {}),
    ]
    cases = [(cid, op, ins, attrs, REFERENCE[op.name]) for cid, op, ins, attrs in cases]
    x = n(size=(4, 3))
    cases.append(("slice_rows", linalg.slice_rows(1, 2), [x], {}, ref_slice_rows(1, 2)))
    cases.append(("slice_rows last", linalg.slice_rows(3, 1), [x], {}, ref_slice_rows(3, 1)))
    cases.append(("pad_rows", linalg.pad_rows(1, 2), [n(size=(2, 3))], {"rows": 4}, ref_pad_rows(1, 2, 4)))
    return cases


FORWARD = forward_cases()


def test_every_op_has_a_reference_and_a_case():
    assert {op.name for _, op, _, _, _ in FORWARD} == set(SEQ_OPS)
    assert all(op.name == name for name, op in SEQ_OPS.items())


@pytest.mark.parametrize("case, op, inputs, attrs, ref", FORWARD, ids=[c[0] for c in FORWARD])
def test_forward_matches_reference(case, op, inputs, attrs, ref):
    np.testing.assert_allclose(op.forward(*inputs, **attrs), ref(*inputs, **attrs), rtol=1e-13, atol=1e-15)


def test_forward_facts():
    assert embeddings.MASK_POSITIONS.forward(np.array([[0.9], [0.8]]), np.array([[0.1]])).ravel().tolist() == [0, 1]
    with pytest.raises(ValueError, match="rows 3 … 4 of a tensor of 4 rows"):
        linalg.slice_rows(3, 2).forward(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="target ids"):
        losses.NLL.forward(probs(rng("x"), 2, 3), np.array([[0.0], [3.0]]))
    assert linalg.slice_rows(1, 2) is linalg.slice_rows(1, 2) and linalg.slice_rows(1, 2) in linalg.instances()


# --- gradients ------------------------------------------------------------------------------------------

def grad_cases():
    r = rng("seq grad")
    n = r.normal
    ids = np.array([[2.0], [0.0], [4.0]])
    return [
        ("linear2", linalg.LINEAR2, [n(size=(2, 3)), n(size=(3, 4)), n(size=(2, 2)), n(size=(2, 4)), n(size=(1, 4))],
         (0, 1, 2, 3, 4), ref_linear2),
        ("linear2 one row", linalg.LINEAR2, [n(size=(1, 3)), n(size=(3, 2)), n(size=(1, 2)), n(size=(2, 2)), n(size=(1, 2))],
         (0, 1, 2, 3, 4), ref_linear2),
        ("add_products", linalg.ADD_PRODUCTS, [n(size=(1, 4)) for _ in range(4)], (0, 1, 2, 3), ref_add_products),
        ("concat_rows", linalg.CONCAT_ROWS, [n(size=(1, 3)), n(size=(2, 3))], (0, 1), ref_concat_rows),
        ("slice_rows", linalg.slice_rows(2, 1), [n(size=(4, 3))], (0,), ref_slice_rows(2, 1)),
        ("nll", losses.NLL, [probs(r, 3, 5), ids], (0,), ref_nll),
        ("mean", losses.MEAN, [n(size=(4, 2))], (0,), ref_mean),
        ("masked_mean", losses.MASKED_MEAN, [n(size=(4, 1)), np.array([[1.0], [0.0], [1.0], [1.0]])], (0,), ref_masked_mean),
    ]


GRAD = grad_cases()
NO_GRADIENT_RULE = {"nll_grad", "mean_grad", "masked_mean_grad", "pad_rows", "norms", "mask_positions", "mask_ids"}


def test_every_op_is_gradient_checked_or_has_no_rule():
    checked = {op.name for _, op, _, _, _ in GRAD}
    assert checked | NO_GRADIENT_RULE == set(SEQ_OPS) and not checked & NO_GRADIENT_RULE


@pytest.mark.parametrize("case, op, inputs, wrt, ref", GRAD, ids=[c[0] for c in GRAD])
def test_gradient_matches_central_differences(case, op, inputs, wrt, ref):
    check_gradient(case, op, inputs, wrt, ref)


def test_targets_and_masks_get_no_gradient():
    tape = Tape()
    p = tape.constant("p", probs(rng("t"), 2, 3))
    y = tape.constant("y", [[1.0], [2.0]])
    with pytest.raises(ValueError, match="nll: no gradient with respect to the targets"):
        tape.backward(losses.mean(losses.nll(p, y)), {"y": y})


# --- formulas in LibreOffice --------------------------------------------------------------------------

AGGREGATES = ("SUMPRODUCT", "SUM", "MMULT", "AVERAGE", "MIN", "MAX", "INDEX", "LARGE", "MATCH", "SUMIF", "COUNT")


def strict(formula):
    """No function but an aggregate receives a range, and a range only as a whole argument (no
    array arithmetic, not even inside SUMPRODUCT): what every spreadsheet computes the same."""
    for m in re.finditer(r"(?:'[^']+'!)?\$?[A-Z]{1,3}\$?\d+:\$?[A-Z]{1,3}\$?\d+", formula):
        before, after = formula[:m.start()], formula[m.end():]
        call = re.search(r"([A-Z]+)\((?:[^()]*,)?$", before)
        assert call and call[1] in AGGREGATES, f"range {m[0]} outside an aggregate: {formula}"
        assert re.match(r"[,)]", after), f"array arithmetic on {m[0]}: {formula}"


def test_the_strict_check_can_fail():
    for bad in ["SUMPRODUCT(EXP(A1:A3))", "LN(A1:A3)", "SUMPRODUCT(A1:A3*B1:B3)", "SUM(A1:A3-1)"]:
        with pytest.raises(AssertionError):
            strict(bad)
    for good in ["-LN(INDEX(B2:F2,1,A1+1))", "SQRT(SUMPRODUCT('It 1'!A1:A3,'It 1'!A1:A3))", "AVERAGE(A1:A4)",
                 "IF(A1<B1,1,IF(A1=MIN(A1:A4),1,0))", "SUMPRODUCT(A1:A4,B1:B4)/SUM(B1:B4)"]:
        strict(good)


def build_tape():
    """Iteration 0: the inputs; iteration 1: every op of the family, rows and turned rows."""
    r = rng("seq workbook")
    n = r.normal
    tape = Tape()
    C = lambda name, v: tape.constant(name, v, role="data")
    x13, W34, h15, U54, b14 = C("x13", n(size=(1, 3))), C("W34", n(size=(3, 4))), C("h15", n(size=(1, 5))), \
        C("U54", n(size=(5, 4))), C("b14", n(size=(1, 4)))
    x23, h22, W32, U22, b12 = C("x23", n(size=(2, 3))), C("h22", n(size=(2, 2))), C("W32", n(size=(3, 2))), \
        C("U22", n(size=(2, 2))), C("b12", n(size=(1, 2)))
    quad = [C(f"q{k}", n(size=(1, 4))) for k in range(4)]
    x43 = C("x43", n(size=(4, 3)))
    p35, ids3, g31 = C("p35", probs(r, 3, 5)), C("ids3", [[2.0], [0.0], [4.0]]), C("g31", n(size=(3, 1)))
    p16, id1 = C("p16", probs(r, 1, 6)), C("id1", [[5.0]])
    a41, m41, s = C("a41", n(size=(4, 1))), C("m41", [[0.0], [1.0], [1.0], [0.0]]), C("s", n(size=(1, 1)))
    u41, rate = C("u41", [[0.5], [0.31], [0.9], [0.7]]), C("rate", [[0.6]])
    t41, k = C("t41", [[3.0], [1.0], [4.0], [1.0]]), C("k", [[6.0]])
    tape.iteration = 1
    tape.at("forward")
    a = lambda op, *ins, **attrs: tape.apply(op, *ins, **attrs)
    a(linalg.LINEAR2, x13, W34, h15, U54, b14)
    a(linalg.LINEAR2, x23, W32, h22, U22, b12)
    a(linalg.ADD_PRODUCTS, *quad)
    a(linalg.NORMS, quad[0], x43, s)
    rows = [a(linalg.slice_rows(i, 1), x43) for i in range(4)]
    a(linalg.CONCAT_ROWS, *rows)
    a(linalg.pad_rows(1, 1), rows[1], rows=4)
    a(losses.NLL, p35, ids3)
    a(losses.NLL, p16, id1)
    a(losses.NLL_GRAD, p35, ids3, g31)
    a(losses.NLL_GRAD, p16, id1, s)
    a(losses.MEAN, a41)
    a(losses.MEAN, x43)
    a(losses.MEAN_GRAD, a41, s)
    a(losses.MASKED_MEAN, a41, m41)
    a(losses.MASKED_MEAN_GRAD, m41, s)
    a(embeddings.MASK_POSITIONS, u41, rate)
    a(embeddings.MASK_IDS, t41, m41, k)
    return tape


@pytest.fixture(scope="module")
def exported(soffice, tmp_path_factory):
    tape = build_tape()
    layout = Layout(tape, ops_template("en", "Sequence ops"), {})
    path = tmp_path_factory.mktemp("seq_ops") / "seq_ops.xlsx"
    write_xlsx(layout, path)
    return tape, layout, verify.verify_workbook(path, rtol=1e-12, atol=1e-14)


def test_workbook_recalculates_to_numpy(exported):
    tape, layout, report = exported
    assert {t.op.name for t in tape.tensors if t.op} == set(SEQ_OPS)
    assert any(layout.place[id(t.inputs[0])].transposed for t in tape.tensors if t.op is losses.NLL)  # P (1, V) turned
    assert report.ok, report.format()
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)


def test_every_new_formula_passes_the_strict_rule(exported):
    tape, layout, _ = exported
    seen = set()
    for t in tape.tensors:
        if t.op is not None:
            cells = Cells(layout, t)
            for i, j in np.ndindex(t.shape):
                f = t.op.formula(cells, i, j)
                strict(f)
                seen |= set(re.findall(r"([A-Z]+)\(", f))
    assert {"LN", "INDEX", "AVERAGE", "SQRT", "SUMPRODUCT", "MIN", "IF"} <= seen
