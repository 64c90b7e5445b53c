"""What every trainable model's options share: iterations, warm-up, seed and the optimizer (Training),
and for the language models the text they learn from (TextTraining).

A model's `Config` is a dataclass whose fields become CLI options (`tracer run MODEL --help`);
`opt` attaches the help text and the checks the CLI applies (min=, max=, positive=, below=, path=,
choices=); `lr_opt` makes a learning rate whose default depends on --optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from tracer.data import text as txt
from tracer.errors import TracerError


def opt(default, help, **checks):
    return field(default=default, metadata={"help": help, **checks})


def lr_opt(what: str, sgd: float, adam: float):
    """A learning rate (a named cell) whose default is `sgd` or `adam` by --optimizer."""
    return opt(None, f"{what}, a named cell [default: {sgd} with sgd, {adam} with adam]", positive=True,
               by_optimizer={"sgd": sgd, "adam": adam})


MAX_WARMUP = 100_000  # the overview charts every warm-up step, one row each; a step takes about 1 ms


def warmup_opt(traced: str):
    """--warmup N: steps run before the traced ones (tracer.models.training)."""
    return opt(0, f"training steps run first in numpy, unrecorded; {traced} continue from there (the "
                  "parameters they reach become the inputs sheet's constants)", min=0, max=MAX_WARMUP)


@dataclass
class Training:
    iterations: int = opt(4, "training iterations, one sheet each", min=1)
    warmup: int = warmup_opt("the traced iterations")
    seed: int = opt(0, "seed of the initial weights and of the random draws", min=0)
    optimizer: str = opt("sgd", "sgd: θ ← θ − lr·g;  adam: moments m, v, bias correction, step",
                         choices=("sgd", "adam"))
    beta1: float = opt(0.9, "Adam: decay of the first moment m (a named cell)", min=0, below=1)
    beta2: float = opt(0.999, "Adam: decay of the second moment v (a named cell)", min=0, below=1)
    adam_eps: float = opt(1e-8, "Adam: ε added to √v̂ (a named cell)", positive=True)

    def __post_init__(self):
        for f in fields(self):  # learning rates left to their optimizer's default
            defaults = f.metadata.get("by_optimizer")
            if defaults and getattr(self, f.name) is None:
                setattr(self, f.name, defaults.get(self.optimizer, defaults["sgd"]))

    def check(self) -> None:
        """What the options say together, before any work (tracer.models.validate calls it); a
        model's Config adds its own and calls this."""


@dataclass
class TextTraining(Training):
    """Training on a text: the built-in corpus or the user's file, and its tokenizer."""

    text: str = opt(None, "your own text file (UTF-8, one sentence per line)", path=True)
    corpus: str = opt(None, "built-in corpus when no --text [default: the workbook's --lang]", choices=("en", "es"))
    tokenizer: str = opt("word", "how the text becomes tokens", choices=txt.TOKENIZERS)
    merges: int = opt(txt.DEFAULT_MERGES, "BPE merges (with --tokenizer bpe)", min=0)

    def lines(self) -> list[str]:
        """The sentences of the text (one per line)."""
        return txt.split_sentences(txt.load_text(self.text, self.corpus or "en"))

    def tokenize(self, lines: list[str], boundary: bool = True):
        return txt.tokenize("\n".join(lines), self.tokenizer, self.merges, boundary=boundary)


@dataclass
class GenerativeText(TextTraining):
    """A next-token model: after training it generates from a prompt, greedily and by sampling."""

    generate: int = opt(6, "tokens to generate after training, greedily and at each temperature (0: none)", min=0)
    prompt: str = opt(None, "the text generation starts from [default: the text's first 2 tokens]")
    temperature: str = opt("0.5,1,2", "sampling temperatures, comma-separated, each a named cell ('' for greedy only)")

    def check(self) -> None:
        super().check()
        self.temperatures()

    def temperatures(self) -> list[float]:
        """--temperature as numbers: '0.5,1,2' → [0.5, 1.0, 2.0]; '' → [] (greedy only)."""
        text = self.temperature.replace(" ", "")
        try:
            taus = [float(s) for s in text.split(",")] if text else []
        except ValueError:  # also an empty piece: '1,,2'
            taus = [0.0]
        if not all(t > 0 and math.isfinite(t) for t in taus):
            raise TracerError(f"--temperature must be positive numbers separated by commas (got {self.temperature!r})")
        return taus

    def prompt_ids(self, tok, text_ids: list[int], context: int) -> list[int]:
        """The prompt's token ids: --prompt in the text's vocabulary, else the text's first 2 tokens."""
        ids = list(text_ids[:2]) if self.prompt is None else tok.encode(self.prompt)
        if len(ids) > context:
            raise TracerError(f"--prompt gives {len(ids)} tokens: at most --context {context} fit")
        return ids
