"""The `tracer` command: run a model, verify a workbook, check gradients, benchmark.  A thin click
layer over the Python API (tracer.api): options in, one line of output or error out."""

from __future__ import annotations

import dataclasses
import io
import re
import sys
import time
from pathlib import Path

import click

from tracer import __version__, api
from tracer.errors import (
    Interrupted,
    TracerError,
    close_names,
    raise_if_interrupted,
    stop_on_signals,
)

MODELS = api.MODELS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
EXAMPLE_VARIANT = {"mlp": "xor", "gan": "upscale4", "torch": "my_model"}  # the --help's example of a default output name


def loss_summary(run) -> str:
    """'loss 543.71 -> 541.55 …' for each of the model's losses; after a warm-up, its first and
    last values first ('loss 543.71 => 62.10 (warm-up) -> …')."""
    warm = run.warmup_losses
    return ", ".join(f"{name} " + (f"{warm[name][0]:.2f} => {warm[name][-1]:.2f} (warm-up) -> " if warm.get(name) else "")
                     + " -> ".join(f"{v:.2f}" for v in values) for name, values in run.losses.items())


DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*")  # 0,01: a comma for the decimal point


class CommaHint:
    """A number option that answers '0,01' with the hint `tracer check` gives: a decimal point."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and DECIMAL_COMMA.fullmatch(value):
            self.fail(f"{value!r} is not a valid float: type it with a decimal point: "
                      f"{value.strip().replace(',', '.')}", param, ctx)
        return super().convert(value, param, ctx)


class Float(CommaHint, click.types.FloatParamType):
    pass


class FloatRange(CommaHint, click.FloatRange):
    pass


def model_options(model):
    """One click option per field of the model's Config."""
    def decorate(fn):
        for f in reversed(dataclasses.fields(model.Config)):
            kind = type(f.default) if f.default is not None else f.type
            kind = {"int": int, "float": float, "str": str}.get(kind, kind)
            kind = Float() if kind is float else kind
            if f.metadata.get("path"):
                kind = click.Path(dir_okay=False)
            if all(isinstance(c, str) for c in f.metadata.get("choices", [0])):
                kind = click.Choice(f.metadata["choices"])
            help = f.metadata["help"]
            if "choices" in f.metadata and (kind is int or isinstance(kind, Float)):
                help += f" ({' or '.join(map(str, f.metadata['choices']))})"
            fn = click.option("--" + f.name.replace("_", "-"), f.name, type=kind, default=f.default,
                              show_default=f.default is not None, help=help)(fn)
        return fn
    return decorate


def options_of(model, kwargs) -> dict:
    """The model's options out of a command's keyword arguments."""
    return {f.name: kwargs.pop(f.name) for f in dataclasses.fields(model.Config)}


class ModelGroup(click.Group):
    """`tracer run MODEL`: an unknown model is a one-line error listing the known ones."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            raise TracerError(f"unknown model {args[0]!r}: choose one of {', '.join(self.commands)}")
        return super().resolve_command(ctx, args)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="tracer")
def cli():
    """tracer: step-by-step math of generative models, as live-formula Excel workbooks.

    \b
    tracer run vae                  the VAE walkthrough -> outputs/vae.xlsx
    tracer run vae --lang es        the same in Spanish
    tracer run gan --upscale 2      the GAN's game, generated digits also ×2
    tracer run vae --optimizer adam Adam instead of SGD, its state as formulas
    tracer run gan -o gan.tex       the walkthrough as a LaTeX document (or .md)
    tracer verify outputs/vae.xlsx  recalculate it in LibreOffice and IronCalc, compare
    tracer exercise vae --blank backward   a student's version: the gradients blank
    tracer check filled.xlsx        grade it: own mistakes apart from carried ones
    tracer exercise vae --blank backward --students roster.csv -o class
                                    one exercise per student, each their own variant
    tracer check handed_in/ --gradebook grades.xlsx   the whole class at once
    tracer map vae > my_map.toml    where a hand-built workbook has each tensor
    tracer gradcheck gan            finite differences vs the traced gradients
    tracer run transformer --tokenizer bpe --temperature 0.5,1,2
                                    a transformer learns a text, then writes some
    """


@cli.command()
def models():
    """List the models, one line each."""
    width = max(map(len, MODELS))
    for name, m in MODELS.items():
        click.echo(f"{name:<{width}}  {m.SUMMARY}")


@cli.group(cls=ModelGroup, context_settings=CONTEXT)
def run():
    """Trace a model and write its walkthrough (.xlsx workbook, .tex or .md document), or its
    trace (.json, .csv)."""


def output_options(default: str):
    """--lang and -o, shared by `run` and `exercise`."""
    def decorate(fn):
        fn = click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
                          help=f"where to write{default}")(fn)
        return click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
                            help="language of the workbook's labels")(fn)
    return decorate


def _progress_note(text):
    """A line about what is happening, on a terminal only (like the progress bar)."""
    if sys.stderr.isatty():
        click.echo(text, err=True)


def _progress(length, path):
    """A progress bar on a terminal, with the time left (from the pace so far); elsewhere (a log, a
    pipe) nothing, so that stderr holds only the one line of an error or an interruption."""
    start = time.perf_counter()

    def left(_):
        elapsed, done = time.perf_counter() - start, bar.pos / max(length, 1)
        if done < 0.01 or elapsed < 1:  # too early to tell
            return None
        return f"about {api.duration(elapsed * (1 - done) / done)} left"

    bar = click.progressbar(length=length, label=f"writing {path.name}", show_eta=False, item_show_func=left,
                            file=sys.stderr if sys.stderr.isatty() else io.StringIO())
    return bar


def _make_run(model):
    @run.command(name=model.NAME, help=f"Trace the {model.SUMMARY}.", context_settings=CONTEXT)
    @model_options(model)
    @output_options(f": .xlsx (workbook), .tex or .md (walkthrough document), .json or .csv (trace)  "
                    f"[default: outputs/{model.NAME}.xlsx; options that differ from the defaults join the name, "
                    f"e.g. outputs/{model.NAME}-{EXAMPLE_VARIANT.get(model.NAME, 'adam')}.xlsx]")
    def command(lang, output, **kwargs):
        start = time.perf_counter()
        options = options_of(model, kwargs)
        path = api.check_output(output or api.default_path(model.NAME, lang, config=api.configure(model.NAME, lang, **options)))
        r = api.run(model.NAME, lang, output=path, announce=_progress_note, **options)
        if path.suffix.lower() == ".xlsx":
            with _progress(r.size, path) as bar:
                cells = r.save(path, progress=bar.update)
        else:
            cells = r.save(path)  # values, for .json and .csv
        what = "cells" if path.suffix.lower() == ".xlsx" else "values"
        n, warm = r.iterations, getattr(r.config, "warmup", 0)
        steps = f"{warm:,} warm-up steps + " if warm else ""
        click.echo(f"wrote {path}: {steps}{n} iteration{'s' if n != 1 else ''}, {cells:,} {what}, "
                   f"{loss_summary(r)}  ({time.perf_counter() - start:.1f} s)")
        for label, text in r.generated:  # a language model's continuations
            how = "greedy" if label == "greedy" else f"sampled at temperature {label}"
            click.echo(f"  generated ({how}): {text}")
        for masked, filled, tops in r.filled:  # a masked model's fill-in
            best = "; ".join(", ".join(f"{token} {p:.2f}" for token, p in top) for top in tops)
            click.echo(f"  filled in: {masked} -> {filled}  ({best})")
    return command


@cli.group(cls=ModelGroup, context_settings=CONTEXT)
def exercise():
    """Write a student's version of a walkthrough: the blocks chosen with --blank keep their titles,
    shapes, equations and notes, but their cells are empty, white input cells.  No answer is stored
    in the file (cells computed from the student's are saved without a value) unless --self-check
    is given.  Grade the filled workbook with `tracer check`.

    \b
    tracer exercise vae --blank backward
    tracer exercise mlp --config classic_222 --blank update
    tracer exercise mlp --blank forward,loss --self-check
    """


def _make_exercise(model):
    @exercise.command(name=model.NAME, context_settings=CONTEXT,
                      help=f"A student's exercise on the {model.SUMMARY}.")
    @model_options(model)
    @click.option("--blank", required=True, metavar="WHAT",
                  help="what the student computes, comma-separated: phases (forward, loss, backward, update) "
                       "and/or tensors by name or by the symbol the workbook shows, e.g. 'backward', 'h,x_hat' "
                       "or 'a3,x̂,∂L/∂W1'; 'help' lists them")
    @click.option("--blank-iterations", default="all", show_default=True, metavar="K,…",
                  help="leave those blocks blank only in these iterations, e.g. '1'")
    @click.option("--self-check", is_flag=True,
                  help="add a cell beside each blank block that turns green (✓) or red (✗) as the student "
                       "fills it in.  WARNING: the file then contains the answers (on a hidden sheet)")
    @click.option("--students", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="ROSTER.csv",
                  help="one exercise per student of this roster (CSV, UTF-8: a name and/or id column), each with its "
                       "own variant, written to the folder -o, with the solved workbooks (key/) and manifest.csv")
    @click.option("--vary", default=None, metavar="WHAT",
                  help=f"with --students: what differs between students, comma-separated: "
                       f"{', '.join(vary_choices(model)) or 'nothing'}  [default: all of these]")
    @click.option("--key/--no-key", default=True, show_default=True,
                  help="with --students: also write each student's solved workbook to key/")
    @click.option("--jobs", type=click.IntRange(min=1), default=None,
                  help="with --students: workbooks written at once  [default: the machine's cores]")
    @output_options(f" (.xlsx)  [default: outputs/{model.NAME}_exercise.xlsx, with the options that differ "
                    f"from the defaults in the name; with --students a folder, outputs/{model.NAME}_class]")
    def command(lang, output, blank, blank_iterations, self_check, students, vary, key, jobs, **kwargs):
        start = time.perf_counter()
        options = options_of(model, kwargs)
        if blank.strip().lower() == "help":  # what --blank takes for these options; nothing written
            click.echo("\n".join(api.blank_choices(api.run(model.NAME, lang, **options))))
            return
        if students is not None:
            return _write_class(model, lang, output, blank, blank_iterations, self_check, students, vary, key, jobs,
                                options, start)
        if vary is not None or jobs is not None:
            raise TracerError("--vary and --jobs go with --students (one exercise per student)")
        path = api.exercise_path(output or api.default_path(model.NAME, lang, "_exercise",
                                                            api.configure(model.NAME, lang, **options)))
        r = api.run(model.NAME, lang, output=path, announce=_progress_note, **options)
        layout, ex = api.lay_out_exercise(r, blank, blank_iterations, self_check)
        with _progress(r.size, path) as bar:
            cells = api.write_exercise(layout, path, bar.update)
        n = sum(t.value.size for t in ex.blank)
        click.echo(f"wrote {path}: {len(ex.blank)} blank block{'s' if len(ex.blank) != 1 else ''}, {n:,} cells for the student to fill "
                   f"({cells:,} cells in all; {time.perf_counter() - start:.1f} s)")
        click.echo("  this file contains the answers (--self-check): keep it from the students who are graded"
                   if self_check else "  no answers are stored in it; grade the filled file with: tracer check FILE")
    return command


def vary_choices(model) -> tuple:
    return api.vary_choices(model.NAME)


def _write_class(model, lang, output, blank, blank_iterations, self_check, students, vary, key, jobs, options, start):
    """`tracer exercise MODEL --students ROSTER -o FOLDER`: one exercise per student."""
    made = api.exercise_class(model.NAME, blank, students, output, blank_iterations, self_check, lang, vary, key,
                              jobs, **options)
    w = made.written[0]
    click.echo(f"wrote {len(made.files)} exercises to {made.folder}: one per student of {students.name}, each "
               f"{w.blank_blocks} blank block{'s' if w.blank_blocks != 1 else ''} and {w.blank_cells:,} cells to fill, "
               f"its own {' and '.join(made.variants[0])}; {made.manifest.name} lists who has which"
               + (f", {made.key_folder.name}/ holds the solved workbooks" if made.key else "")
               + f"  ({time.perf_counter() - start:.1f} s)")
    click.echo("  no answers are stored in the students' files; grade the folder they hand in with: "
               "tracer check FOLDER --gradebook grades.xlsx")


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("workbook", type=click.Path(path_type=Path))
@click.option("--decimals", type=click.IntRange(0, 15), default=None,
              help="right when it rounds like the reference to N decimals (within half a unit of the N-th decimal)")
@click.option("--rtol", type=FloatRange(min=0, min_open=True), default=None,
              help="right within this relative difference of the reference  [default: 0.001]")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="also write a copy of the workbook with each wrong cell coloured (own mistake red, carried "
                   "error yellow, missing grey) and a note with the expected value, and a Grade sheet")
@click.option("--exercise", "original", type=click.Path(path_type=Path), default=None,
              help="the exercise as handed out: refuse a workbook made for another model or configuration")
@click.option("--engine", type=click.Choice(api.ENGINES[:-1]), default=None,
              help="recalculate formulas saved without a value in this engine  [default: LibreOffice if "
                   "installed, else IronCalc]")
@click.option("--gradebook", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="a folder: write the gradebook (.xlsx: a row per file, each student's blocks, the class view "
                   "with a chart; .csv: the rows)")
@click.option("--reports", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="a folder: write each student's graded copy (as --report) to DIR")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="a folder: files graded at once  [default: the machine's cores]")
@click.option("--model", type=click.Choice(list(MODELS)), default=None,
              help="a workbook built by hand for this model (with --map; the model's options as for `tracer run`)")
@click.option("--map", "where", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="MAP.toml",
              help="where each tensor is in the hand-built workbook (`tracer map MODEL` writes a template)")
@click.pass_context
def check(ctx, workbook, decimals, rtol, report, original, engine, gradebook, reports, jobs, model, where):
    """Grade a filled exercise WORKBOOK (as Excel, LibreOffice or Google Sheets saved it): every blank
    cell right, wrong or missing; each wrong cell an own mistake or an error carried from an earlier
    one (the step recomputed from the student's own inputs gives the student's value).  Exit 0 when
    every cell is right, 1 otherwise, 2 when the file cannot be graded.

    \b
    A FOLDER of submissions: every .xlsx graded against its own recipe, in parallel; --gradebook
    and --reports; a file that cannot be graded is a row with its reason.  Exit 0 when every file
    was graded, 1 when any was refused.

    \b
    A workbook built by hand: --model MODEL --map MAP.toml and the model's options, e.g.
    tracer check my_vae.xlsx --model vae --size 4 --hidden 2 --map my_map.toml
    """
    folder_only = {"--gradebook": gradebook, "--reports": reports, "--jobs": jobs}
    if model is not None or where is not None:
        return _check_handmade(ctx, workbook, model, where, decimals, rtol, report, engine, original, folder_only)
    if ctx.args:
        raise TracerError(f"no such option: {ctx.args[0]} (a model's options go with --model and --map)")
    if workbook.is_dir():
        if report is not None or original is not None:
            raise TracerError("--report and --exercise are for one workbook; for a folder: --reports DIR")
        return _check_folder(workbook, decimals, rtol, gradebook, reports, engine, jobs)
    given = [flag for flag, value in folder_only.items() if value is not None]
    if given:
        raise TracerError(f"{given[0]} is for a folder of submissions; {workbook.name} is one workbook")
    result, marked = api.check(workbook, decimals, rtol, report, original, engine)
    return _print_grade(result, report, marked)


def _print_grade(result, report, marked) -> int:
    """The report of one graded workbook; exit 0 when every cell is right, else 1."""
    raise_if_interrupted()
    for line in result.lines():
        click.echo(line)
    if report is not None:
        click.echo(f"wrote {report}: {marked} cells marked")
    return 0 if result.total() == result.total("right") else 1


def _check_handmade(ctx, workbook, model, where, decimals, rtol, report, engine, original, folder_only):
    """`tracer check MY.xlsx --model MODEL --map MAP.toml [the model's options]`."""
    if model is None or where is None:
        raise TracerError("a workbook built by hand needs both --model and --map (`tracer map MODEL` writes a map)")
    given = [flag for flag, value in {**folder_only, "--exercise": original}.items() if value is not None]
    if given:
        raise TracerError(f"{given[0]} is not for a workbook built by hand")
    m = MODELS[model]

    @model_options(m)
    @click.option("--lang", type=click.Choice(["en", "es"]), default="en")
    def options(**kwargs):
        """The model's options, as `tracer run` reads them."""

    parsed = click.Command(f"--model {model}", params=options.__click_params__).make_context(
        f"tracer check --model {model}", list(ctx.args), parent=ctx).params
    lang = parsed.pop("lang")
    result, marked = api.check_handmade(workbook, model, where, decimals, rtol, report, engine, lang,
                                        **options_of(m, parsed))
    return _print_grade(result, report, marked)


def _check_folder(folder, decimals, rtol, gradebook, reports, engine, jobs):
    """`tracer check FOLDER`: a line per file, the class view, the gradebook."""
    with _progress_count(folder) as bar:
        book = api.check_folder(folder, decimals, rtol, gradebook, reports, engine, jobs, bar.update)
    raise_if_interrupted()
    for line in book.lines():
        click.echo(line)
    if gradebook is not None:
        click.echo(f"wrote {gradebook}")
    if reports is not None:
        click.echo(f"wrote the graded copies to {reports}")
    return 1 if book.refused else 0


def _progress_count(folder):
    """A progress bar over a folder's files, on a terminal only."""
    return click.progressbar(length=len(api.submissions(folder)), label=f"grading {folder.name}",
                             file=sys.stderr if sys.stderr.isatty() else io.StringIO())


@cli.group(name="map", cls=ModelGroup, context_settings=CONTEXT)
def map_group():
    """Print a map for a workbook built by hand: every tensor of the run, with its shape and
    meaning, and an empty place to fill in ("Sheet!B2:C17"); grade the workbook with
    `tracer check MY.xlsx --model MODEL --map MAP.toml` and the same options.

    \b
    tracer map vae --size 4 --hidden 2 --iterations 1 > my_map.toml
    """


def _make_map(model):
    @map_group.command(name=model.NAME, help=f"The map of a hand-built workbook of the {model.SUMMARY}.",
                 context_settings=CONTEXT)
    @model_options(model)
    @click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
                  help="language of the meanings")
    def command(lang, **kwargs):
        click.echo(api.map_template(model.NAME, lang, **options_of(model, kwargs)), nl=False)
    return command


@cli.command()
@click.argument("workbooks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--engine", type=click.Choice(api.ENGINES), default=None,
              help="recalculate in this engine, or in all of them (each must be installed)  "
                   "[default: every installed engine]")
@click.option("--all", "show_all", is_flag=True, help="list every error value (by default the first 50; mismatches: the first 20 and a count)")
def verify(workbooks, engine, show_all):
    """Recalculate WORKBOOKS from scratch in spreadsheet engines (LibreOffice headless with forced
    recalculation, IronCalc in process) and compare every formula cell with the value the exporter
    stored: a report per workbook and engine; exit 0 only when all agree within 1e-9 relative or
    1e-12 absolute in every engine.  LibreOffice starts once for all the workbooks."""
    results = api.verify_all(workbooks, engine, announce=_progress_note)
    raise_if_interrupted()
    for k, report in enumerate(results):
        if k:
            click.echo("")
        for line in report.lines(limit=None if show_all else 50):
            click.echo(line)
    failed = [path.name for path, report in zip(workbooks, results) if not report.ok]
    if len(results) > 1:
        click.echo("")
        click.echo(f"{len(failed)} of {len(results)} workbooks FAILED: {', '.join(failed)}" if failed
                   else f"all {len(results)} workbooks OK")
    return 1 if failed else 0


@cli.group(cls=ModelGroup, context_settings=CONTEXT)
def gradcheck():
    """Central finite differences of the loss for every parameter element against the traced
    gradients, in every iteration; exit 1 if the largest relative error exceeds 1e-6."""


def _make_gradcheck(model):
    @gradcheck.command(name=model.NAME, help=f"Check the gradients of the {model.SUMMARY}.",
                       context_settings=CONTEXT)
    @model_options(model)
    @click.option("--sample", type=click.IntRange(min=1), default=None,
                  help="check this many seeded elements per tensor instead of all of them")
    def command(sample, **kwargs):
        options = options_of(model, kwargs)
        worst, ok, iterations = 0.0, True, set()
        for report in api.gradcheck(model.NAME, sample, **options):
            for line in report.lines():
                click.echo(line)
            worst, ok = max(worst, report.max_rel), ok and report.ok
            iterations.add(report.iteration)
        n = len(iterations)
        click.echo(f"{model.NAME}: largest relative error over {n} iteration{'s' if n != 1 else ''}: {worst:.2e}"
                   f" -> {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    return command


for _m in MODELS.values():
    _make_run(_m)
    _make_exercise(_m)
    _make_gradcheck(_m)
    _make_map(_m)


@cli.command()
@click.option("--quick", is_flag=True,
              help="only the default size of each model, one run each (skip the ≥ 1M-cell, Adam, ×4 upscale and "
                   "warm-up cases)")
@click.option("--case", "cases", multiple=True, metavar="NAME",
              help="run only this case (repeatable): " + ", ".join(api.bench_cases()))
def bench(quick, cases):
    """Time tracing and export in CPU seconds: cells written, cells/s, file size, peak memory.  The
    default size of every model (best of 3 fresh processes; the VAE, GAN and transformer also timed
    end to end as `tracer run MODEL` and beside stock XlsxWriter writing the same number of cells,
    the ratio of the two), and `tracer verify` of the default VAE in each engine (LibreOffice,
    IronCalc); the full run (without --quick) adds, once each: a ≥ 1M-cell VAE (hidden 80, verified
    in each engine too) and a ≥ 1M-cell transformer (4 blocks, d_model 32, context 16), both with a
    baseline, the VAE and the GAN with --optimizer adam, the GAN with --upscale 4 --upscale-mode
    bilinear, the rnn, lstm, bert, diffusion and flow at ≥ 1M cells (with a baseline), the
    2,000-step warm-ups of the default VAE, of the documented GAN that draws a digit (with that GAN
    without its warm-up, to compare the exports), of the diffusion model and of the flow, and the
    cell counts of the default workbooks with and without the step blocks of the formula rule
    (split)."""
    api.bench(quick=quick, echo=click.echo, only=cases)


@cli.command(context_settings=CONTEXT)
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--models", default=",".join(MODELS), show_default=True, metavar="M,…",
              help="the models to include, comma-separated")
@click.option("--lang", "langs", default=",".join(api.LANGS), show_default=True, metavar="L,…",
              help="the languages of the pages, comma-separated")
@click.option("--docs", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="a folder of Markdown pages to include as the site's guide (e.g. the repository's docs/)")
@click.option("--build", is_flag=True, help="also build the HTML (mkdocs build --strict) into FOLDER/site")
def site(folder, models, langs, docs, build):
    """Write a documentation site of the walkthroughs: a MkDocs project (mkdocs.yml, an index of
    what each model teaches, a page per model and language, the figures beside each page,
    MathJax served from the site itself).  Needs pip install "tracer[site]".

    \b
    tracer site site-src --build          then open site-src/site/index.html
    tracer site site-src --models vae,gan --lang es
    cd site-src && mkdocs serve           to preview while editing
    """
    start = time.perf_counter()
    pages, built = api.site(folder, [m for m in models.split(",") if m], [x for x in langs.split(",") if x], docs,
                            build, progress=_progress_note)
    click.echo(f"wrote {folder}: mkdocs.yml and {len(pages)} page{'s' if len(pages) != 1 else ''}"
               + (f"; built {built}/index.html" if built else f"; build it with: cd {folder} && mkdocs build")
               + f"  ({time.perf_counter() - start:.1f} s)")


def unknown_option(e: click.NoSuchOption) -> str:
    """'No such option '--hiden'. Did you mean --hidden?': only a close name is suggested
    (errors.close_names; click's own list reaches as far as --prompt for --warmup), else where the
    options are listed."""
    command = e.ctx.command if e.ctx else None
    names = [o for p in (command.params if command else []) for o in p.opts if o.startswith("--")]
    close = close_names(e.option_name, names)
    if close:
        return f"No such option {e.option_name!r}. Did you mean {' or '.join(close)}?"
    where = f" (`{e.ctx.command_path} --help` lists the options)" if e.ctx else ""
    return f"No such option {e.option_name!r}{where}."


def main(argv=None):
    # SIGINT, SIGTERM, SIGHUP: Interrupted, whatever is running cleans up.  Called as the program
    # (argv None), a signal after the work is done no longer matters; called in-process, the
    # caller's handlers come back.
    with stop_on_signals(restore=argv is not None):
        try:
            code = cli.main(args=argv, prog_name="tracer", standalone_mode=False)
            raise_if_interrupted()  # a signal some library swallowed: never report success
        except Interrupted as e:
            click.echo(f"interrupted by {e.name}: stopped; nothing half-written is left", err=True)
            sys.exit(128 + e.signum)
        except TracerError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.exceptions.NoArgsIsHelpError as e:  # `tracer` or `tracer run` alone: the help
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.NoSuchOption as e:
            click.echo(f"error: {unknown_option(e)}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except MemoryError:
            click.echo("error: out of memory: choose smaller options (docs/limits.md)", err=True)
            sys.exit(2)
        except OSError as e:  # a disk or permission problem while writing
            click.echo(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
            sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
