"""Smoke test of the CPU backend benchmark CLI (tiny model, one iteration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_pose_ros.benchmarks.backends import TENSORRT_NOTE, dense_twin, main
from sparse_pose_ros.export.random_model import random_network


def test_bench_writes_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "backends_cpu.json"
    argv = [
        "--input-size",
        "64",
        "--width-mult",
        "0.5",
        "--iterations",
        "2",
        "--rounds",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    for key in ("command", "date", "machine", "threads", "load_average_before", "density"):
        assert key in report
    rows = report["results"]
    assert rows["tensorrt"] == {"status": TENSORRT_NOTE}
    measured = (
        "torch_dense",
        "torch_masked",
        "onnxruntime_dense",
        "onnxruntime_portable",
        "onnxruntime_sparse_all",
        "onnxruntime_sparse_s4_s8",
    )
    for name in measured:
        assert rows[name]["median_ms"] > 0 and rows[name]["n"] == 2
    assert rows["onnxruntime_dense"]["ratio_to_onnxruntime_dense"] == 1.0
    assert "torch_gather_scatter" in rows  # measured, or a status saying why not
    assert 0.0 < report["density"] < 1.1


def test_dense_twin_keeps_weights() -> None:
    net = random_network(gated=True, input_size=64)
    twin = dense_twin(net)
    assert not twin.gated_blocks()
    a = net.backbone.blocks[3].project[0].weight
    b = twin.backbone.blocks[3].project[0].weight
    assert (a == b).all()


def test_bad_arguments(tmp_path: Path) -> None:
    assert main(["--threads", "0", "--out", str(tmp_path / "x.json")]) == 2
    with pytest.raises(SystemExit):
        main(["--no-such-flag"])
