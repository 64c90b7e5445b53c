"""Benchmark of tracing and .xlsx export (informational: prints numbers, asserts nothing).

Every measured case runs in a fresh Python process (``sys.executable -c ...``), which reports
its timings and, at its very end, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the peak
resident memory of the whole process (interpreter, numpy, the tape, the writer), not only of
the export.  The end-to-end run is ``sys.executable -m tracer.cli run vae -o <tmp>`` timed from
outside; its peak is the child's ``ru_maxrss`` from ``os.wait4``.  Caveat (Linux): an exec'd
process's ru_maxrss starts at the high-water mark of the process that spawned it, so the
parent keeps itself small (no numpy, workbooks scanned in chunks); each child also reports its
own VmHWM, and the table marks with ``*`` a peak inherited from a larger parent (e.g. when
run_bench is called inside a big pytest process).

Cases
  default   ``vae.Config()``: runs repeated ``repeat`` times (fresh processes, best time kept,
            largest peak kept); the end-to-end ``tracer run vae`` likewise
  large     ``vae.Config(hidden=80, iterations=4)``: about 1.2 million cells (checked >= 1M;
            the loss falls at every step, while hidden=64 with 5 iterations diverges), run once
For each: cells (the return value of ``write_xlsx``), trace seconds (``cli.trace_model``:
``vae.trace`` plus the CLI's option and finiteness checks), export seconds
(``export(tape, config, path)``, the .xlsx writer; modules are imported before the clock
starts), cells/s of the export, file size, peak memory of the process.

Baseline ("raw XlsxWriter"), for each case, in its own fresh process
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
Two baseline rows: ``stock`` uses XlsxWriter's own Worksheet class (which scans each formula
with regular expressions for Excel-365 functions); ``portable`` uses tracer's
``_PortableSheet`` (no scan), the worksheet class tracer's writer uses.  The ratio is the
tracer export seconds divided by the baseline seconds.

Targets (printed as PASS/MISS): default ``tracer run vae`` <= 3 s end to end; export <= 1.3x
the stock baseline; peak memory of the >= 1M-cell export process <= 400 MB.
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
from pathlib import Path

LARGE = {"hidden": 80, "iterations": 4}  # ~1.2M cells; the loss falls at every step
MIN_LARGE_CELLS = 1_000_000
BASELINE_WIDTH = 64
TARGET_E2E_S = 3.0
TARGET_RATIO = 1.3
TARGET_PEAK_MB = 400.0
_MB = 1024 * 1024


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

    import tracer.layout  # noqa: F401  (imported before the clock, as the baseline does)
    import tracer.template  # noqa: F401
    import tracer.xlsx  # noqa: F401
    from tracer.cli import trace_model
    from tracer.export import export
    from tracer.models import vae

    cfg = vae.Config(**args["config"])
    t0 = time.perf_counter()
    tape = trace_model(vae, cfg)  # as the CLI: validates the options, refuses a diverged run
    t1 = time.perf_counter()
    cells = export(tape, dataclasses.asdict(cfg), Path(args["path"]))
    t2 = time.perf_counter()
    return {"hidden": cfg.hidden, "iterations": cfg.iterations, "cells": cells,
            "trace_s": t1 - t0, "export_s": t2 - t1}


def _child_baseline(args: dict) -> dict:
    import numpy as np
    import xlsxwriter

    worksheet_class = None
    if args["portable"]:
        from tracer.xlsx import _PortableSheet as worksheet_class
    from tracer.layout import COLS

    cells, formulas, width = args["cells"], args["formulas"], BASELINE_WIDTH
    numbers = cells - formulas
    rng = np.random.default_rng(0)
    values = rng.standard_normal((max(1, -(-max(numbers, formulas) // width)), width))

    t0 = time.perf_counter()
    wb = xlsxwriter.Workbook(args["path"], {"constant_memory": True, "strings_to_numbers": False,
                                            "strings_to_formulas": False, "strings_to_urls": False})
    fmt = wb.add_format({"bg_color": "#DDEBF7", "num_format": "0.000000", "border": 1,
                         "border_color": "#D9D9D9"})
    inputs = wb.add_worksheet("Inputs", worksheet_class=worksheet_class)
    sheet = wb.add_worksheet("Formulas", worksheet_class=worksheet_class)
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
    return {"cells": written, "seconds": time.perf_counter() - t0}


def _child(kind: str, args_json: str) -> None:
    """Entry point of a child process: run one case, print one JSON line with its peak."""
    args = json.loads(args_json)
    result = {"tracer": _child_tracer, "baseline": _child_baseline}[kind](args)
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


def _end_to_end(folder: Path) -> dict:
    """`tracer run vae` as a user runs it; wall time from outside, the child's ru_maxrss."""
    out = folder / "cli_vae.xlsx"
    with open(folder / "cli.log", "w+b") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "run", "vae", "-o", str(out)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"tracer run vae failed ({proc.returncode}):\n{text[-3000:]}")
    m = re.search(r"([\d,]+) cells", text)
    result = {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024, "file_mb": out.stat().st_size / _MB,
              "cells": int(m.group(1).replace(",", "")) if m else 0}
    out.unlink()
    return result


def _best(runs: list[dict], key: str) -> dict:
    """The fastest of repeated runs, with the largest peak memory seen in any of them."""
    best = dict(min(runs, key=lambda r: r[key]))
    for k in ("peak_mb", "hwm_mb"):
        if k in best:
            best[k] = max(r[k] for r in runs)
    best["runs"] = len(runs)
    return best


def _case(name: str, config: dict, folder: Path, repeat: int) -> dict[str, dict]:
    path = folder / f"{name}.xlsx"
    r = _best([_in_fresh_process("tracer", {"config": config, "path": str(path)})
               for _ in range(repeat)], "export_s")
    case = {**r, "cells_per_s": r["cells"] / r["export_s"], "file_mb": path.stat().st_size / _MB,
            **_scan(path)}
    path.unlink()
    out = {name: case}
    for flavour in ("stock", "portable"):
        bpath = folder / f"{name}_baseline_{flavour}.xlsx"
        args = {"cells": case["cells"], "formulas": case["formulas"], "path": str(bpath),
                "portable": flavour == "portable"}
        b = _best([_in_fresh_process("baseline", args) for _ in range(repeat)], "seconds")
        out[f"{name}_baseline_{flavour}"] = {
            **b, "cells_per_s": b["cells"] / b["seconds"], "file_mb": bpath.stat().st_size / _MB,
            **_scan(bpath), "ratio": case["export_s"] / b["seconds"]}
        bpath.unlink()
    return out


def _table(res: dict, echo) -> None:
    head = (f"{'case':<26}{'cells':>11}{'formulas':>11}{'f.len':>6}{'trace s':>8}{'write s':>8}"
            f"{'cells/s':>9}{'file MB':>8}{'peak MB':>8}{'ratio':>7}")
    echo(head)
    echo("-" * len(head))
    for name, r in res.items():
        if name in ("cli", "targets", "bench"):
            continue
        label = (name.replace("_baseline_", " baseline ") if "baseline" in name
                 else f"{name} (H={r['hidden']}, it={r['iterations']})")
        write = r.get("export_s", r.get("seconds"))
        trace = f"{r['trace_s']:.2f}" if "trace_s" in r else ""
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        flag = "*" if r["peak_mb"] - r["hwm_mb"] > 5 else ""
        echo(f"{label:<26}{r['cells']:>11,}{r['formulas']:>11,}{r['mean_formula_len']:>6.1f}{trace:>8}"
             f"{write:>8.2f}{r['cells_per_s']:>9,.0f}{r['file_mb']:>8.1f}{r['peak_mb']:>7.0f}{flag:1}"
             f"{ratio:>7}")
    c = res["cli"]
    echo(f"tracer run vae (end to end): {c['wall_s']:.2f} s wall, {c['cells']:,} cells, "
         f"{c['file_mb']:.1f} MB, peak {c['peak_mb']:.0f} MB")
    runs = res["default"]["runs"]
    echo(f"times: best of {runs} fresh processes for the default size" + (", one for large" if
         "large" in res else "") + "; peak MB = whole-process ru_maxrss (max over the runs)")
    echo("ratio = tracer export seconds / baseline seconds; f.len = mean formula length incl. '='")
    if any(r.get("peak_mb", 0) - r.get("hwm_mb", r.get("peak_mb", 0)) > 5 for r in res.values()):
        echo("* ru_maxrss above the process's own VmHWM: inherited from a larger parent process")
    echo("targets (informational):")
    for name, t in res["targets"].items():
        echo(f"  {'PASS' if t['pass'] else 'MISS'}  {name}: {t['value']:.2f} (limit {t['limit']})")


def run_bench(large: bool = True, echo=print, repeat: int = 3) -> dict:
    """Run the benchmark (large=False: the default VAE only), print a table via `echo` and return
    the numbers: {case name: {metric: value}} plus "cli", "targets" and "bench" entries.
    Default-size runs are repeated `repeat` times (fresh processes, best time kept)."""
    start = time.perf_counter()
    res: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tracer-bench-") as tmp:
        folder = Path(tmp)
        res.update(_case("default", {}, folder, repeat))
        if large:
            res.update(_case("large", dict(LARGE), folder, 1))
            if res["large"]["cells"] < MIN_LARGE_CELLS:
                raise RuntimeError(f"the large case wrote only {res['large']['cells']:,} cells")
        res["cli"] = _best([_end_to_end(folder) for _ in range(repeat)], "wall_s")
    targets = {"default `tracer run vae` end to end, s": (res["cli"]["wall_s"], TARGET_E2E_S)}
    for name in ("default", "large") if large else ("default",):
        targets[f"{name} export / stock baseline"] = (res[f"{name}_baseline_stock"]["ratio"], TARGET_RATIO)
    if large:
        targets["large (>=1M cells) peak memory, MB"] = (res["large"]["peak_mb"], TARGET_PEAK_MB)
    res["targets"] = {k: {"value": v, "limit": lim, "pass": v <= lim} for k, (v, lim) in targets.items()}
    res["bench"] = {"wall_s": time.perf_counter() - start}
    _table(res, echo)
    echo(f"benchmark wall time: {res['bench']['wall_s']:.1f} s")
    return res


if __name__ == "__main__":
    run_bench(large="--quick" not in sys.argv[1:])
