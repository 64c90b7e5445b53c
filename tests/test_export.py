"""Exporting a trace: the .xlsx read back with openpyxl, the .json and .csv, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from tracer.core.size import BAND
from tracer.errors import TracerError
from tracer.models import vae
from tracer.render import xlsx
from tracer.render.export import check_output, export

SHEETS_EN = ["Overview", "Inputs", "Iteration 1", "Iteration 2", "Iteration 3", "Iteration 4", "After training",
             "Pictures"]
SHEETS_ES = ["Resumen", "Entradas", "Iteración 1", "Iteración 2", "Iteración 3", "Iteración 4",
             "Tras el entrenamiento", "Imágenes"]
PARAMS = ("W1", "b1", "W_mu", "b_mu", "W_logvar", "b_logvar", "W3", "b3", "W4", "b4")
SHEET_REF = re.compile(r"'((?:[^']|'')+)'!")


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def tensors_of(tape, k):
    """The tensors of iteration k's sheet (what the trained model computes has a sheet of its own)."""
    return [t for t in tape.tensors if t.iteration == k and t.phase != "after"]


def after_training(tape):
    return [t for t in tape.tensors if t.phase == "after"]


# --- the workbook -----------------------------------------------------------------------------

def test_sheets(vae_book):
    assert vae_book("en").sheetnames == SHEETS_EN
    assert vae_book("es").sheetnames == SHEETS_ES


def test_every_formula_cell_has_a_stored_number(vae_book):
    book = vae_book("en")
    n = 0
    for sheet, formulas in book.formulas.items():
        for rc in formulas:
            v = book.cached[sheet].get(rc)
            assert is_number(v) and math.isfinite(v), (sheet, rc, formulas[rc], v)
            n += 1
    assert n > 100_000


def test_stored_values_are_the_traced_values(vae_book, vae_tape):
    """On each iteration sheet the formula cells hold exactly the values of the computed tensors."""
    book = vae_book("en")
    for k in range(1, 5):
        computed = [t for t in tensors_of(vae_tape, k) if t.op is not None]
        want = np.sort(np.concatenate([t.value.ravel() for t in computed]))
        got = np.sort(np.array(list(book.cached[f"Iteration {k}"].values()), dtype=float))
        assert got.shape == want.shape  # one formula per element of every computed tensor
        np.testing.assert_array_equal(got, want)


def grid_constants(book, sheet):
    """Split a tensor sheet's numeric constants into row indices (column A), column numbers (the
    row above each grid, which has no row index) and the data in the grids."""
    consts = {rc: v for rc, v in book.constants[sheet].items() if is_number(v)}
    index_rows = {r for (r, c), v in consts.items() if c == 1}
    headers, data = {}, {}
    for (r, c), v in consts.items():
        if c == 1:
            continue
        (data if r in index_rows else headers)[(r, c)] = v
    return consts, index_rows, headers, data


def test_the_only_constants_are_the_inputs_and_the_draws(vae_book, vae_tape, vae_config):
    book = vae_book("en")
    for sheet in book.sheetnames[1:-1]:  # the tensor sheets
        consts, index_rows, headers, data = grid_constants(book, sheet)
        assert all(float(consts[(r, 1)]).is_integer() and consts[(r, 1)] >= 1 for r in index_rows)
        # column numbers 1, 2, ..., a band of a wide tensor's 17, 18, ... (tracer.core.size.BAND)
        assert all(v >= c - 1 and (v - c + 1) % BAND == 0 for (r, c), v in headers.items()), sheet
        if sheet == "After training":  # the latent grid's points and the draws from the prior
            expected = [t for t in after_training(vae_tape) if t.op is None]
            assert [t.name for t in expected] == ["z_grid", "z_prior"]
            assert len(book.formulas[sheet]) == sum(t.value.size for t in after_training(vae_tape) if t.op)
        k = 0 if sheet == "Inputs" else -1 if sheet == "After training" else int(sheet.split()[-1])
        if k == -1:
            pass
        elif k == 0:
            expected = [vae_tape.tensors[0]] + [t for t in tensors_of(vae_tape, 0) if t.name in PARAMS]
            assert [t.name for t in expected] == ["x", *PARAMS]
            assert not book.formulas[sheet]
        else:
            expected = [t for t in tensors_of(vae_tape, k) if t.op is None]
            assert [t.name for t in expected] == ["eps"]
            # every other cell of the forward, loss, backward and update blocks is a formula
            n_computed = sum(t.value.size for t in tensors_of(vae_tape, k) if t.op is not None)
            assert len(book.formulas[sheet]) == n_computed
            assert set(book.formulas[sheet]).isdisjoint(data)
        want = np.sort(np.concatenate([t.value.ravel() for t in expected]))
        # constants are stored exactly (shortest repr), like the values of formulas
        np.testing.assert_array_equal(np.sort(np.array(list(data.values()), dtype=float)), want)
    # the overview: lr, the settings and the iteration numbers of the loss table
    over = {rc: v for rc, v in book.constants["Overview"].items() if is_number(v)}
    assert sorted(v for (r, c), v in over.items() if c == 1) == [1, 2, 3, 4]
    texts = {rc: v for rc, v in book.constants["Overview"].items() if isinstance(v, str)}
    config = dataclasses.asdict(vae_config)
    kinds = set()
    for (r, c), v in over.items():
        if c == 1:  # the iterations of the loss table
            continue
        at = max((rc for rc in texts if rc[0] == r and rc[1] < c), key=lambda rc: rc[1])  # the label: left of it
        label, below = texts[at], r + 1
        while (below, at[1]) in texts and (below, c) not in texts and (below, c) not in over:  # on more lines
            label, below = f"{label} {texts[(below, at[1])]}", below + 1
        flag = re.search(r"\(--([a-z0-9-]+)\)$", label)  # "iterations  (--iterations)"
        key = flag.group(1).replace("-", "_") if flag else label
        if flag and key in config:  # a setting of the export
            assert v == config[key], key
            kinds.add("setting")
        elif key == "lr":  # the named hyperparameter cell: its symbol, the value, its meaning
            assert v == vae_config.lr
            kinds.add("lr")
        else:  # the only other number: the digit's label
            assert v == vae_tape.meta["label"] == 7, key
            kinds.add("label")
    assert kinds == {"setting", "lr", "label"}
    # the pictures are formulas only
    assert not [v for v in book.constants["Pictures"].values() if is_number(v)]


def test_lr_is_a_defined_name(vae_book, vae_tape):
    book = vae_book("en")
    assert set(book.defined_names) == {"lr"}
    m = re.fullmatch(r"'?(\w+)'?!\$([A-Z]+)\$(\d+)", book.defined_names["lr"])
    assert m and m.group(1) == "Overview"
    col = ord(m.group(2)) - 64
    assert book.constants["Overview"][(int(m.group(3)), col)] == 0.005
    # every update cell of an iteration refers to lr by name
    updates = [f for f in book.formulas["Iteration 3"].values() if "-lr*" in f]
    assert len(updates) == sum(t.value.size for t in tensors_of(vae_tape, 0) if t.name in PARAMS)


def _ref_cells(book, ref, here):
    """Cached or constant values of 'Sheet'!A1:B2 (or A1 on `here`) as a flat list."""
    m = re.fullmatch(r"(?:'((?:[^']|'')+)'!)?([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?", ref)
    sheet = (m.group(1) or here).replace("''", "'")

    def col(s):
        n = 0
        for ch in s:
            n = n * 26 + ord(ch) - 64
        return n

    c0, r0 = col(m.group(2)), int(m.group(3))
    c1, r1 = (col(m.group(4)), int(m.group(5))) if m.group(4) else (c0, r0)
    out = []
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            v = book.cached[sheet].get((r, c), book.constants[sheet].get((r, c)))
            out.append(float(v))
    return out


def test_iteration_2_starts_from_the_updates_of_iteration_1(vae_book, vae_tape):
    book = vae_book("en")
    first_row = min(book.formulas["Iteration 2"])  # the first computed block: h_pre[0, 0]
    f = book.formulas["Iteration 2"][first_row]
    # x · W1[:, 0] + b1[0]: W1 (784 × 64) turned, in bands of 16 columns: a product of each band's
    # piece and x's, added up (MMULT of the row by the column)
    *terms, b_ref = f.split("+")
    pairs = [re.fullmatch(r"(?:SUMPRODUCT|MMULT)\(([^,]+),([^)]+)\)", term) for term in terms]
    assert len(terms) == 784 // BAND and all(pairs), f
    x_refs = [m[1] if m[1].startswith("'Inputs'!") else m[2] for m in pairs]
    w_refs = [m[2] if m[1].startswith("'Inputs'!") else m[1] for m in pairs]
    assert all(x.startswith("'Inputs'!") for x in x_refs) and all(w.startswith("'Iteration 1'!") for w in w_refs)
    assert b_ref.startswith("'Iteration 1'!")
    # the referenced cells hold x, column 0 of iteration 1's new W1 and iteration 1's new b1[0]
    it1 = {t.name: t for t in tensors_of(vae_tape, 1)}
    x = [v for ref in x_refs for v in _ref_cells(book, ref, "Iteration 2")]
    np.testing.assert_array_equal(x, vae_tape.tensors[0].value.ravel())
    w = [v for ref in w_refs for v in _ref_cells(book, ref, "Iteration 2")]
    np.testing.assert_array_equal(w, it1["W1"].value[:, 0])
    assert _ref_cells(book, b_ref, "Iteration 2") == [it1["b1"].value[0, 0]]
    h_pre = {t.name: t for t in tensors_of(vae_tape, 2)}["h_pre"].value[0, 0]
    assert book.cached["Iteration 2"][first_row] == h_pre


def test_iterations_refer_only_to_the_inputs_and_the_previous_iteration(vae_book):
    for lang, names in (("en", SHEETS_EN), ("es", SHEETS_ES)):
        book = vae_book(lang)
        for k in range(1, 5):
            sheet = names[1 + k]
            allowed = {names[1], names[k]} if k > 1 else {names[1]}
            used = set()
            for f in book.formulas[sheet].values():
                used |= {s.replace("''", "'") for s in SHEET_REF.findall(f)}
            assert used == allowed, (sheet, used)


def test_spanish_workbook_has_spanish_sheets_and_the_same_numbers(vae_book):
    en, es = vae_book("en"), vae_book("es")
    assert "Resumen" in es.sheetnames and "Iteración 1" in es.sheetnames
    for a, b in zip(SHEETS_EN, SHEETS_ES):
        assert es.cached[b] == en.cached[a]
        assert set(es.formulas[b]) == set(en.formulas[a])
    some = next(f for f in es.formulas["Iteración 2"].values() if "Iteración 1" in f)
    assert "'Iteración 1'!" in some


def test_xlsx_export_returns_the_cell_count(tmp_path):
    tape = vae.trace(vae.Config(hidden=2, iterations=1))
    path = tmp_path / "small.xlsx"
    seen = []
    n = export(tape, {}, path, progress=seen.append)
    assert path.is_file() and n > sum(t.value.size for t in tape.tensors)
    # one call per block, with its number of cells: every tensor but the hyperparameter lr
    assert sum(seen) == sum(t.value.size for t in tape.tensors if t.name != "lr")
    assert len(seen) == len(tape.tensors) - 1
    assert [p.name for p in tmp_path.iterdir()] == ["small.xlsx"]


# --- JSON and CSV -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def json_and_csv(vae_tape, vae_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("json-csv")
    config = dataclasses.asdict(vae_config)
    n_json = export(vae_tape, config, folder / "vae.json")
    n_csv = export(vae_tape, config, folder / "vae.csv")
    return folder, n_json, n_csv


def test_json_export(json_and_csv, vae_tape, vae_config):
    folder, n, _ = json_and_csv
    data = json.loads((folder / "vae.json").read_text("utf-8"))
    assert set(data) == {"model", "config", "tensors"}
    assert data["model"] == "vae" and data["config"] == dataclasses.asdict(vae_config)
    records = data["tensors"]
    assert len(records) == len(vae_tape.tensors)
    assert n == sum(t.value.size for t in vae_tape.tensors)
    for rec, t in zip(records, vae_tape.tensors):
        assert set(rec) == {"name", "iteration", "phase", "section", "shape", "value", "op", "inputs"}
        assert (rec["name"], rec["iteration"], rec["phase"], rec["section"], rec["shape"]) == \
            (t.name, t.iteration, t.phase, t.section, list(t.shape))
        assert rec["op"] == (t.op.name if t.op else "input")
        assert rec["inputs"] == [{"name": u.name, "iteration": u.iteration} for u in t.inputs]
        assert np.array_equal(np.array(rec["value"]), t.value)
    names = {r["name"] for r in records}
    assert {"W1", "mu", "logvar", "eps", "x_hat", "recon", "kl", "loss", "dL/dW1"} <= names
    assert [r["iteration"] for r in records if r["name"] == "W1" and r["phase"] == "update"] == [1, 2, 3, 4]
    h_pre_2 = next(r for r in records if r["name"] == "h_pre" and r["iteration"] == 2)
    assert h_pre_2["inputs"] == [{"name": "x", "iteration": 0}, {"name": "W1", "iteration": 1},
                                 {"name": "b1", "iteration": 1}]


def test_csv_export(json_and_csv, vae_tape):
    folder, _, n = json_and_csv
    # pandas 3 parses floats exactly by default; before 3 that needs float_precision="round_trip"
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    df = pd.read_csv(folder / "vae.csv", **exact)
    assert list(df.columns) == ["iteration", "phase", "tensor", "index", "row", "col", "value", "token"]
    total = sum(t.value.size for t in vae_tape.tensors)
    assert len(df) == total == n
    w1 = df[(df.tensor == "W1") & (df.iteration == 2) & (df.phase == "update")]
    t = next(t for t in vae_tape.tensors if t.name == "W1" and t.iteration == 2)
    assert list(w1["index"]) == list(range(t.value.size))
    np.testing.assert_array_equal(w1["value"].to_numpy(), t.value.ravel())  # repr: exact
    assert set(df.phase) == {"input", "forward", "loss", "backward", "update", "after"}
    assert df["token"].isna().all()  # no vocabulary: no token


def rebuild(df, name, iteration):
    """A tensor from the long table alone: its shape from the row and col columns."""
    part = df[(df.tensor == name) & (df.iteration == iteration)]
    out = np.full((part["row"].max() + 1, part["col"].max() + 1), np.nan)
    out[part["row"], part["col"]] = part["value"]
    return out


def test_csv_rebuilds_every_tensor(json_and_csv, vae_tape):
    folder, _, _ = json_and_csv
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    df = pd.read_csv(folder / "vae.csv", **exact)
    for t in vae_tape.tensors:  # a tensor is its iteration and name
        np.testing.assert_array_equal(rebuild(df, t.name, t.iteration), t.value)


def test_language_models_carry_their_vocabulary_and_tokens(tmp_path):
    """JSON: the vocabulary, the generated texts and the tokens of every record of ids; CSV: the
    vocabulary's rows and a token beside every id, every tensor rebuilt from the table alone."""
    from tracer import api

    run = api.run("transformer", iterations=1, generate=3, temperature="1")
    tok = run.tape.meta["tokenized"]
    run.save(tmp_path / "t.json")
    run.save(tmp_path / "t.csv")
    data = json.loads((tmp_path / "t.json").read_text("utf-8"))
    assert data["vocab"] == list(tok.vocab) and data["tokenizer"] == "word"
    assert [g["label"] for g in data["generated"]] == ["greedy", "1"]
    by_name = {(r["name"], r["iteration"]): r for r in data["tensors"]}
    ids = by_name[("ids", 0)]
    assert ids["tokens"] == [[tok.vocab[int(v)]] for (v,) in ids["value"]]
    greedy = by_name[("generated (greedy)", 1)]
    assert " ".join(t for (t,) in greedy["tokens"]) == " ".join(tok.vocab[int(v)] for (v,) in greedy["value"])
    assert "tokens" not in by_name[("E", 0)] and "tokens" not in by_name[("pos", 0)]
    df = pd.read_csv(tmp_path / "t.csv", keep_default_na=False, dtype={"value": str})
    df["value"] = df["value"].map(float)
    vocab = df[df.tensor == "vocab"]
    assert list(vocab["token"]) == list(tok.vocab) and list(vocab["value"]) == list(range(len(tok.vocab)))
    rows = df[(df.tensor == "ids") & (df.iteration == 0)]
    assert list(rows["token"]) == [tok.vocab[int(v)] for v in rows["value"]]
    for t in run.tape.tensors:
        np.testing.assert_array_equal(rebuild(df, t.name, t.iteration), t.value)


# --- failures leave nothing behind ------------------------------------------------------------

def small_tape():
    return vae.trace(vae.Config(hidden=2, iterations=1))


def test_failed_xlsx_export_leaves_no_file(tmp_path, monkeypatch):
    calls = []
    original = xlsx._Writer._block

    def failing(self, ws, sheet, block):
        calls.append(block)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return original(self, ws, sheet, block)

    monkeypatch.setattr(xlsx._Writer, "_block", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        export(small_tape(), {}, tmp_path / "out.xlsx")
    assert len(calls) == 5
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "out.xlsx"
    path.write_bytes(b"previous")

    def interrupted(self, ws, sheet, block):
        raise KeyboardInterrupt

    monkeypatch.setattr(xlsx._Writer, "_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(small_tape(), {}, path)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == b"previous"


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_failed_text_export_leaves_no_file(tmp_path, monkeypatch, suffix):
    tape = small_tape()

    class Broken:
        meta = tape.meta

        @property
        def tensors(self):
            for n, t in enumerate(tape.tensors):
                if n == 10:
                    raise RuntimeError("broken record")
                yield t

    with pytest.raises(RuntimeError, match="broken record"):
        export(Broken(), {}, tmp_path / f"out{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_written_files_are_not_private(tmp_path):
    path = tmp_path / "t.json"
    export(small_tape(), {}, path)
    assert path.stat().st_mode & 0o044  # readable by others as the umask allows (mkstemp is 0600)


@pytest.mark.parametrize("name", ["out.txt", "out", "out.xls", "out.xlsx.bak"])
def test_unknown_suffix_is_refused(tmp_path, name):
    with pytest.raises(TracerError, match="must end in .xlsx, .json, .csv"):
        check_output(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_output_folder_problems(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(TracerError, match="is a file, not a folder"):
        check_output(tmp_path / "file.txt" / "out.xlsx")
    (tmp_path / "dir.xlsx").mkdir()
    with pytest.raises(TracerError, match="it is a folder"):
        check_output(tmp_path / "dir.xlsx")
    assert check_output(tmp_path / "new" / "deeper" / "OUT.XLSX") == tmp_path / "new" / "deeper" / "OUT.XLSX"
    assert not (tmp_path / "new").exists()  # made only when a file is written
