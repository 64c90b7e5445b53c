"""Excel's limits: what does not fit is laid out differently or refused with a clear message,
and a refused export leaves no file behind."""

from types import SimpleNamespace

import numpy as np
import pytest

from tracer.core import activations
from tracer.core.tape import Tape
from tracer.errors import TracerError
from tracer.models import vae
from tracer.render.layout import MAX_COLS, Layout
from tracer.render.template import Template
from tracer.render.xlsx import write_xlsx


def layout_of(tape, lang="en"):
    return Layout(tape, Template("vae", lang), {})


def fake(name, rows, cols):
    return SimpleNamespace(name=name, shape=(rows, cols))


def test_a_matrix_too_wide_for_a_sheet_is_turned():
    lay = layout_of(vae.trace(vae.Config(iterations=1, hidden=2)))
    p = lay._fit(fake("W", 3, MAX_COLS + 5), "Inputs", 10, 1)
    assert p.transposed and p.display == (MAX_COLS + 5, 3)
    p = lay._fit(fake("x", 1, MAX_COLS + 5), "Inputs", 10, 1)  # a long row vector: a column anyway
    assert p.transposed and p.display == (MAX_COLS + 5, 1)
    p = lay._fit(fake("W", 5, 300), "Inputs", 10, 1)  # wider than 20 columns and than tall: turned, to print
    assert p.transposed and p.display == (300, 5)
    p = lay._fit(fake("W", 30, 300), "Inputs", 10, 1)
    assert p.transposed and p.display == (300, 30)
    for rows, cols in ((5, 20), (30, 25), (1, 1)):  # narrow enough, or taller than wide: as it is
        p = lay._fit(fake("W", rows, cols), "Inputs", 10, 1)
        assert not p.transposed and p.display == (rows, cols)


def test_a_matrix_too_wide_both_ways_is_refused():
    lay = layout_of(vae.trace(vae.Config(iterations=1, hidden=2)))
    with pytest.raises(TracerError, match=r"too wide for a sheet \(16384 columns\)"):
        lay._fit(fake("huge", MAX_COLS + 1, MAX_COLS + 1), "Inputs", 10, 1)


def test_a_sheet_longer_than_excel_allows_is_refused():
    tape = Tape()
    tape.meta = {"model": "vae"}
    tape.constant("x", np.zeros((1_100_000, 16)), role="data")  # (in bands of 16 turned: more rows still)
    with pytest.raises(TracerError, match=r"more than 1048576 rows"):
        layout_of(tape)
    tape = Tape()
    tape.meta = {"model": "vae"}
    tape.constant("x", np.zeros((1, 1_100_000)), role="data")  # a long vector: 68,750 bands of 16
    assert layout_of(tape).place[id(tape.tensors[0])].display == (68_750 * 2 - 1, 16)


def test_a_long_sheet_name_is_refused():
    tape = vae.trace(vae.Config(iterations=1, hidden=2))
    tpl = Template("vae", "en")
    tpl.words = dict(tpl.words, iteration="A very long name for iteration number {k}")
    with pytest.raises(TracerError, match="longer than Excel's 31 characters"):
        Layout(tape, tpl, {})


def test_a_formula_over_8192_characters_is_refused_and_no_file_is_left(tmp_path, monkeypatch):
    tape = vae.trace(vae.Config(iterations=1, hidden=2))
    # make one op's formula absurdly long: the writer must stop with a clear message
    monkeypatch.setattr(activations.SIGMOID, "excel", "1/(1+EXP(-{0}))" + "+0*{0}" * 2000)
    target = tmp_path / "out.xlsx"
    with pytest.raises(TracerError, match="longer than Excel's 8192 characters"):
        write_xlsx(layout_of(tape), target)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_workbook_survives_a_refused_export(tmp_path, monkeypatch):
    target = tmp_path / "out.xlsx"
    target.write_bytes(b"the previous workbook")
    tape = vae.trace(vae.Config(iterations=1, hidden=2))
    monkeypatch.setattr(activations.SIGMOID, "excel", "{0}" + "+{0}" * 3000)
    with pytest.raises(TracerError):
        write_xlsx(layout_of(tape), target)
    assert target.read_bytes() == b"the previous workbook"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]
