"""The decoder-only transformer: every iteration's loss and the intermediate tensors against an
independent numpy forward pass written from the model's equations, the SGD update against
central differences of that numpy loss, tracer's gradcheck on every parameter, the loss falls,
the tensor names, the template text of every tensor, the causal attention weights.

Nothing here needs LibreOffice (the workbooks are verified in another file)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tracer.checks.gradcheck import gradcheck
from tracer.models import transformer
from tracer.models.next_token import sequence
from tracer.render.template import GRAD, STATE, VIA, Template

# every option the forward must follow (generate=0: the training only)
CONFIGS = {
    "defaults": {},
    "layers2-heads4": {"layers": 2, "heads": 4, "d_model": 8},
    "gelu": {"ffn": "gelu"},
    "heads1": {"heads": 1},
    "char": {"tokenizer": "char"},
    "bpe": {"tokenizer": "bpe"},
    "bpe-es": {"tokenizer": "bpe", "corpus": "es"},  # es gives real merges (co, com)
    "es": {"corpus": "es"},
    "adam": {"optimizer": "adam"},
    "eps-context-dff": {"ln_eps": 0.3, "context": 5, "d_ff": 7},  # ε really used, other sizes
}


def config(**options) -> transformer.Config:
    return transformer.Config(**{"generate": 0, "corpus": "en", **options})


def of(tape, k):
    return {t.name: t for t in tape.tensors if t.iteration == k}


def param_names(cfg):
    """The parameters' names, from the docstring (not from init_params)."""
    names = ["E"]
    for b in range(1, cfg.layers + 1):
        names += [f"b{b}.gamma1", f"b{b}.beta1"]
        for h in range(1, cfg.heads + 1):
            names += [f"b{b}.h{h}.W_q", f"b{b}.h{h}.W_k", f"b{b}.h{h}.W_v"]
        names += [f"b{b}.W_o", f"b{b}.gamma2", f"b{b}.beta2", f"b{b}.W_1", f"b{b}.b_1", f"b{b}.W_2", f"b{b}.b_2"]
    return names + ["gamma_f", "beta_f", "W_head", "b_head"]


def params_by_iteration(tape, names, iterations):
    """[θ used by iteration 1, θ used by iteration 2, …, θ after the last update]: iteration 0's
    constants, then the update-phase tensors of each iteration."""
    out = [{n: of(tape, 0)[n].value for n in names}]
    for k in range(1, iterations + 1):
        it = of(tape, k)
        assert all(it[n].phase == "update" for n in names)
        out.append({n: it[n].value for n in names})
    return out


# --- the model, written again from its docstring (no tracer code) -----------------------------

def positions(T, d):
    """PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(p / 10000^(2k/d))."""
    pe = np.zeros((T, d))
    for p in range(T):
        for j in range(d):
            angle = p / 10000 ** ((j - j % 2) / d)
            pe[p, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return pe


def layer_norm(x, gamma, beta, eps, out, name):
    """Per row: mean, population variance (÷ d), (x − μ)/√(σ² + ε), then γ ⊙ x̂ + β."""
    d = x.shape[1]
    mu = np.array([[sum(row) / d] for row in x])
    var = np.array([[sum((v - m[0]) ** 2 for v in row) / d] for row, m in zip(x, mu)])
    xhat = (x - mu) / np.sqrt(var + eps)
    out[name + "_mu"], out[name + "_var"], out[name + "_xhat"] = mu, var, xhat
    out[name] = gamma * xhat + beta
    return out[name]


def act(x, kind):
    if kind == "relu":
        return np.maximum(x, 0.0)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))  # GPT-2's tanh GELU


def numpy_forward(p, inputs, targets, cfg, causal=True):
    """(loss, {tape name: value}) for the parameters p; causal=False: every row of the attention
    sees every position (BERT)."""
    T, H = len(inputs), cfg.heads
    d = p["E"].shape[1]
    dk = d // H
    out = {}
    x = p["E"][list(inputs)] + positions(T, d)
    out["X"] = x
    for b in range(1, cfg.layers + 1):
        B = f"b{b}."
        n1 = layer_norm(x, p[B + "gamma1"], p[B + "beta1"], cfg.ln_eps, out, B + "LN1")
        heads = []
        for h in range(1, H + 1):
            hh = f"{B}h{h}."
            q, k, v = n1 @ p[hh + "W_q"], n1 @ p[hh + "W_k"], n1 @ p[hh + "W_v"]
            s = (q @ k.T) / np.sqrt(dk)
            a = np.zeros((T, T))
            for i in range(T):  # row i sees keys 0 … i (or all of them), max subtracted
                n = i + 1 if causal else T
                e = np.exp(s[i, :n] - s[i, :n].max())
                a[i, :n] = e / e.sum()
            o = a @ v
            out.update({hh + "Q": q, hh + "K": k, hh + "V": v, hh + "S": s, hh + "A": a, hh + "O": o})
            heads.append(o)
        concat = np.hstack(heads)
        if H > 1:
            out[B + "O"] = concat
        m = concat @ p[B + "W_o"]
        x1 = x + m
        n2 = layer_norm(x1, p[B + "gamma2"], p[B + "beta2"], cfg.ln_eps, out, B + "LN2")
        u = n2 @ p[B + "W_1"] + p[B + "b_1"]
        hidden = act(u, cfg.ffn)
        f = hidden @ p[B + "W_2"] + p[B + "b_2"]
        x = x1 + f
        out.update({B + "M": m, B + "X1": x1, B + "U": u, B + "H": hidden, B + "F": f, B + "X2": x})
    nf = layer_norm(x, p["gamma_f"], p["beta_f"], cfg.ln_eps, out, "LN_f")
    z = nf @ p["W_head"] + p["b_head"]
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -sum(np.log(probs[i, targets[i]]) for i in range(T)) / T
    out.update({"Z": z, "P": probs, "loss": np.array([[loss]])})
    return loss, out


def numeric_grad(p, name, inputs, targets, cfg, h=1e-5):
    """Central differences of numpy_forward's loss for every element of p[name]."""
    g = np.zeros_like(p[name])
    for idx in np.ndindex(*p[name].shape):
        nudged = {k: v.copy() for k, v in p.items()}
        nudged[name][idx] += h
        up = numpy_forward(nudged, inputs, targets, cfg)[0]
        nudged[name][idx] -= 2 * h
        down = numpy_forward(nudged, inputs, targets, cfg)[0]
        g[idx] = (up - down) / (2 * h)
    return g


# --- 1. forward and loss against numpy ----------------------------------------------------------

# what iteration 1 must show (those of a config that has them)
INTERMEDIATES = ["X", "b1.LN1_mu", "b1.LN1_var", "b1.LN1", "b1.h1.Q", "b1.h1.K", "b1.h1.V", "b1.h1.S",
                 "b1.h1.A", "b1.h2.A", "b1.h2.O", "b1.O", "b1.M", "b1.X1", "b1.LN2", "b1.U", "b1.H",
                 "b1.F", "b1.X2", "b2.LN1", "b2.h4.A", "b2.h4.O", "b2.O", "b2.X1", "b2.H", "b2.X2",
                 "LN_f_var", "LN_f", "Z", "P"]


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_loss_and_tensors_match_an_independent_numpy_forward(options):
    cfg = config(**options)
    tape = transformer.trace(cfg)
    _, inputs, targets = sequence(cfg)
    V = len(tape.meta["tokenized"].vocab)
    # the data: ids are the inputs, Y the one-hot next token of each position (= the input after it)
    np.testing.assert_array_equal(of(tape, 0)["ids"].value.ravel(), inputs)
    np.testing.assert_array_equal(of(tape, 0)["Y"].value, np.eye(V)[targets])
    assert list(inputs[1:]) == list(targets[:-1])
    names = param_names(cfg)
    assert sorted(names) == sorted(t.name for t in tape.tensors if t.attrs.get("role") == "param")
    thetas = params_by_iteration(tape, names, cfg.iterations)
    for k in range(1, cfg.iterations + 1):
        loss, mine = numpy_forward(thetas[k - 1], inputs, targets, cfg)
        assert of(tape, k)["loss"].value[0, 0] == pytest.approx(loss, rel=1e-10), k
        if k == 1:
            it = of(tape, 1)
            wanted = [n for n in INTERMEDIATES if n in mine]
            assert len(wanted) >= 15 and "P" in wanted and "b1.h1.A" in wanted
            for name in wanted:
                np.testing.assert_allclose(it[name].value, mine[name], rtol=1e-10, atol=1e-12, err_msg=name)


# --- 2. the SGD update against central differences of the numpy loss -------------------------------

@pytest.mark.parametrize("name", ["E", "b1.h1.W_q", "b1.gamma2", "W_head"])
def test_sgd_update_follows_numpy_finite_differences(name):
    cfg = config()
    tape = transformer.trace(cfg)
    _, inputs, targets = sequence(cfg)
    before, after = of(tape, 0)[name].value, of(tape, 1)[name].value
    p = {n: of(tape, 0)[n].value for n in param_names(cfg)}
    g = numeric_grad(p, name, inputs, targets, cfg)
    implied = (before - after) / cfg.lr  # θ₁ = θ₀ − lr·g  ⇒  g = (θ₀ − θ₁)/lr
    assert np.abs(g).max() > 1e-3  # a real gradient, not a vacuous comparison
    err = np.abs(implied - g).max() / np.abs(g).max()
    assert err < 1e-6, (name, err)
    np.testing.assert_allclose(after, before - cfg.lr * g, rtol=0, atol=1e-6 * cfg.lr * np.abs(g).max())


# --- 3. tracer's gradcheck, every parameter element ----------------------------------------------

GRADCHECK = {
    "defaults": {},
    "layers2-gelu": {"layers": 2, "ffn": "gelu"},
    "heads4": {"heads": 4},
    "adam": {"optimizer": "adam"},
}


@pytest.mark.parametrize("options", GRADCHECK.values(), ids=GRADCHECK.keys())
def test_gradcheck_every_parameter(options):
    cfg = config(**options)
    tape = transformer.trace(cfg)
    names = param_names(cfg)
    for k in (1, cfg.iterations):
        (report,) = gradcheck(tape, k)
        assert [c.name for c in report.checks] == names
        assert all(c.checked == c.size for c in report.checks)
        assert report.ok and report.max_rel < 1e-6, "\n".join(report.lines())


@pytest.mark.parametrize("options", [{}, {"tokenizer": "char"}, {"tokenizer": "bpe", "corpus": "es"}],
                         ids=["defaults", "char", "bpe-es"])
def test_embedding_gradient_only_in_the_rows_of_used_tokens(options):
    cfg = config(**options)
    tape = transformer.trace(cfg)
    _, inputs, _ = sequence(cfg)
    V = len(tape.meta["tokenized"].vocab)
    used = sorted(set(inputs))
    unused = sorted(set(range(V)) - set(used))
    if options:  # these texts have tokens the T inputs never reach
        assert unused
    for k in (1, cfg.iterations):
        g = of(tape, k)["dL/dE"].value
        assert g.shape == (V, cfg.d_model)
        assert np.all(g[unused] == 0), (k, unused)
        assert all(np.abs(g[v]).max() > 1e-8 for v in used), (k, used)
        # and the update leaves those rows exactly as they were (SGD)
        np.testing.assert_array_equal(of(tape, k)["E"].value[unused], of(tape, k - 1)["E"].value[unused])


# --- 4. training works ---------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_falls_with_the_defaults(seed, optimizer):
    tape = transformer.trace(config(seed=seed, optimizer=optimizer))
    losses = [float(t.value[0, 0]) for t in tape.tensors if t.name == "loss"]
    assert len(losses) == 4
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


# --- 5. structure, the CLI's check, the template -------------------------------------------------

def test_names_of_every_head_and_block():
    cfg = config(layers=3, heads=4, d_model=8)
    tape = transformer.trace(cfg)
    it = of(tape, 1)
    T, dk = cfg.context, cfg.d_model // cfg.heads
    for b in range(1, cfg.layers + 1):
        for h in range(1, cfg.heads + 1):
            for part, shape in (("Q", (T, dk)), ("K", (T, dk)), ("V", (T, dk)), ("S", (T, T)),
                                ("A", (T, T)), ("O", (T, dk))):
                name = f"b{b}.h{h}.{part}"
                assert name in it and it[name].phase == "forward" and it[name].shape == shape, name
        for part in ("LN1", "O", "M", "X1", "LN2", "H", "F", "X2"):
            assert f"b{b}.{part}" in it, f"b{b}.{part}"
        assert it[f"b{b}.X2"].shape == (T, cfg.d_model)
    assert f"b{cfg.layers + 1}.X2" not in it and "b1.h5.Q" not in it
    # the last block's output is what the final LayerNorm normalizes
    assert it["LN_f_mu"].inputs[0] is it[f"b{cfg.layers}.X2"]


def test_d_model_not_a_multiple_of_heads_is_a_one_line_error(run_main, tmp_path):
    out = tmp_path / "t.xlsx"
    code, _, err = run_main("run", "transformer", "--d-model", 6, "--heads", 4, "-o", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "--d-model 6" in lines[0] and "--heads 4" in lines[0] and "Traceback" not in err
    assert not out.exists()


def base_name(name: str) -> str:
    """The tensor a gradient (dL/dX via Y) or an Adam state (m[W]) is about."""
    while True:
        grad, state = GRAD.fullmatch(name), STATE.fullmatch(name)
        if grad:
            name = grad[2].partition(VIA)[0]
        elif state:
            name = state[2]
        else:
            return name


@pytest.mark.parametrize("lang", ["en", "es"])
def test_every_tensor_has_template_text(lang):
    tpl = Template("transformer", lang)
    names = set()
    for optimizer in ("sgd", "adam"):
        names |= {t.name for t in transformer.trace(config(optimizer=optimizer)).tensors}
    assert {"m[E]", "dL/db1.LN1 via b1.h2.Q", "t"} <= names
    missing = sorted(n for n in names if not tpl._entry(base_name(n)).get(lang))
    assert not missing, missing
    assert tpl.symbol("b1.h2.Q") == "Q₂⁽¹⁾"


# --- 6. the attention weights -----------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"layers": 2, "heads": 4}], ids=["defaults", "layers2-heads4"])
def test_attention_weights_are_causal(options):
    cfg = config(**options)
    tape = transformer.trace(cfg)
    A = [t for t in tape.tensors if t.name.endswith(".A") and t.phase == "forward"]
    assert len(A) == cfg.iterations * cfg.layers * cfg.heads
    for t in A:
        assert t.shape == (cfg.context, cfg.context)
        assert np.all(np.triu(t.value, 1) == 0), t.key  # no position looks ahead
        assert np.all(t.value[np.tril_indices(cfg.context)] > 0), t.key  # and every allowed one gets some weight
        np.testing.assert_allclose(t.value.sum(axis=1), 1, rtol=1e-14, err_msg=t.key)
