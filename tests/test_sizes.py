"""Sizes are known before any work: every model estimates its run from its options (size(config)),
the estimate is close to the real run, and a run beyond the documented limits is refused, naming
the option and the limit, before anything is traced."""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys

import pytest
from conftest import RUNS

from tracer import api, models
from tracer.core.size import MAX_CELLS, MAX_DATA_VALUES, MAX_ROWS, Size, estimate, sheet
from tracer.errors import TracerError
from tracer.render.layout import Block, Layout
from tracer.render.template import Template

# every registered model's defaults, and every configuration the workbook tests use
CASES = {**{name: (name, {}) for name in models.MODELS}, **RUNS}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_estimates_its_size(name):
    """A model without size(config) is not finished: docs/development.md, 'A new model', step 1."""
    model = models.MODELS[name]
    assert callable(getattr(model, "size", None)), f"{name} has no size(config): see docs/development.md, 'A new model'"
    est = model.size(model.Config())
    assert isinstance(est, Size) and est.cells > 0 and est.rows > 0


def real_size(tape, config) -> Size:
    """The values the run records, and the rows of its tallest sheet as laid out."""
    layout = Layout(tape, Template.of(tape, "en"), config)
    rows = max(b.place.row0 + b.place.display[0] for s in layout.sheets for b in s.parts if isinstance(b, Block))
    return Size(sum(t.value.size for t in tape.tensors), rows)


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_estimate_is_within_a_factor_of_2(key, run_tape):
    name, options = CASES[key]
    model = models.MODELS[name]
    if key in RUNS:
        cfg, tape = run_tape(key)
    else:
        cfg = model.Config(**options)
        tape = model.trace(cfg)
    est, real = model.size(cfg), real_size(tape, dataclasses.asdict(cfg))
    assert 0.5 <= est.cells / real.cells <= 2, (key, est, real)
    assert 0.5 <= est.rows / real.rows <= 2, (key, est, real)


def test_the_estimate_follows_the_options():
    """Larger options, a larger estimate: the check the limits rely on can fail."""
    small, large = (models.vae.size(models.vae.Config(hidden=h)) for h in (8, 80))
    assert large.cells > 5 * small.cells
    adam = models.gan.size(models.gan.Config(optimizer="adam"))
    assert adam.cells > 2 * models.gan.size(models.gan.Config()).cells


def test_sheet_rows_follow_the_layout():
    """A row vector is shown as a column, a very wide batch turned; every block has 5 rows around it."""
    assert sheet([(1, 784)]) == Size(784, 789)
    assert sheet([(784, 8), (3, 3136)]) == Size(784 * 8 + 3 * 3136, 784 + 5 + 3136 + 5)
    assert estimate([(2, 2)], [(1, 1)], 10, after=Size(7, 3)) == Size(4 + 10 + 7, 7)


# --- refused before any work ----------------------------------------------------------------------

def big_text(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    text = "\n".join(" ".join(words[(i + k) % 12] for k in range(12)) for i in range(400))[:19_900]
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    return path


def mlp_toml(tmp_path, units=2, iterations=1):
    path = tmp_path / f"net_{units}_{iterations}.toml"
    path.write_text(f"""[data]
inputs = [[0.05, 0.1]]
targets = [[0.01, 0.99]]
[[layer]]
units = {units}
activation = "sigmoid"
[[layer]]
units = 2
activation = "sigmoid"
[loss]
kind = "half_sse"
[training]
lr = 0.5
iterations = {iterations}
""", encoding="utf-8")
    return path


TOO_LARGE = [  # the cases: (arguments, the option named, the limit named)
    (["run", "vae", "--hidden", "100000"], "--hidden 100000", f"{MAX_CELLS:,}"),
    (["run", "vae", "--hidden", "100000", "-o", "{tmp}/x.json"], "--hidden 100000", f"{MAX_DATA_VALUES:,}"),
    (["run", "vae", "--iterations", "100000"], "--iterations 100000", f"{MAX_CELLS:,}"),
    (["run", "gan", "--hidden", "100000"], "--hidden 100000", f"{MAX_CELLS:,}"),
    (["run", "transformer", "--generate", "100000"], "--generate 100000", f"{MAX_CELLS:,}"),
    (["run", "transformer", "--text", "{text}", "--tokenizer", "char", "--context", "19000"], "--context 19000",
     f"{MAX_CELLS:,}"),
    (["run", "attention", "--text", "{text}", "--tokenizer", "char", "--context", "19000"], "--context 19000",
     f"{MAX_CELLS:,}"),
    (["run", "transformer", "--d-model", "100000", "--heads", "1"], "--d-model 100000", f"{MAX_CELLS:,}"),
    (["run", "skipgram", "--dim", "100000"], "--dim 100000", f"{MAX_CELLS:,}"),
    (["run", "skipgram", "--negative", "1000", "-o", "{tmp}/x.csv"], "--negative 1000", f"{MAX_DATA_VALUES:,}"),
    (["run", "skipgram", "--text", "{text}", "--sentences", "0", "--tokenizer", "char", "--window", "4",
      "--dim", "1", "--iterations", "1"], "--sentences 0", f"{MAX_ROWS:,} rows"),
    (["run", "mlp", "--config", "{units}"], "--config", f"{MAX_CELLS:,}"),
    (["run", "mlp", "--config", "{iterations}"], "--config", f"{MAX_CELLS:,}"),
    (["exercise", "vae", "--hidden", "100000", "--blank", "backward"], "--hidden 100000", f"{MAX_CELLS:,}"),
    (["gradcheck", "vae", "--hidden", "100000"], "--hidden 100000", f"{MAX_CELLS:,}"),
]


def limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GB: a run traced anyway would fail


@pytest.mark.parametrize("args, option, limit", TOO_LARGE, ids=[" ".join(a[:4]) for a, *_ in TOO_LARGE])
def test_too_large_is_refused_before_any_work(tmp_path, args, option, limit):
    names = {"tmp": tmp_path, "text": big_text(tmp_path), "units": mlp_toml(tmp_path, units=100_000_000),
             "iterations": mlp_toml(tmp_path, iterations=100_000_000)}
    args = [a.format(**names) for a in args]
    if args[0] != "gradcheck" and "-o" not in args:
        args += ["-o", str(tmp_path / "out.xlsx")]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run([sys.executable, "-m", "tracer.cli", *args], capture_output=True, text=True, timeout=120,
                            preexec_fn=limited_memory, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert option in lines[0] and limit in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("name, options", [("vae", {"hidden": 100_000}), ("transformer", {"generate": 100_000}),
                                           ("skipgram", {"dim": 100_000})])
def test_the_limit_is_checked_before_tracing(name, options, monkeypatch):
    def traced(cfg):
        raise AssertionError("traced before the size was checked")

    monkeypatch.setattr(models.MODELS[name], "trace", traced)
    with pytest.raises(TracerError, match="makes the run too large"):
        api.run(name, **options)


def test_the_exact_count_is_checked_before_writing(tmp_path, monkeypatch):
    """The estimate is good to a factor; the file's limit holds exactly."""
    from tracer.render import export

    run = api.run("vae", hidden=2, iterations=1)
    monkeypatch.setattr(export, "MAX_DATA_VALUES", 1000)
    with pytest.raises(TracerError, match="more than the limit of 1,000 for a .json file"):
        run.save(tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []
