"""Benchmark of tracing and .xlsx export (informational: prints numbers, asserts nothing).

Every measured case runs in a fresh Python process (``sys.executable -c ...``), which reports
its timings and, at its very end, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the peak
resident memory of the whole process (interpreter, numpy, the tape, the writer), not only of
the export.  The end-to-end runs are ``sys.executable -m tracer.cli run MODEL -o <tmp>`` timed
from outside; their peak is the child's ``ru_maxrss`` from ``os.wait4``.  Caveat (Linux): an
exec'd process's ru_maxrss starts at the high-water mark of the process that spawned it, so the
parent keeps itself small (no numpy, workbooks scanned in chunks); each child also reports its
own VmHWM, and the table marks with ``*`` a peak inherited from a larger parent (e.g. when
run_bench is called inside a big pytest process).

Cases: a case is a model name and overrides of its ``Config`` (``CASES``), and every case runs
through the same functions.
  vae           ``vae.Config()`` (about 180k cells)                  default size, baseline
  gan           ``gan.Config()`` (about 400k cells)                  default size, baseline
  vae_large     ``vae.Config(hidden=80, iterations=4)``: about 1.2 million cells (checked >= 1M;
                the loss falls at every step, while hidden=64 with 5 iterations diverges), baseline
  vae_adam      ``vae.Config(optimizer="adam")``
  gan_upscale4  ``gan.Config(upscale=4, upscale_mode="bilinear")``
  gan_adam      ``gan.Config(optimizer="adam")`` (about 1 million cells)
  transformer   ``transformer.Config()`` (default size, with generation)   default size, baseline
  transformer_large  ``TRANSFORMER_LARGE``: 4 blocks of d_model 32, 4 heads, context 16, d_ff 128,
                lr 0.1 (checked >= 1M cells; the loss falls at every step), baseline
  rnn, lstm, bert    their ``Config()`` (default size, with generation / the fill-in)   default size
  rnn_large     ``RNN_LARGE``: context 32, hidden 64, d_model 32 (checked >= 1M cells), baseline
  lstm_large    ``LSTM_LARGE``: context 32, hidden 32, d_model 16 (checked >= 1M cells), baseline
  bert_large    ``TRANSFORMER_LARGE`` as a masked language model (checked >= 1M cells), baseline
  vae_warmup    ``vae.Config(warmup=2000)``: its trace time is the 2,000-step warm-up's
  gan_draws     ``GAN_DRAWS``, the documented GAN that draws a digit (batch 15, Adam, 1 iteration),
                without its warm-up: the export to compare with
  gan_draws_warmup  the same with ``warmup=2000``
  diffusion     ``diffusion.Config()`` (default size, with the reverse process)   default size
  diffusion_large  ``DIFFUSION_LARGE``: 14 × 14 digits, hidden 256, batch 8 (checked >= 1M cells), baseline
  diffusion_warmup  ``diffusion.Config(warmup=2000)``: its trace time is the warm-up's
  flow          ``flow.Config()`` (default size: 64 moons points, 4 couplings, the 21 × 21 density)
  flow_large    ``FLOW_LARGE``: 256 points, hidden 16, a 25 × 25 density grid (checked >= 1M cells;
                the loss falls at every step), baseline
  flow_warmup   ``flow.Config(warmup=2000)``, the documented warm-up (docs/models/flow.md)
  skipgram, attention, mlp   their ``Config()`` (default size)
A default-size case (no overrides) runs ``repeat`` times (fresh processes, best time kept,
largest peak kept: 3 by default, 1 with ``quick``); the VAE's, the GAN's and the transformer's
also end to end (``tracer run MODEL``); every other case runs once.  ``quick`` runs only the
default-size cases, one of each model.
For each: cells (the return value of ``write_xlsx``), trace seconds (``models.trace``:
``MODEL.trace`` plus the CLI's option and finiteness checks), export seconds
(``export(tape, config, path)``, the .xlsx writer; modules are imported before the clock
starts), cells/s of the export, file size, peak memory of the process.  Seconds are CPU seconds
of the process (``time.process_time``): the machine is shared, and the work it does for others
does not count; the export's wall time is kept beside (``export_wall_s``).

Baseline ("raw XlsxWriter"), for each case marked baseline, in its own fresh process
  * the same number of cells as the tracer workbook: exactly F formula cells, where F is the
    number of ``<f>`` elements counted in the tracer workbook's sheet XML, and the remaining
    (cells - F) as numbers;
  * a stock ``xlsxwriter.Workbook(path, {"constant_memory": True, ...})`` with the same options
    as tracer's writer and one cell format like tracer's (fill, number format, border);
  * sheet "Inputs": the (cells - F) numbers, 64 per row, written with ``write_number``;
  * sheet "Formulas": the F formulas, 64 per row, written with
    ``write_formula(row, col, formula, fmt, value)``, each with a stored float value.  Each
    formula string is built per cell with an f-string, cycling by column over four shapes like
    tracer's (cross-sheet update ``='Inputs'!B7-lr*C8`` with a defined name ``lr``, same-sheet
    product ``=B7*C7``, cross-sheet product ``='Inputs'!B7*C7`` and
    ``=SUMPRODUCT('Inputs'!B1:B8,C1:C8)``); the mean formula length is measured in both
    files and printed so the two can be compared;
  * values come from a seeded numpy array, one ``tolist()`` per row (a plain script's way).
The baseline (``stock``) uses XlsxWriter's own Worksheet class, as a plain script would; it
runs as often as the case (CPU seconds, best kept).  The ratio is the tracer export's CPU seconds
divided by the baseline's.

Verify ("verify" cases: the default VAE and the >= 1M-cell VAE): once the workbook is written,
``tracer.checks.verify.verify_workbook(path, engine=E)`` in a fresh process per engine
(LibreOffice, IronCalc; an engine that is not installed is reported as such): formula cells,
the whole verify's wall time (reading the workbook, recalculating, comparing) and its CPU
seconds (the process's and LibreOffice's, its child's), the recalculation's share, its verdict
and the process's peak memory.

Split ("split", full run or ``--case split``): the cell counts of the six models' default
workbooks, and how many of them the step blocks of the formula rule hold (a softmax's
exponentials and row sums, a loss's terms: the tensors tracer.core.op.Composite records); the
count without those blocks is the workbook's size before the ops were split into steps.

Refusals ("refusals", full run or ``--case refusals``): ``REFUSED``, runs no workbook could hold
(issue 21's ``bert --layers 1000000`` …), each ``tracer run`` in a fresh process: wall time and
peak memory (``os.wait4``), beside ``tracer --version`` (Python and tracer starting) for scale.

Forecast: after its runs the bench prints each case's time (trace and export, CPU seconds) over the forecast
``forecast_seconds`` makes from the case's estimated size, and the per-cell and per-block
constants fitted to these runs (least squares), to keep ``SECONDS_PER_CELL``,
``SECONDS_PER_BLOCK`` and ``BYTES_PER_CELL`` current.

Targets (printed as PASS/MISS): default ``tracer run vae`` <= 3 s end to end; export <= 0.15x
the stock baseline (the VAE's and the GAN's cases with a baseline), i.e. about 300,000 cells/s
on this machine;
peak memory of a >= 1M-cell export process <= 400 MB (every case of >= 1M cells); a 2,000-step
warm-up (the trace time of a case with one) <= 5 s; ``tracer verify`` in IronCalc no slower than
the export of the same workbook (CPU seconds).  ``tracer run gan`` end to end is printed, with no
target.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tracer.errors import TracerError

LARGE = {"hidden": 80, "iterations": 4}  # ~1.2M cells; the loss falls at every step
TRANSFORMER_LARGE = {"layers": 4, "d_model": 32, "heads": 4, "context": 16, "d_ff": 128, "lr": 0.1}
RNN_LARGE = {"context": 32, "hidden": 64, "d_model": 32}  # ~1.1M cells; the loss falls at every step
LSTM_LARGE = {"context": 32, "hidden": 32, "d_model": 16}  # ~1.2M cells; the loss falls at every step
GAN_DRAWS = {"batch": 15, "optimizer": "adam", "lr_d": 0.001, "lr_g": 0.001, "iterations": 1}  # the documented
DIFFUSION_LARGE = {"size": 14, "hidden": 256, "batch": 8}  # ~1.1M cells
WARMUP = 2000  # steps of the warm-up cases
FLOW_LARGE = {"points": 256, "hidden": 16, "grid": 25}  # flow (issue 17): ~1.1M cells; the loss falls at every step
MIN_LARGE_CELLS = 1_000_000
VERIFY_ENGINES = ("libreoffice", "ironcalc")
SPLIT = "split"  # the extra case: the defaults' cells before and after the split into steps
SPLIT_MODELS = ("vae", "gan", "skipgram", "attention", "transformer", "mlp")
REFUSALS = "refusals"  # the extra case: runs too large for any workbook, refused on their options alone
REFUSED = (("--version",), ("run", "bert", "--layers", "1000000"),
           ("run", "bert", "--heads", "50000000", "--d-model", "100000000"), ("run", "transformer", "--layers", "1000000"),
           ("run", "transformer", "--layers", "100000"), ("run", "rnn", "--hidden", "1000000000"),
           ("run", "attention", "--generate", "1000000000000"))  # --version: Python and tracer starting, for scale
BASELINE_WIDTH = 64
TARGET_E2E_S = 3.0
TARGET_RATIO = 0.15  # export CPU seconds / stock XlsxWriter's for the same cells ...
RATIO_MODELS = ("vae", "gan")  # ... of these models' cases (the others print their ratio, with no target)
TARGET_VERIFY = 1.0  # tracer verify in IronCalc / the export of the same workbook (CPU seconds)
TARGET_PEAK_MB = 400.0
TARGET_WARMUP_S = 5.0  # a 2,000-step warm-up (the trace time of a warm-up case)
_MB = 1024 * 1024
# This machine's speed, from which `tracer run` forecasts a large run (tracer.api.forecast): the
# CPU seconds to trace, lay out and write a workbook are about cells × SECONDS_PER_CELL + blocks ×
# SECONDS_PER_BLOCK (a block's title, equation, notes and place), its file about cells ×
# BYTES_PER_CELL.  Fitted (least squares) to ten ≥ 650,000-cell runs of every model on this 2-core
# machine, from 195 to 38,983 blocks: each within 0.8–1.12× of the fit.  Each bench prints the fit
# of its own runs beside these: when they drift apart, put the new fit here.
SECONDS_PER_CELL = 1 / 350_000
SECONDS_PER_BLOCK = 0.00025
BYTES_PER_CELL = 20


def forecast_seconds(cells: int, blocks: int) -> float:
    """The time a run of this estimated size (tracer.core.size.Size) takes to trace and write."""
    return cells * SECONDS_PER_CELL + blocks * SECONDS_PER_BLOCK


@dataclass(frozen=True)
class Case:
    """One benchmark case: a model and overrides of its Config.  No overrides = the default size
    (repeated, with an end-to-end `tracer run MODEL`, part of the quick run)."""

    name: str
    model: str
    config: dict = field(default_factory=dict)
    baseline: bool = False  # also time raw XlsxWriter writing the same number of cells
    min_cells: int = 0  # the run is refused (RuntimeError) if it writes fewer cells
    verify: bool = False  # also time `tracer verify` of the workbook in each engine
    quick: bool = True  # a default-size case that `--quick` runs too

    @property
    def default(self) -> bool:
        return not self.config

    @property
    def flags(self) -> str:
        """The overrides as `tracer run` options."""
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.config.items())


CASES = (
    Case("vae", "vae", baseline=True, verify=True),
    Case("vae_large", "vae", LARGE, baseline=True, min_cells=MIN_LARGE_CELLS, verify=True),
    Case("vae_adam", "vae", {"optimizer": "adam"}),
    Case("gan", "gan", baseline=True),
    Case("gan_upscale4", "gan", {"upscale": 4, "upscale_mode": "bilinear"}),
    Case("gan_adam", "gan", {"optimizer": "adam"}),
    Case("transformer", "transformer", baseline=True),
    Case("transformer_large", "transformer", TRANSFORMER_LARGE, baseline=True, min_cells=MIN_LARGE_CELLS),
    Case("rnn", "rnn"),
    Case("rnn_large", "rnn", RNN_LARGE, baseline=True, min_cells=MIN_LARGE_CELLS),
    Case("lstm", "lstm"),
    Case("lstm_large", "lstm", LSTM_LARGE, baseline=True, min_cells=MIN_LARGE_CELLS),
    Case("bert", "bert"),
    Case("bert_large", "bert", TRANSFORMER_LARGE, baseline=True, min_cells=MIN_LARGE_CELLS),
    # --warmup: the trace time is the warm-up's; the export, compared with the same run without
    # a warm-up, grows only by the overview's chart and the pictures' snapshots
    Case("vae_warmup", "vae", {"warmup": WARMUP}),
    Case("gan_draws", "gan", GAN_DRAWS),
    Case("gan_draws_warmup", "gan", {**GAN_DRAWS, "warmup": WARMUP}),
    # diffusion: the default, a >= 1M-cell run, a warm-up
    Case("diffusion", "diffusion"),
    Case("diffusion_large", "diffusion", DIFFUSION_LARGE, baseline=True, min_cells=MIN_LARGE_CELLS),
    Case("diffusion_warmup", "diffusion", {"warmup": WARMUP}),
    # flow (issue 17): the defaults, >= 1M cells, the documented warm-up
    Case("flow", "flow"),
    Case("flow_large", "flow", FLOW_LARGE, baseline=True, min_cells=MIN_LARGE_CELLS),
    Case("flow_warmup", "flow", {"warmup": WARMUP}),
    Case("skipgram", "skipgram"),
    Case("attention", "attention"),
    Case("mlp", "mlp"),
)
E2E = ("vae", "gan", "transformer")  # the default cases also run end to end


# --- what runs inside the fresh child processes -----------------------------------------------

def _peaks() -> dict:
    """ru_maxrss of this process, and VmHWM (its own high-water mark since exec) as a check."""
    import resource

    peaks = {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KB on Linux
    try:
        with open("/proc/self/status") as f:
            hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")]
        peaks["hwm_mb"] = int(hwm[0]) / 1024
    except (OSError, IndexError, ValueError):
        peaks["hwm_mb"] = peaks["peak_mb"]
    return peaks


def _child_tracer(args: dict) -> dict:
    import dataclasses

    import tracer.render.layout  # noqa: F401  (imported before the clock, as the baseline does)
    import tracer.render.template  # noqa: F401
    import tracer.render.xlsx  # noqa: F401
    from tracer import models
    from tracer.render.export import export

    model = models.get(args["model"])
    cfg = model.Config(**args["config"])
    t0 = time.process_time()
    tape = models.trace(model, cfg)  # as the CLI: validates the options, refuses a diverged run
    t1, wall = time.process_time(), time.perf_counter()
    cells = export(tape, dataclasses.asdict(cfg), Path(args["path"]))
    t2, wall = time.process_time(), time.perf_counter() - wall
    est = model.size(cfg)
    return {"model": model.NAME, "hidden": getattr(cfg, "hidden", None), "iterations": cfg.iterations,
            "warmup": getattr(cfg, "warmup", 0), "cells": cells, "trace_s": t1 - t0, "export_s": t2 - t1,
            "export_wall_s": wall, "est_cells": est.cells, "est_blocks": est.blocks}


def _child_baseline(args: dict) -> dict:
    import numpy as np
    import xlsxwriter

    from tracer.render.layout import COLS

    cells, formulas, width = args["cells"], args["formulas"], BASELINE_WIDTH
    numbers = cells - formulas
    rng = np.random.default_rng(0)
    values = rng.standard_normal((max(1, -(-max(numbers, formulas) // width)), width))

    t0 = time.process_time()
    wb = xlsxwriter.Workbook(args["path"], {"constant_memory": True, "strings_to_numbers": False,
                                            "strings_to_formulas": False, "strings_to_urls": False})
    fmt = wb.add_format({"bg_color": "#DDEBF7", "num_format": "0.000000", "border": 1,
                         "border_color": "#D9D9D9"})
    inputs = wb.add_worksheet("Inputs")
    sheet = wb.add_worksheet("Formulas")
    wb.define_name("lr", "='Inputs'!$A$1")
    written = 0
    for row in range(-(-numbers // width)):
        vals = values[row].tolist()
        for col in range(min(width, numbers - row * width)):
            inputs.write_number(row, col, vals[col], fmt)
            written += 1
    for row in range(-(-formulas // width)):
        vals = values[row].tolist()
        r = row + 1
        for col in range(min(width, formulas - row * width)):
            a, b = COLS[col], COLS[col + 1]
            kind = col & 3
            if kind == 0:
                f = f"='Inputs'!{a}{r}-lr*{b}{r + 1}"
            elif kind == 1:
                f = f"={a}{r}*{b}{r}"
            elif kind == 2:
                f = f"='Inputs'!{a}{r}*{b}{r}"
            else:
                f = f"=SUMPRODUCT('Inputs'!{a}1:{a}8,{b}1:{b}8)"
            sheet.write_formula(row, col, f, fmt, vals[col])
            written += 1
    wb.close()
    return {"cells": written, "seconds": time.process_time() - t0}


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (LibreOffice's)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child_verify(args: dict) -> dict:
    from tracer.checks.verify import verify_workbook
    from tracer.engines import ENGINES

    engine = ENGINES[args["engine"]]
    if not engine.available():
        return {"engine": engine.LABEL, "missing": engine.INSTALL_HINT}
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    report = verify_workbook(Path(args["path"]), engine=engine.NAME)
    return {"engine": engine.LABEL, "formulas": report.n_formulas, "ok": report.ok,
            "seconds": time.perf_counter() - t0, "recalc_s": report.recalc_seconds,
            "cpu_s": time.process_time() - c0 + _children_cpu() - k0,
            "max_rel_err": report.max_rel_err, "errors": len(report.errors), "mismatches": report.n_mismatches}


def _child_split(args: dict) -> dict:
    """Each model's default workbook: the cells written, and those of the step blocks."""
    import dataclasses

    from tracer import models
    from tracer.core.op import Composite
    from tracer.render.export import export
    from tracer.render.layout import Block, Layout
    from tracer.render.template import Template

    out = {}
    for name in args["models"]:
        model = models.get(name)
        cfg = model.Config()
        tape = models.trace(model, cfg)
        path = Path(args["folder"]) / f"split_{name}.xlsx"
        cells = export(tape, dataclasses.asdict(cfg), path)
        path.unlink()
        steps = {id(u) for t in tape.tensors if isinstance(t.op, Composite) for u in t.inputs[t.op.n_in:]}
        layout = Layout(tape, Template.of(tape), dataclasses.asdict(cfg))
        blocks = [p for sheet in layout.sheets for p in sheet.parts if isinstance(p, Block) and id(p.tensor) in steps]
        out[name] = {"cells": cells, "step_cells": sum(b.cells for b in blocks), "step_blocks": len(blocks)}
    return out


def _child(kind: str, args_json: str) -> None:
    """Entry point of a child process: run one case, print one JSON line with its peak."""
    args = json.loads(args_json)
    result = {"tracer": _child_tracer, "baseline": _child_baseline, "verify": _child_verify,
              "split": _child_split}[kind](args)
    result.update(_peaks())
    print("BENCH " + json.dumps(result), flush=True)


# --- the parent (kept small: no numpy, files scanned in chunks; see _in_fresh_process) ---------

def _in_fresh_process(kind: str, args: dict) -> dict:
    """Run one case in a new interpreter.  On Linux an exec'd child's ru_maxrss starts from the
    high-water mark of the process that spawned it, so the parent must stay smaller than its
    children for ru_maxrss to be the child's own; VmHWM (hwm_mb) is reported as the check."""
    code = f"from tracer.bench import _child; _child({kind!r}, {json.dumps(json.dumps(args))})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("BENCH "):])


_FORMULA = re.compile(rb"<f>([^<]*)</f>")
_CHUNK, _CARRY = 1 << 20, 1 << 16  # a formula is at most 8192 characters (escaped: < 64 KiB)


def _scan(path: Path) -> dict:
    """Cells, formula cells and mean formula length (with its "=") in a workbook's sheet XML."""
    cells = formulas = length = 0
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not (name.startswith("xl/worksheets/sheet") and name.endswith(".xml")):
                continue
            with z.open(name) as f:
                carry = b""
                while chunk := f.read(_CHUNK):
                    buf = carry + chunk
                    end = 0
                    for m in _FORMULA.finditer(buf):
                        formulas += 1
                        text = m.group(1)
                        length += 1 + len(text) - 3 * text.count(b"&gt;") - 3 * text.count(b"&lt;") \
                            - 4 * text.count(b"&amp;") - 5 * text.count(b"&quot;")
                        end = m.end()
                    keep = max(end, len(buf) - _CARRY)
                    cells += buf.count(b"<c ", 0, keep + 2)  # those starting before `keep`
                    carry = buf[keep:]
                cells += carry.count(b"<c ")
    return {"cells_in_file": cells, "formulas": formulas,
            "mean_formula_len": length / formulas if formulas else 0.0}


def _end_to_end(model: str, folder: Path, keep: bool = False) -> dict:
    """`tracer run MODEL` as a user runs it; wall time from outside, the child's ru_maxrss."""
    out = folder / f"cli_{model}.xlsx"
    with open(folder / f"cli_{model}.log", "w+b") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "run", model, "-o", str(out)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"tracer run {model} failed ({proc.returncode}):\n{text[-3000:]}")
    m = re.search(r"([\d,]+) cells", text)
    result = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
              "file_mb": out.stat().st_size / _MB,
              "cells": int(m.group(1).replace(",", "")) if m else 0}
    if not keep:
        out.unlink()
    return result


def _refused(args: tuple, folder: Path) -> dict:
    """`tracer ARGS` refused (exit 2; `--version`: 0) in a fresh process: wall time from outside, the
    child's ru_maxrss."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", *args, *(["-o", str(folder / "refused.xlsx")]
                            if args[0] == "run" else [])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return {"wall_s": time.perf_counter() - t0, "peak_mb": usage.ru_maxrss / 1024,
            "code": os.waitstatus_to_exitcode(status)}


def _best(runs: list[dict], key: str) -> dict:
    """The fastest of repeated runs, with the largest peak memory seen in any of them."""
    best = dict(min(runs, key=lambda r: r[key]))
    for k in ("peak_mb", "hwm_mb"):
        if k in best:
            best[k] = max(r[k] for r in runs)
    best["runs"] = len(runs)
    return best


def _case(case: Case, folder: Path, repeat: int, keep: bool = False,
          engines: tuple = VERIFY_ENGINES) -> dict[str, dict]:
    """The tracer run of `case` (`repeat` fresh processes), its verification in each of `engines`
    if it has one, then its baselines if it has them."""
    name, path = case.name, folder / f"{case.name}.xlsx"
    args = {"model": case.model, "config": case.config, "path": str(path)}
    r = _best([_in_fresh_process("tracer", args) for _ in range(repeat)], "export_s")
    result = {**r, "cells_per_s": r["cells"] / r["export_s"], "file_mb": path.stat().st_size / _MB,
              **_scan(path)}
    out = {name: result}
    for engine in engines if case.verify else ():
        out[f"{name}_verify_{engine}"] = _in_fresh_process("verify", {"path": str(path), "engine": engine})
    if not keep:
        path.unlink()
    if case.baseline:
        bpath = folder / f"{name}_baseline_stock.xlsx"
        args = {"cells": result["cells"], "formulas": result["formulas"], "path": str(bpath)}
        b = _best([_in_fresh_process("baseline", args) for _ in range(repeat)], "seconds")
        out[f"{name}_baseline_stock"] = {
            **b, "cells_per_s": b["cells"] / b["seconds"], "file_mb": bpath.stat().st_size / _MB,
            **_scan(bpath), "ratio": result["export_s"] / b["seconds"]}
        if not keep:
            bpath.unlink()
    return out


def _table(res: dict, echo) -> None:
    head = (f"{'case':<36}{'cells':>11}{'formulas':>11}{'f.len':>6}{'trace s':>8}{'export s':>9}"
            f"{'cells/s':>9}{'file MB':>8}{'peak MB':>8}{'ratio':>7}")
    echo(head)
    echo("-" * len(head))
    for name, r in res.items():
        if name in ("cli", "targets", "bench", SPLIT, REFUSALS) or "_verify_" in name:
            continue
        if "baseline" in name:
            label = name.replace("_baseline_", " baseline ")
        else:
            hidden = "" if r["hidden"] is None else f"H={r['hidden']}, "
            warm = f"w={r['warmup']}, " if r.get("warmup") else ""
            label = f"{name} ({hidden}{warm}it={r['iterations']})"
        write = r.get("export_s", r.get("seconds"))
        trace = f"{r['trace_s']:.2f}" if "trace_s" in r else ""
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        flag = "*" if r["peak_mb"] - r["hwm_mb"] > 5 else ""
        echo(f"{label:<36}{r['cells']:>11,}{r['formulas']:>11,}{r['mean_formula_len']:>6.1f}{trace:>8}"
             f"{write:>9.2f}{r['cells_per_s']:>9,.0f}{r['file_mb']:>8.1f}{r['peak_mb']:>7.0f}{flag:1}"
             f"{ratio:>7}")
    for model, c in res["cli"].items():
        echo(f"tracer run {model} (end to end): {c['wall_s']:.2f} s wall ({c['cpu_s']:.2f} s CPU), {c['cells']:,} cells, "
             f"{c['file_mb']:.1f} MB, peak {c['peak_mb']:.0f} MB")
    ran = [c for c in CASES if c.name in res]
    runs = max((res[c.name]["runs"] for c in ran if c.default), default=0)  # 0: only other cases ran
    echo((f"times: CPU seconds, best of {runs} fresh processes for the default sizes" if runs
          else "times: CPU seconds, one fresh process")
         + (", one for each other case" if runs and any(not c.default for c in ran) else "")
         + "; peak MB = whole-process ru_maxrss (max over the runs)")
    for c in ran:
        if not c.default:
            echo(f"  {c.name} = tracer run {c.model} {c.flags}")
    echo("ratio = tracer export / stock XlsxWriter baseline (CPU seconds); f.len = mean formula length incl. '='")
    if any(r.get("peak_mb", 0) - r.get("hwm_mb", r.get("peak_mb", 0)) > 5 for r in res.values()):
        echo("* ru_maxrss above the process's own VmHWM: inherited from a larger parent process")
    verified = [(name, r) for name, r in res.items() if "_verify_" in name]
    if verified:
        echo("tracer verify (fresh process per engine; s = the whole verify's wall time, recalc = the engine's "
             "part; CPU = the process's and LibreOffice's):")
        for name, r in verified:
            case = name.split("_verify_")[0]
            if "missing" in r:
                echo(f"  {case:<12} {r['engine']:<12} not installed: {r['missing']}")
                continue
            echo(f"  {case:<12} {r['engine']:<12} {r['formulas']:>11,} formula cells  {r['seconds']:7.1f} s  "
                 f"(recalc {r['recalc_s']:.1f} s, CPU {r['cpu_s']:.1f} s)  peak {r['peak_mb']:.0f} MB  "
                 f"{'OK' if r['ok'] else 'FAILED'} (largest relative error {r['max_rel_err']:.1e})")
    if SPLIT in res:
        echo("cells of the default workbooks: after the split into steps, in the step blocks, and without them (before):")
        for model, r in res[SPLIT]["models"].items():
            echo(f"  {model:<12} {r['cells']:>9,} = {r['cells'] - r['step_cells']:>9,} + {r['step_cells']:>6,} "
                 f"in {r['step_blocks']} step blocks (+{100 * r['step_cells'] / (r['cells'] - r['step_cells']):.1f}%)")
    if REFUSALS in res:
        echo("refused before any work (exit 2), each in a fresh process: wall time, peak memory")
        for args, r in res[REFUSALS].items():
            echo(f"  tracer {args:<58} {r['wall_s']:6.2f} s  {r['peak_mb']:5.0f} MB  exit {r['code']}")
    _speed(res, echo)
    echo("targets (informational):")
    for name, t in res["targets"].items():
        echo(f"  {'PASS' if t['pass'] else 'MISS'}  {name}: {t['value']:.2f} (limit {t['limit']})")


def _speed(res: dict, echo) -> None:
    """The forecast's constants against these runs: each case's time (trace and export) over the
    forecast from its estimated size, and the constants fitted to the runs (least squares)."""
    runs = [r for name, r in res.items() if isinstance(r, dict) and "est_blocks" in r and "_baseline_" not in name]
    if not runs:
        return
    ratios = ", ".join(f"{r['model']} {(r['trace_s'] + r['export_s']) / forecast_seconds(r['est_cells'], r['est_blocks']):.2f}"
                       for r in runs)
    echo(f"forecast of a run's time (tracer.bench.SECONDS_PER_CELL = {SECONDS_PER_CELL * 1e6:.1f} µs, "
         f"SECONDS_PER_BLOCK = {SECONDS_PER_BLOCK * 1e3:.2f} ms): measured / forecast: {ratios}")
    xx = sum(r["est_cells"] ** 2 for r in runs)
    xy = sum(r["est_cells"] * r["est_blocks"] for r in runs)
    yy = sum(r["est_blocks"] ** 2 for r in runs)
    tx = sum(r["est_cells"] * (r["trace_s"] + r["export_s"]) for r in runs)
    ty = sum(r["est_blocks"] * (r["trace_s"] + r["export_s"]) for r in runs)
    det = xx * yy - xy * xy
    per_cell, per_block = ((tx * yy - ty * xy) / det, (ty * xx - tx * xy) / det) if det > 0 else (0, 0)
    if len(runs) >= 3 and per_cell > 0 and per_block > 0:  # fewer runs (or alike ones) fit nothing
        echo(f"  fitted to these runs: {per_cell * 1e6:.1f} µs per cell, {per_block * 1e3:.2f} ms per block "
             f"(tracer/bench.py keeps the constants; put these there when they drift)")
    files = [r["file_mb"] * _MB / r["cells"] for r in runs if r.get("file_mb")]
    echo(f"  bytes per cell of these workbooks: {min(files):.1f} … {max(files):.1f} (BYTES_PER_CELL = {BYTES_PER_CELL})")


def case_names() -> list[str]:
    """Every case `run_bench(only=…)` accepts, in the order it runs them."""
    return [c.name for c in CASES] + [SPLIT, REFUSALS]


def run_bench(quick: bool = False, echo=print, repeat: int | None = None, keep: Path | None = None,
              only: tuple = (), engines: tuple = VERIFY_ENGINES) -> dict:
    """Run the benchmark (quick: only the default-size cases, one per model), print a table via
    `echo` and return the numbers: {case name: {metric: value}} (baselines as
    "<case>_baseline_stock") plus "cli" ({model: end-to-end numbers}), "targets" and "bench"
    entries.  Default-size runs are repeated `repeat` times (fresh processes, best time kept;
    default 3, with quick 1).  `keep`: a folder to write the workbooks into and leave
    them there (by default a temporary folder, each workbook removed once measured).  `only`:
    the names of the cases to run (all by default; "split" is the defaults' cell counts).
    `engines`: those the verify cases verify in."""
    start = time.perf_counter()
    repeat = repeat or (1 if quick else 3)
    res: dict[str, dict] = {"cli": {}}
    names = case_names()
    unknown = set(only) - set(names)
    if unknown:
        raise TracerError(f"unknown bench case {sorted(unknown)[0]!r}: choose from {', '.join(names)}")
    cases = [c for c in CASES if ((c.default and c.quick) or not quick) and (not only or c.name in only)]
    with tempfile.TemporaryDirectory(prefix="tracer-bench-") as tmp:
        folder = Path(keep) if keep is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if SPLIT in only or not (quick or only):
            split = _in_fresh_process("split", {"models": SPLIT_MODELS, "folder": str(folder)})
            res[SPLIT] = {"models": {m: split[m] for m in SPLIT_MODELS}, "peak_mb": split["peak_mb"]}
        for case in cases:
            res.update(_case(case, folder, repeat if case.default else 1, keep is not None, engines))
            if res[case.name]["cells"] < case.min_cells:
                raise RuntimeError(f"the {case.name} case wrote only {res[case.name]['cells']:,} cells")
        if REFUSALS in only or not (quick or only):
            res[REFUSALS] = {" ".join(args): _best([_refused(args, folder) for _ in range(repeat)], "wall_s")
                             for args in REFUSED}
        for case in cases:
            if case.default and case.name in E2E:
                res["cli"][case.model] = _best([_end_to_end(case.model, folder, keep is not None)
                                                for _ in range(repeat)], "wall_s")
    # the targets: only those set for the project, each applied to every case it concerns
    targets = {}
    if "vae" in res["cli"]:
        targets["default `tracer run vae` end to end, s"] = (res["cli"]["vae"]["wall_s"], TARGET_E2E_S)
    for case in cases:
        if case.baseline and case.model in RATIO_MODELS:
            targets[f"{case.name} export / stock baseline"] = (
                res[f"{case.name}_baseline_stock"]["ratio"], TARGET_RATIO)
    for case in cases:
        if f"{case.name}_verify_ironcalc" in res and "cpu_s" in res[f"{case.name}_verify_ironcalc"]:
            targets[f"{case.name} tracer verify (IronCalc) / export, CPU s"] = (
                res[f"{case.name}_verify_ironcalc"]["cpu_s"] / res[case.name]["export_s"], TARGET_VERIFY)
    for case in cases:
        if res[case.name]["cells"] >= MIN_LARGE_CELLS:
            targets[f"{case.name} (>=1M cells) peak memory, MB"] = (res[case.name]["peak_mb"], TARGET_PEAK_MB)
    for case in cases:
        if case.config.get("warmup"):
            targets[f"{case.name}: {case.config['warmup']:,}-step warm-up (trace), s"] = (
                res[case.name]["trace_s"], TARGET_WARMUP_S)
    res["targets"] = {k: {"value": v, "limit": lim, "pass": v <= lim} for k, (v, lim) in targets.items()}
    res["bench"] = {"wall_s": time.perf_counter() - start}
    _table(res, echo)
    echo(f"benchmark wall time: {res['bench']['wall_s']:.1f} s")
    return res


if __name__ == "__main__":
    run_bench(quick="--quick" in sys.argv[1:])
