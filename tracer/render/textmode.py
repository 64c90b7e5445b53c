"""Unicode text as text-mode LaTeX in plain ASCII: specials escaped, accents as accent commands
(é is \\'{e}), every known symbol a command (math ones through \\ensuremath), so that a .tex needs
no input encoding and only Debian's texlive-latex-base.  The mathematics itself is
tracer.render.mathtext's; this is for the words around it (and inside \\text{…})."""

from __future__ import annotations

import unicodedata

TEXT = {  # text-mode replacements
    "#": r"\#", "$": r"\$", "%": r"\%", "&": r"\&", "_": r"\_", "{": r"\{", "}": r"\}",
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
