"""The recurrent models (rnn, lstm): every iteration's loss, the intermediate tensors, every
gradient of backpropagation through time (each ∂L/∂h_t with its two parts) and every update
against an independent numpy implementation with hand-written BPTT; the vanishing-gradient norms
and the RNN/LSTM contrast; gradcheck on every parameter; the loss falls; generation; bad options.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.models import lstm, rnn
from tracer.models.next_token import sequence

MODELS = {"rnn": rnn, "lstm": lstm}
CONFIGS = {
    "defaults": {},
    "adam": {"optimizer": "adam"},
    "es-bpe": {"corpus": "es", "tokenizer": "bpe", "iterations": 2},
    "char-sizes": {"tokenizer": "char", "d_model": 3, "hidden": 5, "context": 6, "iterations": 3},
}
GATES = ("i", "f", "o", "g")


def config(model, **options):
    return MODELS[model].Config(**{"corpus": "en", "generate": 0, **options})


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- the models, written again from their docstrings (no tracer code) ----------------------------

def forward(model, p, ids):
    """Every step's tensors by tape name, and the list of (h_t, c_t) from t = 0."""
    H = p["W_hy"].shape[0]
    h, c = np.zeros((1, H)), np.zeros((1, H))
    out, states = {"X": p["E"][list(ids)]}, [(h, c)]
    for t in range(1, len(ids) + 1):
        x = out["X"][t - 1:t]
        out[f"x_{t}"] = x
        if model == "rnn":
            a = x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"]
            h = np.tanh(a)
            out[f"a_{t}"] = a
        else:
            acts = {}
            for g in GATES:
                a = x @ p[f"W_x{g}"] + h @ p[f"W_h{g}"] + p[f"b_{g}"]
                acts[g] = np.tanh(a) if g == "g" else sigmoid(a)
                out[f"a{g}_{t}"], out[f"{g}_{t}"] = a, acts[g]
            c = acts["f"] * c + acts["i"] * acts["g"]
            h = acts["o"] * np.tanh(c)
            out[f"c_{t}"], out[f"tanh_c_{t}"] = c, np.tanh(c)
        out[f"h_{t}"] = h
        states.append((h, c))
    return out, states


def loss_and_grads(model, p, ids, targets):
    """(loss, grads {param: array}, the tensors {tape name: array}, BPTT's parts by tape name)."""
    T = len(ids)
    out, states = forward(model, p, ids)
    hs = np.vstack([s[0] for s in states[1:]])
    P = softmax(hs @ p["W_hy"] + p["b_y"])
    nll = -np.log(P[np.arange(T), targets])
    out.update({"H": hs, "P": P, "nll": nll.reshape(-1, 1), "loss": np.array([[nll.mean()]])})
    Y = np.eye(P.shape[1])[targets]
    dZ = (P - Y) / T
    g = {k: np.zeros_like(v) for k, v in p.items()}
    g["W_hy"], g["b_y"] = hs.T @ dZ, dZ.sum(axis=0, keepdims=True)
    dH = dZ @ p["W_hy"].T
    dX = np.zeros_like(out["X"])
    parts = {}
    dh_next, dc_next = None, None
    for t in range(T, 0, -1):
        (h_prev, c_prev), (h, _) = states[t - 1], states[t]
        x = out[f"x_{t}"]
        if t < T:  # the last step's ∂L/∂h_T has only this part: it is ∂L/∂h_T itself
            parts[f"dL/dh_{t} via H"] = dH[t - 1:t]
        dh = dH[t - 1:t] + (dh_next if dh_next is not None else 0)
        parts[f"dL/dh_{t}"] = dh
        if model == "rnn":
            da = {"h": dh * (1 - h * h)}
            weights = {"h": ("W_xh", "W_hh", "b_h")}
        else:
            i, f, o, gg, tc = (out[f"{n}_{t}"] for n in ("i", "f", "o", "g", "tanh_c"))
            through_h = dh * o * (1 - tc * tc)
            dc = through_h + (dc_next if dc_next is not None else 0)
            if dc_next is not None:  # the last step's c_T reaches the loss only through tanh c_T
                parts[f"dL/dc_{t} via tanh_c_{t}"], parts[f"dL/dc_{t} via c_{t + 1}"] = through_h, dc_next
            parts[f"dL/dc_{t}"] = dc
            da = {"i": dc * gg * i * (1 - i), "f": dc * c_prev * f * (1 - f), "o": dh * tc * o * (1 - o),
                  "g": dc * i * (1 - gg * gg)}
            weights = {n: (f"W_x{n}", f"W_h{n}", f"b_{n}") for n in GATES}
            dc_next = dc * f
        dh_next = np.zeros_like(dh)
        for n, (wx, wh, b) in weights.items():
            g[wx] += x.T @ da[n]
            g[wh] += h_prev.T @ da[n]
            g[b] += da[n]
            dX[t - 1:t] += da[n] @ p[wx].T
            dh_next += da[n] @ p[wh].T
        if t > 1:  # the LSTM's h_{t−1} reaches step t through its four gates: their sum
            parts[f"dL/dh_{t - 1} via {'a' if model == 'rnn' else 'the gates'}_{t}"] = dh_next
    np.add.at(g["E"], list(ids), dX)
    parts["dL/dX"] = dX
    return float(nll.mean()), g, out, parts


def last_step_norms(model, p, ids, targets):
    """‖∂L_T/∂h_t‖, t = 1 … T, L_T = −ln softmax(h_T·W_hy + b_y)[y_T], by hand."""
    T = len(ids)
    out, states = forward(model, p, ids)
    P_T = softmax(states[T][0] @ p["W_hy"] + p["b_y"])
    dh = (P_T - np.eye(P_T.shape[1])[targets[-1]]) @ p["W_hy"].T
    dc = np.zeros_like(dh)
    norms = [np.linalg.norm(dh)]
    for t in range(T, 1, -1):
        c_prev, h = states[t - 1][1], states[t][0]
        if model == "rnn":
            dh = (dh * (1 - h * h)) @ p["W_hh"].T
        else:
            i, f, o, gg, tc = (out[f"{n}_{t}"] for n in ("i", "f", "o", "g", "tanh_c"))
            dc = dh * o * (1 - tc * tc) + dc
            da = {"i": dc * gg * i * (1 - i), "f": dc * c_prev * f * (1 - f), "o": dh * tc * o * (1 - o),
                  "g": dc * i * (1 - gg * gg)}
            dh = sum(da[n] @ p[f"W_h{n}"].T for n in GATES)
            dc = dc * f
        norms.append(np.linalg.norm(dh))
    return np.array(norms[::-1])


def adam(theta, g, m, v, t, cfg):
    m = cfg.beta1 * m + (1 - cfg.beta1) * g
    v = cfg.beta2 * v + (1 - cfg.beta2) * g * g
    step = cfg.lr * (m / (1 - cfg.beta1 ** t)) / (np.sqrt(v / (1 - cfg.beta2 ** t)) + cfg.adam_eps)
    return theta - step, m, v


# --- 1. the whole run against numpy -----------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_iteration_matches_an_independent_numpy_bptt(model, options):
    cfg = config(model, **options)
    tape = MODELS[model].trace(cfg)
    _, inputs, targets = sequence(cfg)
    params = [t.name for t in tape.tensors if t.attrs.get("role") == "param"]
    p = {n: of(tape, 0)[n].value.copy() for n in params}
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(x) for n, x in p.items()}
    np.testing.assert_array_equal(of(tape, 0)["y"].value.ravel(), targets)
    for k in range(1, cfg.iterations + 1):
        it = of(tape, k)
        loss, grads, tensors, parts = loss_and_grads(model, p, inputs, targets)
        assert it["loss"].value[0, 0] == pytest.approx(loss, rel=1e-12), k
        for name, want in grads.items():
            np.testing.assert_allclose(it[f"dL/d{name}"].value, want, rtol=1e-9, atol=1e-13, err_msg=f"{k} {name}")
        if k == 1:
            for name, want in tensors.items():
                np.testing.assert_allclose(it[name].value, want, rtol=1e-11, atol=1e-14, err_msg=name)
            for name, want in parts.items():
                base, _, via = name.partition(" via the gates_")
                got = sum(it[f"{base} via a{g}_{via}"].value for g in GATES) if via else it[name].value
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13, err_msg=name)
        for name in p:  # the update, SGD or Adam, from numpy's own gradients
            if cfg.optimizer == "sgd":
                p[name] = p[name] - cfg.lr * grads[name]
            else:
                p[name], m[name], v[name] = adam(p[name], grads[name], m[name], v[name], k, cfg)
            np.testing.assert_allclose(it[name].value, p[name], rtol=1e-9, atol=1e-12, err_msg=f"{k} new {name}")


def test_each_dh_is_the_sum_of_its_two_parts():
    """∂L/∂h_t = ∂L/∂h_t (via H: the output at t) + ∂L/∂h_t (via a_{t+1}: the next step through
    W_hh), each a recorded tensor and the sum a formula of them; the last step has only the first."""
    cfg = config("rnn")
    tape = rnn.trace(cfg)
    it = of(tape, 1)
    T = cfg.context
    for t in range(1, T):
        total = it[f"dL/dh_{t}"]
        assert [u.name for u in total.inputs] == [f"dL/dh_{t} via H", f"dL/dh_{t} via a_{t + 1}"]
        np.testing.assert_allclose(total.value, sum(u.value for u in total.inputs), rtol=1e-15)
    assert f"dL/dh_{T} via H" not in it and it[f"dL/dh_{T}"].op.name == "slice_rows"
    assert it[f"dL/da_{T}"].op.name == "tanh_grad"  # the tanh derivative
    # the weights' gradients: one contribution per step, then their sum
    for w in ("W_hh", "W_xh", "b_h"):
        assert [u.name for u in it[f"dL/d{w}"].inputs] == [f"dL/d{w} via a_{t}" for t in range(T, 0, -1)]
    lt = of(lstm.trace(config("lstm")), 1)
    assert {u.name for u in lt["dL/dc_3"].inputs} == {"dL/dc_3 via tanh_c_3", "dL/dc_3 via c_4"}
    assert lt["dL/dc_3 via c_4"].op.name == "mul" and lt["f_4"] in lt["dL/dc_3 via c_4"].inputs  # through f_{t+1}
    assert {u.name for u in lt["dL/dh_3"].inputs} == {"dL/dh_3 via H"} | {f"dL/dh_3 via a{g}_4" for g in GATES}


@pytest.mark.parametrize("model", MODELS)
def test_dX_is_the_gradients_of_the_x_t_stacked(model):
    """∂L/∂X = [∂L/∂x_1; …; ∂L/∂x_T], as a student writes it: each step's 1 × d row, then the rows
    stacked; no T × d matrix per step, all its rows but one zero (issue 21)."""
    cfg = config(model, context=6)
    it = of(MODELS[model].trace(cfg), 1)
    dX = it["dL/dX"]
    assert (dX.op.name, [u.name for u in dX.inputs]) == ("concat_rows", [f"dL/dx_{t}" for t in range(1, 7)])
    assert [name for name in it if "via x_" in name or name.startswith("dL/dX via")] == []
    assert [u.name for u in it["dL/dE"].inputs] == ["ids", "dL/dX"]  # ∂L/∂E from ∂L/∂X


# --- 2. vanishing gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_the_norms_of_the_last_step_gradient(model):
    cfg = config(model, iterations=2)
    tape = MODELS[model].trace(cfg)
    _, inputs, targets = sequence(cfg)
    names = [t.name for t in tape.tensors if t.attrs.get("role") == "param"]
    for k in (1, 2):
        it = of(tape, k)
        p = {n: of(tape, k - 1)[n].value for n in names}  # the parameters iteration k uses
        norms = it["|dL_T/dh|"]
        np.testing.assert_allclose(norms.value.ravel(), last_step_norms(model, p, inputs, targets), rtol=1e-9)
        assert [u.name for u in norms.inputs] == [f"dL_T/dh_{t}" for t in range(1, cfg.context + 1)]
        assert it["L_T"].value[0, 0] == pytest.approx(it["nll"].value[-1, 0], rel=1e-12)  # the last ℓ, alone


def ratio(model, seed, context=16):
    tape = MODELS[model].trace(config(model, seed=seed, context=context, iterations=1))
    n = of(tape, 1)["|dL_T/dh|"].value.ravel()
    return n[0] / n[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rnn_gradient_vanishes_far_faster_than_the_lstm_gradient(seed):
    """At --context 16, ‖∂L_T/∂h_1‖ / ‖∂L_T/∂h_T‖ of the RNN is far smaller than the LSTM's."""
    r, m = ratio("rnn", seed), ratio("lstm", seed)
    assert r < 1e-3 and r * 10 < m, (r, m)


def test_a_closed_forget_gate_makes_the_lstm_forget():
    """The contrast comes from the forget gate: biased shut (f ≈ σ(−4) ≈ 0.02), the LSTM's
    gradient vanishes too; the check can fail."""
    tape = lstm.trace(config("lstm", context=16, iterations=1, forget_bias=-4.0))
    n = of(tape, 1)["|dL_T/dh|"].value.ravel()
    assert n[0] / n[-1] < ratio("lstm", 0) / 100


# --- 3. gradcheck, the loss falls, generation ------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_gradcheck_every_parameter_and_the_last_step_gradient(model):
    cfg = config(model, context=5, hidden=4, d_model=3, iterations=2)
    tape = MODELS[model].trace(cfg)
    for k in (1, 2):
        reports = gradcheck(tape, k)
        assert [r.loss for r in reports] == ["L", "L_T"]
        main, last = reports
        assert {c.name for c in main.checks} == {t.name for t in tape.tensors if t.attrs.get("role") == "param"}
        assert all(c.checked == c.size for c in main.checks)
        assert [c.name for c in last.checks] == ["h_1"]
        assert main.ok and last.ok and max(main.max_rel, last.max_rel) < 1e-6, (main.lines(), last.lines())


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_loss_falls_for_seeds_0_to_2(model, optimizer):
    for seed in (0, 1, 2):
        tape = MODELS[model].trace(config(model, seed=seed, optimizer=optimizer))
        losses = [t.value[0, 0] for t in tape.tensors if t.name == "loss"]
        assert len(losses) == 4 and all(b < a for a, b in itertools.pairwise(losses)), (seed, losses)


@pytest.mark.parametrize("model", MODELS)
def test_generation_runs_the_recurrence_on(model):
    """Greedy and sampled tokens against numpy: read the prompt from h_0, then one token at a time
    from the state reached (no window, no re-reading), the draws in generate's order."""
    cfg = MODELS[model].Config(corpus="en", generate=5, prompt="the cat", temperature="0.7,2")
    tape = MODELS[model].trace(cfg)
    tok = tape.meta["tokenized"]
    last = of(tape, cfg.iterations)
    p = {n: last[n].value for n in (t.name for t in tape.tensors if t.attrs.get("role") == "param")}
    prompt = tok.encode("the cat")
    rng = np.random.default_rng([cfg.seed, 1])

    def run(ids, state):
        """The state after reading ids from `state` (None: h_0 = c_0 = 0) and the scores z."""
        H = p["W_hy"].shape[0]
        h, c = state or (np.zeros((1, H)), np.zeros((1, H)))
        for i in ids:
            x = p["E"][[i]]
            if model == "rnn":
                h = np.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"])
            else:
                a = {g: x @ p[f"W_x{g}"] + h @ p[f"W_h{g}"] + p[f"b_{g}"] for g in GATES}
                c = sigmoid(a["f"]) * c + sigmoid(a["i"]) * np.tanh(a["g"])
                h = sigmoid(a["o"]) * np.tanh(c)
        return (h, c), (h @ p["W_hy"] + p["b_y"])[0]

    def pick(z, tau):
        if tau is None:
            return int(np.argmax(z))
        cum = np.cumsum(softmax(z / tau))
        return int(np.count_nonzero(cum[:-1] <= rng.uniform()))

    state, z = run(prompt, None)
    taus = [None, 0.7, 2.0]
    firsts = [pick(z, tau) for tau in taus]
    for label, tau, first in zip(("greedy", "τ1", "τ2"), taus, firsts):
        ids, s, token = [*prompt, first], state, first
        for _ in range(cfg.generate - 1):
            s, zz = run([token], s)
            token = pick(zz, tau)
            ids.append(token)
        assert list(last[f"generated ({label})"].value[:, 0]) == ids, label
    assert "[greedy 3] window" not in last and "[greedy 3] h_4" in last and "[greedy 3] x_4" in last


# --- 4. options ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("args, message", [
    (["--hidden", "0"], "--hidden must be at least 1"),
    (["--d-model", "0"], "--d-model must be at least 1"),
    (["--context", "1"], "--context must be at least 2"),
    (["--lr", "0"], "--lr must be positive"),
    (["--context", "999"], "--context 999 needs 1000"),
    (["--prompt", "the zebra"], "--prompt: the token 'zebra' is not in the vocabulary"),
    (["--lr", "1e9"], "training diverged"),
])
def test_bad_options_are_one_line_errors(refused, tmp_path, model, args, message):
    out = tmp_path / "r.xlsx"
    assert message in refused("run", model, *args, "-o", out)
    assert not out.exists()


def test_the_forget_bias_is_the_initial_b_f():
    tape = lstm.trace(config("lstm", forget_bias=2.5, iterations=1))
    assert np.all(of(tape, 0)["b_f"].value == 2.5) and np.all(of(tape, 0)["b_i"].value == 0)
    assert dataclasses.asdict(lstm.Config())["forget_bias"] == 1.0
