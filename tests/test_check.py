"""`tracer check`: tests that play the student.  Each fills the exercise programmatically (or
types the step formulas and lets LibreOffice or IronCalc compute, as a real application would) and the
grading must tell right, wrong and missing apart, and an own mistake from a carried error."""

from __future__ import annotations

import math

import pytest
from openpyxl import Workbook, load_workbook
from student import answers, fill, formulas

from tracer.checks.check import (
    CARRIED,
    MISSING,
    OWN,
    RIGHT,
    Tolerance,
    grade,
    read_recipe,
    rebuild,
)

VAE = ("vae", "--hidden", "2", "--iterations", "2", "--lr", "0.1")  # a large rate: a mistake visibly carries into iteration 2
EARLY = ("dL/dx_hat", 1, 0, 300)  # early in iteration 1's backward pass: a pixel's gradient


@pytest.fixture(scope="module")
def exercise(tmp_path_factory):
    """The VAE exercise with the backward pass blank (both iterations)."""
    from tracer.cli import main

    path = tmp_path_factory.mktemp("check") / "vae_exercise.xlsx"
    with pytest.raises(SystemExit) as e:
        main(["exercise", *VAE, "--blank", "backward", "-o", str(path)])
    assert e.value.code in (0, None)
    return path


def statuses(result) -> dict:
    return {s: result.total(s) for s in (RIGHT, OWN, CARRIED, MISSING)}


def test_all_right_scores_100(exercise, tmp_path, run_main):
    filled = fill(exercise, tmp_path / "right.xlsx")
    code, out, err = run_main("check", filled)
    assert code == 0, err
    assert "score: 100.0%" in out and "own mistakes 0, carried errors 0, missing 0" in out


def test_nothing_filled_is_all_missing(exercise, run_main):
    code, out, err = run_main("check", exercise)
    n = len(answers(exercise))
    assert code == 1 and f"score: 0.0% (0 of {n:,} cells right)" in out and f"missing {n}" in out


def test_one_early_mistake_is_the_only_own_one_and_its_dependents_are_carried(exercise, tmp_path):
    """The student types every step as a formula except one number early in the backward pass; a
    spreadsheet (here IronCalc, as `tracer check` recalculates formulas saved without a value; the
    next test shows LibreOffice grades the same) carries the mistake into everything computed from
    it, across the update into iteration 2."""
    reference = {(t.name, t.iteration, i, j): v for t, i, j, *_, v in answers(exercise)}
    filled = formulas(exercise, tmp_path / "one.xlsx", {EARLY: reference[EARLY] + 1.0})
    result = grade(filled, Tolerance(), engine="ironcalc")
    assert result.recalculated == ("IronCalc", len(reference) - 1)  # every cell but the typed number
    assert f"{len(reference) - 1:,} formula cells saved without a value were recalculated in IronCalc" in result.lines()
    got = statuses(result)
    assert got[OWN] == 1 and got[MISSING] == 0
    assert got[CARRIED] > 100  # the gradients upstream, then iteration 2 through the update
    own = [(g.tensor.name, g.tensor.iteration, c.i, c.j) for g in result.tensors for c in g.cells if c.status == OWN]
    assert own == [EARLY]
    carried = {(g.tensor.name, g.tensor.iteration) for g in result.tensors if g.count(CARRIED)}
    assert ("dL/dx_logit", 1) in carried and ("dL/dh_dec", 1) in carried and ("dL/dx_hat", 2) in carried
    cell = next(c for g in result.tensors for c in g.cells if c.status == OWN)
    assert cell.student == pytest.approx(reference[EARLY] + 1) and cell.from_inputs == pytest.approx(reference[EARLY])
    text = "\n".join(result.lines())
    assert "first own mistake: 'Iteration 1'!" in text and "you wrote" in text and "∂L/∂x̂ =" in text


def test_either_engine_gives_the_same_grade(exercise, tmp_path, soffice, run_main):
    """A student who typed formulas: LibreOffice and IronCalc compute them, and the grade is the
    same cell for cell; `tracer check` says which engine it used (LibreOffice when installed)."""
    reference = {(t.name, t.iteration, i, j): v for t, i, j, *_, v in answers(exercise)}
    filled = formulas(exercise, tmp_path / "one.xlsx", {EARLY: reference[EARLY] - 2.0})
    grades = {engine: grade(filled, Tolerance(), engine=engine) for engine in (None, "ironcalc")}
    assert grades[None].recalculated[0] == "LibreOffice"  # the preferred engine when installed
    cells = {engine: [(g.tensor.key, c.i, c.j, c.status) for g in r.tensors for c in g.cells]
             for engine, r in grades.items()}
    assert cells[None] == cells["ironcalc"] and statuses(grades["ironcalc"])[OWN] == 1
    code, out, _ = run_main("check", filled, "--engine", "ironcalc")
    assert code == 1 and "recalculated in IronCalc" in out
    assert out.splitlines()[2:] == grades[None].lines()[2:]  # after the engine's line, the same report


def test_a_mistake_in_a_later_step_on_right_inputs_is_own_not_carried(exercise, tmp_path):
    """The grader decides from the student's inputs: a wrong number after right inputs is an own
    mistake even deep in the pass, and a right number is right whatever came before."""
    cells = answers(exercise)
    late = next(c for c in cells if c[0].name == "dL/dW4" and c[0].iteration == 2 and c[-1] != 0)
    filled = fill(exercise, tmp_path / "late.xlsx",
                  value=lambda c: c[-1] * 2 if (c[0].key, c[1], c[2]) == (late[0].key, late[1], late[2]) else c[-1])
    got = statuses(grade(filled, Tolerance()))
    assert got[OWN] == 1 and got[CARRIED] == 0 and got[RIGHT] == len(cells) - 1


def test_carried_needs_the_step_done_right(exercise, tmp_path):
    """The check can fail: a student who copies a wrong number into a later step (instead of
    computing it) makes an own mistake there too."""
    cells = answers(exercise)
    first = next(c for c in cells if c[0].name == "dL/dx_hat" and c[0].iteration == 1 and c[2] == 300)
    then = next(c for c in cells if c[0].name == "dL/dx_logit" and c[0].iteration == 1 and c[2] == 300)
    wrong = {(first[0].key, 0, 300): 7.0, (then[0].key, 0, 300): 7.0}
    filled = fill(exercise, tmp_path / "copied.xlsx", value=lambda c: wrong.get((c[0].key, c[1], c[2]), c[-1]))
    result = grade(filled, Tolerance())
    own = [(g.tensor.name, c.j) for g in result.tensors for c in g.cells if c.status == OWN]
    assert own == [("dL/dx_hat", 300), ("dL/dx_logit", 300)]


def test_rounded_to_4_decimals(exercise, tmp_path, run_main):
    filled = fill(exercise, tmp_path / "rounded.xlsx", value=lambda c: round(c[-1], 4))
    code, out, err = run_main("check", filled, "--decimals", "4")
    assert code == 0 and "score: 100.0%" in out
    code, out, err = run_main("check", filled)  # the default relative 0.001 is stricter on small gradients
    assert code == 1 and "score: 100.0%" not in out
    shifted = fill(exercise, tmp_path / "shifted.xlsx", value=lambda c: round(c[-1], 4) + 2e-4)
    code, out, err = run_main("check", shifted, "--decimals", "4")
    assert code == 1 and "score: 100.0%" not in out


def test_tolerance_rules():
    four = Tolerance(decimals=4)
    assert four.close(0.1235, 0.12345001) and four.close(0.1234, 0.12344) and not four.close(0.1234, 0.12346)
    assert four.close(-0.0, 0.00004) and not four.close(0.0, 0.00006)
    rel = Tolerance(rtol=1e-3)
    assert rel.close(1000.9, 1000.0) and not rel.close(1001.1, 1000.0) and rel.close(0.0, 0.0)
    assert not rel.close(1e-6, 2e-6)


def test_an_empty_cell_is_missing(exercise, tmp_path, run_main):
    cells = answers(exercise)
    gap = cells[len(cells) // 2]
    filled = fill(exercise, tmp_path / "gap.xlsx", skip=lambda c: (c[0].key, c[1], c[2]) == (gap[0].key, gap[1], gap[2]))
    code, out, err = run_main("check", filled)
    assert code == 1 and "own mistakes 0, carried errors 0, missing 1" in out


def test_text_in_a_blank_cell_is_wrong_not_a_crash(exercise, tmp_path, run_main):
    cells = answers(exercise)
    filled = fill(exercise, tmp_path / "text.xlsx",
                  value=lambda c: "no idea" if (c[0].key, c[1], c[2]) == (cells[3][0].key, cells[3][1], cells[3][2]) else c[-1])
    code, out, err = run_main("check", filled)
    assert code == 1 and "own mistakes 1, carried errors 0, missing 0" in out and "you wrote 'no idea'" in out


def test_a_workbook_saved_by_libreoffice(exercise, tmp_path, soffice):
    """Filled, then opened and saved by LibreOffice (cached values written by a real application)."""
    from tracer.engines.libreoffice import recalculate

    reference = {(t.name, t.iteration, i, j): v for t, i, j, *_, v in answers(exercise)}
    typed = formulas(exercise, tmp_path / "typed.xlsx", {EARLY: reference[EARLY] - 3.0})
    saved = recalculate(typed, tmp_path / "saved")
    values = load_workbook(saved, data_only=True)
    assert any(isinstance(v, float) for row in values["Iteration 1"].iter_rows(values_only=True) for v in row)
    got = statuses(grade(saved, Tolerance()))
    assert got[OWN] == 1 and got[CARRIED] > 100 and got[MISSING] == 0
    right = recalculate(formulas(exercise, tmp_path / "right.xlsx"), tmp_path / "saved-right")
    assert statuses(grade(right, Tolerance()))[RIGHT] == len(reference)


def test_report_colours_own_and_carried_apart(exercise, tmp_path, run_main, soffice):
    reference = {(t.name, t.iteration, i, j): v for t, i, j, *_, v in answers(exercise)}
    filled = formulas(exercise, tmp_path / "one.xlsx", {EARLY: reference[EARLY] + 1.0})
    code, out, err = run_main("check", filled, "--report", tmp_path / "report.xlsx")
    assert code == 1 and "wrote" in out
    result = grade(filled, Tolerance())
    wb = load_workbook(tmp_path / "report.xlsx")
    assert wb.sheetnames[0] == "Grade" and "score:" in " ".join(str(c.value) for c in wb["Grade"]["A"])
    seen = {}
    for g in result.tensors:
        for c in g.cells:
            r, col = g.block.place.rc(c.i, c.j)
            cell = wb[g.sheet].cell(row=r + 1, column=col + 1)
            seen.setdefault(c.status, set()).add(cell.fill.start_color.rgb[-6:] if c.status != RIGHT else
                                                 (cell.comment is None))
            if c.status != RIGHT:
                assert f"expected {c.reference:.10g}" in cell.comment.text
    assert seen[OWN] == {"FFC7CE"} and seen[CARRIED] == {"FFEB9C"} and seen[RIGHT] == {True}
    code, out, err = run_main("check", filled, "--report", filled)
    assert code == 2 and "overwrite" in err


# --- files that cannot be graded: one line, exit 2 ------------------------------------------------

def one_line_error(run_main, *args) -> str:
    code, out, err = run_main("check", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)
    return err


def test_not_a_tracer_exercise(exercise, tmp_path, run_main):
    plain = tmp_path / "plain.xlsx"
    Workbook().save(plain)
    assert "was not made by `tracer exercise`" in one_line_error(run_main, plain)
    (tmp_path / "notes.xlsx").write_text("hello")
    assert "not an Excel workbook" in one_line_error(run_main, tmp_path / "notes.xlsx")
    assert "no such file" in one_line_error(run_main, tmp_path / "absent.xlsx")


def test_a_run_workbook_is_not_an_exercise(tmp_path, run_main):
    code, out, err = run_main("run", *VAE, "-o", tmp_path / "run.xlsx")
    assert code == 0
    assert "not made by `tracer exercise`" in one_line_error(run_main, tmp_path / "run.xlsx")


def given_cell(exercise, name="W3"):
    """The cell of a given parameter's first element (openpyxl cell of a loaded workbook)."""
    tape, layout, ex = rebuild(read_recipe(exercise))
    t = next(t for t in tape.tensors if t.name == name and t.op is None)
    r, c = layout.place[id(t)].rc(0, 0)
    wb = load_workbook(exercise)
    return wb, wb[layout.place[id(t)].sheet].cell(row=r + 1, column=c + 1)


def test_a_changed_given_cell_means_another_configuration(exercise, tmp_path, run_main):
    wb, cell = given_cell(exercise)
    cell.value += 0.5
    wb.save(tmp_path / "changed.xlsx")
    err = one_line_error(run_main, tmp_path / "changed.xlsx")
    assert "made for another model or configuration" in err and f"Inputs!{cell.coordinate}" in err


def test_another_exercise_than_the_one_handed_out(exercise, tmp_path, run_main):
    code, *_ = run_main("exercise", *VAE, "--seed", "1", "--blank", "backward", "-o", tmp_path / "seed1.xlsx")
    assert code == 0
    filled = fill(tmp_path / "seed1.xlsx", tmp_path / "seed1-filled.xlsx")
    assert run_main("check", filled)[0] == 0  # right for its own exercise …
    err = one_line_error(run_main, filled, "--exercise", exercise)  # … not for this one
    assert "made for another model or configuration" in err


def test_missing_sheets(exercise, tmp_path, run_main):
    wb = load_workbook(exercise)
    del wb["Iteration 2"]
    wb.save(tmp_path / "cut.xlsx")
    assert "lacks the sheet 'Iteration 2'" in one_line_error(run_main, tmp_path / "cut.xlsx")


def test_text_in_a_numeric_given_cell(exercise, tmp_path, run_main):
    wb, cell = given_cell(exercise)
    cell.value = "zero"
    wb.save(tmp_path / "text.xlsx")
    assert "holds the text 'zero'" in one_line_error(run_main, tmp_path / "text.xlsx")


def test_an_edited_recipe(exercise, tmp_path, run_main):
    wb = load_workbook(exercise)
    wb["tracer"]["B2"] = "{broken"
    wb.save(tmp_path / "edited.xlsx")
    assert "edited or damaged" in one_line_error(run_main, tmp_path / "edited.xlsx")


def test_decimals_and_rtol_together_is_an_error(exercise, run_main):
    assert "not both" in one_line_error(run_main, exercise, "--decimals", "3", "--rtol", "0.01")


def test_scores_add_up(exercise, tmp_path):
    filled = fill(exercise, tmp_path / "half.xlsx", skip=lambda c: c[2] % 2 == 0)
    result = grade(filled, Tolerance())
    assert sum(result.total(s) for s in (RIGHT, OWN, CARRIED, MISSING)) == result.total()
    assert math.isclose(result.score, 100 * result.total(RIGHT) / result.total())


# --- the student's sheet, replayed as their spreadsheet computed it --------------------------------

MAZUR = ("mlp", "--blank", "forward,loss,backward,update")


@pytest.fixture(scope="module")
def mazur(tmp_path_factory):
    from tracer.cli import main

    path = tmp_path_factory.mktemp("mazur") / "mazur.xlsx"
    with pytest.raises(SystemExit) as e:
        main(["exercise", *MAZUR, "-o", str(path)])
    assert e.value.code in (0, None)
    return path


@pytest.mark.parametrize("typed, first", [(None, MISSING), ("x", OWN)], ids=["empty", "text"])
def test_an_empty_or_text_cell_upstream_is_the_only_mistake(mazur, tmp_path, soffice, typed, first):
    """out_h[1] left empty (or 'x'), every other cell typed as its step's formula and computed by
    LibreOffice: an empty cell is 0 in arithmetic, SUMPRODUCT skips text, and #VALUE! follows text
    through arithmetic; so every later cell is carried, and the empty/text cell is the only mistake."""
    from tracer.engines.libreoffice import recalculate

    filled = formulas(mazur, tmp_path / "typed.xlsx", {("out_h", 1, 0, 1): typed})
    result = grade(recalculate(filled, tmp_path / "saved"), Tolerance())
    wrong = [(g.tensor.name, c.status, c.student) for g in result.tensors for c in g.cells if c.status != RIGHT]
    assert wrong[0] == ("out_h", first, typed)
    assert {status for _, status, _ in wrong[1:]} == {CARRIED}, wrong
    assert len(wrong) > 20  # everything downstream of out_h[1]: net_o, out_o, E_total, the gradients, the update
    if typed == "x":  # text reaches arithmetic as #VALUE!: an error carried, not an own mistake
        assert any(isinstance(s, str) and s.startswith("#") for *_, s in wrong[1:])


def test_an_error_value_the_step_does_not_give_is_own(mazur, tmp_path):
    """The check can fail: #DIV/0! typed where the student's inputs give a number is a mistake."""
    cells = answers(mazur)
    target = next((c[0].key, c[1], c[2]) for c in cells if c[0].name == "net_o")
    filled = fill(mazur, tmp_path / "div0.xlsx", value=lambda c: "#DIV/0!" if (c[0].key, c[1], c[2]) == target else c[-1])
    wrong = [(g.tensor.name, c.status) for g in grade(filled, Tolerance()).tensors for c in g.cells if c.status != RIGHT]
    assert wrong == [("net_o", OWN)]


def test_an_overwritten_given_formula_is_an_error(tmp_path, run_main):
    """A given gradient replaced by its right value (or by another formula) is not the exercise."""
    path = tmp_path / "update.xlsx"
    assert run_main("exercise", "mlp", "--blank", "update", "-o", path)[0] == 0
    filled = fill(path, tmp_path / "filled.xlsx")
    assert run_main("check", filled)[0] == 0
    tape, layout, _ = rebuild(read_recipe(path))
    t = next(t for t in tape.tensors if t.name == "dE_total/dw_o")
    r, c = layout.place[id(t)].rc(1, 0)
    for k, value in enumerate([float(t.value[1, 0]), "=0.5*2"]):
        wb = load_workbook(filled)
        wb[layout.place[id(t)].sheet].cell(row=r + 1, column=c + 1, value=value)
        wb.save(tmp_path / f"edited{k}.xlsx")
        err = one_line_error(run_main, tmp_path / f"edited{k}.xlsx")
        assert "the given cell 'Iteration 1'!" in err and "(dE_total/dw_o[2, 1]) was changed" in err


def test_formulas_compare_as_every_spreadsheet_writes_them():
    from tracer.checks.check import _formula_text

    ours = "SUMPRODUCT('Iteration 1'!B10:B11,'Inputs'!$C$5:$C$6)+0.001*EXP(-B2)"
    for theirs in ("=SUMPRODUCT('Iteration 1'!B10:B11,Inputs!C5:C6)+0.001*EXP(-B2)",
                   "=sumproduct('Iteration 1'!B10:B11, Inputs!$C$5:$C$6) + 1E-3*exp(-B2)",
                   "=_xlfn.SUMPRODUCT('Iteration 1'!B10:B11,Inputs!C5:C6)+1.0e-03*EXP(-B2)"):
        assert _formula_text(theirs) == _formula_text(ours)
    for other in ("=SUMPRODUCT('Iteration 1'!B10:B11,Inputs!C5:C7)+0.001*EXP(-B2)", "0.0823", 0.0823, None,
                  "=SUMPRODUCT('Iteration 1'!B10:B11,Inputs!C5:C6)+0.002*EXP(-B2)"):
        assert _formula_text(other) != _formula_text(ours)


def test_a_number_typed_as_text_gets_a_hint(exercise, tmp_path, run_main):
    """'0,35891648' typed where the spreadsheet expects a decimal point is text: wrong, and the
    report says why."""
    cells = answers(exercise)
    first = cells[0]
    typed = f"{first[-1]:.8f}".replace(".", ",")
    filled = fill(exercise, tmp_path / "comma.xlsx", value=lambda c: typed if (c[0].key, *c[1:3]) == (first[0].key, *first[1:3]) else c[-1])
    code, out, err = run_main("check", filled)
    assert code == 1 and f"you wrote '{typed}'" in out
    assert f"'{typed}' is text, not a number: type it as a number, with a decimal point: {typed.replace(',', '.')}" in out


def test_the_readme_round_trip(run_main, tmp_path, monkeypatch, soffice):
    """The round trip of docs/exercises.md, as written: its exercise command, a student who forgets
    the sigmoid's derivative in the first cell of ∂L/∂a₄ and types every other cell as its step's
    formula, and its check command print every line the page shows."""
    import re
    import shlex
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "exercises.md"
    if not page.exists():
        pytest.skip("needs the source tree")
    text = page.read_text("utf-8")
    section = text[text.index("## The round trip, step by step"):text.index("Mazur's network works the same way")]
    blocks = re.findall(r"```(\w*)\n(.*?)\n\s*```", section, re.S)  # (language, text) of each fence
    exercise_cmd, check_cmd = [text.strip().removeprefix("tracer ") for lang, text in blocks if lang == "bash"]
    (shown,) = [text for lang, text in blocks if not lang]
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(*shlex.split(exercise_cmd))
    assert code == 0 and "29 blank blocks, 163 cells for the student to fill" in out, err
    (wrote,) = re.findall(r"`(wrote vae4\.xlsx: [^`]*)`", section)  # what the page says it prints
    assert wrote in out, (wrote, out)
    handed_out = tmp_path / "vae4.xlsx"
    reference = {(t.name, t.iteration, i, j): v for t, i, j, *_, v in answers(handed_out)}
    formulas(handed_out, tmp_path / "vae4_filled.xlsx", {("dL/dx_logit", 1, 0, 0): reference[("dL/dx_hat", 1, 0, 0)]})
    code, out, err = run_main(*shlex.split(check_cmd))
    assert code == 1, err
    lines = [line.strip() for line in shown.splitlines() if line.strip() and line.strip() != "…"]
    assert len(lines) > 8 and all(line in out for line in lines), [line for line in lines if line not in out]
    assert (tmp_path / "graded.xlsx").is_file()
