"""pose_node started with bad parameters, the way a user starts it (console entry, its own
process): one error line per bad parameter naming name, value and valid range, exit status 2,
no traceback. Also: a load failure that is not about the model file does not tell the user to
train a model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import rclpy
from rclpy.parameter import Parameter

from sparse_pose_ros.ros.pose_node import EXIT_BAD_PARAMETER, PoseNode, StartupParameterError

BAD_STARTS = [
    (["mask_threshold:=2.0"], ["mask_threshold", "2.0", "(0, 1)"]),
    (["num_threads:=-3"], ["num_threads", "-3", "[0, 64]"]),
    (["mask_threshold:=high"], ["mask_threshold", "'high'", "float", "(0, 1)"]),
    (["backend:=caffe"], ["backend", "'caffe'", "sparse-cpu"]),
    (["input_size:=50"], ["input_size", "50", "multiple of 16"]),
    (["device:=gpu0", "confidence_threshold:=1.5"],
     ["device", "'gpu0'", "confidence_threshold", "1.5", "[0, 1]"]),
]


def _start(tiny_model, params: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sparse_pose_ros.ros.pose_node", "--ros-args",
           "-p", f"model_file_path:={tiny_model}"]
    for p in params:
        cmd += ["-p", p]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.mark.parametrize(("params", "expected"), BAD_STARTS,
                         ids=[" ".join(p) for p, _ in BAD_STARTS])
def test_bad_startup_parameter_exits_with_one_clear_line(tiny_model, params, expected):
    done = _start(tiny_model, params)
    out = done.stdout + done.stderr
    assert done.returncode == EXIT_BAD_PARAMETER, out
    assert "Traceback" not in out and "AttributeError" not in out, out
    errors = [line for line in out.splitlines() if "invalid parameter" in line]
    assert len(errors) == len(params), out  # one line per bad parameter
    for word in expected:
        assert word in out, (word, out)
    assert "./run train" not in out, out


def test_in_process_construction_raises_a_named_error(tiny_model):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(StartupParameterError, match=r"mask_threshold.*\(0, 1\).*2\.0"):
            PoseNode(context=context, parameter_overrides=[
                Parameter("model_file_path", value=str(tiny_model)),
                Parameter("mask_threshold", value=2.0)])
    finally:
        rclpy.shutdown(context=context)  # destroys the half-built node: must not raise


def test_load_failure_that_is_not_the_model_names_the_parameters(tiny_model, tmp_path):
    """A model that exists but cannot run at this input size: the log says which parameter to
    check, not "train one with ./run train"."""
    from sparse_pose_ros.ros.pose_node import _load_hint

    hint = _load_hint(str(tiny_model), ValueError("input_size must be a multiple of 16"))
    assert "input_size" in hint and "./run train" not in hint
    missing = _load_hint(str(tmp_path / "none.safetensors"), FileNotFoundError("x"))
    assert "./run train" in missing
