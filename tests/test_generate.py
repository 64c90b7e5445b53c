"""tracer.generate: generation after training, as recorded ops whose cells are formulas.

* each op's numpy forward against an independent reference (loops, np.searchsorted), with the
  edge cases (ties, a draw beyond the last cumulative value, u = 0, zero probabilities);
* generate() on a toy model (embedding lookup + a slice of a positional matrix, times a fixed
  matrix) against a pure-numpy re-implementation of greedy decoding and inverse-CDF sampling
  with the same draws; names, sections, the sliding window, argument checks;
* the formulas: their text, their portability, their values recalculated in LibreOffice, and
  broken formulas that the check catches.
"""

from __future__ import annotations

import math
import re
import types

import numpy as np
import pytest
from conftest import ops_template
from families import BASIC, GENERATION, LANGUAGE, ops_of

from tracer.checks import verify
from tracer.core import OPS, activations, embeddings, generation, linalg
from tracer.core import op as core_op
from tracer.core.tape import Tape
from tracer.models import generation as generation_loop
from tracer.render.layout import Block, Cells, Layout, Place
from tracer.render.template import LANGS, _load
from tracer.render.xlsx import write_xlsx

GENERATION_OPS = ops_of(GENERATION)


def rng(tag: str):
    return np.random.default_rng([20240612, sum(map(ord, tag)), len(tag)])


# --- independent references ---------------------------------------------------------------------

def ref_take_rows(x, start, n):
    return np.array([[x[start + i, j] for j in range(x.shape[1])] for i in range(n)])


def ref_append_row(seq, tok):
    return np.array([[v] for v in list(seq[:, 0]) + [tok[0, 0]]])


def ref_divide(a, b):
    return np.array([[v / b[0, 0] for v in row] for row in a])


def ref_cumsum(p):
    out = np.empty(p.shape)
    for i, row in enumerate(p):
        total = 0.0
        for j, v in enumerate(row):
            total += v
            out[i, j] = total
    return out


def ref_argmax(z):
    """By hand: the first column holding the row's largest value."""
    return np.array([[float(list(row).index(max(row)))] for row in z])


def ref_sample(cum, u):
    """Inverse CDF: the number of cumulative values ≤ u (np.searchsorted), at most V − 1."""
    V = cum.shape[1]
    return np.array([[float(min(np.searchsorted(row, ui[0], side="right"), V - 1))] for row, ui in zip(cum, u)])


def ref_stack_rows(*xs):
    return np.array([x[0] for x in xs])


def ref_top(p, k, ids):
    """The k largest of a row by repeated search, the first column on ties: ids or values."""
    left, out = list(p[0]), []
    for _ in range(k):
        best = None
        for c, v in enumerate(left):
            if v is not None and (best is None or v > left[best]):
                best = c
        out.append(best if ids else left[best])
        left[best] = None
    return np.array(out, dtype=float).reshape(-1, 1)


def ref_fill_masks(ids, best, mask):
    return np.array([[b[0] if i[0] == mask[0, 0] else i[0]] for i, b in zip(ids, best)])


def ref_softmax(x):
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = math.fsum(e)
    return np.array([v / s for v in e])


# --- forward ---------------------------------------------------------------------------------------

def forward_cases():
    r = rng("forward")
    n = r.normal
    p = np.array([[0.1, 0.2, 0.3, 0.4]])
    cum = np.cumsum(p, axis=1)
    short = np.array([[0.25, 0.5, 0.75, 1 - 2**-40]])  # the last value rounded below 1
    zero_first = np.cumsum([[0.0, 0.0, 0.5, 0.5]], axis=1)
    cases = [
        ("take_rows 1,2", generation.take_rows_op(1, 2), [n(size=(4, 3))], lambda x: ref_take_rows(x, 1, 2)),
        ("take_rows last", generation.take_rows_op(4, 1), [n(size=(5, 6))], lambda x: ref_take_rows(x, 4, 1)),
        ("take_rows all", generation.take_rows_op(0, 3), [n(size=(3, 1))], lambda x: ref_take_rows(x, 0, 3)),
        ("append_row", generation.APPEND_ROW, [np.array([[3.0], [1.0], [4.0]]), np.array([[2.0]])], ref_append_row),
        ("append_row to 1", generation.APPEND_ROW, [np.array([[0.0]]), np.array([[5.0]])], ref_append_row),
        ("divide", generation.DIVIDE, [n(size=(1, 6)), np.array([[0.7]])], ref_divide),
        ("divide 2 rows", generation.DIVIDE, [n(size=(2, 3)), np.array([[2.5]])], ref_divide),
        ("cumsum", generation.CUMSUM, [activations.SOFTMAX.forward(n(size=(1, 7)))], ref_cumsum),
        ("cumsum 2 rows", generation.CUMSUM, [n(size=(2, 4))], ref_cumsum),
        ("argmax", generation.ARGMAX, [n(size=(1, 8))], ref_argmax),
        ("argmax ties: the first", generation.ARGMAX, [np.array([[1.0, 3.0, -2.0, 3.0, 3.0]])], ref_argmax),
        ("argmax all equal", generation.ARGMAX, [np.zeros((1, 4))], ref_argmax),
        ("argmax 3 rows", generation.ARGMAX, [np.array([[0.0, 1.0], [2.0, 1.0], [5.0, 5.0]])], ref_argmax),
        ("argmax V=1", generation.ARGMAX, [np.array([[-7.0]])], ref_argmax),
        ("sample u=0", generation.SAMPLE, [cum, np.array([[0.0]])], ref_sample),
        ("sample u=0, leading zeros skipped", generation.SAMPLE, [zero_first, np.array([[0.0]])], ref_sample),
        ("sample middle", generation.SAMPLE, [cum, np.array([[0.45]])], ref_sample),
        ("sample on a boundary", generation.SAMPLE, [np.array([[0.25, 0.5, 0.75, 1.0]]), np.array([[0.5]])], ref_sample),
        ("sample u beyond the last", generation.SAMPLE, [short, np.array([[1 - 2**-50]])], ref_sample),
        ("sample u just under the last", generation.SAMPLE, [cum, np.array([[np.nextafter(cum[0, 2], 0)]])], ref_sample),
        ("sample V=1", generation.SAMPLE, [np.array([[1.0]]), np.array([[0.3]])], ref_sample),
        ("sample 2 rows", generation.SAMPLE, [np.vstack([cum, short]), np.array([[0.05], [0.99]])], ref_sample),
        ("stack_rows 1", generation.STACK_ROWS, [n(size=(1, 5))], ref_stack_rows),
        ("stack_rows 3", generation.STACK_ROWS, [n(size=(1, 4)), n(size=(1, 4)), n(size=(1, 4))], ref_stack_rows),
        ("top_ids", generation.TOP_IDS, [np.array([[0.1, 0.4, 0.05, 0.3, 0.15]])], lambda p: ref_top(p, 3, True)),
        ("top_ids ties: the first", generation.TOP_IDS, [np.array([[0.2, 0.3, 0.2, 0.3]])], lambda p: ref_top(p, 3, True)),
        ("top_values", generation.TOP_VALUES, [np.array([[0.1, 0.4, 0.05, 0.3, 0.15]])], lambda p: ref_top(p, 3, False)),
        ("fill_masks", generation.FILL_MASKS, [np.array([[0.0], [5.0], [2.0], [5.0]]), np.array([[3.0], [1.0], [4.0], [0.0]]),
                                               np.array([[5.0]])], ref_fill_masks),
    ]
    return cases


FORWARD = forward_cases()


def test_every_op_has_a_case_and_one_name():
    assert {op.name for _, op, _, _ in FORWARD} == set(GENERATION_OPS)
    assert all(op.name == name for name, op in GENERATION_OPS.items())
    assert not set(GENERATION_OPS) & (set(BASIC) | set(LANGUAGE))  # no clashes
    assert generation.take_rows_op(1, 2) is generation.take_rows_op(1, 2) and generation.take_rows_op(1, 2) in generation.instances()
    assert {op.name for op in generation.instances()} == set(GENERATION_OPS)


@pytest.mark.parametrize("case, op, inputs, ref", FORWARD, ids=[c[0] for c in FORWARD])
def test_forward_matches_reference(case, op, inputs, ref):
    tape = Tape()
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(op, *ts, name="out")
    expected = ref(*inputs)
    assert out.value.dtype == np.float64 and out.shape == expected.shape
    np.testing.assert_allclose(out.value, expected, rtol=1e-15, atol=0)


def test_sample_edge_values():
    cum = np.array([[0.1, 0.3, 0.6, 1.0]])
    f = lambda u, c=cum: generation.SAMPLE.forward(c, np.array([[u]]))[0, 0]
    assert [f(0.0), f(0.0999), f(0.1), f(0.3), f(0.59), f(0.6), f(0.999)] == [0, 0, 1, 2, 2, 3, 3]
    assert f(1.0) == f(5.0) == 3  # beyond the last value: V − 1, never V
    low = np.array([[0.25, 0.5, 0.75, 0.9999999]])  # rounding left the sum below 1
    assert f(0.99999995, low) == 3
    zeros = np.cumsum([[0.5, 0.0, 0.0, 0.5]], axis=1)  # tokens 1 and 2 have probability 0
    assert {f(u, zeros) for u in np.linspace(0, 0.999, 500)} == {0.0, 3.0}


def test_sampling_draws_each_token_with_its_probability():
    """Draws spread evenly over [0, 1) land on each token in proportion to its probability."""
    p = np.array([[0.05, 0.25, 0.0, 0.3, 0.4]])
    cum = generation.CUMSUM.forward(p)
    N = 2000
    tokens = [generation.SAMPLE.forward(cum, np.array([[(k + 0.5) / N]]))[0, 0] for k in range(N)]
    counts = np.bincount(np.array(tokens, dtype=int), minlength=5)
    assert np.all(np.abs(counts - N * p[0]) <= 1), counts


def test_argmax_is_greedy_and_temperature_keeps_it():
    z = rng("argmax").normal(size=(1, 9))
    best = int(generation.ARGMAX.forward(z)[0, 0])
    for tau in (0.1, 1.0, 7.0):
        P = activations.SOFTMAX.forward(generation.DIVIDE.forward(z, np.array([[tau]])))
        assert int(np.argmax(P)) == best
    # a low temperature concentrates the probability on the argmax, a high one evens it out
    sharp = activations.SOFTMAX.forward(z / 0.05)[0, best]
    flat = activations.SOFTMAX.forward(z / 100)[0]
    assert sharp > 0.99 and flat.max() - flat.min() < 0.05


ONE_CASE_PER_OP = {c[1].name: (c[1], c[2]) for c in reversed(FORWARD)}  # the first case of each op


@pytest.mark.parametrize("op, inputs", list(ONE_CASE_PER_OP.values()), ids=list(ONE_CASE_PER_OP))
def test_no_gradient_after_training(op, inputs):
    tape = Tape()
    tape.at("forward")
    ts = [tape.constant(f"in{k}", a) for k, a in enumerate(inputs)]
    out = tape.apply(op, *ts, name="out")
    loss = tape.apply(linalg.SUM_ALL, out, name="L")
    with pytest.raises(ValueError, match=f"^{op.name}: no gradient: generation happens after training$"):
        tape.backward(loss, {f"in{k}": t for k, t in enumerate(ts)})


def test_ops_check_their_inputs():
    tape = Tape()
    x = tape.constant("x", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="rows 2 … 3 of a tensor of 3 rows"):
        generation.take_rows(x, 2, 2)
    with pytest.raises(ValueError, match="append_row"):
        generation.append_row(x, tape.constant("t", [[1.0]]))
    with pytest.raises(ValueError, match="stack_rows"):
        generation.stack_rows([tape.constant("a", np.zeros((1, 3))), tape.constant("b", np.zeros((1, 4)))])
    with pytest.raises(ValueError, match="one draw per row"):
        generation.sample(tape.constant("c", np.zeros((1, 3))), tape.constant("u", np.zeros((1, 2))))


# --- formulas: their text -----------------------------------------------------------------------

def _cells(places, out):
    return Cells(types.SimpleNamespace(place=places), out)


def test_formula_text():
    tape = Tape()
    x = tape.constant("x", np.zeros((4, 2)))
    p = tape.constant("p", np.full((1, 4), 0.25))
    u = tape.constant("u", [[0.5]])
    tau = tape.constant("tau1", [[0.5]], role="hyper", defined_name="tau_1")
    seq, tok = tape.constant("seq", np.zeros((2, 1))), tape.constant("tok", [[1.0]])
    out = {
        "take": generation.take_rows(x, 1, 2), "cum": generation.cumsum(p), "arg": generation.argmax(p), "smp": generation.sample(p, u),
        "div": generation.divide(p, tau), "app": generation.append_row(seq, tok), "stk": generation.stack_rows([p, p]),
    }
    places = {id(x): Place("In", 1, 1, 4, 2), id(p): Place("S", 10, 1, 1, 4, transposed=True),
              id(u): Place("S", 30, 1, 1, 1), id(seq): Place("S", 50, 1, 2, 1), id(tok): Place("S", 60, 1, 1, 1),
              id(tau): Place("Overview", 5, 2, 1, 1)}
    places.update({id(t): Place("S", 100, 1, *t.shape) for t in out.values()})

    def f(name, i, j):
        return out[name].op.formula(_cells(places, out[name]), i, j)

    assert f("take", 0, 1) == "'In'!C3" and f("take", 1, 0) == "'In'!B4"
    assert f("cum", 0, 0) == "SUM(B11)" and f("cum", 0, 2) == "SUM(B11:B13)"  # p runs down
    assert f("arg", 0, 0) == "MATCH(MAX(B11:B14),B11:B14,0)-1"
    assert f("smp", 0, 0) == "SUMPRODUCT((B11:B13<=B31)*1)"  # the last cell is never compared
    assert f("div", 0, 3) == "B14/tau_1"
    assert [f("app", i, 0) for i in range(3)] == ["B51", "B52", "B61"]
    assert f("stk", 1, 2) == "B13"
    places[id(p)] = Place("S", 10, 1, 1, 4)  # p runs across
    assert f("cum", 0, 3) == "SUM(B11:E11)" and f("smp", 0, 0) == "SUMPRODUCT((B11:D11<=B31)*1)"
    p1 = tape.constant("p1", [[1.0]])
    one = generation.sample(p1, u)
    places.update({id(p1): Place("S", 70, 1, 1, 1), id(one): Place("S", 80, 1, 1, 1)})
    assert one.op.formula(_cells(places, one), 0, 0) == "0"  # one token: always token 0


# --- generate() on a toy model -----------------------------------------------------------------------

V, D = 6, 3


def toy(tape, context, seed="toy"):
    """Parameters E (V, d), PE (context, d), W (d, V) and the model's forward: logits =
    (E[ids] + PE[0 … m−1]) · W, recorded as <prefix>X, <prefix>PE, <prefix>H, <prefix>logits."""
    r = rng(seed)
    E = tape.constant("E", 2 * r.normal(size=(V, D)), role="param")
    PE = tape.constant("PE", r.normal(size=(context, D)), role="param")
    W = tape.constant("W", r.normal(size=(D, V)), role="param")

    def logits_of(ids, prefix):
        X = embeddings.embed(E, ids, name=prefix + "X")
        pe = generation.take_rows(PE, 0, ids.shape[0], name=prefix + "PE")
        H = linalg.add(X, pe, name=prefix + "H")
        return tape.apply(linalg.MATMUL, H, W, name=prefix + "logits")

    return (E.value, PE.value, W.value), logits_of


def ref_generate(E, PE, W, prompt, context, steps, temps, seed):
    """Pure numpy: greedy and inverse-CDF sampling; the draws from a fresh generator, in the
    documented order (step 1 of every temperature, then each chain's later steps)."""
    draws = np.random.default_rng(seed)

    def next_z(ids):
        ids = ids[-context:]  # the sliding window
        return ((E[ids] + PE[:len(ids)]) @ W)[-1]

    def sampled(z, tau, u):
        cum = np.cumsum(ref_softmax(z / tau))
        return int(min(np.searchsorted(cum, u, side="right"), V - 1))

    z0 = next_z(list(prompt))
    first_u = [draws.uniform() for _ in temps]
    chains = [list(prompt) + [int(np.argmax(z0))]]
    chains += [list(prompt) + [sampled(z0, tau, u)] for tau, u in zip(temps, first_u)]
    for ids in chains[0:1]:
        for _ in range(steps - 1):
            ids.append(int(np.argmax(next_z(ids))))
    for ids, tau in zip(chains[1:], temps):
        for _ in range(steps - 1):
            ids.append(sampled(next_z(ids), tau, draws.uniform()))
    return chains, first_u


def run(prompt=(1, 4), context=3, steps=4, temps=(0.5, 3.0), seed=7, iteration=2):
    tape = Tape()
    params, logits_of = toy(tape, context)
    tape.iteration = iteration
    tape.at("update", "somewhere")
    out = generation_loop.generate(tape, logits_of, list(prompt), context, steps, list(temps), np.random.default_rng(seed))
    return tape, params, out


def test_generate_matches_a_numpy_reimplementation():
    for prompt, context, steps, temps, seed in [((1, 4), 3, 5, (0.5, 3.0), 7), ((2,), 4, 6, (1.0, 10.0, 0.2), 3),
                                                ((5, 0, 5), 3, 1, (2.0,), 11), ((3, 3), 2, 4, (), 0)]:
        tape, (E, PE, W), out = run(prompt, context, steps, temps, seed)
        chains, first_u = ref_generate(E, PE, W, prompt, context, steps, temps, seed)
        assert out == [("greedy", chains[0])] + [(f"{t:g}", c) for t, c in zip(temps, chains[1:])]
        assert all(len(ids) == len(prompt) + steps for _, ids in out)
        by = {t.name: t for t in tape.tensors}
        for k, (tau, u) in enumerate(zip(temps, first_u), start=1):
            assert by[f"[τ{k} 1] u"].value[0, 0] == u
            z = by["[prompt] z"].value[0]
            np.testing.assert_allclose(by[f"[τ{k} 1] P"].value[0], ref_softmax(z / tau), rtol=1e-14)
            np.testing.assert_allclose(by["P by temperature"].value[k - 1], ref_softmax(z / tau), rtol=1e-14)


def test_sampling_is_not_greedy_and_temperature_matters():
    """The toy case used below: the hot chain leaves the greedy path, the cold one follows it."""
    _, _, out = run(steps=6, temps=(0.05, 5.0), seed=7)
    ids = dict(out)
    assert ids["0.05"] == ids["greedy"] and ids["5"] != ids["greedy"]


def test_draws_come_from_rng_one_per_sampled_token():
    r = np.random.default_rng(5)
    tape = Tape()
    _, logits_of = toy(tape, 3)
    generation_loop.generate(tape, logits_of, [1], 3, 4, [1.0, 2.0], r)
    fresh = np.random.default_rng(5)
    fresh.uniform(size=2 * 4)
    assert r.uniform() == fresh.uniform()
    draws = [t for t in tape.tensors if t.attrs.get("role") == "draw"]
    assert [t.name for t in draws] == ["[τ1 1] u", "[τ2 1] u", "[τ1 2] u", "[τ1 3] u", "[τ1 4] u",
                                       "[τ2 2] u", "[τ2 3] u", "[τ2 4] u"]


SAMPLED = ("z/τ", "P_exp", "P_sum", "P", "cum", "u", "token")  # a sampled token's steps (P in its three)


def expected_records(prompt_len, context, steps, temps):
    """(name, section) of every tensor generate records with the toy model, in order."""
    model = ["X", "PE", "H", "logits"]
    out = [("prompt", "generate_prompt")] + [(f"tau{k}", "generate_prompt") for k in range(1, len(temps) + 1)]
    out += [(f"[prompt] {m}", "generate_prompt") for m in model]
    out += [("[prompt] z", "generate_prompt"), ("[greedy 1] token", "generate_prompt")]
    for k in range(1, len(temps) + 1):
        out += [(f"[τ{k} 1] {m}", "generate_prompt") for m in SAMPLED]
    if temps:
        out.append(("P by temperature", "generate_prompt"))
    labels = ["greedy"] + [f"τ{k}" for k in range(1, len(temps) + 1)]
    out += [(f"[{label} 1] text", "generate_prompt") for label in labels]
    for c, label in enumerate(labels):
        for n in range(2, steps + 1):
            section = f"generate_greedy:{n}" if c == 0 else f"generate_sample:{n}:{temps[c - 1]:g}"
            p = f"[{label} {n}] "
            window = [p + "window"] if prompt_len + n - 1 > context else []
            picked = ["token"] if c == 0 else list(SAMPLED)
            names = window + [p + m for m in model] + [p + "z"] + [p + m for m in picked] + [p + "text"]
            out += [(name, section) for name in names]
    out += [(f"generated ({label})", "generate_result") for label in labels]
    return out


@pytest.mark.parametrize("prompt, context, steps, temps", [
    ((1, 4), 3, 4, (0.5, 3.0)),  # the window slides from step 3 on
    ((2,), 5, 3, (1.5,)),  # never longer than the context
    ((1, 2, 3), 3, 2, ()),  # greedy only; a window from step 2
    ((4,), 1, 3, (0.25,)),  # a context of one token
])
def test_names_sections_and_phases(prompt, context, steps, temps):
    tape, _, _ = run(prompt, context, steps, temps, iteration=3)
    recorded = [t for t in tape.tensors if t.name not in ("E", "PE", "W")]
    assert [(t.name, t.section) for t in recorded] == expected_records(len(prompt), context, steps, temps)
    assert all(t.iteration == 3 for t in recorded)
    assert {t.phase for t in recorded if not t.name.startswith("tau")} == {"after"}
    for k, tau in enumerate(temps, start=1):
        t = next(t for t in recorded if t.name == f"tau{k}")
        assert (t.phase, t.attrs, t.value.tolist()) == ("input", {"role": "hyper", "defined_name": f"tau_{k}"}, [[tau]])
    roles = {t.name: t.attrs.get("role") for t in recorded if t.op is None}
    assert roles.pop("prompt") == "data" and all(r == ("hyper" if n.startswith("tau") else "draw")
                                                 for n, r in roles.items())
    assert (tape.phase, tape.section) == ("update", "somewhere")  # restored
    if not temps:
        assert not any("τ" in t.name or t.name == "P by temperature" for t in recorded)


def test_the_window_slides():
    tape, _, out = run(prompt=(1, 4), context=3, steps=5, temps=(2.0,))
    by = {t.name: t for t in tape.tensors}
    for label, ids in zip(("greedy", "τ1"), (out[0][1], out[1][1])):
        assert f"[{label} 2] window" not in by  # 3 ids: the text itself
        assert by[f"[{label} 2] X"].inputs[1] is by[f"[{label} 1] text"]
        for n in range(3, 6):  # 2 + n − 1 ids: the last 3
            window = by[f"[{label} {n}] window"]
            assert window.value[:, 0].tolist() == ids[n - 2:n + 1]
            assert window.inputs == (by[f"[{label} {n - 1}] text"],) and window.op is generation.take_rows_op(n - 2, 3)
            assert by[f"[{label} {n}] X"].inputs[1] is window and by[f"[{label} {n}] PE"].shape == (3, D)
        assert by[f"generated ({label})"].value[:, 0].tolist() == ids
        assert by[f"generated ({label})"].op is core_op.COPY


def test_greedy_only():
    tape, (E, PE, W), out = run(prompt=(0,), context=4, steps=3, temps=())
    chains, _ = ref_generate(E, PE, W, (0,), 4, 3, (), 0)
    assert out == [("greedy", chains[0])]
    assert not [t for t in tape.tensors if t.attrs.get("role") in ("draw", "hyper")]


@pytest.mark.parametrize("prompt, context, steps, temps, message", [
    ([], 3, 2, [1.0], "the prompt is empty"),
    ([1, 2, 3, 4], 3, 2, [1.0], "the prompt has 4 tokens, more than the context of 3"),
    ([1], 3, 0, [1.0], "steps must be at least 1, got 0"),
    ([1], 3, 2, [1.0, 0.0], "every temperature must be greater than 0, got 0"),
    ([1], 3, 2, [-0.5], "every temperature must be greater than 0, got -0.5"),
])
def test_generate_checks_its_arguments(prompt, context, steps, temps, message):
    tape = Tape()
    _, logits_of = toy(tape, 4)
    n = len(tape.tensors)
    with pytest.raises(ValueError, match=re.escape(message)):
        generation_loop.generate(tape, logits_of, prompt, context, steps, temps, np.random.default_rng(0))
    assert len(tape.tensors) == n  # nothing recorded


def test_logits_of_must_return_one_row_per_id():
    tape = Tape()
    _, logits_of = toy(tape, 4)
    with pytest.raises(ValueError, match="returned 1 rows of logits for 2 ids"):
        generation_loop.generate(tape, lambda ids, p: generation.take_rows(logits_of(ids, p), 0, 1), [1, 2], 4, 1, [], None)


# --- the workbook text: templates/common.toml ----------------------------------------------------

N_INPUTS = {"take_rows": 1, "append_row": 2, "divide": 2, "cumsum": 1, "argmax": 1, "sample": 2, "stack_rows": 1,
            "top_ids": 1, "top_values": 1, "fill_masks": 3}


def test_template_text_covers_every_op():
    common = _load("common")["ops"]
    assert set(N_INPUTS) == set(GENERATION_OPS)
    for name, n_in in N_INPUTS.items():
        entry = common[name]
        assert {"equation", *LANGS} <= set(entry) <= {"equation", "equation_es", *LANGS}, name
        assert entry["equation"].startswith("{out}"), name
        for text in (entry["equation"], entry.get("equation_es", ""), *(entry[lang] for lang in LANGS)):
            assert {int(k) for k in re.findall(r"\{(\d+)\}", text)} <= set(range(n_in)), (name, text)
            text.format(*[f"s{k}" for k in range(n_in)], out="y", all="+", **OPS[name].params())  # no stray braces
        for lang in LANGS:
            assert "{0}" in entry[lang], (name, lang)
    assert "temperatura" in common["divide"]["es"] and "temperature" in common["divide"]["en"]


# --- formulas in LibreOffice: the real exporter ---------------------------------------------------

SECTIONS = {
    "generate_prompt": {"en": "Step 1 from the prompt", "es": "Paso 1 desde el texto inicial"},
    "generate_greedy": {"en": "Greedy step {0}", "es": "Paso voraz {0}"},
    "generate_sample": {"en": "Sampling step {0} at τ = {1}", "es": "Paso de muestreo {0} con τ = {1}"},
    "generate_result": {"en": "The generated texts", "es": "Los textos generados"},
}


def gen_template(lang, tape):
    """common.toml's op text and titles for the generation sections (a model's [sections])."""
    tpl = ops_template(lang, "Generation")
    sections = dict(SECTIONS)
    for t in tape.tensors:  # also by full name, for a Template that does not split "name:args"
        key, *args = t.section.split(":")
        if args and key in SECTIONS:
            sections[t.section] = {k: v.format(*args) for k, v in SECTIONS[key].items()}
    tpl.model["sections"] = sections
    return tpl


def workbook_tape():
    """Trained parameters (iteration 0) and generation in iteration 1: a prompt of 2 tokens, a
    context of 3 (the window slides), greedy and two temperatures."""
    tape = Tape()
    _, logits_of = toy(tape, 3)
    tape.iteration = 1
    tape.at("forward")
    out = generation_loop.generate(tape, logits_of, [1, 4], 3, 5, [0.3, 4.0], np.random.default_rng(7))
    probs = next(t for t in tape.tensors if t.name == "[τ1 1] P")  # a masked model's fill-in ops
    generation.top_ids(probs, 3, name="top")
    generation.top_values(probs, 3, name="top P")
    masked = tape.constant("masked", [[1.0], [5.0], [2.0], [5.0]], role="data")
    best = tape.constant("best", [[3.0], [0.0], [4.0], [2.0]], role="data")
    generation.fill_masks(masked, best, tape.constant("mask id", [[5.0]], role="data"), name="filled")
    return tape, out


def export(tape, path, lang="en"):
    layout = Layout(tape, gen_template(lang, tape), {})
    write_xlsx(layout, path)
    return layout


@pytest.fixture(scope="module")
def exported(module_engine, tmp_path_factory):
    tape, out = workbook_tape()
    path = tmp_path_factory.mktemp("generate") / "generate.xlsx"
    layout = export(tape, path)
    return tape, out, layout, verify.verify_workbook(path, rtol=1e-12, atol=1e-14, engine=module_engine)


def test_workbook_recalculates_to_numpy(exported):
    tape, out, _, report = exported
    assert report.ok, report.format()
    assert report.n_formulas == sum(t.value.size for t in tape.tensors if t.op)
    assert {t.op.name for t in tape.tensors if t.op} >= set(GENERATION_OPS)
    names = {t.name for t in tape.tensors}
    assert "[greedy 3] window" in names and "[τ2 5] window" in names
    assert dict(out)["4"] != dict(out)["greedy"]  # a sampled token that is not the argmax


def test_workbook_shows_tau_as_named_cells_and_every_block(exported):
    tape, _, layout, _ = exported
    assert [h.attrs["defined_name"] for h in layout.hypers] == ["tau_1", "tau_2"]
    blocks = [p for s in layout.sheets for p in s.parts if isinstance(p, Block)]
    assert len(blocks) == sum(1 for t in tape.tensors if t.attrs.get("role") != "hyper")
    for lang in LANGS:
        tpl = gen_template(lang, tape)
        for b in blocks:
            if b.tensor.op is not None and b.tensor.op.name in GENERATION_OPS:
                assert tpl.note(b.tensor) and tpl.equation(b.tensor).startswith(tpl.symbol(b.tensor.name))


def check_formula(formula, defined):
    from test_portable import check_formula as portable

    portable(formula, set(defined))
    return set(re.findall(r"([A-Z][A-Z0-9.]*)\(", formula))


def test_every_formula_is_portable(exported):
    tape, _, layout, _ = exported
    defined = {t.attrs["defined_name"] for t in tape.tensors if t.attrs.get("defined_name")}
    used = set()
    n = 0
    for t in tape.tensors:
        if t.op is None:
            continue
        cells = Cells(layout, t)
        for i, j in np.ndindex(t.shape):
            f = t.op.formula(cells, i, j)
            used |= check_formula(f, defined)
            if t.op.name in GENERATION_OPS:
                n += 1
                assert "MIN(" not in f and ("IF(" not in f or t.op is generation.FILL_MASKS)  # sample: no MIN, no IF
    assert n > 100
    assert {"SUM", "MATCH", "MAX", "SUMPRODUCT", "LARGE"} <= used


def _broken(monkeypatch, tmp_path, cls, broken_formula, engine):
    """The toy workbook with one op's formula replaced: (tape, report)."""
    monkeypatch.setattr(cls, "formula", broken_formula)
    tape, _ = workbook_tape()
    path = tmp_path / "broken.xlsx"
    export(tape, path)
    return tape, verify.verify_workbook(path, rtol=1e-12, atol=1e-14, engine=engine)


def test_a_broken_sample_is_caught(engine, monkeypatch, tmp_path):
    """`<` against a shifted draw (u − 1): every sampled token becomes 0 in LibreOffice."""
    def broken(self, c, i, j):
        V = c.shape(0)[1]
        return f"SUMPRODUCT(({c.span(0, i, 0, i, V - 2)}<{c.at(1, i, 0)}-1)*1)"

    tape, report = _broken(monkeypatch, tmp_path, generation.Sample, broken, engine)
    assert any(t.op is generation.SAMPLE and t.value[0, 0] != 0 for t in tape.tensors)  # so something must change
    assert not report.ok and report.errors == [] and report.n_mismatches >= 1


def test_a_broken_argmax_is_caught(engine, monkeypatch, tmp_path):
    """MIN instead of MAX: the greedy tokens become the least likely ones."""
    def broken(self, c, i, j):
        row = c.row(0, i)[0]
        return f"MATCH(MIN({row}),{row},0)-1"

    tape, report = _broken(monkeypatch, tmp_path, generation.Argmax, broken, engine)
    assert not report.ok and report.errors == []
    greedy = [t for t in tape.tensors if t.op is generation.ARGMAX]
    assert report.n_mismatches >= len(greedy)  # every greedy token at least
