"""Parameter declaration, descriptors and validation of pose_node (in-process, real rclpy)."""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from sparse_pose_ros.ros.parameters import PARAMS, resolve_model_path
from sparse_pose_ros.ros.pose_node import PoseNode

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pose_node(tiny_model):
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PoseNode(
        context=context,
        parameter_overrides=[
            Parameter("model_file_path", value=str(tiny_model)),
            Parameter("backend", value="torch"),
        ],
    )
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


REJECTED = [
    ("backend", "caffe", "must be one of"),
    ("device", "gpu0", "must be auto, cpu, cuda"),
    ("input_size", 50, "multiple of 16"),
    ("input_size", 2048, "out of range"),
    ("mask_threshold", 0.0, "(0, 1)"),
    ("mask_threshold", 1.0, "(0, 1)"),
    ("confidence_threshold", 1.5, "out of range"),
    ("model_file_path", "/nonexistent/model.safetensors", "model file not found"),
    ("model_file_path", "", "must not be empty"),
    ("target_latency_ms", -1.0, "out of range"),
    ("num_threads", -1, "out of range"),
    ("num_threads", 65, "out of range"),
    ("nominal_hfov_deg", 0.5, "out of range"),
    ("region_expand", 0.9, "out of range"),
    ("region_expand", 3.5, "out of range"),
    ("region_margin", 5, "out of range"),
    ("strip_margin", 0.9, "out of range"),
    ("recheck_ratio", -0.1, "out of range"),
    ("recheck_ratio", 1.0, "out of range"),
    ("smoothing_min_cutoff_hz", -1.0, "out of range"),
    ("smoothing_beta", 101.0, "out of range"),
    ("custom_plugin_lib", "/nonexistent/libplugin.so", "file not found"),
    ("engine_file_path", "/nonexistent/dir/model.engine", "does not exist"),
]


@pytest.mark.parametrize(("name", "value", "reason"), REJECTED)
def test_invalid_values_are_rejected_with_a_reason(pose_node, name, value, reason):
    before = pose_node.get_parameter(name).value
    result = pose_node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful
    assert reason in result.reason, result.reason
    assert pose_node.get_parameter(name).value == before


def test_wrong_type_is_rejected(pose_node):
    result = pose_node.set_parameters([Parameter("mask_threshold", value="high")])[0]
    assert not result.successful


def test_valid_values_are_applied(pose_node):
    ok = pose_node.set_parameters([
        Parameter("mask_threshold", value=0.7),
        Parameter("confidence_threshold", value=0.25),
        Parameter("target_latency_ms", value=20.0),
        Parameter("publish_mask_overlay", value=True),
        Parameter("region_expand", value=1.6),
        Parameter("region_margin", value=2),
        Parameter("strip_margin", value=1.3),
        Parameter("recheck_ratio", value=0.5),
        Parameter("smoothing_min_cutoff_hz", value=5.0),
        Parameter("smoothing_beta", value=0.5),
    ])
    assert all(r.successful for r in ok)
    _, _, values = pose_node.diagnostics_values()
    assert values["mask_threshold"] == 0.7
    assert values["confidence_threshold"] == 0.25
    assert values["target_latency_ms"] == 20.0
    assert (values["region_expand"], values["region_margin"]) == (1.6, 2)
    assert values["strip_margin"] == 1.3
    assert values["recheck_ratio"] == 0.5 and values["rechecks"] == 0
    assert values["smoothing"] == "5 Hz, beta 0.5"
    cfg = pose_node._smoother.config  # the worker's next frame uses a filter with these
    assert (cfg.min_cutoff_hz, cfg.beta) == (5.0, 0.5)
    assert pose_node.set_parameters([Parameter("smoothing_min_cutoff_hz", value=0.0)])[0].successful
    assert pose_node.diagnostics_values()[2]["smoothing"] == "off"
    assert not pose_node._smoother.config.enabled
    if pose_node._estimator is not None:  # the running estimator follows
        assert pose_node._estimator.region_expand == 1.6
        assert pose_node._estimator.region_margin == 2
        assert pose_node._estimator.strip_margin == 1.3
        assert pose_node._estimator.roi.strip_margin == 1.3  # the rule strip_fits reads
        assert pose_node._estimator.recheck_ratio == 0.5


def test_every_parameter_has_a_description(pose_node):
    descriptors = pose_node.describe_parameters([p.name for p in PARAMS])
    for spec, d in zip(PARAMS, descriptors, strict=True):
        assert len(d.description) > 20, spec.name
        assert d.type == spec.type


def test_config_yaml_matches_declared_defaults():
    config = yaml.safe_load((ROOT / "config" / "pose.yaml").read_text())
    values = config["/**"]["ros__parameters"]
    assert set(values) == {p.name for p in PARAMS}
    for spec in PARAMS:
        assert values[spec.name] == spec.default, spec.name
        assert type(values[spec.name]) is type(spec.default), spec.name


def test_relative_model_path_resolves_into_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model_path("models/pose_sparse.safetensors")
    assert resolved.name == "pose_sparse.safetensors"
    assert resolved.parent.name == "models"
    assert resolve_model_path(str(tmp_path / "x.onnx")) == tmp_path / "x.onnx"


def test_readme_documents_every_parameter():
    readme = (ROOT / "README.md").read_text()
    for spec in PARAMS:
        assert f"| `{spec.name}` |" in readme, spec.name
