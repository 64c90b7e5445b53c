"""The models tracer can trace: each module has NAME, SUMMARY (what it is, without an article: the
help says "Trace the {SUMMARY}"), LOSSES, Config (a dataclass whose fields
are the options, checked by `validate`) and trace(config) -> Tape.  `trace` runs one as every
command does: options checked, a diverging run refused in one line."""

from __future__ import annotations

import dataclasses

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
