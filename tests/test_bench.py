"""Smoke test of tracer.bench: the quick benchmark runs and reports positive numbers (no timing
assertions: the benchmark is informational)."""

from tracer.bench import run_bench


def test_quick_bench_reports_positive_numbers():
    lines = []
    res = run_bench(large=False, echo=lines.append, repeat=1)

    assert {"default", "default_baseline_stock", "default_baseline_portable", "cli", "targets",
            "bench"} <= set(res)
    assert "large" not in res
    case = res["default"]
    for key in ("cells", "formulas", "trace_s", "export_s", "cells_per_s", "file_mb", "peak_mb"):
        assert case[key] > 0, key
    assert case["formulas"] < case["cells"]
    for flavour in ("stock", "portable"):
        base = res[f"default_baseline_{flavour}"]
        for key in ("cells", "seconds", "cells_per_s", "file_mb", "peak_mb", "ratio"):
            assert base[key] > 0, (flavour, key)
        assert base["cells"] == case["cells"]
        assert base["formulas"] == case["formulas"]  # counted in the written file
    cli = res["cli"]
    assert cli["wall_s"] > 0 and cli["peak_mb"] > 0 and cli["file_mb"] > 0
    assert cli["cells"] == case["cells"]
    assert res["targets"] and all(isinstance(t["pass"], bool) for t in res["targets"].values())
    assert any("PASS" in line or "MISS" in line for line in lines)
