"""Smoke test of tracer.bench: the quick benchmark (default VAE and default GAN, one run each) runs
and reports positive numbers (no timing assertions: the benchmark is informational)."""

import zipfile

from tracer.bench import CASES, run_bench


def test_quick_bench_reports_positive_numbers(tmp_path):
    lines = []
    res = run_bench(quick=True, echo=lines.append, repeat=1, keep=tmp_path, engines=("ironcalc",))

    assert {"vae", "vae_baseline_stock", "vae_baseline_portable", "gan", "gan_baseline_stock",
            "gan_baseline_portable", "transformer", "transformer_baseline_stock", "cli", "targets",
            "bench"} <= set(res)
    assert not {c.name for c in CASES if c.config} & set(res)  # the optional cases: full run only
    for name in ("vae", "gan", "transformer"):
        case = res[name]
        assert case["model"] == name and case["runs"] == 1
        for key in ("cells", "formulas", "trace_s", "export_s", "cells_per_s", "file_mb", "peak_mb"):
            assert case[key] > 0, (name, key)
        assert case["formulas"] < case["cells"]
        for flavour in ("stock", "portable"):
            base = res[f"{name}_baseline_{flavour}"]
            for key in ("cells", "seconds", "cells_per_s", "file_mb", "peak_mb", "ratio"):
                assert base[key] > 0, (name, flavour, key)
            assert base["cells"] == case["cells"]
            assert base["formulas"] == case["formulas"]  # counted in the written file
        cli = res["cli"][name]
        assert cli["wall_s"] > 0 and cli["peak_mb"] > 0 and cli["file_mb"] > 0
        assert cli["cells"] == case["cells"]
        for path in (tmp_path / f"{name}.xlsx", tmp_path / f"cli_{name}.xlsx"):
            with zipfile.ZipFile(path) as z:  # kept (keep=): a valid, complete zip
                assert z.testzip() is None
                assert "xl/workbook.xml" in z.namelist()
    assert res["gan"]["cells"] > 300_000  # the default GAN: about 400k cells
    assert res["targets"] and all(isinstance(t["pass"], bool) for t in res["targets"].values())
    assert not any("gan" in name and "end to end" in name for name in res["targets"])
    assert any("PASS" in line or "MISS" in line for line in lines)
    assert any(line.startswith("tracer run gan (end to end):") for line in lines)
    verified = res["vae_verify_ironcalc"]  # the default VAE, verified in IronCalc in a fresh process
    assert verified["ok"] and verified["formulas"] == res["vae"]["formulas"] and verified["seconds"] > verified["recalc_s"] > 0
    assert not any("_verify_libreoffice" in name for name in res)
    assert any("IronCalc" in line and "formula cells" in line and "OK" in line for line in lines)


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
