"""The models tracer can trace: each module has NAME, SUMMARY (what it is, without an article: the
help says "Trace the {SUMMARY}"), LOSSES, Config (a dataclass whose fields
are the options, checked by `validate`) and trace(config) -> Tape.  `trace` runs one as every
command does: options checked, a diverging run refused in one line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from tracer.errors import TracerError
from tracer.models import attention, gan, mlp, skipgram, transformer, vae

MODELS = {m.NAME: m for m in (vae, gan, skipgram, attention, transformer, mlp)}


def get(name: str):
    """The model called `name`; a TracerError listing the known ones otherwise."""
    if name not in MODELS:
        raise TracerError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name]


def validate(cfg) -> None:
    """The checks each Config field's metadata asks for (min=, positive=, choices=, below=)."""
    for f in dataclasses.fields(cfg):
        v, meta = getattr(cfg, f.name), f.metadata
        flag = "--" + f.name.replace("_", "-")
        if "min" in meta and v < meta["min"]:
            raise TracerError(f"{flag} must be at least {meta['min']} (got {v})")
        if meta.get("positive") and not v > 0:
            raise TracerError(f"{flag} must be positive (got {v})")
        if "choices" in meta and v is not None and v not in meta["choices"]:
            raise TracerError(f"{flag} must be one of {', '.join(map(str, meta['choices']))} (got {v})")
        if "below" in meta and not v < meta["below"]:
            raise TracerError(f"{flag} must be below {meta['below']} (got {v})")


def variant(cfg, lang: str = "en") -> list[str]:
    """The options of `cfg` that differ from the model's defaults, as short words for a file name
    (tracer run's default output): a choice by its value (adam), a number by the option and its
    value (upscale4, hidden2), a file by its name (xor), a text after the option (prompt-el_gato).  A learning rate at its optimizer's
    default, a corpus that follows the language and an option set to what its default stands for
    (the mlp's --config classic_222) count as defaults."""
    words = []
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        default = meta["by_optimizer"].get(cfg.optimizer) if "by_optimizer" in meta else f.default
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


def trace(model, cfg):
    """The model's tape for the options `cfg`, checked first; a run whose numbers stop being finite
    is a TracerError naming the tensor, the iteration and the learning rates to lower."""
    validate(cfg)
    with np.errstate(all="ignore"):  # a diverging run is reported below, in one line
        tape = model.trace(cfg)
    rates = ", ".join(f"--{f.name.replace('_', '-')} (now {getattr(cfg, f.name)})"
                      for f in dataclasses.fields(cfg) if f.name.startswith("lr"))
    for t in tape.tensors:
        if not np.all(np.isfinite(t.value)):
            raise TracerError(f"training diverged: {t.name} is not finite in iteration {t.iteration}; "
                              f"try a smaller learning rate{': ' + rates if rates else ''}")
    return tape
