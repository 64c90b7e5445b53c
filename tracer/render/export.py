"""Write a traced run: .xlsx (live-formula workbook), .json (every record), .csv (long table), or
the walkthrough as a document, .tex (LaTeX) or .md (Markdown): see tracer.render.document.

JSON: {"model", "config", "tensors": [{"name", "iteration", "phase", "section", "shape", "value",
"op", "inputs"}]} where inputs are [{"name", "iteration"}] (a parameter of iteration k+1 is the update
record of iteration k).  After a --warmup of N steps, the charted values of each warm-up step come
between the inputs and iteration N+1 as records of phase "warmup" (op "warmup", no inputs).  A
language model's JSON also has "tokenizer", "vocab" (the token of each id) and "generated" (each
text after training), and each record of token ids its "tokens" (shaped like value).

CSV: iteration, phase, tensor, index, row, col, value, token with one row per element; index is the
row-major position within the tensor, (row, col) its place, so any tensor can be rebuilt from the
CSV alone; token is the token of an id (a language model's), else empty.  A language model's CSV
also has the vocabulary as the rows of the tensor "vocab" (value: the id, token: its text).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from tracer.core.op import holds_token_ids
from tracer.core.size import DATA_FORMATS, MAX_CELLS, MAX_DATA_VALUES
from tracer.errors import TracerError
from tracer.render.atomic import atomic_text

FORMATS = (".xlsx", ".json", ".csv", ".tex", ".md", ".pdf")


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
    if path.suffix.lower() in (".tex", ".md", ".pdf"):  # what a document needs, before the run
        from tracer.render.walkthrough import check_tools

        check_tools(path)
    return path


COLUMNS = ["iteration", "phase", "tensor", "index", "row", "col", "value", "token"]


def tokens_of(tape):
    """t -> the token texts of its ids (same shape as its value), for the tensors that hold token
    ids; None for every tensor of a model without a vocabulary."""
    tok = tape.meta.get("tokenized")
    if tok is None:
        return lambda t: None
    memo: dict = {}
    return lambda t: ([[tok.vocab[int(v)] for v in row] for row in t.value.tolist()]
                      if holds_token_ids(t, memo) else None)


def records(tape):
    """Every tensor as a record, in the order computed: the inputs, the warm-up's, the traced ones."""
    tokens = tokens_of(tape)
    for t in in_order(tape):
        if isinstance(t, dict):  # a warm-up value
            yield t
            continue
        rec = {
            "name": t.name,
            "iteration": t.iteration,
            "phase": t.phase,
            "section": t.section,
            "shape": list(t.shape),
            "value": t.value.tolist(),
            "op": t.op.name if t.op else "input",
            "inputs": [{"name": u.name, "iteration": u.iteration} for u in t.inputs],
        }
        text = tokens(t)
        if text is not None:
            rec["tokens"] = text
        yield rec


def warmup_records(tape):
    """The charted values of each warm-up step (tracer.models.training), as records of phase
    "warmup": step by step, in the order of the model's chart."""
    warm = tape.meta.get("warmup") or {"steps": 0, "series": {}}
    for k in range(warm["steps"]):
        for name, values in warm["series"].items():
            yield {"name": name, "iteration": k + 1, "phase": "warmup", "section": "warmup",
                   "shape": list(values[k].shape), "value": values[k].tolist(), "op": "warmup", "inputs": []}


def in_order(tape):
    """The tape's tensors with the warm-up records (dicts) between the inputs and the traced
    iterations: the order in which they were computed."""
    warm = None
    for t in tape.tensors:
        if t.iteration and warm is None:
            warm = True
            yield from warmup_records(tape)
        yield t
    if warm is None:
        yield from warmup_records(tape)


def write_json(tape, config: dict, path: Path):
    """The bytes json.dump writes for {"model", "config", (a language model's "tokenizer", "vocab",
    "generated"), "tensors"}, a record at a time (a list of every record would hold each value as a
    Python float: 4× the trace's memory)."""
    head = {"model": tape.meta.get("model"), "config": config}
    tok = tape.meta.get("tokenized")
    if tok is not None:
        head |= {"tokenizer": tok.kind, "vocab": list(tok.vocab),
                 "generated": [{"label": label, "text": text} for label, text in tape.meta.get("generated", [])]}
    with atomic_text(path) as f:
        f.write(json.dumps(head)[:-1] + ', "tensors": [')
        for n, record in enumerate(records(tape)):
            f.write((", " if n else "") + json.dumps(record))
        f.write("]}")


def long_rows(tape):
    """(iteration, phase, tensor, index, row, col, value, token) for every element of every tensor
    (and of every warm-up record, phase "warmup"), row-major; a language model's vocabulary first,
    as the tensor "vocab"."""
    tok = tape.meta.get("tokenized")
    if tok is not None:
        for i, text in enumerate(tok.vocab):
            yield 0, "input", "vocab", i, i, 0, float(i), text
    tokens = tokens_of(tape)
    for t in in_order(tape):
        if isinstance(t, dict):
            value = np.asarray(t["value"], dtype=float).reshape(t["shape"])
            for k, v in enumerate(value.ravel().tolist()):
                yield (t["iteration"], t["phase"], t["name"], k, *divmod(k, value.shape[1]), v, "")
            continue
        cols = t.shape[1]
        text = tokens(t)
        for k, v in enumerate(t.value.ravel().tolist()):
            i, j = divmod(k, cols)
            yield t.iteration, t.phase, t.name, k, i, j, v, text[i][j] if text else ""


def write_csv(tape, path: Path):
    with atomic_text(path) as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for *head, v, token in long_rows(tape):
            w.writerow([*head, repr(v), token])


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
    elif suffix in (".tex", ".md", ".pdf"):
        from tracer.render.walkthrough import write_document

        return write_document(tape, config, path, lang)
    else:
        from tracer.render.layout import Layout
        from tracer.render.template import Template
        from tracer.render.xlsx import write_xlsx

        return write_xlsx(Layout(tape, Template.of(tape, lang), config), path, progress)
    return sum(np.size(t["value"]) if isinstance(t, dict) else t.value.size for t in in_order(tape))  # (not the vocabulary's rows)
