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
