"""Workbook text from templates/: common.toml (labels, op equations and notes) + <model>.toml.

The templates ship inside the package as `tracer.templates`, so they load from any directory.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tracer.errors import TracerError

LANGS = ("en", "es")
GRAD = re.compile(r"d([^/ ]+)/d(.+)")  # d<loss>/d<tensor>[ via <consumer>]
VIA = " via "
STATE = re.compile(r"(m|v|m_hat|v_hat|step)\[(.+)\]")  # Adam's state of a parameter: m[W1]


def _folder():
    """Installed, the templates are the package tracer.templates; run from a source checkout
    without installing, they are the repository's templates/ folder."""
    try:
        return resources.files("tracer.templates")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "templates"


def _load(name: str) -> dict:
    try:
        text = _folder().joinpath(f"{name}.toml").read_text("utf-8")
    except FileNotFoundError:
        raise TracerError(f"no template for model {name!r}") from None
    return tomllib.loads(text)


class Template:
    def __init__(self, model: str, lang: str = "en"):
        if lang not in LANGS:
            raise TracerError(f"unknown language {lang!r}: choose one of {', '.join(LANGS)}")
        self.lang = lang
        self.common = _load("common")
        self.model = _load(model)
        self.words = self.common[lang]

    def t(self, key: str, **fmt) -> str:
        """A label of common.toml in the chosen language."""
        return self.words[key].format(**fmt)

    def m(self, key: str) -> str:
        """A text of the model template in the chosen language."""
        return self.model[key][self.lang]

    def setting(self, key: str) -> str:
        """The label of an option on the overview: its meaning in words and the option itself."""
        words = self.common["settings"].get(key, {}).get(self.lang)
        flag = "--" + key.replace("_", "-")
        return f"{words}  ({flag})" if words else flag

    def equations(self) -> list[str]:
        """The model's equations: `equations_<lang>` where the words need translating."""
        return list(self.model.get(f"equations_{self.lang}") or self.model.get("equations", []))

    def m_picture(self, name: str) -> str:
        """The label of a picture (the model's [pictures] entry)."""
        return self.model["pictures"][name][self.lang]

    def section(self, name: str) -> str:
        """The title of a workbook section: the model's own [sections] or common section_<name>."""
        own = self.model.get("sections", {}).get(name)
        return own[self.lang] if own else self.words["section_" + name]

    def _entry(self, name: str) -> dict:
        """The model's text for a tensor, else the shared one of common.toml (optimizer cells)."""
        return self.model.get("tensors", {}).get(name) or self.common["tensors"].get(name, {})

    def symbol(self, name: str) -> str:
        """x̂ for x_hat, ∂L/∂x̂ for dL/dx_hat, ∂L/∂h (via μ) for 'dL/dh via mu'."""
        grad = GRAD.fullmatch(name)
        if grad:
            loss, (base, _, via) = grad[1], grad[2].partition(VIA)
            sym = f"∂{self.symbol(loss)}/∂{self.symbol(base)}"
            return f"{sym} ({self.words['via_short'].format(self.symbol(via))})" if via else sym
        state = STATE.fullmatch(name)
        if state:
            return f"{self.common['state'][state[1]]['symbol']}({self.symbol(state[2])})"
        return self._entry(name).get("symbol", name)

    def describe(self, t) -> str:
        """One line saying what the tensor is."""
        name = t.name
        grad = GRAD.fullmatch(name)
        if grad:
            loss, (base, _, via) = grad[1], grad[2].partition(VIA)
            text = self.words["gradient_of"].format(self.symbol(base), loss=self.symbol(loss))
            return f"{text}; {self.words['via'].format(self.symbol(via))}" if via else text
        state = STATE.fullmatch(name)
        if state:
            return self.common["state"][state[1]][self.lang].format(self.symbol(state[2]))
        text = self._entry(name).get(self.lang, "")
        if t.phase == "update":
            text = f"{text} ({self.words['update_word']})"
        return text

    def equation(self, t) -> str:
        entry = self._entry(t.name)
        if "equation" in entry:
            return entry["equation"]
        if t.op is None:
            return ""
        syms = [self.symbol(u.name) for u in t.inputs]
        pattern = self.common["ops"][t.op.name]["equation"]
        return pattern.format(*syms, out=self.symbol(t.name), all=" + ".join(syms))

    def note(self, t) -> str:
        """The cell formula in words (constants say what kind of constant they are)."""
        entry = self._entry(t.name)
        if f"note_{self.lang}" in entry:
            return entry[f"note_{self.lang}"]
        if t.op is None:
            what = self.words["constant_" + t.attrs.get("role", "data")]
            return self.words["constant"].format(what=what)
        syms = [self.symbol(u.name) for u in t.inputs]
        return self.common["ops"][t.op.name][self.lang].format(*syms, all=" + ".join(syms))
