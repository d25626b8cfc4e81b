"""pose_node parameters as one table: name, default, description, range, validator.

One table drives the descriptors (what `ros2 param describe` shows), the validation callback
(which rejects bad values with a reason) and the README, so they cannot drift apart.
config/pose.yaml repeats the defaults for users; a test checks both agree.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rcl_interfaces.msg import ParameterType as PT

from ..backends.base import BACKEND_NAMES
from ..control.latency_budget import BudgetConfig
from ..pipeline.recheck import RECHECK_RATIO, RECHECK_RATIO_RANGE
from ..pipeline.roi import (
    CROP_INPUT_SIZE,
    CROP_INPUT_WIDTHS,
    REGION_EXPAND,
    REGION_EXPAND_RANGE,
    REGION_MARGIN,
    REGION_MARGIN_RANGE,
    STRIP_MARGIN,
    STRIP_MARGIN_RANGE,
)
from ..pipeline.smoothing import BETA_RANGE, MIN_CUTOFF_RANGE_HZ, SmoothingConfig
from ..pipeline.whole_budget import WHOLE_FRAME_SIZES
from ..runtime.options import (
    HEAD_GATING_NODE,
    INPUT_SIZE_MULTIPLE,
    OPENVINO_PRECISION_DEFAULT,
    OPENVINO_PRECISIONS,
    SPARSE_PRECISIONS,
    check_device,
    check_probability,
    input_size_problem,
)

PACKAGE = "sparse_pose_ros"
#: The node's default: the dense Thunder checkpoint. The dense Lightning one (whole frames at
#: 256) scores the same on the held-out clips for ~0.6x the network, but on vtest's crowd of small
#: pedestrians it reported a person on fewer frames and ran slower (it loses them more often, and
#: every loss is a whole frame): models/MODEL_CARD.md, the Lightning pair.
DEFAULT_MODEL = "models/pose_dense.safetensors"
MODEL_HELP = (
    "train one with `./run train --config training_configs/movenet_thunder_real.yaml` (writes "
    "models/pose_dense.safetensors and models/pose_sparse.safetensors; movenet_lightning_real."
    "yaml: the Lightning pair, models/pose_lightning_*.safetensors) or see models/MODEL_CARD.md"
)

#: The controller's bounds, quoted in the target_latency_ms description.
_BUDGET = BudgetConfig()
#: input_size values besides 0 (= the model's own size): [min, max] pixels.
INPUT_SIZE_RANGE = (64, 1024)
_INPUT_SIZE_RULE = (f"0 or a multiple of {INPUT_SIZE_MULTIPLE} in [{INPUT_SIZE_RANGE[0]}, "
                    f"{INPUT_SIZE_RANGE[1]}]")

Validator = Callable[[Any], str | None]  # returns the rejection reason, or None when fine


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    constraints: str = ""
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    validate: Validator | None = None
    reload: bool = False  # changing it rebuilds the backend

    @property
    def type(self) -> int:
        return {bool: PT.PARAMETER_BOOL, int: PT.PARAMETER_INTEGER, float: PT.PARAMETER_DOUBLE,
                str: PT.PARAMETER_STRING, list: PT.PARAMETER_INTEGER_ARRAY}[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(
            name=self.name,
            type=self.type,
            description=self.description,
            additional_constraints=self.constraints,
        )
        if self.int_range is not None:
            d.integer_range = [IntegerRange(from_value=self.int_range[0],
                                            to_value=self.int_range[1], step=0)]
        if self.float_range is not None:
            d.floating_point_range = [FloatingPointRange(from_value=self.float_range[0],
                                                         to_value=self.float_range[1], step=0.0)]
        return d


def source_root() -> Path:
    """Repository root when running from a source checkout (editable install)."""
    return Path(__file__).resolve().parents[2]


def resolve_model_path(value: str) -> Path:
    """Absolute path for ``model_file_path``.

    Absolute paths are used as given. A relative path is looked up, in order, in the package's
    installed share directory (ament index: what `colcon build` installs), the source tree (what
    `pip install -e .` runs from) and the working directory; the first existing file wins, and
    if none exists the share/source candidate is returned so the error names a useful place.
    """
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    candidates: list[Path] = []
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / p)
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (venv)
            pass
    except ImportError:
        pass
    candidates += [source_root() / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return candidates[0].resolve()


def _choice(options: tuple[str, ...]) -> Validator:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}; got {v!r}"

    return check


def _model_path(v: Any) -> str | None:
    if not v:
        return "must not be empty"
    path = resolve_model_path(str(v))
    if not path.is_file():
        return f"model file not found: {path} ({MODEL_HELP})"
    if path.suffix not in (".safetensors", ".onnx", ".engine", ".plan"):
        return f"{path} is not a .safetensors, .onnx or TensorRT engine file"
    return None


def _input_size(v: Any) -> str | None:
    """What can be checked without the model: the rule every model shares
    (``runtime.options``); the loaded model's own stride: :func:`input_size_for_model`."""
    lo, hi = INPUT_SIZE_RANGE
    if v == 0 or (lo <= v <= hi and input_size_problem(v) is None):
        return None
    return (f"must be 0 (the model's size) or a multiple of {INPUT_SIZE_MULTIPLE} in [{lo}, "
            f"{hi}] (of 32 for a stride-32 MoveNet-architecture model); got {v}")


def _size_list(below: str) -> Validator:
    """A list of extra sessions' sizes (strip widths, whole-frame sides): each 0 (ignored, so
    ``[0]`` turns them off where an empty array cannot be written) or what :func:`_input_size`
    accepts, at most 8 of them; ``below`` names the parameter they must stay under."""
    def validate(v: Any) -> str | None:
        if len(v) > 8:
            return f"must hold at most 8 sizes; got {len(v)}"
        bad = [w for w in v if w and _input_size(w)]
        if bad:
            return (f"must be 0 or multiples of {INPUT_SIZE_MULTIPLE} in [{INPUT_SIZE_RANGE[0]},"
                    f" {INPUT_SIZE_RANGE[1]}] (below {below}; of 32 for a MoveNet-architecture "
                    f"model); got {bad}")
        return None

    return validate


_crop_input_widths = _size_list("crop_input_size")


def input_size_for_model(v: int, output_stride: int) -> str | None:
    """Why ``input_size`` ``v`` does not fit a model of ``output_stride`` (None: it does, or
    ``v`` is 0); the node checks a change against the model it has loaded."""
    problem = input_size_problem(v, output_stride) if v else None
    return f"input_size {problem} of the loaded model" if problem else None


def _open_probability(v: Any) -> str | None:
    try:
        check_probability(v)
    except ValueError:
        return f"must be a probability in (0, 1); got {v}"
    return None


def _device(v: Any) -> str | None:
    try:
        check_device(str(v))
    except ValueError:
        return f"must be auto, cpu, cuda or cuda:N; got {v!r}"
    return None


def _optional_file(v: Any) -> str | None:
    if v and not Path(str(v)).expanduser().is_file():
        return f"file not found: {v}"
    return None


def _engine_path(v: Any) -> str | None:
    if v and not Path(str(v)).expanduser().parent.is_dir():
        return f"directory of {v} does not exist (the engine is written there)"
    return None


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "model_file_path", DEFAULT_MODEL,
        "Checkpoint (.safetensors) or ONNX file. Relative paths resolve against the package's "
        "share directory, then the source tree.",
        "existing .safetensors / .onnx / .engine file", validate=_model_path, reload=True,
    ),
    ParamSpec(
        "backend", "auto",
        "Runtime: auto (tensorrt if importable with a CUDA GPU; on CPU sparse-cpu for a gated "
        "checkpoint, else openvino, else onnxruntime; else torch), sparse-cpu, torch, "
        "onnxruntime, openvino or tensorrt.",
        "one of " + ", ".join(BACKEND_NAMES), validate=_choice(BACKEND_NAMES), reload=True,
    ),
    ParamSpec(
        "device", "auto", "Compute device: auto, cpu, cuda or cuda:N.",
        "auto | cpu | cuda | cuda:N", validate=_device, reload=True,
    ),
    ParamSpec(
        "input_size", 0,
        "Square network input side in pixels; 0 = the size the model was built for. Else a "
        "multiple of the model's output stride (16; 32 for MoveNet-architecture models).",
        _INPUT_SIZE_RULE, int_range=(0, INPUT_SIZE_RANGE[1]), validate=_input_size,
        reload=True,
    ),
    ParamSpec(
        "crop_input_size", CROP_INPUT_SIZE,
        "With track_person: network input side for the tracking crops (a second session of the "
        "same model); 0 = input_size. The whole frame, where a person must first be found, "
        "keeps input_size. Held-out real frames, tracking, square crops: the Thunder dense "
        "checkpoint at 224 scored PCK@0.1 0.922 / MPJPE 64 mm against 0.919 / 64 mm at its own "
        "256, for 0.77 of the MACs (192: 0.903 / 70 mm for 0.57; 160 loses the person; read "
        "as strips, crop_input_widths, 224 costs 0.41); the sparse one 0.927 / 63 mm at 224 "
        "against 0.920 / 63 mm at 256, for 0.62 of the MACs instead of 0.81 (its masks; gated "
        "models read no strips). The Lightning checkpoint (whole frames at 192): 0.785 / 68 mm "
        "at 224, 0.667 / 150 mm at 160.",
        _INPUT_SIZE_RULE, int_range=(0, INPUT_SIZE_RANGE[1]), validate=_input_size,
        reload=True,
    ),
    ParamSpec(
        "crop_input_widths", list(CROP_INPUT_WIDTHS),
        "With track_person and a dense model: widths of strips of the tracking crop the "
        "network may read instead of its whole square, each a session of the same model "
        "crop_input_size tall. A frame uses the narrowest strip that holds the previous "
        "skeleton with strip_margin (an upright person), else the square. [0] = squares "
        "only. Held-out real frames, Thunder dense checkpoint, crops 224: strips 64-192 read 98 % "
        "of the frames for 0.41 of a whole-frame pass's backbone MACs instead of 0.77, PCK@0.1 "
        "0.904 vs 0.922, MPJPE 71 vs 64 mm (docs/network.md 2d). Widths not below "
        "crop_input_size, or for a gated model or tensorrt, are refused with a warning and "
        "the squares run.",
        "integers, each 0 or a multiple of 32 below crop_input_size", validate=_crop_input_widths,
        reload=True,
    ),
    ParamSpec(
        "whole_frame_sizes", list(WHOLE_FRAME_SIZES),
        "With target_latency_ms and a dense model: smaller squares a whole frame (the first, "
        "and every frame after one that found nobody) may be read at when whole frames are "
        "over the budget, each a session of the same model (one of crop_input_size's square "
        "reuses the crop's); the budget starts at input_size and only ever shrinks it. Costs "
        "the person's resolution: held-out real whole frames scored PCK@0.1 0.70 / person found "
        "93 % at 256 px, 0.58 / 87 % at 224, 0.53 / 82 % at 192. Opened only while "
        "target_latency_ms > 0 (turning a budget on reloads the model's sessions); without a "
        "budget whole frames read input_size. [0] = none (whole frames stay at input_size and "
        "leave the budget alone). Sizes not below "
        "input_size, or for a gated model (whose knob is the mask threshold), are left out.",
        "integers, each 0 or a multiple of 32 below input_size",
        validate=_size_list("input_size"),
        reload=True,
    ),
    ParamSpec(
        "strip_margin", STRIP_MARGIN,
        "With crop_input_widths: a strip holds the person when their joint box's width times "
        "this fits it (10 % of the box's width on either side at 1.2). Held-out real frames, "
        "crops 224: 1.2 ran 0.41 of a whole-frame pass at PCK@0.1 0.908 / 70 mm, 1.3 0.45 at "
        "0.911 / 66 mm, 1.5 0.51 at 0.909 / 67 mm (docs/network.md 2d).",
        f"[{STRIP_MARGIN_RANGE[0]:g}, {STRIP_MARGIN_RANGE[1]:g}]",
        float_range=(float(STRIP_MARGIN_RANGE[0]), float(STRIP_MARGIN_RANGE[1])),
    ),
    ParamSpec(
        "recheck_ratio", RECHECK_RATIO,
        "With track_person: a tracked frame that still finds the person but whose mean joint "
        "confidence falls below this times the track's running confidence is read whole as "
        "well (a lost person's next frame is read whole anyway), and the whole frame's answer is "
        "kept when it is more confident and the same person (joint boxes overlapping). Why: a "
        "skeleton gone wrong cuts a wrong crop, which held the held-out Pose2Sim trial's loop "
        "on a wrong pose for 20 frames. It re-read 1-2 % of the frames there and on the "
        "training videos (each re-read costs a whole-frame pass; diagnostics key rechecks). "
        "0 = never.",
        f"[{RECHECK_RATIO_RANGE[0]:g}, {RECHECK_RATIO_RANGE[1]:g}]",
        float_range=(float(RECHECK_RATIO_RANGE[0]), float(RECHECK_RATIO_RANGE[1])),
    ),
    ParamSpec(
        "num_threads", 0,
        "CPU threads of the inference backend (sparse-cpu worker pool, ONNX Runtime intra-op, "
        "torch intra-op); 0 = the backend's default (sparse-cpu: 1, which was faster on cores "
        "shared with other processes; 2 on a dedicated 2-core machine). Ignored by tensorrt.",
        "[0, 64]", int_range=(0, 64), reload=True,
    ),
    ParamSpec(
        "spin_wait", False,
        "onnxruntime backend: its worker threads busy-wait for the next operator of a frame "
        "instead of sleeping and being woken for each one (ORT's allow_spinning). On 2 cores "
        "shared with the demo's other processes the image -> /pose3d p50 was ~2 ms lower (26.6 "
        "vs 28.6 ms, median of 5 and 3 runs) for about twice the node's CPU (0.66-0.92 cores "
        "instead of 0.29-0.36), and one run of five was slower; so off by default. Other "
        "backends ignore it (sparse-cpu: SPARSE_POSE_SPIN_US).",
        reload=True,
    ),
    ParamSpec(
        "openvino_precision", OPENVINO_PRECISION_DEFAULT,
        "openvino backend (auto's CPU choice for a dense model): inference precision. "
        "bf16_strips (default): the tracking strips in bf16 where the CPU has fast bf16 (AMX, or "
        "AVX512-BF16 on AMD), square crops and whole frames in f32, everything f32 elsewhere; "
        "on the "
        "held-out real frames it matched f32 (PCK@0.1 0.902 vs 0.905, MPJPE 70.0 vs 69.8 mm) "
        "with the network at 0.50-0.72x f32's time, as long as recheck_ratio is on (without it "
        "the bf16 strips locked onto a wrong pose in 4 of 8 clip starts). f32 gives "
        "onnxruntime's numbers; bf16 everywhere is faster on whole frames but bf16 square crops "
        "lost accuracy (0.890 / 103 mm vs 0.911 / 64 mm); auto = OpenVINO's choice (bf16 where "
        "native). While target_latency_ms > 0, bf16_strips runs f32 (the budget's ladder needs "
        "evenly spaced costs). Other backends ignore it.",
        "one of " + ", ".join(OPENVINO_PRECISIONS), validate=_choice(OPENVINO_PRECISIONS),
        reload=True,
    ),
    ParamSpec(
        "sparse_precision", "auto",
        "sparse-cpu backend (a gated checkpoint, e.g. models/pose_sparse.safetensors): what the "
        "compiled kernel's expand / project GEMMs, MoveNet's 1x1 to 1280 and the FPN's 1x1s "
        "multiply in. auto (default): bf16 where it was measured faster than f32 (AMX tiles, "
        "Sapphire Rapids and later; the AVX512-BF16 dot product on AMD, Zen 4 and later), f32 "
        "elsewhere; on the held-out real whole frames bf16 scored as f32 (PCK@0.1 0.689 both, "
        "MPJPE 158.7-159.0 vs 158.7 mm) with the network at 0.68-0.77x f32's time "
        "(docs/benchmarks.md). bf16 refuses to load where the CPU has neither. Other backends "
        "ignore it.",
        "one of " + ", ".join(SPARSE_PRECISIONS), validate=_choice(SPARSE_PRECISIONS),
        reload=True,
    ),
    ParamSpec(
        "mask_threshold", 0.5,
        "Execution-mask probability threshold: higher = fewer positions computed (faster, "
        "riskier); 0.5 = the training decision boundary.",
        "(0, 1)", float_range=(0.0, 1.0), validate=_open_probability,
    ),
    ParamSpec(
        "confidence_threshold", 0.3,
        "A person is found when the mean joint confidence is at or above this; otherwise an "
        "empty PoseArray is published and the markers are deleted.",
        "[0, 1]", float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "track_person", True,
        "Video tracking: after a frame that found a person, run the network on a square crop "
        "around that skeleton (1.5x its box) instead of the whole letterboxed frame; the whole "
        "frame again as soon as nobody is found. The network reads a person who fills its "
        "input far better. Turn off for streams of unrelated still images.",
    ),
    ParamSpec(
        "region_from_pose", True,
        "Gated models on a sparse backend: after a frame that found a person, every gated "
        "block of the next frame executes only that person's region (their joint box grown "
        "1.3x plus one 16-px cell) instead of what the masks decide; the masks decide again "
        "after a frame that finds nobody. Dense backends ignore it. Off for streams of "
        "unrelated still images.",
    ),
    ParamSpec(
        "dense_until_found", True,
        "With region_from_pose: frames without a region (the first, and each one after a frame "
        "that found nobody) execute every cell instead of what the masks decide, so a small "
        "person the masks would miss on an unseen scene is still found.",
    ),
    ParamSpec(
        "region_expand", REGION_EXPAND,
        "With region_from_pose: growth of the previous pose's joint box about its centre before "
        "it becomes the region. Trades the sparse model's accuracy against the MACs it runs "
        "(shipped sparse checkpoint, held-out real, tracking crop at 256: 1.0 -> 0.68 of the "
        "backbone, 0.922 PCK, 99.4 % found; 1.3 -> 0.81, 0.920, 99.4 %; whole frames, "
        "track_person false: 1.0 -> 0.33, 0.693, 97.1 %; 1.3 -> 0.40, 0.694, 97.7 %; "
        "docs/network.md 2b).",
        f"[{REGION_EXPAND_RANGE[0]:g}, {REGION_EXPAND_RANGE[1]:g}]",
        float_range=(float(REGION_EXPAND_RANGE[0]), float(REGION_EXPAND_RANGE[1])),
    ),
    ParamSpec(
        "region_margin", REGION_MARGIN,
        "With region_from_pose: 16-px cells added around the grown box (each block's 3x3 "
        "reads one cell past what it computes; the person moves). 0 loses the person: whole "
        "frames at expand 1.0, 0.50 PCK, 89 % found (measured with the stride-32 ring the "
        "skip-fill model no longer grows; 1: 0.33 of the backbone, 0.69, 97 %).",
        f"[{REGION_MARGIN_RANGE[0]}, {REGION_MARGIN_RANGE[1]}] cells",
        int_range=REGION_MARGIN_RANGE,
    ),
    ParamSpec(
        "smoothing_min_cutoff_hz", SmoothingConfig.min_cutoff_hz,
        "One Euro filter on the published 3D joints over time (the image header's stamps; "
        "starts over after a frame without a person): low-pass cutoff at rest. Lower = steadier "
        "but laggier skeleton; 0 = off (every frame on its own). Held-out Pose2Sim, 60 fps, "
        "dense model, crops at 192: 3 Hz lowered MPJPE 103 -> 99 mm.",
        f"[{MIN_CUTOFF_RANGE_HZ[0]:g}, {MIN_CUTOFF_RANGE_HZ[1]:g}] Hz",
        float_range=MIN_CUTOFF_RANGE_HZ,
    ),
    ParamSpec(
        "smoothing_beta", SmoothingConfig.beta,
        "One Euro filter: cutoff increase per m/s of a joint's speed, so fast motion lags "
        "less than slow motion is smoothed.",
        f"[{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}] Hz per m/s", float_range=BETA_RANGE,
    ),
    ParamSpec(
        "head_gating", HEAD_GATING_NODE,
        "Gated models: evaluate the heads only inside the last execution mask's region "
        "(dilated one cell), where the person is; the compiled CPU head skips the rest. "
        "Measured accuracy cost on the previous stride-16 sparse checkpoint: none "
        "(docs/network.md 5b; not re-measured on the MoveNet-based one). "
        "Dense models ignore it; an exported .onnx/.engine keeps the setting it was built with. "
        "On by default here, unlike a checkpoint's stored default (off) and a library "
        "backend's (the checkpoint's own): the rule is in runtime/options.py.",
        reload=True,
    ),
    ParamSpec(
        "publish_mask_overlay", False,
        "Publish pose/mask as an rgb8 overlay of the image instead of the mono8 mask.",
    ),
    ParamSpec(
        "nominal_hfov_deg", 60.0,
        "Horizontal field of view assumed while no valid camera_info has arrived.",
        "(1, 179) degrees", float_range=(1.0, 179.0),
    ),
    ParamSpec(
        "diagnostics_period_sec", 1.0, "Period of the /diagnostics status message.",
        "[0.05, 60] s", float_range=(0.05, 60.0),
    ),
    ParamSpec(
        "engine_file_path", "",
        "TensorRT engine file; empty = build on first use into the engine cache (keyed by GPU, "
        "TensorRT version, precision, plugin and model hash).",
        "writable location", validate=_engine_path, reload=True,
    ),
    ParamSpec(
        "custom_plugin_lib", "",
        "Path of the sparse gather-scatter TensorRT plugin library (.so); empty = the TensorRT "
        "backend's default. TensorRT options apply with backend=tensorrt.",
        "existing file or empty", validate=_optional_file, reload=True,
    ),
    ParamSpec(
        "force_engine_update", False, "Rebuild the TensorRT engine even if a cached one matches.",
        reload=True,
    ),
    ParamSpec("enable_fp16", True, "Allow FP16 kernels in the TensorRT engine.", reload=True),
    ParamSpec(
        "target_latency_ms", 0.0,
        "Latency budget (image receipt -> /pose3d); 0 = off (mask_threshold and strip_margin "
        "are used as set). A gated model: held by adapting the mask threshold within "
        f"[{_BUDGET.min_threshold:g}, {_BUDGET.max_threshold:g}], which acts on the masks' own "
        "decision only: on frames that run the previous pose's region (region_from_pose) or "
        "every cell until a person is found (dense_until_found) - with both on, every video "
        "frame - the loop holds still and /diagnostics says 'inactive'; use it with "
        "region_from_pose false. A dense model reading strips (the default path): held by "
        "adapting a floor under the strip width on tracked frames (strips narrower than it are "
        "skipped; spare time widens the input towards the square crop, the most accurate), "
        "starting with none; it never reads a strip narrower than strip_margin allows, so a "
        "budget below that is not met, and a frame whose person needs a wider strip than the "
        "floor does not lower it. Whole frames feed a second controller that reads them "
        "at one of whole_frame_sizes, starting at input_size. The active threshold, "
        "strip_floor_px, whole_input_size and the budget state are on /diagnostics.",
        "[0, 10000] ms", float_range=(0.0, 10000.0),
    ),
)
PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def crop_engine_path(engine_file_path: str, crop_input_size: int) -> str:
    """Where the TensorRT engine of the tracking crops goes when ``engine_file_path`` names the
    whole frame's: beside it, the size in the name (``pose.engine`` -> ``pose_crop224.engine``),
    so neither overwrites the other. A whole frame read smaller under the budget
    (``whole_frame_sizes``) runs the same model at that size, so its engine goes there too."""
    p = Path(engine_file_path)
    return str(p.with_name(f"{p.stem}_crop{int(crop_input_size)}{p.suffix}"))


TENSORRT_OPTIONS = ("engine_file_path", "custom_plugin_lib", "force_engine_update", "enable_fp16")
#: Parameters that are PoseEstimator arguments and attributes of the same name: the node builds
#: the estimator with them and sets them on the running one when they change (no reload).
ESTIMATOR_PARAMS = ("confidence_threshold", "track_person", "region_from_pose", "dense_until_found",
                    "region_expand", "region_margin", "strip_margin", "recheck_ratio")


def check(name: str, value: Any) -> str | None:
    """Reason ``value`` is unacceptable for ``name`` (None when acceptable or not ours)."""
    spec = PARAMS_BY_NAME.get(name)
    if spec is None:
        return None
    if isinstance(spec.default, list) and isinstance(value, (list, tuple, array.array)):
        value = list(value)  # rclpy hands integer arrays over as array.array('q')
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return f"{name} must be integers; got {value!r}"
    if spec.type == PT.PARAMETER_DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    valid = spec.constraints or "see `ros2 param describe`"
    if type(value) is not type(spec.default):
        return (f"{name} must be a {type(spec.default).__name__}, valid {valid}; got "
                f"{type(value).__name__} {value!r}")
    if spec.float_range and not spec.float_range[0] <= value <= spec.float_range[1]:
        return f"{name} out of range: valid {valid}; got {value}"
    if spec.int_range and not spec.int_range[0] <= value <= spec.int_range[1]:
        return f"{name} out of range: valid {valid}; got {value}"
    if spec.validate is not None:
        reason = spec.validate(value)
        if reason:
            return f"{name} {reason}"
    return None
