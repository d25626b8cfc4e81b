"""Smoke test of the benchmark CLI (``--quick``): runs end to end and writes JSON + PNG."""

from __future__ import annotations

import json
from pathlib import Path

from sparse_pose_ros.benchmarks.cli import main
from sparse_pose_ros.benchmarks.sparse_cpu import _crossover, _fit


def test_quick_benchmark_writes_results(tmp_path):
    out = tmp_path / "sparse_cpu.json"
    rc = main(["sparse-cpu", "--quick", "--no-trained", "--variants", "all", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert result["torch_threads"] == 2 and result["input_size"] == 64
    assert result["machine"]["torch"] and result["command"].startswith("python -m")
    v = result["variants"]["all"]
    assert v["head"]["cpp"]["median_ms"] > 0 and v["head"]["cpp_1thread"]["median_ms"] > 0
    assert [r["density"] for r in v["densities"]] == [0.25, 1.0]
    for row in v["densities"]:
        for part in ("backbone", "network"):
            assert row[part]["ort_dense"]["median_ms"] > 0
            assert row[part]["ort_dense"]["reps"] == 3
    # executed MACs follow the masks: 1.0 everywhere at full density, far less at 0.25
    fr = [r["mac_fraction"]["backbone"] for r in v["densities"]]
    assert fr[0] < 0.6 < fr[1]
    assert set(v["per_stage_ms"]["stages"]) == {"2", "4", "8", "16"}
    assert result["trained_masks"]["skipped"]


def test_bad_arguments_are_rejected(capsys):
    assert main(["sparse-cpu", "--size", "70"]) == 2
    assert "multiple of 16" in capsys.readouterr().err


def test_crossover_and_fit():
    ds = [0.1, 0.5, 1.0]
    assert _crossover(ds, [2, 2, 2], [1, 1.5, 1.9]) == 1.0
    assert _crossover(ds, [2, 2, 2], [3, 3, 3]) == 0.0
    assert abs(_crossover(ds, [2, 2, 2], [1, 3, 4]) - 0.3) < 1e-9
    f = _fit([0.0, 0.5, 1.0], [1.0, 2.0, 3.0])
    assert abs(f["slope_ms"] - 2.0) < 1e-9 and abs(f["intercept_ms"] - 1.0) < 1e-9
    assert abs(f["r2"] - 1.0) < 1e-9


def test_paced_benchmark_smoke(tmp_path: Path) -> None:
    """The paced CLI runs end to end on a tiny input and records CPU use per runtime."""
    out = tmp_path / "paced.json"
    rc = main(["paced", "--size", "64", "--reps", "3", "--warmup", "1", "--interval-ms", "5",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    for name in ("ort_dense", "sparse_cpp"):
        for mode in ("back_to_back", "paced"):
            r = res["network"][name][mode]
            assert r["median_ms"] > 0 and r["cpu_cores"] > 0 and r["reps"] == 3
    assert res["ratio_paced"] > 0 and res["interval_ms"] == 5
