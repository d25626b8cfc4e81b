"""Network joints -> metric 3D joints in the camera's optical frame (x right, y down, z forward).

The network gives, per joint, its image position (x, y in [0, 1] of the letterboxed input) and its
depth relative to the pelvis (z in [-1, 1] × depth range, positive = farther). A single camera
cannot see absolute scale, so the pelvis depth Z is recovered with a body-size prior:

    P_j(Z) = ray_j · (Z + dz_j),   ray_j = ((u_j - cx) / fx, (v_j - cy) / fy, 1)

places every joint on its pixel's viewing ray, at its predicted relative depth. Bone lengths grow
with Z (each bone vector is affine in Z), so Z is chosen to make the bones as long as a reference
skeleton's: the model's own (``ModelInfo.bone_lengths_m``, the median bones of the real 3D
skeletons its lifter was trained on, in the teacher labels' joint definitions), else the
Human3.6M subjects' means. Which one matters: the teacher labels' thorax–nose bone is ~225 mm
where Human3.6M's markers give 121, their hips sit closer to the pelvis, and a fit to the wrong
proportions misplaces Z (``./run eval real`` reports both fits on exact 2D,
``lift_from_triangulated_2d``; ``docs/network.md`` §5d has the numbers):

    Z* = argmin_Z  Σ_b w_b (|P_c(Z) - P_p(Z)| - L_b)²,   w_b = min(conf_p, conf_c)

i.e. the 3D skeleton with reference bone lengths whose projection best matches the 2D joints.
Confidence weights keep occluded/uncertain limbs from pulling the fit. The 1D problem is solved
by a log-spaced grid over [0.2, 50] m, refined by dense sampling of the best bracket,
under the constraint that every joint lies in front of the camera (Z + dz_j > 5 cm).

Error model: Z scales with the subject's true size, so a 1.5 m child is placed ~15 % too far. The
reported ``fit_residual_m`` (RMS bone-length error at Z*) tells a consumer how well the
back-projected skeleton agrees with the prior (large = foreshortened/implausible 2D pose).

Without CameraInfo (or with invalid intrinsics) :meth:`Intrinsics.nominal` assumes a 60°
horizontal field of view centred on the image, typical of webcams and robot RGB cameras; the
depth is then only as good as that guess, and the node reports ``intrinsics: nominal_fov``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import skeleton
from ..runtime.options import check_bone_lengths
from .preprocess import Letterbox

#: Mean bone lengths (m) of the Human3.6M subjects, in the order of ``skeleton.BONES``.
_REFERENCE_BY_BONE: dict[tuple[str, str], float] = {
    ("pelvis", "right_hip"): 0.132,
    ("right_hip", "right_knee"): 0.442,
    ("right_knee", "right_ankle"): 0.454,
    ("pelvis", "left_hip"): 0.132,
    ("left_hip", "left_knee"): 0.442,
    ("left_knee", "left_ankle"): 0.454,
    ("pelvis", "spine"): 0.233,
    ("spine", "thorax"): 0.257,
    ("thorax", "neck_nose"): 0.121,
    ("neck_nose", "head_top"): 0.115,
    ("thorax", "left_shoulder"): 0.151,
    ("left_shoulder", "left_elbow"): 0.278,
    ("left_elbow", "left_wrist"): 0.251,
    ("thorax", "right_shoulder"): 0.151,
    ("right_shoulder", "right_elbow"): 0.278,
    ("right_elbow", "right_wrist"): 0.251,
}
REFERENCE_BONE_LENGTHS_M: tuple[float, ...] = tuple(
    _REFERENCE_BY_BONE[(skeleton.JOINT_NAMES[p], skeleton.JOINT_NAMES[c])]
    for p, c in skeleton.BONES
)

NOMINAL_HFOV_DEG = 60.0
#: Plausible camera intrinsics (see :meth:`Intrinsics.from_k`): the field-of-view range is the
#: node's ``nominal_hfov_deg`` range.
MIN_FOV_DEG = 1.0
MAX_FOV_DEG = 179.0
MAX_PIXEL_ASPECT = 4.0
MIN_DEPTH_M = 0.2
MAX_DEPTH_M = 50.0
_MIN_JOINT_DEPTH_M = 0.05


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the image the joints refer to (pixels).

    Attributes:
        fx, fy, cx, cy: focal lengths and principal point.
        width, height: image size they belong to.
        source: "camera_info" or "nominal_fov" (reported in diagnostics).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str = "camera_info"

    @classmethod
    def from_k(cls, k: np.ndarray | list[float], width: int, height: int) -> Intrinsics:
        """Validate a row-major 3×3 K (CameraInfo.k) for an image of ``width`` × ``height``.

        The bounds are those of a physical pinhole camera, wide enough for fisheye-to-telephoto
        lenses and shifted sensors: a field of view within the ``nominal_hfov_deg`` range
        (1°–179°) on both axes (fx = 1e12 would place every joint on the optical axis), square-ish
        pixels (fx/fy within [1/4, 4]), a principal point inside the image or at most half an
        image beyond its edge, and the last row of K equal to (0, 0, 1).

        Raises:
            ValueError: NaN/inf entries, non-positive or implausible focal lengths, or a
                principal point far outside the image (the usual signs of an uncalibrated,
                all-zero or corrupted CameraInfo); the message names the offending values.
        """
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise ValueError(f"K must have 9 entries, got {k.size}")
        if not np.all(np.isfinite(k)):
            raise ValueError("K contains NaN or inf")
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        if fx <= 0 or fy <= 0:
            raise ValueError(f"K has non-positive focal length (fx={fx}, fy={fy}): uncalibrated?")
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if abs(k[6]) > 1e-9 or abs(k[7]) > 1e-9 or abs(k[8] - 1.0) > 1e-6:
            raise ValueError(f"K's last row is ({k[6]}, {k[7]}, {k[8]}), not (0, 0, 1)")
        for axis, f, side in (("horizontal", fx, width), ("vertical", fy, height)):
            fov = math.degrees(2.0 * math.atan(side / (2.0 * f)))
            if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
                raise ValueError(f"focal length {f:g} px gives a {fov:.3g}° {axis} field of view "
                                 f"on {width}x{height} (plausible: {MIN_FOV_DEG:g}°-"
                                 f"{MAX_FOV_DEG:g}°)")
        if not 1.0 / MAX_PIXEL_ASPECT <= fx / fy <= MAX_PIXEL_ASPECT:
            raise ValueError(f"fx/fy = {fx / fy:.3g} (fx={fx:g}, fy={fy:g}): not a real camera")
        if not (-0.5 * width <= cx <= 1.5 * width and -0.5 * height <= cy <= 1.5 * height):
            raise ValueError(f"principal point ({cx:g}, {cy:g}) is far outside "
                             f"{width}x{height}")
        return cls(float(fx), float(fy), float(cx), float(cy), int(width), int(height))

    @classmethod
    def nominal(cls, width: int, height: int, hfov_deg: float = NOMINAL_HFOV_DEG) -> Intrinsics:
        """Square pixels, centred principal point, ``hfov_deg`` horizontal field of view."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if not 1.0 < hfov_deg < 179.0:
            raise ValueError(f"hfov_deg must be in (1, 179), got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height), "nominal_fov")

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) optical-frame points (m) -> (N, 2) pixels."""
        p = np.asarray(points, dtype=np.float64)
        z = np.where(np.abs(p[:, 2]) < 1e-9, 1e-9, p[:, 2])
        return np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], -1)


@dataclass(frozen=True)
class LiftResult:
    """Metric pose in the optical frame.

    Attributes:
        points_m: (J, 3) joints in metres.
        pixels: (J, 2) joints in image pixels.
        root_depth_m: recovered pelvis depth.
        fit_residual_m: RMS bone-length error (m) of the skeleton at ``root_depth_m``.
    """

    points_m: np.ndarray
    pixels: np.ndarray
    root_depth_m: float
    fit_residual_m: float


_PARENTS = np.array([p for p, _ in skeleton.BONES])
_CHILDREN = np.array([c for _, c in skeleton.BONES])
#: Root-depth search: a log-spaced grid over the whole range, then rounds of dense sampling of
#: the best point's bracket (each round shrinks it by ``(_REFINE_POINTS - 1) / 2``; three
#: rounds of 65 take the grid's ~4 % bracket below 1e-5 relative, 0.05 mm at 5 m). Why not a
#: golden-section search: it needs ~80 tiny numpy calls a frame (~1.5 ms on a 2-core CPU,
#: measured in the node's per-frame profile), this needs four.
_GRID_POINTS = 256
_REFINE_POINTS = 65
_REFINE_ROUNDS = 3


def viewing_rays(pixels: np.ndarray, fx: Any, fy: Any, cx: Any, cy: Any) -> np.ndarray:
    """(..., 2) pixels -> (..., 3) their viewing rays at depth 1, ((u - cx) / fx, (v - cy) / fy,
    1); the intrinsics broadcast against the leading dimensions (one camera, or one per row)."""
    p = np.asarray(pixels, np.float64)
    return np.stack([(p[..., 0] - cx) / fx, (p[..., 1] - cy) / fy, np.ones(p.shape[:-1])], -1)


class _BoneFit:
    """The weighted bone-length error as a function of the root depth Z, set up once a frame.

    Each bone vector is affine in Z, ``v(Z) = Z a + b``, so its squared length is the quadratic
    ``Z² (a·a) + 2 Z (a·b) + b·b``: the three dot products per bone are taken once, and each
    candidate depth then costs a few (G, B) operations instead of a (G, B, 3) array (the fit
    evaluates ~450 candidates a frame; ~0.5 ms less on the node's 2-core CPU).
    """

    def __init__(self, rays: np.ndarray, dz: np.ndarray, ref: np.ndarray, w: np.ndarray) -> None:
        a = rays[_CHILDREN] - rays[_PARENTS]  # (B, 3): d(bone)/dZ
        b = dz[_CHILDREN, None] * rays[_CHILDREN] - dz[_PARENTS, None] * rays[_PARENTS]
        self.aa = (a * a).sum(-1)
        self.ab2 = 2.0 * (a * b).sum(-1)
        self.bb = (b * b).sum(-1)
        self.ref = ref
        self.w = w
        #: the shallowest depth at which every joint is in front of the camera
        self.z_min = _MIN_JOINT_DEPTH_M - float(dz.min())

    def errors(self, depths: np.ndarray) -> np.ndarray:
        """Weighted squared bone-length error for each candidate root depth in ``depths``
        (G,); inf where a joint would be behind the camera."""
        z = depths[:, None]
        sq = np.maximum((z * self.aa + self.ab2) * z + self.bb, 0.0)  # rounding can dip < 0
        err = ((np.sqrt(sq) - self.ref) ** 2 * self.w).sum(-1)
        return np.where(depths < self.z_min, np.inf, err)


#: the first, log-spaced pass of the root-depth search (the same every frame)
_GRID = np.geomspace(MIN_DEPTH_M, MAX_DEPTH_M, _GRID_POINTS)


def fit_root_depth(
    rays: np.ndarray,
    dz: np.ndarray,
    weights: np.ndarray,
    reference: np.ndarray | None = None,
) -> tuple[float, float]:
    """Root depth (m) minimising the weighted bone-length error; returns (Z*, RMS error in m).

    ``reference`` defaults to :data:`REFERENCE_BONE_LENGTHS_M`.
    """
    reference = np.asarray(REFERENCE_BONE_LENGTHS_M if reference is None else reference)
    w = np.clip(np.asarray(weights, np.float64), 0.0, None)
    if w.sum() <= 1e-12:  # no confident bone: let every bone vote equally rather than fail
        w = np.ones_like(w)
    w = w / w.sum()
    fit = _BoneFit(rays, dz, reference, w)
    grid = _GRID
    err = fit.errors(grid)
    if not np.isfinite(err).any():  # relative depths so extreme no grid point is feasible
        z = float(MAX_DEPTH_M)
        return z, float(np.sqrt(fit.errors(np.array([z]))[0]))
    for _ in range(_REFINE_ROUNDS):
        i = int(np.argmin(err))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        grid = np.linspace(lo, hi, _REFINE_POINTS)
        err = fit.errors(grid)
    i = int(np.argmin(err))  # the bracket holds the previous best point: never worse
    return float(grid[i]), float(np.sqrt(err[i]))


def lift(
    joints: np.ndarray,
    confidence: np.ndarray,
    box: Letterbox,
    intrinsics: Intrinsics,
    depth_range_m: float,
    reference: Sequence[float] | None = None,
) -> LiftResult:
    """Network joints (J, 3) + letterbox + intrinsics -> metric optical-frame joints.

    Args:
        joints: (J, 3) x, y in [0, 1] of the network input, z root-relative in [-1, 1].
        confidence: (J,) in [0, 1], used as fit weights.
        box: the letterbox that produced the network input.
        intrinsics: of the original image (``box.image_width`` × ``box.image_height``).
        depth_range_m: metres that z = 1 stands for (``ModelInfo.depth_range_mm`` / 1000).
        reference: the skeleton's bone lengths in metres (``skeleton.BONES`` order), the
            body-size prior Z is fitted to (``ModelInfo.bone_lengths_m``); None or empty =
            :data:`REFERENCE_BONE_LENGTHS_M`.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"joints must be ({skeleton.NUM_JOINTS}, 3), got {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("joints contain NaN or inf")
    if depth_range_m <= 0:
        raise ValueError(f"depth_range_m must be > 0, got {depth_range_m}")
    pixels = box.normalised_to_image(joints[:, :2])
    rays = viewing_rays(pixels, intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    dz = joints[:, 2] * depth_range_m
    dz = dz - dz[skeleton.ROOT]  # the root is the origin of relative depth by definition
    conf = np.asarray(confidence, dtype=np.float64)
    weights = np.minimum(conf[_PARENTS], conf[_CHILDREN])
    own = check_bone_lengths(reference, "reference")
    z_root, residual = fit_root_depth(rays, dz, weights, np.asarray(own) if own else None)
    points = rays * (z_root + dz)[:, None]
    return LiftResult(points.astype(np.float32), pixels.astype(np.float32), z_root, residual)
