"""Causal self-attention: the loss of every iteration against an independent numpy forward pass,
every gradient element against finite differences, the loss falls, the mask holds, the
workbooks recalculate in LibreOffice."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.models import attention
from tracer.models.next_token import sequence

PARAMS = ["E", "W_q", "W_k", "W_v", "W_o", "b_o"]


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def numpy_loss(p, inputs, targets, d_k):
    """The layer written directly from its equations (loops where the math has sums)."""
    T, d = len(inputs), p["E"].shape[1]
    pe = np.array([[np.sin(t / 10000 ** (j / d)) if j % 2 == 0 else np.cos(t / 10000 ** ((j - 1) / d))
                    for j in range(d)] for t in range(T)])
    x = p["E"][inputs] + pe
    q, k, v = x @ p["W_q"], x @ p["W_k"], x @ p["W_v"]
    out = np.zeros((T, v.shape[1]))
    for i in range(T):
        s = np.array([q[i] @ k[j] / np.sqrt(d_k) for j in range(i + 1)])
        w = np.exp(s - s.max())
        out[i] = (w / w.sum()) @ v[:i + 1]
    z = out @ p["W_o"] + p["b_o"]
    total = 0.0
    for i in range(T):
        total += np.log(np.sum(np.exp(z[i] - z[i].max()))) + z[i].max() - z[i, targets[i]]
    return total / T


@pytest.mark.parametrize("options", [{}, {"optimizer": "adam", "d_model": 6, "d_k": 3, "context": 5}])
def test_loss_matches_an_independent_numpy_forward(options):
    cfg = attention.Config(corpus="en", **options)
    tape = attention.trace(cfg)
    _, inputs, targets = sequence(cfg)
    params = {k: of(tape, 0)[k].value for k in PARAMS}
    for k in range(1, cfg.iterations + 1):
        it = of(tape, k)
        assert it["loss"].value[0, 0] == pytest.approx(numpy_loss(params, inputs, targets, cfg.d_k), rel=1e-12)
        params = {name: it[name].value for name in PARAMS}


def test_the_mask_and_the_rows():
    tape = attention.trace(attention.Config(corpus="en"))
    A = of(tape, 1)["A"].value
    assert np.all(np.triu(A, 1) == 0)  # no position looks ahead
    np.testing.assert_allclose(A.sum(axis=1), 1, rtol=1e-14)
    np.testing.assert_allclose(of(tape, 1)["P"].value.sum(axis=1), 1, rtol=1e-14)


@pytest.mark.parametrize("options", [{}, {"tokenizer": "bpe", "corpus": "es", "optimizer": "adam"}])
def test_gradcheck_every_parameter(options):
    cfg = attention.Config(**{"corpus": "en", **options})
    tape = attention.trace(cfg)
    for k in (1, cfg.iterations):
        (report,) = gradcheck(tape, k)
        assert [c.name for c in report.checks] == PARAMS and all(c.checked == c.size for c in report.checks)
        assert report.ok, "\n".join(report.lines())


def test_loss_falls_with_the_defaults():
    for seed in range(3):
        for optimizer in ("sgd", "adam"):
            tape = attention.trace(attention.Config(corpus="en", seed=seed, optimizer=optimizer))
            losses = [float(t.value[0, 0]) for t in tape.tensors if t.name == "loss"]
            assert all(b < a for a, b in zip(losses, losses[1:])), (seed, optimizer, losses)


@pytest.mark.parametrize("key", ["attention", "attention-es-bpe-adam"])
def test_workbooks_verify(engine, verified, key):
    report = verified(key, engine=engine)
    assert report.ok, "\n".join(report.lines(limit=20))


def test_a_too_short_text_is_a_one_line_error(run_main, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b c\n", encoding="utf-8")
    code, _, err = run_main("run", "attention", "--text", path, "-o", tmp_path / "a.xlsx")
    assert code == 2 and "--context 8 needs 9" in err and len(err.strip().splitlines()) == 1, err
