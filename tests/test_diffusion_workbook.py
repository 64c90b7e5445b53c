"""The diffusion workbooks in LibreOffice and IronCalc: every formula recalculates to numpy (en and
es, SGD and Adam, with and without a warm-up), and a new β_end typed into the workbook recomputes
the schedule, every iteration and the reverse process exactly as a run made with it would (the
draws are recorded and do not depend on β)."""

from __future__ import annotations

import dataclasses

import openpyxl
import pytest

from tracer.engines import ENGINES
from tracer.models import diffusion
from tracer.render.export import export
from tracer.render.layout import Layout
from tracer.render.template import Template


@pytest.mark.parametrize("key, lang", [("diffusion", "en"), ("diffusion", "es"), ("diffusion-adam-warmup", "es"),
                                       ("diffusion-adam-warmup", "en")])
def test_workbooks_verify(engine, verified, run_book, key, lang):
    report = verified(key, lang, engine)
    assert report.ok, report.format()
    assert report.n_formulas > {"diffusion": 100_000}.get(key, 2_000)
    text = "\n".join(f for fs in run_book(key).formulas.values() for f in fs.values())
    assert "beta_start+(beta_end-beta_start)*" in text and "INDEX(" in text and "SQRT(" in text


def test_a_new_beta_end_in_the_spreadsheet_recomputes_everything(engine, tmp_path):
    """β_end from 0.6 to 0.45 in the workbook, recalculated: the last loss and the final x₀ of the
    reverse process are those of a run made with --beta-end 0.45, and differ from the stored ones."""
    cfg = diffusion.Config(iterations=2, hidden=8, size=4, steps=4, samples=2)
    tape = diffusion.trace(cfg)
    path = tmp_path / "book.xlsx"
    export(tape, dataclasses.asdict(cfg), path)
    layout = Layout(tape, Template("diffusion", "en"), dataclasses.asdict(cfg))
    named = {t.name: t for t in tape.tensors}
    p = layout.place[id(named["beta_end"])]
    book = openpyxl.load_workbook(path)
    book[p.sheet].cell(*(x + 1 for x in p.rc(0, 0))).value = 0.45
    book.save(tmp_path / "changed.xlsx")
    watched = [named["loss"], named["x_0"]]  # the last iteration's loss, the reverse chain's end
    wanted: dict = {}
    for t in watched:
        place = layout.place[id(t)]
        for i in range(t.shape[0]):
            for j in range(t.shape[1]):
                r, c = place.rc(i, j)
                wanted.setdefault(place.sheet, set()).add((r + 1, c + 1))
    cells = ENGINES[engine].recalculated_values(tmp_path / "changed.xlsx", wanted)
    again = {t.name: t.value for t in diffusion.trace(dataclasses.replace(cfg, beta_end=0.45)).tensors}
    for t in watched:
        place = layout.place[id(t)]
        got = [cells[(place.sheet, *(x + 1 for x in place.rc(i, j)))] for i in range(t.shape[0])
               for j in range(t.shape[1])]
        assert got == pytest.approx(again[t.name].ravel().tolist(), rel=1e-9, abs=1e-12), t.name
        assert got != pytest.approx(t.value.ravel().tolist(), rel=1e-6), t.name
