"""The documents' pictures and charts as files: heatmaps as PNG (Pillow: every cell a square of
pixels, on the workbook's own colour scales), labelled matrices and charts with matplotlib (the
loss chart as vector PDF for LaTeX, PNG for Markdown).  Both come with the optional extra
`pip install "tracer[documents]"`; without it a document is refused with a one-line error before
anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracer.errors import TracerError

# The workbook's colour scales (tracer.render.xlsx.SCALES): (value, colour) stops; None: the
# image's own minimum or maximum.
SCALES = {
    "gray": [(0.0, "#FFFFFF"), (1.0, "#000000")],
    "gray_auto": [(None, "#FFFFFF"), (None, "#000000")],
    "diverging": [(None, "#2166AC"), (0.0, "#FFFFFF"), (None, "#B2182B")],
    "attention": [(0.0, "#FFFFFF"), (1.0, "#08306B")],
    "signed": [(-1.0, "#FFFFFF"), (1.0, "#000000")],
}
CELL_PX = 8  # pixels per cell of a 28 × 28 digit (smaller pictures get more, up to 224 px a side)
SIDE_PX = 224
GAP_PX = 6
DPI = 150
CHART_SIZE = (6.0, 3.0)  # inches
COLOURS = ("#1F4E79", "#E46C0A", "#548235", "#7030A0", "#C00000")


def require() -> None:
    """Refuse (one line) when the drawing libraries are missing: before any work is done."""
    try:
        import matplotlib  # noqa: F401
        import PIL  # noqa: F401
    except ImportError:
        raise TracerError('a .tex, .pdf or .md walkthrough draws its figures with matplotlib and Pillow: '
                          'pip install "tracer[documents]"') from None


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[k:k + 2], 16) for k in (1, 3, 5)], dtype=float)


def colour(values: np.ndarray, scale: str, lo: float, hi: float) -> np.ndarray:
    """values (h × w) as RGB bytes on the scale; lo and hi: the picture's own extremes."""
    stops = [(lo if v is None and k == 0 else hi if v is None else v, _rgb(c))
             for k, (v, c) in enumerate(SCALES.get(scale, SCALES["gray_auto"]))]
    xs = [v for v, _ in stops]
    if any(b <= a for a, b in zip(xs, xs[1:])):  # a flat picture (or a sign it lacks): its middle colour
        xs = list(np.linspace(min(xs[0], xs[-1]) - 1, max(xs[0], xs[-1]) + 1, len(xs)))
    out = np.empty(values.shape + (3,))
    v = np.clip(np.nan_to_num(values, nan=0.0), xs[0], xs[-1])
    for ch in range(3):
        out[..., ch] = np.interp(v, xs, [c[ch] for _, c in stops])
    return out.round().astype(np.uint8)


def heatmaps(images: list, scale: str, columns: int) -> "Image":
    """The images side by side (`columns` a row), each cell a square of pixels."""
    from PIL import Image

    lo = min(float(np.min(im)) for im in images)
    hi = max(float(np.max(im)) for im in images)
    h, w = images[0].shape
    cell = max(1, min(CELL_PX * 28 // max(h, w), SIDE_PX // max(h, w)))
    if max(h, w) * cell < 56:
        cell = max(cell, 56 // max(h, w))
    columns = max(1, min(columns or len(images), len(images)))
    rows = -(-len(images) // columns)
    W, H = w * cell, h * cell
    sheet = Image.new("RGB", (columns * W + (columns - 1) * GAP_PX, rows * H + (rows - 1) * GAP_PX), "white")
    for n, im in enumerate(images):
        tile = Image.fromarray(colour(np.asarray(im, dtype=float), scale, lo, hi), "RGB")
        tile = tile.resize((W, H), Image.NEAREST)
        r, c = divmod(n, columns)
        sheet.paste(tile, (c * (W + GAP_PX), r * (H + GAP_PX)))
    return sheet


def _figure(size):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig


STYLE = {"font.family": ["DejaVu Serif", "DejaVu Sans"], "mathtext.fontset": "cm", "font.size": 9,
         "svg.hashsalt": "tracer"}


def matrix(fig_data, path: Path) -> None:
    """One array with its rows and columns labelled (attention weights, a state over time)."""
    from matplotlib.colors import LinearSegmentedColormap

    values = np.asarray(fig_data.images[0], dtype=float)
    lo, hi = float(values.min()), float(values.max())
    stops = SCALES.get(fig_data.scale, SCALES["gray_auto"])
    xs = [lo if v is None and k == 0 else hi if v is None else v for k, (v, _) in enumerate(stops)]
    if any(b <= a for a, b in zip(xs, xs[1:])):
        xs = list(np.linspace(xs[0] - 1, xs[0] + 1, len(xs)))
    cmap = LinearSegmentedColormap.from_list(
        "scale", [((x - xs[0]) / (xs[-1] - xs[0]), c) for x, (_, c) in zip(xs, stops)])
    rows, cols = values.shape
    fig = _figure((min(6.0, 1.2 + 0.32 * cols), min(6.0, 1.0 + 0.3 * rows)))
    ax = fig.add_subplot()
    shown = ax.imshow(values, cmap=cmap, vmin=xs[0], vmax=xs[-1], interpolation="nearest", aspect="equal")
    ax.set_xticks(range(cols), fig_data.col_labels[:cols], rotation=90, fontsize=7)
    ax.set_yticks(range(rows), fig_data.row_labels[:rows], fontsize=7)
    ax.tick_params(length=0)
    fig.colorbar(shown, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    fig.savefig(path, dpi=DPI, metadata=_metadata(path))


def _metadata(path: Path) -> dict:
    """No dates or versions in a file: the same run gives the same bytes."""
    if path.suffix == ".pdf":
        return {"CreationDate": None, "Producer": None, "Creator": None, "ModDate": None}
    return {"Software": None}


def mathtext(latex: str) -> str:
    """A symbol's LaTeX as matplotlib's mathtext ($…$), which knows \\mathrm but not \\text."""
    import re

    if re.search(r"\\['`^\"~=.]", latex):  # an accented word: as plain text
        return re.sub(r"\\[A-Za-z]+|[{}\\'`^~]", "", latex).replace("_", " ")
    return "$" + latex.replace(r"\text{", r"\mathrm{").replace(r"\ ", r"\ ") + "$"


def losses(fig_data, path: Path) -> None:
    """The loss of every iteration (a warm-up's steps first), the secondary ones on a right axis."""
    fig = _figure(CHART_SIZE)
    ax = fig.add_subplot()
    right = ax.twinx() if fig_data.secondary and set(fig_data.series) - set(fig_data.secondary) else None
    lines = []
    for n, (name, values) in enumerate(fig_data.series.items()):
        target = right if right is not None and name in fig_data.secondary else ax
        steps = range(1, len(values) + 1)
        lines += target.plot(steps, values, marker="o" if len(values) <= 40 else None, markersize=3,
                             color=COLOURS[n % len(COLOURS)], label=mathtext(name))
    ax.set_xlabel(fig_data.axes[0])
    ax.set_ylabel(", ".join(ln.get_label() for ln in lines if right is None or ln.axes is ax))
    if right is not None:
        right.set_ylabel(", ".join(ln.get_label() for ln in lines if ln.axes is right))
    ax.grid(alpha=0.3)
    if len(next(iter(fig_data.series.values()), [])) <= 12:
        ax.set_xticks(range(1, len(next(iter(fig_data.series.values()))) + 1))
    fig.legend(lines, [ln.get_label() for ln in lines], fontsize=8, frameon=False, loc="outside lower center",
               ncols=len(lines))
    fig.savefig(path, dpi=DPI, metadata=_metadata(path))


def scatter(fig_data, path: Path) -> None:
    fig = _figure((3.6, 3.4))
    ax = fig.add_subplot()
    for n, (name, points) in enumerate(fig_data.series.items()):
        ax.scatter(points[:, 0], points[:, 1], s=10, color=COLOURS[n % len(COLOURS)], label=name)
    ax.set_xlabel(fig_data.axes[0])
    ax.set_ylabel(fig_data.axes[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=DPI, metadata=_metadata(path))


def write_figures(figures: list, folder: Path, vector: bool) -> dict:
    """Draw every figure into `folder`; returns {figure name: file name}.  `vector`: charts as PDF
    (for pdflatex), else everything PNG."""
    import matplotlib

    names = {}
    with matplotlib.rc_context(STYLE):
        for fig in figures:
            names[fig.name] = _draw(fig, folder, vector)
    return names


def _draw(fig, folder: Path, vector: bool) -> str:
    """One figure's file; returns its name."""
    if fig.kind == "images":
        path = folder / f"{fig.name}.png"
        heatmaps(fig.images, fig.scale, fig.columns).save(path, optimize=True)
    else:
        path = folder / f"{fig.name}.{'pdf' if vector else 'png'}"
        {"matrix": matrix, "losses": losses, "scatter": scatter}[fig.kind](fig, path)
    return path.name
