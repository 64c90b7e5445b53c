"""The models tracer can trace: each module has NAME, SUMMARY (what it is, without an article: the
help says "Trace the {SUMMARY}"), LOSSES, Config (a dataclass whose fields are the options, checked
by `validate`), size(config) -> Size (what the run will hold, estimated from the options alone:
tracer.core.size) and trace(config) -> Tape.  `trace` runs one as every command does: options
checked, sizes checked against the limits before any work, a diverging run refused in one line."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np

from tracer.core.size import DATA_FORMATS, MAX_CELLS, MAX_DATA_VALUES, MAX_FORMULA, MAX_ROWS, Size
from tracer.errors import TracerError
from tracer.models import (
    attention,
    bert,
    diffusion,
    flow,
    gan,
    lstm,
    mlp,
    pytorch,
    rnn,
    skipgram,
    transformer,
    vae,
)
from tracer.models import training

MODELS = {m.NAME: m for m in (vae, gan, skipgram, attention, transformer, bert, rnn, lstm, mlp, diffusion, flow,
                                  pytorch)}


def get(name: str):
    """The model called `name`; a TracerError listing the known ones otherwise."""
    if name not in MODELS:
        raise TracerError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name]


def validate(cfg) -> None:
    """The checks each Config field's metadata asks for (min=, max=, positive=, choices=, below=),
    every number finite, then the Config's own `check()` if it has one (checks across options)."""
    for f in dataclasses.fields(cfg):
        v, meta = getattr(cfg, f.name), f.metadata
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, float) and not math.isfinite(v):
            raise TracerError(f"{flag} must be a finite number (got {v})")
        if "min" in meta and v < meta["min"]:
            raise TracerError(f"{flag} must be at least {meta['min']} (got {v})")
        if "max" in meta and v > meta["max"]:
            raise TracerError(f"{flag} must be at most {meta['max']} (got {v})")
        if meta.get("positive") and not v > 0:
            raise TracerError(f"{flag} must be positive (got {v})")
        if "choices" in meta and v is not None and v not in meta["choices"]:
            raise TracerError(f"{flag} must be one of {', '.join(map(str, meta['choices']))} (got {v})")
        if "below" in meta and not v < meta["below"]:
            raise TracerError(f"{flag} must be below {meta['below']} (got {v})")
    if hasattr(cfg, "check"):
        cfg.check()


def variant(cfg, lang: str = "en") -> list[str]:
    """The options of `cfg` that differ from the model's defaults, as short words for a file name
    (tracer run's default output): a choice by its value (adam), a number by the option and its
    value (upscale4, hidden2), a file by its name (xor), a text after the option (prompt-el_gato).  A learning rate at its optimizer's
    default, a corpus that follows the language and an option set to what its default stands for
    (the mlp's --config classic_222) count as defaults."""
    words = []
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        default = default_of(cfg, f)
        if value is None or value == default or value == meta.get("default_is") or (f.name == "corpus" and value == lang):
            continue
        if meta.get("path"):
            word = Path(str(value)).stem
        elif "choices" in meta and isinstance(value, str):
            word = value
        elif isinstance(value, str):  # a text: the option, then the text
            word = f"{f.name.replace('_', '')}-{value}"
        else:
            word = f.name.replace("_", "") + (f"{value:g}" if isinstance(value, float) else str(value))
        words.append(re.sub(r"[^A-Za-z0-9.+-]+", "_", word)[:40])
    return words


def check_size(model, cfg, fmt: str | None = None) -> Size | None:
    """Refuse, before any work, a run larger than its output can take: MAX_CELLS values for any run,
    MAX_DATA_VALUES for a .json or .csv file, and for a workbook (fmt ".xlsx") Excel's MAX_ROWS rows
    per sheet and MAX_FORMULA characters per formula (a sum of many parts).  The message names the option that makes it so large.  A model without size()
    is not checked here (a test fails for it; the exact count before writing still holds)."""
    if not hasattr(model, "size"):
        return None
    est = model.size(cfg)
    fmt = (fmt or "").lower()
    limit = MAX_DATA_VALUES if fmt in DATA_FORMATS else MAX_CELLS
    if est.cells > limit:
        flag = _culprit(model, cfg, est.cells, lambda size: size.cells)
        where = f"the limit of {limit:,} for .json and .csv (an .xlsx takes up to {MAX_CELLS:,})" \
            if fmt in DATA_FORMATS else f"tracer's limit of {limit:,}"
        raise TracerError(f"{flag} makes the run too large: about {est.cells:,} values to record, more than "
                          f"{where}; lower {flag.split()[0]}")
    if fmt == ".xlsx" and est.rows > MAX_ROWS:
        flag = _culprit(model, cfg, est.rows, lambda size: size.rows)
        raise TracerError(f"{flag} makes a sheet too long: about {est.rows:,} rows, more than Excel's {MAX_ROWS:,} "
                          f"rows per sheet; lower {flag.split()[0]}")
    if fmt == ".xlsx" and est.formula_chars() > MAX_FORMULA:
        flag = _culprit(model, cfg, est.formula_chars(), lambda size: size.formula_chars())
        raise TracerError(f"{flag} makes a formula too long: a sum of {est.terms:,} parts, about "
                          f"{est.formula_chars():,} characters, more than Excel's {MAX_FORMULA:,}; lower {flag.split()[0]}")
    return est


def _culprit(model, cfg, now: int, measure) -> str:
    """'--hidden 100000': of the options not at their default, the one whose default shrinks the run
    most (`now`: the run's measure; each option re-estimated alone, a closed form each)."""
    best, drop = "these options", 0
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.default is dataclasses.MISSING or value == f.default or value == default_of(cfg, f):
            continue
        try:
            smaller = measure(model.size(dataclasses.replace(cfg, **{f.name: f.default})))
        except (TracerError, ValueError, TypeError):  # that option alone at its default is not a valid run
            continue
        if now - smaller > drop:
            best, drop = f"--{f.name.replace('_', '-')} {value}", now - smaller
    return best


def default_of(cfg, f):
    """What an option left out stands for: a learning rate its optimizer's default."""
    return f.metadata.get("by_optimizer", {}).get(getattr(cfg, "optimizer", None), f.default)


def trace(model, cfg, fmt: str | None = None):
    """The model's tape for the options `cfg`, checked first (its size too, for the output format
    `fmt`: ".xlsx", ".json", …; see check_size); a run that diverges is a TracerError naming what
    happened first (a tensor that is not finite, or a loss grown above 10× its first value:
    tracer.models.training), the step (a warm-up step or a traced iteration) and a learning rate
    to try."""
    validate(cfg)
    check_size(model, cfg, fmt)
    try:
        with np.errstate(all="ignore"):  # a diverging run is reported below, in one line
            tape = model.trace(cfg)
    except training.Diverged as e:
        raise TracerError(f"training diverged: {e}; {_rates(cfg)}") from None
    problem = _diverged(tape)
    if problem:
        raise TracerError(f"training diverged: {problem}; {_rates(cfg)}")
    return tape


def _diverged(tape) -> str | None:
    """The traced iterations' first problem, in order: a tensor that is not finite, or a watched
    loss grown above 10× its first value (the warm-up's first, when it ran)."""
    watch, series = training.watched(tape), (tape.meta.get("warmup") or {}).get("series", {})
    first = {name: float(series[name][0].mean()) for name in watch if series.get(name)}
    for t in tape.tensors:
        if not np.all(np.isfinite(t.value)):
            return f"{t.name} is not finite in iteration {t.iteration}"
        if t.name in watch and t.iteration and t.phase != "after":
            grown = training.overshoot(t.name, first.setdefault(t.name, float(t.value.mean())), float(t.value.mean()))
            if grown:
                return f"{grown} in iteration {t.iteration}"
    return None


def _rates(cfg) -> str:
    """What to try after a divergence: each rate's default where the run used a larger one (the
    defaults are the rates the tests train with for 10× the default iterations, the VAE's for
    100 steps on each shipped digit), else a quarter of the rate used (half is often not enough:
    tests/test_training.py trains the diverging runs it lists again at the rate advised)."""
    advice = []
    for f in dataclasses.fields(cfg):
        if not f.name.startswith("lr"):
            continue
        now, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        default = f.metadata.get("by_optimizer", {}).get(getattr(cfg, "optimizer", "sgd"))
        if default is not None and now > default:
            advice.append(f"{flag} {default:g} (the default; now {now:g})")
        else:
            advice.append(f"{flag} {now / 4:g} (a quarter of {now:g})")
    if not advice:
        return "try a smaller learning rate (lr in the config file)"
    return "try a smaller learning rate: " + ", ".join(advice)
