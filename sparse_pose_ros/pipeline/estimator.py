"""PoseEstimator: one RGB frame (+ optional intrinsics) -> PoseResult, around any backend.

This is the whole per-frame computation of the node, without ROS, so the demo, tests and
benchmarks exercise exactly what the node runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import skeleton
from ..backends.base import Backend, InferenceResult, ModelInfo
from .lift import Intrinsics, lift
from .preprocess import Letterbox, crop_tensor, letterbox_tensor, mean_fill
from .recheck import (
    RECHECK_MIN_IOU,
    RECHECK_RATIO,
    TrackConfidence,
    joint_box_iou,
    recheck_ratio_value,
)
from .roi import (
    REGION_EXPAND,
    REGION_MARGIN,
    RoiConfig,
    every_cell,
    region_cells,
    region_expand_value,
    region_margin_value,
    roi_window,
    strip_fits,
)


@dataclass
class PoseResult:
    """One frame's pose.

    Attributes:
        joints_px: (J, 2) float32 image pixels (x right, y down), order of skeleton.JOINT_NAMES.
        joints_m: (J, 3) float32 metres in the image's optical frame (x right, y down, z fwd).
        confidence: (J,) float32 in [0, 1].
        person_found: mean confidence >= the estimator's confidence threshold.
        mask_source: makes :attr:`mask` (the execution-mask picture), called on first use.
        density: executed fraction of backbone MACs.
        block_density: per gated block active fraction.
        root_depth_m: recovered pelvis depth.
        fit_residual_m: RMS bone-length error of the depth fit.
        intrinsics_source: "camera_info" or "nominal_fov".
        timings_ms: preprocess / inference / postprocess / total.
        roi: (x0, y0, side) image window the network saw when tracking a person, None for the
            whole (letterboxed) frame.
        region_from_pose: the gated blocks executed the previous pose's region (not their
            own masks' decision).
        region_executed: the gated blocks executed a region the estimator gave them — the
            previous pose's, or every cell until a person is found (``dense_until_found``) —
            so their masks' own decision, and the mask threshold, played no part.
        input_hw: (height, width) of the input the network read (a strip is narrower than
            its crop's square): with ``density``, what this frame's network computed.
        strip_floor_bound: a narrower strip would have held the person but was below
            :attr:`PoseEstimator.strip_floor`: the floor, not the person's width, set this
            frame's input (what tells the budget whether lowering the floor would help).
        rechecked: the tracking crop's answer fell below ``recheck_ratio`` × the track's
            running confidence, so the frame was also read whole (``pipeline.recheck``);
            ``roi`` is None when the whole frame's answer was taken. ``timings_ms`` then add
            up both reads.
    """

    joints_px: np.ndarray
    joints_m: np.ndarray
    confidence: np.ndarray
    person_found: bool
    mask_source: Callable[[], np.ndarray] = field(repr=False)
    density: float
    block_density: list[float]
    root_depth_m: float
    fit_residual_m: float
    intrinsics_source: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    roi: tuple[int, int, int] | None = None
    region_from_pose: bool = False
    region_executed: bool = False
    input_hw: tuple[int, int] = (0, 0)
    strip_floor_bound: bool = False
    rechecked: bool = False

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """(H, W) uint8 at image resolution: 255 × fraction of gated blocks that executed at
        each position (255 everywhere for a dense model). Made on first use: resampling the
        blocks' masks to an HD frame took ~1.4 ms a whole frame, and the node only needs it
        for a subscriber of its mask topic, after ``/pose3d`` is out."""
        return self.mask_source()

    def input_area(self, whole_size: int) -> float:
        """The input this frame's network read over one ``whole_size`` square (the whole
        frame's pass): a 192 crop of a 256 model 0.5625, a 192 × 128 strip 0.375. Times
        ``density``, the backbone work of this frame against a whole-frame pass (MACs scale
        with the input's area)."""
        return self.input_hw[0] * self.input_hw[1] / whole_size**2

    @property
    def mean_confidence(self) -> float:
        return float(np.mean(self.confidence)) if self.confidence.size else 0.0


def execution_mask(
    masks: list[np.ndarray], box: Letterbox, image_hw: tuple[int, int]
) -> np.ndarray:
    """Average the per-block 0/1 masks over blocks and map them to image pixels (uint8 0..255).

    The mean (not the union) keeps the picture informative: bright where every gated block ran,
    dim where only a few did. Letterbox padding is cropped before resizing back to the image.
    """
    h, w = image_hw
    s, sw = box.input_hw
    if masks:
        acc = np.zeros((s, sw), np.float32)
        for m in masks:
            acc += cv2.resize(m.astype(np.float32), (sw, s), interpolation=cv2.INTER_NEAREST)
        acc = (acc * (255.0 / len(masks))).round().astype(np.uint8)
    if box.pad_x < 0 or box.pad_y < 0 or box.scale * max(w, h) > s + 1 or box.input_width:
        # A tracking window: the network saw part of the image (the window, or its central
        # strip); elsewhere nothing executed. Only that part of the image is resampled (an HD
        # frame's full-size warp cost 5-8 ms a frame for a picture that is zero outside it).
        out = np.zeros((h, w), np.uint8)
        x0, y0, rw, rh = box.strip_rect()
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + rw), min(h, y0 + rh)
        if sx1 > sx0 and sy1 > sy0:
            if masks:
                full = cv2.resize(acc, (rw, rh), interpolation=cv2.INTER_LINEAR)
                out[sy0:sy1, sx0:sx1] = full[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
            else:
                out[sy0:sy1, sx0:sx1] = 255
        return out
    if not masks:
        return np.full((h, w), 255, np.uint8)
    x0, y0, x1, y1 = box.content_box()
    return cv2.resize(acc[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_LINEAR)


def checked_strips(crop: Backend, strips: Sequence[Backend]) -> tuple[Backend, ...]:
    """``strips`` narrowest first, each checked to be ``crop``'s model reading a strip of its
    square (ValueError otherwise: a strip of another size would misplace every joint)."""
    size = crop.info.input_size
    for strip in strips:
        width = strip.info.input_width
        if not same_model(crop.info, strip.info):
            raise ValueError(f"strip backend runs {strip.info.source}, not the crop model "
                             f"{crop.info.source}")  # fmt: skip
        if strip.info.input_size != size or not 0 < width < size:
            raise ValueError(f"a strip backend must read {size} px tall and narrower, got "
                             f"{strip.info.input_size}x{width or strip.info.input_size}")
    return tuple(sorted(strips, key=lambda b: b.info.input_width))


def checked_wholes(backend: Backend, wholes: Sequence[Backend]) -> tuple[Backend, ...]:
    """``wholes`` smallest first, each checked to be ``backend``'s model at a smaller square
    (ValueError otherwise: another model's joints, or a strip, would be read as this one's)."""
    size = backend.info.input_size
    for whole in wholes:
        if not same_model(backend.info, whole.info):
            raise ValueError(f"whole-frame backend runs {whole.info.source}, not the model "
                             f"{backend.info.source}")  # fmt: skip
        if whole.info.input_width or not whole.info.input_size < size:
            raise ValueError(f"a whole-frame backend must read a square smaller than {size}, "
                             f"got {whole.info.input_hw[0]}x{whole.info.input_hw[1]}")
    return tuple(sorted(wholes, key=lambda b: b.info.input_size))


@contextmanager
def closed_on_failure(sessions: list[Backend]) -> Iterator[list[Backend]]:
    """The sessions in ``sessions`` (a list the block may add to) are closed when the block
    fails, before the error goes on: a tool that opens several sessions leaks none when one of
    them cannot be opened or the whole turns out unusable."""
    try:
        yield sessions
    except BaseException:
        for b in sessions:
            b.close()
        raise


def open_tracking_sessions(
    open_at: Callable[[int | None, int | None], Backend], input_size: int | None,
    crop_input_size: int | None, crop_input_widths: Sequence[int],
) -> tuple[Backend, Backend | None, list[Backend]]:
    """The sessions a :class:`PoseEstimator` on the node's video path reads, for the tools that
    build it outside the node (evaluation, benchmarks): the whole frame at ``input_size`` (None:
    the model's own); the tracking crops at ``crop_input_size`` (None — the crops then go through
    the first session — when none is asked or it is the whole frame's size); a strip per width
    in ``crop_input_widths`` below the crop's side, in their order (the estimator sorts them),
    none for a gated model, whose masks are square (the node's rule). ``open_at(size, width)``
    opens one session; when one fails, those already open are closed before the error goes
    on."""
    made: list[Backend] = []

    def opened(size: int | None, width: int | None) -> Backend:
        made.append(open_at(size, width))
        return made[-1]

    with closed_on_failure(made):
        backend = opened(input_size, None)
        crop = (opened(crop_input_size, None)
                if crop_input_size and crop_input_size != backend.info.input_size else None)
        size = (crop or backend).info.input_size
        widths = [] if backend.info.gated else [w for w in crop_input_widths if w < size]
        return backend, crop, [opened(size, w) for w in widths]


def open_whole_sessions(
    open_at: Callable[[int | None, int | None], Backend], backend: Backend,
    crop: Backend | None, sizes: Sequence[int],
) -> list[Backend]:
    """The whole-frame sessions of the latency budget's whole-frame knob (``whole_backends``):
    one per size in ``sizes`` below ``backend``'s, the crop session itself where its square
    has that size (no second session of one shape), none for a gated model (its knob is the
    mask threshold). When one fails, the sessions this call opened are closed before the error
    goes on."""
    if backend.info.gated:
        return []
    own = backend.info.input_size
    reuse = crop if crop is not None and not crop.info.input_width else None
    out: list[Backend] = []
    with closed_on_failure([]) as made:
        for size in sorted({int(s) for s in sizes if s and int(s) < own}):
            if reuse is not None and reuse.info.input_size == size:
                out.append(reuse)
            else:
                made.append(open_at(size, None))
                out.append(made[-1])
    return out


def same_model(a: ModelInfo, b: ModelInfo) -> bool:
    """Whether two backends run one model (possibly at two input sizes): same weights hash, or
    for models without one, the same joints, normalisation and depth range."""
    if a.model_hash and b.model_hash:
        return a.model_hash == b.model_hash
    return (tuple(a.joint_names), tuple(a.mean), tuple(a.std), a.depth_range_mm) == (
        tuple(b.joint_names), tuple(b.mean), tuple(b.std), b.depth_range_mm)


class PoseEstimator:
    """Letterbox -> normalise -> backend -> lift, with per-stage timings.

    Args:
        backend: any :class:`Backend` (its ModelInfo supplies input size, mean/std, depth range).
        confidence_threshold: mean joint confidence at or above which a person counts as found.
        nominal_hfov_deg: field of view assumed when no valid intrinsics are given.
        track_person: for a video stream: after a frame that found a person, give the network
            a crop around that skeleton (``pipeline.roi``) instead of the whole frame; back to
            the whole frame as soon as a frame finds nobody. Off for unrelated still images
            (or call :meth:`reset_tracking` between them).
        roi: tracking window options.
        region_from_pose: after a frame that found a person, tell the backend where that
            person will be in the next input (``pipeline.roi.region_cells``: their joint box,
            grown, in stride-16 cells), so a backend that executes gated blocks sparsely
            computes only there (``Backend.set_region``); the masks' own decision (mask units
            or the person locator) returns as soon as a frame finds nobody. Dense backends
            ignore it. Only for video: a still after an unrelated still has no region.
        dense_until_found: with ``region_from_pose``, frames without a region (the first, and
            every frame after one that found nobody) execute every cell instead of what the
            masks decide. Why: the masks' own decision on an unseen scene can miss a small
            person, and then no region ever follows (held-out Sports2D with the tracking crop,
            sparse checkpoint: PCK@0.1 0.22 with the locator deciding cold frames, 0.80 with
            them dense; dense checkpoint 0.83).
        region_expand, region_margin: how far the region reaches past the previous pose's
            joint box (growth about its centre, then whole 16-px cells): the sparse model's
            accuracy against the MACs it executes (``docs/network.md`` §2b has the measured
            trade-off; the defaults are the training's middle).
        crop_backend: the same model at another input size for the tracking crops (None: the
            crops go through ``backend`` too). Why two sizes: finding a person in a whole frame
            needs the resolution (held-out real, dense checkpoint, whole frame at 224 instead
            of 256 px: PCK@0.1 0.58 instead of 0.70), while a crop that the person already
            fills does about as well with fewer pixels (tracking crops at 224: PCK 0.913,
            MPJPE 64 mm, against 0.917, 65 mm at 256, for 0.77 of the MACs;
            ``docs/network.md`` §2c). Must be the same model (joints, normalisation, depth).
        strip_backends: the crop model again, reading only a central strip of the crop
            (``ModelInfo.input_width`` < its ``input_size``; dense models). Each tracking
            frame uses the narrowest whose strip holds the previous skeleton with a margin
            (``pipeline.roi.strip_fits``) and is not below :attr:`strip_floor` (the latency
            budget's knob), else the square crop: an upright person
            leaves the square's sides to background, and a 192 × 128 strip costs 2/3 of
            the 192 × 192 square at the same resolution on the person.
        strip_margin: how much wider than the person's joint box a strip must be
            (``RoiConfig.strip_margin``); None keeps ``roi``'s.
        recheck_ratio: with ``track_person``, a tracked frame that still found the person
            but whose mean confidence falls below this × the track's running confidence is read
            whole as well, and the whole
            frame's answer is kept when it is more confident and the same person
            (``pipeline.recheck``: a skeleton gone wrong cuts a wrong crop, which can hold the
            loop for many frames); 0 = never.
        whole_backends: the same model at smaller square sizes for whole frames (the first
            frame, and every frame after one that found nobody), read instead of ``backend``
            when :attr:`whole_cap` asks for less — the latency budget's knob on whole frames
            (``pipeline.whole_budget``), where no strip is read. ``crop_backend`` may be one of
            them (one session, two uses).
    """

    def __init__(
        self,
        backend: Backend,
        confidence_threshold: float = 0.3,
        nominal_hfov_deg: float = 60.0,
        track_person: bool = False,
        roi: RoiConfig | None = None,
        region_from_pose: bool = True,
        dense_until_found: bool = True,
        region_expand: float = REGION_EXPAND,
        region_margin: int = REGION_MARGIN,
        crop_backend: Backend | None = None,
        strip_backends: Sequence[Backend] = (),
        strip_margin: float | None = None,
        whole_backends: Sequence[Backend] = (),
        recheck_ratio: float = RECHECK_RATIO,
    ) -> None:
        if tuple(backend.info.joint_names) != tuple(skeleton.JOINT_NAMES):
            raise ValueError(
                f"model {backend.info.source} has joints {backend.info.joint_names}, expected "
                f"{skeleton.JOINT_NAMES}"
            )
        if crop_backend is not None and not same_model(backend.info, crop_backend.info):
            raise ValueError(
                f"crop_backend runs {crop_backend.info.source} (hash "
                f"{crop_backend.info.model_hash[:12]}), not the model of backend "
                f"{backend.info.source} (hash {backend.info.model_hash[:12]})"
            )
        self.backend = backend
        self.crop_backend = crop_backend if crop_backend is not None else backend
        self.strip_backends = checked_strips(self.crop_backend, strip_backends)
        self.whole_backends = checked_wholes(backend, whole_backends)
        self.whole_cap = 0
        self.confidence_threshold = confidence_threshold
        self.nominal_hfov_deg = nominal_hfov_deg
        self._fill = mean_fill(backend.info.mean)
        self.track_person = bool(track_person)
        self.roi = roi or RoiConfig()
        if strip_margin is not None:
            self.strip_margin = strip_margin
        self.strip_floor = 0.0
        self._previous: tuple[np.ndarray, tuple[int, int]] | None = None
        self.region_from_pose = bool(region_from_pose)
        self.dense_until_found = bool(dense_until_found)
        self.region_expand = region_expand
        self.region_margin = region_margin
        # unknown: a backend may hold another user's region; its first frame clears it
        self._region_set: dict[int, bool] = {}
        self._track = TrackConfidence(recheck_ratio)

    @property
    def backends(self) -> tuple[Backend, ...]:
        """Every session the estimator runs — the whole frame's, and the crops' when that is
        another one — for the caller that warms them up, sets their threshold or closes them."""
        found = (self.backend, self.crop_backend, *self.strip_backends, *self.whole_backends)
        return tuple({id(b): b for b in found}.values())

    @property
    def region_expand(self) -> float:
        return self._region_expand

    @region_expand.setter
    def region_expand(self, value: float) -> None:
        self._region_expand = region_expand_value(value)

    @property
    def region_margin(self) -> int:
        return self._region_margin

    @region_margin.setter
    def region_margin(self, value: int) -> None:
        self._region_margin = region_margin_value(value)

    @property
    def strip_margin(self) -> float:
        return self.roi.strip_margin

    @strip_margin.setter
    def strip_margin(self, value: float) -> None:
        self.roi = dataclasses.replace(self.roi, strip_margin=float(value))  # validates

    @property
    def strip_floor(self) -> float:
        """Strips narrower than this share of the crop's side are skipped (0: none; 1: the
        square crop only) — the latency budget's knob on a dense model
        (``pipeline.strip_budget``): a frame reads the narrowest strip above the floor that
        still holds the person at :attr:`strip_margin`."""
        return self._strip_floor

    @strip_floor.setter
    def strip_floor(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"strip_floor must be in [0, 1], got {value}")
        self._strip_floor = float(value)

    @property
    def whole_cap(self) -> int:
        """The largest whole-frame input side the next whole frame may read (0: the model's
        own, ``backend``): the largest of :attr:`whole_backends` not above it, else the
        smallest — the latency budget's knob on whole frames (``pipeline.whole_budget``)."""
        return self._whole_cap

    @whole_cap.setter
    def whole_cap(self, value: int) -> None:
        if int(value) < 0:
            raise ValueError(f"whole_cap must be >= 0 (0: the model's own size), got {value}")
        self._whole_cap = int(value)

    @property
    def whole_sizes(self) -> tuple[int, ...]:
        """Every side a whole frame can be read at: the model's own and :attr:`whole_backends`'
        (the ladder ``pipeline.whole_budget`` maps the budget's level onto)."""
        return (*(b.info.input_size for b in self.whole_backends), self.backend.info.input_size)

    def whole_backend(self) -> Backend:
        """The session a whole frame goes through under :attr:`whole_cap`."""
        cap = self._whole_cap
        if not cap or not self.whole_backends or cap >= self.backend.info.input_size:
            return self.backend
        fits = [b for b in self.whole_backends if b.info.input_size <= cap]
        return fits[-1] if fits else self.whole_backends[0]

    @property
    def recheck_ratio(self) -> float:
        return self._track.ratio

    @recheck_ratio.setter
    def recheck_ratio(self, value: float) -> None:
        self._track.ratio = recheck_ratio_value(value)

    def reset_tracking(self) -> None:
        """Forget the tracked person: the next frame is read whole."""
        self._previous = None
        self._track.reset()

    def _input_box(self, rgb: np.ndarray
                   ) -> tuple[np.ndarray, Letterbox, Backend, bool, bool]:  # fmt: skip
        """The network's (1, 3, S, W) input, its transform, the session that reads it, whether
        it is a tracking crop, and whether the strip floor (not the person) set its width."""
        h, w = rgb.shape[:2]
        if self.track_person and self._previous is not None and self._previous[1] == (w, h):
            joints = self._previous[0]
            net = self.crop_backend
            size = net.info.input_size
            bound = False
            for strip in self.strip_backends:
                fits = strip_fits(joints, size, strip.info.input_width, self.roi)
                if strip.info.input_width < self._strip_floor * size:
                    bound = bound or fits
                    continue
                if fits:
                    net = strip
                    break
            box = roi_window(joints, w, h, size, self.roi, net.info.input_width)
            if box is not None:
                x = crop_tensor(rgb, box, self._fill, net.info.mean, net.info.std)
                return x, box, net, True, bound
        net = self.whole_backend()
        x, box = letterbox_tensor(rgb, net.info.input_size, self._fill, net.info.mean,
                                  net.info.std)  # fmt: skip
        return x, box, net, False, False

    @property
    def confidence_threshold(self) -> float:
        return self._confidence_threshold

    @confidence_threshold.setter
    def confidence_threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {value}")
        self._confidence_threshold = float(value)

    def estimate(self, rgb: np.ndarray, intrinsics: Intrinsics | None = None) -> PoseResult:
        """Pose of the (most prominent) person in ``rgb`` (H, W, 3) uint8.

        ``intrinsics`` must describe this image's size; ``None`` uses the nominal field of view.
        """
        h, w = rgb.shape[:2]
        if intrinsics is None:
            intrinsics = Intrinsics.nominal(w, h, self.nominal_hfov_deg)
        elif (intrinsics.width, intrinsics.height) != (w, h):
            raise ValueError(
                f"intrinsics are for {intrinsics.width}x{intrinsics.height}, image is {w}x{h}"
            )
        for backend in self.backends:  # the compiled kernel's workers wake while we crop
            backend.prewake()
        result = self._read(rgb, intrinsics)
        tracked = result.roi is not None
        if self._track.due(result.mean_confidence, tracked, result.person_found):
            result = self._recheck(rgb, intrinsics, result)
        self._track.update(result.mean_confidence, result.person_found, result.roi is not None)
        return result

    def _recheck(self, rgb: np.ndarray, intrinsics: Intrinsics,
                 tracked: PoseResult) -> PoseResult:
        """Read the frame whole as well; keep the whole frame's answer when it is more
        confident and the same person, else the crop's (and its track)."""
        kept = self._previous
        self._previous = None
        whole = self._read(rgb, intrinsics)
        take = (whole.person_found and whole.mean_confidence > tracked.mean_confidence
                and joint_box_iou(tracked.joints_px, whole.joints_px) >= RECHECK_MIN_IOU)
        if not take:
            self._previous = kept
        chosen = whole if take else tracked
        timings = {k: tracked.timings_ms.get(k, 0.0) + whole.timings_ms.get(k, 0.0)
                   for k in tracked.timings_ms}  # fmt: skip
        return dataclasses.replace(chosen, rechecked=True, timings_ms=timings)

    def _read(self, rgb: np.ndarray, intrinsics: Intrinsics) -> PoseResult:
        """One pass: the crop or the whole frame, as :meth:`_input_box` decides."""
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        tensor, box, net, cropped, floor_bound = self._input_box(rgb)
        info = net.info
        region, region_executed = self._region(net, box, (w, h))
        t1 = time.perf_counter()
        out: InferenceResult = net.infer(tensor)
        t2 = time.perf_counter()
        lifted = lift(out.joints, out.confidence, box, intrinsics, info.depth_range_mm / 1000.0,
                      info.bone_lengths_m)
        confidence = np.asarray(out.confidence, np.float32)
        found = bool(confidence.mean() >= self.confidence_threshold)
        self._previous = (lifted.pixels.copy(), (w, h)) if found else None
        t3 = time.perf_counter()
        return PoseResult(
            joints_px=lifted.pixels,
            joints_m=lifted.points_m,
            confidence=confidence,
            person_found=found,
            mask_source=functools.partial(execution_mask, out.masks, box, (h, w)),
            density=float(out.density),
            block_density=list(out.block_density),
            root_depth_m=lifted.root_depth_m,
            fit_residual_m=lifted.fit_residual_m,
            intrinsics_source=intrinsics.source,
            timings_ms={
                "preprocess": (t1 - t0) * 1e3,
                "inference": (t2 - t1) * 1e3,
                "postprocess": (t3 - t2) * 1e3,
                "total": (t3 - t0) * 1e3,
            },
            roi=box.window_rect() if cropped else None,
            region_from_pose=region,
            region_executed=region_executed,
            input_hw=info.input_hw,
            strip_floor_bound=floor_bound,
        )

    def _region(self, net: Backend, box: Letterbox, size: tuple[int, int]) -> tuple[bool, bool]:
        """Hand the backend this frame's region (the previous pose's cells, or every cell
        until a person is found) or clear it; whether the backend executes the previous pose's
        region this frame, and whether it executes any region of ours."""
        cells = None
        if self.region_from_pose and self._previous is not None and self._previous[1] == size:
            cells = region_cells(self._previous[0], box, self.region_expand, self.region_margin)
        from_pose = cells is not None
        if cells is None and self.region_from_pose and self.dense_until_found:
            cells = every_cell(box.input_size)
        if cells is None and not self._region_set.get(id(net), True):
            return False, False
        held = net.set_region(cells) and cells is not None
        self._region_set[id(net)] = held
        return held and from_pose, held
