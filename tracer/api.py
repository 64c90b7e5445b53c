"""The Python API: everything the `tracer` command does, for a notebook or a script.

    import tracer
    run = tracer.run("vae", iterations=4, lr=0.1)   # the CLI's options, checked the same way
    run.losses                       # {"loss": [543.71, 541.55, …]}
    df = run.to_pandas()             # the long table of the CSV: iteration, phase, tensor, index, row, col, value, token
    run["dL/dW1", 2]                 # a tensor's numpy value by name and iteration
    run.save("vae.xlsx", lang="es")  # or .json, .csv, .tex, .md, exactly as `tracer run -o`
    tracer.verify("vae.xlsx")        # recalculated in LibreOffice and IronCalc: a report each, and ok

Bad options raise tracer.TracerError with the one-line message the CLI prints.  The CLI
(tracer.cli) is a thin layer over these functions.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer import models
from tracer.errors import TracerError

MODELS = models.MODELS
LANGS = ("en", "es")
FORMATS = (".xlsx", ".json", ".csv", ".tex", ".md", ".pdf")
ENGINES = ("libreoffice", "ironcalc", "all")  # tracer.engines.CHOICES: `verify --engine`, `check --engine`


def _check_type(model, f, value):
    """An option's value as its field expects (an int for a count, a number for a rate)."""
    if value is None:
        return value
    kind = type(f.default) if f.default is not None else f.type
    kind = {"int": int, "float": float, "str": str}.get(kind, kind)
    flag = f.name
    if kind is int and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise TracerError(f"{model.NAME} option {flag!r} must be a whole number (got {value!r})")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))):
        raise TracerError(f"{model.NAME} option {flag!r} must be a number (got {value!r})")
    if kind is str and not isinstance(value, (str, Path)):
        raise TracerError(f"{model.NAME} option {flag!r} must be text (got {value!r})")
    return str(value) if kind is str else kind(value)


def configure(model: str, lang: str = "en", **options):
    """The model's Config from keyword options (the CLI's, with _ for -); a text model's corpus
    follows `lang` unless given."""
    m = models.get(model)
    if lang not in LANGS:
        raise TracerError(f"unknown language {lang!r}: choose one of {', '.join(LANGS)}")
    fields = {f.name: f for f in dataclasses.fields(m.Config)}
    unknown = [k for k in options if k not in fields]
    if unknown:
        raise TracerError(f"{m.NAME} has no option {unknown[0]!r}: its options are {', '.join(fields)}")
    cfg = m.Config(**{k: _check_type(m, fields[k], v) for k, v in options.items()})
    if getattr(cfg, "corpus", "") is None:
        cfg.corpus = lang
    return cfg


def default_path(model: str, lang: str = "en", what: str = "", config=None) -> Path:
    """Where `tracer run MODEL` writes when no -o is given: outputs/MODEL.xlsx, its name carrying
    the options that differ from the defaults (outputs/vae-adam.xlsx, outputs/mlp-xor.xlsx), then
    `what` (_exercise) and the language (_es)."""
    variant = "".join("-" + word for word in models.variant(config, lang)) if config is not None else ""
    return Path("outputs") / f"{model}{variant}{what}{'' if lang == 'en' else '_' + lang}.xlsx"


@dataclass
class Run:
    """A traced run: the model, its options, the tape of every tensor, the language it was made in."""

    model: object  # the model's module (tracer.models.vae, …)
    config: object  # its Config
    tape: object  # tracer.core.tape.Tape
    lang: str = "en"

    @property
    def name(self) -> str:
        return self.model.NAME

    @property
    def iterations(self) -> int:
        """The number of traced iterations (after any warm-up)."""
        return len({t.iteration for t in self.tape.tensors if t.iteration and t.phase != "after"})

    @property
    def settings(self) -> dict:
        """The options as a plain dict (the overview's settings, the JSON's config)."""
        return dataclasses.asdict(self.config)

    @property
    def loss_names(self) -> tuple:
        return tuple(self.tape.meta.get("losses") or self.model.LOSSES)

    @property
    def losses(self) -> dict[str, list[float]]:
        """Each loss's value in every traced iteration, e.g. {"loss": [543.71, 541.55, …]}."""
        return {name: [float(t.value[0, 0]) for t in self.tape.tensors if t.name == name and t.iteration]
                for name in self.loss_names}

    @property
    def warmup_losses(self) -> dict[str, list[float]]:
        """Each loss's value in every --warmup step ({} without a warm-up)."""
        series = (self.tape.meta.get("warmup") or {}).get("series", {})
        return {name: [float(v.mean()) for v in series[name]] for name in self.loss_names if name in series}

    @property
    def generated(self) -> list[tuple[str, str]]:
        """A language model's texts after training: [("greedy", text), ("0.5", text), …]."""
        return list(self.tape.meta.get("generated", []))

    @property
    def filled(self) -> list[tuple[str, str, list]]:
        """A masked model's fill-in after training: [(the sentence with [MASK]s, filled in, at each
        [MASK] the top tokens [(token, probability), …])]."""
        return list(self.tape.meta.get("filled", []))

    @property
    def size(self) -> int:
        """The tensor cells a workbook of this run holds (the length of a progress bar)."""
        from tracer.render.layout import block_cells

        return block_cells(self.tape)

    def __getitem__(self, key) -> np.ndarray:
        """run["dL/dW1", 2]: the value of a tensor in an iteration (0: the inputs); run["W1"]: its
        value in iteration 0, else in the last iteration that has it."""
        name, iteration = key if isinstance(key, tuple) else (key, None)
        found = [t for t in self.tape.tensors if t.name == name and (iteration is None or t.iteration == iteration)]
        if not found:
            raise KeyError(f"no tensor {name!r}" + (f" in iteration {iteration}" if iteration is not None else ""))
        return found[0].value if iteration is None and found[0].iteration == 0 else found[-1].value

    def to_pandas(self):
        """The long table of `-o trace.csv`: iteration, phase, tensor, index, row, col, value, token (one
        row per element)."""
        import pandas as pd

        from tracer.render.export import COLUMNS, long_rows

        return pd.DataFrame(long_rows(self.tape), columns=COLUMNS)

    def save(self, path, lang: str | None = None, progress=None) -> int:
        """Write the run by the suffix of `path` (.xlsx, .tex, .md, .json, .csv), atomically; returns
        the cells (or values) written.  `progress(n)` is called as blocks of n cells are written."""
        from tracer.render.export import export

        return export(self.tape, self.settings, Path(path), lang or self.lang, progress)


def run(model: str, lang: str = "en", *, output=None, announce=None, **options) -> Run:
    """Trace `model` with the CLI's options as keywords (e.g. iterations=4, lr=0.1).  `output`: where
    the run will be saved, if known: its format's size limits are checked before any work (any run
    is held to tracer.core.size.MAX_CELLS values).  `announce(text)`: told, before any work, what a
    large workbook will take (forecast)."""
    cfg = configure(model, lang, **options)
    m = models.get(model)
    fmt = Path(output).suffix.lower() if output is not None else None
    if announce is not None and fmt == ".xlsx":
        models.validate(cfg)
        note = forecast(models.check_size(m, cfg, fmt))
        if note:
            announce(note)
    return Run(m, cfg, models.trace(m, cfg, fmt), lang)


LARGE_RUN = 1_000_000  # cells: a workbook this large is announced before the work, with its size and time


def forecast(est, busy: float | None = None) -> str | None:
    """What a large workbook (over LARGE_RUN cells, estimated: tracer.core.size.Size) will take, in a
    line: its cells, the file's size and the time on this machine (tracer.bench: the speed that
    `tracer bench` measures), `busy` times longer while other work shares it (measured: busy());
    None for a smaller one."""
    from tracer.bench import BYTES_PER_CELL, forecast_seconds

    if est is None or est.cells <= LARGE_RUN:
        return None
    busy = machine_busy() if busy is None else busy
    shared = f"; {busy:.1f}× that now, other work sharing it" if busy >= 1.2 else ""
    return (f"a large run: about {est.cells:,} cells, a workbook of about {est.cells * BYTES_PER_CELL / 1e6:,.0f} MB, "
            f"about {duration(forecast_seconds(est.cells, est.blocks) * busy)} on this machine (its speed measured "
            f"by tracer bench{shared})")


def machine_busy() -> float:
    """How many times slower a run is now than with the machine to itself: the load average of the
    last minute over the processors, at least 1 (1 where the system does not say)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0
    return max(1.0, load / (os.cpu_count() or 1))


def duration(seconds: float) -> str:
    """'40 s', '3 min', '1 h 20 min': a time to wait, to the precision it is known."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def from_torch(model, x, y, loss_fn, optimizer=None, iterations: int = 4, lang: str = "en", *, warmup: int = 0,
               output=None) -> Run:
    """Trace a PyTorch model (tracer.frontends.pytorch; needs `pip install "tracer[torch]"`):
    loss_fn(model(x), y) captured with torch.fx, then `iterations` training steps of `optimizer`
    (torch.optim.SGD, Adam or AdamW; None: SGD with lr 0.01), every number a formula equal to
    PyTorch's.  The model and the optimizer are read, not changed.  Random draws in forward come
    from PyTorch's generator as it stands (seed it first).  The same Run as `run`; `warmup` steps
    run first, unrecorded; `output`: its format's size limits are checked before any work."""
    from tracer.frontends import pytorch as front

    m = models.get("torch")
    fields = {f.name: f for f in dataclasses.fields(m.Config)}
    cfg = m.Config(warmup=_check_type(m, fields["warmup"], warmup), iterations=_check_type(m, fields["iterations"], iterations))
    cfg.source = front.Source(model, x, y, loss_fn, optimizer, cfg.iterations)
    front.check(cfg.source)
    return Run(m, cfg, models.trace(m, cfg, Path(output).suffix if output is not None else None), lang)


def check_output(path, formats=FORMATS) -> Path:
    """Refuse an output path before any work: an unknown suffix, a folder, a folder that cannot be
    written."""
    from tracer.render.export import check_output as check

    path = check(Path(path))
    if path.suffix.lower() not in formats:
        raise TracerError(f"cannot write {path.name}: it must end in {', '.join(formats)}")
    return path


def site(folder, models=None, langs=LANGS, docs=None, build: bool = False, progress=None) -> tuple[list, Path | None]:
    """Write a MkDocs project of the walkthroughs into `folder` (every model, or `models`, in each
    of `langs`; the Markdown pages of the folder `docs` as its guide); with `build`, build it too
    (mkdocs build --strict).  Returns (the pages written, the built site's folder or None)."""
    from tracer.render import site as writer

    models = list(models or MODELS)
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        raise TracerError(f"unknown model {unknown[0]!r}: choose from {', '.join(MODELS)}")

    def trace(model, lang):
        r = run(model, lang)
        return r.tape, r.settings

    pages = writer.write_site(Path(folder), models, list(langs), trace, Path(docs) if docs else None, progress)
    return pages, writer.build_site(Path(folder)) if build else None


def lay_out_exercise(r: Run, blank: str, blank_iterations: str = "all", self_check: bool = False):
    """A student's version of the run's walkthrough, laid out: (layout, exercise).  `blank`: phases
    (forward, loss, backward, update) and/or tensor names, comma-separated."""
    from tracer.checks.exercise import make

    return make(r.tape, r.model, r.config, r.lang, blank, blank_iterations, self_check)


def blank_choices(r: Run) -> list[str]:
    """What an exercise's `blank` takes for this run, as lines: the phases, then every step by
    name and by the symbol the workbook shows (`tracer exercise MODEL --blank help`)."""
    from tracer.checks.exercise import choices

    return choices(r.tape)


def write_exercise(layout, path, progress=None) -> int:
    """Write a laid-out exercise to `path` (.xlsx, checked by exercise_path); returns the cells."""
    from tracer.render.export import prepare_folder
    from tracer.render.xlsx import write_xlsx

    path = prepare_folder(exercise_path(path))
    return write_xlsx(layout, path, progress)


def exercise_path(path) -> Path:
    """An exercise's output path, checked before any work (a workbook: .xlsx)."""
    if Path(path).is_dir():
        raise TracerError(f"cannot write {path}: it is a folder")
    if Path(path).suffix.lower() != ".xlsx":
        raise TracerError(f"an exercise is a workbook: {Path(path).name} must end in .xlsx")
    return check_output(path)


def exercise(model: str, blank: str, path=None, blank_iterations: str = "all", self_check: bool = False,
             lang: str = "en", **options):
    """Trace `model` and write a student's version of it: (path, exercise, cells)."""
    path = exercise_path(path if path is not None else default_path(model, lang, "_exercise", configure(model, lang, **options)))
    layout, ex = lay_out_exercise(run(model, lang, output=path, **options), blank, blank_iterations, self_check)
    return path, ex, write_exercise(layout, path)


def class_folder(model: str, lang: str = "en", config=None) -> Path:
    """Where `tracer exercise MODEL --students …` writes when no -o is given: outputs/MODEL_class,
    with the options that differ from the defaults in the name, like default_path."""
    return default_path(model, lang, "_class", config).with_suffix("")


def exercise_class(model: str, blank: str, students, folder=None, blank_iterations: str = "all",
                   self_check: bool = False, lang: str = "en", vary: str | None = None, key: bool = True,
                   jobs: int | None = None, progress=None, **options):
    """One exercise per student of the roster CSV `students` in `folder`, each with its own variant
    (`vary`: "digit,seed", by default what the model has), the solved workbooks in folder/key
    (`key`), and folder/manifest.csv; written on `jobs` processes (default: every core).  Returns
    a tracer.checks.roster.ClassExercises (.files, .variants, .manifest)."""
    from tracer.checks.roster import read_roster, write_class

    cfg = configure(model, lang, **options)
    roster = read_roster(students)
    folder = Path(folder) if folder is not None else class_folder(model, lang, cfg)
    return write_class(models.get(model), cfg, lang, blank, blank_iterations, self_check, roster, folder, vary,
                       key, jobs, progress)


def tolerance(decimals: int | None = None, rtol: float | None = None):
    """When a student's number counts as right (tracer.checks.check.Tolerance): --decimals or --rtol."""
    from tracer.checks.check import Tolerance

    if decimals is not None and rtol is not None:
        raise TracerError("give --decimals or --rtol, not both")
    if rtol is not None and not (math.isfinite(rtol) and rtol > 0):
        raise TracerError(f"--rtol must be a positive finite number (got {rtol})")
    return Tolerance(decimals, rtol or Tolerance.rtol)


def _check_engine(engine: str | None) -> None:
    if engine not in (None, *ENGINES[:-1]):
        raise TracerError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES[:-1])}")


def check(path, decimals: int | None = None, rtol: float | None = None, report=None, original=None,
          engine: str | None = None):
    """Grade a filled exercise; with `report`, also write the coloured copy.  Returns the Grade
    (its .lines(), .score, .total(status), .recalculated) and the number of cells the report marked
    (or None).  Formulas the student saved without a value are recalculated in `engine`
    ("libreoffice" or "ironcalc"; None: LibreOffice when installed, else IronCalc)."""
    from tracer.checks.check import grade, write_report

    within = tolerance(decimals, rtol)
    if report is not None:
        check_output(report)
    _check_engine(engine)
    result = grade(Path(path), within, original, engine)
    marked = write_report(result, Path(report)) if report is not None else None
    return result, marked


def submissions(folder) -> list[Path]:
    """The spreadsheet files `check_folder` grades (or refuses, with a reason), by name."""
    from tracer.checks.gradebook import submissions as found

    return found(Path(folder))


def check_folder(folder, decimals: int | None = None, rtol: float | None = None, gradebook=None, reports=None,
                 engine: str | None = None, jobs: int | None = None, progress=None):
    """Grade every spreadsheet file of `folder`, each against its own recipe, on `jobs` processes
    (default: every core); with `gradebook` (.xlsx or .csv) write the gradebook, with `reports` (a
    folder) each student's graded copy.  Returns a tracer.checks.gradebook.Gradebook (.rows,
    .graded, .refused, .blocks()); a file that cannot be graded is a row with its reason."""
    from tracer.checks.gradebook import grade_folder, write_gradebook

    within = tolerance(decimals, rtol)
    if gradebook is not None:
        if Path(gradebook).suffix.lower() not in (".xlsx", ".csv"):
            raise TracerError(f"--gradebook {Path(gradebook).name}: a gradebook must end in .xlsx or .csv")
        check_output(gradebook)
    _check_engine(engine)
    book = grade_folder(Path(folder), within, engine, reports, jobs, progress)
    if gradebook is not None:
        from tracer.render.export import prepare_folder

        write_gradebook(book, prepare_folder(Path(gradebook)))
    return book


def is_exercise(path) -> bool:
    from tracer.checks.exercise import is_exercise as test

    return test(Path(path))


def verify(path, engine: str | None = None, announce=None):
    """Recalculate the workbook in spreadsheet engines and compare every formula cell with its
    stored value.  `engine`: "libreoffice", "ironcalc", "all", or None for every installed one;
    a requested engine that is missing raises TracerError saying how to install it.  Returns a
    Verification: .ok, .n_formulas, .lines(), and per engine (v["ironcalc"]) a report with
    .max_abs_err, .max_rel_err, .errors, .mismatches.  `announce(text)` is told, once the file is
    found fit, what is about to happen."""
    return verify_all([path], engine, announce)[0]


def verify_all(paths, engine: str | None = None, announce=None) -> list:
    """`verify` of several workbooks at once: each engine recalculates them all in one go
    (LibreOffice starts once), a Verification each, in order.  Every file is checked before any
    work."""
    from tracer.checks.verify import verify_books
    from tracer.engines import chosen
    from tracer.engines.workbook import check_workbook

    paths = [Path(p) for p in paths]
    for path in paths:
        check_workbook(path)
        if is_exercise(path):
            raise TracerError(f"{path.name} is an exercise: its blank cells and the cells computed from them "
                              "hold no values to verify; verify the workbook `tracer run` writes with the same "
                              "options, or grade this one with `tracer check`")
    chosen(engine)  # a missing engine is an error before any work
    return verify_books(paths, engine, announce)


def gradcheck(model: str, sample: int | None = None, **options) -> list:
    """Central differences against the traced gradients, every iteration: a list of reports (a GAN
    has two per iteration), each with .ok, .max_rel and .lines()."""
    from tracer.checks.gradcheck import gradcheck as check

    r = run(model, **options)
    traced = sorted({t.iteration for t in r.tape.tensors if t.iteration})
    return [report for k in traced for report in check(r.tape, k, sample=sample)]


def bench_cases() -> list[str]:
    """The names `bench(only=…)` accepts, in the order the benchmark runs them."""
    from tracer.bench import case_names

    return case_names()


def bench(quick: bool = False, echo=print, only: tuple = ()) -> dict:
    """The benchmark of tracing and export (see tracer.bench)."""
    from tracer.bench import run_bench

    return run_bench(quick=quick, echo=echo, only=only)


def vary_choices(model: str) -> tuple:
    """What `--vary` can name for the model (tracer.checks.roster.choices)."""
    from tracer.checks.roster import choices

    return choices(models.get(model))


def changed_options(config) -> str:
    """' --option value …' for the options of `config` that differ from their defaults."""
    words = []
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        default = models.default_of(config, f)
        if value is not None and value != default and value != meta.get("default_is") and f.name != "corpus":
            words.append(f" --{f.name.replace('_', '-')} {value}")
    return "".join(words)


def map_template(model: str, lang: str = "en", **options) -> str:
    """The map of a hand-built workbook for `model` with these options (tracer.checks.handmade): a
    TOML text listing every tensor with its shape and meaning in `lang`, every place empty."""
    from tracer.checks.handmade import template

    r = run(model, lang, **options)
    return template(r.tape, lang, changed_options(r.config))


def check_handmade(path, model: str, map_path=None, decimals: int | None = None, rtol: float | None = None,
                   report=None, engine: str | None = None, lang: str = "en", **options):
    """Grade a workbook built by hand for `model` (traced with `options`, as `tracer run`): the map
    at `map_path` (TOML; None: the workbook's defined names only) says where each tensor is.
    Returns the Grade and the cells the `report` copy marked (or None), as check."""
    from tracer.checks.check import write_report
    from tracer.checks.handmade import grade_handmade
    from tracer.engines.workbook import check_workbook

    within = tolerance(decimals, rtol)
    check_workbook(Path(path))
    if report is not None:
        check_output(report)
    _check_engine(engine)
    r = run(model, lang, **options)
    result = grade_handmade(Path(path), map_path, r.tape, lang, within, engine)
    marked = write_report(result, Path(report)) if report is not None else None
    return result, marked
