"""The options every backend takes (:class:`BackendOptions`), validated once, and the rules they
follow, each written once:

* **Input size.** A square input side must be a positive multiple of the network's output stride
  (:data:`OUTPUT_STRIDES`: 16 for the MobileNetV2 layout of ``NetworkConfig``'s default arch, 32
  for MoveNet's stride-32 backbone; ``NetworkConfig.output_stride`` says which). A check that has
  no model at hand (a ROS parameter, :class:`BackendOptions`, a benchmark flag) can only apply
  what every model shares, a multiple of :data:`INPUT_SIZE_MULTIPLE`; the model's own stride is
  checked where the model is read (:func:`check_input_size` with ``output_stride``).
* **Head gating** (the heads read only inside the last execution mask's region,
  ``docs/network.md`` §5b). Three defaults, one per kind of caller, and one rule
  (:func:`effective_head_gating`) that turns a request into what runs:

  - :data:`HEAD_GATING_STORED` (False) is ``NetworkConfig.head_gating``'s default: a checkpoint
    stores the network as trained and evaluated, heads everywhere, unless its config said
    otherwise;
  - :data:`HEAD_GATING_REQUESTED` (None) is :class:`BackendOptions`' default: a library caller
    (tests, benchmarks, evaluation) gets the checkpoint's own setting;
  - :data:`HEAD_GATING_NODE` (True) is the ``pose_node`` parameter's default: the deployed node
    turns it on for every gated model (no measured accuracy cost on the previous stride-16
    sparse checkpoint, docs/network.md §5b; not re-measured on the MoveNet-based one).

  A dense model has no mask to gate by and ignores any request; an exported .onnx / engine keeps
  the setting it was exported with (the backends log that a request is ignored there).
* **Mask threshold**: a probability in the open interval (0, 1) (:func:`check_probability`).
* **Device**: "auto", "cpu", "cuda" or "cuda:N" (:func:`check_device`).

Below ``export`` and ``backends`` (numpy-free, no torch), so the exporters, every runtime, the
node's parameter table and the benchmarks share one definition.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..skeleton import NUM_BONES

#: Output strides a backbone may have (stem x stride-2 rows): 16, or 32 for MoveNet's arch.
OUTPUT_STRIDES: tuple[int, ...] = (16, 32)
#: Every network accepts a multiple of this (the smallest output stride); see the module doc.
INPUT_SIZE_MULTIPLE: int = min(OUTPUT_STRIDES)

#: ``NetworkConfig.head_gating``'s default: what a checkpoint stores unless configured.
HEAD_GATING_STORED: bool = False
#: :class:`BackendOptions`' default: None = keep the checkpoint's setting.
HEAD_GATING_REQUESTED: bool | None = None
#: The ``pose_node`` parameter's default: on for every gated model.
HEAD_GATING_NODE: bool = True

#: Inference precisions of the openvino backend (its ``precision`` option, the node's
#: ``openvino_precision``): forced f32 / bf16 / f16, OpenVINO's own choice ("auto": bf16
#: where the CPU has AMX / AVX512-BF16, f32 elsewhere), or "bf16_strips": bf16 for a strip
#: session (an input narrower than it is tall) where the CPU has fast native bf16 (AMX, or
#: AVX512-BF16 on AMD: ``openvino_backend.bf16_is_fast``), f32 for every square input and
#: elsewhere (emulated, or AVX512-BF16 on an Intel CPU without AMX, measured slower than f32).
#: Why that split: on the held-out real frames
#: bf16 strips kept f32's accuracy (PCK@0.1 0.904 vs 0.908, 3D 70 vs 70 mm) while bf16 square
#: crops did not (0.890 vs 0.911, 103 vs 64 mm; README, docs/benchmarks.md). Here, not in the
#: backend module, so the node and the CLIs can validate it where openvino is not installed.
OPENVINO_PRECISIONS: tuple[str, ...] = ("f32", "bf16", "f16", "auto", "bf16_strips")
#: The node's ``openvino_precision`` (and the CLIs' that replay its path). With the tracking
#: re-check (``pipeline.recheck``) the bf16 strips matched f32 on the held-out real frames (PCK
#: 0.902 vs 0.905, 70.0 vs 69.8 mm; over eight start offsets 75.1 vs 75.1 mm) at 0.50-0.72x
#: the network's time; without the re-check they locked onto a wrong pose in 4 of 8 starts.
OPENVINO_PRECISION_DEFAULT = "bf16_strips"
#: The sparse-cpu kernel's GEMM arithmetic (``kernel_precision``, the node's
#: ``sparse_precision``): f32, bf16 (AMX tiles or the AVX512-BF16 dot product), or auto (bf16
#: where it was measured faster: AMX, or AVX512-BF16 on AMD).
SPARSE_PRECISIONS: tuple[str, ...] = ("f32", "bf16", "auto")


def precision_under_budget(precision: str, budget_on: bool) -> str:
    """The OpenVINO precision the node's sessions get: ``precision``, except "bf16_strips"
    while a latency budget is on, which runs everything in f32. Why: the budget steps through
    the strips' widths up to the square, and needs those costs evenly spaced; bf16 strips
    (6-9 ms of network) next to an f32 square (14 ms) leave a gap no setting fills, and a
    budget in it swings between the two (34-42 % of real-video frames within ±10 % in three
    replays, against 68-85 % with f32 strips; ``docs/benchmarks.md``)."""
    return "f32" if budget_on and precision == "bf16_strips" else precision


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def input_size_problem(size: int, output_stride: int | None = None) -> str | None:
    """Why ``size`` cannot be the input side of a network with ``output_stride`` (None: any
    network, i.e. a multiple of :data:`INPUT_SIZE_MULTIPLE`), or None when it can."""
    multiple = INPUT_SIZE_MULTIPLE if output_stride is None else int(output_stride)
    if size > 0 and size % multiple == 0:
        return None
    why = ("the network's output stride" if output_stride is not None else
           "the smallest output stride; a stride-32 MoveNet-architecture model needs 32")
    return f"must be a positive multiple of {multiple} ({why}), got {size}"


def check_input_size(size: int, output_stride: int | None = None) -> int:
    """``size`` as an int, or ValueError("input_size must be a positive multiple of ...")."""
    problem = input_size_problem(int(size), output_stride)
    if problem:
        raise ValueError(f"input_size {problem}")
    return int(size)


def strip_width(input_size: int, input_width: int | None) -> int:
    """The one normal form of an input width: 0 for a square input (``input_width`` None, 0 or
    ``input_size``), else the strip's width. Every place that stores or compares a width
    (model info, export metadata and cache names, block geometry, the crop transform) goes
    through it, so "square" has one spelling."""
    width = int(input_width or 0)
    return 0 if width == int(input_size) else width


def check_input_width(width: int, input_size: int | None = None,
                      output_stride: int | None = None) -> int:
    """``width`` as an int, or ValueError: a strip's width follows the input-size rule and is
    at most ``input_size`` (when known), so the strip is the middle of that square."""
    problem = input_size_problem(int(width), output_stride)
    if problem:
        raise ValueError(f"input_width {problem}")
    if input_size is not None and int(width) > int(input_size):
        raise ValueError(f"input_width must be at most input_size {input_size}, got {width}")
    return int(width)


def effective_head_gating(config: Mapping[str, Any], requested: bool | None) -> bool:
    """Whether the heads run only inside the last mask's region (the rule in the module doc).

    Args:
        config: the network config as stored in the checkpoint (``NetworkConfig.to_dict()``).
        requested: True / False to choose, None to keep the checkpoint's own setting.
    """
    if requested is None or not config.get("gated", False):
        return bool(config.get("head_gating", HEAD_GATING_STORED))
    return bool(requested)


def check_probability(probability: float) -> float:
    """``probability`` as a float in (0, 1), or ValueError naming the mask threshold."""
    p = float(probability)
    if not 0.0 < p < 1.0:
        raise ValueError(f"mask threshold must be a probability in (0, 1), got {probability}")
    return p


def check_bone_lengths(values: Sequence[float] | None, name: str) -> tuple[float, ...]:
    """``values`` as a tuple of floats: empty (the model has no body-size prior of its own) or
    one finite length > 0 per bone of ``skeleton.BONES``; else ValueError naming ``name``. One
    rule for the network config, exported metadata and the depth fit that reads them."""
    lengths = tuple(float(v) for v in (values or ()))
    if lengths and (len(lengths) != NUM_BONES
                    or not all(math.isfinite(v) and v > 0 for v in lengths)):
        raise ValueError(f"{name}: bone lengths must be empty or {NUM_BONES} finite values > 0, "
                         f"got {list(values or ())}")
    return lengths


def check_device(device: str) -> str:
    """``device`` if it is "auto", "cpu", "cuda" or "cuda:N", else ValueError."""
    if isinstance(device, str) and _DEVICE.fullmatch(device):
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def check_threads(value: int | None, name: str = "num_threads") -> int | None:
    """None (the runtime's default) or an int >= 1, else ValueError naming ``name``."""
    if value is None:
        return None
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class BackendOptions:
    """What every backend takes, validated when made (ValueError names the option).

    Options only one runtime has (ONNX Runtime's ``graph``, sparse-cpu's ``policy``, TensorRT's
    ``engine_file_path``, ...) stay keyword arguments of that backend.

    Attributes:
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N".
        input_size: square input side; None = the model's own. Checked here against what every
            model shares (a multiple of :data:`INPUT_SIZE_MULTIPLE`), against the model's output
            stride when the backend reads it; must match an exported file's size.
        input_width: width of a non-square input (the central strip of the ``input_size``
            square, for upright people's tracking crops); None = square. Same multiple rule
            as ``input_size`` and at most it; dense networks on the torch, onnxruntime and
            openvino backends only (the others refuse it).
        mask_threshold: initial execution-mask probability threshold in (0, 1); 0.5 = the
            training decision boundary.
        num_threads: CPU threads of the runtime (torch intra-op, ONNX Runtime intra-op, the
            sparse-cpu worker pool); None = the runtime's default (sparse-cpu: 1). TensorRT
            runs on the GPU and ignores it.
        head_gating: True / False to choose head gating on a gated checkpoint, None (default,
            :data:`HEAD_GATING_REQUESTED`) to keep the checkpoint's setting; the rule is
            :func:`effective_head_gating`.
        spin_wait: ONNX Runtime's intra-op threads busy-wait for the next operator of a run
            (its ``allow_spinning``) instead of sleeping and being woken for each one: ~2 ms
            lower image -> /pose3d p50 in ``./run demo`` on two cores, for about twice the
            node's CPU (README, ``spin_wait`` parameter). The other backends ignore it
            (sparse-cpu's pool spins per ``SPARSE_POSE_SPIN_US``, docs/sparse.md).
        cache_dir: root of the caches of checkpoint exports (ONNX graphs, TensorRT plans);
            None = each cache's default (``$SPARSE_POSE_CACHE`` or ``~/.cache/sparse_pose_ros``
            for ONNX exports, see ``engine_cache.default_cache_dir`` for plans). The torch
            backend has nothing to cache and ignores it.
    """

    device: str = "auto"
    input_size: int | None = None
    input_width: int | None = None
    mask_threshold: float = 0.5
    num_threads: int | None = None
    head_gating: bool | None = HEAD_GATING_REQUESTED
    spin_wait: bool = False
    cache_dir: str | os.PathLike[str] | None = None

    #: names of the fields, i.e. the keyword options every backend takes
    NAMES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.input_size is not None:
            object.__setattr__(self, "input_size", check_input_size(self.input_size))
        if self.input_width is not None:
            width = check_input_width(self.input_width, self.input_size)
            object.__setattr__(self, "input_width", width)
        object.__setattr__(self, "mask_threshold", check_probability(self.mask_threshold))
        object.__setattr__(self, "num_threads", check_threads(self.num_threads))
        if self.head_gating is not None and not isinstance(self.head_gating, bool):
            raise ValueError(f"head_gating must be True, False or None, got {self.head_gating!r}")
        if not isinstance(self.spin_wait, bool):
            raise ValueError(f"spin_wait must be True or False, got {self.spin_wait!r}")

    @classmethod
    def build(cls, options: BackendOptions | None = None, **changes: Any) -> BackendOptions:
        """``options`` (default: all defaults) with ``changes`` applied, validated again.

        Raises:
            TypeError: a name in ``changes`` is not a field (it names the valid ones).
        """
        if options is not None and not isinstance(options, BackendOptions):
            raise TypeError(f"options must be a BackendOptions, got {type(options).__name__}")
        unknown = sorted(set(changes) - set(cls.NAMES))
        if unknown:
            raise TypeError(f"unknown backend option(s) {unknown}; the options every backend "
                            f"takes are {list(cls.NAMES)}")  # fmt: skip
        base = options if options is not None else cls()
        return dataclasses.replace(base, **changes) if changes else base

    @classmethod
    def split(cls, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the fields of this class, the rest) of a keyword-argument dict."""
        shared = {k: v for k, v in kwargs.items() if k in cls.NAMES}
        return shared, {k: v for k, v in kwargs.items() if k not in cls.NAMES}


BackendOptions.NAMES = tuple(f.name for f in dataclasses.fields(BackendOptions))
