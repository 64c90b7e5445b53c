"""The rnn, lstm and bert workbooks: every formula recalculates in LibreOffice to numpy; the
Overview's vanishing-gradient table and log chart point at the norms; the Pictures sheets show
every attention matrix (causal triangle, bidirectional square) and the states over time, labelled
with tokens; a workbook with nothing to picture has no Pictures sheet; a mask rate changed in the
spreadsheet masks other positions exactly as a new run does."""

from __future__ import annotations

import dataclasses
import re
import zipfile

import numpy as np
import openpyxl
import pytest

from tracer.engines.libreoffice import recalculate
from tracer.models import bert
from tracer.render.export import export
from tracer.render.layout import Layout, Picture
from tracer.render.template import Template

KEYS = [("rnn", "en"), ("lstm-es-bpe-adam", "es"), ("bert", "en"), ("bert-es-char-adam", "es")]


@pytest.mark.parametrize("key, lang", KEYS)
def test_workbooks_verify_in_libreoffice(soffice, verified, key, lang):
    report = verified(key, lang)
    assert report.ok, report.format()
    assert report.n_formulas > 5_000


def overview(book, lang):
    return book.formulas[Template("rnn", lang).t("overview")], book.constants[Template("rnn", lang).t("overview")]


@pytest.mark.parametrize("key, lang", [("rnn", "en"), ("lstm-es-bpe-adam", "es")])
def test_the_overview_charts_the_vanishing_gradient(run_tape, run_book, run_workbook, key, lang):
    cfg, tape = run_tape(key)
    book = run_book(key, lang)
    formulas, constants = overview(book, lang)
    tpl = Template(tape.meta["model"], lang)
    assert tpl.model["curve"][lang] in constants.values()
    layout = Layout(tape, tpl, dataclasses.asdict(cfg))
    norms = [t for t in tape.tensors if t.name == "|dL_T/dh|"]
    assert len(norms) == cfg.iterations
    refs = {f for f in formulas.values()}
    for t in norms:  # every norm of every iteration, pointed at from the Overview
        for i in range(cfg.context):
            assert "'" + layout.place[id(t)].addr(i, 0, "Overview") in refs or \
                layout.place[id(t)].addr(i, 0, "Overview") in refs
    with zipfile.ZipFile(run_workbook(key, lang)) as archive:
        charts = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 2 and sum('<c:logBase val="10"/>' in c for c in charts) == 1


def pictures(tape, cfg, lang="en"):
    layout = Layout(tape, Template(tape.meta["model"], lang), dataclasses.asdict(cfg))
    return layout, [im for p in layout.pictures.parts if isinstance(p, Picture) for im in p.images]


@pytest.mark.parametrize("key, heads", [("transformer", 2), ("attention", 1), ("bert", 2), ("bert-es-char-adam", 4)])
def test_every_attention_matrix_is_a_labelled_heatmap(run_tape, key, heads):
    cfg, tape = run_tape(key)
    _, images = pictures(tape, cfg)
    assert len(images) == cfg.iterations * heads
    shown = {id(row[0][0]) for im in images for row in im.pixels}
    A = [t for t in tape.tensors if t.name.endswith("A") and t.phase == "forward" and t.shape[0] == t.shape[1]
         and not t.name.startswith("[eval]")]  # bert's evaluation pass is not pictured
    assert {id(t) for t in A} == shown and len(A) == cfg.iterations * heads
    ids = "ids_in" if key.startswith("bert") else "ids"
    for im in images:
        A_t = im.pixels[0][0][0]
        # BERT's weights, spread over every position, shaded by their own range (its minimum and maximum stated)
        assert im.scale == ("attention_auto" if key.startswith("bert") else "attention") and (im.height, im.width) == A_t.shape
        assert im.self_scaled == key.startswith("bert")
        assert [t.name for t, _ in im.left] == [ids] * A_t.shape[0] and im.top == im.left
        assert all(t.iteration in (0, A_t.iteration) for t, _ in im.left)
        causal = not key.startswith("bert")
        upper = A_t.value[0, 1:]
        assert (upper == 0).all() if causal else (upper > 0).all()  # the triangle, or the full square


@pytest.mark.parametrize("key, states", [("rnn", ("h",)), ("lstm-es-bpe-adam", ("h", "c"))])
def test_the_states_over_time_are_heatmaps(run_tape, run_book, key, states):
    cfg, tape = run_tape(key)
    _, images = pictures(tape, cfg)
    assert len(images) == cfg.iterations * len(states)
    for im in images:
        rows = [row[0][0] for row in im.pixels]
        assert [t.name for t in rows] in ([f"{s}_{t}" for t in range(1, cfg.context + 1)] for s in states)
        assert im.scale == "diverging" and im.top == [str(j + 1) for j in range(cfg.hidden)]
    book = run_book(key, "en")
    pics = book.formulas["Pictures"]
    assert sum(f.startswith("INDEX(vocab,") for f in pics.values()) == sum(im.height for im in images)


def test_no_workbook_has_an_empty_pictures_sheet(run_book):
    for key in ("skipgram", "mlp"):
        assert "Pictures" not in run_book(key).sheetnames
        assert not any("Pictures" in str(v) for v in run_book(key).constants["Overview"].values())
    for key in ("transformer", "rnn", "gan"):
        assert run_book(key).sheetnames[-1] == "Pictures"


def test_a_new_mask_rate_in_the_spreadsheet_masks_like_a_new_run(soffice, tmp_path):
    """Set the mask rate from 0.15 to 0.6 in the workbook: LibreOffice's masked ids are those of a
    run made with --mask-rate 0.6 (the same draws), and differ from the stored ones."""
    cfg = bert.Config(corpus="en", iterations=1, layers=1, d_model=4, heads=1, d_ff=4)
    tape = bert.trace(cfg)
    path = tmp_path / "b.xlsx"
    export(tape, dataclasses.asdict(cfg), path)
    layout = Layout(tape, Template("bert", "en"), dataclasses.asdict(cfg))
    rate = next(t for t in tape.tensors if t.name == "mask_rate")
    p = layout.place[id(rate)]
    book = openpyxl.load_workbook(path)
    book[p.sheet].cell(*(x + 1 for x in p.rc(0, 0))).value = 0.6
    book.save(tmp_path / "changed.xlsx")
    values = openpyxl.load_workbook(recalculate(tmp_path / "changed.xlsx", tmp_path / "recalc"), data_only=True)
    again = bert.trace(dataclasses.replace(cfg, mask_rate=0.6))
    for name in ("m", "ids_in", "loss"):
        t = next(u for u in tape.tensors if u.name == name and u.iteration == 1)
        want = next(u for u in again.tensors if u.name == name and u.iteration == 1).value
        place = layout.place[id(t)]
        got = [[values[place.sheet].cell(*(x + 1 for x in place.rc(i, j))).value for j in range(t.shape[1])]
               for i in range(t.shape[0])]
        np.testing.assert_allclose(np.array(got, dtype=float), want, rtol=1e-9, err_msg=name)
        if name == "m":
            assert want.sum() > t.value.sum()  # more positions masked: the check can fail


def test_the_documents_of_the_new_models(tmp_path, run_tape):
    for key in ("rnn", "bert"):
        cfg, tape = run_tape(key)
        path = tmp_path / f"{key}.md"
        export(tape, dataclasses.asdict(cfg), path, "es")
        text = path.read_text("utf-8")
        assert Template(tape.meta["model"], "es").section("backward").split(":")[0] in text
        assert re.search(r"\| 4 \| \d", text)
