"""BERT, the masked language model: the masks from the recorded draws, every iteration's loss
and the intermediate tensors against the transformer's independent numpy forward with
bidirectional attention, the evaluation loss on the fixed mask after each update, the SGD update
against central differences of that numpy loss, gradcheck on every parameter, each update
lowering its own iteration's loss and the evaluation loss falling, fill in the blank, bad options.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_transformer import numpy_forward, param_names

from tracer.checks.gradcheck import gradcheck
from tracer.data.text import SPACE
from tracer.models import bert
from tracer.models.next_token import sequence

CONFIGS = {
    "defaults": {},
    "adam-2-layers": {"optimizer": "adam", "layers": 2, "heads": 4},
    "es-bpe": {"corpus": "es", "tokenizer": "bpe", "iterations": 2},
    "char-rate": {"tokenizer": "char", "mask_rate": 0.5, "context": 6, "iterations": 2},
}


def config(**options) -> bert.Config:
    return bert.Config(**{"corpus": "en", **options})


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def masked_loss(p, inputs, m, mask_id, cfg):
    """The numpy BERT: the masked inputs through bidirectional blocks, the loss at the masked rows."""
    ids_in = [mask_id if mi else i for i, mi in zip(inputs, m)]
    _, out = numpy_forward(p, ids_in, inputs, cfg, causal=False)
    rows = [i for i, mi in enumerate(m) if mi]
    return -np.mean([np.log(out["P"][i, inputs[i]]) for i in rows]), out


def eval_mask(T):
    """The evaluation mask, from its definition: every second position from the second."""
    return [i % 2 == 1 for i in range(T)]


def masks(cfg):
    """Each iteration's draws and masked positions, from default_rng([seed, 2])."""
    draws = np.random.default_rng([cfg.seed, 2])
    out = []
    for _ in range(cfg.iterations):
        u = draws.uniform(size=cfg.context)
        out.append((u, [bool(v < cfg.mask_rate or v == u.min()) for v in u]))
    return out


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_iteration_matches_an_independent_numpy_bert(options):
    cfg = config(**options)
    tape = bert.trace(cfg)
    _, inputs, _ = sequence(cfg)
    tok = tape.meta["tokenized"]
    assert tok.vocab[-1] == "[MASK]" and of(tape, 0)["mask_id"].value[0, 0] == len(tok.vocab) - 1
    names = param_names(cfg)
    assert sorted(names) == sorted(t.name for t in tape.tensors if t.attrs.get("role") == "param")
    for k, (u, m) in enumerate(masks(cfg), start=1):
        it = of(tape, k)
        np.testing.assert_array_equal(it["u"].value.ravel(), u)
        assert it["u"].attrs["role"] == "draw" and it["u"].op is None
        np.testing.assert_array_equal(it["m"].value.ravel(), m)
        assert any(m)
        p = {n: of(tape, k - 1)[n].value for n in names}
        loss, out = masked_loss(p, inputs, m, len(tok.vocab) - 1, cfg)
        assert it["loss"].value[0, 0] == pytest.approx(loss, rel=1e-10)
        np.testing.assert_array_equal(it["ids_in"].value.ravel(), [len(tok.vocab) - 1 if mi else i
                                                                   for i, mi in zip(inputs, m)])
        # the evaluation loss: the updated parameters on the fixed mask
        updated = {n: it[n].value for n in names}
        assert it["eval_loss"].value[0, 0] == pytest.approx(
            masked_loss(updated, inputs, eval_mask(cfg.context), len(tok.vocab) - 1, cfg)[0], rel=1e-10)
        if k == 1:
            for name in ("X", "b1.LN1", "b1.h1.S", "b1.h1.A", "b1.h1.O", "b1.X2", "LN_f", "Z", "P"):
                np.testing.assert_allclose(it[name].value, out[name], rtol=1e-10, atol=1e-12, err_msg=name)
            A = it["b1.h1.A"].value  # bidirectional: every row reaches every column, no causal zeros
            assert np.all(A > 0) and np.allclose(A.sum(axis=1), 1)


@pytest.mark.parametrize("name", ["E", "b1.h1.W_q", "b1.gamma1", "W_head"])
def test_sgd_update_follows_numpy_finite_differences(name):
    cfg = config()
    tape = bert.trace(cfg)
    _, inputs, _ = sequence(cfg)
    mask_id = len(tape.meta["tokenized"].vocab) - 1
    _, m = masks(cfg)[0]
    p = {n: of(tape, 0)[n].value for n in param_names(cfg)}
    g = np.zeros_like(p[name])
    for idx in np.ndindex(*p[name].shape):
        up = {k: v.copy() for k, v in p.items()}
        down = {k: v.copy() for k, v in p.items()}
        up[name][idx] += 1e-5
        down[name][idx] -= 1e-5
        g[idx] = (masked_loss(up, inputs, m, mask_id, cfg)[0] - masked_loss(down, inputs, m, mask_id, cfg)[0]) / 2e-5
    implied = (p[name] - of(tape, 1)[name].value) / cfg.lr
    assert np.abs(g).max() > 1e-4
    assert np.abs(implied - g).max() / np.abs(g).max() < 1e-6


def test_gradcheck_every_parameter_of_every_iteration():
    tape = bert.trace(config(context=5, d_model=4, heads=2, d_ff=6, iterations=2))
    for k in (1, 2):
        (report,) = gradcheck(tape, k)
        assert report.ok and report.max_rel < 1e-6, report.lines()
        assert all(c.checked == c.size for c in report.checks)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_update_lowers_its_own_iterations_loss(optimizer):
    """The masked loss of each iteration is on other positions than the last one's, so it jumps
    (docs/models/bert.md); what training must do is lower the loss it steps on: L_k(θ_k) < L_k(θ_{k−1}) on
    iteration k's masks, for seeds 0–2, and after 4 iterations iteration 1's masks score better."""
    for seed in (0, 1, 2):
        cfg = config(seed=seed, optimizer=optimizer)
        tape = bert.trace(cfg)
        _, inputs, _ = sequence(cfg)
        mask_id = len(tape.meta["tokenized"].vocab) - 1
        names = param_names(cfg)
        thetas = [{n: of(tape, k)[n].value for n in names} for k in range(cfg.iterations + 1)]
        for k, (_, m) in enumerate(masks(cfg), start=1):
            before, after = (masked_loss(thetas[j], inputs, m, mask_id, cfg)[0] for j in (k - 1, k))
            assert after < before, (seed, k, before, after)
        first = masks(cfg)[0][1]
        assert masked_loss(thetas[-1], inputs, first, mask_id, cfg)[0] < masked_loss(thetas[0], inputs, first, mask_id, cfg)[0]


def test_the_evaluation_mask_is_a_recorded_constant_and_its_inputs_a_formula():
    cfg = config(context=7)
    tape = bert.trace(cfg)
    inputs, first = of(tape, 0), of(tape, 1)
    m_eval, ids_eval = inputs["m_eval"], inputs["ids_eval"]
    assert m_eval.op is None and m_eval.attrs["role"] == "data"
    np.testing.assert_array_equal(m_eval.value.ravel(), eval_mask(7))  # positions 1, 3, 5
    assert ids_eval.op is not None and ids_eval.inputs[1] is m_eval
    mask_id = inputs["mask_id"].value[0, 0]
    _, ids, _ = sequence(cfg)
    np.testing.assert_array_equal(ids_eval.value.ravel(), [mask_id if i % 2 else v for i, v in enumerate(ids)])
    assert first["[eval] X_emb"].inputs[1] is ids_eval and first["[eval] X"].inputs[1] is inputs["PE"]
    assert first["eval_loss"].inputs[1] is m_eval  # the same constant, every iteration
    assert [t.phase for t in tape.tensors if t.iteration == 1][-1] == "loss"  # after the update
    assert "eval_loss" in bert.LOSSES


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_evaluation_loss_falls_with_the_defaults(optimizer):
    """The README's two curves: the training loss jumps (other positions each iteration), the
    evaluation loss on the fixed mask is lower after the last iteration than after the first,
    for seeds 0–2."""
    for seed in (0, 1, 2):
        losses = [t.value[0, 0] for t in bert.trace(config(seed=seed, optimizer=optimizer)).tensors
                  if t.name == "eval_loss"]
        assert len(losses) == 4 and losses[-1] < losses[0], (seed, losses)


def test_the_warmup_charts_the_evaluation_loss_too():
    from tracer import api

    run = api.run("bert", corpus="en", warmup=3, iterations=1)
    warm = run.warmup_losses
    assert set(warm) == {"loss", "eval_loss"} and len(warm["eval_loss"]) == 3
    assert len(set(warm["eval_loss"])) == 3  # a value per step, each from that step's parameters


def test_fill_in_the_blank():
    cfg = config(fill="the [MASK] eats [mask]", top=2)
    tape = bert.trace(cfg)
    tok = tape.meta["tokenized"]
    after = {t.name: t for t in tape.tensors if t.phase == "after"}
    mask = len(tok.vocab) - 1
    assert list(after["fill"].value[:, 0]) == [tok.index["the"], mask, tok.index["eats"], mask]
    Z = after["[fill] Z"].value
    for n, row in ((1, 1), (2, 3)):
        P = np.exp(Z[row] - Z[row].max())
        P /= P.sum()
        np.testing.assert_allclose(after[f"[mask {n}] P"].value[0], P, rtol=1e-12)
        order = np.argsort(-P, kind="stable")[:2]
        assert list(after[f"[mask {n}] top"].value[:, 0]) == list(order)
        np.testing.assert_allclose(after[f"[mask {n}] top P"].value[:, 0], P[order], rtol=1e-12)
    filled = list(after["filled"].value[:, 0])
    assert filled[0] == tok.index["the"] and filled[1] == np.argmax(Z[1]) and filled[3] == np.argmax(Z[3])
    ((masked, _, tops),) = tape.meta["filled"]
    assert masked == "the [MASK] eats [MASK]" and len(tops) == 2 and len(tops[0]) == 2


def test_the_default_fill_masks_the_second_token_of_the_first_sentence():
    tape = bert.trace(config(iterations=1))
    tok = tape.meta["tokenized"]
    fill = [int(v) for v in next(t for t in tape.tensors if t.name == "fill").value[:, 0]]
    assert [tok.vocab[i] for i in fill] == ["the", "[MASK]", "eats", "food"]


def test_a_char_fill_keeps_the_spaces_around_the_mask():
    cfg = config(tokenizer="char", fill="a [MASK]", context=8, iterations=1)
    tok = bert.with_mask(sequence(cfg)[0])
    assert [tok.vocab[i] for i in bert.fill_ids(cfg, tok)] == ["a", SPACE, "[MASK]"]


def test_the_command_prints_the_filled_sentence(run_main, tmp_path):
    code, out, _ = run_main("run", "bert", "--fill", "the [MASK] eats food", "--iterations", "1",
                            "-o", tmp_path / "b.xlsx")
    assert code == 0
    (line,) = [line.strip() for line in out.splitlines() if "filled in" in line]
    assert line.startswith("filled in: the [MASK] eats food -> the ") and line.count(",") == 2


@pytest.mark.parametrize("args, message", [
    (["--mask-rate", "1"], "--mask-rate must be below 1"),
    (["--mask-rate", "-0.1"], "--mask-rate must be at least 0"),
    (["--fill", "the dog eats"], "--fill must contain [MASK]"),
    (["--fill", "the [MASK] eats food the cat eats food the dog"], "--fill gives 10 tokens: at most --context 8 fit"),
    (["--fill", "the [MASK] eats pizza"], "--fill: the token 'pizza' is not in the vocabulary"),  # names --fill (issue 21)
    (["--top", "0"], "--top must be at least 1"),
    (["--top", "99"], "--top 99 is more than the 7 tokens"),
    (["--heads", "3"], "--d-model 8 must be a multiple of --heads 3"),
])
def test_bad_options_are_one_line_errors(refused, tmp_path, args, message):
    out = tmp_path / "b.xlsx"
    assert message in refused("run", "bert", *args, "-o", out)
    assert not out.exists()

