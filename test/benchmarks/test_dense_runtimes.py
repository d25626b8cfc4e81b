"""``python -m sparse_pose_ros.benchmarks dense-runtimes``: a tiny run writes every cell, and
the alternating timer charges each call its own wall and CPU time."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from sparse_pose_ros.benchmarks.cli import main
from sparse_pose_ros.benchmarks.dense_runtimes import BASELINE, time_alternating
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def dense64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "dense.safetensors"
    save_checkpoint(path, random_network(gated=False, input_size=64, seed=2))
    return path


def test_time_alternating_measures_each_call() -> None:
    def busy() -> None:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.004:
            pass

    stats = time_alternating({"sleep": lambda: time.sleep(0.004), "busy": busy}, reps=4,
                             warmup=1, interval_s=0.002)  # fmt: skip
    assert stats["sleep"]["reps"] == stats["busy"]["reps"] == 4
    assert stats["sleep"]["median_ms"] >= 4.0 and stats["busy"]["median_ms"] >= 4.0
    # sleeping costs no CPU, spinning does: CPU time is per call, not per round
    assert stats["sleep"]["cpu_ms_median"] < 2.0 < stats["busy"]["cpu_ms_median"]
    with pytest.raises(ValueError):
        time_alternating({"x": busy}, reps=0, warmup=0, interval_s=0.0)


def test_cli_writes_every_cell(dense64: Path, tmp_path: Path) -> None:
    out = tmp_path / "dense.json"
    expect = {"onnxruntime", "onnxruntime_spin"}
    if importlib.util.find_spec("openvino"):
        # not openvino_bf16 in this process: after a bf16 (AMX) compile a later fork of the
        # process (a DataLoader's workers in another test) crashes it
        expect |= {"openvino_f32"}
    rc = main(["dense-runtimes", "--checkpoint", str(dense64), "--sizes", "64", "--threads", "1",
               "--intervals-ms", "0", "5", "--reps", "3", "--warmup", "1", "--runtimes",
               *sorted(expect), "--out", str(out)])  # fmt: skip
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["baseline"] == BASELINE and "dense-runtimes" in r["command"]
    assert [c["interval_ms"] for c in r["cells"]] == [0.0, 5.0]
    for cell in r["cells"]:
        assert set(cell["runtimes"]) == expect
        assert cell["ratio_to_baseline"][BASELINE] == 1.0
        assert cell["fastest"] in expect and cell["fastest_f32"] in expect
        assert cell["max_joint_difference_from_first"]["onnxruntime_spin"] == 0.0
        if "openvino_f32" in expect:
            assert cell["max_joint_difference_from_first"]["openvino_f32"] < 1e-4
        for stats in cell["runtimes"].values():
            assert stats["reps"] == 3 and stats["cpu_ms_median"] >= 0.0


def test_cli_rejects_bad_arguments(dense64: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    assert main(["dense-runtimes", "--checkpoint", str(tmp_path / "none.safetensors"),
                 "--out", str(out)]) == 2
    assert main(["dense-runtimes", "--checkpoint", str(dense64), "--sizes", "65",
                 "--out", str(out)]) == 2
    assert main(["dense-runtimes", "--checkpoint", str(dense64), "--threads", "0",
                 "--out", str(out)]) == 2
    assert main(["dense-runtimes", "--checkpoint", str(dense64), "--sizes", "64",
                 "--runtimes", "tflite", "--out", str(out)]) == 2
    assert not out.exists()
