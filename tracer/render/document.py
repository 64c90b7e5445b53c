"""The walkthrough as a document: `-o walkthrough.tex` (LaTeX, compiles with pdflatex) or `.md`.

`build` turns the tape and the model's template into a neutral list of blocks; `to_latex` and
`to_markdown` only write them in their syntax.  The blocks:

    ("title", text)  ("para", text)  ("heading", text)  ("subheading", text)
    ("equations", [equation, ...])
    ("settings", heading, [(label, value), ...])   the options: each value as typed (code)
    ("tensor", symbol, shape, description, equation, note)
    ("table", caption, header, rows)   a cell is text (str), a number (int or float),
                                       a matrix (2-D numpy array) or the first entries (list)

The fixed wording is templates/document.toml; everything else comes from the model's template.
Template text is Unicode; `tex` turns every character into plain-ASCII LaTeX that needs only
amsmath, geometry, array and longtable (Debian's texlive-latex-base), with the default OT1 fonts.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from tracer.render.atomic import atomic_text
from tracer.render.template import Template, _load

SMALL = 16  # tensors of at most this many values are shown in full
FIRST = 3  # entries shown of a larger tensor
WIDE = 4  # LaTeX prints a matrix wider than this and than tall transposed (a row as a column)


# ---------------------------------------------------------------------------------------------
# Unicode -> LaTeX
# ---------------------------------------------------------------------------------------------

TEXT = {  # text-mode replacements
    "#": r"\#", "$": r"\$", "%": r"\%", "&": r"\&", "_": r"\_\allowbreak{}", "{": r"\{", "}": r"\}",
    "~": r"\ensuremath{\sim}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
    '"': "''", "`": "{`}", "\n": " ", "\t": " ", "\u00a0": "~", "\u2009": r"\,", "\u202f": r"\,",
    "¿": r"\textquestiondown{}", "¡": r"\textexclamdown{}", "…": r"\ldots{}", "–": "--", "—": "---",
    "‘": "{`}", "’": "'", "“": "``", "”": "''", "§": r"\S{}", "¶": r"\P{}", "©": r"\copyright{}",
    "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "œ": r"\oe{}", "Œ": r"\OE{}", "ø": r"\o{}",
    "Ø": r"\O{}", "ł": r"\l{}", "Ł": r"\L{}", "ı": r"\i{}", "ª": r"\textsuperscript{a}",
    "º": r"\textsuperscript{o}",
}
_GREEK = ("alpha beta gamma delta varepsilon zeta eta theta iota kappa lambda mu nu xi o pi rho "
          "varsigma sigma tau upsilon varphi chi psi omega").split()
_GREEK_UPPER = dict(zip("ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ",
                        r"\mathrm{A} \mathrm{B} \Gamma \Delta \mathrm{E} \mathrm{Z} \mathrm{H} \Theta "
                        r"\mathrm{I} \mathrm{K} \Lambda \mathrm{M} \mathrm{N} \Xi \mathrm{O} \Pi "
                        r"\mathrm{P} \Sigma \mathrm{T} \Upsilon \Phi \mathrm{X} \Psi \Omega".split()))
MATH = {  # math-mode replacements, each wrapped in \ensuremath
    **{chr(0x3B1 + n): ("" if g == "o" else "\\") + g for n, g in enumerate(_GREEK)},
    **_GREEK_UPPER, "ϵ": r"\epsilon", "ϕ": r"\phi", "ϑ": r"\vartheta", "µ": r"\mu", "∆": r"\Delta",
    "<": "<", ">": ">", "|": "|", "−": "-", "·": r"\cdot", "⋅": r"\cdot", "×": r"\times",
    "÷": r"\div", "±": r"\pm", "∓": r"\mp", "⊙": r"\odot", "⊗": r"\otimes", "⊕": r"\oplus",
    "∘": r"\circ", "∗": r"\ast", "•": r"\bullet", "∂": r"\partial", "∇": r"\nabla", "∑": r"\sum",
    "∏": r"\prod", "∫": r"\int", "√": r"\surd", "∞": r"\infty", "≤": r"\leq", "≥": r"\geq",
    "≠": r"\neq", "≈": r"\approx", "∼": r"\sim", "≃": r"\simeq", "≡": r"\equiv", "∝": r"\propto",
    "≪": r"\ll", "≫": r"\gg", "∈": r"\in", "∉": r"\notin", "⊂": r"\subset", "⊆": r"\subseteq",
    "∪": r"\cup", "∩": r"\cap", "∅": r"\emptyset", "∀": r"\forall", "∃": r"\exists", "¬": r"\neg",
    "∧": r"\wedge", "∨": r"\vee", "→": r"\rightarrow", "←": r"\leftarrow", "↔": r"\leftrightarrow",
    "⇒": r"\Rightarrow", "⇐": r"\Leftarrow", "⇔": r"\Leftrightarrow", "↦": r"\mapsto",
    "↑": r"\uparrow", "✎": r"\triangleright", "↓": r"\downarrow", "′": r"{}^\prime", "°": r"{}^\circ", "‖": r"\|",
    "∥": r"\parallel", "∣": r"\mid", "⟨": r"\langle", "⟩": r"\rangle", "⌊": r"\lfloor",
    "⌋": r"\rfloor", "⌈": r"\lceil", "⌉": r"\rceil", "ℓ": r"\ell", "⋯": r"\cdots", "⋮": r"\vdots",
    "⊤": r"\top", "⊥": r"\bot", "½": r"\frac{1}{2}", "¼": r"\frac{1}{4}", "¾": r"\frac{3}{4}",
    "ℝ": r"\mathbf{R}", "ℕ": r"\mathbf{N}", "ℤ": r"\mathbf{Z}", "𝔼": r"\mathbf{E}",
    "𝒩": r"\mathcal{N}", "ᵀ": r"{}^{\mathrm{T}}",
    **{s: "{}^{" + c + "}" for s, c in zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵗ", "0123456789+-=()nit")},
    **{s: "{}_{" + c + "}" for s, c in zip("₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎", "0123456789+-=()")},
    **{s: r"{}_{\mathrm{" + c + "}}" for s, c in zip("ₐₑₒₓₕₖₗₘₙₚₛₜᵢⱼᵣᵤᵥ", "aeoxhklmnpstijruv")},
}
COMBINING = {  # combining mark -> (text accent, math accent)
    "\u0300": (r"\`", r"\grave"), "\u0301": (r"\'", r"\acute"), "\u0302": (r"\^", r"\hat"),
    "\u0303": (r"\~", r"\tilde"), "\u0304": (r"\=", r"\bar"), "\u0306": (r"\u", r"\breve"),
    "\u0307": (r"\.", r"\dot"), "\u0308": (r'\"', r"\ddot"), "\u030c": (r"\v", r"\check"),
    "\u030a": (r"\r", r"\mathring"), "\u0327": (r"\c", None), "\u20d7": (None, r"\vec"),
}
PLAIN = set(" !'()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz")
DOTLESS = {"i": r"\i", "j": r"\j"}  # í is \'{\i}
UNKNOWN = "?"
_MATH = r"\ensuremath{"


def _accent(prev: str, mark: str) -> str:
    """`prev` (one translated character) under the combining `mark`."""
    text, math = COMBINING[mark]
    if prev.startswith(_MATH) and math:
        return f"{_MATH}{math}{{{prev[len(_MATH):-1]}}}}}"
    if text and not prev.startswith(_MATH):
        return text + "{" + DOTLESS.get(prev, prev) + "}"
    if math and len(prev) == 1 and prev.isalpha():
        return f"{_MATH}{math}{{{prev}}}}}"
    return prev


def _exponent(text: str, at: int) -> tuple[str, int]:
    """The exponent that starts at text[at] (after a ^): a parenthesized group, without its
    parentheses, or a run of letters, digits and dots; and where the text goes on after it."""
    if text[at] == "(":
        depth = 0
        for k in range(at, len(text)):
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            if depth == 0:
                return text[at + 1:k], k + 1
        return text[at + 1:], len(text)
    end = at
    while end < len(text) and (text[end].isalnum() or text[end] == "."):
        end += 1
    return text[at:end], end


def tex(text: str, missing: set | None = None) -> str:
    """Template text as LaTeX: specials escaped, every known Unicode character a command (math
    via \\ensuremath), x̂ (a combining mark) an accent, a^b a superscript, -- two hyphens (not a
    dash: --optimizer); anything else becomes `?` (and is added to `missing`)."""
    out: list[str] = []
    at = 0
    while at < len(text):
        c = text[at]
        at += 1
        if c == "^" and at < len(text):  # 10000^(2k/d), [0,1]^784, e^(−a): a superscript
            power, after = _exponent(text, at)
            if power:
                out.append(r"\ensuremath{^{\text{" + tex(power, missing) + "}}}")
                at = after
                continue
        if c == "-" and text[at:at + 1] == "-":  # --optimizer: two hyphens, not an en dash
            out.append("-{}")
        elif c in PLAIN:
            out.append(c)
        elif c in TEXT:
            out.append(TEXT[c])
        elif c in MATH:
            out.append(_MATH + MATH[c] + "}")
        elif c in COMBINING:
            if out:
                out[-1] = _accent(out[-1], c)
        elif unicodedata.normalize("NFD", c) != c:  # é = e + U+0301, ñ = n + U+0303
            out.append(tex(unicodedata.normalize("NFD", c), missing))
        else:
            out.append(UNKNOWN)
            if missing is not None:
                missing.add(c)
    return "".join(out)


def unhandled(text: str) -> set[str]:
    """The characters of `text` that `tex` does not know (and would print as ?)."""
    missing: set[str] = set()
    tex(text, missing)
    return missing


# ---------------------------------------------------------------------------------------------
# The document, neutral
# ---------------------------------------------------------------------------------------------

@dataclass
class Document:
    """The blocks (see the module docstring) and how many tensors and loss values they show."""

    blocks: list
    count: int  # tensors (and loss values) documented


def _shape(t) -> str:
    return f"{t.shape[0]} × {t.shape[1]}"


def _value(t):
    """A scalar as a number, anything else as its matrix."""
    return float(t.value[0, 0]) if t.value.size == 1 else t.value


def _value_tables(tensors, w, tpl) -> list:
    """Small tensors in full, larger ones summarized."""
    small = [[tpl.symbol(t.name), _shape(t), _value(t)] for t in tensors if t.value.size <= SMALL]
    large = [[tpl.symbol(t.name), _shape(t), float(t.value.min()), float(t.value.max()),
              float(t.value.mean()), [float(v) for v in t.value.ravel()[:FIRST]]]
             for t in tensors if t.value.size > SMALL]
    blocks = []
    if small:
        blocks.append(("table", w("full"), [w("symbol"), w("shape"), w("value")], small))
    if large:
        blocks.append(("table", w("summary"),
                       [w("symbol"), w("shape"), w("min"), w("max"), w("mean"), w("first")], large))
    return blocks


def build(tape, tpl: Template, config: dict | None = None) -> Document:
    """Title and intro, the equations, iteration 1 section by section, the inputs and iteration 1
    in numbers, the loss of every iteration."""
    words = _load("document")[tpl.lang]

    def w(key, **fmt):
        return words[key].format(**fmt)

    def is_hyper(t):
        return t.attrs.get("role") == "hyper"

    k1 = min((t.iteration for t in tape.tensors if t.iteration), default=1)  # N+1 after a warm-up of N steps
    first = [t for t in tape.tensors if t.iteration == k1 and t.phase != "after"]
    inputs = [t for t in tape.tensors if t.iteration == 0 and not is_hyper(t)]
    hypers = [t for t in tape.tensors if t.iteration == 0 and is_hyper(t)]
    runs = [(section, list(ts)) for section, ts in groupby(first, key=lambda t: t.section)]

    blocks: list = [("title", tpl.m("title")), ("para", tpl.m("intro"))]
    own = tape.meta.get("settings")  # a run may describe its own settings
    config = own or config
    if config:
        blocks.append(("settings", w("settings"), tpl.settings(config, options=not own)))
    blocks += [("heading", w("model")), ("equations", tpl.equations(tape))]

    blocks += [("heading", w("loop")), ("para", w("loop_intro", k=k1))]
    for section, ts in runs:
        blocks.append(("subheading", tpl.section(section)))
        blocks += [("tensor", tpl.symbol(t.name), _shape(t), tpl.describe(t),
                    tpl.equation(t), tpl.note(t)) for t in ts]

    warm = tape.meta.get("warmup")
    blocks += [("heading", w("inputs")),
               ("para", w("inputs_intro") + (" " + w("warmup_inputs", n=warm["steps"], k=k1) if warm else ""))]
    blocks += _value_tables(inputs, w, tpl)
    blocks.append(("subheading", w("hyper")))
    blocks.append(("table", "", [w("symbol"), w("meaning"), w("value")],
                   [[tpl.symbol(t.name), tpl.describe(t), _value(t)] for t in hypers])
                  if hypers else ("para", w("none")))

    blocks += [("heading", w("numbers", k=k1)), ("para", w("numbers_intro", n=SMALL))]
    for section, ts in runs:
        blocks.append(("subheading", tpl.section(section)))
        blocks += _value_tables(ts, w, tpl)

    names = tpl.losses(tape)
    by_key = {(t.iteration, t.name): t for t in tape.tensors}
    iterations = sorted({t.iteration for t in tape.tensors if t.iteration > 0})
    batch = {n for n in names if any(by_key[(k, n)].value.size > 1 for k in iterations if (k, n) in by_key)}
    rows = [[k] + [float(by_key[(k, n)].value.mean()) if (k, n) in by_key else "–" for n in names]
            for k in iterations]
    if names:
        blocks += [("heading", w("losses")),
                   ("table", "", [w("iteration")] + [tpl.symbol(n) + (f" ({w('mean')})" if n in batch else "")
                                                     for n in names], rows)]
        if batch:
            blocks.append(("para", w("losses_mean")))
        if warm:
            values = [f"{tpl.symbol(n)} {number(float(v[0].mean()))} → {number(float(v[-1].mean()))}"
                      for n, v in warm["series"].items() if n in names and v]
            blocks.append(("para", w("warmup_losses", n=warm["steps"], values="; ".join(values))))
    count = len(inputs) + len(hypers) + len(first) + sum(
        1 for k in iterations[1:] for n in names if (k, n) in by_key)
    return Document(blocks, count)


def number(v) -> str:
    """A value as the documents print it (six significant digits)."""
    return str(v) if isinstance(v, int) else f"{v:.6g}"


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

MD_SPECIAL = set("\\`*_[]<>|~#$&")


def md(text: str) -> str:
    return "".join("\\" + c if c in MD_SPECIAL else c for c in str(text))


def md_code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _md_cell(v) -> str:
    if isinstance(v, np.ndarray):
        return "[" + "; ".join(", ".join(number(float(x)) for x in row) for row in v) + "]"
    if isinstance(v, list):
        return ", ".join(number(x) for x in v) + ", …"
    return md(v) if isinstance(v, str) else number(v)


def to_markdown(doc: Document) -> str:
    out = []
    for kind, *a in doc.blocks:
        if kind == "title":
            out.append(f"# {md(a[0])}\n")
        elif kind == "heading":
            out.append(f"## {md(a[0])}\n")
        elif kind == "subheading":
            out.append(f"### {md(a[0])}\n")
        elif kind == "para":
            out.append(md(a[0]) + "\n")
        elif kind == "settings":
            out.append(f"**{md(a[0])}:** " + "; ".join(f"{md(label)} = {md_code(str(value))}" for label, value in a[1]) + "\n")
        elif kind == "equations":
            out.append("```text\n" + "".join(eq + "\n" for eq in a[0]) + "```\n")
        elif kind == "tensor":
            symbol, shape, description, equation, note = a
            lines = [f"**{md(symbol)}** ({shape}): {md(description)}"]
            lines += [md_code(equation)] if equation else []
            lines.append(f"*{md(note)}*")
            out.append("- " + "\\\n  ".join(lines) + "\n")
        elif kind == "table":
            caption, header, rows = a
            lines = [f"**{md(caption)}**\n"] if caption else []
            lines.append("| " + " | ".join(md(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------------------------

PREAMBLE = r"""% Generated by tracer. Compile with: pdflatex FILE.tex (twice: the tables align on the second run)
\documentclass[11pt]{article}
\usepackage[a4paper,margin=2cm]{geometry}
\usepackage{amsmath}
\usepackage{longtable}
\usepackage{array}
\setlength{\parindent}{0pt}
\setlength{\parskip}{4pt}
\setlength{\tabcolsep}{4pt}
\setlength{\emergencystretch}{3em}
\begin{document}
"""


def tex_number(v) -> str:
    s = number(v)
    if isinstance(v, float) and not np.isfinite(v):
        return r"\mathrm{" + s + "}"
    mantissa, e, exponent = s.partition("e")
    return mantissa + (rf"\cdot 10^{{{int(exponent)}}}" if e else "")


def _tex_cell(v) -> str:
    if isinstance(v, np.ndarray):
        wide = v.shape[1] > max(WIDE, v.shape[0])
        m = v.T if wide else v
        body = r" \\ ".join(" & ".join(tex_number(float(x)) for x in row) for row in m)
        return rf"$\begin{{pmatrix}} {body} \end{{pmatrix}}" + (r"^{\mathrm{T}}$" if wide else "$")
    if isinstance(v, list):
        return ", ".join(f"${tex_number(x)}$" for x in v) + r", \ldots"
    if isinstance(v, str):  # "{}" keeps a row's first "[" (diffusion's [x_t | e(t)]) from reading as \\[length]
        return ("{}" if v.startswith("[") else "") + tex(v)
    return f"${tex_number(v)}$"


TEXT_WIDTH = 16.8  # cm between the margins (A4, 2 cm each side)
CM_PER_CHAR = 0.19  # a character of \small text, on average
GAP = 0.3  # cm between two columns (2 × \tabcolsep)


def _width(v) -> float:
    """About how wide (cm) a cell prints on one line; a matrix keeps its own layout (0: never wrapped)."""
    if isinstance(v, np.ndarray):
        return 0.0
    if isinstance(v, list):
        return sum(len(number(x)) + 2 for x in v) * CM_PER_CHAR + 0.6
    return len(v if isinstance(v, str) else number(v)) * CM_PER_CHAR + (0.6 if isinstance(v, float) else 0)


def columns(header, rows) -> str:
    """The longtable's column spec: every column on one line (l) when the table fits the page,
    else its widest text columns wrapped (p{…}) into the room the others leave."""
    widths = [max([len(header[k]) * CM_PER_CHAR] + [_width(row[k]) for row in rows]) for k in range(len(header))]
    if sum(widths) + GAP * len(widths) <= TEXT_WIDTH:
        return "l" * len(widths)
    texty = [k for k in range(len(widths))
             if all(isinstance(row[k], (str, list)) for row in rows) and widths[k] > 2.5]
    room = TEXT_WIDTH - GAP * len(widths) - sum(w for k, w in enumerate(widths) if k not in texty)
    share = max(2.5, room / max(1, len(texty)))
    return "".join(rf">{{\raggedright\arraybackslash}}p{{{share:.2f}cm}}" if k in texty else "l"
                   for k in range(len(widths)))


def to_latex(doc: Document) -> str:
    out = [PREAMBLE]
    for kind, *a in doc.blocks:
        if kind == "title":
            out.append(rf"{{\LARGE\bfseries {tex(a[0])}\par}}\bigskip")
        elif kind == "heading":
            out.append(rf"\section*{{{tex(a[0])}}}")
        elif kind == "subheading":
            out.append(rf"\subsection*{{{tex(a[0])}}}")
        elif kind == "para":
            out.append(tex(a[0]) + r"\par")
        elif kind == "settings":
            out.append(rf"\textbf{{{tex(a[0])}:}} " + "; ".join(rf"{tex(label)} = \texttt{{{tex(str(value))}}}"
                                                            for label, value in a[1]) + r"\par")
        elif kind == "equations":
            out.append("".join(rf"\hspace*{{2em}}{tex(eq)}\par" + "\n" for eq in a[0]))
        elif kind == "tensor":
            symbol, shape, description, equation, note = a
            lines = [rf"\textbf{{{tex(symbol)}}}\quad {tex(shape)}\quad {tex(description)}"]
            lines += [rf"\hspace*{{1.5em}}{tex(equation)}"] if equation else []
            lines.append(rf"\hspace*{{1.5em}}\textit{{{tex(note)}}}")
            out.append(r"\par\nopagebreak".join(lines) + r"\par\medskip")
        elif kind == "table":
            caption, header, rows = a
            if caption:
                out.append(rf"\textbf{{{tex(caption)}}}\par")
            out.append(r"\begingroup\small" "\n" rf"\begin{{longtable}}{{{columns(header, rows)}}}" "\n"
                       r"\hline" "\n" + " & ".join(rf"\textbf{{{tex(h)}}}" for h in header)
                       + r" \tabularnewline\hline\endhead" "\n"
                       + "".join(" & ".join(_tex_cell(v) for v in row) + r" \tabularnewline" "\n"
                                 for row in rows)
                       + r"\hline" "\n" r"\end{longtable}" "\n" r"\endgroup")
    out.append(r"\end{document}")
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------

def write_document(tape, config: dict, path: Path, lang: str = "en") -> int:
    """Write the walkthrough document (.tex or .md by suffix); returns the number of tensors
    (and loss values) it documents."""
    doc = build(tape, Template.of(tape, lang), config)
    text = to_latex(doc) if Path(path).suffix.lower() == ".tex" else to_markdown(doc)
    with atomic_text(Path(path)) as f:
        f.write(text)
    return doc.count
