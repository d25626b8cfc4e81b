"""pose_node's second session for the tracking crops (crop_input_size) and spin_wait, in
process with real rclpy: what gets loaded, what /diagnostics says, and the fallback when the
file cannot run at the crop size."""

from __future__ import annotations

import time

import pytest
import rclpy
from rclpy.parameter import Parameter

from sparse_pose_ros.backends.base import BackendError
from sparse_pose_ros.pipeline.roi import CROP_INPUT_SIZE
from sparse_pose_ros.ros import pose_node as pose_node_module
from sparse_pose_ros.ros.parameters import crop_engine_path
from sparse_pose_ros.ros.pose_node import PoseNode


def _ready(node: PoseNode, timeout: float = 60.0) -> dict:
    """Diagnostics once the worker has (re)loaded the model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        values = node.diagnostics_values()[2]
        if values["model_state"] == "ready" and not node._reload:
            return values
        time.sleep(0.05)
    raise AssertionError(f"model not ready: {node.diagnostics_values()}")


@pytest.fixture
def make_node(tiny_model):
    made: list[tuple[PoseNode, rclpy.Context]] = []

    def make(**params: object) -> PoseNode:
        context = rclpy.Context()
        rclpy.init(context=context)
        overrides = [Parameter("model_file_path", value=str(tiny_model)),
                     Parameter("backend", value="torch")]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        node = PoseNode(context=context, parameter_overrides=overrides)
        made.append((node, context))
        return node

    yield make
    for node, context in made:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_crops_get_their_own_session_at_crop_input_size(make_node):
    node = make_node()  # defaults: crop_input_size 224, the tiny model's own size is 64
    values = _ready(node)
    assert (values["input_size"], values["crop_input_size"]) == (64, CROP_INPUT_SIZE)
    est = node._estimator
    assert est.backend.info.input_size == 64
    assert est.crop_backend.info.input_size == CROP_INPUT_SIZE
    assert est.crop_backend is not est.backend
    assert est.backends == (est.backend, est.crop_backend)  # both warmed, thresholded, closed
    assert values["spin_wait"] is False  # off by default (README: ~2 ms for 2x the CPU)
    # the mask threshold reaches both sessions
    node._set_threshold(0.7)
    assert {b.mask_threshold for b in (est.backend, est.crop_backend)} == {0.7}
    # 0 = the crops at input_size: one session again (a reload)
    assert node.set_parameters([Parameter("crop_input_size", value=0)])[0].successful
    values = _ready(node)
    assert values["crop_input_size"] == 64 and node._estimator.crop_backend is node._backend


def test_bad_crop_sizes_are_refused(make_node):
    node = make_node(crop_input_size=0)
    _ready(node)
    result = node.set_parameters([Parameter("crop_input_size", value=50)])[0]
    assert not result.successful and "multiple of 16" in result.reason
    assert node.get_parameter("crop_input_size").value == 0


def test_a_file_that_cannot_run_at_the_crop_size_keeps_one_session(make_node, monkeypatch):
    """An exported .onnx or engine has one input size: the crops then run at it, a warning
    says why, and the model still loads."""
    real = pose_node_module.create_backend

    def one_size_only(name, path, options=None, **kw):
        if options is not None and options.input_size == CROP_INPUT_SIZE:
            raise BackendError(f"model.onnx was exported at 64 px, not {CROP_INPUT_SIZE}")
        return real(name, path, options=options, **kw)

    monkeypatch.setattr(pose_node_module, "create_backend", one_size_only)
    node = make_node()
    values = _ready(node)
    assert values["model_state"] == "ready" and values["crop_input_size"] == 64
    assert node._estimator.crop_backend is node._backend


def test_crop_engine_goes_beside_the_frame_engine():
    assert crop_engine_path("/x/pose.engine", 224) == "/x/pose_crop224.engine"
    assert crop_engine_path("pose.plan", 192) == "pose_crop192.plan"


@pytest.fixture(scope="module")
def dense_tiny(tmp_path_factory):
    import torch

    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                    depth_bins=8, gated=False))
    path = tmp_path_factory.mktemp("dense") / "dense.safetensors"
    save_checkpoint(path, net, {"untrained": True, "purpose": "ROS tests"})
    return path


def test_strips_of_the_crop_get_their_own_sessions(make_node, dense_tiny):
    """crop_input_widths: a dense model gets a session per strip of the 224-px crop (the
    defaults 64 to 192), named in /diagnostics and warmed, thresholded and closed with the
    others; [0] turns them off; bad widths are refused with a reason."""
    node = make_node(model_file_path=str(dense_tiny))
    values = _ready(node)
    est = node._estimator
    assert values["crop_input_widths"] == "64,96,128,160,192"
    assert [b.info.input_hw for b in est.strip_backends] == [
        (224, w) for w in (64, 96, 128, 160, 192)]
    assert est.backends == (est.backend, est.crop_backend, *est.strip_backends)
    assert node.set_parameters([Parameter("crop_input_widths", value=[0])])[0].successful
    values = _ready(node)
    assert values["crop_input_widths"] == "none" and node._estimator.strip_backends == ()
    for bad, why in (([50], "multiples of"), ([32] * 9, "at most 8")):
        result = node.set_parameters([Parameter("crop_input_widths", value=bad)])[0]
        assert not result.successful and why in result.reason
    # a width not below the crop's side is left out with a warning; the others load
    assert node.set_parameters([Parameter("crop_input_widths", value=[128, 224])])[0].successful
    assert _ready(node)["crop_input_widths"] == "128"


def test_a_gated_model_runs_its_crops_as_squares(make_node, monkeypatch):
    """The masks of a gated model are square: no strip session is even tried (one warning
    says why) and the node keeps running on the square crops."""
    real = pose_node_module.create_backend
    widths: list = []

    def recording(name, path, options=None, **kw):
        widths.append(options.input_width if options is not None else None)
        return real(name, path, options=options, **kw)

    monkeypatch.setattr(pose_node_module, "create_backend", recording)
    node = make_node()  # the tiny gated model, default crop_input_widths
    values = _ready(node)
    assert values["model_state"] == "ready" and values["crop_input_widths"] == "none"
    assert node._estimator.strip_backends == ()
    assert widths and all(w is None for w in widths)  # the frame's and the crop's sessions


class _WarningsOf:
    """A node's logger that also keeps the text of every warning."""

    def __init__(self, inner, seen: list[str]) -> None:
        self._inner, self._seen = inner, seen

    def warning(self, message: str, **kw: object) -> object:
        self._seen.append(message)
        return self._inner.warning(message, **kw)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_a_gated_model_reads_its_crops_at_crop_input_size(make_node, dense_tiny, monkeypatch):
    """A gated model's tracking crops run at crop_input_size like a dense model's (the shipped
    sparse checkpoint scores as well at 224 as at its own 256, for fewer MACs), without a
    warning; crop_input_size 0 reads them at the model's own size."""
    seen: list[str] = []
    real = PoseNode.get_logger
    monkeypatch.setattr(PoseNode, "get_logger", lambda self: _WarningsOf(real(self), seen))
    node = make_node()  # the tiny gated model (64 px), crop_input_size 224
    _ready(node)
    assert node._estimator.crop_backend.info.gated
    assert node._estimator.crop_backend.info.input_size == CROP_INPUT_SIZE
    assert not [m for m in seen if m.startswith("crop_input_size")]
    assert node.set_parameters([Parameter("crop_input_size", value=0)])[0].successful
    _ready(node)
    crop = node._estimator.crop_backend
    assert crop is None or crop.info.input_size == node._estimator.backend.info.input_size
    _ready(make_node(model_file_path=str(dense_tiny)))
    assert not [m for m in seen if m.startswith("crop_input_size")]


def _frames(node: PoseNode, count: int, timeout: float = 60.0) -> dict:
    """Hand the node ``count`` camera frames one at a time (each once the previous one is
    processed); its diagnostics after the last."""
    import numpy as np
    from sensor_msgs.msg import Image

    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for _ in range(count):
        done = node.diagnostics_values()[2]["frames_processed"]
        msg = Image(width=160, height=120, encoding="rgb8", step=160 * 3, data=rgb.tobytes())
        msg.header.frame_id = "cam"
        node._on_image(msg)
        deadline = time.monotonic() + timeout
        while node.diagnostics_values()[2]["frames_processed"] == done:
            assert time.monotonic() < deadline, node.diagnostics_values()
            time.sleep(0.01)
    return node.diagnostics_values()[2]


def test_a_budget_moves_a_dense_models_strip_floor(make_node, dense_tiny):
    """A dense model has no mask threshold: on the default path the budget moves a floor under
    the strip width instead, on tracked frames only — a generous budget raises it towards the
    square crop, an unreachable one drops it to none (the margin's own choice); off, no
    floor."""
    common = {"model_file_path": str(dense_tiny), "track_person": True,
              "confidence_threshold": 0.0}  # every frame finds "a person": tracked after one
    node = make_node(**common, target_latency_ms=0.0)
    _ready(node)
    values = _frames(node, 3)
    assert values["latency_budget"] == "off" and values["strip_floor_px"] == 0.0

    generous = make_node(**common, target_latency_ms=10000.0)
    _ready(generous)
    values = _frames(generous, 1)  # the first frame is whole: nothing for the floor to do
    assert values["latency_budget"].startswith("inactive: a whole frame"), values
    assert values["strip_floor_px"] == 0.0
    values = _frames(generous, 8)
    assert values["latency_budget"] == "adapting"
    assert values["strip_floor_px"] > 64, values  # above the narrowest strip
    assert generous._estimator.strip_floor * CROP_INPUT_SIZE == pytest.approx(
        values["strip_floor_px"], abs=0.1)
    assert values["strip_margin"] == 1.2  # the margin is the user's, untouched
    # the budget turned off: no floor again
    assert generous.set_parameters([Parameter("target_latency_ms", value=0.0)])[0].successful
    assert generous._estimator.strip_floor == 0.0

    tight = make_node(**common, target_latency_ms=0.01)
    _ready(tight)
    values = _frames(tight, 6)
    # no floor: the person's width set each strip, and a lower floor cannot help
    assert values["strip_floor_px"] == 0.0
    assert values["latency_budget"].startswith("inactive: the person's width"), values


def test_a_dense_model_without_strips_leaves_the_budget_inactive(make_node, dense_tiny):
    node = make_node(model_file_path=str(dense_tiny), track_person=True,
                     confidence_threshold=0.0, crop_input_widths=[0], target_latency_ms=0.01,
                     recheck_ratio=0.0)  # an untrained crop's confidence may fall: no re-read
    _ready(node)
    values = _frames(node, 3)
    assert values["latency_budget"].startswith("inactive: dense model without strips"), values


def test_a_fall_in_confidence_is_read_twice_counted_and_left_out_of_the_budget(
    make_node, dense_tiny
):
    """recheck_ratio: a tracked frame below the track's level is read whole as well; the node
    counts it and no budget controller moves on its (two reads') latency."""
    node = make_node(model_file_path=str(dense_tiny), track_person=True,
                     confidence_threshold=0.0, crop_input_widths=[0], target_latency_ms=0.01)
    _ready(node)
    values = _frames(node, 1)  # a whole frame: the track starts
    assert values["rechecks"] == 0 and values["recheck_ratio"] == 0.75
    node._estimator._track.level = 1e9  # any tracked confidence is now a fall
    values = _frames(node, 1)
    assert values["rechecks"] == 1, values
    assert values["latency_budget"] == "inactive: the frame was read twice (recheck_ratio)"
    node._estimator.recheck_ratio = 0.0
    node._estimator._track.level = 1e9
    assert _frames(node, 1)["rechecks"] == 1  # off: not read again


def test_bf16_strips_run_f32_while_a_budget_is_on(make_node):
    """openvino_precision bf16_strips gives the sessions f32 while target_latency_ms > 0 (the
    budget's ladder needs the strips' and the square's costs evenly spaced), and turning the
    budget on or off reopens sessions that were given the other precision; a backend without
    a precision (torch here) is not reopened for it."""
    node = make_node(openvino_precision="bf16_strips", whole_frame_sizes=[0])
    _ready(node)
    assert node._openvino_precision() == "bf16_strips" and node._loaded_precision is None
    assert node.set_parameters([Parameter("target_latency_ms", value=10.0)])[0].successful
    assert node._openvino_precision() == "f32" and not node._reload  # torch: nothing to reopen
    node._loaded_precision = "f32"  # as an OpenVINO load under this budget leaves it
    assert node.set_parameters([Parameter("target_latency_ms", value=12.0)])[0].successful
    assert not node._reload  # still under a budget: still f32
    assert node.set_parameters([Parameter("target_latency_ms", value=0.0)])[0].successful
    assert node._reload and node._openvino_precision() == "bf16_strips"
    _ready(node)


def test_a_budget_shrinks_a_dense_models_whole_frames(make_node, dense_tiny):
    """Whole frames read no strip: a second controller, fed by them only, reads them at one of
    whole_frame_sizes — an unreachable budget shrinks them to the smallest, a generous one
    keeps the model's own size, off restores it; the sessions are opened only while a budget
    is on; /diagnostics names the sizes and the one in use; sizes not below input_size are
    left out."""
    common = {"model_file_path": str(dense_tiny), "track_person": True, "input_size": 128,
              "confidence_threshold": 1.0,  # nobody is ever found: every frame is whole
              "whole_frame_sizes": [64, 96, 128, 160]}
    node = make_node(**common, target_latency_ms=0.0)
    values = _ready(node)  # no budget: no session is opened for it
    assert values["whole_frame_sizes"] == "none" and values["whole_input_size"] == 128
    values = _frames(node, 2)
    assert values["latency_budget"] == "off" and values["whole_input_size"] == 128
    # a budget turned on at run time opens them (a reload), and shrinks whole frames
    assert node.set_parameters([Parameter("target_latency_ms", value=0.01)])[0].successful
    values = _ready(node)
    assert values["whole_frame_sizes"] == "64,96", values
    values = _frames(node, 12)
    assert values["whole_input_size"] == 64, values

    tight = make_node(**common, target_latency_ms=0.01)
    _ready(tight)
    values = _frames(tight, 12)
    assert values["latency_budget"] == "adapting", values
    assert values["whole_input_size"] == 64, values
    assert values["frames_tracked"] == 0
    # the budget turned off: the model's own size again
    assert tight.set_parameters([Parameter("target_latency_ms", value=0.0)])[0].successful
    assert tight.diagnostics_values()[2]["whole_input_size"] == 128

    generous = make_node(**common, target_latency_ms=10000.0)
    _ready(generous)
    values = _frames(generous, 4)
    assert values["whole_input_size"] == 128 and values["latency_budget"] == "adapting"

    none = make_node(**{**common, "whole_frame_sizes": [0]}, target_latency_ms=0.01)
    values = _ready(none)
    assert values["whole_frame_sizes"] == "none"
    values = _frames(none, 2)
    assert values["latency_budget"].startswith("inactive: a whole frame"), values


def test_whole_frame_engines_go_beside_the_frames_engine(make_node, dense_tiny, monkeypatch,
                                                         tmp_path):
    """With tensorrt and engine_file_path, each whole-frame size gets an engine of its own
    beside the frame's (as the crops do), never the frame's file."""
    real = pose_node_module.create_backend
    calls: list[tuple] = []

    def recording(name, path, options=None, **kw):  # records what the node asks; runs torch
        calls.append((options.input_size, options.input_width, kw.get("engine_file_path")))
        return real("torch", path, options=options)

    monkeypatch.setattr(pose_node_module, "create_backend", recording)
    engine = tmp_path / "pose.engine"
    node = make_node(model_file_path=str(dense_tiny), backend="tensorrt", input_size=128,
                     engine_file_path=str(engine), crop_input_widths=[0],
                     whole_frame_sizes=[64, 96], target_latency_ms=10.0)
    assert _ready(node)["whole_frame_sizes"] == "64,96"
    asked = {(size, path) for size, width, path in calls if not width}
    assert (128, str(engine)) in asked
    assert {(64, str(tmp_path / "pose_crop64.engine")),
            (96, str(tmp_path / "pose_crop96.engine"))} <= asked


def test_the_node_leaves_the_cores_to_its_runtime(make_node):
    """OpenCV's pool is one thread in the node's process (pipeline.preprocess.OPENCV_THREADS:
    measured less latency jitter with the runtime's pinned threads)."""
    import cv2

    from sparse_pose_ros.pipeline.preprocess import OPENCV_THREADS

    cv2.setNumThreads(2)
    make_node()
    assert cv2.getNumThreads() == OPENCV_THREADS == 1


def test_auto_on_a_gated_model_gets_its_crop_session(make_node):
    """``backend: auto`` offers OpenVINO's precision; when it picks sparse-cpu for a gated
    model (which takes no precision) the crop session is made with what sparse-cpu takes —
    the model loads instead of failing on every frame."""
    node = make_node(backend="auto", device="cpu")
    values = _ready(node)
    est = node._estimator
    assert values["model_state"] == "ready"
    assert est.crop_backend.name == est.backend.name
    assert est.crop_backend.info.input_size == CROP_INPUT_SIZE


def test_sparse_precision_reaches_every_sparse_session(make_node):
    """sparse_precision goes to sparse-cpu's kernel_precision (through auto too): auto is bf16
    where it was measured faster (AMX; AVX512-BF16 on AMD), f32 stays f32, and the crop session
    gets the same."""
    from sparse_pose_ros.sparse.executor import bf16_preferred

    expected = "bf16" if bf16_preferred() else "f32"
    for backend, precision, want in (("auto", "auto", expected), ("sparse-cpu", "f32", "f32")):
        node = make_node(backend=backend, device="cpu", sparse_precision=precision)
        assert _ready(node)["model_state"] == "ready"
        est = node._estimator
        assert est.backend.name == "sparse-cpu"
        assert est.backend.precision == est.crop_backend.precision == want
