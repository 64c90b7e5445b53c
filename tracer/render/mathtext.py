"""The templates' Unicode mathematics as LaTeX math: one translation for the .tex walkthrough
(pdflatex with amsmath) and the .md one (MathJax through pymdownx.arithmatex).

The templates write their equations and symbols the way a spreadsheet cell can show them:
`∂L/∂W₁ = xᵀ · ∂L/∂a₁`, `W_logσ²`, `x̂ = sigmoid(a₄) = 1 / (1 + e^(−a₄))`, `Σᵢ₌₁ᴺ`.  `math` reads
that notation and writes it as LaTeX: \\frac{\\partial L}{\\partial W_1}, W_{\\log\\sigma^{2}},
\\hat{x}, \\operatorname{sigmoid}, \\sum_{i=1}^{N}.  `segments` finds the mathematics inside a
sentence ("the loss L_D of the discriminator D′"), so that prose stays text and symbols become math.

    math("∂L/∂W₁ = xᵀ · ∂L/∂a₁")  ->  \\frac{\\partial L}{\\partial W_{1}} = x^{\\top} \\cdot \\frac{…}{…}
    segments("the loss L_D of D′")  ->  [(False, "the loss "), (True, "L_D"), (False, " of "), (True, "D′")]
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tracer.render.textmode import MATH as MATH_CHARS, tex

# --- the alphabet -------------------------------------------------------------------------------

SUB = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜᵢⱼᵣᵤᵥ", "0123456789+−=()aeoxhklmnpstijruv"))
SUP = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵗᵈᵏᴺᵀᴷᴰᴸ", "0123456789+−=()nitdkNTKDL"))
GREEK = {c: MATH_CHARS[c] for c in "αβγδεζηθικλμνξπρςστυφχψωΓΔΘΛΞΠΣΥΦΨΩϵϕϑ" if c in MATH_CHARS}
GREEK["ε"] = r"\varepsilon"
COMBINING = {"\u0302": r"\hat", "\u0303": r"\tilde", "\u0304": r"\bar", "\u0307": r"\dot", "\u0308": r"\ddot",
             "\u20d7": r"\vec"}
# functions set upright, as operators: LaTeX's own where it has one
BUILTIN = {"exp", "ln", "log", "max", "min", "tanh", "sin", "cos", "sinh", "cosh", "det", "arg"}
LIMITS = {"argmax", "argmin"}  # \operatorname* (the index below, in a display)
FUNCTIONS = BUILTIN | LIMITS | {"ReLU", "LeakyReLU", "sigmoid", "softmax", "GELU", "LayerNorm", "mean", "media",
                                "sgn", "erf"}
OPERATORS = {"·": r"\cdot", "⋅": r"\cdot", "⊙": r"\odot", "×": r"\times", "−": "-", "-": "-", "+": "+",
             "±": r"\pm", "=": "=", "≠": r"\neq", "≈": r"\approx", "<": "<", ">": ">", "≤": r"\leq",
             "≥": r"\geq", "∈": r"\in", "~": r"\sim", "∼": r"\sim", "←": r"\leftarrow", "→": r"\rightarrow",
             "↦": r"\mapsto", "∝": r"\propto", "⊗": r"\otimes", "÷": r"\div", "/": "/", "*": r"\ast",
             "↑": r"\uparrow", "⇒": r"\Rightarrow"}
BINARY = {"·", "⋅", "⊙", "×", "−", "-", "+", "±", "=", "≠", "≈", "<", ">", "≤", "≥", "∈", "~", "∼", "←", "→",
          "↦", "∝", "⊗", "÷", "/", "*", "⇒"}
OPEN, CLOSE = {"(": ")", "[": "]", "⌊": "⌋", "⌈": "⌉", "⟨": "⟩"}, {")", "]", "⌋", "⌉", "⟩"}
BRACKET = {"(": "(", ")": ")", "[": "[", "]": "]", "⌊": r"\lfloor ", "⌋": r"\rfloor ", "⌈": r"\lceil ",
           "⌉": r"\rceil ", "⟨": r"\langle ", "⟩": r"\rangle "}
PUNCT = {",": ",", ";": ";", ":": ":", "!": "!", "'": "'", "?": "?", ".": "."}
SPECIAL_TEXT = {"%": r"\%", "#": r"\#", "&": r"\&", "$": r"\$"}
DIGITS = set("0123456789")
SINGLE = {"_": "us", "^": "caret", **{c: "op" for c in OPERATORS}, **{c: "open" for c in OPEN},
          **{c: "close" for c in CLOSE}, **{c: "punct" for c in PUNCT}, **{c: "bar" for c in "|‖∣∥"}}
PLACEHOLDER = re.compile("[\ue000-\ue0ff]")  # a symbol put into a pattern by `equation` (see there)


def _is_letter(c: str) -> bool:
    return c.isalpha() and c not in GREEK and c not in SUB and c not in SUP and "GREEK" not in unicodedata.name(c, "")


# --- lexing -------------------------------------------------------------------------------------

@dataclass
class Tok:
    kind: str  # var word num greek ph sub sup comb prime us caret op open close punct space sym bar
    text: str


def lex(text: str) -> list[Tok]:
    out: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            j = i
            while j < n and text[j].isspace():
                j += 1
            out.append(Tok("space", text[i:j]))
            i = j
        elif c in ("Σ", "∑"):
            out.append(Tok("sym", "Σ"))
            i += 1
        elif c in SUB:
            j, plain = i, ""
            while j < n and text[j] in SUB:
                plain += SUB[text[j]]
                j += 1
            if "(" in plain and ")" not in plain:  # ₍ₖ≤ᵢ₎: a group with ordinary characters
                close = text.find("₎", j)
                if close > 0:
                    inner = text[j:close]
                    plain += "".join(SUB[ch] if ch in SUB and (k == 0 or inner[k - 1] in " <>=≤≥−+,")
                                     else ch for k, ch in enumerate(inner)) + ")"
                    j = close + 1
            m = re.fullmatch(r"(\w)\((.+)\)", plain)  # maxₖ₍ₖ≤ᵢ₎: max over k ≤ i; Σᵢ₍ₓᵢ₌ᵥ₎: over i with xᵢ = v
            if m:
                plain = m[2] if m[2].startswith(m[1]) else f"{m[1]}: {m[2]}"
            out.append(Tok("sub", plain))
            i = j
        elif c in SUP:  # a run of superscripts; ᵀ and a ⁽…⁾ group each a token of their own
            j, plain = i, ""
            if c == "⁽":
                while j < n and text[j] in SUP and not plain.endswith(")"):
                    plain += SUP[text[j]]
                    j += 1
            elif c == "ᵀ":
                plain, j = "T", i + 1
            else:
                while j < n and text[j] in SUP and text[j] not in "ᵀ⁽":
                    plain += SUP[text[j]]
                    j += 1
            out.append(Tok("sup", plain))
            i = j
        elif _is_letter(c) and not (c in MATH_CHARS and not c.isascii()):
            j = i
            while j < n and _is_letter(text[j]):
                j += 1
            word = text[i:j]
            if len(word) == 1 and unicodedata.normalize("NFD", word) != word:  # ŷ: y with a hat
                out.extend(lex(unicodedata.normalize("NFD", word)))
            else:
                out.append(Tok("var" if len(word) == 1 else "word", word))
            i = j
        elif c in DIGITS or (c == "." and i + 1 < n and text[i + 1] in DIGITS and (not out or out[-1].kind != "num")):
            j = i
            while j < n and (text[j] in DIGITS or (text[j] == "." and j + 1 < n and text[j + 1] in DIGITS)):
                j += 1
            out.append(Tok("num", text[i:j]))
            i = j
        elif c in GREEK:
            out.append(Tok("greek", c))
            i += 1
        elif c in COMBINING:
            out.append(Tok("comb", c))
            i += 1
        elif unicodedata.combining(c):  # another accent: dropped
            i += 1
        elif c in ("′", "'") and out and out[-1].kind in ("var", "greek", "word", "ph", "close", "prime", "sub"):
            out.append(Tok("prime", "'"))
            i += 1
        elif c in SINGLE or PLACEHOLDER.match(c):
            out.append(Tok(SINGLE.get(c, "ph"), c))
            i += 1
        elif c in MATH_CHARS and not c.isascii():  # ℓ, ℝ, ∞, …
            out.append(Tok("sym", c))
            i += 1
        elif unicodedata.normalize("NFD", c) != c:  # ŷ, ŝ: a letter and its accent
            out.extend(lex(unicodedata.normalize("NFD", c)))
            i += 1
        else:
            out.append(Tok("sym", c))
            i += 1
    return out


# --- writing ------------------------------------------------------------------------------------

@dataclass
class Item:
    """One piece of the output: a unit (an operand: a symbol with its scripts, a number, a
    function applied to its argument, a bracketed group), an operator, a space, …"""

    kind: str  # unit group op space punct func word frac
    tex: str
    inner: list | None = None  # a bracketed group's items (a fraction's numerator loses the brackets)
    bracket: str = ""


def _word(word: str, identifier: bool = False) -> str:
    if identifier:
        return rf"\text{{{tex(word)}}}"
    if word in BUILTIN:
        return "\\" + word
    if word in LIMITS:
        return rf"\operatorname*{{{word}}}"
    if word in FUNCTIONS:
        return rf"\operatorname{{{word}}}"
    return rf"\text{{{tex(word)}}}"


class _Reader:
    def __init__(self, toks: list[Tok], script: bool = False):
        self.toks, self.at, self.script = toks, 0, script

    def peek(self, k: int = 0) -> Tok | None:
        j = self.at + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Tok:
        t = self.toks[self.at]
        self.at += 1
        return t

    # a script after _ or ^: a bracketed group, or a run of letters, digits, Greek, Unicode
    # subscripts (and superscript digits: W_logσ²), up to a space, an operator or ᵀ / ⁽ᵏ⁾
    def script_group(self) -> str:
        t = self.peek()
        if t is None:
            return ""
        if t.kind == "open" and t.text == "(":
            return self.group_inner(script=True)
        if t.kind == "sym" and t.text == "{":  # x_{t−1}: braces as in LaTeX
            self.take()
            start, depth = self.at, 1
            while (u := self.peek()) is not None:
                depth += {"{": 1, "}": -1}.get(u.text, 0) if u.kind == "sym" else 0
                if depth == 0:
                    break
                self.take()
            inner = self.toks[start:self.at]
            if self.peek() is not None:
                self.take()
            return write(parse(inner, True), True)
        parts: list[str] = []
        while (t := self.peek()) is not None:
            if t.kind in ("var", "word", "num", "greek", "ph"):
                self.take()
                parts.append(_base(t))
            elif t.kind == "sub" and parts:
                self.take()
                parts[-1] = _brace(parts[-1]) + "_{" + math(t.text, script=True) + "}"
            elif t.kind == "sup" and parts and t.text.isdigit():
                self.take()
                parts[-1] = _brace(parts[-1]) + "^{" + t.text + "}"
            elif t.kind == "comb" and parts:
                self.take()
                parts[-1] = COMBINING[t.text] + "{" + parts[-1] + "}"
            elif t.kind == "prime" and parts:
                self.take()
                parts[-1] += "'"
            else:
                break
        if not parts:  # a lone symbol: x_∞
            return _symbol(self.take().text)
        return "".join(parts)

    def group_inner(self, script: bool = False) -> str:
        """The tokens of a ( … ) group starting here (the brackets consumed, not written)."""
        inner = self.balanced()
        return write(parse(inner[1:-1], script))

    def balanced(self) -> list[Tok]:
        """The tokens of a bracketed group from here to its closing bracket (both included)."""
        start, depth = self.at, 0
        while (t := self.peek()) is not None:
            self.take()
            if t.kind == "open":
                depth += 1
            elif t.kind == "close":
                depth -= 1
                if depth == 0:
                    break
        return self.toks[start:self.at]


def _brace(tex_: str) -> str:
    return tex_ if len(tex_) == 1 or re.fullmatch(r"\\[A-Za-z]+", tex_) else "{" + tex_ + "}"


def _base(t: Tok) -> str:
    if t.kind == "var":
        return t.text
    if t.kind == "word":
        return _word(t.text)
    if t.kind == "greek":
        return GREEK[t.text]
    if t.kind == "num":
        return t.text
    if t.kind == "ph":
        return t.text
    return _symbol(t.text)


def _symbol(c: str) -> str:
    if c in MATH_CHARS:
        m = MATH_CHARS[c]
        return m if not m.startswith("{}") else m[2:]
    if c in SPECIAL_TEXT:
        return SPECIAL_TEXT[c]
    if c == "\\":
        return r"\backslash "
    if c in "{}":
        return "\\" + c
    if c == "\"":
        return r"\text{''}"
    if c == "…":
        return r"\dots "
    return rf"\text{{{tex(c)}}}"


class _Head:
    """A base and its scripts: adding a second subscript (or superscript) braces what is there."""

    def __init__(self, base: str):
        self.base, self.sub, self.sup = base, "", ""

    def add(self, which: str, script: str):
        if getattr(self, which):
            self.base, self.sub, self.sup = "{" + self.text() + "}", "", ""
        setattr(self, which, script)

    def wrap(self, command: str):
        self.base, self.sub, self.sup = f"{command}{{{self.text()}}}", "", ""

    def append(self, text: str):
        self.base, self.sub, self.sup = self.text() + text, "", ""

    def text(self) -> str:
        simple = len(self.base) == 1 or re.fullmatch(r"\\[A-Za-z]+|\\[a-z]+\{[^{}]*\}|\{.*\}", self.base)
        base = self.base if simple or not (self.sub or self.sup) else "{" + self.base + "}"
        return base + (f"_{{{self.sub}}}" if self.sub else "") + (f"^{{{self.sup}}}" if self.sup else "")


def _postfix(r: _Reader, head: str, kind: str) -> str:
    """The scripts, accents and primes after a base, and for a symbol (not a number) an
    argument or index right after it: D(x_fake), E[ids]."""
    h = _Head(head)
    while (t := r.peek()) is not None:
        if t.kind == "comb":
            r.take()
            h.wrap(COMBINING[t.text])
        elif t.kind == "prime":
            r.take()
            if h.sub or h.sup:
                h.append("'")
            else:
                h.base += "'"
        elif t.kind == "sub":
            r.take()
            h.add("sub", math(t.text, script=True))
        elif t.kind == "sup":
            r.take()
            h.add("sup", _sup(t.text, kind))
        elif t.kind == "us":
            r.take()
            h.add("sub", r.script_group())
        elif t.kind == "caret":
            r.take()
            h.add("sup", r.script_group())
        elif t.kind == "open" and t.text in "([" and kind in ("var", "greek", "ph", "word", "unit"):
            toks = r.balanced()
            inner = write(parse(toks[1:-1], r.script))
            close = {"(": ")", "[": "]"}[t.text]
            if h.base == "N" and not h.sub and t.text == "(" and (inner.startswith("0") or ";" in inner):
                h.base = r"\mathcal{N}"  # N(0, I): the normal distribution
            h.append(t.text + inner + close)
        else:
            break
    return h.text()


def _sup(plain: str, kind: str = "") -> str:
    """A Unicode superscript: ᵀ is the transpose, except as a sum's upper limit (Σₜ₌₁ᵀ)."""
    if plain == "T" and kind != "sum":
        return r"\top"
    return math(plain, script=True)


def parse(toks: list[Tok], script: bool = False) -> list[Item]:
    r = _Reader(toks, script)
    items: list[Item] = []
    while (t := r.peek()) is not None:
        if t.kind == "space":
            r.take()
            items.append(Item("space", t.text))
        elif t.kind in ("var", "greek", "num", "ph"):
            r.take()
            items.append(Item("unit", _postfix(r, _base(t), t.kind)))
        elif t.kind == "word":
            r.take()
            if t.text in FUNCTIONS and not (r.peek() is not None and r.peek().kind == "us"):
                head = _postfix(r, _word(t.text), "func")
                items.append(Item("func", head))
            else:
                items.append(Item("word", _postfix(r, _word(t.text, identifier=True), "word")))
        elif t.kind == "sym" and t.text == "∂":
            r.take()
            items.append(Item("unit", r"\partial " + _operand(r)))
        elif t.kind == "sym" and t.text == "√":
            r.take()
            nxt = r.peek()
            if nxt is not None and nxt.kind == "open" and nxt.text == "(":
                arg = r.group_inner(script)
            else:
                arg = _operand(r) if nxt is not None else ""
            items.append(Item("unit", _postfix(r, rf"\sqrt{{{arg}}}", "sqrt")))
        elif t.kind == "greek" or (t.kind == "sym" and t.text in ("Σ", "∑")):
            r.take()
            items.append(Item("func", _postfix(r, r"\sum", "sum")))
        elif t.kind == "sym" and t.text == "½":
            r.take()
            items.append(Item("unit", r"\tfrac{1}{2}" if not script else "1/2"))
        elif t.kind == "open":
            toks_ = r.balanced()
            close = toks_[-1].text if toks_[-1].kind == "close" else ""
            inner = parse(toks_[1:-1] if close else toks_[1:], script)
            body = write(inner, script)
            tall = r"\frac" in body and close and not script
            head = ((r"\left" + BRACKET[t.text]) if tall else BRACKET[t.text]) + body + \
                ((r"\right" + BRACKET[close]) if tall else BRACKET.get(close, ""))
            applied = bool(items) and items[-1].kind == "func"  # exp(…), sin(…): the brackets stay
            items.append(Item("group", _postfix(r, head, "group"), None if applied else inner, t.text))
        elif t.kind == "close":
            r.take()
            items.append(Item("op", BRACKET[t.text]))
        elif t.kind == "op":
            r.take()
            items.append(Item("op", OPERATORS[t.text], bracket=t.text))
        elif t.kind == "bar":
            r.take()
            items.append(Item("op", r"\|" if t.text in "‖∥" else "|", bracket=t.text))
        elif t.kind == "punct":
            r.take()
            items.append(Item("punct", PUNCT[t.text]))
        elif t.kind in ("sub", "sup", "comb", "prime", "us", "caret"):
            # a script with nothing before it: on an empty base
            items.append(Item("unit", _postfix(r, "{}", "unit")))
        else:
            r.take()
            items.append(Item("unit", _postfix(r, _symbol(t.text), "sym")))
    return items


def _operand(r: _Reader) -> str:
    """The symbol after ∂ (or √): one unit, and "log σ²" (a function and its argument) whole."""
    t = r.peek()
    if t is None:
        return ""
    if t.kind == "word" and t.text in FUNCTIONS and r.peek(1) is not None and r.peek(1).kind == "space" \
            and r.peek(2) is not None and r.peek(2).kind in ("var", "greek"):
        r.take()
        r.take()
        arg = r.take()
        return _word(t.text) + " " + _postfix(r, _base(arg), arg.kind)
    if t.kind in ("var", "greek", "num", "ph", "word"):
        r.take()
        return _postfix(r, _base(t), t.kind)
    if t.kind == "open":
        toks = r.balanced()
        return "(" + write(parse(toks[1:-1])) + ")"
    return ""


# --- fractions and spacing ----------------------------------------------------------------------

def _fractions(items: list[Item], script: bool) -> list[Item]:
    """∂A/∂B as \\frac{∂A}{∂B}; a/b as \\frac{a}{b} where a and b are single operands (a number,
    a symbol, a bracketed group: its brackets dropped) standing alone between operators: `1 / (1 + e^(−a))`,
    `(1/N)`, `m̂ / (√v̂ + ε)`; `log σ² / 2` stays as written (the slash binds to σ² alone)."""
    out = list(items)
    k = 0
    while k < len(out):
        it = out[k]
        if it.kind == "op" and it.bracket == "/":
            a, b = _skip(out, k, -1), _skip(out, k, 1)
            if 0 <= a and b < len(out) and _fraction_ok(out, a, b, script):
                num, den = out[a], out[b]
                frac = Item("frac", rf"\frac{{{_bare(num)}}}{{{_bare(den)}}}")
                out[a:b + 1] = [frac]
                k = a
        k += 1
    # (1/N): a bracketed fraction alone loses its brackets
    for k, it in enumerate(out):
        if it.kind == "group" and it.bracket == "(" and it.inner is not None:
            inner = [x for x in _fractions(it.inner, script) if x.kind != "space"]
            if len(inner) == 1 and inner[0].kind == "frac" and it.tex.endswith(")"):
                out[k] = Item("frac", inner[0].tex)
    return out


def _skip(items: list[Item], k: int, step: int) -> int:
    """The next item from k in the direction `step` that is not a space (out of range: none)."""
    k += step
    while 0 <= k < len(items) and items[k].kind == "space":
        k += step
    return k


def _fraction_ok(items: list[Item], a: int, b: int, script: bool) -> bool:
    num, den = items[a], items[b]
    if script or num.kind not in ("unit", "group") or den.kind not in ("unit", "group"):
        return False
    both_partial = num.tex.startswith(r"\partial") and den.tex.startswith(r"\partial")
    if both_partial:
        return True
    before, after = _skip(items, a, -1), _skip(items, b, 1)
    alone_before = before < 0 or items[before].kind in ("op", "punct") and items[before].tex not in ("/",)
    alone_after = after >= len(items) or items[after].kind in ("op", "punct", "word")
    if before >= 0 and items[before].kind == "op" and items[before].tex in (")", "]"):
        alone_before = False
    return alone_before and alone_after


def _bare(it: Item) -> str:
    """A fraction's numerator or denominator: a bracketed group without its brackets."""
    if it.kind == "group" and it.bracket == "(" and it.inner is not None and it.tex.endswith(")") \
            and it.tex.count("(") == 1 + write(it.inner).count("("):
        return write(it.inner)
    return it.tex


def write(items: list[Item], script: bool = False) -> str:
    items = _fractions(items, script)
    out: list[str] = []
    for k, it in enumerate(items):
        if it.kind != "space":
            out.append(it.tex)
            continue
        if k == 0 or k == len(items) - 1:
            continue
        prev, nxt = items[k - 1], items[k + 1]
        width = len(it.tex)
        if script:
            if "word" in (prev.kind, nxt.kind):
                out.append(r"\ ")
            continue
        if width >= 3:
            out.append(r"\qquad ")
        elif width == 2:
            out.append(r"\quad ")
        elif "word" in (prev.kind, nxt.kind) and prev.kind != "op" and nxt.kind != "op":
            out.append(r"\ ")
        elif prev.kind in ("unit", "group", "frac") and nxt.kind in ("unit", "frac"):
            out.append(r"\, ")
        elif prev.kind in ("unit", "frac") and nxt.kind == "group" and nxt.bracket == "(":
            out.append(r"\, ")
        elif prev.kind == "punct" and prev.tex in (";",):
            out.append(r"\; ")
        else:
            out.append(" ")
    text = ""
    for piece in out:
        if re.search(r"\\[A-Za-z]+$", text) and piece[:1].isalpha():
            text += " "
        text += piece
    return text


def math(text: str, script: bool = False) -> str:
    """Template text (Unicode mathematics) as LaTeX math, without the $ … $ around it."""
    return write(parse(lex(text), script), script).strip()


# --- mathematics inside a sentence --------------------------------------------------------------

MATH_MARKS = set(SUB) | set(SUP) | set(GREEK) | set(COMBINING) | set("_^∂∇Σ∑√⊙·×≤≥≠≈∈∼~←→′‖⌊⌋ℝ∞∝½±−=<>|+") \
    | {c for c in MATH_CHARS if not c.isascii() and c not in "…•✎′"} \
    | {chr(c) for c in range(0xE000, 0xE100)}  # and a symbol put into a pattern
NOT_VARIABLES = {"a", "A", "y", "o", "O", "e", "E", "u", "I", "Y"}  # one-letter words of English or Spanish
OPERATOR_CHUNKS = set(OPERATORS) | {"…", "−", "+"}


def _is_math_chunk(core: str) -> bool:
    """Whether a word of a sentence (without its surrounding punctuation) is mathematics."""
    if not core:
        return False
    if any(c in MATH_MARKS for c in core):
        return True
    if len(core) == 1 and any(m in COMBINING for m in unicodedata.normalize("NFD", core)):
        return True  # ŷ
    if len(core) == 1 and core.isalpha() and core.isascii() and core not in NOT_VARIABLES:
        return True
    if re.fullmatch(r"[A-Za-z]\w*\(.*", core) and (core.split("(")[0] in FUNCTIONS or len(core.split("(")[0]) == 1):
        return True  # ReLU(x, N(0, D(x_fake)
    if re.fullmatch(r"[A-Za-z]\w*\[.*", core):
        return True  # E[ids], P[i,
    if re.fullmatch(r"\d+(\.\d+)?[A-Za-z]", core):  # 2k, 4s
        return True
    return False


def _joins(core: str) -> bool:
    """A word that belongs to the mathematics around it (not on its own): a number, a function's
    name, a single letter."""
    return bool(re.fullmatch(r"[+−-]?\d+(\.\d+)?", core)) or core in FUNCTIONS or \
        (len(core) == 1 and core.isalpha() and core.isascii())


LEADING = "([¿¡\"“«"
TRAILING = ")],.;:!?\"”»"


def _words(text: str) -> list[list[str]]:
    """The sentence as tokens [kind, text]: spaces, brackets and punctuation around a word split
    off it (kinds space, open, close, punct), the word itself math, join (a number, a letter or a
    function's name: mathematics next to mathematics) or text."""
    out: list[list[str]] = []
    for chunk in re.split(r"(\s+)", text):
        if not chunk:
            continue
        if chunk.isspace():
            out.append(["space", chunk])
            continue
        lead: list[list[str]] = []
        while chunk and chunk[0] in LEADING and (chunk[0] not in "([" or _depth(chunk) > 0):
            lead.append(["open" if chunk[0] in "([" else "punct", chunk[0]])
            chunk = chunk[1:]
        trail: list[list[str]] = []
        while chunk and chunk[-1] in TRAILING and (chunk[-1] not in ")]" or _depth(chunk) < 0):
            trail.insert(0, ["close" if chunk[-1] in ")]" else "punct", chunk[-1]])
            chunk = chunk[:-1]
        core = []
        sign = re.fullmatch(r"([−+])([^\W\d_]{2,})", chunk)
        if sign:  # −celda: a minus before a word of the sentence
            core = [["math", sign[1]], ["text", sign[2]]]
        elif chunk:
            kind = "math" if (_is_math_chunk(chunk) or chunk in OPERATOR_CHUNKS) else "join" if _joins(chunk) else "text"
            core = [[kind, chunk]]
        out.extend(lead + core + trail)
    for k in range(len(out) - 3):  # p. ej.: an abbreviation, not a variable
        if len(out[k][1]) == 1 and out[k][1].isascii() and out[k + 1] == ["punct", "."] \
                and out[k + 2][0] == "space" and re.fullmatch(r"[a-z]{1,3}", out[k + 3][1]) \
                and out[k + 4:k + 5] == [["punct", "."]]:
            out[k][0] = "text"
    return out


def _neighbours(toks: list[list[str]], k: int) -> list[int]:
    """The tokens next to token k, across one space."""
    near = []
    for step in (-1, 1):
        j = k + step
        if 0 <= j < len(toks) and toks[j][0] == "space":
            j += step
        if 0 <= j < len(toks):
            near.append(j)
    return near


def segments(text: str) -> list[tuple[bool, str]]:
    """A sentence cut into text and mathematics: [(is_math, piece), …] that join back to `text`.
    A `code span` (a line of a user's PyTorch file) stays text, backticks and all."""
    if "`" in text:
        parts = re.split(r"(`[^`]*`)", text)
        return _merge([piece for part in parts if part for piece in
                       ([(False, part)] if part.startswith("`") and part.endswith("`") and len(part) > 1 else segments(part))])
    toks = _words(text)
    changed = True
    while changed:  # a number, letter or function next to mathematics is mathematics; so is a
        changed = False  # word on one side of an operator with mathematics on its other (slope · a)
        for k, (kind, word) in enumerate(toks):
            if kind == "join" and any(toks[j][0] == "math" for j in _neighbours(toks, k)):
                toks[k][0], changed = "math", True
            elif kind == "text" and re.fullmatch(r"[A-Za-z][a-z]+", word):  # not EXP or SQRT
                for j in _neighbours(toks, k):
                    if toks[j][0] == "math" and toks[j][1] in BINARY:
                        other = [m for m in _neighbours(toks, j) if m != k]
                        if other and toks[other[0]][0] in ("math", "join") and toks[other[0]][1] not in BINARY:
                            toks[k][0], changed = "math", True
    pieces: list[tuple[bool, str]] = []
    k = 0
    while k < len(toks):
        end = _run(toks, k)
        if end > k:
            pieces.append((True, "".join(t[1] for t in toks[k:end])))
            k = end
        elif toks[k][0] == "math" and _depth(toks[k][1]) != 0:  # SQRT(σ² … : its bracket closes
            toks[k:k + 1] = _split_brackets(toks[k][1])  # nowhere near: the pieces on their own
        else:
            pieces.append((False, toks[k][1]))
            k += 1
    return _merge(pieces)


def _split_brackets(word: str) -> list[list[str]]:
    """A word whose brackets do not balance, as tokens: each bracket on its own, the pieces
    between them mathematics or text by themselves."""
    out: list[list[str]] = []
    for piece in re.split(r"([()\[\]])", word):
        if piece in ("(", "["):
            out.append(["open", piece])
        elif piece in (")", "]"):
            out.append(["close", piece])
        elif piece:
            out.append(["math" if _is_math_chunk(piece) or piece in OPERATOR_CHUNKS else
                        "join" if _joins(piece) else "text", piece])
    return out


def _run(toks: list[list[str]], k: int) -> int:
    """Where a run of mathematics that starts at token k ends (k: none starts there).  A run
    takes in spaces between mathematics, brackets it opens and closes, and punctuation inside
    its brackets (N(0, I)); it gives back what it leaves open."""
    start = k
    if toks[k][0] == "open":  # (i, j): a bracket that opens mathematics
        j = k + 1
        if not (j < len(toks) and toks[j][0] == "math"):
            return k
    elif toks[k][0] != "math":
        return k
    depth, last_good, j = 0, k, k
    while j < len(toks):
        kind, word = toks[j]
        if kind == "math" or (kind == "join" and depth > 0):
            depth += _depth(word)
        elif kind == "open":
            depth += 1
        elif kind == "close":
            if depth <= 0:
                break
            depth -= 1
        elif kind == "punct":
            if depth <= 0 or word not in ",;:":
                break
        elif kind == "space":
            pass
        else:
            break
        j += 1
        if depth == 0 and toks[j - 1][0] != "space":
            last_good = j
    return last_good if last_good > start else start


def _depth(s: str) -> int:
    return s.count("(") - s.count(")") + s.count("[") - s.count("]")


def _merge(pieces: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for is_math, piece in pieces:
        if out and out[-1][0] == is_math:
            out[-1] = (is_math, out[-1][1] + piece)
        else:
            out.append((is_math, piece))
    return out
