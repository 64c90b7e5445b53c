"""The walkthrough document as Markdown for a documentation site: the mathematics between $ … $ and
$$ … $$ (the convention of pymdownx.arithmatex, rendered by MathJax), a tensor's values as a table,
the pictures and the loss chart as PNG files in the folder beside the page."""

from __future__ import annotations

import numpy as np

from tracer.render import document
from tracer.render.document import Document, Equation, Prose, corners, entry, number, whole
from tracer.render.latex import aligned, runs, tex_number

MD_SPECIAL = set("\\`*_[]<>|~#$&")


def md(s: str) -> str:
    return "".join("\\" + c if c in MD_SPECIAL else c for c in str(s)).replace("\n", " ")


def text(p: Prose | str) -> str:
    if isinstance(p, str):
        return md(p)
    return "".join(f"${m}$" if is_math else md(m) for is_math, m in p.pieces)


def display(*lines: str) -> str:
    return "$$\n" + (r"\begin{gathered}" + r" \\ ".join(lines) + r"\end{gathered}" if len(lines) > 1 else lines[0]) + "\n$$"


def _number(v: float) -> str:
    s = entry(v)
    return f"${tex_number(v)}$" if "e" in s or not np.isfinite(v) else s


def values_table(value: np.ndarray) -> str:
    """A tensor's values as a table: rows and columns numbered from 1; a larger one by its
    corners, with ⋯ and ⋮ where the rest is."""
    rows, cols, v = corners(value)
    header = "| | " + " | ".join("⋯" if j is None else str(j + 1) for j in cols) + " |"
    lines = [header, "|---:|" + "---:|" * len(cols)]
    for i in rows:
        label = "⋮" if i is None else f"**{i + 1}**"
        cells = [("⋱" if i is None else "⋯") if j is None else ("⋮" if i is None else _number(float(v[i, j])))
                 for j in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _equation(eq: Equation) -> list[str]:
    out = []
    if eq.label:
        out.append(text(eq.label))
    if eq.lines:
        out.append(display(*eq.lines))
    elif eq.prose:
        out.append(text(eq.prose))
    if eq.comment:
        out.append(f"<small>{text(eq.comment)}</small>")
    return out


def tensor(view) -> list[str]:
    out = [f"**${view.symbol}$** · {text(view.description)} "
           f"(${view.shape[0]} \\times {view.shape[1]}$)"]
    if view.equation is not None:
        out += _equation(view.equation)
    out.append(values_table(view.value))
    note = text(view.note) + ("" if whole(view.value) else " " + text(view.where))
    out.append(f"<small>*{note.strip()}*</small>" if note.strip() else "")
    return [p for p in out if p]


def table(caption: str, header: list, rows: list) -> str:
    def cell(v):
        return document.cell(v, text, md, str, number)

    lines = [f"**{md(caption)}**\n"] if caption else []
    lines.append("| " + " | ".join(cell(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(doc: Document, folder: str, files: dict) -> str:
    out = []
    for block in doc.blocks:
        kind, a = block.kind, block.args
        if kind == "title":
            out.append(f"# {md(a[0])}")
        elif kind == "heading":
            out.append(f"## {md(a[0])}")
        elif kind == "subheading":
            out.append(f"### {text(Prose.of(a[0]))}")
        elif kind == "para":
            out.append(text(a[0]))
        elif kind == "settings":
            out.append(f"| {md(a[0])} | |\n|---|---|\n" + "\n".join(
                f"| {text(Prose.of(label))} | `{value}` |" for label, value in a[1]))
        elif kind == "equations":
            for group in runs(a[0]):
                out.extend([display(aligned(group, "aligned"))] if isinstance(group, list) else _equation(group))
        elif kind == "tensor":
            out.extend(tensor(a[0]))
        elif kind == "figure":
            fig = a[0]
            out.append(f"![{md(fig.caption.plain())}]({folder}/{files[fig.name]})\n\n<small>{text(fig.caption)}</small>")
        elif kind == "table":
            out.append(table(*a))
    return "\n\n".join(out) + "\n"



