"""`tracer exercise`: blank blocks keep their titles, equations and notes; no answer is stored in
the file (unless --self-check, whose cells turn green or red); the recipe travels inside."""

from __future__ import annotations

import re
import zipfile

import pytest
from openpyxl import load_workbook
from student import answers, fill
from test_portable import check_formula

from tracer.checks.check import read_recipe, rebuild

VAE = ("vae", "--hidden", "2", "--iterations", "2")


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """made(*args) -> path of `tracer exercise *args` (made once per argument list)."""
    from tracer.cli import main

    folder, made = tmp_path_factory.mktemp("exercises"), {}

    def make(*args):
        if args not in made:
            path = folder / f"ex{len(made)}.xlsx"
            with pytest.raises(SystemExit) as e:
                main(["exercise", *args, "-o", str(path)])
            assert e.value.code in (0, None)
            made[args] = path
        return made[args]

    return make


def numbers_in(path) -> set[float]:
    """Every number written anywhere in the file's XML parts (cell values, caches, properties)."""
    found = set()
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            text = z.read(name).decode("utf-8", "replace")
            found.update(float(m) for m in re.findall(r"-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+", text))
    return found


def secrets(path) -> set[float]:
    """The values of the blank tensors and of everything computed from them that no given cell
    also shows (a gradient of 0 or 1 is no secret, nor Adam's step counter 2: whole numbers are
    everywhere, as row and column numbers)."""
    tape, layout, ex = rebuild(read_recipe(path))
    shown = {v for t in tape.tensors if id(t) not in ex.hidden for v in t.value.ravel().tolist()}
    return {v for t in tape.tensors if id(t) in ex.hidden for v in t.value.ravel().tolist()
            if v != int(v)} - shown


@pytest.mark.parametrize("args, least", [
    ((*VAE, "--blank", "backward"), 1000), ((*VAE, "--blank", "forward,loss"), 1000),
    ((*VAE, "--blank", "update", "--optimizer", "adam"), 1000),
    (("mlp", "--config", "classic_222", "--blank", "update"), 8),
    (("mlp", "--config", "softmax_classifier", "--blank", "backward"), 100),
    (("transformer", "--blank", "forward", "--blank-iterations", "2"), 1000),
])
def test_no_answer_is_stored_anywhere_in_the_file(books, args, least):
    path = books(*args)
    hidden = secrets(path)
    assert len(hidden) >= least
    assert not hidden & numbers_in(path)


def test_the_scan_finds_answers_when_they_are_there(books):
    """The check above can fail: a --self-check file carries the answers, and the scan sees them."""
    path = books(*VAE, "--blank", "backward", "--self-check")
    tape, layout, ex = rebuild(read_recipe(path))
    blank = {v for t in ex.blank for v in t.value.ravel().tolist()}
    assert len(blank & secrets(path) & numbers_in(path)) > 100


def test_blank_blocks_keep_their_text_and_empty_cells(books):
    path = books(*VAE, "--blank", "backward", "--blank-iterations", "1")
    tape, layout, ex = rebuild(read_recipe(path))
    assert ex.blank and {t.iteration for t in ex.blank} == {1} and {t.phase for t in ex.blank} == {"backward"}
    wb = load_workbook(path)
    cells = answers(path)
    assert all(wb[s].cell(row=r, column=c).value is None for _, _, _, s, r, c, _ in cells)
    from tracer.render.layout import Block

    blocks = [p for s in layout.sheets for p in s.parts if isinstance(p, Block) and id(p.tensor) in ex.blank_ids]
    for b in blocks:
        ws = wb[layout.place[id(b.tensor)].sheet]
        assert ws.cell(row=b.row + 1, column=2).value == b.title  # symbol, shape, what it is
        assert ws.cell(row=b.row + 2, column=2).value == b.equation and b.equation
        assert ws.cell(row=b.row + 3, column=2).value.startswith("✎")
    # iteration 2's backward pass is given, as live formulas
    given = [t for t in tape.tensors if t.iteration == 2 and t.phase == "backward"]
    r, c = layout.place[id(given[0])].rc(0, 0)
    assert str(wb[layout.place[id(given[0])].sheet].cell(row=r + 1, column=c + 1).value).startswith("=")


def test_cells_computed_from_the_students_carry_no_value(books):
    path = books(*VAE, "--blank", "backward")
    tape, layout, ex = rebuild(read_recipe(path))
    update = next(t for t in tape.tensors if t.phase == "update")
    assert id(update) in ex.hidden
    sheet = layout.place[id(update)].sheet
    r, c = layout.place[id(update)].rc(0, 0)
    formulas, values = load_workbook(path)[sheet], load_workbook(path, data_only=True)[sheet]
    assert formulas.cell(row=r + 1, column=c + 1).value.startswith("=")
    assert values.cell(row=r + 1, column=c + 1).value in (None, "")
    forward = next(t for t in tape.tensors if t.phase == "forward" and t.op and t.iteration == 1)
    r, c = layout.place[id(forward)].rc(0, 0)  # before the blanks: its value is there
    assert values.cell(row=r + 1, column=c + 1).value == pytest.approx(forward.value[0, 0])


def test_the_recipe_travels_inside(books, tmp_path):
    path = books(*VAE, "--blank", "backward")
    recipe = read_recipe(path)
    assert recipe["model"] == "vae" and recipe["config"]["hidden"] == 2 and recipe["blank"] == "backward"
    wb = load_workbook(path)
    assert wb["tracer"].sheet_state == "hidden"


def test_self_check_cells_turn_green_or_red(books, tmp_path, engine):
    from tracer.engines import ENGINES

    path = books(*VAE, "--blank", "forward", "--blank-iterations", "1", "--self-check")
    tape, layout, ex = rebuild(read_recipe(path))
    from tracer.render.layout import Block

    blocks = [p for s in layout.sheets for p in s.parts if isinstance(p, Block) and id(p.tensor) in ex.blank_ids]
    where = {}
    for b in blocks:
        where.setdefault(layout.place[id(b.tensor)].sheet, set()).add((b.row + 1, 9))
    ws = load_workbook(path)[layout.place[id(blocks[0].tensor)].sheet]
    formula = ws.cell(row=blocks[0].row + 1, column=9).value
    check_formula(formula[1:], set())  # portable
    first = ex.blank[0]
    is_first = lambda cell: cell[0].key == first.key  # noqa: E731 (answers() rebuilds its own tensors)
    right = fill(path, tmp_path / "right.xlsx")
    wrong = fill(path, tmp_path / "wrong.xlsx",
                 value=lambda cell: cell[-1] + 1 if is_first(cell) and cell[1:3] == (0, 0) else cell[-1])
    empty = fill(path, tmp_path / "empty.xlsx", skip=is_first)
    got = {}
    for name, book in (("right", right), ("wrong", wrong), ("empty", empty)):
        got[name] = ENGINES[engine].recalculated_values(book, where)
    sheet = layout.place[id(first)].sheet
    key = (sheet, blocks[0].row + 1, 9)
    n = first.value.size
    assert got["right"][key] == f"✓ {n}/{n}"
    assert got["wrong"][key] == f"✗ {n - 1}/{n}"
    assert got["empty"][key] == f"✎ 0/{n}"
    assert all(v.startswith("✓") for v in got["wrong"].values() if v != got["wrong"][key])


@pytest.mark.parametrize("args, message", [
    ((*VAE, "--blank", "nonsense"), "no phase or tensor named 'nonsense'"),
    ((*VAE, "--blank", "x"), "is a given input"),
    ((*VAE, "--blank", ""), "--blank needs"),
    ((*VAE, "--blank", "backward", "--blank-iterations", "3"), "--blank-iterations"),
    ((*VAE, "--blank", "backward", "-o", "out.json"), "must end in .xlsx"),
])
def test_bad_exercise_options_are_one_line_errors(run_main, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main("exercise", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.xlsx")) and not list(tmp_path.rglob("*.json"))


def test_help_says_self_check_files_contain_the_answers(run_main):
    code, out, err = run_main("exercise", "vae", "--help")
    assert code == 0 and "contains the answers" in " ".join(out.split())


def test_verify_refuses_an_exercise(books, run_main):
    code, out, err = run_main("verify", books(*VAE, "--blank", "backward"))
    assert code == 2 and "is an exercise" in err and len(err.strip().splitlines()) == 1


def test_blank_accepts_the_symbols_the_workbook_shows():
    """a3, a₃, x̂, ∂L/∂W1, ∂L/∂W₁ and dL/dW1 name the same steps as h_dec_pre, x_hat and dL/dW1."""
    from tracer.checks.exercise import select
    from tracer.models import vae

    tape = vae.trace(vae.Config(size=4, hidden=2, iterations=2))

    def chosen(spec):
        return [t.key for t in select(tape, spec, {1, 2})]

    by_name = chosen("h_dec_pre,x_hat,dL/dW1")
    assert len(by_name) == 6
    for spec in ("a3,x̂,∂L/∂W1", "a₃, x̂, ∂L/∂W₁", "a3,x_hat,dL/dW1", "h_dec_pre,x̂,∂L/∂W₁"):
        assert chosen(spec) == by_name, spec
    assert chosen("μ") == chosen("mu") and chosen("log σ²") == chosen("logvar")


def test_an_unknown_blank_suggests_a_close_name_and_help_lists_every_step_in_order():
    """The message is short (issue 21: it was about 2,000 characters): the closest name, the
    phases, and `--blank help`, which lists every step in order, the same every time."""
    from tracer.checks.exercise import choices, select
    from tracer.errors import TracerError
    from tracer.models import vae

    listings = []
    for _ in range(2):
        tape = vae.trace(vae.Config(size=4, hidden=2, iterations=1))
        with pytest.raises(TracerError) as e:
            select(tape, "nonsense", {1})
        listings.append(choices(tape))
    steps = list(dict.fromkeys(t.name for t in tape.tensors if t.op is not None and t.iteration and t.phase != "after"))
    assert str(e.value) == ("--blank: no phase or tensor named 'nonsense'; phases: forward, loss, backward, update; "
                            f"`--blank help` lists the {len(steps)} steps")
    assert listings[0] == listings[1]
    listed = [line.strip() for line in listings[0][2:]]
    assert [item.split("  (")[0] for item in listed] == steps  # every step, in the order computed
    assert "h_dec_pre  (a₃)" in listed and "x_hat  (x̂)" in listed and "dL/dW1  (∂L/∂W₁)" in listed


def test_an_unfilled_exercise_shows_no_loss(run_main, tmp_path, soffice):
    """The overview's loss cells of an exercise stay empty (#N/A, hidden by a conditional format,
    and left out of the chart), not 0, until the blank cells they are computed from are filled;
    then they show the student's loss."""
    from openpyxl import load_workbook
    from student import formulas

    from tracer.engines.libreoffice import recalculate
    from tracer.engines.workbook import values_at

    path = tmp_path / "ex.xlsx"
    code, _, err = run_main("exercise", "vae", "--size", 4, "--hidden", 2, "--iterations", 2, "--blank", "forward",
                            "-o", path)
    assert code == 0, err
    ws = load_workbook(path)["Overview"]
    cells = [c for row in ws.iter_rows() for c in row if isinstance(c.value, str) and "NA()" in c.value]
    assert len(cells) == 2 * 3  # recon, KL and L of both iterations
    assert all(c.value.startswith("=IF(COUNT(") for c in cells)
    where = {"Overview": {(c.row, c.column) for c in cells}}
    assert set(values_at(path, where).values()) == {"#N/A"}
    assert set(values_at(recalculate(path, tmp_path / "empty"), where).values()) == {"#N/A"}  # not 0
    filled = formulas(path, tmp_path / "filled.xlsx")  # every blank cell typed as its step's formula
    got = values_at(recalculate(filled, tmp_path / "filled"), where)
    run = __import__("tracer").run("vae", size=4, hidden=2, iterations=2)
    want = sorted(v for name in ("recon", "kl", "loss") for v in
                  [t.value.item() for t in run.tape.tensors if t.name == name and t.iteration])
    assert sorted(got.values()) == pytest.approx(want, rel=1e-9)
    # the chart: a marker for each of the 6 losses once filled, none while they are #N/A (not 0)
    from print_pages import to_pdf

    def filled_shapes(book, folder):
        import pypdf
        from pypdf.generic import ContentStream

        reader = pypdf.PdfReader(to_pdf(book, tmp_path / folder))
        page = reader.pages[0]  # the overview
        ops = [op for _, op in page.get_contents().operations]
        for xobject in page["/Resources"].get("/XObject", {}).values():
            ops += [op for _, op in ContentStream(xobject.get_object(), reader).operations]
        return ops.count(b"f*")

    assert filled_shapes(filled, "pdf-filled") - filled_shapes(path, "pdf-empty") == 6
