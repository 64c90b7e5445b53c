"""The Python API: the example of docs/python.md runs verbatim, options are checked as the CLI checks them,
and a run saved from Python is the file the CLI writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tracer
from tracer.errors import TracerError

PAGE = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def readme_example() -> str:
    if not PAGE.exists():
        pytest.skip("needs the source tree")
    return re.search(r"```python\n(.*?)```", PAGE.read_text("utf-8"), re.S)[1]


def test_the_readme_example_runs_verbatim(soffice, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "docs/python.md", "exec"), scope)
    run = scope["run"]
    assert [round(v, 2) for v in run.losses["loss"]] == [543.71, 541.55, 538.42, 535.46]
    shown = re.search(r"print\(run.losses\) +# (\{.*\})", readme_example())[1]  # the losses, cut after 2 decimals
    assert shown == "{'loss': [" + ", ".join(f"{int(v * 100) / 100:.2f}…" for v in run.losses["loss"]) + "]}"
    assert list(scope["df"].columns) == ["iteration", "phase", "tensor", "index", "row", "col", "value", "token"]
    assert (tmp_path / "vae.xlsx").is_file()
    assert scope["report"].ok and scope["report"].n_formulas > 100_000


def test_a_run_holds_every_tensor():
    run = tracer.run("mlp")
    assert run.name == "mlp" and run.config.iterations == 1
    assert run.losses == {"E_total": [pytest.approx(0.298371109, abs=1e-9)]}  # Mazur's published E_total
    w5 = run["w_o", 1]  # after the update
    assert w5.shape == (2, 2) and w5[0, 0] == pytest.approx(0.35891648, abs=1e-8)
    assert run["w_o"][0, 0] == 0.4  # the initial weight (iteration 0)
    with pytest.raises(KeyError, match="no tensor 'nope'"):
        run["nope"]


def test_to_pandas_is_the_csv(tmp_path):
    run = tracer.run("attention", iterations=1, generate=0)
    run.save(tmp_path / "t.csv")
    csv = pd.read_csv(tmp_path / "t.csv", dtype={"value": str}, keep_default_na=False)
    csv["value"] = csv["value"].map(float)  # every digit, whatever pandas' parser
    df = run.to_pandas()
    vocab = len(run.tape.meta["tokenized"].vocab)  # the vocabulary's rows come first
    assert len(df) == len(csv) == vocab + sum(t.value.size for t in run.tape.tensors)
    assert list(df.columns) == list(csv.columns) and (df["token"] == csv["token"]).all()
    assert (df["tensor"] == csv["tensor"]).all() and np.array_equal(df["value"], csv["value"])
    loss = df[(df.tensor == "loss") & (df.iteration == 1)]["value"].item()
    assert loss == run.losses["loss"][0]


def test_save_writes_what_the_cli_writes(tmp_path, run_main, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracer.run("vae", hidden=2, iterations=2).save("api.json")
    code, _, _ = run_main("run", "vae", "--hidden", "2", "--iterations", "2", "-o", "cli.json")
    assert code == 0 and (tmp_path / "api.json").read_bytes() == (tmp_path / "cli.json").read_bytes()


@pytest.mark.parametrize("options, cli", [
    ({"hidden": 0}, ["--hidden", "0"]),
    ({"lr": -1.0}, ["--lr", "-1"]),
    ({"optimizer": "adamw"}, ["--optimizer", "adamw"]),
    ({"beta1": 1.0}, ["--beta1", "1"]),
])
def test_bad_options_raise_the_clis_message(run_main, options, cli):
    with pytest.raises(TracerError) as raised:
        tracer.run("vae", **options)
    code, _, err = run_main("run", "vae", *cli)
    assert code == 2
    if "adamw" not in cli:  # click refuses a choice itself, before the model sees it
        assert err.strip() == f"error: {raised.value}"


@pytest.mark.parametrize("call, message", [
    (lambda: tracer.run("vea"), "unknown model 'vea'"),
    (lambda: tracer.run("vae", hiden=3), "vae has no option 'hiden'"),
    (lambda: tracer.run("vae", hidden="8"), "'hidden' must be a whole number"),
    (lambda: tracer.run("vae", hidden=2.5), "'hidden' must be a whole number"),
    (lambda: tracer.run("vae", lr="fast"), "'lr' must be a number"),
    (lambda: tracer.run("vae", lang="fr"), "unknown language 'fr'"),
    (lambda: tracer.run("mlp", config="no_such.toml"), "no_such.toml"),
])
def test_api_errors_are_tracer_errors(call, message):
    with pytest.raises(TracerError, match=re.escape(message)):
        call()


def test_a_text_models_corpus_follows_the_language():
    assert tracer.run("skipgram", iterations=1, lang="es").config.corpus == "es"
    assert tracer.run("skipgram", iterations=1, lang="es", corpus="en").config.corpus == "en"


def test_verify_refuses_an_exercise_and_a_missing_file(tmp_path):
    with pytest.raises(TracerError, match="no such file"):
        tracer.verify(tmp_path / "missing.xlsx")
    path, ex, cells = tracer.exercise("mlp", "update", tmp_path / "ex.xlsx")
    assert path.is_file() and len(ex.blank) == 2 and cells > 0
    with pytest.raises(TracerError, match="is an exercise"):
        tracer.verify(path)


def test_verify_in_one_engine_or_each(tmp_path):
    """tracer.verify(path, engine=…): the engine's own report, by name; an unknown one refused."""
    from tracer import api
    from tracer.engines import CHOICES

    assert api.ENGINES == CHOICES  # the CLI's choices are the engines'
    run = tracer.run("mlp")
    run.save(tmp_path / "mlp.xlsx")
    v = tracer.verify(tmp_path / "mlp.xlsx", engine="ironcalc")
    assert v.ok and [r.engine for r in v.reports] == ["IronCalc"] and v["ironcalc"].n_formulas == v.n_formulas > 20
    assert v.lines()[-2:] == ["IronCalc: OK", "OK"]
    with pytest.raises(KeyError):
        v["libreoffice"]
    with pytest.raises(TracerError, match="unknown engine 'excel'"):
        tracer.verify(tmp_path / "mlp.xlsx", engine="excel")
    with pytest.raises(TracerError, match="unknown engine 'all'"):
        tracer.check(tmp_path / "mlp.xlsx", engine="all")
