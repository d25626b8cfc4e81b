"""Where to look in the next frame: a square window around the person found in this one.

A full camera frame letterboxed into a 128-256 px input leaves a person a few dozen pixels
tall; the same network reads a person who fills its input far better (held-out synthetic
frames, shipped dense model: MPJPE 245 -> 233 mm, PCK@0.1 0.43 -> 0.49 with a box from a
first full-frame pass; ``models/MODEL_CARD.md``). So, as MoveNet and BlazePose do, the
estimator feeds the network a crop around the previous frame's skeleton while it keeps finding
the person, and falls back to the whole frame when it loses them. The crop rule (square, side
= ``side_factor`` × the joints' box, centred on the box) is the one the training augmentation
(``data.augment.person_crop``) and the two-pass evaluation (``training.transforms.PersonCrop``)
use, so the network sees at run time the framing it was trained and measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..framing import person_square
from ..model.locator import cells_from_box
from .preprocess import Letterbox, strip_side_multiple

#: Crop side as a multiple of the joints' box: the middle of the training range (1.2-1.8).
DEFAULT_SIDE_FACTOR = 1.5
#: Smallest window side in image pixels (a collapsed skeleton must not zoom onto a few pixels).
MIN_SIDE_PX = 32
#: Network input side for tracking crops that the node uses by default (``crop_input_size``):
#: a person who fills the crop needs fewer pixels than one to be found in a whole frame (held-out
#: real, shipped dense checkpoint: square crops at 224 within 0.5 % of its own 256 in 2D for
#: 0.77 of the MACs, at 192 within 2 % for 0.57 but 13 mm more 3D error, at 160 the person is
#: lost; whole frames at 224 lose a sixth of their PCK). Read as strips (below), 224 costs about
#: what 192's strips did. ``docs/network.md`` §2c and §2d have the runs.
CROP_INPUT_SIZE = 224
#: Strips of that crop the node may read instead of its square (``crop_input_widths``): the
#: narrowest that holds the person (``strip_fits``). An upright person leaves a square's sides
#: to background; on the held-out real frames strips were read on 98 % of the frames, for 0.41
#: of a whole-frame pass's MACs instead of the square's 0.77 (``docs/network.md`` §2d).
CROP_INPUT_WIDTHS: tuple[int, ...] = (64, 96, 128, 160, 192)
#: A strip must hold the joint box's width × this (``strip_margin``): 10 % of the box's width
#: on either side; with the widths 32 px apart a strip is usually wider still. A hand cut at a
#: strip's edge is found at that edge, so the next frame's strip is 1.2× wider, until it holds
#: the hand or the square is read. At 224 px the margin costs little (held-out: 1.2 → 0.41 of
#: a pass, 70 mm; 1.3 → 0.45, 66 mm; the square → 0.77, 64 mm; at 192 px 1.3 cost 4 mm:
#: ``docs/network.md`` §2d).
STRIP_MARGIN = 1.2
STRIP_MARGIN_RANGE = (1.0, 4.0)


@dataclass(frozen=True)
class RoiConfig:
    """Tracking window options.

    Attributes:
        side_factor: window side / larger side of the joints' box.
        min_side_px: smallest window side in image pixels.
        strip_margin: a strip of the window holds the person when their joint box's width ×
            this fits its width (:func:`strip_fits`).
    """

    side_factor: float = DEFAULT_SIDE_FACTOR
    min_side_px: int = MIN_SIDE_PX
    strip_margin: float = STRIP_MARGIN

    def __post_init__(self) -> None:
        if not 1.0 <= self.side_factor <= 4.0:
            raise ValueError(f"side_factor must be in [1, 4], got {self.side_factor}")
        lo, hi = STRIP_MARGIN_RANGE
        if not lo <= self.strip_margin <= hi:
            raise ValueError(f"strip_margin must be in [{lo:g}, {hi:g}], got {self.strip_margin}")
        if self.min_side_px < 1:
            raise ValueError(f"min_side_px must be >= 1, got {self.min_side_px}")


def roi_window(
    joints_px: np.ndarray,
    image_width: int,
    image_height: int,
    input_size: int,
    cfg: RoiConfig | None = None,
    input_width: int = 0,
) -> Letterbox | None:
    """The crop for the next frame from this frame's (J, 2) joints in image pixels; with
    ``input_width`` the network reads the window's central strip that wide (the side is
    rounded to whole image pixels at the strip's edges, ``strip_side_multiple``).

    Returns None (use the whole frame) when the joints are not finite or the window would be
    at least as large as the frame's longer side (cropping would not zoom in).
    """
    cfg = cfg or RoiConfig()
    pts = np.asarray(joints_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not len(pts) or not np.isfinite(pts).all():
        return None
    centre, side = person_square(pts, cfg.side_factor, cfg.min_side_px)
    if side >= max(image_width, image_height):
        return None
    multiple = strip_side_multiple(input_size, input_width)
    side_px = multiple * max(1, int(round(side / multiple)))
    x0 = int(round(centre[0] - side_px / 2.0))
    y0 = int(round(centre[1] - side_px / 2.0))
    return Letterbox.window(image_width, image_height, input_size, x0, y0, side_px, input_width)


def strip_fits(joints_px: np.ndarray, input_size: int, input_width: int,
               cfg: RoiConfig | None = None) -> bool:
    """Whether the central ``input_width`` strip of the next frame's square window holds
    this frame's joints with a margin: their box's width × ``strip_margin`` at most the
    strip's width. True for an upright person (a standing one's box is 0.3-0.6 as wide as
    tall), False when the arms or a bend make them wide."""
    cfg = cfg or RoiConfig()
    pts = np.asarray(joints_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not len(pts) or not np.isfinite(pts).all():
        return False
    _, side = person_square(pts, cfg.side_factor, cfg.min_side_px)
    box_width = float(pts[:, 0].max() - pts[:, 0].min())
    return box_width * cfg.strip_margin <= side * input_width / input_size


#: Growth of the previous frame's joint box before it becomes the next frame's region: the body
#: reaches past its joints (head top, hands, feet) and moves between frames.
REGION_EXPAND = 1.3
#: Stride-16 cells added around the grown box (each block's 3×3 reads one ring past its cells).
REGION_MARGIN = 1
#: Accepted ranges (the estimator's and the node's): a region smaller than the joints' own box
#: cuts the person; beyond 3× or 4 cells it is the whole crop.
REGION_EXPAND_RANGE = (1.0, 3.0)
REGION_MARGIN_RANGE = (0, 4)


def region_expand_value(value: float) -> float:
    """``value`` as a region growth; ValueError outside :data:`REGION_EXPAND_RANGE`."""
    lo, hi = REGION_EXPAND_RANGE
    if not lo <= value <= hi:
        raise ValueError(f"region_expand must be in [{lo:g}, {hi:g}], got {value}")
    return float(value)


def region_margin_value(value: int) -> int:
    """``value`` as a region margin in cells; ValueError unless an integer in
    :data:`REGION_MARGIN_RANGE`."""
    lo, hi = REGION_MARGIN_RANGE
    if int(value) != value or not lo <= value <= hi:
        raise ValueError(f"region_margin must be an integer in [{lo}, {hi}], got {value}")
    return int(value)


def every_cell(input_size: int) -> np.ndarray:
    """The region of every (S/16, S/16) cell of an ``input_size`` input: what a gated model is
    handed where no pose gives one and ``dense_until_found`` runs it whole."""
    n = int(input_size) // 16
    return np.ones((n, n), np.float32)


def region_cells(joints_px: np.ndarray, box: Letterbox, expand: float = REGION_EXPAND,
                 margin: int = REGION_MARGIN) -> np.ndarray | None:
    """The next frame's execution region from this frame's (J, 2) joints in image pixels:
    their box in the next input's pixels (``box`` = how that input is cut from the image),
    grown and dilated, as (S/16, S/16) 0/1 cells (``model.locator.cells_from_box``). None when
    the joints are not finite or fall outside that input (nothing to go on)."""
    pts = np.asarray(joints_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not len(pts) or not np.isfinite(pts).all():
        return None
    inp = box.image_to_normalised(pts) * box.input_size
    x0, y0 = inp.min(axis=0)
    x1, y1 = inp.max(axis=0)
    s = box.input_size
    if x1 < 0 or y1 < 0 or x0 >= s or y0 >= s:
        return None
    cells = cells_from_box(np.array([x0, y0, x1, y1]), s, margin, expand)
    return cells if cells.any() else None
