"""The models tracer can trace: each module has NAME, SUMMARY, LOSSES, Config (a dataclass whose fields
are the CLI options) and trace(config) -> Tape."""

from tracer.models import attention, gan, mlp, skipgram, transformer, vae

MODELS = {m.NAME: m for m in (vae, gan, skipgram, attention, transformer, mlp)}
