"""Smoke test of tracer.bench: the quick benchmark (the default VAE and mlp, one run each) runs and
reports positive numbers (no timing assertions: the benchmark is informational)."""

import zipfile

from tracer.bench import CASES, run_bench


def test_quick_bench_reports_positive_numbers(tmp_path):
    lines = []
    res = run_bench(quick=True, echo=lines.append, keep=tmp_path, engines=("ironcalc",), only=("vae", "mlp"))

    assert {"vae", "vae_baseline_stock", "mlp", "cli", "targets", "bench"} <= set(res)
    assert not {c.name for c in CASES if c.config} & set(res)  # the optional cases: full run only
    for name in ("vae", "mlp"):
        case = res[name]
        assert case["model"] == name and case["runs"] == 1  # quick: one run each
        for key in ("cells", "formulas", "trace_s", "export_s", "export_wall_s", "cells_per_s", "file_mb", "peak_mb"):
            assert case[key] > 0, (name, key)
        assert case["formulas"] < case["cells"]
    base = res["vae_baseline_stock"]
    for key in ("cells", "seconds", "cells_per_s", "file_mb", "peak_mb", "ratio"):
        assert base[key] > 0, key
    assert base["cells"] == res["vae"]["cells"] and base["formulas"] == res["vae"]["formulas"]  # counted in the file
    assert base["ratio"] == res["vae"]["export_s"] / base["seconds"]
    assert "mlp_baseline_stock" not in res and set(res["cli"]) == {"vae"}  # end to end: the VAE, GAN, transformer
    cli = res["cli"]["vae"]
    assert cli["wall_s"] > 0 and cli["cpu_s"] > 0 and cli["peak_mb"] > 0 and cli["file_mb"] > 0
    assert cli["cells"] == res["vae"]["cells"]
    for path in (tmp_path / "vae.xlsx", tmp_path / "cli_vae.xlsx", tmp_path / "mlp.xlsx"):
        with zipfile.ZipFile(path) as z:  # kept (keep=): a valid, complete zip
            assert z.testzip() is None
            assert "xl/workbook.xml" in z.namelist()
    assert res["targets"] and all(isinstance(t["pass"], bool) for t in res["targets"].values())
    assert {"vae export / stock baseline", "vae tracer verify (IronCalc) / export, CPU s"} <= set(res["targets"])
    assert any("PASS" in line or "MISS" in line for line in lines)
    assert any(line.startswith("tracer run vae (end to end):") for line in lines)
    verified = res["vae_verify_ironcalc"]  # the default VAE, verified in IronCalc in a fresh process
    assert verified["ok"] and verified["formulas"] == res["vae"]["formulas"] and verified["seconds"] > verified["recalc_s"] > 0
    assert verified["cpu_s"] > 0
    assert not any("_verify_libreoffice" in name for name in res)
    assert any("IronCalc" in line and "formula cells" in line and "OK" in line for line in lines)


def test_quick_runs_every_model_once():
    """--quick: the default of every model, nothing else (but `torch`: the user's own module, no
    default run)."""
    from tracer.models import MODELS

    quick = [c for c in CASES if c.default and c.quick]
    assert sorted(c.model for c in quick) == sorted(m for m in MODELS if m != "torch")


def test_the_split_is_counted(tmp_path):
    """The cells of default workbooks, and those of their step blocks: the mlp has none, the
    attention layer's softmaxes and cross-entropy some."""
    from tracer.bench import _child_split

    res = _child_split({"models": ["mlp", "attention"], "folder": str(tmp_path)})
    assert res["mlp"]["step_cells"] == 0 and res["mlp"]["cells"] > 200
    attention = res["attention"]
    assert 0 < attention["step_cells"] < attention["cells"] and attention["step_blocks"] > 10
    assert not list(tmp_path.iterdir())  # the workbooks are removed


def test_every_model_has_a_default_and_a_large_case():
    """The bench covers each trainable sequence and language model at its default size and at
    ≥ 1M cells (checked when the case runs: min_cells)."""
    for model in ("vae", "transformer", "rnn", "lstm", "bert", "flow"):
        cases = [c for c in CASES if c.model == model]
        assert any(c.default for c in cases), model
        assert any(c.min_cells >= 1_000_000 and c.baseline for c in cases), model
