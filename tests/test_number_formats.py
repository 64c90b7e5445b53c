"""Numbers that never hide: no number other than 0 shows as 0 (a value of 6e-8 in six decimals
would), and ids, counts, positions and iteration numbers show as whole numbers.

Every number format of every cell of the default workbook of every registered model is read
from the file; LibreOffice renders the formats with positive, negative, tiny and zero values."""

from __future__ import annotations

import dataclasses
import re

import pytest
import xlsxwriter
from conftest import ops_template
from print_pages import pages, to_pdf
from xlsx_parts import NS, read_parts

from tracer import api
from tracer.core.op import COPY
from tracer.core.tape import Tape
from tracer.render.layout import Layout
from tracer.render.template import Template
from tracer.render.xlsx import NUMBER, TINY, write_xlsx

SAFE = ("General", ";;;")  # General turns to scientific by itself; ;;; shows nothing (the pixels)


def tiny_rule(rule, fmt) -> bool:
    """The conditional format that shows every |x| ≤ TINY in scientific notation, both signs."""
    bounds = sorted(float(f.text) for f in rule.iter(f"{{{NS['m']}}}formula"))
    sections = (fmt or "").split(";")
    return (rule.get("type") == "cellIs" and rule.get("operator") == "between" and bounds == [-TINY, TINY]
            and len(sections) >= 2 and all("E+" in s for s in sections[:2]))


def hiding_cells(sheet) -> list:
    """The numeric cells of a sheet whose format could show a non-zero number as 0."""
    bad = []
    for (r, c), (kind, _, fmt) in sheet.cells.items():
        if kind not in ("number", "formula") or fmt in SAFE:
            continue
        if fmt != NUMBER or not sheet.covered(r, c, tiny_rule):
            bad.append((sheet.name, r, c, fmt))
    return bad


@pytest.mark.parametrize("model", list(api.MODELS))
def test_no_number_of_a_default_workbook_can_show_as_zero(default_workbook, model):
    parts = read_parts(default_workbook(model))
    numbers = sum(kind in ("number", "formula") for s in parts for kind, _, _ in s.cells.values())
    assert numbers > 100
    assert [bad for s in parts for bad in hiding_cells(s)] == []


@pytest.mark.parametrize("model", list(api.MODELS))
def test_ids_counts_and_iterations_show_as_whole_numbers(default_workbook, model):
    """Every tensor of whole numbers by construction (ids, tokens, positions, counts) and the
    iteration column of the overview's loss table are in General: 3, not 3.000000."""
    r = api.run(model)
    layout = Layout(r.tape, Template.of(r.tape), r.settings)
    parts = {s.name: s for s in read_parts(default_workbook(model))}
    whole = [b for s in layout.sheets for b in s.parts if getattr(b, "whole", False)]
    for b in whole:
        p = b.place
        for i in range(p.rows):
            for j in range(p.cols):
                row, col = p.rc(i, j)
                assert parts[p.sheet].format_at(row + 1, col + 1) == "General", (b.tensor.name, i, j)
    if r.tape.meta.get("tokenized"):
        assert {"ids"} & {b.tensor.name for b in whole} or {"ids_c"} & {b.tensor.name for b in whole}
    overview = parts[layout.overview.name]
    heading = next(rc for rc, (kind, v, _) in overview.cells.items() if v == layout.tpl.t("iteration_col"))
    iterations = [overview.cells[(heading[0] + k, heading[1])] for k in range(1, r.config.iterations + 1)]
    assert [(kind, v, fmt) for kind, v, fmt in iterations] == [("number", float(k), "General")
                                                            for k in range(1, r.config.iterations + 1)]


def test_adam_step_counter_is_whole(run_workbook, run_tape):
    cfg, tape = run_tape("vae-adam")
    layout = Layout(tape, Template.of(tape), dataclasses.asdict(cfg))
    parts = {s.name: s for s in read_parts(run_workbook("vae-adam"))}
    counters = [t for t in tape.tensors if t.name == "t"]
    assert len(counters) == cfg.iterations + 1
    for t in counters:
        row, col = layout.place[id(t)].rc(0, 0)
        assert parts[layout.place[id(t)].sheet].format_at(row + 1, col + 1) == "General"


def test_the_check_finds_a_format_that_hides(tmp_path):
    """Six decimals without the conditional format, or a whole-number format on a real number:
    the check reports both cells."""
    path = tmp_path / "hiding.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("S")
    ws.write_number(0, 0, 6e-8, wb.add_format({"num_format": NUMBER}))
    ws.write_number(1, 0, 0.4, wb.add_format({"num_format": "0"}))
    ws.write_number(2, 0, 0.4, wb.add_format({"num_format": "General"}))
    wb.close()
    (sheet,) = read_parts(path)
    assert hiding_cells(sheet) == [("S", 1, 1, NUMBER), ("S", 2, 1, "0")]


# --- what LibreOffice shows ----------------------------------------------------------------------

PROBES = [0.5, -0.5, 6.06e-8, -6.06e-8, 0.0, -543.391, 5e-5, -0.000123456]
SHOWN = ["0.500000", "-0.500000", "6.06E-08", "-6.06E-08", "0.000000", "-543.391000", "5.00E-05", "-0.000123"]


def probe_workbook(path):
    """Constants and formulas (copies) of the probe values, plus whole-number ids, written by
    tracer's own writer."""
    tape = Tape()
    tape.meta = {"model": "vae"}
    x = tape.constant("x", [PROBES], role="data")
    ids = tape.constant("ids", [[3.0], [0.0], [12.0]], role="data", integer=True)
    tape.iteration = 1
    tape.at("forward")
    tape.apply(COPY, x, name="h")
    tape.apply(COPY, ids, name="z")
    write_xlsx(Layout(tape, ops_template("en", "Probe"), {}), path)


def test_libreoffice_shows_every_probe_value(soffice, tmp_path):
    path = tmp_path / "probe.xlsx"
    probe_workbook(path)
    text = "\n".join(pages(to_pdf(path, tmp_path)))
    shown = re.findall(r"-?\d+\.\d+(?:E[+-]\d+)?|(?<![\d.])\d+(?![\d.])", text)
    for want in SHOWN:  # each probe twice: the constant and its formula
        assert shown.count(want) >= 2, (want, shown)
    for whole in ("3", "12"):
        assert shown.count(whole) >= 2, (whole, shown)
    assert "3.000000" not in shown and "0.000000" in shown
