"""The workbook after a --warmup: the Warm-up sheet's losses and the Overview's chart (warm-up
values, then the traced formulas), the Inputs sheet's label, the Pictures sheet's snapshots (values) and the minima
and maxima of the self-scaled pictures, the VAE's generation after training; all verified in
LibreOffice."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest

from tracer.models import training

KEYS = ["vae-batch-warmup", "gan-warmup-adam-upscale"]


@pytest.mark.parametrize("key", KEYS)
def test_workbook_verifies_in_libreoffice(soffice, verified, key):
    report = verified(key)
    assert report.ok, report.format()
    assert report.n_formulas > 10_000


def loss_table(book, sheet):
    """(header row, {row: [cells of columns A…]}) of a sheet's loss table (its header: Iteration or Step)."""
    consts, forms = book.constants[sheet], book.formulas[sheet]
    header = next(r for (r, c), v in consts.items() if c == 1 and v in ("Iteration", "Step"))
    rows = {}
    for (r, c) in list(consts) + list(forms):
        if r > header:
            rows.setdefault(r, {})[c] = forms.get((r, c), consts.get((r, c)))
    return header, rows


def test_the_warmup_sheet_lists_every_step_and_the_chart_draws_them(run_book, run_tape, run_workbook):
    """The warm-up's losses on a sheet of their own (values, six decimals), then the traced
    iterations (formulas): the overview's chart reads them all; the overview's own table holds the
    traced iterations only, and says where the warm-up is."""
    from openpyxl import load_workbook

    _, tape = run_tape("vae-batch-warmup")
    book = run_book("vae-batch-warmup")
    header, rows = loss_table(book, "Warm-up")
    steps = [rows[r] for r in sorted(rows)]
    assert [row[1] for row in steps] == list(range(1, 33))
    series = tape.meta["warmup"]["series"]
    for k, row in enumerate(steps[:30]):  # values: recon, KL, L of each warm-up step
        assert [row[c] for c in (2, 3, 4)] == [float(series[n][k][0, 0]) for n in ("recon", "kl", "loss")]
    for k, row in zip((31, 32), steps[30:]):  # formulas pointing at the traced iterations' cells
        assert all(re.fullmatch(rf"'Iteration {k}'![A-Z]+\d+", row[c]) for c in (2, 3, 4)), row
    ws = load_workbook(run_workbook("vae-batch-warmup"))["Warm-up"]
    assert {ws.cell(header + 1 + k, c).number_format for k in (0, 29, 30) for c in (2, 3, 4)} == {"0.000000"}
    # the chart's series run over all 32 rows of the warm-up sheet
    with zipfile.ZipFile(run_workbook("vae-batch-warmup")) as z:
        chart = z.read("xl/charts/chart1.xml").decode()
    first, last = header + 1, header + 32
    assert f"'Warm-up'!$B${first}:$B${last}" in chart and "warm-up" in chart
    _, overview = loss_table(book, "Overview")
    traced = [row for row in overview.values() if isinstance(row.get(1), (int, float))
              and all(str(row.get(c)).startswith("'Iteration") for c in (2, 3, 4))]
    assert [row[1] for row in traced] == [31, 32]
    assert any("30 warm-up steps" in v and "Warm-up" in v for v in book.constants["Overview"].values()
               if isinstance(v, str))
    assert "Iteration 31" in book.sheetnames and "Iteration 32" in book.sheetnames


def test_the_inputs_sheet_says_where_its_parameters_come_from(run_book):
    book = run_book("vae-batch-warmup")
    texts = [v for v in book.constants["Inputs"].values() if isinstance(v, str)]
    cells = book.constants["Inputs"]
    start = next(r for (r, c), v in cells.items() if isinstance(v, str) and v.startswith("These parameters"))
    note = " ".join(cells[(r, 2)] for r in range(start, start + 4) if (r, 2) in cells)  # the lines of the note
    assert "30 warm-up steps" in note and "--seed 0" in note and "--batch 2" in note
    assert sum("the value reached by the warm-up steps" in t for t in texts) == 10  # the 10 parameters


def picture_labels(book):
    return {(r, c): v for (r, c), v in book.constants["Pictures"].items() if isinstance(v, str)}


def test_snapshots_are_labelled_values(run_book, run_tape):
    _, tape = run_tape("gan-warmup-adam-upscale")
    book = run_book("gan-warmup-adam-upscale")
    labels = picture_labels(book)
    captions = [m for v in labels.values() if (m := re.fullmatch(r"warm-up step (\d+)  #([12])", v))]
    assert sorted({int(m[1]) for m in captions}) == training.snapshot_steps(12)
    assert len(captions) == 2 * 2 * len(training.snapshot_steps(12))  # x_fake and x_fake upscaled, 2 of each
    numbers = [v for v in book.constants["Pictures"].values() if isinstance(v, float)]
    per_snapshot = 2 * 784 + 2 * 56 * 56  # a batch of 2: x_fake and x_fake upscaled
    assert len(numbers) == 6 * per_snapshot
    last = dict(tape.meta["warmup"]["snapshots"])[12]["x_fake"]
    assert set(last.ravel().tolist()) <= set(numbers)


def test_self_scaled_pictures_show_their_min_and_max(run_book, run_tape):
    _, tape = run_tape("vae-batch-warmup")
    book = run_book("vae-batch-warmup")
    forms = book.formulas["Pictures"]
    mins = {rc: f for rc, f in forms.items() if f.startswith("MIN(")}
    maxs = {rc: f for rc, f in forms.items() if f.startswith("MAX(")}
    # x̂ stretched, ∂L/∂x̂ and the error x̂ − x of 2 digits in 2 iterations
    assert len(mins) == len(maxs) == 3 * 2 * 2
    x_hat = next(t for t in tape.tensors if t.name == "x_hat" and t.iteration == 31)
    lows = sorted(book.cached["Pictures"][rc] for rc in mins)
    assert x_hat.value[0].min() in lows and x_hat.value[1].min() in lows
    # of the tensor's row: one range, or one per band (a batch of 784 columns, in bands of 16)
    one = r"'Iteration 3[12]'![A-Z]+\d+:[A-Z]+\d+"
    assert all(re.fullmatch(rf"MIN\({one}(,{one})*\)", f) for f in mins.values())
    labels = picture_labels(book).values()
    assert any("stretched" in v for v in labels) and any("0 white, 1 black" in v for v in labels)


def test_the_vae_generates_after_training(run_book, run_tape):
    _, tape = run_tape("vae-batch-warmup")
    book = run_book("vae-batch-warmup")
    assert "After training" in book.sheetnames
    grid = next(t for t in tape.tensors if t.name == "[grid] x_hat")
    assert grid.shape == (4, 784)
    pointing = [f for f in book.formulas["Pictures"].values() if f.startswith("'After training'!")]
    assert len(pointing) == 4 * 784 + 784  # the grid and the sample
    cached = np.array(sorted(book.cached["After training"].values()), dtype=float)
    assert np.isin(grid.value.ravel(), cached).all()
