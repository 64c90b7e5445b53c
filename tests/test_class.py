"""A whole class (tracer exercise --students, tracer check FOLDER): the test plays the class.

Forty students get the README's round trip (the 4 × 4 VAE's backward pass, iteration 1), each
their own digit and seed; they hand in forty copies (right, rounded, wrong in one early cell with
every later cell typed as a formula, empty, text, saved by LibreOffice, damaged, another
exercise, …) and a few more bad files, and every row of the gradebook must be what that student
did.  The exercises are made once per module and shared; LibreOffice saves one file, once.
"""

from __future__ import annotations

import csv
import shutil
import zipfile

import pytest
from openpyxl import Workbook, load_workbook
from student import answers, fill, formulas
from test_exercise import numbers_in, secrets

from tracer import api
from tracer.checks.check import CARRIED, MISSING, OWN, RIGHT, read_recipe, rebuild
from tracer.checks.gradebook import write_gradebook

ROUND_TRIP = ("vae", "--size", "4", "--hidden", "2", "--blank", "backward", "--blank-iterations", "1")  # the README's
FIRST = ["José", "Ana", "Zoë", "Iñaki", "María", "Łukasz", "Chloé", "Nuño"]
LAST = ["Pérez", "García", "Müller", "O'Neil", "Ngô"]
NAMES = [f"{first} {last}" for last in LAST for first in FIRST]  # 40 names, accents and all
CELLS = 163  # the README's round trip: cells for the student to fill


@pytest.fixture(scope="module")
def the_class(tmp_path_factory):
    """The class's folder, made by the command docs/exercises.md shows, from a roster with a name and
    an id column, ';'-separated as a Spanish spreadsheet saves it; what the command printed is in
    printed.txt beside it."""
    import contextlib
    import io
    import os

    from tracer.cli import main

    folder = tmp_path_factory.mktemp("class")
    roster = folder / "roster.csv"
    roster.write_text("Nombre;Legajo\n" + "".join(f"{n};L{k:03d}\n" for k, n in enumerate(NAMES)), "utf-8-sig")
    printed, here = io.StringIO(), os.getcwd()
    os.chdir(folder)
    try:
        with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(printed):
            main(["exercise", *ROUND_TRIP, "--students", "roster.csv", "-o", "class"])
    finally:
        os.chdir(here)
    assert e.value.code in (0, None)
    (folder / "printed.txt").write_text(printed.getvalue(), "utf-8")
    return folder / "class"


def manifest(folder) -> list[dict]:
    with open(folder / "manifest.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_forty_names_forty_different_exercises(the_class):
    rows = manifest(the_class)
    assert [r["student"] for r in rows] == NAMES and len({r["file"] for r in rows}) == 40
    assert [r["variant"] for r in rows[:3]] == ["digit 0, seed 0", "digit 1, seed 1", "digit 2, seed 2"]
    recipes = [read_recipe(the_class / r["file"]) for r in rows]
    assert [r["student"]["name"] for r in recipes] == NAMES and recipes[0]["student"]["id"] == "L000"
    assert len({r["class"] for r in recipes}) == 1  # one class …
    assert len({r["fingerprint"] for r in recipes}) == 40  # … forty different exercises
    inputs = set()
    for r in recipes[:8]:  # what each student is given differs from what every other one is given
        tape, _, _ = rebuild(r)
        inputs.add(tuple(t.value.round(12).ravel().tolist()[0] for t in tape.tensors if t.name in ("x", "W1")))
    assert len(inputs) == 8
    assert all(c.isascii() for r in rows for c in r["file"])  # Iñaki Müller → 20_inaki_muller.xlsx
    assert rows[5]["file"] == "06_lukasz_perez.xlsx" and rows[5]["key"] == "key/06_lukasz_perez.xlsx"
    assert sorted(p.name for p in (the_class / "key").iterdir()) == [r["file"] for r in rows]
    assert not [p for p in the_class.iterdir() if p.name.startswith(".")]  # the staging folder is gone


def test_the_docs_show_the_class_as_it_is(the_class):
    """docs/exercises.md: the command the class was made with, and what it printed."""
    import shlex

    from documented import says, text_of

    text = text_of("exercises.md")
    section = text[text.index("## A whole class"):text.index("## The class hands in")]
    command = section.split("```bash\n")[1].split("\n```")[0]
    assert shlex.split(command) == ["tracer", "exercise", *ROUND_TRIP, "--students", "roster.csv", "-o", "class"]
    printed = (the_class.parent / "printed.txt").read_text("utf-8").splitlines()[0]
    says("exercises.md", "`" + printed.split("  (")[0] + "`")


def test_each_file_carries_its_students_name_and_no_answer(the_class):
    path = the_class / manifest(the_class)[10]["file"]
    wb = load_workbook(path)
    assert {ws.oddHeader.center.text for ws in wb.worksheets if ws.sheet_state == "visible"} == {f"Student: {NAMES[10]}"}
    assert wb["Overview"]["A2"].value == f"Student: {NAMES[10]}"
    hidden = secrets(path)
    assert len(hidden) > 100 and not hidden & numbers_in(path)


def test_a_class_of_the_mlp_varies_its_files_seed(tmp_path, run_main):
    """An mlp config that draws its weights varies by the seed in its file (a copy per student, carried
    inside each exercise); the key holds each student's solved workbook."""
    roster = tmp_path / "roster.csv"
    roster.write_text("name\nAda\nBruno\n", "utf-8")
    code, out, err = run_main("exercise", "mlp", "--config", "xor", "--blank", "update", "--students", roster,
                              "-o", tmp_path / "xor")
    assert code == 0 and "its own seed" in out, err
    rows = manifest(tmp_path / "xor")
    assert [r["seed"] for r in rows] == ["19", "20"] and [r["key"] for r in rows] == ["key/1_ada.xlsx", "key/2_bruno.xlsx"]
    tapes = [rebuild(read_recipe(tmp_path / "xor" / r["file"]))[0] for r in rows]
    assert [next(t for t in tape.tensors if t.name == "W1").value[0, 0] for tape in tapes][0] != \
        [next(t for t in tape.tensors if t.name == "W1").value[0, 0] for tape in tapes][1]
    solved = load_workbook(tmp_path / "xor" / rows[1]["key"], data_only=True)
    update = next(t for t in tapes[1].tensors if t.phase == "update")
    assert update.value[0, 0] in {c for ws in solved.worksheets for row in ws.iter_rows(values_only=True) for c in row}


@pytest.mark.parametrize("args, message", [
    (("mlp", "--blank", "update"), "classic_222.toml gives every weight, so nothing differs between students"),
    (("transformer", "--blank", "forward", "--vary", "digit"), "--vary 'digit': transformer can vary seed"),
])
def test_where_nothing_can_vary_is_one_line(tmp_path, refused, args, message):
    roster = tmp_path / "roster.csv"
    roster.write_text("name\nAda\nBruno\n", "utf-8")
    assert message in refused("exercise", *args, "--students", roster, "-o", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("first,second\nAda,Bruno\n", "no name or id column in its header (first, second)"),
    ("name\nAda\nAda\n", "line 3: 'Ada' is on the roster twice (line 2)"),
    ("name,id\nAda,7\nBruno,7\n", "the id '7' is also on line 2"),
    ("name\n", "names no student"),
])
def test_a_bad_roster_is_one_line(tmp_path, refused, text, message):
    roster = tmp_path / "roster.csv"
    roster.write_text(text, "utf-8")
    assert message in refused("exercise", "mlp", "--config", "xor", "--blank", "update", "--students", roster,
                              "-o", tmp_path / "out")


# --- the class hands in ---------------------------------------------------------------------------

KINDS = ["right"] * 30 + ["rounded", "early", "empty", "text", "libreoffice", "gap", "comma", "damaged",
                         "another exercise", "another class"]  # the forty files, in roster order


def hand_in(job):
    """Make one student's file (run in a worker of tracer.checks.batch: the class hands in at once)."""
    kind, src, out, work = job
    if kind == "right":
        fill(src, out)
    elif kind == "rounded":
        fill(src, out, value=lambda c: round(c[-1], 4))
    elif kind == "early":  # one number wrong, every other cell typed as its step's formula
        formulas(src, out, {early(src): reference(src)[early(src)] + 1.0})
    elif kind == "empty":
        shutil.copy(src, out)
    elif kind == "text":
        fill(src, out, value=instead(src, 5, "no idea"))
    elif kind == "libreoffice":  # typed as formulas, then opened and saved by LibreOffice
        from tracer.engines.libreoffice import recalculate

        shutil.copy(recalculate(formulas(src, work / "typed.xlsx"), work / "lo"), out)
    elif kind == "gap":
        fill(src, out, value=instead(src, -1, None))
    elif kind == "comma":
        fill(src, out, value=instead(src, 0, "1,000000"))  # ∂L/∂L = 1, typed as text
    elif kind == "damaged":
        out.write_bytes(fill(src, work / "whole.xlsx").read_bytes()[:20_000])
    elif kind == "another exercise":
        fill(plain_exercise(work), out)
    elif kind == "another class":
        fill(other_class(work), out)


@pytest.fixture(scope="module")
def handed_in(the_class, tmp_path_factory, soffice):
    """The folder the class hands in, and what each file is ({file: what})."""
    from tracer.checks.batch import parallel

    folder = tmp_path_factory.mktemp("handed_in")
    files = [the_class / r["file"] for r in manifest(the_class)]
    jobs = [(kind, src, folder / src.name, tmp_path_factory.mktemp("work")) for kind, src in zip(KINDS, files)]
    list(parallel(hand_in, jobs))
    kinds = {src.name: kind for kind, src in zip(KINDS, files)}
    shutil.copy(folder / files[0].name, folder / "zz_copy_of_the_first.xlsx")
    kinds["zz_copy_of_the_first.xlsx"] = "duplicate"
    wb = load_workbook(folder / files[1].name)
    wb["tracer"]["B2"] = wb["tracer"]["B2"].value.replace('"lang": "en"', '"lang": "es"')
    wb.save(folder / "zz_edited.xlsx")
    kinds["zz_edited.xlsx"] = "edited"
    Workbook().save(folder / "zz_notes.xlsx")
    kinds["zz_notes.xlsx"] = "not an exercise"
    (folder / "zz_sheet.ods").write_bytes(b"PK\x03\x04 an OpenDocument file")
    kinds["zz_sheet.ods"] = "ods"
    (folder / "readme.txt").write_text("not a spreadsheet: not a row")
    return folder, kinds


def instead(path, k: int, typed):
    """value(cell) for student.fill: `typed` in the k-th blank cell, every other cell right."""
    t, i, j, *_ = answers(path)[k]
    return lambda c: typed if (c[0].key, c[1], c[2]) == (t.key, i, j) else c[-1]


def reference(path) -> dict:
    return {(t.name, t.iteration, i, j): v for t, i, j, *_, v in answers(path)}


def early(path) -> tuple:
    """An early cell of the backward pass: ∂L/∂x̂ of a pixel the student's digit is dark in."""
    return next(k for k in reference(path) if k[0] == "dL/dx_hat" and k[3] == 5)


def plain_exercise(work):
    path = work / "plain.xlsx"
    api.exercise(ROUND_TRIP[0], "backward", path, "1", size=4, hidden=2)
    return path


def other_class(work):
    roster = work / "other.csv"
    roster.write_text("name\nJosé Pérez\n", "utf-8")
    made = api.exercise_class(ROUND_TRIP[0], "backward", roster, work / "other", "1", key=False, size=4, hidden=2,
                              seed=7)
    return made.files[0]


@pytest.fixture(scope="module")
def graded(handed_in, tmp_path_factory):
    folder, kinds = handed_in
    out = tmp_path_factory.mktemp("graded")
    book = api.check_folder(folder, decimals=4, gradebook=out / "grades.xlsx", reports=out / "reports",
                            engine="ironcalc")
    return book, kinds, out


def test_every_row_of_the_gradebook_is_what_the_student_did(graded):
    book, kinds, _ = graded
    rows = {r.file: r for r in book.rows}
    assert set(rows) == set(kinds)  # every spreadsheet file a row, the .txt none
    names = dict(zip([f"{k + 1:02d}" for k in range(40)], NAMES))
    for file, r in rows.items():
        kind = kinds[file]
        if file[:2] in names and kind not in ("another exercise", "another class", "damaged"):
            assert r.student == names[file[:2]] and r.id == f"L{int(file[:2]) - 1:03d}", file
        if not r.refused:
            assert r.cells == CELLS and r.right + r.own + r.carried + r.missing == CELLS, file
            assert r.score == pytest.approx(100 * r.right / CELLS) and r.seconds > 0
            assert r.engine == ("IronCalc" if kind == "early" else ""), file
        expected = {  # (own, carried, missing), or the reason of a refused file
            "right": (0, 0, 0), "rounded": (0, 0, 0), "libreoffice": (0, 0, 0), "empty": (0, 0, CELLS),
            "text": (1, 0, 0), "gap": (0, 0, 1), "comma": (1, 0, 0),
            "damaged": "damaged: an incomplete .xlsx", "another exercise": "made without --students",
            "another class": "an exercise of another class", "duplicate": "exercise again: already graded from 01_",
            "edited": "sheet was edited or damaged", "not an exercise": "was not made by `tracer exercise`",
            "ods": "not an .xlsx workbook"}.get(kind)
        if isinstance(expected, str):
            assert r.refused and expected in r.reason, (file, r.reason)
        elif kind == "early":  # the one own mistake, and the cells computed from it carried
            assert (r.own, r.missing) == (1, 0) and r.carried > 20, r
            assert r.first_block == "Iteration 1 · 3.6 ∂L/∂x̂" and r.first_cell.startswith("'Iteration 1'!")
            assert r.score_carried == pytest.approx(100 * (CELLS - 1) / CELLS)
        else:
            assert (r.own, r.carried, r.missing) == expected, (file, kind, r)
            assert (r.first_block != "") == (r.own > 0)
    assert len(book.refused) == 7


def test_the_class_view_counts_each_block(graded):
    book, kinds, _ = graded
    labels, blocks = book.blocks()
    assert len(labels) == 29 and labels[0] == "Iteration 1 · 3.1 ∂L/∂L"
    students = len(book.graded)
    for label, counts in blocks:
        assert sum(counts[s] for s in (RIGHT, OWN, CARRIED, MISSING)) == students
    # the three blocks with an own mistake first (∂L/∂L typed as text, a cell of ∂L/∂log σ² (via KL) as
    # text, ∂L/∂x̂ the early mistake), in step order as they tie; the rest after them
    assert [(label.split(" · ")[1], counts[OWN]) for label, counts in blocks[:3]] == [
        ("3.1 ∂L/∂L", 1), ("3.5 ∂L/∂log σ² (via KL)", 1), ("3.6 ∂L/∂x̂", 1)]
    assert all(counts[OWN] == 0 for _, counts in blocks[3:])
    assert dict(blocks)["Iteration 1 · 3.7 ∂L/∂a₄"][CARRIED] == 1  # the early mistake's student
    assert dict(blocks)["Iteration 1 · 3.7 ∂L/∂a₄"][MISSING] == 1  # the empty file


def test_the_gradebook_workbook(graded):
    """Its rows as graded; each student's blocks; the class view as COUNTIF formulas that every
    engine computes as stored (IronCalc here), and a chart."""
    from tracer.engines import ironcalc

    book, kinds, out = graded
    wb = load_workbook(out / "grades.xlsx")
    assert wb.sheetnames == ["Gradebook", "Blocks", "Class"]
    rows = list(wb["Gradebook"].iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == [r.file for r in book.rows]
    early_row = next(r for r in rows if kinds[r[0]] == "early")
    assert early_row[7] == 1 and early_row[11] == "Iteration 1 · 3.6 ∂L/∂x̂" and early_row[13] == "IronCalc"
    assert "damaged" in next(r for r in rows if kinds[r[0]] == "damaged")[15]
    view = wb["Class"]
    assert view["B3"].value.startswith("=COUNTIF('Blocks'!") and len(view._charts) == 1
    cached = load_workbook(out / "grades.xlsx", data_only=True)
    wanted = {"Class": {(r, c) for r in range(3, 32) for c in range(2, 6)},
              "Gradebook": {(r, c) for r in range(2, 2 + len(rows)) for c in (5, 6) if rows[r - 2][4] is not None}}
    recalculated = ironcalc.recalculated_values(out / "grades.xlsx", wanted)
    for (sheet, r, c), v in recalculated.items():
        assert v == pytest.approx(cached[sheet].cell(row=r, column=c).value), (sheet, r, c)
    assert len(recalculated) == 29 * 4 + 2 * len(book.graded)


def test_the_gradebook_as_csv_and_the_graded_copies(graded, tmp_path):
    book, kinds, out = graded
    write_gradebook(book, tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(book.rows) and rows[0]["Student"] == NAMES[0] and rows[0]["Score (%)"] == "100.0"
    copies = sorted(p.name for p in (out / "reports").iterdir())
    assert copies == sorted(r.file for r in book.graded)
    early_file = next(f for f, k in kinds.items() if k == "early")
    report = load_workbook(out / "reports" / early_file)
    assert report.sheetnames[0] == "Grade" and "own mistakes 1" in " ".join(str(c.value) for c in report["Grade"]["A"])


def test_the_command_on_a_folder(the_class, tmp_path, run_main):
    """Exit 0 when every file was graded, 1 when one was refused; a line per file; --gradebook
    checked before any work; the options of one workbook refused for a folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    for r in manifest(the_class)[:2]:
        fill(the_class / r["file"], folder / r["file"])
    code, out, err = run_main("check", folder, "--jobs", "1")
    assert code == 0 and f"01_jose_perez.xlsx  José Pérez  100.0%" in out and "graded 2 of 2 files" in out, err
    (folder / "03_broken.xlsx").write_bytes(b"PK\x03\x04 cut")
    code, out, err = run_main("check", folder, "--gradebook", tmp_path / "grades.csv")
    assert code == 1 and "03_broken.xlsx" in out and any(line.startswith("03_broken.xlsx ") and "  refused: damaged: " in line for line in out.splitlines())
    assert "graded 2 of 3 files, 1 refused" in out and (tmp_path / "grades.csv").is_file()
    code, _, err = run_main("check", folder, "--gradebook", tmp_path / "grades.pdf")
    assert code == 2 and "must end in" in err
    code, _, err = run_main("check", folder, "--report", tmp_path / "r.xlsx")
    assert code == 2 and "--reports DIR" in err
    code, _, err = run_main("check", folder / "01_jose_perez.xlsx", "--gradebook", tmp_path / "g.xlsx")
    assert code == 2 and "--gradebook is for a folder" in err
    code, _, err = run_main("check", folder, "--reports", folder)
    assert code == 2 and "another folder" in err


def test_a_spanish_class_gets_a_spanish_gradebook(tmp_path):
    roster = tmp_path / "lista.csv"
    roster.write_text("nombre,apellidos\nAna,García\nJosé,Pérez\n", "utf-8")
    made = api.exercise_class("mlp", "update", roster, tmp_path / "clase", lang="es", key=False, config="xor")
    assert [s.name for s in made.students] == ["Ana García", "José Pérez"]
    folder = tmp_path / "entregas"
    folder.mkdir()
    for path in made.files:
        fill(path, folder / path.name)
    book = api.check_folder(folder, gradebook=tmp_path / "notas.xlsx", reports=tmp_path / "corregidos")
    assert [r.score for r in book.rows] == [100.0, 100.0]
    assert load_workbook(tmp_path / "notas.xlsx").sheetnames == ["Calificaciones", "Bloques", "Clase"]
    assert load_workbook(tmp_path / "corregidos" / made.files[0].name).sheetnames[0] == "Calificación"
    assert load_workbook(made.files[0])["Resumen"]["A2"].value == "Estudiante: Ana García"


def test_a_file_far_larger_than_its_exercise_is_not_read(the_class, tmp_path, run_main):
    """A zip bomb (a sheet that unzips to far more than the exercise's cells) is refused before it is read."""
    path = the_class / manifest(the_class)[0]["file"]
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for item in z.infolist():
            out.writestr(item, z.read(item.filename))
        out.writestr("xl/media/padding.bin", b"\0" * 100_000_000)
    code, _, err = run_main("check", bomb)
    assert code == 2 and "MB unzipped, far more than its" in err


def test_the_docs_show_the_gradebook_as_it_is(graded):
    """docs/exercises.md: every line it shows of `tracer check FOLDER` is a line the class's grading printed."""
    import re

    from documented import says, text_of

    book, _, _ = graded
    text = text_of("exercises.md")
    section = text[text.index("## The class hands in"):text.index("## A workbook built by hand")]
    shown = [line for lang, block in re.findall(r"```(\w*)\n(.*?)\n```", section, re.S) if not lang
             for line in block.splitlines() if line.strip() != "…"]
    printed = book.lines()
    assert len(shown) > 10 and [line for line in shown if line not in printed] == []
    says("exercises.md", f"{len(book.rows) - 40} more files; {len(book.graded)} graded, {len(book.refused)} refused")


def test_files_saved_without_values_are_recalculated_by_one_libreoffice(the_class, tmp_path, soffice, monkeypatch):
    """Answers typed as formulas and saved without values (a script's files): LibreOffice starts once
    for all of them, after the other files are graded, and the grades are the formulas' own."""
    from tracer.engines import libreoffice

    folder = tmp_path / "in"
    folder.mkdir()
    rows = manifest(the_class)[:3]
    fill(the_class / rows[0]["file"], folder / rows[0]["file"])
    formulas(the_class / rows[1]["file"], folder / rows[1]["file"])
    src = the_class / rows[2]["file"]
    formulas(src, folder / rows[2]["file"], {early(src): reference(src)[early(src)] - 1.0})
    runs = []
    real = libreoffice._run
    monkeypatch.setattr(libreoffice, "_run", lambda *a, **k: runs.append(a) or real(*a, **k))
    book = api.check_folder(folder, jobs=2)
    assert len(runs) == 1 and len([a for a in runs[0][0] if a.endswith(".xlsx")]) == 2  # one process, two files
    assert [(r.engine, r.own, r.missing, r.right == CELLS) for r in book.rows] == [
        ("", 0, 0, True), ("LibreOffice", 0, 0, True), ("LibreOffice", 1, 0, False)]
    assert book.rows[2].carried > 20 and book.rows[2].first_block == "Iteration 1 · 3.6 ∂L/∂x̂"
