"""Transformer and generation workbooks in LibreOffice and IronCalc: every formula recalculates to numpy, and a
changed temperature in the spreadsheet re-samples the generated text exactly as a new run would
(the draws are recorded; the tokens are formulas of τ, the probabilities and the draws)."""

from __future__ import annotations

import dataclasses

import openpyxl
import pytest

from tracer.engines import ENGINES
from tracer.models import attention, transformer
from tracer.render.export import export
from tracer.render.layout import Layout
from tracer.render.template import Template

SMALL = {"corpus": "en", "context": 5, "generate": 4, "iterations": 2}  # the window slides


@pytest.mark.parametrize("key", ["transformer", "transformer-es-bpe-gelu-adam"])
def test_workbooks_verify(engine, verified, run_book, key):
    report = verified(key, engine=engine)
    assert report.ok, report.format()
    assert report.n_formulas > 10_000
    text = "\n".join(run_book(key).formulas["After training"].values())
    assert "SUMPRODUCT((" in text and "MATCH(MAX(" in text and "/tau_1" in text
    assert "INDEX(vocab," in text  # the generated ids read as tokens (strings, compared by verify too)


def cells_of(tape, config, lang="en"):
    """Where each tensor's cell (i, j) sits: {(iteration, name): (sheet, row, col) per element}."""
    layout = Layout(tape, Template(tape.meta["model"], lang), config)
    return layout, {(t.iteration, t.name): (layout.place[id(t)], t) for t in tape.tensors}


@pytest.mark.parametrize("model", [transformer, attention])
def test_a_new_temperature_in_the_spreadsheet_resamples(engine, model, tmp_path):
    """Set τ₁ from 0.5 to 3 in the workbook, recalculate (LibreOffice, IronCalc): the sampled tokens
    are those of a run made with --temperature 3,1,2 (same seed, so the same draws), and differ
    from the stored ones (else the check could not fail)."""
    cfg = model.Config(**SMALL, temperature="0.5,1,2")
    tape = model.trace(cfg)
    path = tmp_path / "book.xlsx"
    export(tape, dataclasses.asdict(cfg), path)
    layout, where = cells_of(tape, dataclasses.asdict(cfg))
    tau = next(t for t in tape.tensors if t.name == "tau1")
    p = layout.place[id(tau)]
    book = openpyxl.load_workbook(path)
    book[p.sheet].cell(*(x + 1 for x in p.rc(0, 0))).value = 3.0
    book.save(tmp_path / "changed.xlsx")
    wanted = {}
    for t in tape.tensors:
        if t.name.startswith("generated ("):  # each id, and its token beside it
            place = layout.place[id(t)]
            for i in range(t.shape[0]):
                r, c = place.rc(i, 0)
                wanted.setdefault(place.sheet, set()).update({(r + 1, c + 1), (r + 1, c + 2)})
    cells = ENGINES[engine].recalculated_values(tmp_path / "changed.xlsx", wanted)

    def read(t, beside=0):
        place = layout.place[id(t)]
        return [cells[(place.sheet, place.rc(i, 0)[0] + 1, place.rc(i, 0)[1] + 1 + beside)] for i in range(t.shape[0])]

    again = model.trace(dataclasses.replace(cfg, temperature="3,1,2"))
    before = next(t for t in tape.tensors if t.name == "generated (τ1)")
    after = next(t for t in again.tensors if t.name == "generated (τ1)")
    recalculated = read(before)
    assert recalculated == list(after.value[:, 0])
    assert recalculated != list(before.value[:, 0])
    words = read(before, beside=1)  # beside the ids, their tokens follow: INDEX(vocab, id + 1)
    assert words == [tape.meta["tokenized"].vocab[int(i)] for i in after.value[:, 0]]
    for name in ("generated (greedy)", "generated (τ2)"):  # the other chains do not move
        t = next(t for t in tape.tensors if t.name == name)
        assert read(t) == list(t.value[:, 0])


def test_the_command_prints_the_generated_texts(run_main, tmp_path):
    code, out, _ = run_main("run", "transformer", "--prompt", "the cat", "--generate", "3",
                            "--temperature", "0.7", "-o", tmp_path / "t.xlsx")
    assert code == 0
    lines = [line.strip() for line in out.splitlines() if "generated" in line]
    assert len(lines) == 2 and lines[0].startswith("generated (greedy): the cat ")
    assert lines[1].startswith("generated (sampled at temperature 0.7): the cat ")
    assert all(len(line.split(": ", 1)[1].split()) == 5 for line in lines)  # 2 + 3 words


@pytest.mark.parametrize("args, message", [
    (["--temperature", "0.5,hot"], "--temperature must be positive numbers"),
    (["--temperature", "0,1"], "--temperature must be positive numbers"),
    (["--prompt", "the zebra"], "--prompt: the token 'zebra' is not in the vocabulary"),
    (["--prompt", "the dog eats food the cat eats food"], "at most --context 5 fit"),
    (["--generate", "-1"], "--generate must be at least 0"),
])
def test_bad_generation_options_are_one_line_errors(refused, tmp_path, args, message):
    out = tmp_path / "t.xlsx"
    assert message in refused("run", "transformer", "--context", "5", *args, "-o", out)
    assert not out.exists()


def test_no_generation(run_main, tmp_path):
    code, out, _ = run_main("run", "attention", "--generate", "0", "-o", tmp_path / "a.json")
    assert code == 0 and "generated" not in out
