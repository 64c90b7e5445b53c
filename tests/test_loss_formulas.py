"""Every loss of every model is the formula its docs page states (docs/models/*.md), computed here
again in plain numpy from the loss's inputs and from targets taken from the data itself (the
text's next tokens, the digits, the config file), on runs chosen so that the loss has something
to get wrong: several examples, soft targets where the loss allows them (mlp, the VAE's grey
pixels), probabilities away from 0 and 1, the second iteration (parameters already updated).
gradcheck runs on every backward pass of the same iteration.  Each case also meets a plausible
bug in its loss's ops (a mutant) and must then fail: the checks can fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.core import flows, losses
from tracer.data import mnist
from tracer.models import MODELS, mlp, training
from tracer.models.next_token import sequence

def last(tape) -> int:
    """The iteration checked: the last traced one (the second: every case traces 2)."""
    return max(t.iteration for t in tape.tensors if t.phase == "update")


def of(tape, k) -> dict:
    return {t.name: t.value for t in tape.tensors if t.iteration == k}


def ln_pick(P, ids) -> np.ndarray:
    """ln P[i, ids_i], row by row."""
    return np.array([math.log(P[i, int(j)]) for i, j in enumerate(ids)])


def text_targets(cfg) -> list[int]:
    """The token after each of the first --context tokens: what a next-token model must predict."""
    tok = cfg.tokenize(cfg.lines())
    return tok.ids[1:cfg.context + 1]


# --- each model's documented losses, from the recorded inputs and the data ------------------------

def vae(cfg, it):
    """recon = −(1/N) Σ [x ln x̂ + (1−x) ln(1−x̂)], kl = −(1/N)·½ Σ (1 + logvar − μ² − e^logvar), loss = recon + kl."""
    x, _ = mnist.load_batch(cfg.digit, cfg.batch, cfg.mnist, same_class=False)  # grey pixels: soft targets
    xh, mu, lv = it["x_hat"], it["mu"], it["logvar"]
    N = x.shape[0]
    recon = -np.sum(x * np.log(xh) + (1 - x) * np.log(1 - xh)) / N
    kl = -0.5 * np.sum(1 + lv - mu ** 2 - np.exp(lv)) / N
    return {"recon": recon, "kl": kl, "loss": recon + kl}


def gan(cfg, it):
    """L_D = −mean ln D(x_real) − mean ln(1 − D(x_fake)), L_G = −mean ln D′(x_fake)."""
    real, fake = -np.mean(np.log(it["D_real"])), -np.mean(np.log(1 - it["D_fake"]))
    return {"L_real": real, "L_fake": fake, "L_D": real + fake, "L_G": -np.mean(np.log(it["D_gen"]))}


def skipgram_pairs(cfg):
    tok = cfg.tokenize(cfg.lines()[:cfg.sentences or None], boundary=False)
    return [(s[p], s[q]) for s in tok.sentences for p in range(len(s)) for q in range(len(s))
            if q != p and abs(q - p) <= cfg.window]


def skipgram(cfg, it):
    """L = −(1/P) Σ ln p[o] over the P (center, context) pairs."""
    contexts = [o for _, o in skipgram_pairs(cfg)]
    return {"loss": -np.mean(ln_pick(it["p"], contexts))}


def skipgram_negative(cfg, it, before):
    """L = −mean ln σ(h·u_o) − Σ_k mean ln(1 − σ(h·u_k)), h and u rows of E_in and E_out before the update."""
    pr = np.array(skipgram_pairs(cfg))
    h, E_out = before["E_in"][pr[:, 0]], before["E_out"]
    sigma = lambda s: 1 / (1 + np.exp(-s))  # noqa: E731
    L = -np.mean(np.log(sigma(np.sum(h * E_out[pr[:, 1]], axis=1))))
    for k in range(1, cfg.negative + 1):
        neg = it[f"neg{k}"][:, 0].astype(int)
        L -= np.mean(np.log(1 - sigma(np.sum(h * E_out[neg], axis=1))))
    return {"loss": L}


def next_token(cfg, it):
    """L = −(1/T) Σ ln P[i, next token of i] (attention, transformer)."""
    return {"loss": -np.mean(ln_pick(it["P"], text_targets(cfg)))}


def recurrent(cfg, it):
    """L = (1/T) Σ_t −ln P[t, y_t]; the vanishing-gradient pass's L_T = −ln P_T[y_T] (rnn, lstm)."""
    y = text_targets(cfg)
    return {"loss": -np.mean(ln_pick(it["P"], y)), "L_T": -math.log(it["P_T"][0, y[-1]])}


def bert(cfg, it):
    """L = Σ m_i ℓ_i / Σ m_i, ℓ_i = −ln P[i, ids_i] (m this iteration's mask); L_eval the same on the
    updated model with m_eval = every second position."""
    _, ids, _ = sequence(cfg)
    m = it["m"][:, 0]
    m_eval = np.arange(cfg.context) % 2
    return {"loss": -np.sum(m * ln_pick(it["P"], ids)) / np.sum(m),
            "eval_loss": -np.sum(m_eval * ln_pick(it["[eval] P"], ids)) / np.sum(m_eval)}


def diffusion(cfg, it):
    """L = mean (ε − ε̂)² over the N·P values."""
    return {"loss": np.mean((it["eps"] - it["eps_hat"]) ** 2)}


def flow(cfg, it):
    """L = −(1/N) Σ_n log p(x_n), log p(x) = Σ_j (−½ z_j² − ½ ln 2π) + Σ_k s_k."""
    z = it["z"]
    log_px = np.sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), axis=1)
    for k in range(1, cfg.couplings + 1):
        log_px += it[f"b{k}.s"][:, 0]
    return {"loss": -np.mean(log_px)}


# --- the mlp's losses, on a file of soft targets ----------------------------------------------------

MLP_OUTPUT = {"mse": "tanh", "half_sse": "sigmoid", "bce": "sigmoid", "softmax_ce": "softmax"}


def mlp_file(tmp_path, kind: str, one_hot=False) -> tuple[str, np.ndarray]:
    """A 3-4-3 network on 5 examples, the output layer what the loss needs; targets soft (away
    from 0 and 1; softmax_ce: rows of probabilities summing to 1), or one-hot rows."""
    rng = np.random.default_rng([21, len(kind)])
    x = rng.normal(size=(5, 3))
    y = rng.uniform(0.1, 0.9, size=(5, 3))
    if kind == "softmax_ce":
        y = np.eye(3)[[0, 2, 1, 2, 0]] if one_hot else rng.dirichlet(np.full(3, 2.0), size=5)
    rows = lambda a: "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in a) + "]"  # noqa: E731
    text = (f"[data]\ninputs = {rows(x)}\ntargets = {rows(y)}\n"
            f"[[layer]]\nunits = 4\nactivation = \"tanh\"\n"
            f"[[layer]]\nunits = 3\nactivation = \"{MLP_OUTPUT[kind]}\"\nnames = {{ out = \"out\", pre = \"net\" }}\n"
            f"[loss]\nkind = \"{kind}\"\nname = \"E\"\n"
            f"[training]\nlr = 0.3\niterations = 2\nseed = 3\n")
    path = tmp_path / f"{kind}{'-onehot' * one_hot}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path), y


def mlp_loss(kind, y):
    def expected(cfg, it):
        out = it["out"]
        N = out.shape[0]
        value = {"mse": lambda: np.mean((out - y) ** 2),
                 "half_sse": lambda: 0.5 * np.sum((y - out) ** 2),
                 "bce": lambda: -np.mean(y * np.log(out) + (1 - y) * np.log(1 - out)),
                 "softmax_ce": lambda: -np.sum(y * np.log(out)) / N}[kind]()
        return {"E": value}
    return expected


# case: (model, options, expected(cfg, iteration K's values[, iteration K−1's]))
CASES = {
    # after a warm-up, so that μ and log σ² have left 0 (KL about 21 and 19)
    "vae": ("vae", {"batch": 3, "hidden": 6, "latent": 2, "iterations": 2, "warmup": 50}, vae),
    "vae-adam": ("vae", {"batch": 3, "hidden": 6, "latent": 2, "iterations": 2, "warmup": 20, "optimizer": "adam"}, vae),
    "gan": ("gan", {"batch": 3, "iterations": 2}, gan),
    "skipgram": ("skipgram", {"iterations": 2}, skipgram),
    "skipgram-negative": ("skipgram", {"iterations": 2, "negative": 3}, skipgram_negative),
    "attention": ("attention", {"iterations": 2}, next_token),
    "transformer": ("transformer", {"iterations": 2, "optimizer": "adam", "context": 6}, next_token),
    "bert": ("bert", {"iterations": 2, "mask_rate": 0.4, "context": 7}, bert),
    "rnn": ("rnn", {"iterations": 2}, recurrent),
    "lstm": ("lstm", {"iterations": 2, "context": 6}, recurrent),
    "diffusion": ("diffusion", {"batch": 3, "size": 4, "hidden": 16, "iterations": 2}, diffusion),
    "flow": ("flow", {"points": 6, "couplings": 3, "hidden": 5, "iterations": 2}, flow),
}
MLP_CASES = [("mse", False), ("half_sse", False), ("bce", False), ("softmax_ce", False), ("softmax_ce", True)]
SAMPLE = 12  # gradcheck: this many seeded elements of each parameter (every one of a smaller tensor)


def traced(key, tmp_path):
    """(tape, config, expected) of a case: a model run and its losses by formula."""
    if key.startswith("mlp"):
        kind, one_hot = next(c for c in MLP_CASES if mlp_key(*c) == key)
        path, y = mlp_file(tmp_path, kind, one_hot)
        cfg = mlp.Config(config=path)
        return mlp.trace(cfg), cfg, mlp_loss(kind, y)
    name, options, expected = CASES[key]
    model = MODELS[name]
    cfg = model.Config(**({"corpus": "en"} if hasattr(model.Config, "corpus") else {}), **options)
    return model.trace(cfg), cfg, expected


def mlp_key(kind, one_hot):
    return f"mlp-{kind}{'-onehot' * one_hot}"


ALL = [*CASES, *(mlp_key(*c) for c in MLP_CASES)]


def compare(tape, cfg, expected) -> dict:
    """{loss: (traced, by formula)} of the last iteration."""
    k = last(tape)
    it = of(tape, k)
    args = (cfg, it, of(tape, k - 1)) if expected is skipgram_negative else (cfg, it)
    return {name: (float(it[name][0, 0]), float(value)) for name, value in expected(*args).items()}


@pytest.mark.parametrize("key", ALL)
def test_every_loss_is_its_documented_formula_and_passes_gradcheck(key, tmp_path):
    tape, cfg, expected = traced(key, tmp_path)
    pairs = compare(tape, cfg, expected)
    assert pairs
    for name, (value, formula) in pairs.items():
        assert value == pytest.approx(formula, rel=1e-12, abs=1e-14), (key, name, value, formula)
    reports = gradcheck(tape, last(tape), sample=SAMPLE)
    assert reports and all(r.ok for r in reports), [line for r in reports for line in r.lines()]


# --- the checks can fail: each case against a plausible bug in one of its loss's ops ---------------

def _terms(op, fn):
    """A SumOfTerms whose terms op computes fn instead."""
    return lambda mp: mp.setattr(op.steps[0][1], "fn", fn)


MUTANTS = {  # key: (the bug, how to make it)
    "vae": ("KL without e^logvar", _terms(losses.KL, lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - lv))),
    "vae-adam": ("recon a mean over pixels", lambda mp: mp.setattr(losses.BCE, "per", "cells")),
    "gan": ("−ln a for −ln(1 − a)", _terms(losses.NEG_MEAN_LN1M, lambda a: -np.log(a))),
    "skipgram": ("the mean over the vocabulary", lambda mp: mp.setattr(
        losses.CrossEntropy, "finish", lambda self, p, y, terms: np.array([[np.sum(y * terms) / p.shape[1]]]))),
    "skipgram-negative": ("a sum, not a mean", lambda mp: mp.setattr(losses.NEG_MEAN_LN1M, "per", 1)),
    "attention": ("the largest probability, not the target's", lambda mp: mp.setattr(
        losses.CrossEntropyTerms, "forward", lambda self, p, y, **a: -np.log(p.max(axis=1, keepdims=True)))),
    "transformer": ("−ln Σ P, the targets ignored", lambda mp: mp.setattr(
        losses.CrossEntropyTerms, "forward", lambda self, p, y, **a: -np.log(p[:, :1]))),
    "bert": ("every position's mean", lambda mp: mp.setattr(
        losses.MaskedMean, "forward", lambda self, a, m, **k: np.array([[a.mean()]]))),
    "rnn": ("the next token one off", lambda mp: mp.setattr(
        losses, "_targets", lambda y, vocab: (y[:, 0].astype(np.int64) + 1) % vocab)),
    "lstm": ("a sum, not a mean", lambda mp: mp.setattr(losses.MEAN, "forward", lambda a, **k: np.array([[a.sum()]]))),
    "diffusion": ("½ the mean", lambda mp: mp.setattr(losses.MSE, "fn", lambda p, y: 0.5 * np.mean((p - y) ** 2))),
    "flow": ("log N without ½ ln 2π", lambda mp: mp.setattr(flows.LOG_NORMAL_TERMS, "fn", lambda z: -0.5 * z ** 2)),
    "mlp-mse": ("a mean over the examples only", lambda mp: mp.setattr(
        losses.MSE, "fn", lambda p, y: np.sum((p - y) ** 2) / p.shape[0])),
    "mlp-half_sse": ("without the ½", lambda mp: mp.setattr(losses.HALF_SSE, "fn", lambda p, y: np.sum((y - p) ** 2))),
    "mlp-bce": ("targets and outputs swapped", lambda mp: mp.setattr(losses.BCE_MEAN, "steps", (("terms", losses.BCE_TERMS, 0, 1),))),
    "mlp-softmax_ce": ("issue 21's bug: −ln Σ t·p per row", lambda mp: mp.setattr(mlp, "loss_of", lambda spec: losses.cross_entropy)),
    "mlp-softmax_ce-onehot": ("the mean over every output", lambda mp: mp.setattr(
        losses.CrossEntropy, "finish", lambda self, p, y, terms: np.array([[np.sum(y * terms) / p.size]]))),
}


@pytest.mark.parametrize("key", ALL)
def test_a_wrong_loss_fails_the_check(key, tmp_path, monkeypatch):
    bug, mutate = MUTANTS[key]
    mutate(monkeypatch)
    monkeypatch.setattr(training, "GROWTH", float("inf"))  # a wrong loss may also grow: the formula must catch it
    with np.errstate(all="ignore"):
        tape, cfg, expected = traced(key, tmp_path)
    pairs = compare(tape, cfg, expected)
    assert any(value != pytest.approx(formula, rel=1e-12, abs=1e-14) for value, formula in pairs.values()), (key, bug)
