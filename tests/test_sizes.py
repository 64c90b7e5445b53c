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
from documented import says

from tracer import api, models
from tracer.bench import BYTES_PER_CELL, forecast_seconds
from tracer.core.op import SUM_N
from tracer.core.size import BLOCK_ROWS, MAX_CELLS, MAX_DATA_VALUES, MAX_ROWS, Shapes, Size, estimate, sheet, summed
from tracer.errors import TracerError
from tracer.render.layout import Block, Cells, Layout, block_cells
from tracer.render.template import Template

# every registered model's defaults, every configuration the workbook tests use, and more options: each
# model's own sizes, the tokenizers, contexts (the recurrent models' steps), warm-ups, optimizers, batches,
# grids and samples, the amplifier, generation's lengths and temperatures
VARIED = {
    "vae-size4-hidden64": ("vae", {"size": 4, "hidden": 64}),
    "vae-batch8-adam-latent3": ("vae", {"batch": 8, "optimizer": "adam", "latent": 3, "grid": 2}),
    "vae-warmup-nothing-after": ("vae", {"warmup": 20, "iterations": 2, "samples": 0, "grid": 0}),
    "gan-batch4-latent8": ("gan", {"batch": 4, "latent": 8, "hidden": 4}),
    "gan-upscale4-adam": ("gan", {"upscale": 4, "optimizer": "adam", "hidden": 3, "iterations": 1}),
    "skipgram-char-window3": ("skipgram", {"tokenizer": "char", "window": 3}),
    "skipgram-neg3-adam": ("skipgram", {"negative": 3, "optimizer": "adam", "corpus": "es"}),
    "skipgram-bpe-8-sentences": ("skipgram", {"tokenizer": "bpe", "merges": 20, "sentences": 8, "dim": 6}),
    "attention-char-30": ("attention", {"tokenizer": "char", "context": 30, "d_k": 2}),
    "attention-long-generation": ("attention", {"context": 20, "generate": 30, "temperature": ""}),
    "transformer-3-layers-4-heads": ("transformer", {"layers": 3, "heads": 4, "generate": 0, "optimizer": "adam"}),
    "transformer-char-24-gelu": ("transformer", {"tokenizer": "char", "context": 24, "ffn": "gelu", "warmup": 5}),
    "transformer-generation-past-context": ("transformer", {"context": 4, "generate": 12, "temperature": "1"}),
    "bert-2-layers-4-heads-adam": ("bert", {"layers": 2, "heads": 4, "optimizer": "adam"}),
    "bert-char-20": ("bert", {"tokenizer": "char", "context": 20, "mask_rate": 0.4, "top": 5}),
    "rnn-context-30": ("rnn", {"context": 30}),
    "rnn-context-100": ("rnn", {"context": 100, "generate": 0}),
    "rnn-char-60-adam": ("rnn", {"tokenizer": "char", "context": 60, "optimizer": "adam", "hidden": 16}),
    "rnn-bpe-generate-20": ("rnn", {"tokenizer": "bpe", "generate": 20, "d_model": 3}),
    "lstm-context-30": ("lstm", {"context": 30, "iterations": 2}),
    "lstm-char-60-hidden-4": ("lstm", {"tokenizer": "char", "context": 60, "generate": 0, "hidden": 4,
                                       "iterations": 1}),
    "lstm-warmup-adam": ("lstm", {"optimizer": "adam", "warmup": 10, "hidden": 12}),
    "mlp-softmax-adam-warmup": ("mlp", {"config": "softmax_classifier", "warmup": 10}),
    "diffusion-14-no-samples": ("diffusion", {"samples": 0, "size": 14, "hidden": 32}),
    "diffusion-30-steps-batch-1": ("diffusion", {"steps": 30, "batch": 1, "optimizer": "adam"}),
    "flow-6-couplings-nothing-after": ("flow", {"grid": 0, "samples": 0, "couplings": 6}),
    "flow-rings-128-warmup": ("flow", {"data": "rings", "warmup": 20, "points": 128, "iterations": 1}),
}
CASES = {**{name: (name, {}) for name in models.MODELS}, **RUNS, **VARIED}
FACTOR = 1.5  # docs/limits.md states it
PEAK_MB = 100  # a refusal's memory at most (docs/limits.md)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_estimates_its_size(name):
    """A model without size(config) is not finished: docs/development.md, 'A new model', step 1."""
    model = models.MODELS[name]
    assert callable(getattr(model, "size", None)), f"{name} has no size(config): see docs/development.md"
    est = model.size(model.Config())
    assert isinstance(est, Size) and est.cells > 0 and est.rows > 0


def real_size(tape, config) -> Size:
    """What the workbook holds: its blocks' cells (Run.size), the rows of its tallest sheet as laid
    out, and its blocks."""
    layout = Layout(tape, Template.of(tape, "en"), config)
    blocks = [b for s in layout.sheets for b in s.parts if isinstance(b, Block)]
    return Size(block_cells(tape), max(b.place.row0 + b.place.display[0] for b in blocks), len(blocks))


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_estimate_is_within_a_factor_of_1_5(key, run_tape):
    name, options = CASES[key]
    model = models.MODELS[name]
    if key in RUNS:
        cfg, tape = run_tape(key)
    else:
        cfg = model.Config(**options)
        tape = model.trace(cfg)
    est, real = model.size(cfg), real_size(tape, dataclasses.asdict(cfg))
    for what in ("cells", "rows", "blocks"):  # (the forecast's time counts the blocks)
        assert 1 / FACTOR <= getattr(est, what) / getattr(real, what) <= FACTOR, (key, what, est, real)


def test_the_estimate_follows_the_options():
    """Larger options, a larger estimate: the check the limits rely on can fail."""
    small, large = (models.vae.size(models.vae.Config(hidden=h)) for h in (8, 80))
    assert large.cells > 5 * small.cells
    adam = models.gan.size(models.gan.Config(optimizer="adam"))
    assert adam.cells > 2 * models.gan.size(models.gan.Config()).cells


@pytest.mark.parametrize("name, options", [("rnn", {"tokenizer": "char", "context": 300}), ("lstm", {"context": 40}),
                                           ("transformer", {"heads": 8, "d_model": 16}), ("bert", {"heads": 4}),
                                           ("skipgram", {"negative": 20})])
def test_the_longest_sum_is_foreseen(name, options, tmp_path):
    """The sum with the most parts (a gradient over the steps, the heads, the samples): its parts and
    the length of its formula, known before any work (a workbook's formula holds 8,192 characters)."""
    text = big_text(tmp_path) if options.get("tokenizer") == "char" else None
    model = models.MODELS[name]
    cfg = model.Config(**options, iterations=1, **({"text": str(text)} if text else {}),
                       **({"generate": 0} if name in ("rnn", "lstm", "transformer") else {}))
    tape = model.trace(cfg)
    layout = Layout(tape, Template.of(tape, "en"), dataclasses.asdict(cfg))
    longest = max((t for t in tape.tensors if t.op is SUM_N), key=lambda t: len(t.inputs))  # a gradient's parts
    parts, chars = len(longest.inputs), len(longest.op.formula(Cells(layout, longest), 0, 0))
    est = model.size(cfg)
    assert est.terms == parts and chars <= est.formula_chars() <= 1.15 * chars, (longest.name, est, chars)


def test_sheet_rows_follow_the_layout():
    """A row vector is shown as a column, a very wide batch turned; every block has BLOCK_ROWS rows around it."""
    assert sheet([(1, 784)]) == Size(784, 784 + BLOCK_ROWS, 1)
    assert sheet([(784, 8), (3, 3136)]) == Size(784 * 8 + 3 * 3136, 784 + 3136 + 2 * BLOCK_ROWS, 2)
    assert estimate([(2, 2)], [(1, 1)], 10, after=Size(7, 3, 1)) == Size(4 + 10 + 7, 2 + BLOCK_ROWS, 1 + 10 + 1)
    # in bands of 16 columns, each under its column numbers: 49 bands of one row, 8 of four rows; a
    # small tensor as before; 128 × 49 turned, 8 bands of 49 rows, fewer rows than 4 bands of 128
    assert sheet([(1, 784)], bands=True) == Size(784, 49 * 2 - 1 + BLOCK_ROWS, 1)
    assert sheet([(4, 128)], bands=True).rows == 8 * 5 - 1 + BLOCK_ROWS
    assert sheet([(1, 16)], bands=True) == sheet([(1, 16)])
    assert sheet([(128, 49)], bands=True).rows == 8 * 50 - 1 + BLOCK_ROWS


def test_shapes_are_counted_not_listed():
    """k copies of a part are a count: a million layers of a transformer's block hold one entry per
    shape, and the sum is the same as the list's."""
    block = Shapes([(8, 4)] * 3 + [(1, 8)])
    assert sheet(block * 3 + [(5, 5)]) == sheet([(8, 4)] * 9 + [(1, 8)] * 3 + [(5, 5)])
    assert sheet(Shapes([(2, 3)]) * 0.5) == Size(3, round(0.5 * (2 + BLOCK_ROWS)), 0)  # half a block: 0.5
    huge = block * 10 ** 12 + Shapes([(8, 4)]) * 10 ** 12
    assert len(huge.counts) == 2 and sheet(huge).cells == (4 * 32 + 8) * 10 ** 12
    params, forward = models.transformer.shapes(models.transformer.Config(layers=10 ** 9, heads=4, d_model=8))
    assert len(params(5).counts) < 20 and len(forward(8, 5).counts) < 20


@pytest.mark.parametrize("first, last", [(3, 2), (1, 1), (1, 2), (4, 6), (2, 40), (5, 10 ** 9)])
def test_summed_is_exact_for_the_cells(first, last):
    """A generation's steps summed in closed form: the cells (a polynomial of degree 2 in the length)
    exactly; the rows, which bend where a block turns, within a few percent."""
    def part(m):
        return sheet([(m, m), (m, 3), (m, 30), (1, 30)])

    got = summed(part, first, last)
    if last - first > 10 ** 6:  # the exact sum of m² + 33m + 30 over the range
        n = last - first + 1
        squares = (last * (last + 1) * (2 * last + 1) - (first - 1) * first * (2 * first - 1)) // 6
        assert got.cells == squares + 33 * (first + last) * n // 2 + 30 * n
        return
    parts = [part(m) for m in range(first, last + 1)]
    assert got.cells == sum(p.cells for p in parts)
    assert got.rows == pytest.approx(sum(p.rows for p in parts), rel=0.05)


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


# --- refused at no cost, whatever the numbers typed ---------------------------------------------------

CHILD = """
import sys
from tracer import models

def traced(cfg):
    sys.exit(99)  # the model was traced: its size was not refused first

for model in models.MODELS.values():
    model.trace = traced
from tracer.cli import main
main()
"""
# a fresh, small process (no numpy) runs the command and reports its children's peak memory: an exec'd
# process starts its ru_maxrss from the resident memory of the process that forked it (Linux), so the
# command must not be forked from a large pytest
PEAK = """
import resource, subprocess, sys

def limit():  # 1 GB: a size check that lists what it counts fails here instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

done = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], capture_output=True, text=True,
                      preexec_fn=limit, check=False)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stdout.write(done.stderr)
"""
CHEAP = [  # the cases and more: (arguments, the option named)
    (["bert", "--layers", "1000000"], "--layers 1000000"),
    (["bert", "--heads", "50000000", "--d-model", "100000000"], "--d-model 100000000"),
    (["transformer", "--layers", "1000000"], "--layers 1000000"),
    (["transformer", "--layers", "100000"], "--layers 100000"),
    (["transformer", "--layers", "10000000000000", "--heads", "4"], "--layers 10000000000000"),
    (["transformer", "--generate", "1000000000000"], "--generate 1000000000000"),
    (["attention", "--context", "100", "--generate", "1000000000000", "--temperature", "1,2,3,4,5,6,7,8"],
     "--generate 1000000000000"),
    (["lstm", "--text", "{text}", "--tokenizer", "char", "--context", "19000", "--hidden", "64"], "--context 19000"),
    (["rnn", "--text", "{text}", "--tokenizer", "char", "--context", "3000"], "--context 3000"),  # a formula
    (["rnn", "--hidden", "1000000000"], "--hidden 1000000000"),
    (["rnn", "--generate", "1000000000000"], "--generate 1000000000000"),
    (["skipgram", "--negative", "1000000000000"], "--negative 1000000000000"),
    (["vae", "--iterations", "1000000000000000"], "--iterations 1000000000000000"),
    (["flow", "--points", "1000000000000"], "--points 1000000000000"),
]


@pytest.mark.parametrize("args, option", CHEAP, ids=[" ".join(a[:3]) for a, _ in CHEAP])
def test_a_refusal_costs_nothing(tmp_path, args, option):
    """Refused in one line naming the option, before any tracing, in the memory of a bare command
    (the timings are in the report and docs/limits.md, not in a test)."""
    args = [a.format(text=big_text(tmp_path)) for a in args]
    result = subprocess.run([sys.executable, "-c", PEAK, CHILD, "run", *args, "-o", str(tmp_path / "out.xlsx")],
                            capture_output=True, text=True, timeout=600, check=True)
    status, *lines = result.stdout.splitlines()
    code, peak_kb = map(int, status.split())
    assert code == 2 and len(lines) == 1, (code, lines)  # 99: traced
    assert option in lines[0] and any(f"makes {what}" in lines[0] for what in ("the run too large", "a sheet too long",
                                                                              "a formula too long"))
    assert peak_kb < PEAK_MB * 1024, f"{peak_kb / 1024:.0f} MB"
    assert not (tmp_path / "out.xlsx").exists()


def test_the_cost_check_can_fail(tmp_path):
    """The same measure on a command that does work: it is traced (exit 99) and its peak is seen."""
    result = subprocess.run([sys.executable, "-c", PEAK, "import numpy; x = numpy.ones(40_000_000)"],
                            capture_output=True, text=True, timeout=600, check=True)
    code, peak_kb = map(int, result.stdout.split()[:2])
    assert code == 0 and peak_kb > 300 * 1024
    result = subprocess.run([sys.executable, "-c", PEAK, CHILD, "run", "mlp", "-o", str(tmp_path / "out.xlsx")],
                            capture_output=True, text=True, timeout=600, check=True)
    assert result.stdout.split()[0] == "99"


# --- a large run says how long it takes -----------------------------------------------------------------

def test_a_large_run_is_announced_with_its_cells_file_and_time(tmp_path, monkeypatch):
    """Over a million cells, before any work: the estimate's cells, the file's size and the time from
    the speed tracer/bench.py keeps, longer while other work shares the machine (not the time itself:
    that is the bench's)."""
    said = []
    monkeypatch.setattr(api.os, "getloadavg", lambda: (0.5, 0.5, 0.5))  # the machine to itself
    api.run("vae", hidden=80, output=tmp_path / "big.xlsx", announce=said.append)
    est = models.vae.size(models.vae.Config(hidden=80))
    assert est.cells > api.LARGE_RUN
    seconds = forecast_seconds(est.cells, est.blocks)
    assert said == [f"a large run: about {est.cells:,} cells, a workbook of about "
                    f"{round(est.cells * BYTES_PER_CELL / 1e6)} MB, about {api.duration(seconds)} on this machine "
                    f"(its speed measured by tracer bench)"]
    monkeypatch.setattr(api.os, "getloadavg", lambda: (4.0 * (api.os.cpu_count() or 1), 1, 1))  # 4 jobs a core
    assert api.forecast(est) == said[0].replace(f"about {api.duration(seconds)}", f"about {api.duration(4 * seconds)}")[
        :-1] + "; 4.0× that now, other work sharing it)"
    for small in ({"output": tmp_path / "small.xlsx"}, {"output": tmp_path / "big.json", "hidden": 80}):
        api.run("vae", announce=said.append, **small)  # a smaller run, or no workbook: nothing to say
    assert len(said) == 1
    assert [api.duration(s) for s in (0.2, 41.4, 150, 3599, 4800)] == ["1 s", "41 s", "2 min", "1 h 0 min", "1 h 20 min"]


def test_the_command_announces_it_on_a_terminal(run_main, monkeypatch, tmp_path):
    """`tracer run` prints the forecast before it traces, on a terminal (like the progress bar), and
    keeps stderr to errors elsewhere; nothing new is refused."""
    monkeypatch.setattr(api, "LARGE_RUN", 10)  # the default mlp's 50 cells count as large
    code, out, err = run_main("run", "mlp", "-o", tmp_path / "a.xlsx")
    assert code == 0 and "wrote" in out and err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run_main("run", "mlp", "-o", tmp_path / "b.xlsx")
    assert code == 0 and "wrote" in out
    assert err.startswith("a large run: about ") and " cells, a workbook of about " in err.splitlines()[0]


def test_the_limits_page_says_what_the_tests_hold():
    says("limits.md", f"A test holds every model's estimate within {FACTOR}× of the workbook",
         f"in less than {PEAK_MB} MB of memory, with nothing traced",
         f"Before a workbook of more than {api.LARGE_RUN:,} estimated cells",
         api.forecast(models.gan.size(models.gan.Config(iterations=200)), busy=1))
