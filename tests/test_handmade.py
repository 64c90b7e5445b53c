"""A workbook built by hand (tracer check MY.xlsx --model vae --map MAP.toml, tracer map): the
student's own 4 × 4 VAE (tests/handmade_vae.py: their own numbers, sheets and places, nothing of
tracer's layout) graded against the model's steps replayed on the student's own inputs."""

from __future__ import annotations

import re

import pytest
from handmade_vae import OPTIONS, make
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from tracer.checks.check import CARRIED, MISSING, OWN, RIGHT
from tracer.checks.handmade import defined_name, table_of

MISTAKE = ("x_hat", 0, 5, 0.9)  # x̂'s sixth pixel typed as 0.9; everything after it worked out from it


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """{"right": (workbook, map), "mistake": (workbook, map)}."""
    folder = tmp_path_factory.mktemp("handmade")
    made = {}
    for name, stem, mistake in (("right", "right", None), ("mistake", "my_vae", MISTAKE)):
        path = folder / f"{stem}.xlsx"
        made[name] = (path, folder / ("my_map.toml" if mistake else f"{stem}.toml"))
        made[name][1].write_text(make(path, mistake), "utf-8")
    return made


def check(run_main, book, *more):
    path, where = book
    return run_main("check", path, "--model", "vae", *OPTIONS, "--map", where, *more)


def test_a_right_hand_built_vae_is_all_right(books, run_main):
    """The student's own numbers (worked out by an independent numpy VAE) agree with tracer's
    steps replayed on the student's own digit, weights, draw and learning rate, cell for cell."""
    code, out, err = check(run_main, books["right"])
    assert code == 0, err
    assert "a hand-built vae workbook (map: right.toml), 281 cells to grade" in out
    assert "score: 100.0% (281 of 281 cells right)" in out
    assert "inputs read from your workbook (the steps are replayed on them): x, W₁, b₁, W_μ, b_μ, W_logσ², b_logσ², W₃, " \
           "b₃, W₄, b₄, lr, ε (iteration 1)" in out  # lr and ε by their defined names, not in the map
    assert "steps not in the map (not graded): reconᵢ (iteration 1)" in out and "∂L/∂σ (iteration 1)" in out
    assert "inputs not in the map" not in out


def test_one_deliberate_mistake_is_the_only_own_one(books, run_main, tmp_path):
    code, out, err = check(run_main, books["mistake"], "--report", tmp_path / "graded.xlsx")
    assert code == 1, err
    assert "own mistakes 1, carried errors 32, missing 0" in out
    assert "Iteration 1 · x̂ ('Paso 1'!C37:C52) (1×16): 15 right, 1 wrong (1 own, 0 carried)" in out
    assert "first own mistake: 'Paso 1'!C42 [1, 6]: you wrote 0.9; from your own inputs the step gives 0.636757" in out
    assert "Iteration 1 · ∂L/∂a₄ ('Paso 1'!C60:C75) (1×16): 15 right, 1 wrong (0 own, 1 carried)" in out
    report = load_workbook(tmp_path / "graded.xlsx")
    assert report["Paso 1"]["C42"].fill.start_color.rgb[-6:] == "FFC7CE"  # the mistake red …
    assert report["Paso 1"]["C65"].fill.start_color.rgb[-6:] == "FFEB9C"  # … ∂L/∂a₄ of that pixel yellow
    assert report.sheetnames[0] == "Grade"


def test_the_students_inputs_are_what_the_replay_starts_from(books, run_main, tmp_path):
    """The check can fail: without the defined name of the student's draw ε, tracer's own draw is
    used, and z and everything after it no longer follow from the inputs."""
    path, where = books["right"]
    wb = load_workbook(path)
    del wb.defined_names["eps_1"]
    wb.save(tmp_path / "no_eps.xlsx")
    code, out, _ = check(run_main, (tmp_path / "no_eps.xlsx", where))
    assert code == 1 and "inputs not in the map (tracer's own values are used): ε (iteration 1)" in out
    assert "Iteration 1 · z ('Paso 1'!C14:D14) (1×2): 0 right, 2 wrong (2 own, 0 carried)" in out


def test_the_map_round_trips(books, run_main, tmp_path):
    """`tracer map` lists every tensor of the run once, with its shape and meaning; the template is
    a valid map (empty: nothing placed), and filled in with the student's places it grades the
    workbook as the student's own map does."""
    import tomllib

    code, text, err = run_main("map", "vae", *OPTIONS)
    assert code == 0, err
    from tracer import api

    tape = api.run("vae", size=4, hidden=2, iterations=1).tape
    data = tomllib.loads(text)
    tables = {"inputs": data["inputs"], "after": data["after"], **{f"iteration.{k}": v for k, v in data["iteration"].items()}}
    assert sorted((table, key) for table, keys in tables.items() for key in keys) == sorted(
        (table_of(t), t.name) for t in tape.tensors)  # every tensor once, in its part of the run
    assert all(v == "" for keys in tables.values() for v in keys.values())
    assert '"[grid] x_hat" = ""' in text and "[after]  # After training" in text
    assert '"dL/dW1" = ""' in text and "# 16×2  ∂L/∂W₁: gradient of L with respect to W₁; ∂L/∂W₁ = xᵀ · ∂L/∂a₁  " \
                                      "[dL_dW1_1]" in text
    assert "# 1×16  x̂: " in text and "[W1_0]" in text
    es = run_main("map", "vae", *OPTIONS, "--lang", "es")[1]
    assert "pesos del codificador" in es and "[inputs]  # De dónde parte" in es
    path, where = books["mistake"]
    places = {}
    table = None
    for line in where.read_text("utf-8").splitlines():
        if line.startswith("["):
            table = line.strip("[]")
        elif line:
            key, value = line.split(" = ")
            places[(table, key.strip('"'))] = value
    filled, table = [], None
    for line in text.splitlines():
        m = re.match(r'^("[^"]+"|[\w-]+) = ""', line)
        if line.startswith("["):
            table = line.split("]")[0].strip("[")
        if m and (table, m[1].strip('"')) in places:
            line = f"{m[1]} = {places[(table, m[1].strip(chr(34)))]}" + line[m.end():]
        filled.append(line)
    (tmp_path / "filled.toml").write_text("\n".join(filled), "utf-8")
    code, theirs, _ = check(run_main, books["mistake"])
    code2, ours, _ = check(run_main, (path, tmp_path / "filled.toml"))
    assert code == code2 == 1 and ours.splitlines()[1:] == theirs.splitlines()[1:]  # after the heading (the map's name)


def test_symbols_and_names_alike(books, run_main, tmp_path):
    """A map may name a tensor by the symbol the workbooks show (x̂, ∂L/∂W₁) as well as by name."""
    path, where = books["right"]
    text = where.read_text("utf-8").replace('"x_hat" =', '"x̂" =').replace('"dL/dW1" =', '"∂L/∂W₁" =')
    (tmp_path / "symbols.toml").write_text(text, "utf-8")
    code, out, _ = check(run_main, (path, tmp_path / "symbols.toml"))
    assert code == 0 and "281 of 281 cells right" in out


@pytest.mark.parametrize("change, message", [
    (lambda m: m.replace('"x_hat"', '"x_hatt"'), "[iteration.1] has no tensor 'x_hatt' (did you mean 'x_hat'?)"),
    (lambda m: m.replace("C37:C52", "C37:C50"), "'Paso 1'!C37:C50\" is 14×1; x_hat is 1×16 (rows × columns, or the transpose)"),
    (lambda m: m.replace("C37:C52", "C837:C852"), "is outside the sheet 'Paso 1' (its cells end at R197)"),
    (lambda m: m.replace("'Paso 1'!C37", "'Paso 2'!C37"), "the workbook has no sheet 'Paso 2'"),
    (lambda m: m.replace("C37:C52", "C37:C52x"), "is not a place like \"Sheet1!B2:C5\""),
    (lambda m: m.replace("[iteration.1]", "[iteration.2]"), "[iteration.2] is not a part of this run"),
    (lambda m: m.replace("E2:F17", "D2:E17"), "(W1[1, 1], an input read from 'Pesos y datos'!D2:E17) holds 'W1': an "
                                              "input must be a number"),
    (lambda m: m.replace("E2:F17", "H2:I17"), "'Pesos y datos'!H2 (W1[1, 1], an input read from 'Pesos y datos'!H2:I17) "
                                              "is empty"),
    (lambda m: m + "x_hat = 3\n", "is not a TOML map"),
    (lambda m: m.replace('"x" = ', '"x" = 7 #'), "[inputs] x must be a place in quotes"),
    (lambda m: "", "nothing to grade: empty.toml places no tensor"),
])
def test_a_bad_map_is_one_line(books, refused, tmp_path, change, message):
    path, where = books["right"]
    name = "empty.toml" if message.startswith("nothing") else "bad.toml"
    (tmp_path / name).write_text(change(where.read_text("utf-8")), "utf-8")
    if message.startswith("nothing"):  # nor any defined name
        wb = load_workbook(path)
        for n in list(wb.defined_names):
            del wb.defined_names[n]
        wb.save(tmp_path / "plain.xlsx")
        path = tmp_path / "plain.xlsx"
    assert message in refused("check", path, "--model", "vae", *OPTIONS, "--map", tmp_path / name)


def test_options_of_a_hand_built_check(books, refused):
    path, where = books["right"]
    assert "needs both --model and --map" in refused("check", path, "--model", "vae")
    assert "no such option" in refused("check", path, "--size", "4")
    assert "No such option '--sise'" in refused("check", path, "--model", "vae", "--sise", "4", "--map", where)
    assert "--gradebook is not for a workbook built by hand" in refused(
        "check", path, "--model", "vae", "--map", where, "--gradebook", "g.xlsx")


def test_defined_names():
    from tracer import api

    tape = api.run("vae", size=4, hidden=2, iterations=1, grid=2, samples=0).tape
    names = {defined_name(t) for t in tape.tensors}
    assert {"W1_0", "dL_dW1_1", "x_hat_1", "_grid__x_hat_after"} <= names and len(names) == len(tape.tensors)


def test_statuses_add_up(books):
    """The grade of the mistake's workbook, through the API: every cell one status."""
    from tracer import api

    path, where = books["mistake"]
    result, _ = api.check_handmade(path, "vae", where, size=4, hidden=2, iterations=1)
    counts = {s: result.total(s) for s in (RIGHT, OWN, CARRIED, MISSING)}
    assert counts == {RIGHT: 248, OWN: 1, CARRIED: 32, MISSING: 0} and result.score_carried_right > 99


def test_the_docs_show_the_round_trip_as_it_is(books, run_main, tmp_path, monkeypatch):
    """docs/exercises.md, as written: its `tracer map` and `tracer check` commands, run on the tests'
    hand-built workbook with its mistake, print every line the page shows."""
    import shlex
    import shutil

    from documented import says, text_of

    text = text_of("exercises.md")
    section = text[text.index("## A workbook built by hand"):]
    blocks = re.findall(r"```(\w*)\n(.*?)\n```", section, re.S)
    (commands,) = [block for lang, block in blocks if lang == "bash"]
    map_cmd, check_cmd = commands.splitlines()
    template, output = [block for lang, block in blocks if not lang]
    path, where = books["mistake"]
    monkeypatch.chdir(tmp_path)
    shutil.copy(path, "my_vae.xlsx")
    code, printed, _ = run_main(*shlex.split(map_cmd.removesuffix(" > my_map.toml"))[1:])
    assert code == 0 and [line for line in template.splitlines() if line not in printed.splitlines()] == []
    shutil.copy(where, "my_map.toml")  # the student's map, filled in
    code, printed, _ = run_main(*shlex.split(check_cmd)[1:])
    assert code == 1
    assert [line for line in output.splitlines() if line != "…" and line not in printed.splitlines()] == []
    says("exercises.md", "All 281 cells it places are right")


def test_any_layout_tracer_can_read_back(tmp_path, run_main):
    """Mazur's network as `tracer run mlp` lays it out, read as a stranger's workbook: a map of
    where each tensor is (wide ones turned, the learning rate on the Overview) places every tensor,
    and every step it computes is right."""
    from tracer import api
    from tracer.render.layout import Layout
    from tracer.render.template import Template

    r = api.run("mlp")
    r.save(tmp_path / "mazur.xlsx")
    layout = Layout(r.tape, Template.of(r.tape, "en"), r.settings)
    tables: dict[str, list[str]] = {}
    for t in r.tape.tensors:
        p = layout.place[id(t)]
        (r0, c0), (r1, c1) = p.rc(0, 0), p.rc(t.shape[0] - 1, t.shape[1] - 1)
        cells = f"{get_column_letter(c0 + 1)}{r0 + 1}:{get_column_letter(c1 + 1)}{r1 + 1}"
        tables.setdefault(table_of(t), []).append(f'"{t.name}" = "\'{p.sheet}\'!{cells}"')
    text = "".join(f"[{table}]\n" + "\n".join(lines) + "\n" for table, lines in tables.items())
    (tmp_path / "mazur.toml").write_text(text, "utf-8")
    code, out, err = run_main("check", tmp_path / "mazur.xlsx", "--model", "mlp", "--map", tmp_path / "mazur.toml")
    steps = sum(t.value.size for t in r.tape.tensors if t.op is not None and t.iteration)
    assert code == 0 and f"score: 100.0% ({steps} of {steps} cells right)" in out, (out, err)
    assert "not in the map" not in out
