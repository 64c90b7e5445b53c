"""The tokenization sheet: text → tokens → ids, the vocabulary and, for BPE, every merge with the
pair counts that chose it, read back from the written workbook."""

from __future__ import annotations

import numpy as np
import pytest
from openpyxl import load_workbook

from tracer.core.tape import Tape
from tracer.data import text
from tracer.render.export import export


def tiny_tape(tok):
    """A tape with the token ids as data and one trivial op, carrying the tokenization."""
    tape = Tape()
    tape.meta = {"model": "vae", "tokenized": tok}
    ids = tape.constant("x", np.array([tok.ids], dtype=float), role="data")
    tape.iteration = 1
    from tracer.core.op import COPY

    tape.apply(COPY, ids, name="h")
    return tape


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
@pytest.mark.parametrize("lang", ["en", "es"])
def test_tokens_sheet_shows_text_tokens_ids_and_vocabulary(tmp_path, kind, lang):
    tok = text.tokenize("the dog eats\nthe cat eats\nthe dog sleeps", kind, merges=4, boundary=False)
    path = tmp_path / "t.xlsx"
    export(tiny_tape(tok), {}, path, lang)
    wb = load_workbook(path)
    assert wb.sheetnames[:2] == ["Overview" if lang == "en" else "Resumen", "Tokens"]
    rows = [list(r) for r in wb["Tokens"].iter_rows(values_only=True)]
    wb.close()
    cells = [[v for v in r if v is not None] for r in rows]
    for n, ids in enumerate(tok.sentences):
        at = next(k for k, r in enumerate(cells) if r and r[0] in (f"sentence {n + 1}", f"frase {n + 1}"))
        assert cells[at][1:] == tok.decode(ids)
        assert cells[at + 1][1:] == ids and cells[at + 1][0] == "ids"
    vocab_rows = [r for r in cells if len(r) == 2 and isinstance(r[0], (int, float)) and isinstance(r[1], str)]
    assert [r[1] for r in vocab_rows][:len(tok.vocab)] == tok.vocab
    assert [r[0] for r in vocab_rows][:len(tok.vocab)] == list(range(len(tok.vocab)))
    merges = [r for r in cells if len(r) == 5 and isinstance(r[0], (int, float)) and isinstance(r[2], (int, float))]
    if kind == "bpe":
        assert [(r[1], r[2], r[3]) for r in merges] == [(f"{m.pair[0]} + {m.pair[1]}", m.count, m.token)
                                                        for m in tok.merges]
        assert len(merges) == 4
    else:
        assert merges == []


def test_no_tokens_sheet_without_text():
    from tracer.models import vae
    from tracer.render.layout import Layout
    from tracer.render.template import Template

    lay = Layout(vae.trace(vae.Config(hidden=2, iterations=1)), Template("vae", "en"), {})
    assert lay.tokens is None and "Tokens" not in [s.name for s in lay.sheets]


@pytest.mark.parametrize("model", ["skipgram", "transformer"])
def test_rows_and_columns_of_the_vocabulary_are_labelled_with_their_tokens(default_workbook, model):
    """E's rows (and its gradient's, and each update's), the columns of Z and P, and every column
    of ids have their tokens where the sheet would number them 1 … V."""
    from tracer import api
    from tracer.render.layout import Block, Layout
    from tracer.render.template import Template

    run = api.run(model)
    vocab = list(run.tape.meta["tokenized"].vocab)
    layout = Layout(run.tape, Template.of(run.tape), run.settings)
    wb = load_workbook(default_workbook(model), read_only=True, data_only=True)
    seen = set()
    for sheet in layout.sheets:
        blocks = [b for b in sheet.parts if isinstance(b, Block) and (b.row_labels or b.col_labels or b.tokens)]
        if not blocks:
            continue
        ws = wb[sheet.name]
        rows = {r: row for r, row in enumerate(ws.iter_rows(values_only=True))}
        for b in blocks:
            p = b.place
            n_rows, n_cols = p.display
            if b.row_labels:
                assert [rows[p.row0 + k][0] for k in range(n_rows)] == vocab, b.tensor.name
            if b.col_labels:
                assert list(rows[p.row0 - 1][1:1 + n_cols]) == vocab, b.tensor.name
            if b.tokens:
                assert [rows[p.row0 + k][1 + n_cols] for k in range(n_rows)] == b.tokens
            seen.add(b.tensor.name.split(" ")[-1] if "[" in b.tensor.name else b.tensor.name)
    wb.close()
    if model == "transformer":
        assert {"E", "dL/dE", "Z", "P", "W_head", "ids", "z", "token", "text", "generated (greedy)"} <= seen
    else:
        assert {"E_in", "E_out", "dL/dE_in", "s", "p", "cos", "nearest", "ids_c"} <= seen


def test_the_generated_texts_come_first(default_workbook):
    """After training opens with the generated texts, token by token, as the command prints them."""
    from tracer import api

    run = api.run("transformer")
    wb = load_workbook(default_workbook("transformer"), read_only=True, data_only=True)
    rows = [[v for v in row if v is not None] for row in wb["After training"].iter_rows(max_row=14, values_only=True)]
    wb.close()
    from tracer.render.layout import FIRST_ROW

    first = FIRST_ROW + 1  # below the heading
    texts = [" ".join(r[1:]) for r in rows[first:first + len(run.generated)]]
    assert texts == [" ".join(text.split()) for _, text in run.generated]
    assert [r[0] for r in rows[first:first + len(run.generated)]] == ["greedy", "sampled τ1", "sampled τ2", "sampled τ3"]
