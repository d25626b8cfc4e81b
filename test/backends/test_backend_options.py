"""One validated options object for every backend (``runtime.options.BackendOptions``), the
rules written once (input size vs output stride, head gating, device, threshold), and the
training record a backend hands over in ``ModelInfo`` (so the node reads no checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparse_pose_ros.backends import BackendOptions, create_backend
from sparse_pose_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
from sparse_pose_ros.backends.torch_backend import TorchBackend
from sparse_pose_ros.export.onnx_export import export_checkpoint
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.runtime.options import (
    HEAD_GATING_NODE,
    HEAD_GATING_REQUESTED,
    HEAD_GATING_STORED,
    INPUT_SIZE_MULTIPLE,
    OUTPUT_STRIDES,
    check_input_size,
    effective_head_gating,
    input_size_problem,
)


def test_defaults_and_validation() -> None:
    o = BackendOptions()
    assert (o.device, o.input_size, o.mask_threshold, o.num_threads, o.head_gating,
            o.cache_dir, o.spin_wait) == ("auto", None, 0.5, None, None, None, False)  # fmt: skip
    bad = [({"device": "gpu"}, "device"), ({"input_size": 50}, "multiple of 16"),
           ({"input_size": 0}, "input_size"), ({"mask_threshold": 1.0}, "probability"),
           ({"num_threads": 0}, "num_threads"), ({"head_gating": "yes"}, "head_gating"),
           ({"spin_wait": 1}, "spin_wait")]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            BackendOptions(**kwargs)
    with pytest.raises(TypeError, match="unknown backend option"):
        BackendOptions.build(graph="portable")
    changed = BackendOptions.build(o, device="cpu", num_threads=2)
    assert (changed.device, changed.num_threads, o.device) == ("cpu", 2, "auto")
    assert BackendOptions.split({"device": "cpu", "graph": "x"}) == ({"device": "cpu"},
                                                                     {"graph": "x"})


def test_input_size_rule_follows_the_output_stride() -> None:
    assert INPUT_SIZE_MULTIPLE == min(OUTPUT_STRIDES) == 16
    assert input_size_problem(48) is None  # fits a stride-16 network
    assert "multiple of 32" in (input_size_problem(48, 32) or "")
    assert input_size_problem(64, 32) is None
    with pytest.raises(ValueError, match="input_size must be a positive multiple of 32"):
        check_input_size(80, 32)


def test_head_gating_rule_and_its_three_defaults() -> None:
    from sparse_pose_ros.model.network import NetworkConfig
    from sparse_pose_ros.ros.parameters import PARAMS_BY_NAME

    assert NetworkConfig().head_gating is HEAD_GATING_STORED is False
    assert BackendOptions().head_gating is HEAD_GATING_REQUESTED is None
    assert PARAMS_BY_NAME["head_gating"].default is HEAD_GATING_NODE is True
    gated = {"gated": True, "head_gating": True}
    assert effective_head_gating(gated, HEAD_GATING_REQUESTED) is True  # the checkpoint's
    assert effective_head_gating({"gated": False}, HEAD_GATING_NODE) is False  # dense: ignored


def test_options_object_equals_keywords(gated_checkpoint: Path, frame64) -> None:  # noqa: ANN001
    options = BackendOptions(device="cpu", mask_threshold=0.6, head_gating=True)
    a = TorchBackend(str(gated_checkpoint), options)
    b = create_backend("torch", gated_checkpoint, device="cpu", mask_threshold=0.6,
                       head_gating=True)  # fmt: skip
    assert a.backend_options == b.backend_options == options
    assert a.mask_threshold == b.mask_threshold == 0.6
    assert (a.infer(frame64).joints == b.infer(frame64).joints).all()
    # the factory's device argument wins over the object's
    c = create_backend("torch", gated_checkpoint, "cpu", options=BackendOptions(device="auto"))
    assert c.backend_options.device == "cpu"


def test_model_info_carries_the_training_record(tmp_path: Path) -> None:
    trained = tmp_path / "trained.safetensors"
    save_checkpoint(trained, random_network(gated=True, input_size=64, seed=1),
                    {"epochs": 3, "data": "synthetic"})  # fmt: skip
    untrained = tmp_path / "untrained.safetensors"
    save_checkpoint(untrained, random_network(gated=True, input_size=64, seed=1),
                    {"untrained": True})  # fmt: skip
    options = BackendOptions(device="cpu", cache_dir=tmp_path / "cache")
    torch_info = TorchBackend(str(trained), options).info
    assert torch_info.training == {"epochs": 3, "data": "synthetic"} and torch_info.trained
    assert torch_info.output_stride == 16
    ort_info = OnnxRuntimeBackend(str(trained), options).info
    assert ort_info.training == torch_info.training and ort_info.output_stride == 16
    assert not TorchBackend(str(untrained), options).info.trained
    onnx = export_checkpoint(trained, tmp_path / "onnx", graphs=("portable",))["portable"]
    from_onnx = OnnxRuntimeBackend(str(onnx), options).info
    assert from_onnx.training is None and from_onnx.trained  # nothing to inspect in a graph


def test_node_checks_input_size_against_the_loaded_models_stride() -> None:
    from sparse_pose_ros.ros.parameters import check, input_size_for_model

    assert check("input_size", 80) is None  # fits a stride-16 model: the table cannot know more
    assert "multiple of 32" in (input_size_for_model(80, 32) or "")
    assert input_size_for_model(0, 32) is None and input_size_for_model(96, 32) is None
    assert "multiple of 16" in (check("input_size", 72) or "")


def test_bf16_strips_is_f32_under_a_latency_budget() -> None:
    from sparse_pose_ros.runtime.options import (
        OPENVINO_PRECISION_DEFAULT,
        OPENVINO_PRECISIONS,
        precision_under_budget,
    )

    assert OPENVINO_PRECISION_DEFAULT in OPENVINO_PRECISIONS
    assert precision_under_budget("bf16_strips", budget_on=True) == "f32"
    assert precision_under_budget("bf16_strips", budget_on=False) == "bf16_strips"
    for other in ("f32", "bf16", "f16", "auto"):  # a precision the user forced stays
        assert precision_under_budget(other, budget_on=True) == other
