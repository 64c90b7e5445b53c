"""Every number the docs state about a run, computed from the run: losses, cell counts, printed
pages, generated texts, error messages.  A test here fails with the text the page should hold.

Runs are shared: the default workbooks come from conftest's `default_workbook` (written once per
session, also for the print and number-format tests), traces from `traced` below.  The statistics of
long warm-ups are checked where they are computed (test_stability, test_diffusion, test_flow)."""

from __future__ import annotations

import functools
import re
import shlex
import zipfile

import numpy as np
import pytest
from conftest import CELLS
from documented import arrow, count, num, says, sci, text_of
from print_pages import BEFORE, BEFORE_HAND_SIZED

from tracer import api


@functools.cache
def _traced(model: str, options: tuple) -> api.Run:
    return api.run(model, **dict(options))


def traced(model: str, **options) -> api.Run:
    """The run of `model` with these options (traced once per session; never modify it)."""
    return _traced(model, tuple(sorted(options.items())))


def losses(model: str, name: str = "loss", **options) -> list[float]:
    return traced(model, **options).losses[name]


@pytest.fixture(scope="module")
def cells(default_workbook):
    """cells(model) -> the cells of the model's default workbook (written once per session)."""
    return lambda model: CELLS[default_workbook(model)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """written(model, **options) -> the cells of that run's workbook (written once here)."""
    made = {}

    def get(model, **options):
        key = (model, tuple(sorted(options.items())))
        if key not in made:
            made[key] = traced(model, **options).save(tmp_path_factory.mktemp(model) / f"{model}.xlsx")
        return made[key]

    return get


def planned_pages(path) -> int:
    """The pages a workbook's page setup plans, one page wide: its row breaks + 1 per visible sheet
    (test_print checks that LibreOffice prints exactly these).  Read from the sheets' XML alone:
    the <rowBreaks count="…"> of each sheet the workbook does not hide."""
    with zipfile.ZipFile(path) as z:
        book = z.read("xl/workbook.xml").decode("utf-8")
        rels = {}
        for rel in re.findall(r"<Relationship [^>]*>", z.read("xl/_rels/workbook.xml.rels").decode("utf-8")):
            rels[re.search(r'Id="([^"]+)"', rel)[1]] = re.search(r'Target="([^"]+)"', rel)[1]
        pages = 0
        for sheet in re.findall(r"<sheet [^>]*/>", book):
            if re.search(r'state="(very)?[hH]idden"', sheet):
                continue
            target = rels[re.search(r'r:id="(rId\d+)"', sheet)[1]].lstrip("/")
            xml = z.read(target if target.startswith("xl/") else "xl/" + target)
            found = re.search(rb'<rowBreaks count="(\d+)"', xml)
            pages += 1 + (int(found[1]) if found else 0)
    return pages


# --- the VAE ------------------------------------------------------------------------------------

def test_vae():
    page = "models/vae.md"
    sgd, adam = losses("vae"), losses("vae", optimizer="adam")
    says(page, f"| loss (SGD, lr 0.005) | {' | '.join(num(v) for v in sgd)} |",
         f"| loss (Adam, lr 0.01) | {' | '.join(num(v) for v in adam)} |")
    long = traced("vae", warmup=99, iterations=1, grid=0, samples=0)
    steps = long.warmup_losses["loss"] + long.losses["loss"]
    adam_long = traced("vae", optimizer="adam", warmup=99, iterations=1, grid=0, samples=0).losses["loss"]
    says(page, f"the loss of digit 0 goes {num(steps[0], 1)} → {num(steps[9], 1)} (step 10) → {num(steps[24], 1)} (25) → "
               f"{num(steps[49], 1)} (50) → {num(steps[99], 1)} (100) with SGD, and to {num(adam_long[-1], 1)} with Adam")
    hand = losses("vae", size=4, hidden=2)
    says(page, f"the loss goes {arrow(hand)}")


def test_adam(written):
    says("training.md", f"the hand-sized VAE (`--size 4 --hidden 2`) has {count(written('vae', size=4, hidden=2))} cells "
                        f"with SGD and {count(written('vae', size=4, hidden=2, optimizer='adam'))} with Adam",
         f"The default VAE's Adam learning rate is 0.01: loss {', '.join(num(v) for v in losses('vae', optimizer='adam'))}.")


def test_vae_divergence_message(run_main, tmp_path):
    code, out, err = run_main("run", "vae", "--lr", "0.1", "--iterations", "10", "-o", tmp_path / "v.xlsx")
    assert code == 2
    says("models/vae.md", f"`{err.strip()}`")


# --- the GAN ------------------------------------------------------------------------------------

def test_gan():
    page = "models/gan.md"
    r = traced("gan")
    series = {name: [float(r[name, k].mean()) for k in range(1, 5)] for name in ("D_real", "D_fake", "L_D", "D_gen", "L_G")}
    row = lambda label, name: f"| {label} | {' | '.join(num(v, 3) for v in series[name])} |"
    says(page, row("D(x_real)", "D_real"), row("D(x_fake)", "D_fake"), row("L_D", "L_D"),
         row("D′(x_fake) after D's step", "D_gen"), row("L_G", "L_G"))
    fake = series["D_fake"]
    says(page, f"(D(x_fake) {num(fake[0])} → {num(fake[1])})", f"pushed D(x_fake) back up ({num(fake[1])} → {num(fake[2])})")
    g = max(np.abs(r[f"dL_G/dG_{p}", 1]).max() for p in ("W1", "b1", "W2", "b2"))
    d = max(np.abs(r[f"dL_D/dD_{p}", 1]).max() for p in ("W1", "b1", "W2", "b2"))
    says(page, f"(in iteration 1 its largest element is {num(g, 3)}, D's {num(d)})")
    adam = traced("gan", optimizer="adam")
    says(page, f"`--optimizer adam`: D(x_fake) {', '.join(num(float(adam['D_fake', k].mean()), 3) for k in range(1, 5))}; "
               f"L_D {', '.join(num(v) for v in adam.losses['L_D'])}.")


# --- the language models ------------------------------------------------------------------------

def max_rel(model: str, **options) -> str:
    """The largest relative error of `tracer gradcheck MODEL` over every iteration and loss."""
    return _max_rel(model, tuple(sorted(options.items())))


@functools.cache
def _max_rel(model: str, options: tuple) -> str:
    return sci(max(r.max_rel for r in api.gradcheck(model, **dict(options))))


def test_skipgram(cells):
    page = "models/skipgram.md"
    r = traced("skipgram")
    vocab, pairs = len(r.tape.meta["tokenized"].vocab), r["h", 1].shape[0]
    loss = r.losses["loss"]
    says(page, f"V = {vocab}, P = {pairs} pairs, d = 4, lr = 4, 8 iterations) the loss goes {num(loss[0])} → {num(loss[-1])}",
         f"the default workbook has {count(cells('skipgram'))} cells",
         f"largest relative error {max_rel('skipgram')} ({max_rel('skipgram', negative=2)} with `--negative 2`)")


def test_attention(cells):
    page = "models/attention.md"
    sgd, adam = losses("attention"), losses("attention", optimizer="adam")
    says(page, f"the loss goes {arrow(sgd)} (Adam, lr 0.05: {num(adam[0])} → {num(adam[-1])})",
         f"The default workbook has {count(cells('attention'))} cells with generation",
         f"largest relative error {max_rel('attention')}")


def test_transformer(cells, written):
    page = "models/transformer.md"
    sgd, adam = losses("transformer"), losses("transformer", optimizer="adam")
    bpe = len(traced("transformer", tokenizer="bpe").tape.meta["tokenized"].vocab)
    says(page, f"loss goes {arrow(sgd)} (Adam, lr 0.02: {arrow(adam)})",
         f"The default workbook has {count(cells('transformer'))} cells ({count(written('transformer', generate=0))} "
         f"without generation); with Adam {count(written('transformer', optimizer='adam'))}",
         f"(V = {bpe} for the English text)")
    long, long_adam = traced("transformer", iterations=40), traced("transformer", iterations=40, optimizer="adam")
    says(page, f"the greedy text is the training text itself: `{long.generated[0][1]}` (the loss reaches "
               f"{num(long.losses['loss'][-1])} with SGD, {num(long_adam.losses['loss'][-1])} with Adam)")


def test_bert(cells):
    page = "models/bert.md"
    sgd, adam = traced("bert").losses, traced("bert", optimizer="adam").losses
    masked = [int(traced("bert")["m", k].sum()) for k in range(1, 5)]
    seed4 = losses("bert", "eval_loss", seed=4)
    says(page, f"iteration ({', '.join(map(str, masked[:-1]))} and {masked[-1]} of the 8 here), so it jumps: with the "
               f"defaults {arrow(sgd['loss'])} (Adam, lr 0.02: {arrow(adam['loss'])})",
         f"so it shows what training does: {arrow(sgd['eval_loss'])} (Adam: {arrow(adam['eval_loss'])})",
         f"(seed 4 with SGD: {num(seed4[0])} → {num(seed4[-1])})",
         f"The default workbook has {count(cells('bert'))} cells")
    [(_, filled, [[(token, p), *_]])] = traced("bert", optimizer="adam").filled
    says(page, f"(With Adam: `{filled}`, {token} {num(p)}.)")


def norm(v: float) -> str:
    """A gradient norm as the vanishing-gradient table writes it: 5.9e-5, 0.028, 1.0."""
    v = float(f"{v:.1e}")  # two significant digits, then the notation
    return sci(v) if v < 0.01 else f"{v:#.2g}"


def test_rnn_and_lstm(cells):
    for model, page in (("rnn", "models/rnn.md"), ("lstm", "models/lstm.md")):
        lr = {"rnn": "0.5", "lstm": "1.0"}[model]
        says(page, f"| {model}, SGD | {lr} | {arrow(losses(model))} | {count(cells(model))} |",
             f"| {model}, Adam | 0.05 | {arrow(losses(model, optimizer='adam'))} | |")
    norms = {(m, seed, k): traced(m, context=16, seed=seed)["|dL_T/dh|", k].ravel()
             for m in ("rnn", "lstm") for seed in (0, 1, 2) for k in (1, 4)}
    ratio = {key: n[0] / n[-1] for key, n in norms.items()}
    page = "models/rnn.md"
    says(page, "| t | " + " | ".join(str(t) for t in range(1, 17)) + " |",
         *(f"| {m} | " + " | ".join(norm(v) for v in norms[m, 0, 1]) + " |" for m in ("rnn", "lstm")),
         f"is {sci(ratio['rnn', 0, 1])} for the RNN and {sci(ratio['lstm', 0, 1])} for the LSTM (iteration 4: "
         f"{sci(ratio['rnn', 0, 4])} and {sci(ratio['lstm', 0, 4])})",
         "The measured ratios are " + ", ".join(sci(ratio["rnn", s, 1]) for s in (0, 1)) + f" and {sci(ratio['rnn', 2, 1])} "
         "for the RNN and " + ", ".join(sci(ratio["lstm", s, 1]) for s in (0, 1)) + f" and {sci(ratio['lstm', 2, 1])} for the LSTM")


# --- what a command prints ----------------------------------------------------------------------

def shown_commands() -> list[tuple[str, str, list[str]]]:
    """(page, command, the lines shown after it) for every block of the docs that starts `$ tracer …`."""
    from documented import ROOT

    found = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        for block in re.findall(r"^```\n(\$ tracer .*?)\n```", path.read_text("utf-8"), re.S | re.M):
            command, *lines = block.splitlines()
            found.append((path.relative_to(ROOT / "docs").as_posix(), command[2:], lines))
    return found


@pytest.mark.parametrize("page, command, lines", shown_commands(), ids=lambda v: v if isinstance(v, str) and v.startswith("tracer") else "")
def test_a_shown_command_prints_what_the_page_shows(page, command, lines, run_main, tmp_path, monkeypatch):
    """The page shows the command's output as it prints it; only the time it took may differ."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(*shlex.split(command)[1:])
    assert code == 0, err
    timed = lambda line: re.sub(r"\(\d+\.\d s\)$", "(… s)", line.rstrip())
    assert [timed(line) for line in out.splitlines()] == [timed(line) for line in lines], f"{page}: `{command}` prints\n{out}"


# --- the mlp, diffusion, the flow ---------------------------------------------------------------

def test_mlp():
    page = "models/mlp.md"
    for config, label in (("softmax_classifier", "5 SGD steps"), ("xor", "12 iterations")):
        (series,) = traced("mlp", config=config).losses.values()
        says(page, f"{label} (loss {num(series[0], 3)} → {num(series[-1], 3)})")


def test_flow(cells):
    page = "models/flow.md"
    says(page, f"| SGD | 0.05 | {arrow(losses('flow'))} | {count(cells('flow'))} |",
         f"| Adam | 0.003 | {arrow(losses('flow', optimizer='adam'))} | |",
         f"(largest relative error {max_rel('flow')} over the 4 default iterations)")


def test_diffusion(cells):
    page = "models/diffusion.md"
    says(page, f"| `tracer run diffusion` (SGD) | 0.5 | {arrow(losses('diffusion'))} | {count(cells('diffusion'))} |",
         f"| `--optimizer adam` | 0.003 | {arrow(losses('diffusion', optimizer='adam'))} | |",
         f"end at ᾱ_10 = {traced('diffusion')['alpha_bar'][-1, 0]:.4f}")
    slow = losses("diffusion", size=2, batch=1, lr=0.05)  # (the overshoot at 0.5 is refused: test_training)
    says(page, f"and so does `--lr 0.05` ({arrow(slow)})")


# --- the workbook -------------------------------------------------------------------------------

def test_the_workbook(default_workbook, run_workbook):
    page = "workbook.md"
    x_hat = np.concatenate([traced("vae")["x_hat", k] for k in range(1, 5)])
    says(page, f"in the 4 default iterations x̂ spans only about {num(x_hat.min())}–{num(x_hat.max())}")
    # the pages before issue 22 and now: as the layout plans them (test_print: LibreOffice prints these)
    rows = [f"| `{model}` | {count(before)} | {count(planned_pages(default_workbook(model)))} |"
            for model, before in BEFORE.items()]
    says(page, *rows, f"| `vae --size 4 --hidden 2` | {count(BEFORE_HAND_SIZED)} | "
                      f"{count(planned_pages(run_workbook('vae-size4')))} |")


# --- exercises ----------------------------------------------------------------------------------

def blanks(model: str, blank: str, **options) -> tuple[int, int]:
    """(blank blocks, blank cells) of `tracer exercise MODEL --blank BLANK` with these options."""
    _, exercise = api.lay_out_exercise(traced(model, **options), blank)
    return len(exercise.blank), sum(t.value.size for t in exercise.blank)


def test_exercises():
    page = "exercises.md"
    blocks, n = blanks("mlp", "forward,loss,backward,update", config="classic_222")
    says(page, f"`tracer exercise mlp --config classic_222 --blank forward,loss,backward,update` ({blocks} blank blocks, {n} cells)")
    _, n = blanks("vae", "backward")
    says(page, f"`tracer exercise vae --blank backward` ({count(n)} cells over 4 iterations)")



# --- checking -----------------------------------------------------------------------------------

def test_checking():
    rows = {"skipgram": "E_in and E_out, 8 iterations; largest relative error {} → OK",
            "attention": "every element of E, W_q, W_k, W_v, W_o, b_o in all 4 iterations; {} → OK",
            "transformer": "every element of all 20 parameter tensors in all 4 iterations; {} → OK",
            "rnn": "every element of every parameter in all 4 iterations, and ∂L_T/∂h_1 of the vanishing-gradient pass; {} → OK",
            "lstm": "the same for the LSTM; {} → OK",
            "bert": "every element of every parameter in all 4 iterations; {} → OK",
            "mlp": "{} → OK",
            "flow": "every parameter element in all 4 iterations; {} → OK"}
    says("checking.md", *(f"| `tracer gradcheck {model}` | {row.format(max_rel(model))} |" for model, row in rows.items()))


def test_a_warmup_adds_a_row_per_step(written):
    sizes = [written("vae", size=4, hidden=2, warmup=n) for n in (0, 100, 200)]
    per_step = (sizes[2] - sizes[1]) // 100
    assert sizes[2] - sizes[1] == 100 * per_step  # the same cells for each step
    says("training.md", f"the hand-sized VAE (`--size 4 --hidden 2`) has {count(sizes[0])} cells, {count(sizes[1])} with "
                        f"`--warmup 100` and {count(sizes[2])} with `--warmup 200`, {per_step} cells more per step")


# --- limits -------------------------------------------------------------------------------------

def test_limits(refused):
    from tracer import models
    from tracer.core.size import MAX_CELLS

    page = "limits.md"
    estimate = models.get("vae").size(api.configure("vae", "en", hidden=1300)).cells
    assert estimate <= MAX_CELLS
    says(page, f"(`tracer run vae --hidden 1300`, about {count(estimate)} values by the estimate, just under the limit")
    says(page, f"`tracer run vae --hidden 100000` answers at once: `{refused('run', 'vae', '--hidden', '100000')}`")


def test_python():
    from tracer.errors import TracerError

    with pytest.raises(TracerError) as refusal:
        api.run("vae", hidden=0)
    says("python.md", f"(`tracer.run(\"vae\", hidden=0)`: `{refusal.value}`)")


# --- speed: the default cases' sizes (the times are dated measurements) --------------------------

def formula_cells(path) -> int:
    """The formula cells of a workbook: its <f> elements, counted as `tracer bench` counts them."""
    with zipfile.ZipFile(path) as z:
        return sum(z.read(n).count(b"<f>") + z.read(n).count(b"<f ") for n in z.namelist() if n.startswith("xl/worksheets/sheet"))


SPEED_ROWS = {"vae": "default VAE (H = 8,", "gan": "default GAN (", "transformer": "default transformer (",
              "rnn": "default rnn (", "lstm": "default lstm (", "bert": "default bert (",
              "diffusion": "default diffusion (", "flow": "default flow (", "skipgram": "default skip-gram (",
              "attention": "default attention layer ("}


@pytest.mark.parametrize("model", SPEED_ROWS)
def test_speed_default_cases(model, default_workbook, cells):
    path = default_workbook(model)
    rows = [line for line in text_of("speed.md").splitlines() if line.startswith(f"| {SPEED_ROWS[model]}")]
    assert len(rows) == 1, rows
    label, n, formulas = [c.strip() for c in rows[0].strip("|").split("|")][:3]
    assert (n, formulas) == (count(cells(model)), count(formula_cells(path))), \
        f"speed.md, row {label!r}: cells | formula cells should be | {count(cells(model))} | {count(formula_cells(path))} |"
    if model == "vae":
        says("speed.md", f"| default VAE (`tracer bench --quick`) | {count(formula_cells(path))} | LibreOffice |")


def test_why_the_vae_rates_are_small():
    """|x|² of the shipped digits, and how many diverge at the old rate 0.1 within 50 steps."""
    from tracer.data import mnist
    from tracer.errors import TracerError

    digits = range(mnist.sample_size())
    squares = [float((traced("vae", digit=d, iterations=1, grid=0, samples=0)["x"] ** 2).sum()) for d in digits]
    diverged = []
    for d in digits:
        try:
            api.run("vae", digit=d, lr=0.1, warmup=49, iterations=1, grid=0, samples=0)
        except TracerError as e:
            diverged.append(int(re.search(r"(?:warm-up step|iteration) (\d+)", str(e))[1]))
    says("models/vae.md", f"is between {min(squares):.0f} and {max(squares):.0f} for the shipped digits, "
                          f"{np.median(squares):.0f} in the middle",
         f"lr = 0.1, {len(diverged)} of the 100 shipped digits diverge within 50 steps, half of those by step "
         f"{int(np.ceil(np.median(diverged)))}")


# --- the trace as data --------------------------------------------------------------------------

def test_the_json_example_is_the_default_vaes():
    import json

    page = text_of("data.md")
    config = json.loads(re.search(r'"config": (\{.*?\})', page, re.S)[1])
    r = traced("vae")
    assert config == r.settings, f"data.md's JSON config should be {json.dumps(r.settings)}"
    names = re.search(r"\*\*Names follow the equations\.\*\* They are (.*?)\.\n", page, re.S)[1]
    listed = re.findall(r"`([^`]+)`", names)
    recorded = list(dict.fromkeys(t.name for t in r.tape.tensors if t.iteration <= 1 and t.phase in ("input", "forward", "loss")))
    assert listed == recorded, f"data.md should name {recorded}"


def test_the_size_of_a_trace_at_the_limit(tmp_path):
    from tracer.core.size import MAX_DATA_VALUES

    r = traced("vae")
    mb = {}
    for suffix in (".json", ".csv"):
        n = r.save(tmp_path / f"t{suffix}")
        mb[suffix] = round((tmp_path / f"t{suffix}").stat().st_size / n * MAX_DATA_VALUES / 1e6, -1)
    says("limits.md", f"| {count(MAX_DATA_VALUES)} | every value as text: a file of about {mb['.json']:.0f} MB (`.json`) or "
                      f"{mb['.csv']:.0f} MB (`.csv`), at the default VAE's bytes per value |")


def test_the_tensors_of_a_warmup_step():
    r = traced("gan", batch=15, optimizer="adam", lr_d=0.001, lr_g=0.001, iterations=1)
    says("speed.md", f"the GAN that draws a digit computes {sum(t.iteration == 1 for t in r.tape.tensors)} tensors per step")
