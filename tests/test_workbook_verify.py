"""tracer's own formulas recalculated in each engine (LibreOffice, IronCalc): every op on batch
shapes, the whole VAE workbook in both languages, and a workbook with one formula broken on
purpose, which each engine must catch.

Each LibreOffice conversion of the VAE workbook takes several seconds; each is done once.
"""

from __future__ import annotations

import re
import types
import zipfile

import numpy as np
import pytest
import xlsxwriter
from documented import says
from families import BASIC

from tracer.checks import verify
from tracer.core import activations, linalg, losses, optimizers
from tracer.core import op as core_op
from tracer.core.tape import Tape
from tracer.engines.workbook import address
from tracer.render.layout import Cells, Layout, Place
from tracer.render.template import Template

# --------------------------------------------------------------------------
# Every op on a small sheet of batch shapes
# --------------------------------------------------------------------------

class BatchSheet:
    """Tensors stacked top to bottom on two sheets, constants as numbers and op results as the
    op's own formulas (written through tracer.layout.Cells) with numpy's values stored."""

    def __init__(self):
        self.tape = Tape()
        self.rng = np.random.default_rng(2024)
        self.layout = types.SimpleNamespace(place={})
        self.cursor = {"Overview": 2, "In puts": 1, "Ops": 1}

    def _put(self, t, sheet, transposed):
        p = Place(sheet, self.cursor[sheet], 1, *t.shape, transposed=transposed)
        self.layout.place[id(t)] = p
        self.cursor[sheet] += p.display[0] + 1
        return t

    def const(self, value, transposed=False, sheet="In puts"):
        return self._put(self.tape.constant(None, value), sheet, transposed)

    def normal(self, *shape, transposed=False):
        return self.const(self.rng.normal(size=shape), transposed)

    def apply(self, op, *inputs, transposed=False, sheet="Ops"):
        first = len(self.tape.tensors)
        out = self.tape.apply(op, *inputs)
        for t in self.tape.tensors[first:]:  # an op in steps: its steps, then itself
            self._put(t, sheet, transposed)
        return out

    def build(self):
        n, c, a = self.normal, self.const, self.apply
        rng = self.rng
        # products in every orientation of both operands (SUMPRODUCT and MMULT), and n = 1
        for op, sa, sb in ((linalg.MATMUL, (2, 3), (3, 4)), (linalg.MATMUL_NT, (2, 3), (4, 3)),
                           (linalg.MATMUL_TN, (3, 2), (3, 4))):
            for ta in (False, True):
                for tb in (False, True):
                    a(op, n(*sa, transposed=ta), n(*sb, transposed=tb), transposed=ta != tb)
        a(linalg.MATMUL, n(3, 1), n(1, 4, transposed=True))  # outer product: one-cell "dot"
        a(linalg.MATMUL, n(1, 3, transposed=True), n(3, 1))
        y = a(linalg.MATMUL_TN, n(5, 2), n(5, 3), transposed=True)
        a(activations.SIGMOID, y)  # a formula of formulas
        for t in (False, True):
            a(linalg.SUM_ROWS, n(5, 3, transposed=t))
        a(linalg.SUM_ROWS, n(1, 4, transposed=True))
        for t in (False, True):
            a(linalg.SUM_COLS, n(5, 3, transposed=t))
            a(linalg.SUM_ALL, n(5, 3, transposed=t))
        a(linalg.SUM_COLS, n(4, 1))
        a(linalg.BROADCAST, n(5, 3), n(5, 1))  # the gradient of SUM_COLS
        a(linalg.BROADCAST, n(5, 3, transposed=True), n(1, 3, transposed=True))
        # linear: batch and a row vector laid out as a column (like the VAE)
        for t in (False, True):
            a(linalg.LINEAR, n(2, 3, transposed=t), n(3, 4), n(1, 4, transposed=True))
        a(linalg.LINEAR, n(1, 5, transposed=True), n(5, 2), n(1, 2, transposed=True), transposed=True)
        # elementwise ops, broadcasting scalars, rows and columns
        A, B = n(2, 3), n(2, 3, transposed=True)
        row, col, s = n(1, 3, transposed=True), n(2, 1), n(1, 1)
        a(linalg.MUL, A, B)
        a(linalg.MUL, A, row)
        a(linalg.MUL, s, B, transposed=True)
        a(linalg.MUL, col, row)
        a(linalg.ADD, n(3, 1), n(3, 4))
        a(linalg.ADD, s, n(1, 1))
        a(linalg.ADD_MUL, A, row, s)
        a(linalg.DIV, s, c(np.array([[3.0]])))  # a mean over a batch of 3
        a(linalg.DIV, A, c(np.array([[4.0]])))
        a(linalg.ADD_MUL, n(1, 4, transposed=True), c(np.exp(rng.normal(size=(1, 4))), True),
          n(1, 4, transposed=True), transposed=True)
        a(activations.RELU, A)
        a(activations.SIGMOID, B, transposed=True)
        a(activations.EXP_HALF, row, transposed=True)
        a(core_op.ONE, A)
        a(core_op.COPY, B)
        a(core_op.SUM_N, A, B, n(2, 3))
        a(activations.RELU_GRAD, A, B)
        probs = c(rng.uniform(0.05, 0.95, (2, 3)))
        probs_t = c(rng.uniform(0.05, 0.95, (1, 5)), True)
        pixels = c(rng.integers(0, 256, (2, 3)) / 255)
        pixels_t = c(rng.integers(0, 256, (1, 5)) / 255, True)
        a(activations.SIGMOID_GRAD, probs, A)
        a(activations.EXP_HALF_GRAD, c(np.exp(rng.normal(size=(2, 3)))), B)
        a(losses.BCE_GRAD, pixels, probs, s)
        a(losses.BCE_GRAD, pixels_t, probs_t, s, transposed=True)
        a(losses.KL_LOGVAR_GRAD, s, n(1, 4, transposed=True), transposed=True)
        lr = self._put(self.tape.constant("lr", [[0.1]], defined_name="lr"), "Overview", False)
        a(optimizers.SGD, n(3, 4), lr, n(3, 4))
        a(optimizers.SGD, n(1, 4, transposed=True), lr, n(1, 4, transposed=True), transposed=True)
        # Adam, with its hyperparameters as named cells
        beta = self._put(self.tape.constant("beta1", [[0.9]], defined_name="beta_1"), "Overview", False)
        eps = self._put(self.tape.constant("adam_eps", [[1e-8]], defined_name="adam_eps"), "Overview", False)
        t = a(optimizers.INCREMENT, c(np.array([[2.0]])))
        m = a(optimizers.ADAM_M, A, beta, B)
        v = a(optimizers.ADAM_V, c(np.abs(rng.normal(size=(2, 3)))), beta, A)
        m_hat, v_hat = a(optimizers.BIAS_CORRECT, m, beta, t), a(optimizers.BIAS_CORRECT, v, beta, t)
        step = a(optimizers.ADAM_STEP, lr, m_hat, v_hat, eps)
        # after thousands of (warm-up) steps β1^t, and the square of a tiny gradient, fall below the
        # smallest double: a spreadsheet must give 0 there, not LibreOffice's #NUM! for a power
        a(optimizers.BIAS_CORRECT, m, beta, a(optimizers.INCREMENT, c(np.array([[7100.0]]))))
        a(optimizers.ADAM_V, v, beta, c(np.full((2, 3), 1e-170)))
        a(linalg.SUB, A, step)
        # the GAN: LeakyReLU with a named slope, −mean ln losses over a batch column
        slope = self._put(self.tape.constant("slope", [[0.2]], defined_name="slope"), "Overview", False)
        a(activations.LEAKY_RELU, A, slope)
        a(activations.LEAKY_RELU_GRAD, B, slope, A, transposed=True)
        d = c(rng.uniform(0.05, 0.95, (3, 1)))
        a(losses.NEG_MEAN_LN, d)
        a(losses.NEG_MEAN_LN1M, d)
        a(losses.NEG_MEAN_LN_GRAD, d, s)
        a(losses.NEG_MEAN_LN1M_GRAD, d, s)
        # scalars from whole blocks
        a(losses.BCE, pixels, probs)
        a(losses.BCE, pixels_t, probs_t)
        a(losses.KL, A, n(2, 3))
        a(losses.KL, n(1, 4, transposed=True), n(1, 4, transposed=True))
        return self

    def write(self, path):
        """Write the workbook; returns {address: formula} of every formula cell."""
        wb = xlsxwriter.Workbook(path)
        sheets = {name: wb.add_worksheet(name) for name in ("Overview", "In puts", "Ops")}
        formulas = {}
        for t in self.tape.tensors:
            p = self.layout.place[id(t)]
            ws = sheets[p.sheet]
            for i in range(t.shape[0]):
                for j in range(t.shape[1]):
                    r, col = p.rc(i, j)
                    if t.op is None:
                        ws.write_number(r, col, float(t.value[i, j]))
                        continue
                    f = t.op.formula(Cells(self.layout, t), i, j)
                    ws.write_formula(r, col, "=" + f, None, float(t.value[i, j]))
                    formulas[address(p.sheet, r + 1, col + 1)] = f
            if t.attrs.get("defined_name"):
                wb.define_name(t.attrs["defined_name"], f"={p.addr(0, 0, '', absolute=True)}")
        wb.close()
        return formulas


@pytest.fixture(scope="module")
def batch(module_engine, tmp_path_factory):
    sheet = BatchSheet().build()
    path = tmp_path_factory.mktemp("batch") / "batch_ops.xlsx"
    formulas = sheet.write(path)
    return sheet, formulas, verify.verify_workbook(path, engine=module_engine)


def test_batch_sheet_covers_every_op_and_both_dot_forms(batch):
    sheet, formulas, _ = batch
    used = {t.op.name for t in sheet.tape.tensors if t.op is not None}
    assert used == set(BASIC)
    text = "\n".join(formulas.values())
    assert "SUMPRODUCT(" in text and "MMULT(" in text
    assert "'In puts'!" in text and "-lr*" in text
    # products: a row of a against a column of b in all four orientations
    matmul_dots = [f for f in formulas.values() if re.fullmatch(r"(SUMPRODUCT|MMULT)\([^()]*\)", f)]
    assert {f.split("(")[0] for f in matmul_dots} == {"SUMPRODUCT", "MMULT"}
    assert any(re.fullmatch(r"MMULT\([^()]*\)\+'In puts'!\w+", f) for f in formulas.values())  # linear


def test_batch_sheet_recalculates_to_numpy(batch):
    sheet, formulas, report = batch
    assert report.ok, report.format()
    assert report.n_formulas == len(formulas) == sum(t.value.size for t in sheet.tape.tensors if t.op)
    assert report.max_rel_err < 1e-12 or report.max_abs_err < 1e-12


# --------------------------------------------------------------------------
# The VAE workbooks
# --------------------------------------------------------------------------

@pytest.fixture
def verify_cli(run_main, monkeypatch):
    """Run `tracer verify` in process; returns (exit code, stdout, the VerifyReport)."""
    reports = []
    original = verify.verify_all

    def capturing(*args, **kwargs):
        reports.extend(original(*args, **kwargs))
        return reports[-len(args[0]):]

    monkeypatch.setattr(verify, "verify_all", capturing)

    def run(path, engine):
        code, out, err = run_main("verify", path, "--engine", engine)
        assert len(reports) == 1 and "Traceback" not in err
        return code, out, reports.pop()

    return run


@pytest.mark.parametrize("key", ["vae"])  # (`verified` recalculates it with the other shared workbooks)
@pytest.mark.parametrize("lang", ["en", "es"])
def test_vae_workbook_verifies(engine, verified, key, lang):
    report = verified(key, lang, engine)
    assert report.ok and report.n_formulas > 100_000
    assert report.errors == [] and report.n_mismatches == 0
    assert report.max_rel_err <= 1e-9
    says("checking.md", f"recalculates the default VAE's {report.n_formulas:,} formula cells")


def test_the_command_verifies_the_vae_workbook(vae_workbook, verify_cli):
    """`tracer verify` end to end on the real workbook (in IronCalc: in process, no LibreOffice start)."""
    code, out, report = verify_cli(vae_workbook("en"), "ironcalc")
    assert code == 0, out
    assert report.ok and out.splitlines()[-1] == "OK"
    assert f"vae_en.xlsx: {report.n_formulas:,} formula cells recalculated in IronCalc" in out


def sheet_xml_name(archive: zipfile.ZipFile, sheet: str) -> str:
    """The part name (xl/worksheets/sheetN.xml) of a sheet, from the workbook and its rels."""
    book = archive.read("xl/workbook.xml").decode("utf-8")
    rid = re.search(r'<sheet name="%s" sheetId="\d+" r:id="(rId\d+)"' % re.escape(sheet), book).group(1)
    rels = archive.read("xl/_rels/workbook.xml.rels").decode("utf-8")
    target = re.search(r'Id="%s"[^>]*Target="([^"]+)"|Target="([^"]+)"[^>]*Id="%s"' % (rid, rid), rels)
    target = target.group(1) or target.group(2)
    return target.lstrip("/") if target.startswith("/") else "xl/" + target


def rewrite_formula(src, dst, sheet, cell, change):
    """Copy the workbook src to dst with change(formula) in the <f> of one cell; the cached <v>
    is kept, so the stored value no longer matches the formula."""
    with zipfile.ZipFile(src) as archive:
        part = sheet_xml_name(archive, sheet)
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            if info.filename == part:
                xml = data.decode("utf-8")
                pattern = re.compile(r'(<c r="%s"[^>]*><f>)([^<]*)(</f><v>[^<]*</v></c>)' % cell)
                matches = pattern.findall(xml)
                assert len(matches) == 1, f"no single formula cell {cell} in {part}"
                old = matches[0][1]
                new = change(old)
                assert new != old
                xml = pattern.sub(lambda m: m.group(1) + new + m.group(3), xml)
                data = xml.encode("utf-8")
            out.writestr(info, data)
    return old, new


def test_a_wrong_formula_is_caught(engine, vae_workbook, vae_tape, vae_config, verify_cli, tmp_path):
    """Flip the sign of one SGD step of the last iteration in the encoder (nothing depends on
    those cells: the generation after training uses only the decoder)."""
    last = vae_config.iterations
    it = {t.name: t for t in vae_tape.tensors if t.iteration == last and t.phase != "after"}
    b1_new, grad = it["b1"], it["dL/db1"]
    j = int(np.argmax(np.abs(grad.value)))
    layout = Layout(vae_tape, Template("vae", "en"), {})
    sheet = f"Iteration {last}"
    cell = layout.place[id(b1_new)].addr(0, j, sheet)
    broken = tmp_path / "broken.xlsx"
    old, new = rewrite_formula(vae_workbook("en"), broken, sheet, cell, lambda f: f.replace("-lr*", "+lr*"))
    assert re.fullmatch(rf"'Iteration {last - 1}'![A-Z]+\d+-lr\*[A-Z]+\d+", old) and new.count("+lr*") == 1

    code, out, report = verify_cli(broken, engine)
    assert code == 1
    assert not report.ok and report.errors == []
    assert report.n_mismatches == 1
    (addr, stored, recalculated), = report.mismatches
    assert addr == f"'{sheet}'!{cell}" == report.worst
    assert stored == b1_new.value[0, j]
    p = b1_new.inputs[0].value[0, j]
    assert recalculated == pytest.approx(p + vae_config.lr * grad.value[0, j], rel=1e-12)
    assert "1 cells disagree" in out and addr in out and out.splitlines()[-1] == "FAILED"
