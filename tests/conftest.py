"""Shared fixtures: the engines (LibreOffice, IronCalc), the default VAE trace and its workbooks, an
in-process CLI.

Exporting the default VAE takes a few seconds per language and reading a workbook back another
second or two, so the trace, the workbooks and their cells are built once per test session and
shared (read-only!) by test_export, test_portable and test_workbook_verify.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.formula import ArrayFormula

from tracer.engines.libreoffice import find_soffice
from tracer.errors import TracerError

# --------------------------------------------------------------------------
# CPU time per test: `pytest --cpu-durations=40` (the machine is shared: wall times mislead)
# --------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="list the N tests that took the most CPU time: this process's and its children's "
                          "(LibreOffice, a CLI run), setup and teardown included (0: all)")


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


_CPU_OF: dict[str, float] = {}
_CPU_START: dict[str, float] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.config.getoption("--cpu-durations") is not None:
        _CPU_START[item.nodeid] = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test's CPU seconds (setup to teardown) ride on its teardown report, so that they reach
    the terminal from a pytest-xdist worker too."""
    outcome = yield
    if call.when == "teardown" and item.nodeid in _CPU_START:
        outcome.get_result().user_properties.append(("cpu_seconds", _cpu_seconds() - _CPU_START.pop(item.nodeid)))


def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "cpu_seconds":
            _CPU_OF[report.nodeid] = value


def pytest_terminal_summary(terminalreporter, config):
    n = config.getoption("--cpu-durations")
    if n is None or not _CPU_OF:
        return
    ranked = sorted(_CPU_OF.items(), key=lambda kv: -kv[1])
    terminalreporter.write_sep("=", f"CPU seconds per test (of {sum(_CPU_OF.values()):.1f} s in all)")
    for nodeid, seconds in ranked[:n or None]:
        terminalreporter.write_line(f"{seconds:8.2f}s  {nodeid}")
    by_file: dict[str, float] = {}
    for nodeid, seconds in ranked:
        by_file[nodeid.split("::")[0]] = by_file.get(nodeid.split("::")[0], 0.0) + seconds
    terminalreporter.write_sep("-", "CPU seconds per file")
    for name, seconds in sorted(by_file.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.2f}s  {name}")


# --------------------------------------------------------------------------
# LibreOffice
# --------------------------------------------------------------------------

def require_soffice() -> str:
    """Path of LibreOffice; skip the test if it is missing (fail if required)."""
    try:
        return find_soffice()
    except TracerError as exc:
        if os.environ.get("TRACER_REQUIRE_SOFFICE"):
            pytest.fail(f"TRACER_REQUIRE_SOFFICE is set but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def soffice() -> str:
    return require_soffice()


# --------------------------------------------------------------------------
# PyTorch (an optional extra): its tests skip without it, fail without it when required (CI)
# --------------------------------------------------------------------------

def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch():
    """The torch module; skip the test if it is missing (fail if TRACER_REQUIRE_TORCH is set)."""
    if not have_torch():
        if os.environ.get("TRACER_REQUIRE_TORCH"):
            pytest.fail('TRACER_REQUIRE_TORCH is set but PyTorch is not installed: pip install "tracer[torch]"')
        pytest.skip("PyTorch is not installed (pip install \"tracer[torch]\")")
    import torch

    return torch


# The files that take the most CPU (`pytest --cpu-durations=0`, measured 5 December 2026: 157 s
# down to 44 s of the suite's 1,000), handed to the pytest-xdist workers first, so that no worker
# is left with a long file while the other has finished (--no-loadscope-reorder, pyproject.toml)
SLOW_FILES = ("test_print.py", "test_check.py", "test_class.py", "test_flow.py", "test_gan_workbook.py",
              "test_exercise.py", "test_portable.py", "test_number_formats.py")


def pytest_collection_modifyitems(config, items):
    """The slowest files first (SLOW_FILES), the rest as collected.  Every test of the torch model
    (a test parametrized over the models, with "torch") needs PyTorch: without it, skipped, or run
    (and failed, saying how to install it) when TRACER_REQUIRE_TORCH is set."""
    rank = {name: k for k, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: a file's order kept
    if have_torch() or os.environ.get("TRACER_REQUIRE_TORCH"):
        return
    skip = pytest.mark.skip(reason='PyTorch is not installed (pip install "tracer[torch]")')
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(v, str) and (v == "torch" or v.startswith("torch-")) for v in params.values()):
            item.add_marker(skip)


# --------------------------------------------------------------------------
# The engines every formula check runs in
# --------------------------------------------------------------------------

ENGINES = ("libreoffice", "ironcalc")


def require_engine(name: str) -> str:
    """The engine's name; LibreOffice's tests skip without soffice (fail if it is required).
    IronCalc is a dependency of the package: always there."""
    if name == "libreoffice":
        require_soffice()
    return name


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Each test that takes it runs once per engine: LibreOffice, then IronCalc."""
    return require_engine(request.param)


@pytest.fixture(scope="module", params=ENGINES)
def module_engine(request) -> str:
    """`engine` for module-scoped fixtures (a workbook verified once per engine)."""
    return require_engine(request.param)


def ops_template(lang: str, title: str):
    """A Template for a workbook of bare ops (no model): common.toml's text for every op and a
    minimal model (a title and an intro; no pictures, losses or symbols)."""
    from tracer.render.template import Template

    tpl = Template("vae", lang)
    tpl.model = {"title": {k: title for k in ("en", "es")}, "intro": {k: title for k in ("en", "es")}}
    return tpl


# --------------------------------------------------------------------------
# The default VAE
# --------------------------------------------------------------------------

CELLS: dict[Path, int] = {}  # the cells each shared workbook below was written with (export's count)


@pytest.fixture(scope="session")
def vae_config():
    from tracer.models import vae

    return vae.Config()


@pytest.fixture(scope="session")
def vae_tape(vae_config):
    """The default VAE trace (4 iterations).  Shared: never modify it."""
    from tracer.models import vae

    return vae.trace(vae_config)


@pytest.fixture(scope="session")
def vae_workbook(vae_tape, vae_config, tmp_path_factory):
    """vae_workbook(lang) -> path of the default VAE exported in that language (made once)."""
    from tracer.render.export import export

    made: dict[str, Path] = {}

    def get(lang: str = "en") -> Path:
        if lang not in made:
            path = tmp_path_factory.mktemp(f"vae-{lang}") / f"vae_{lang}.xlsx"
            CELLS[path] = export(vae_tape, dataclasses.asdict(vae_config), path, lang)
            made[lang] = path
        return made[lang]

    return get


# Other workbooks: every model and option that records other ops (GAN, Adam, the amplifier)
RUNS = {
    "gan": ("gan", {}),  # the default GAN
    "gan-adam-upscale": ("gan", {"hidden": 3, "iterations": 2, "batch": 2, "upscale": 2, "optimizer": "adam"}),
    "gan-nearest-4": ("gan", {"hidden": 3, "iterations": 2, "upscale": 4, "upscale_mode": "nearest"}),
    "vae-adam": ("vae", {"hidden": 4, "iterations": 3, "optimizer": "adam"}),
    "vae-size4": ("vae", {"size": 4, "hidden": 2}),  # the hand-sized VAE: the digit averaged to 4 × 4
    "skipgram": ("skipgram", {"corpus": "en"}),  # the default skip-gram (English corpus)
    "skipgram-neg-bpe-adam": ("skipgram", {"corpus": "es", "negative": 2, "tokenizer": "bpe", "merges": 4,
                                           "sentences": 2, "iterations": 3, "optimizer": "adam"}),
    "attention": ("attention", {"corpus": "en"}),  # the default attention layer
    "attention-es-bpe-adam": ("attention", {"corpus": "es", "tokenizer": "bpe", "optimizer": "adam",
                                            "iterations": 2}),
    "transformer": ("transformer", {"corpus": "en"}),  # the default transformer, with generation
    "transformer-es-bpe-gelu-adam": ("transformer", {"corpus": "es", "tokenizer": "bpe", "ffn": "gelu",
                                                     "optimizer": "adam", "layers": 2, "iterations": 2,
                                                     "context": 6, "generate": 5}),
    "rnn": ("rnn", {"corpus": "en"}),  # the default recurrent network, with generation
    "lstm-es-bpe-adam": ("lstm", {"corpus": "es", "tokenizer": "bpe", "optimizer": "adam", "iterations": 2,
                                  "context": 5, "hidden": 4, "generate": 3}),
    "bert": ("bert", {"corpus": "en"}),  # the default masked language model, with the fill-in
    "bert-es-char-adam": ("bert", {"corpus": "es", "tokenizer": "char", "optimizer": "adam", "layers": 2,
                                   "iterations": 2, "context": 6, "mask_rate": 0.4, "fill": "el [MASK]"}),
    "mlp": ("mlp", {}),  # the classic 2-2-2 example
    "mlp-softmax": ("mlp", {"config": "softmax_classifier"}),
    "mlp-xor": ("mlp", {"config": "xor"}),  # leaky ReLU, mse, Adam
    # --warmup: values before the formulas; a batch's mean; snapshots, minima and maxima, the latent grid
    "vae-batch-warmup": ("vae", {"batch": 2, "hidden": 3, "warmup": 30, "iterations": 2, "grid": 2, "samples": 1}),
    "gan-warmup-adam-upscale": ("gan", {"hidden": 3, "batch": 2, "warmup": 12, "iterations": 1, "upscale": 2,
                                        "optimizer": "adam"}),
    # diffusion: the default run; a small one with Adam after a warm-up (snapshots of x̂₀)
    "diffusion": ("diffusion", {}),
    "diffusion-adam-warmup": ("diffusion", {"optimizer": "adam", "warmup": 20, "iterations": 2, "size": 4,
                                            "hidden": 20, "steps": 4, "samples": 2, "batch": 3}),
    # flow (issue 17): the default flow (SGD); Adam after a warm-up on the rings; Adam with one coupling (no
    # Σ of log-dets); SGD after a warm-up
    "flow": ("flow", {}),
    "flow-rings-adam-warmup": ("flow", {"data": "rings", "optimizer": "adam", "warmup": 40, "iterations": 2,
                                        "couplings": 3, "hidden": 3, "grid": 5, "samples": 8}),
    "flow-gaussians-k1-adam": ("flow", {"data": "gaussians", "couplings": 1, "hidden": 2, "points": 8,
                                        "iterations": 1, "grid": 3, "samples": 4, "optimizer": "adam"}),
    "flow-sgd-warmup": ("flow", {"warmup": 30, "iterations": 1, "couplings": 2, "hidden": 2, "points": 10,
                                 "grid": 3, "samples": 3}),
}


@pytest.fixture(scope="session")
def run_tape():
    """run_tape(key) -> the tape of RUNS[key] (traced once).  Shared: never modify it."""
    from tracer.models import MODELS

    made = {}

    def get(key):
        if key not in made:
            model, options = RUNS[key]
            made[key] = (MODELS[model].Config(**options), MODELS[model].trace(MODELS[model].Config(**options)))
        return made[key]

    return get


@pytest.fixture(scope="session")
def run_workbook(run_tape, tmp_path_factory):
    """run_workbook(key, lang) -> path of RUNS[key] exported in that language (made once)."""
    from tracer.render.export import export

    made: dict = {}

    def get(key, lang="en"):
        if (key, lang) not in made:
            cfg, tape = run_tape(key)
            path = tmp_path_factory.mktemp(key) / f"{key}_{lang}.xlsx"
            CELLS[path] = export(tape, dataclasses.asdict(cfg), path, lang)
            made[(key, lang)] = path
        return made[(key, lang)]

    return get


@pytest.fixture(scope="session")
def run_book(run_workbook):
    """run_book(key, lang) -> BookCells of that workbook (read once)."""
    read: dict = {}

    def get(key, lang="en"):
        if (key, lang) not in read:
            read[(key, lang)] = read_book(run_workbook(key, lang))
        return read[(key, lang)]

    return get


# --------------------------------------------------------------------------
# Workbooks recalculated: many in one LibreOffice process
# --------------------------------------------------------------------------
# LibreOffice takes a few seconds to start, and the suite recalculates dozens of workbooks: a test
# that verifies one of the shared workbooks takes `verified`, and the workbooks that the collected
# tests of its file verify in LibreOffice are recalculated in one soffice run, at the first test
# that asks.  By file, because pytest-xdist sends the files to its workers (--dist loadfile,
# pyproject.toml): a worker recalculates only what its own files check.

VERIFIED_IN_LIBREOFFICE: dict = {}  # (key, lang) -> the files of the tests to run that verify it with `verified`


def verified_in_libreoffice(item) -> tuple[str, str] | None:
    """(key, lang) of the shared workbook the test verifies in LibreOffice with `verified`, if any."""
    if "verified" in getattr(item, "fixturenames", ()):
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "key" in params and params.get("engine", "libreoffice") == "libreoffice":
            return params["key"], params.get("lang", "en")
    return None


def pytest_collection_finish(session):
    """Note the workbooks the tests about to run verify in LibreOffice (after -k and the like)."""
    for item in session.items:
        if wanted := verified_in_libreoffice(item):
            VERIFIED_IN_LIBREOFFICE.setdefault(wanted, set()).add(item.path)


@pytest.fixture(scope="session")
def shared_workbook(vae_workbook, run_workbook):
    """shared_workbook(key, lang) -> path of RUNS[key]'s workbook, or with key "vae" the default
    VAE's (made once)."""
    return lambda key, lang="en": vae_workbook(lang) if key == "vae" else run_workbook(key, lang)


@pytest.fixture(scope="session")
def verified(shared_workbook):
    """verified(key, lang="en", engine="libreoffice") -> the VerifyReport of that shared workbook
    (shared_workbook) recalculated in that engine, made once per session.  LibreOffice
    recalculates, in one process, every workbook that the collected tests of the same files,
    parametrized by `key` (and `lang`, and `engine`), verify with this fixture: parametrize so,
    and the test costs no LibreOffice start of its own.  Shared: never modify a report."""
    from tracer.checks.verify import verify_all

    done: dict = {}

    def get(key, lang="en", engine="libreoffice"):
        if (key, lang, engine) not in done:
            if engine == "libreoffice":
                require_soffice()
            batch = [(key, lang)]
            if engine == "libreoffice":
                files = VERIFIED_IN_LIBREOFFICE.get((key, lang), set())
                batch += sorted(w for w, its in VERIFIED_IN_LIBREOFFICE.items()
                                if its & files and w != (key, lang) and (*w, engine) not in done)
            reports = verify_all([shared_workbook(k, lg) for k, lg in batch], engine=engine)
            done.update({(k, lg, engine): r for (k, lg), r in zip(batch, reports)})
        return done[(key, lang, engine)]

    return get


@pytest.fixture(scope="session")
def libreoffice_batch(tmp_path_factory):
    """A LibreOffice that converts many files per start: `want(path, to="xlsx")` notes a file (a
    workbook to recalculate, or to print with to="pdf"), `get(path, to)` converts every noted file
    not converted yet in ONE soffice run and returns this one's result (a module fixture notes its
    workbooks, each test gets its own).  `get` of a file not noted converts it alone."""
    from tracer.engines.libreoffice import convert_all

    class Batch:
        def __init__(self):
            self.wanted: dict = {}  # (path, to) -> None, in the order noted
            self.made: dict = {}

        def want(self, path, to="xlsx"):
            self.wanted.setdefault((Path(path).resolve(), to), None)

        def get(self, path, to="xlsx") -> Path:
            require_soffice()
            key = (Path(path).resolve(), to)
            if key not in self.made:
                self.want(*key)
                todo = [k for k in self.wanted if k not in self.made and k[1] == to]
                folder = tmp_path_factory.mktemp(f"libreoffice-{to}")
                staged = []  # each under a name of its own: many tests' workbooks share a name
                for n, (src, _) in enumerate(todo):
                    staged.append(folder / f"{n}-{src.name}")
                    shutil.copyfile(src, staged[-1])
                for k, made in zip(todo, convert_all(staged, folder / "out", to)):
                    self.made[k] = made
            made = self.made[key]
            if isinstance(made, Exception):
                raise made
            return made

    return Batch()


@pytest.fixture(scope="session")
def default_workbook(vae_workbook, run_workbook, tmp_path_factory):
    """default_workbook(model, lang) -> path of the model's default workbook in that language, for
    every registered model (made once; the ones RUNS or vae_workbook already made are reused)."""
    from tracer import api

    made: dict = {}

    def get(model, lang="en"):
        if (model, lang) not in made:
            cfg = api.configure(model, lang)
            if model == "vae":
                path = vae_workbook(lang)
            elif model in RUNS and lang == "en" and api.configure(RUNS[model][0], "en", **RUNS[model][1]) == cfg:
                path = run_workbook(model, lang)
            else:
                path = tmp_path_factory.mktemp(f"default-{model}") / f"{model}_{lang}.xlsx"
                CELLS[path] = api.Run(api.models.get(model), cfg, api.models.trace(api.models.get(model), cfg), lang).save(path)
            made[(model, lang)] = path
        return made[(model, lang)]

    return get


@dataclasses.dataclass
class BookCells:
    """What a workbook holds, by sheet then (row, column), 1-based like openpyxl."""

    sheetnames: list
    formulas: dict  # sheet -> {(r, c): formula text without the leading '='}
    constants: dict  # sheet -> {(r, c): value} of non-formula cells (numbers and strings)
    cached: dict  # sheet -> {(r, c): stored value} of the formula cells
    array_formulas: list  # (sheet, r, c) of cells holding an openpyxl ArrayFormula
    defined_names: dict  # name -> reference text


def read_book(path: Path) -> BookCells:
    wb = load_workbook(path, read_only=True, data_only=False)
    formulas, constants, arrays = {}, {}, []
    try:
        names = {name: dn.attr_text for name, dn in wb.defined_names.items()}
        for ws in wb.worksheets:
            ws.reset_dimensions()
            f, k = formulas.setdefault(ws.title, {}), constants.setdefault(ws.title, {})
            for row in ws.iter_rows():
                for cell in row:
                    v = cell.value
                    if v is None:
                        continue
                    if isinstance(v, ArrayFormula):
                        arrays.append((ws.title, cell.row, cell.column))
                        f[(cell.row, cell.column)] = v.text.lstrip("=")
                    elif cell.data_type == "f":
                        f[(cell.row, cell.column)] = v[1:] if v.startswith("=") else v
                    else:
                        k[(cell.row, cell.column)] = v
        sheetnames = list(wb.sheetnames)
    finally:
        wb.close()
    wb = load_workbook(path, read_only=True, data_only=True)
    cached = {}
    try:
        for ws in wb.worksheets:
            ws.reset_dimensions()
            want, got = formulas[ws.title], cached.setdefault(ws.title, {})
            for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
                for c, value in enumerate(row, start=1):
                    if (r, c) in want:
                        got[(r, c)] = value
    finally:
        wb.close()
    return BookCells(sheetnames, formulas, constants, cached, arrays, names)


@pytest.fixture(scope="session")
def vae_book(vae_workbook):
    """vae_book(lang) -> BookCells of the default VAE workbook in that language (read once)."""
    read: dict[str, BookCells] = {}

    def get(lang: str = "en") -> BookCells:
        if lang not in read:
            read[lang] = read_book(vae_workbook(lang))
        return read[lang]

    return get


# --------------------------------------------------------------------------
# The CLI, in process
# --------------------------------------------------------------------------

@pytest.fixture
def run_main(capsys):
    """run_main(*args) -> (exit code, stdout, stderr) of tracer.cli.main in this process."""
    from tracer.cli import main

    def run(*args):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exc_info.value.code
        return (0 if code is None else code), out, err

    return run


@pytest.fixture
def refused(run_main):
    """refused(*args) -> the line a command answers bad input with, after asserting the promise:
    exit 2, one line, "error: …", no traceback."""

    def run(*args):
        code, _, err = run_main(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), (code, err)
        return err.strip()

    return run
