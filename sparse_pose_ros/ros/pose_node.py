"""pose_node: sensor_msgs/Image (+ CameraInfo) -> 3D skeleton, markers, execution mask, diagnostics.

Threading: the executor thread only runs callbacks that return at once. Inference runs on one
worker thread that owns the backend (loading, threshold changes, inference), so a slow frame
never blocks parameter services, camera_info or diagnostics. The image callback hands a frame to
the worker only when it is idle (a newer frame replaces one not yet picked up); a frame arriving
while it is busy is counted as *dropped*, never queued, so the node always works on a recent frame
and latency cannot grow without bound.

Failure policy: every bad input (undecodable image, bad intrinsics, failed inference) is counted
in /diagnostics and logged at most once per ``LOG_THROTTLE_SEC`` per kind; the next good frame is
processed normally. A missing or unloadable model does not stop the node: it logs an error that
names the path and how to get a model, publishes /diagnostics with level ERROR, drops frames, and
loads the model as soon as ``model_file_path`` is set to a usable file.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..backends.base import (
    Backend,
    BackendError,
    BackendOptions,
    ModelInfo,
    accepted_options,
    create_backend,
)
from ..control.latency_budget import (
    BudgetConfig,
    LatencyBudgetController,
    budget_status,
    control_step,
)
from ..image_codec import ImageDecodeError
from ..model.checkpoint import CheckpointError
from ..pipeline.draw import mask_overlay
from ..pipeline.estimator import PoseEstimator, PoseResult, open_whole_sessions
from ..pipeline.lift import Intrinsics
from ..pipeline.preprocess import limit_opencv_threads
from ..pipeline.smoothing import PoseSmoother, SmoothingConfig
from ..pipeline.stats import ArrivalRates, RollingStats
from ..pipeline.strip_budget import apply_strip_level, floor_decides, strip_budget_config
from ..pipeline.whole_budget import apply_whole_level, whole_budget_config
from ..runtime.options import precision_under_budget
from . import convert, middleware
from .parameters import (
    ESTIMATOR_PARAMS,
    MODEL_HELP,
    PARAMS,
    PARAMS_BY_NAME,
    TENSORRT_OPTIONS,
    check,
    crop_engine_path,
    input_size_for_model,
    resolve_model_path,
)
from .qos import IMAGE_QOS, OUTPUT_QOS

LOG_THROTTLE_SEC = 5.0
#: DiagnosticStatus.name = DIAG_PREFIX + the node's fully qualified name (one status per node).
DIAG_PREFIX = "sparse_pose_ros: "



#: Appended to the transport-loss warning: where the fix is.
TRANSPORT_HELP = (
    "camera-sized images need a larger Fast DDS shared-memory segment in the camera driver's "
    f"process: {middleware.PROFILE_ENV}=<share>/config/{middleware.PROFILE_FILE} "
    "(README, 'Camera frames over DDS')"
)


class StartupParameterError(ValueError):
    """Bad parameter values at start-up: one line per parameter (name, value, valid range)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class _Frame:
    msg: Image
    received_s: float


def _load_hint(path: str, exc: BaseException) -> str:
    """What to do about a failed load: "get a model" only when the model file is the problem
    (missing or unreadable), otherwise the parameters that chose backend, device and size."""
    if not Path(path).is_file() or isinstance(exc, CheckpointError) or isinstance(
            exc.__cause__, CheckpointError):
        return MODEL_HELP[0].upper() + MODEL_HELP[1:]
    return ("Check the backend, device and input_size parameters "
            "(`ros2 param describe /pose_node <name>`)")


def training_note(info: ModelInfo) -> str:
    """The startup log's sentence on the loaded model's training record (``info.training``,
    read by the backend with the model; the node reads no model file itself).

    A checkpoint whose record is empty (or says ``untrained``) is reported as such: the node
    still runs that real network, but its poses mean nothing and the user must know.
    """
    path, meta = info.source, info.training
    if meta is None:
        return f"model {path} (no checkpoint metadata to inspect)"
    if not info.trained:
        return (
            f"checkpoint {path} carries NO training record: the network runs with these weights "
            f"but its poses are not meaningful ({MODEL_HELP})"
        )
    short = [f"{k}={v}" for k, v in sorted(meta.items())
             if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 60)]
    return f"checkpoint {path} has a training record: {', '.join(short)[:300]}"


def _precision(backend: Backend | None, strips: Sequence[Backend]) -> str:
    """What the whole-frame session compiled to (OpenVINO) or was built for (TensorRT), f32 for
    the others; with ``bf16_strips`` the strips' too, where they differ ("f32, strips bf16")."""
    if backend is None:
        return ""
    own = getattr(backend, "precision", "f32")
    other = sorted({getattr(s, "precision", "f32") for s in strips} - {own})
    return f"{own}, strips {'/'.join(other)}" if other else own


class PoseNode(Node):
    """See the module docstring. Parameters: ``ros.parameters.PARAMS``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("pose_node", **kwargs)
        limit_opencv_threads()  # the runtime owns the cores (pipeline.preprocess says why)
        # State that destroy_node() needs comes first: rclpy destroys a half-built node at
        # context shutdown, e.g. after a bad start-up parameter.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._worker: threading.Thread | None = None
        self._backend: Backend | None = None
        self._estimator: PoseEstimator | None = None  # owns the backend's sessions
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._pending: _Frame | None = None
        self._busy = False
        self._reload = True
        self._threshold_dirty = True
        self._counts: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._stats = RollingStats()
        self._intrinsics: Intrinsics | None = None
        self._arrivals = ArrivalRates()
        self._model_state = "loading"
        self._model_error = ""
        self._trained = False
        # the OpenVINO precision the loaded sessions were given (None: a backend without one)
        self._loaded_precision: str | None = None
        self._last_intrinsics_source = "none"
        self._budget = self._make_budget()
        self._threshold = float(self._p("mask_threshold"))
        #: the budget's knob on a dense model that reads strips (``pipeline.strip_budget``)
        self._strip_budget = self._make_strip_budget()
        #: its knob on whole frames: the size they are read at (``pipeline.whole_budget``)
        self._whole_budget = self._make_whole_budget()
        self._smoother = self._make_smoother()
        self._budget_idle: str | None = None  # why the last frame gave the budget nothing to do
        #: the controller the last frame's latency belonged to (threshold, strip floor, whole size)
        self._budget_acting: LatencyBudgetController | None = None

        model = resolve_model_path(self._p("model_file_path"))
        if not model.is_file():
            self._model_state = "error"
            self._model_error = f"model file not found: {model}"
            self.get_logger().error(
                f"model file not found: {model}. {MODEL_HELP[0].upper()}{MODEL_HELP[1:]}; then "
                "set model_file_path. The node stays up and reports ERROR on /diagnostics."
            )
            self._reload = False

        self._pose_pub = self.create_publisher(PoseArray, "pose3d", OUTPUT_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, "pose3d/markers", OUTPUT_QOS)
        self._mask_pub = self.create_publisher(Image, "pose/mask", OUTPUT_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Image, "image", self._on_image, IMAGE_QOS)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, IMAGE_QOS)
        self._diag_timer = self.create_timer(
            self._p("diagnostics_period_sec"), self._publish_diagnostics
        )
        self._worker = threading.Thread(target=self._work, name="pose_inference", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        """Declare every parameter and check the start-up values like a later change would be.

        rclpy checks only the descriptor's range and type at declaration (and then raises a
        bare exception); our validators (choices, multiples of 16, open intervals) would not run
        at all. Every bad value is collected and reported at once by
        :class:`StartupParameterError`. ``model_file_path`` is exempt: a missing model keeps the
        node up with ERROR diagnostics so it can be set later (see the module docstring).
        """
        problems: list[str] = []
        # rclpy keeps the command-line/YAML overrides here (an attribute since Dashing); read
        # only to name a value that the declaration itself refused.
        overrides = getattr(self, "_parameter_overrides", {})
        for spec in PARAMS:
            try:
                value = self.declare_parameter(spec.name, spec.default, spec.descriptor()).value
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                self.declare_parameter(spec.name, spec.default, spec.descriptor(),
                                       ignore_override=True)
                given = overrides[spec.name].value if spec.name in overrides else None
                problems.append(check(spec.name, given) or f"{spec.name}: {exc}")
                continue
            reason = None if spec.name == "model_file_path" else check(spec.name, value)
            if reason:
                problems.append(reason)
        if problems:
            raise StartupParameterError(problems)

    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        names = {p.name for p in params}
        backend = self._backend
        for p in params:
            reason = check(p.name, p.value)
            if (reason is None and p.name in ("input_size", "crop_input_size")
                    and backend is not None
                    and "model_file_path" not in names):  # the loaded model's own stride
                reason = input_size_for_model(p.value, backend.info.output_stride)
            if reason:
                self.get_logger().warning(f"rejected parameter: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        names = {p.name for p in params}
        with self._lock:
            if any(PARAMS_BY_NAME[n].reload for n in names if n in PARAMS_BY_NAME):
                self._reload = True
                self._model_state = "loading"
            if "mask_threshold" in names or "target_latency_ms" in names:
                self._threshold_dirty = True
                self._budget = self._make_budget()
            if "target_latency_ms" in names:
                self._strip_budget = self._make_strip_budget()
                self._whole_budget = self._make_whole_budget()
                if self._whole_sessions_missing():  # a budget turned on: open them
                    self._reload = True
                    self._model_state = "loading"
                if self._loaded_precision not in (None, self._openvino_precision()):
                    self._reload = True  # bf16_strips runs f32 under a budget: reopen
                    self._model_state = "loading"
            if names & {"smoothing_min_cutoff_hz", "smoothing_beta", "track_person"}:
                self._smoother = self._make_smoother()
        estimator = self._estimator
        if estimator is not None:
            for name in ESTIMATOR_PARAMS:
                if name in names:
                    setattr(estimator, name, self._p(name))
            if "track_person" in names:
                estimator.reset_tracking()
            if "target_latency_ms" in names:
                self._apply_budget_knobs(estimator)
        if "diagnostics_period_sec" in names:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(
                self._p("diagnostics_period_sec"), self._publish_diagnostics
            )

    def _openvino_precision(self) -> str:
        """``openvino_precision`` as the sessions get it: bf16_strips runs f32 while a latency
        budget is on (``runtime.options.precision_under_budget``)."""
        return precision_under_budget(self._p("openvino_precision"),
                                      float(self._p("target_latency_ms")) > 0)

    def _make_budget(self) -> LatencyBudgetController:
        """A fresh controller for the current target, starting from ``mask_threshold``.

        The start is clamped into the controller's bounds; with the budget off the controller
        never moves, so ``mask_threshold`` is used exactly as set.
        """
        base = BudgetConfig()
        start = min(max(float(self._p("mask_threshold")), base.min_threshold), base.max_threshold)
        target = float(self._p("target_latency_ms"))
        return LatencyBudgetController(BudgetConfig(
            target_latency_ms=target,
            initial_threshold=start if target > 0 else base.initial_threshold,
        ))

    def _make_strip_budget(self) -> LatencyBudgetController:
        """A fresh strip-floor controller for the current target, starting with no floor
        (``pipeline.strip_budget``)."""
        return LatencyBudgetController(strip_budget_config(float(self._p("target_latency_ms"))))

    def _apply_budget_knobs(self, estimator: PoseEstimator) -> None:
        """The dense path's knobs as the budget's controllers have them while it is on, else
        none: no floor under the strip width, whole frames at the model's own size."""
        if self._strip_budget.enabled:
            apply_strip_level(estimator, self._strip_budget.threshold)
        else:
            estimator.strip_floor = 0.0
        if self._whole_budget.enabled:
            apply_whole_level(estimator, self._whole_budget.threshold)
        else:
            estimator.whole_cap = 0

    def _make_whole_budget(self) -> LatencyBudgetController:
        """A fresh whole-frame-size controller for the current target, starting at the model's
        own size (``pipeline.whole_budget``)."""
        return LatencyBudgetController(whole_budget_config(float(self._p("target_latency_ms"))))

    def _whole_sessions_missing(self) -> bool:
        """Whether a budget is on for a dense model whose whole-frame sessions were not opened
        (they are opened only while a budget is on: ``_make_whole_backends``)."""
        estimator, backend = self._estimator, self._backend
        return (estimator is not None and backend is not None and not backend.info.gated
                and self._whole_budget.enabled and not estimator.whole_backends
                and any(int(s) for s in self._p("whole_frame_sizes")))

    def _make_smoother(self) -> PoseSmoother:
        """A fresh 3D smoother for the current parameters (a change starts the stream over)."""
        return PoseSmoother(SmoothingConfig(
            min_cutoff_hz=float(self._p("smoothing_min_cutoff_hz")),
            beta=float(self._p("smoothing_beta")),
        ))

    def _current_threshold(self) -> float:
        return self._budget.threshold if self._budget.enabled else float(self._p("mask_threshold"))

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self._arrivals.image(now)
        with self._lock:
            self._counts["received"] += 1
            if self._busy or self._backend is None:
                self._counts["dropped"] += 1
                return
            if self._pending is not None:  # not picked up yet: the newer frame replaces it
                self._counts["dropped"] += 1
            self._pending = _Frame(msg, now)
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._arrivals.camera_info(time.monotonic())
        with self._lock:
            self._counts["camera_info_received"] += 1
        try:
            intr = convert.camera_info_to_intrinsics(msg)
        except ValueError as exc:
            self._count_bad("camera_info_invalid", f"invalid camera_info ignored ({exc}); "
                            f"using the nominal {self._p('nominal_hfov_deg')}° field of view")
            intr = None
        with self._lock:
            self._intrinsics = intr

    def _count_bad(self, kind: str, message: str) -> None:
        """Count one bad input and log it, at most once per LOG_THROTTLE_SEC per kind."""
        now = time.monotonic()
        with self._lock:
            self._counts[kind] += 1
            last = self._last_log.get(kind, -1e9)
            if now - last < LOG_THROTTLE_SEC:
                return
            self._last_log[kind] = now
        self.get_logger().warning(message)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self._reload and self._pending is None:
                    self._wake.wait(timeout=0.5)
                if self._stop:
                    return
                reload, frame = self._reload, self._pending
                self._reload = False
                self._pending = None
                self._busy = True
            try:
                if reload:
                    self._load_backend()
                elif frame is not None:
                    self._process(frame)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any one frame
                self._count_bad("internal_error", f"frame processing failed: {exc!r}")
            finally:
                with self._lock:
                    self._busy = False

    def _close_backends(self) -> None:
        for b in self._estimator.backends if self._estimator is not None else ():
            b.close()
        self._backend = self._estimator = None

    def _set_threshold(self, threshold: float) -> None:
        """The mask threshold of every session of the model (whole frame and crops)."""
        for b in self._estimator.backends if self._estimator is not None else ():
            b.set_mask_threshold(threshold)

    def _make_crop_backend(self, backend: Backend, path: str, options: BackendOptions,
                           own: dict[str, Any]) -> Backend:
        """The model at crop_input_size for the tracking crops (the backend auto picked), or
        ``backend`` itself when the sizes agree or the file cannot run at another size (an
        exported .onnx / engine has one): a warning says so and the node keeps running."""
        crop = self._p("crop_input_size")
        if not crop or crop == backend.info.input_size:
            return backend
        if own.get("engine_file_path"):  # the crop engine must not overwrite the frame's
            own = {**own, "engine_file_path": crop_engine_path(own["engine_file_path"], crop)}
        try:
            return create_backend(backend.name, path, options=dataclasses.replace(
                options, input_size=crop), **own)
        except (BackendError, ValueError, OSError, RuntimeError) as exc:
            self.get_logger().warning(
                f"crop_input_size {crop}: cannot run {path} at that size ({exc}); tracking "
                f"crops run at input {backend.info.input_size} like whole frames")
            return backend

    def _make_strip_backends(self, crop: Backend, path: str, options: BackendOptions,
                             own: dict[str, Any]) -> list[Backend]:
        """A session per ``crop_input_widths`` strip of the tracking crop (0 entries skipped);
        one that cannot be made (a gated model, tensorrt, a width not below the crop's size)
        is left out with a warning, and the node keeps running on the squares."""
        strips: list[Backend] = []
        size = crop.info.input_size
        widths = sorted({int(w) for w in self._p("crop_input_widths") if w})
        if widths and crop.info.gated:  # one line, not one per width: it is the model's nature
            self.get_logger().warning(
                f"crop_input_widths {widths}: {path} is a gated model, whose masks are square: "
                "its tracking crops stay square (set crop_input_widths: [0] to say so)")
            return strips
        for width in widths:
            try:
                if width >= size:
                    raise ValueError(f"not below crop_input_size {size}")
                strips.append(create_backend(crop.name, path, options=dataclasses.replace(
                    options, input_size=size, input_width=width), **own))
            except (BackendError, ValueError, OSError, RuntimeError) as exc:
                self.get_logger().warning(
                    f"crop_input_widths {width}: cannot run {path} on a {size}x{width} strip "
                    f"({exc}); tracking crops use the other widths and the square")
        return strips

    def _make_whole_backends(self, backend: Backend, crop: Backend, path: str,
                             options: BackendOptions, own: dict[str, Any]) -> list[Backend]:
        """A session per ``whole_frame_sizes`` side below the whole frame's (0 entries skipped;
        the crop's square session where it has that side); one that cannot be made (a gated
        model, an exported file of one size) is left out with a warning, and whole frames keep
        the model's own size. None while no budget is on: only the budget reads them, and on a
        GPU each is one more TensorRT engine to build (turning a budget on reloads)."""
        sizes = sorted({int(s) for s in self._p("whole_frame_sizes") if s})
        if not sizes or float(self._p("target_latency_ms")) <= 0:
            return []
        if backend.info.gated:  # one line: its budget's knob is the mask threshold
            self.get_logger().warning(
                f"whole_frame_sizes {sizes}: {path} is a gated model, whose budget moves the "
                "mask threshold: its whole frames stay at input_size")
            return []
        def open_at(size: int, _width: int | None) -> Backend:
            at = own
            if own.get("engine_file_path"):  # an engine per size, beside the frame's
                at = {**own, "engine_file_path": crop_engine_path(own["engine_file_path"], size)}
            return create_backend(backend.name, path, options=dataclasses.replace(
                options, input_size=size), **at)

        wholes: list[Backend] = []
        for size in sizes:
            try:
                if size >= backend.info.input_size:
                    raise ValueError(f"not below input_size {backend.info.input_size}")
                wholes += open_whole_sessions(open_at, backend,
                                              crop if crop is not backend else None, [size])
            except (BackendError, ValueError, OSError, RuntimeError) as exc:
                self.get_logger().warning(
                    f"whole_frame_sizes {size}: cannot run {path} at that size ({exc}); the "
                    "budget reads whole frames at the other sizes")
        return wholes

    def _load_backend(self) -> None:
        self._close_backends()
        path = str(resolve_model_path(self._p("model_file_path")))
        name = self._p("backend")
        own: dict[str, Any] = {}
        if name == "tensorrt":  # empty path parameters mean "backend default" (None)
            own = {k: (self._p(k) if self._p(k) != "" else None) for k in TENSORRT_OPTIONS}
        elif name in ("openvino", "auto"):  # auto hands it only to a backend that takes it
            own = {"precision": self._openvino_precision()}
        if name in ("sparse-cpu", "auto"):
            own["kernel_precision"] = self._p("sparse_precision")
        try:
            options = BackendOptions(  # 0 = the model's / the backend's own choice
                device=self._p("device"),
                input_size=self._p("input_size") or None,
                mask_threshold=self._current_threshold(),
                num_threads=self._p("num_threads") or None,
                head_gating=self._p("head_gating"),
                spin_wait=self._p("spin_wait"),
            )
            backend = create_backend(name, path, options=options, **own)
            if name == "auto":  # the crop, strip and whole-frame sessions are of the picked
                # backend, which may not take what auto offered (sparse-cpu: no precision)
                own = accepted_options(backend.name, own)
            crop = self._make_crop_backend(backend, path, options, own)
            estimator = PoseEstimator(
                backend, nominal_hfov_deg=self._p("nominal_hfov_deg"), crop_backend=crop,
                strip_backends=self._make_strip_backends(crop, path, options, own),
                whole_backends=self._make_whole_backends(backend, crop, path, options, own),
                **{key: self._p(key) for key in ESTIMATOR_PARAMS},
            )
            self._apply_budget_knobs(estimator)
            for b in estimator.backends:
                b.set_mask_threshold(self._current_threshold())
                b.warmup(1)
        except (BackendError, ValueError, OSError, RuntimeError) as exc:
            with self._lock:
                self._model_state, self._model_error = "error", str(exc)
            self.get_logger().error(f"cannot load model: {exc}. {_load_hint(path, exc)}")
            return
        trained = backend.info.trained
        (self.get_logger().info if trained else self.get_logger().warning)(
            training_note(backend.info))
        self.get_logger().info(
            f"backend {backend.name} ready: {backend.info.source} (hash "
            f"{backend.info.model_hash[:12]}), input {backend.info.input_size} (tracking crops "
            f"{estimator.crop_backend.info.input_size}, strips "
            f"{[b.info.input_width for b in estimator.strip_backends] or 'none'}, whole frames "
            f"under a budget {[b.info.input_size for b in estimator.whole_backends] or 'none'}"
            "), "
            f"{'gated' if backend.info.gated else 'dense'}, mask_threshold "
            f"{self._p('mask_threshold')}"
        )
        with self._lock:
            self._backend, self._estimator = backend, estimator
            self._smoother = self._make_smoother()  # a new model: nothing to smooth from
            self._model_state, self._model_error, self._trained = "ready", "", trained
            self._loaded_precision = own.get("precision")
            self._threshold_dirty = False

    def _process(self, frame: _Frame) -> None:
        started = time.monotonic()
        backend, estimator = self._backend, self._estimator
        if backend is None or estimator is None:  # the model failed to (re)load meanwhile
            with self._lock:
                self._counts["dropped"] += 1
            return
        with self._lock:
            threshold_dirty, self._threshold_dirty = self._threshold_dirty, False
            intr = self._intrinsics
            budget = self._budget
            strip_budget = self._strip_budget
            whole_budget = self._whole_budget
            smoother = self._smoother
        threshold = self._current_threshold()
        if threshold_dirty or threshold != self._threshold:
            self._set_threshold(threshold)
            self._threshold = threshold
        msg = frame.msg
        try:
            rgb = convert.image_to_rgb8(msg)
        except ImageDecodeError as exc:
            self._count_bad(f"invalid_{exc.reason}", f"dropping invalid image: {exc}")
            return
        h, w = rgb.shape[:2]
        if intr is not None and (intr.width, intr.height) != (w, h):
            self._count_bad("camera_info_mismatch", f"camera_info is for {intr.width}x"
                            f"{intr.height} but the image is {w}x{h}; using the nominal FOV")
            intr = None
        if intr is None:
            intr = Intrinsics.nominal(w, h, self._p("nominal_hfov_deg"))
        try:
            result = estimator.estimate(rgb, intr)
        except (ValueError, RuntimeError) as exc:
            self._count_bad("inference_error", f"inference failed on a {w}x{h} frame: {exc}")
            return
        stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        result = smoother.apply(result, stamp_s if stamp_s > 0 else frame.received_s)
        published = time.monotonic()
        self._publish(msg.header, rgb, result)
        done = time.monotonic()
        latency_ms = (done - frame.received_s) * 1e3
        # where the latency went: queued for the worker, the estimator (network and its pre-
        # and post-processing), the rest before publishing (decoding, smoothing), publishing
        estimate_ms = result.timings_ms.get("total", 0.0)
        self._stats.add(done, latency_ms, result.density, stages={
            "queue": (started - frame.received_s) * 1e3,
            "estimate": estimate_ms,
            "network": result.timings_ms.get("inference", 0.0),
            "other": max(0.0, (published - started) * 1e3 - estimate_ms),
            "publish": (done - published) * 1e3,
        })
        # Next frame's threshold, applied now (the same step the budget replay benchmark runs);
        # a no-op when the budget is off. Only a frame whose masks decided what ran says
        # anything about the threshold: on the others (a dense model; a region from the
        # previous pose, or every cell until a person is found) the loop holds still instead of
        # winding the threshold to a bound that changes nothing.
        idle: str | None = None
        acting = budget  # the controller this frame's latency belongs to (for /diagnostics)
        if result.rechecked:
            # two reads of one frame: its latency is no knob's doing, so no controller moves
            idle = "the frame was read twice (recheck_ratio)"
        elif not backend.info.gated:
            acting = whole_budget if result.roi is None else strip_budget
            # a dense model's knobs: a floor under the strip width, which only a tracked crop
            # reads, and the whole frame's size, which only a whole frame reads
            if result.roi is None:
                if not estimator.whole_backends:
                    idle = "a whole frame (no whole_frame_sizes to read it smaller)"
                elif whole_budget.enabled:
                    control_step(whole_budget, latency_ms, whole_budget.threshold,
                                 functools.partial(apply_whole_level, estimator))
            elif not estimator.strip_backends:
                idle = "dense model without strips (crop_input_widths, track_person)"
            elif strip_budget.enabled:
                if floor_decides(result, latency_ms, strip_budget.config.target_latency_ms):
                    control_step(strip_budget, latency_ms, strip_budget.threshold,
                                 functools.partial(apply_strip_level, estimator))
                else:
                    idle = "the person's width, not the floor, set the strip (over budget)"
        elif result.region_executed:
            idle = "the frame ran a region (region_from_pose / dense_until_found), not the masks"
        else:
            self._threshold = control_step(budget, latency_ms, self._threshold,
                                           self._set_threshold)
        with self._lock:
            self._budget_idle = idle
            self._budget_acting = acting
            self._counts["processed"] += 1
            self._counts["persons"] += int(result.person_found)
            self._counts["tracked"] += int(result.roi is not None)
            self._counts["rechecks"] += int(result.rechecked)
            self._last_intrinsics_source = result.intrinsics_source

    def _publish(self, header: Header, rgb: np.ndarray, result: PoseResult) -> None:
        joints = result.joints_m if result.person_found else None
        self._pose_pub.publish(convert.pose_array(joints, header))
        self._marker_pub.publish(convert.skeleton_markers(joints, header))
        # the mask picture is made only for a subscriber (RViz, a recorder): resampling the
        # blocks' masks to an HD frame, and for the overlay blending it, is work nobody reads
        if self._mask_pub.get_subscription_count() == 0:
            return
        if self._p("publish_mask_overlay"):
            mask_msg = convert.array_to_image(mask_overlay(rgb, result.mask), "rgb8", header)
        else:
            mask_msg = convert.array_to_image(result.mask, "mono8", header)
        self._mask_pub.publish(mask_msg)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics_values(self) -> tuple[bytes, str, dict[str, object]]:
        """(level, message, key/values) of the current state; also used by tests."""
        with self._lock:
            counts = dict(self._counts)
            state, error, trained = self._model_state, self._model_error, self._trained
            backend, estimator = self._backend, self._estimator
            intr_source = self._last_intrinsics_source
            budget_idle = self._budget_idle
            acting = self._budget_acting
        invalid = sum(v for k, v in counts.items() if k.startswith("invalid_"))
        now = time.monotonic()
        arrivals = self._arrivals.summary(now)
        loss = self._arrivals.loss_warning(now)
        values: dict[str, object] = {
            "model_state": state,
            "backend": backend.name if backend else "none",
            "model": backend.info.source if backend else str(
                resolve_model_path(self._p("model_file_path"))),
            "model_hash": backend.info.model_hash[:12] if backend else "",
            "model_trained": trained,
            "device": self._p("device"),
            "input_size": backend.info.input_size if backend else 0,
            # what pelvis / thorax / spine mean in /pose3d (README: joint order and definitions)
            "torso": ("midpoints" if backend.info.midpoint_torso else "as trained")
            if backend else "",
            # whose skeleton /pose3d carries when several people are in view (README)
            "person_choice": ("movenet_centre" if backend.info.person_prior else "heatmaps")
            if backend else "",
            # the body-size prior the metric depth is fitted to (README: 3D and scale)
            "bone_lengths": ("model" if backend.info.bone_lengths_m else "Human3.6M means")
            if backend else "",
            "crop_input_size": estimator.crop_backend.info.input_size if estimator else 0,
            "crop_input_widths": (",".join(str(b.info.input_width)
                                           for b in estimator.strip_backends) or "none"
                                  if estimator else ""),
            "num_threads": self._p("num_threads"),
            "spin_wait": self._p("spin_wait"),
            # the precision OpenVINO compiled to or TensorRT built for (README: openvino_precision)
            "precision": _precision(backend, estimator.strip_backends if estimator else ()),
            "mask_threshold": self._p("mask_threshold"),
            "mask_threshold_active": round(self._threshold, 4),
            "latency_budget": budget_status(acting or (
                self._strip_budget if backend is not None and not backend.info.gated
                else self._budget), budget_idle),
            # the budget's floor under the strip width, px of the crop (0: none)
            "strip_floor_px": round(estimator.strip_floor
                                    * estimator.crop_backend.info.input_size, 1)
            if estimator else 0.0,
            # the side whole frames are read at: the budget's whole-frame knob (input_size: none)
            "whole_input_size": estimator.whole_backend().info.input_size if estimator else 0,
            "whole_frame_sizes": (",".join(str(b.info.input_size)
                                           for b in estimator.whole_backends) or "none"
                                  if estimator else ""),
            "confidence_threshold": self._p("confidence_threshold"),
            "target_latency_ms": self._p("target_latency_ms"),
            "intrinsics": intr_source,
            **self._stats.summary(),
            "image_rate_hz": arrivals["image_rate_hz"],
            "camera_info_rate_hz": arrivals["camera_info_rate_hz"],
            "transport": "images missing" if loss else (
                "ok" if arrivals["image_to_camera_info_ratio"] is not None else "no camera_info"),
            "frames_received": counts.get("received", 0),
            "camera_info_received": counts.get("camera_info_received", 0),
            "frames_processed": counts.get("processed", 0),
            "frames_dropped": counts.get("dropped", 0),
            "frames_invalid": invalid,
            "persons_found": counts.get("persons", 0),
            "track_person": self._p("track_person"),
            "region_from_pose": self._p("region_from_pose"),
            "dense_until_found": self._p("dense_until_found"),
            "region_expand": self._p("region_expand"),
            "region_margin": self._p("region_margin"),
            "strip_margin": self._p("strip_margin"),
            "smoothing": (f"{self._p('smoothing_min_cutoff_hz'):g} Hz, beta "
                          f"{self._p('smoothing_beta'):g}"
                          if self._p("smoothing_min_cutoff_hz") > 0 else "off"),
            "head_gating": self._p("head_gating"),
            "frames_tracked": counts.get("tracked", 0),
            # tracked frames read whole as well after a fall in confidence (recheck_ratio)
            "rechecks": counts.get("rechecks", 0),
            "recheck_ratio": self._p("recheck_ratio"),
            "camera_info_invalid": counts.get("camera_info_invalid", 0),
            "camera_info_mismatch": counts.get("camera_info_mismatch", 0),
            "inference_errors": counts.get("inference_error", 0),
            "internal_errors": counts.get("internal_error", 0),
        }
        if backend is not None:
            values.update(backend.diagnostics())
        for k in sorted(counts):
            if k.startswith("invalid_"):
                values[k] = counts[k]
        warnings = [f"{loss}; {TRANSPORT_HELP}"] if loss else []
        if state == "error":
            return DiagnosticStatus.ERROR, "; ".join([f"no model: {error}", *warnings]), values
        if state == "loading":
            warnings.insert(0, "loading model")
        elif not trained:
            warnings.insert(0, "running an untrained checkpoint")
        if warnings:
            return DiagnosticStatus.WARN, "; ".join(warnings), values
        return DiagnosticStatus.OK, "running", values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics_values()
        status = convert.diagnostic_status(
            DIAG_PREFIX + self.get_fully_qualified_name(),
            f"{values['backend']}@{values['device']}",
            level,
            message,
            values,
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def destroy_node(self) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        self._close_backends()
        super().destroy_node()


#: Exit status for bad start-up parameters (like argparse's usage errors).
EXIT_BAD_PARAMETER = 2


def main(args: list[str] | None = None) -> None:
    """Console script. Bad start-up parameters end the process with one error line each and
    exit status 2 (a launch file then shows the reason instead of a node that half works); bad
    values set later through the parameter service are refused and the node keeps running.

    The Fast DDS image profile is put into the environment *before* ``rclpy.init``: the DDS
    participant reads it once, when it is created (``middleware`` has the why).
    """
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    transport_note = middleware.apply_default_profile()
    try:
        with rclpy.init(args=args):
            try:
                node = PoseNode()
            except StartupParameterError as exc:
                log = get_logger("pose_node")
                for problem in exc.problems:
                    log.error(f"invalid parameter, not starting: {problem}")
                raise SystemExit(EXIT_BAD_PARAMETER) from None
            node.get_logger().info(transport_note)
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
