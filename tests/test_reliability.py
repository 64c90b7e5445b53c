"""Bad input and broken files are one line and exit code 2, never a traceback; no option sets a
recursion depth; and the same command gives the same bytes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from student import fill
from test_cli import tracer

from tracer import api, models
from tracer.checks.exercise import CHUNK, seal
from tracer.core.linalg import add
from tracer.core.tape import Tape
from tracer.render.xlsx import INFO_SHEET

VAE = ("vae", "--hidden", "2", "--iterations", "1")


def cut_sheet(src: Path, dst: Path, part: str = "xl/worksheets/sheet3.xml") -> Path:
    """A copy of a workbook whose sheet XML is cut in half, inside a valid zip."""
    with zipfile.ZipFile(src) as z:
        parts = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts:
            z.writestr(name, data[: len(data) // 2] if name == part else data)
    return dst


def edit_recipe(src: Path, dst: Path, change, reseal=True) -> Path:
    """A copy of an exercise whose recipe `change(recipe)` edits (sealed again, as a forger would)."""
    wb = load_workbook(src)
    ws = wb[INFO_SHEET]
    recipe = json.loads("".join(row[1] for row in ws.iter_rows(min_row=2, max_col=2, values_only=True) if row[1]))
    change(recipe)
    if reseal:
        recipe["seal"] = seal(recipe)
    text = json.dumps(recipe)
    ws.delete_rows(2, ws.max_row)
    for k in range(-(-len(text) // CHUNK)):
        ws.cell(row=2 + k, column=1, value=str(k))
        ws.cell(row=2 + k, column=2, value=text[k * CHUNK:(k + 1) * CHUNK])
    wb.save(dst)
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The broken files of the table below, made once."""
    folder = tmp_path_factory.mktemp("broken")
    book = folder / "run.xlsx"
    api.run(*VAE[:1], hidden=2, iterations=1).save(book)
    ex, _, _ = api.exercise("vae", "backward", folder / "ex.xlsx", hidden=2, iterations=1)
    filled = fill(ex, folder / "filled.xlsx")
    mlp_config = folder / "net.toml"
    from tracer.data.mlp_config import read

    mlp_config.write_text(read("classic_222")[1], encoding="utf-8")
    mlp_ex, _, _ = api.exercise("mlp", "update", folder / "mlp.xlsx", config=str(mlp_config))
    return {
        "cut_run": cut_sheet(book, folder / "cut_run.xlsx"),
        "cut_filled": cut_sheet(filled, folder / "cut_filled.xlsx"),
        "corrupt_file": edit_recipe(mlp_ex, folder / "corrupt.xlsx",
                                    lambda r: r["files"]["config"].update(data="!!!notbase64")),
        "huge_recipe": edit_recipe(ex, folder / "huge.xlsx", lambda r: r["config"].update(hidden=100_000)),
        "edited_recipe": edit_recipe(ex, folder / "edited.xlsx", lambda r: r["config"].update(seed=1), reseal=False),
        "filled": filled,
    }


ERRORS = [  # (arguments, words of the one line); {name} is a file of the fixture above, {tmp} the test's folder
    (["run", "skipgram", "--dim", "100000"], "--dim 100000 makes the run too large"),
    (["run", "transformer", "--d-model", "100000", "--heads", "1"], "--d-model 100000 makes the run too large"),
    (["verify", "{cut_run}"], "cut_run.xlsx is damaged"),
    (["check", "{cut_filled}"], "cut_filled.xlsx is damaged"),
    (["check", "{cut_filled}", "--report", "{tmp}/report.xlsx"], "cut_filled.xlsx is damaged"),
    (["check", "{corrupt_file}"], "--config inside the exercise's 'tracer' sheet is damaged"),
    (["check", "{huge_recipe}"], "--hidden 100000 makes the run too large"),
    (["check", "{edited_recipe}"], "sheet was edited or damaged"),
    (["check", "{filled}", "--rtol", "nan"], "--rtol must be a positive finite number"),
    (["check", "{filled}", "--rtol", "inf"], "--rtol must be a positive finite number"),
    (["run", "vae", "--optimizer", "adam", "--adam-eps", "nan"], "--adam-eps must be a finite number"),
    (["run", "vae", "--optimizer", "adam", "--adam-eps", "inf"], "--adam-eps must be a finite number"),
    (["run", "gan", "--slope", "inf"], "--slope must be a finite number"),
    (["run", "gan", "--slope", "nan"], "--slope must be a finite number"),
    (["run", "transformer", "--ln-eps", "inf"], "--ln-eps must be a finite number"),
    (["run", "vae", "--lr", "inf"], "--lr must be a finite number"),
    (["run", "gan", "--lr-g", "-inf"], "--lr-g must be a finite number"),
    (["run", "transformer", "--temperature", "1,,2"], "--temperature must be positive numbers"),
    (["run", "attention", "--temperature", "1,"], "--temperature must be positive numbers"),
    (["run", "vae", "-o", "{tmp}"], "it is a folder"),
    (["exercise", "vae", "--blank", "loss", "-o", "{tmp}"], "it is a folder"),
    (["run", "vae", "--hidden", "2", "--iterations", "1", "-o", "/proc/x.xlsx"], "cannot write /proc/x.xlsx"),
    (["run", "vae", "--hidden", "2", "--iterations", "1", "-o", "/proc/x.json"], "cannot write /proc/x.json"),
]


@pytest.mark.parametrize("args, words", ERRORS, ids=[" ".join(a[:3]) for a, _ in ERRORS])
def test_one_line_exit_2_no_traceback(files, tmp_path, args, words):
    args = [a.format(tmp=tmp_path, **files) for a in args]
    if args[0] in ("run", "exercise") and "-o" not in args:
        args += ["-o", str(tmp_path / "out.xlsx")]
    before = sorted(tmp_path.rglob("*"))
    result = tracer(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert words in lines[0], lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing left behind


def test_a_forged_recipe_is_refused_before_it_is_rebuilt(files, monkeypatch):
    """A student's file cannot make the teacher's tool trace a huge run: the limits come first."""
    def traced(cfg):
        raise AssertionError("rebuilt before the limits were checked")

    monkeypatch.setattr(models.vae, "trace", traced)
    with pytest.raises(api.TracerError, match="--hidden 100000 makes the run too large"):
        api.check(files["huge_recipe"])


# --- no recursion depth depends on an option ------------------------------------------------------

def test_backward_through_a_chain_longer_than_the_recursion_limit():
    tape = Tape()
    tape.iteration = 1
    x = tape.constant("x", [[1.0]], role="param")
    y = x
    for k in range(5000):  # each step one more level in a recursive walk
        y = add(y, x, name=f"y{k}")
    grads = tape.backward(y, {"x": x})
    assert grads["x"].value[0, 0] == 5001


def test_skipgram_with_1000_negative_samples(tmp_path):
    run = api.run("skipgram", negative=1000, iterations=1, lr=0.1)
    assert np.isfinite(run.losses["loss"][0])
    reports = api.gradcheck("skipgram", sample=1, negative=1000, iterations=1, lr=0.1)
    assert reports and all(r.ok for r in reports)


# --- the same command, the same bytes -------------------------------------------------------------

def small(name) -> dict:
    fields = {f for f in models.MODELS[name].Config.__dataclass_fields__}
    return {"iterations": 1} if "iterations" in fields else {}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_the_same_run_gives_the_same_bytes(name, tmp_path):
    run = api.run(name, **small(name))
    for suffix in (".xlsx", ".json"):
        a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        run.save(a)
        api.run(name, **small(name)).save(b)  # traced again
        assert a.read_bytes() == b.read_bytes(), (name, suffix)


def test_exercise_and_report_give_the_same_bytes(files, tmp_path, run_main):
    for k in (1, 2):
        assert run_main("exercise", *VAE, "--blank", "backward", "-o", tmp_path / f"ex{k}.xlsx")[0] == 0
        assert run_main("check", files["filled"], "--report", tmp_path / f"report{k}.xlsx")[0] == 0
    assert (tmp_path / "ex1.xlsx").read_bytes() == (tmp_path / "ex2.xlsx").read_bytes()
    assert (tmp_path / "report1.xlsx").read_bytes() == (tmp_path / "report2.xlsx").read_bytes()
    with zipfile.ZipFile(tmp_path / "report1.xlsx") as z:
        assert "<dcterms:modified" in z.read("docProps/core.xml").decode()
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_source_date_epoch_sets_the_dates(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    api.run("mlp").save(tmp_path / "m.xlsx")
    with zipfile.ZipFile(tmp_path / "m.xlsx") as z:
        core = z.read("docProps/core.xml").decode()
    assert core.count("2023-11-14T22:13:20Z") == 2  # created and modified
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(api.TracerError, match="SOURCE_DATE_EPOCH must be a whole number"):
        api.run("mlp").save(tmp_path / "n.xlsx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.xlsx"]


def test_out_of_memory_anyway_is_one_line(run_main, monkeypatch, tmp_path):
    """Within the limits a machine may still run out of memory (numpy's _ArrayMemoryError is a
    MemoryError): one line and exit code 2, no file."""
    def exhausted(cfg):
        return np.empty((10**8, 10**8))  # 80 PB: numpy refuses at once

    monkeypatch.setattr(models.vae, "trace", exhausted)
    code, _, err = run_main("run", *VAE, "-o", tmp_path / "out.xlsx")
    assert code == 2 and err.splitlines() == ["error: out of memory: choose smaller options (docs/limits.md)"]
    assert list(tmp_path.iterdir()) == []
