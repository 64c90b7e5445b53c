"""The models tracer can trace: each module has NAME, SUMMARY, LOSSES, Config (a dataclass whose fields
are the options, checked by `validate`) and trace(config) -> Tape.  `trace` runs one as every
command does: options checked, a diverging run refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np

from tracer.errors import TracerError
from tracer.models import attention, gan, mlp, skipgram, transformer, vae
from tracer.models.training import Diverged

MODELS = {m.NAME: m for m in (vae, gan, skipgram, attention, transformer, mlp)}


def get(name: str):
    """The model called `name`; a TracerError listing the known ones otherwise."""
    if name not in MODELS:
        raise TracerError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name]


def validate(cfg) -> None:
    """The checks each Config field's metadata asks for (min=, max=, positive=, choices=, below=)."""
    for f in dataclasses.fields(cfg):
        v, meta = getattr(cfg, f.name), f.metadata
        flag = "--" + f.name.replace("_", "-")
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


def trace(model, cfg):
    """The model's tape for the options `cfg`, checked first; a run whose numbers stop being finite
    (in a warm-up step or a traced iteration) is a TracerError naming the first such tensor, the
    step and a learning rate to try."""
    validate(cfg)
    try:
        with np.errstate(all="ignore"):  # a diverging run is reported below, in one line
            tape = model.trace(cfg)
    except Diverged as e:
        raise TracerError(f"training diverged: {e.name} is not finite in warm-up step {e.step}; "
                          f"{_rates(cfg)}") from None
    for t in tape.tensors:
        if not np.all(np.isfinite(t.value)):
            raise TracerError(f"training diverged: {t.name} is not finite in iteration {t.iteration}; {_rates(cfg)}")
    return tape


def _rates(cfg) -> str:
    """What to try after a divergence: each rate's default where the run used a larger one (the
    defaults are the rates the tests train with for 10× the default iterations, the VAE's for
    100 steps on each shipped digit), else half the rate used."""
    advice = []
    for f in dataclasses.fields(cfg):
        if not f.name.startswith("lr"):
            continue
        now, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        default = f.metadata.get("by_optimizer", {}).get(getattr(cfg, "optimizer", "sgd"))
        if default is not None and now > default:
            advice.append(f"{flag} {default:g} (the default; now {now:g})")
        else:
            advice.append(f"{flag} {now / 2:g} (half of {now:g})")
    if not advice:
        return "try a smaller learning rate (lr in the config file)"
    return "try a smaller learning rate: " + ", ".join(advice)
