"""Text generation after training, recorded: greedy decoding and sampling at several temperatures,
each step a run of the trained model on the text so far (the ops are tracer.core.generation's).

A model without state (attention, transformer) reads the whole text again at each step (its last
`context` tokens once longer); a recurrent one (rnn, lstm) carries its state and reads only the
new token: it comes as a `Stateful`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tracer.core.activations import softmax
from tracer.core.generation import (
    append_row,
    argmax,
    cumsum,
    divide,
    sample,
    stack_rows,
    take_rows,
)
from tracer.core.op import COPY


def _last_z(logits, ids, name):
    """The logits of the last position: the next token's."""
    if logits.shape[0] != ids.shape[0]:
        raise ValueError(f"generate: logits_of returned {logits.shape[0]} rows of logits for {ids.shape[0]} ids")
    return take_rows(logits, ids.shape[0] - 1, 1, name=name)


@dataclass
class Stateful:
    """A model that carries a state from token to token (a recurrent network):
    start(prompt (P, 1), prefix) -> (z (1, V), state): it reads the prompt; z the next-token scores;
    resume(text (m, 1), token (1, 1), state, prefix) -> (z, state): it reads one more token, the
    last of the text.  Each names what it records prefix + name, z included (prefix + "z")."""

    start: Callable
    resume: Callable


def rerun(logits_of, context) -> Stateful:
    """A model without state as a Stateful: each step runs logits_of(ids (m, 1), prefix) -> (m, V)
    on the whole text (its last `context` tokens once longer) and takes the last row."""
    def start(prompt, prefix):
        return _last_z(logits_of(prompt, prefix), prompt, prefix + "z"), None

    def resume(text, token, state, prefix):
        rows = text.shape[0]
        ids = text if rows <= context else take_rows(text, rows - context, context, name=prefix + "window")
        return _last_z(logits_of(ids, prefix), ids, prefix + "z"), None

    return Stateful(start, resume)


def _sampled(z, tau, rng, p):
    """One sampled token from the logits z at temperature tau: (token, P); p the name prefix."""
    P = softmax(divide(z, tau, name=p + "z/τ"), name=p + "P")
    cum = cumsum(P, name=p + "cum")
    u = z.tape.constant(p + "u", [[rng.uniform()]], role="draw")
    return sample(cum, u, name=p + "token"), P


def generate(tape, logits_of, prompt_ids, context, steps, temperatures, rng) -> list[tuple[str, list[int]]]:
    """Record, on the tape's current iteration and in the phase "after", greedy decoding and one
    sampled continuation per temperature, each `steps` tokens long.

    logits_of(ids (m, 1), prefix) -> logits (m, V): the trained model's forward for m ≤ context
    tokens, naming what it records prefix + name; or a Stateful (a recurrent model, which reads
    only each new token and so needs no window).  rng: a numpy Generator for the draws.

    Recorded (names exactly; k = 1, 2, … numbers the temperatures, n the generated token):
      section "generate_prompt" (step 1, shared: every chain starts from the prompt):
        "prompt" (P, 1) ids (role data); "tau<k>" (1, 1) = τ_k, phase input, role hyper, the
        named cell "tau_<k>" on the overview; the model's "[prompt] …"; "[prompt] z" (1, V) the
        last row; "[greedy 1] token" = argmax; per temperature "[τk 1] z/τ", "[τk 1] P" (softmax),
        "[τk 1] cum", "[τk 1] u" (a draw, role draw), "[τk 1] token" = sample; "P by temperature"
        (K, V) when there are temperatures; then "[greedy 1] text" and "[τk 1] text" (P+1, 1).
      section "generate_greedy:<n>" (n ≥ 2): "[greedy n] window" (context, 1), only when the
        text is longer than the context (not for a Stateful): its last `context` ids; the model's
        "[greedy n] …";
        "[greedy n] z", "[greedy n] token", "[greedy n] text" (P+n, 1).
      section "generate_sample:<n>:<τ:g>" (n ≥ 2), chain after chain: the same with "[τk n]"
        and z/τ, P, cum, u, token between z and text.
      section "generate_result": "generated (greedy)" and "generated (τk)", copies of each
        chain's final text (P+steps, 1).
    Draw order: the first step's u for every temperature, then each chain's steps 2 … steps.

    Returns [("greedy", ids), (f"{τ:g}", ids), …]: each chain's prompt + generated ids.
    The tape's phase and section are restored afterwards.
    """
    prompt_ids = [int(i) for i in prompt_ids]
    temperatures = [float(t) for t in temperatures]
    if not prompt_ids:
        raise ValueError("generate: the prompt is empty: give at least one token")
    if len(prompt_ids) > context:
        raise ValueError(f"generate: the prompt has {len(prompt_ids)} tokens, more than the context of {context}")
    if steps < 1:
        raise ValueError(f"generate: steps must be at least 1, got {steps}")
    for tau in temperatures:
        if not tau > 0:
            raise ValueError(f"generate: every temperature must be greater than 0, got {tau:g}")

    saved = tape.phase, tape.section
    tape.at("after", "generate_prompt")
    prompt = tape.constant("prompt", np.array(prompt_ids, dtype=np.float64).reshape(-1, 1), role="data", integer=True,
                           decode=True)  # decode: the workbook shows each id's token beside it
    taus = [tape.constant(f"tau{k}", [[tau]], phase="input", role="hyper", defined_name=f"tau_{k}")
            for k, tau in enumerate(temperatures, start=1)]

    reader = logits_of if isinstance(logits_of, Stateful) else rerun(logits_of, context)
    # step 1, shared: one forward pass over the prompt feeds every chain
    z, state = reader.start(prompt, "[prompt] ")
    first = [argmax(z, name="[greedy 1] token")]
    probs = []
    for k, tau in enumerate(taus, start=1):
        token, P = _sampled(z, tau, rng, f"[τ{k} 1] ")
        first.append(token)
        probs.append(P)
    if probs:
        stack_rows(probs, name="P by temperature")
    labels = ["greedy"] + [f"τ{k}" for k in range(1, len(taus) + 1)]
    texts = [append_row(prompt, token, name=f"[{label} 1] text") for label, token in zip(labels, first)]

    # steps 2 …: each chain runs the model on its own text (its last `context` ids once longer),
    # or a recurrent model on its new token from the state the chain has reached
    for c, (label, text, token) in enumerate(zip(labels, texts, first)):
        chain_state = state
        for n in range(2, steps + 1):
            p = f"[{label} {n}] "
            tape.at("after", f"generate_greedy:{n}" if c == 0 else f"generate_sample:{n}:{temperatures[c - 1]:g}")
            z, chain_state = reader.resume(text, token, chain_state, p)
            token = argmax(z, name=p + "token") if c == 0 else _sampled(z, taus[c - 1], rng, p)[0]
            text = append_row(text, token, name=p + "text")
        texts[c] = text

    tape.at("after", "generate_result")
    finals = [tape.apply(COPY, text, name=f"generated ({label})", decode=True) for label, text in zip(labels, texts)]
    tape.at(*saved)
    names = ["greedy"] + [f"{tau:g}" for tau in temperatures]
    return [(name, [int(v) for v in t.value[:, 0]]) for name, t in zip(names, finals)]
