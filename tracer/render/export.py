"""Write a traced run: .xlsx (live-formula workbook), .json (every record), .csv (long table), or
the walkthrough as a document, .tex (LaTeX) or .md (Markdown): see tracer.render.document.

JSON: {"model", "config", "tensors": [{"name", "iteration", "phase", "section", "shape", "value",
"op", "inputs"}]} where inputs are [{"name", "iteration"}] (a parameter of iteration k+1 is the update
record of iteration k).  CSV: iteration, phase, tensor, index, value with one row per element;
index is the row-major position within the tensor.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from tracer.core.size import DATA_FORMATS, MAX_CELLS, MAX_DATA_VALUES
from tracer.errors import TracerError
from tracer.render.atomic import atomic_text

FORMATS = (".xlsx", ".json", ".csv", ".tex", ".md")


def check_output(path: Path) -> Path:
    """Refuse an unknown suffix or a folder that cannot be written, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise TracerError(f"cannot write {path}: it is a folder")
    if path.suffix.lower() not in FORMATS:
        raise TracerError(f"cannot write {path.name}: the output must end in {', '.join(FORMATS)}")
    existing = path.parent
    while not existing.exists():  # the folder is made only when the file is written
        existing = existing.parent
    if not existing.is_dir():
        raise TracerError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TracerError(f"cannot write to the folder {existing}: permission denied")
    return path


def records(tape):
    for t in tape.tensors:
        yield {
            "name": t.name,
            "iteration": t.iteration,
            "phase": t.phase,
            "section": t.section,
            "shape": list(t.shape),
            "value": t.value.tolist(),
            "op": t.op.name if t.op else "input",
            "inputs": [{"name": u.name, "iteration": u.iteration} for u in t.inputs],
        }


def write_json(tape, config: dict, path: Path):
    """The bytes json.dump writes for {"model", "config", "tensors"}, a record at a time (a list of every
    record would hold each value as a Python float: 4× the trace's memory)."""
    with atomic_text(path) as f:
        f.write(f'{{"model": {json.dumps(tape.meta.get("model"))}, "config": {json.dumps(config)}, "tensors": [')
        for n, record in enumerate(records(tape)):
            f.write((", " if n else "") + json.dumps(record))
        f.write("]}")


def long_rows(tape):
    """(iteration, phase, tensor, index, value) for every element of every tensor, row-major."""
    for t in tape.tensors:
        for k, v in enumerate(t.value.ravel().tolist()):
            yield t.iteration, t.phase, t.name, k, v


def write_csv(tape, path: Path):
    with atomic_text(path) as f:
        w = csv.writer(f)
        w.writerow(["iteration", "phase", "tensor", "index", "value"])
        for iteration, phase, name, k, v in long_rows(tape):
            w.writerow([iteration, phase, name, k, repr(v)])


def prepare_folder(path: Path) -> Path:
    """Check the output path and make its folder."""
    path = check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TracerError(f"cannot create the output folder {path.parent}: {e.strerror}") from None
    return path


def check_size(tape, suffix: str) -> None:
    """The exact count against the limits the options' estimate was checked against before tracing
    (tracer.models.check_size): the values of a run, and of a .json or .csv file."""
    n = sum(t.value.size for t in tape.tensors)
    limit = MAX_DATA_VALUES if suffix in DATA_FORMATS else MAX_CELLS
    if n > limit:
        raise TracerError(f"the run holds {n:,} values: more than the limit of {limit:,} for a {suffix} file")


def export(tape, config: dict, path: Path, lang: str = "en", progress=None) -> int:
    """Write the run to `path` by its suffix; returns the number of cells (or values) written."""
    path = prepare_folder(path)
    suffix = path.suffix.lower()
    check_size(tape, suffix)
    if suffix == ".json":
        write_json(tape, config, path)
    elif suffix == ".csv":
        write_csv(tape, path)
    elif suffix in (".tex", ".md"):
        from tracer.render.document import write_document

        return write_document(tape, config, path, lang)
    else:
        from tracer.render.layout import Layout
        from tracer.render.template import Template
        from tracer.render.xlsx import write_xlsx

        return write_xlsx(Layout(tape, Template.of(tape, lang), config), path, progress)
    return sum(t.value.size for t in tape.tensors)
