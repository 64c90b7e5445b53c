"""Workbook text from templates/: common.toml (labels, op equations and notes) + <model>.toml.

The templates ship inside the package as `tracer.templates`, so they load from any directory.
"""

from __future__ import annotations

import copy
import functools
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
RUN = re.compile(r"\[([^\]]*)\] (.+)")  # a tensor of one generation step: "[greedy 2] P" is a P
# a transformer block's tensor: b2.LN1 (block 2), b1.h2.Q (block 1, head 2); the template's entry
# is "b.LN1" or "b.h.Q", whose {b} and {h} become the block and head numbers
BLOCK = re.compile(r"b(\d+)\.(?:h(\d+)\.)?(.+)")
STEP = re.compile(r"(.+)_(exp|sum|terms)")  # a step of a Composite op: P_exp, P_sum, loss_terms
FUNCTION = re.compile(r"\b[A-Z][A-Z.]*[A-Z]\b")  # a spreadsheet function's name in a note: SUMPRODUCT
SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _keys(name: str) -> list[tuple[str, dict]]:
    """Where a template may describe the tensor `name`, in order, each with the fields its text
    fills in: the name itself; the name with its first number as # ("h_#" for h_3: k = "3",
    sub = "₃"); a transformer block's entry ("b.h.Q" for b1.h2.Q: b = "1", h = "2")."""
    keys = [(name, {})]
    number = re.search(r"\d+", name)
    if number:
        keys.append((name[:number.start()] + "#" + name[number.end():],
                     {"k": number[0], "sub": number[0].translate(SUB)}))
    block = BLOCK.fullmatch(name)
    if block:
        keys.append((f"b.h.{block[3]}" if block[2] else f"b.{block[3]}", {"b": block[1], "h": block[2] or ""}))
    return keys


def _folder():
    """Installed, the templates are the package tracer.templates; run from a source checkout
    without installing, they are the repository's templates/ folder."""
    try:
        return resources.files("tracer.templates")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "templates"


@functools.lru_cache(maxsize=None)  # read once per process: a batch grades many workbooks (never changed in place)
def _load(name: str) -> dict:
    try:
        text = _folder().joinpath(f"{name}.toml").read_text("utf-8")
    except FileNotFoundError:
        raise TracerError(f"no template for model {name!r}") from None
    return tomllib.loads(text)


class Template:
    def __init__(self, model: str, lang: str = "en", tensors: dict | None = None):
        """`tensors`: texts for tensors whose names the user chose (an mlp config's), as in a
        template's [tensors] table; they come first."""
        if lang not in LANGS:
            raise TracerError(f"unknown language {lang!r}: choose one of {', '.join(LANGS)}")
        self.lang = lang
        self.common = _load("common")
        self.model = _load(model)
        self.words = self.common[lang]
        self.extra = tensors or {}
        self._symbols: dict = {}  # (language, name) -> symbol: a tensor's symbol is asked for often

    def translations(self) -> list[Template]:
        """This template in every language (itself included), e.g. to lay a workbook out with the
        same rows in each."""
        out = []
        for lang in LANGS:
            other = copy.copy(self)
            other.lang, other.words = lang, self.common[lang]
            out.append(other)
        return out

    @classmethod
    def of(cls, tape, lang: str = "en") -> Template:
        """The template of a traced run: its model's, plus the texts the run carries."""
        return cls(tape.meta["model"], lang, tape.meta.get("tensors"))

    def t(self, key: str, *args, **fmt) -> str:
        """A label of common.toml in the chosen language."""
        return self.words[key].format(*args, **fmt)

    def m(self, key: str) -> str:
        """A text of the model template in the chosen language."""
        return self.local_functions(self.model[key][self.lang])

    def local_functions(self, text: str) -> str:
        """The text, and where it names spreadsheet functions whose name differs in a spreadsheet
        in the chosen language (SUMPRODUCT is SUMAPRODUCTO in a Spanish one), both names."""
        names = self.common["functions"].get(self.lang, {})
        found = [f for f in dict.fromkeys(FUNCTION.findall(text)) if f in names and names[f] != f]
        if not found:
            return text
        both = ", ".join(self.words["function_pair"].format(en=f, local=names[f]) for f in found)
        return f"{text} ({self.words['functions_local'].format(both)})"

    def setting(self, key: str, option: bool = True) -> str:
        """The label of a setting on the overview: its meaning in words and, for a command-line
        option, the option itself (the model template's own label first, then common.toml's)."""
        words = (self.model.get("settings", {}).get(key, {}).get(self.lang)
                 or self.common["settings"].get(key, {}).get(self.lang))
        flag = "--" + key.replace("_", "-")
        if not option:
            return words or key
        return f"{words}  ({flag})" if words else flag

    def settings(self, config: dict, options: bool = True, skip=()) -> list[tuple[str, object]]:
        """(label, value) of each setting of an export, in order: `options` when the keys are the
        command's options (else a run's own description of itself, e.g. an mlp file's choices);
        the keys in `skip` (lower case) are left out (hyperparameters, shown as named cells)."""
        rows = []
        for key, value in config.items():
            if key.lower() in skip:
                continue
            if value is None:
                value = self.t("default_" + key) if "default_" + key in self.words else "-"
            elif isinstance(value, dict):  # a text in each language (an mlp file's title)
                value = value.get(self.lang) or next(iter(value.values()))
            rows.append((self.setting(key, option=options), value))
        return rows

    def losses(self, tape) -> list[str]:
        """The names of the losses the overview charts: the run's own (an mlp file names its
        loss), else the model template's."""
        return list(tape.meta.get("losses") or self.model.get("losses", {}).get("names", []))

    def equations(self, tape=None) -> list[str]:
        """The model's equations: `equations_<lang>` where the words need translating; a run's
        numbers (tape.meta["equation_values"], e.g. {pixels}) filled in."""
        equations = self.model.get(f"equations_{self.lang}") or self.model.get("equations", [])
        values = tape.meta.get("equation_values") if tape is not None else None
        return [eq.format(**values) for eq in equations] if values else list(equations)

    def m_picture(self, key: str) -> str:
        """The label of a picture (the model's [pictures] entry `key`)."""
        return self.model["pictures"][key][self.lang]

    def pictures_of(self, name: str) -> list[tuple[str, dict, str]]:
        """The model's [pictures] entries that show a tensor, each (its key, the entry, its label in
        the chosen language): those whose `tensor` (by default the key) is the tensor's own name,
        its numbered name ("h_#" for h_3) or its block's ("b.h.A" for b1.h2.A), the label with the
        numbers filled in.  One tensor may be shown twice (x̂ on two colour scales)."""
        found = []
        for key, fields in _keys(name):
            for entry_key, entry in self.model.get("pictures", {}).items():
                if entry.get("tensor", entry_key) == key:
                    found.append((entry_key, entry, entry[self.lang].format(**fields)))
        return found

    def pictures(self) -> list[dict]:
        """The model's [pictures] entries in order, each with its key and the tensor it shows
        (`tensor`, by default the key: one tensor may be shown twice, on two colour scales)."""
        return [{"key": key, "tensor": key, **entry} for key, entry in self.model.get("pictures", {}).items()]

    def section(self, name: str) -> str:
        """The title of a workbook section: the model's own [sections] or common section_<name>.
        A name may carry arguments after colons ("block_attention:2"), the title's {0}, {1}, …"""
        key, *args = name.split(":")
        own = self.model.get("sections", {}).get(key)
        return (own[self.lang] if own else self.words["section_" + key]).format(*args)

    def _entry(self, name: str) -> dict:
        """The model's text for a tensor, else the shared one of common.toml (optimizer cells).
        A generation step's tensor reads as the tensor it repeats; a numbered tensor (tau2, h_3)
        gets the text of its entry ("tau#", "h_#") with {k} (and {sub}: subscript digits) filled
        in; a block's (or head's) tensor gets its entry's text with the block and head numbers."""
        run = RUN.fullmatch(name)
        if run:
            name = run[2]
        for key, fields in _keys(name):
            if "b" in fields:
                entry = self.model.get("tensors", {}).get(key)
                if entry:
                    marks = {"b": f"⁽{fields['b'].translate(SUP)}⁾", "h": fields["h"].translate(SUB)}  # Q₁⁽¹⁾
                    return {k: v.format(**(marks if k.startswith("symbol") else fields)) for k, v in entry.items()}
                continue
            own = self._own(key)
            if own:
                return {k: text.format(**fields) for k, text in own.items()} if fields else own
        return self._step(name)

    def _step(self, name: str) -> dict:
        """A step of an op computed in steps (P_exp, P_sum, loss_terms) with no text of its own:
        common.toml's [steps] text, made from the text of the tensor it is a step of."""
        step = STEP.fullmatch(name)
        base = self._entry(step[1]) if step else {}
        if not base:
            return {}
        text, symbol = self.common["steps"][step[2]], base.get("symbol", step[1])
        return {"symbol": text["symbol"].format(symbol),
                **{lang: text[lang].format(symbol, base.get(lang, "")) for lang in LANGS}}

    def _own(self, name: str) -> dict | None:
        return (self.extra.get(name) or self.model.get("tensors", {}).get(name)
                or self.common["tensors"].get(name))

    def vocab_axes(self, name: str) -> tuple[bool, bool]:
        """Whether the rows, and whether the columns, of a tensor are the vocabulary's tokens (the
        entry's rows = "vocab" / cols = "vocab"); a gradient or an optimizer's state of a tensor is
        laid out like it."""
        grad = GRAD.fullmatch(name)
        if grad:
            name = grad[2].partition(VIA)[0]
        state = STATE.fullmatch(name)
        if state:
            name = state[2]
        entry = self._entry(name)
        return entry.get("rows") == "vocab", entry.get("cols") == "vocab"

    def symbol(self, name: str) -> str:
        """x̂ for x_hat, ∂L/∂x̂ for dL/dx_hat, ∂L/∂h (via μ) for 'dL/dh via mu'."""
        key = (self.lang, name)
        if key not in self._symbols:
            self._symbols[key] = self._symbol(name)
        return self._symbols[key]

    def _symbol(self, name: str) -> str:
        grad = GRAD.fullmatch(name)
        if grad:
            loss, (base, _, via) = grad[1], grad[2].partition(VIA)
            sym = f"∂{self.symbol(loss)}/∂{self.symbol(base)}"
            return f"{sym} ({self.words['via_short'].format(self.symbol(via))})" if via else sym
        state = STATE.fullmatch(name)
        if state:
            return f"{self.common['state'][state[1]]['symbol']}({self.symbol(state[2])})"
        run = RUN.fullmatch(name)
        if run:  # which generation step: P [τ2 1] is step 1 of the sampling at temperature 2
            chain, _, step = run[1].partition(" ")
            chain = self.words.get("chain_" + chain, chain)  # greedy: its word in the language
            return f"{self.symbol(run[2])} [{chain}{' ' + step if step else ''}]"
        entry = self._entry(name)
        return entry.get(f"symbol_{self.lang}") or entry.get("symbol", name)

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

    def _local(self, entry: dict, key: str):
        """entry's `key` in the chosen language (key_es) where it has one, else its own."""
        return entry.get(f"{key}_{self.lang}", entry.get(key))

    def equation(self, t) -> str:
        """A constant's equation is its template entry's (x = pixels / 255); a computed tensor's is
        its op's, with the symbols of its inputs."""
        pattern, fields = self.equation_parts(t)
        inputs = [fields[str(k)] for k in range(len(fields)) if str(k) in fields]
        return pattern.format(*inputs, **{k: v for k, v in fields.items() if not k.isdigit()})

    def equation_parts(self, t) -> tuple[str, dict]:
        """The equation as its pattern and what fills it in: {"0": the first input's symbol, …,
        "out": the tensor's own, "all": the inputs' symbols added up, and the op's parameters}
        (a constant's equation is a pattern with nothing to fill in; none is ("", {}))."""
        entry = self._entry(t.name)
        if "equation" in entry and t.op is None:
            return self._local(entry, "equation").replace("{", "{{").replace("}", "}}"), {}
        if t.op is None:
            return "", {}
        syms = [self.symbol(u.name) for u in t.inputs]
        pattern = self._local(self.common["ops"][t.op.name], "equation")
        return pattern, {**{str(k): s for k, s in enumerate(syms)}, "out": self.symbol(t.name),
                         "all": " + ".join(syms), **{k: str(v) for k, v in t.op.params().items()}}

    def note(self, t) -> str:
        """The cell formula in words (constants say what kind of constant they are)."""
        entry = self._entry(t.name)
        if f"note_{self.lang}" in entry:
            return self.local_functions(entry[f"note_{self.lang}"])
        if t.op is None:
            what = self.words["constant_" + t.attrs.get("source", t.attrs.get("role", "data"))]
            return self.words["constant"].format(what=what)
        syms = [self.symbol(u.name) for u in t.inputs]
        text = self.common["ops"][t.op.name][self.lang].format(*syms, all=" + ".join(syms), **t.op.params())
        return self.local_functions(text)
