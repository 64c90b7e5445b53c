"""Skip-gram: every iteration against an independent numpy word2vec, gradients against finite
differences, the loss falls, words that share contexts move closer, the workbooks recalculate
in LibreOffice, the tokens sheet is there and bad input is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.data import text
from tracer.models import skipgram


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def reference(cfg, E_in, E_out):
    """Full-softmax skip-gram in plain numpy, written from the equations: yields (loss, E_in, E_out)."""
    lines = text.split_sentences(text.load_text(None, cfg.corpus))[:cfg.sentences]
    tok = text.tokenize("\n".join(lines), "word", boundary=False)
    centers, contexts = [], []
    for s in tok.sentences:
        for p in range(len(s)):
            for q in range(len(s)):
                if q != p and abs(q - p) <= cfg.window:
                    centers.append(s[p])
                    contexts.append(s[q])
    c, o = np.array(centers), np.array(contexts)
    for _ in range(cfg.iterations):
        h = E_in[c]
        z = h @ E_out.T
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(o)), o]))
        dz = p.copy()
        dz[np.arange(len(o)), o] -= 1
        dz /= len(o)
        d_in = np.zeros_like(E_in)
        np.add.at(d_in, c, dz @ E_out)
        d_out = dz.T @ h
        E_in, E_out = E_in - cfg.lr * d_in, E_out - cfg.lr * d_out
        yield loss, E_in, E_out


@pytest.mark.parametrize("options", [{}, {"corpus": "es", "window": 1, "sentences": 6, "lr": 1.0}],
                         ids=["defaults", "spanish window 1"])
def test_matches_an_independent_numpy_skipgram(options):
    cfg = skipgram.Config(**{"corpus": "en", **options})
    tape = skipgram.trace(cfg)
    start = of(tape, 0)
    for k, (loss, E_in, E_out) in enumerate(reference(cfg, start["E_in"].value, start["E_out"].value), start=1):
        it = of(tape, k)
        assert it["loss"].value[0, 0] == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(it["E_in"].value, E_in, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(it["E_out"].value, E_out, rtol=1e-11, atol=1e-14)


def test_loss_falls_and_shared_contexts_move_closer():
    for corpus, (a, b) in (("en", ("dog", "cat")), ("es", ("perro", "gato"))):
        for seed in range(3):
            cfg = skipgram.Config(corpus=corpus, seed=seed)
            tape = skipgram.trace(cfg)
            losses = [float(of(tape, k)["loss"].value[0, 0]) for k in range(1, cfg.iterations + 1)]
            assert all(y < x for x, y in zip(losses, losses[1:])), losses
            last, idx = of(tape, cfg.iterations), tape.meta["tokenized"].index
            before = last["cos_before"].value[idx[a], idx[b]]
            after = last["cos"].value[idx[a], idx[b]]
            assert after > before + 0.1, (corpus, seed, before, after)


def test_similarity_and_neighbours_are_right():
    tape = skipgram.trace(skipgram.Config(corpus="en"))
    last = of(tape, 8)
    E = last["E_in"].value
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    np.testing.assert_allclose(last["cos"].value, unit @ unit.T, rtol=1e-12)
    cos = last["cos"].value
    for i, row in enumerate(last["nearest"].value.astype(int)):
        others = [j for j in np.argsort(-cos[i]) if j != i]
        assert list(row) == others[:row.size]


@pytest.mark.parametrize("options", [{}, {"negative": 2}, {"negative": 1, "optimizer": "adam", "tokenizer": "char",
                                                            "sentences": 1, "iterations": 2}],
                         ids=["softmax", "negative sampling", "char adam"])
def test_gradcheck_every_parameter(options):
    cfg = skipgram.Config(**{"corpus": "en", "iterations": 3, **options})
    tape = skipgram.trace(cfg)
    for k in (1, cfg.iterations):
        (report,) = gradcheck(tape, k)
        assert [c.name for c in report.checks] == ["E_in", "E_out"]
        assert all(c.checked == c.size for c in report.checks)
        assert report.ok, "\n".join(report.lines())


def test_negative_draws_are_recorded_constants():
    tape = skipgram.trace(skipgram.Config(corpus="en", negative=3, iterations=2))
    it = of(tape, 2)
    for n in (1, 2, 3):
        draws = it[f"neg{n}"]
        assert draws.op is None and draws.attrs["role"] == "draw"
        assert draws.shape == it["ids_c"].shape
    assert it["loss"].inputs[1].name == "L_neg3"


@pytest.mark.parametrize("key", ["skipgram", "skipgram-neg-bpe-adam"])
def test_workbooks_verify(engine, verified, run_book, key):
    report = verified(key, engine=engine)
    assert report.ok, "\n".join(report.lines(limit=20))
    book = run_book(key)
    assert "Tokens" in book.sheetnames
    assert book.sheetnames.index("Tokens") == 1


@pytest.mark.parametrize("args, words", [
    (["--window", "0"], ["--window must be at least 1"]),
    (["--tokenizer", "morse"], ["--tokenizer"]),
    (["--negative", "-1"], ["--negative must be at least 0"]),
])
def test_bad_options_are_one_line_errors(run_main, tmp_path, args, words):
    out = tmp_path / "s.xlsx"
    code, _, err = run_main("run", "skipgram", *args, "-o", out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, err
    assert not out.exists()


@pytest.mark.parametrize("content, words", [(b"", "empty"), (b"\x00\x01\x02", "binary"),
                                             (b"one\n", "at least 2"), (b"one\ntwo\n", "two or more tokens")])
def test_bad_text_files_are_one_line_errors(run_main, tmp_path, content, words):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    code, _, err = run_main("run", "skipgram", "--text", path, "-o", tmp_path / "s.xlsx")
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err


def test_corpus_follows_the_workbook_language(run_main, tmp_path):
    code, out, err = run_main("run", "skipgram", "--lang", "es", "--iterations", 1, "-o", tmp_path / "s.json")
    assert code == 0, err
    import json

    data = json.loads((tmp_path / "s.json").read_text("utf-8"))
    assert data["config"]["corpus"] == "es"
