"""Multi-view triangulation of a 2D teacher's joints into real 3D labels (Pose2Sim's rig).

Pose2Sim's demo trials are filmed by four synchronised cameras calibrated with Qualisys. Each
view's BlazePose 2D joints are noisy and sometimes wrong (an occluded limb, the other person);
triangulating them across views gives 3D labels closer to the truth than any single-view
teacher, and the reprojection residual says how far the views agree.

Calibration (``Calib.qca.txt``, Qualisys XML), read as Pose2Sim's own converter
(``Pose2Sim/Utilities/calib_qca_to_toml.py``) reads it:

* ``intrinsic``: focal lengths and principal point in 1/64 px of the sensor (``focalLengthU /
  64``); the principal point is shifted by the ``fov_video`` left/top offset. Distortion
  ``radialDistortion1/2``, ``tangentalDistortion1/2`` are divided by 64 as Pose2Sim does (the
  factor is a parameter, :data:`QCA_DISTORTION_SCALE`; the label run reports residuals so a wrong
  factor would show).
* ``transform``: r11..r33 and the camera position x, y, z in **mm** in the Qualisys world (z up).
  World -> OpenCV camera: ``R = Rx(pi) @ M``, ``t = -R @ position`` with ``M[i][j] = r(i+1)(j+1)``
  (Qualisys cameras look along -z with y up; OpenCV along +z with y down).
* image size from ``fov_video`` (right - left + 1, bottom - top + 1).

Triangulation is the linear DLT on undistorted normalised coordinates, each view's two rows
weighted by the teacher's visibility. Robustness: a view whose reprojection error exceeds a
threshold is dropped (the worst first, re-triangulating each time) while at least ``min_views``
remain; a joint whose remaining views still disagree gets no label. Before that, a frame-level
check keeps only views whose person agrees with the others (median residual over joints), so in
the two-person trial a view that found the other person is rejected, and the frame is dropped
when too few views agree.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Pose2Sim divides Qualisys distortion coefficients by 64, like the intrinsics.
QCA_DISTORTION_SCALE: float = 1.0 / 64.0
#: A joint is triangulated from views where the teacher's visibility is at least this.
DEFAULT_MIN_VISIBILITY: float = 0.3
#: Per-joint rejection: a view whose reprojection error exceeds this (px) is dropped.
DEFAULT_JOINT_THRESHOLD_PX: float = 25.0
#: Frame-level consistency: a view whose median joint error exceeds this (px) saw someone else.
DEFAULT_FRAME_THRESHOLD_PX: float = 40.0

_RX_PI = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Camera:
    """A calibrated pinhole camera with OpenCV's 4-coefficient distortion (k1, k2, p1, p2).

    Attributes:
        name: the view's name (``cam01``).
        K: (3, 3) intrinsics in pixels.
        dist: (4,) k1, k2, p1, p2.
        R: (3, 3) world -> camera rotation (OpenCV camera: x right, y down, z forward).
        t: (3,) world -> camera translation, metres.
        size: (width, height) in pixels.
    """

    name: str
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray
    size: tuple[int, int]

    @property
    def centre(self) -> np.ndarray:
        """Camera position in the world (metres)."""
        return -self.R.T @ self.t

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) world metres -> (..., 3) this camera's frame, metres."""
        return np.asarray(points_world, np.float64) @ self.R.T + self.t

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) world metres -> (..., 2) distorted pixel coordinates."""
        pc = self.to_camera(points_world)
        xy = pc[..., :2] / pc[..., 2:3]
        return distort(xy, self.dist) @ self.K[:2, :2].T + self.K[:2, 2]

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 2) distorted pixels -> (..., 2) undistorted normalised coordinates."""
        px = np.asarray(pixels, np.float64)
        xy_d = (px - self.K[:2, 2]) @ np.linalg.inv(self.K[:2, :2]).T
        return undistort(xy_d, self.dist)

    @property
    def P(self) -> np.ndarray:
        """(3, 4) projection to normalised coordinates, ``[R | t]``."""
        return np.hstack([self.R, self.t[:, None]])


def distort(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """OpenCV's radial + tangential model on normalised coordinates."""
    k1, k2, p1, p2 = (float(v) for v in dist)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort(xy_d: np.ndarray, dist: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Invert :func:`distort` by fixed-point iteration (as ``cv2.undistortPoints``)."""
    if not np.any(dist):
        return np.asarray(xy_d, np.float64).copy()
    k1, k2, p1, p2 = (float(v) for v in dist)
    xy = np.asarray(xy_d, np.float64).copy()
    for _ in range(iterations):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        xy = np.stack([(xy_d[..., 0] - dx) / radial, (xy_d[..., 1] - dy) / radial], axis=-1)
    return xy


def _natural_key(s: str) -> list[object]:
    return [int(c) if c.isdigit() else c.lower() for c in re.split(r"(\d+)", s)]


def parse_qca(text: str, distortion_scale: float = QCA_DISTORTION_SCALE) -> list[Camera]:
    """Cameras of a Qualisys ``.qca.txt`` calibration (XML), sorted by name (cam01, cam02 …).

    Raises:
        ValueError: not a Qualisys calibration (no cameras, missing attributes).
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"calibration is not XML: {exc}") from exc
    cams: list[Camera] = []
    for tag in root.findall("cameras/camera"):
        name = tag.get("serial") or f"cam{len(cams) + 1:02d}"
        fov, intr, tr = tag.find("fov_video"), tag.find("intrinsic"), tag.find("transform")
        if fov is None or intr is None or tr is None:
            raise ValueError(f"camera {name}: needs fov_video, intrinsic and transform elements")
        try:
            left, top = float(fov.get("left")), float(fov.get("top"))  # type: ignore[arg-type]
            width = int(float(fov.get("right")) - left + 1)  # type: ignore[arg-type]
            height = int(float(fov.get("bottom")) - top + 1)  # type: ignore[arg-type]
            g = {k: float(v) for k, v in intr.attrib.items() if _is_float(v)}
            K = np.array([
                [g["focalLengthU"] / 64.0, 0.0, g["centerPointU"] / 64.0 - left],
                [0.0, g["focalLengthV"] / 64.0, g["centerPointV"] / 64.0 - top],
                [0.0, 0.0, 1.0],
            ])
            dist = distortion_scale * np.array([g["radialDistortion1"], g["radialDistortion2"],
                                                g["tangentalDistortion1"],
                                                g["tangentalDistortion2"]])
            M = np.array([[float(tr.get(f"r{i}{j}")) for j in (1, 2, 3)]  # type: ignore[arg-type]
                          for i in (1, 2, 3)])
            pos_m = np.array([float(tr.get(a)) for a in "xyz"]) / 1000.0  # type: ignore[arg-type]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"camera {name}: missing calibration attribute {exc}") from exc
        R = _RX_PI @ M
        cams.append(Camera(name, K, dist, R, -R @ pos_m, (width, height)))
    if not cams:
        raise ValueError("no cameras/camera elements: not a Qualisys calibration")
    return sorted(cams, key=lambda c: _natural_key(c.name))


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def dlt(normalised: np.ndarray, projections: np.ndarray, weights: np.ndarray | None = None
        ) -> np.ndarray:
    """Weighted linear triangulation of one point.

    Args:
        normalised: (V, 2) undistorted normalised coordinates, one per view.
        projections: (V, 3, 4) matching ``[R | t]``.
        weights: (V,) row weights (visibility); None = ones.

    Returns:
        (3,) world point.
    """
    xy = np.asarray(normalised, np.float64)
    P = np.asarray(projections, np.float64)
    if xy.shape[0] < 2:
        raise ValueError(f"triangulation needs >= 2 views, got {xy.shape[0]}")
    w = np.ones(len(xy)) if weights is None else np.asarray(weights, np.float64)
    rows = np.concatenate([
        (xy[:, 0:1] * P[:, 2] - P[:, 0]) * w[:, None],
        (xy[:, 1:2] * P[:, 2] - P[:, 1]) * w[:, None],
    ])
    _, _, vt = np.linalg.svd(rows)
    h = vt[-1]
    return h[:3] / h[3]


@dataclass
class PointResult:
    """One robustly triangulated point: ``point`` is NaN when no consistent set of views was
    found; ``errors`` (V,) reprojection error of every view (px; NaN for views not offered);
    ``used`` (V,) views kept; ``residual`` RMS reprojection error over the used views (px)."""

    point: np.ndarray
    errors: np.ndarray
    used: np.ndarray
    residual: float


def triangulate_robust(
    cameras: Sequence[Camera],
    pixels: np.ndarray,
    weights: np.ndarray,
    threshold_px: float = DEFAULT_JOINT_THRESHOLD_PX,
    min_views: int = 2,
) -> PointResult:
    """Triangulate one point, dropping the worst view while its error exceeds ``threshold_px``.

    Views with weight 0 (not detected / below the visibility floor) are never used. When the
    last ``min_views`` views still disagree beyond the threshold, the point is NaN: a label
    that the views contradict is worse than none.
    """
    px = np.asarray(pixels, np.float64)
    w = np.asarray(weights, np.float64)
    nv = len(cameras)
    used = (w > 0) & np.all(np.isfinite(px), axis=1)
    errors = np.full(nv, np.nan)
    nan3 = np.full(3, np.nan)
    if used.sum() < max(2, min_views):
        return PointResult(nan3, errors, np.zeros(nv, bool), float("nan"))
    norm = np.stack([c.normalise(p) if u else np.zeros(2)
                     for c, p, u in zip(cameras, px, used, strict=True)])
    P = np.stack([c.P for c in cameras])
    while True:
        X = dlt(norm[used], P[used], w[used])
        errors = np.array([np.linalg.norm(c.project(X) - p) if np.all(np.isfinite(p)) else np.nan
                           for c, p in zip(cameras, px, strict=True)])
        in_front = np.array([c.to_camera(X)[2] > 0 for c in cameras])
        errors[~in_front] = np.inf
        bad = used & (errors > threshold_px)
        if not bad.any():
            break
        if used.sum() <= max(2, min_views):
            return PointResult(nan3, errors, np.zeros(nv, bool), float("nan"))
        worst = int(np.nanargmax(np.where(used, errors, -1.0)))
        used[worst] = False
    residual = float(np.sqrt(np.mean(errors[used] ** 2)))
    return PointResult(X, errors, used.copy(), residual)


@dataclass
class FrameResult:
    """One synchronised frame triangulated.

    Attributes:
        joints_world: (J, 3) metres, world frame (NaN where a joint has no label).
        joints_cam: (V, J, 3) the same points in each camera's frame, metres.
        residual_px: (J,) RMS reprojection error over the views used.
        views_used: (V, J) bool.
        view_consistent: (V,) views whose person agreed with the others (frame-level check).
        view_median_px: (V,) median joint error of each view against the all-view solution.
        valid: False when too few views agree (the frame gets no 3D label).
    """

    joints_world: np.ndarray
    joints_cam: np.ndarray
    residual_px: np.ndarray
    views_used: np.ndarray
    view_consistent: np.ndarray
    view_median_px: np.ndarray
    valid: bool


def _view_medians(cameras: Sequence[Camera], px: np.ndarray, w: np.ndarray, views: np.ndarray
                  ) -> np.ndarray:
    """Per view, the median over joints of its reprojection error against the plain weighted
    DLT of the ``views`` subset (no per-joint rejection): a view tracking another person is far
    off on most joints."""
    nv, nj = w.shape
    errs = np.full((nv, nj), np.nan)
    P = np.stack([c.P for c in cameras])
    for j in range(nj):
        sel = views & (w[:, j] > 0)
        if sel.sum() < 2:
            continue
        norm = np.stack([cameras[v].normalise(px[v, j]) for v in np.flatnonzero(sel)])
        X = dlt(norm, P[sel], w[sel, j])
        for v in range(nv):
            if w[v, j] > 0:
                errs[v, j] = np.linalg.norm(cameras[v].project(X) - px[v, j])
    with np.errstate(all="ignore"):
        return np.array([np.nanmedian(e) if np.isfinite(e).any() else np.inf for e in errs])


def triangulate_frame(
    cameras: Sequence[Camera],
    joints_px: np.ndarray,
    visibility: np.ndarray,
    min_visibility: float = DEFAULT_MIN_VISIBILITY,
    joint_threshold_px: float = DEFAULT_JOINT_THRESHOLD_PX,
    frame_threshold_px: float = DEFAULT_FRAME_THRESHOLD_PX,
    min_consistent_views: int = 2,
) -> FrameResult:
    """Triangulate all joints of one synchronised frame.

    Args:
        joints_px: (V, J, 2) each view's 2D joints (NaN rows where the view found nobody).
        visibility: (V, J) teacher visibility (0 where nobody was found); the DLT weight.
        min_consistent_views: the frame is dropped (``valid`` False) when fewer views agree.
    """
    px = np.asarray(joints_px, np.float64)
    vis = np.nan_to_num(np.asarray(visibility, np.float64))
    nv, nj = vis.shape
    if px.shape != (nv, nj, 2) or len(cameras) != nv:
        raise ValueError(f"expected ({len(cameras)}, J, 2) joints, got {px.shape} / {vis.shape}")
    w = np.where((vis >= min_visibility) & np.all(np.isfinite(px), axis=2), vis, 0.0)
    views = w.any(axis=1)
    medians = np.full(nv, np.inf)
    while views.sum() >= 2:
        medians = _view_medians(cameras, px, w, views)
        worst = int(np.argmax(np.where(views, medians, -1.0)))
        if medians[worst] <= frame_threshold_px or views.sum() <= 2:
            break
        views[worst] = False
    consistent = views & (medians <= frame_threshold_px)
    world = np.full((nj, 3), np.nan)
    used = np.zeros((nv, nj), bool)
    residual = np.full(nj, np.nan)
    valid = int(consistent.sum()) >= max(2, min_consistent_views)
    if valid:
        wc = np.where(consistent[:, None], w, 0.0)
        for j in range(nj):
            r = triangulate_robust(cameras, px[:, j], wc[:, j], joint_threshold_px)
            world[j], used[:, j], residual[j] = r.point, r.used, r.residual
    cam = np.stack([c.to_camera(world) for c in cameras])
    return FrameResult(world, cam, residual, used, consistent, medians, valid)


def cameras_from_triangulated(tri: dict[str, np.ndarray]) -> list[Camera]:
    """The rig a ``triangulated.npz`` was made with (its ``views``, ``K``, ``dist``, ``R``,
    ``t``, ``size``), so later stages triangulate with the same cameras without the
    calibration file."""
    return [Camera(str(name), np.asarray(tri["K"][v], np.float64),
                   np.asarray(tri["dist"][v], np.float64), np.asarray(tri["R"][v], np.float64),
                   np.asarray(tri["t"][v], np.float64),
                   (int(tri["size"][v][0]), int(tri["size"][v][1])))
            for v, name in enumerate(tri["views"])]  # fmt: skip


def triangulate_people(
    cameras: Sequence[Camera],
    candidates_px: np.ndarray,
    candidates_visibility: np.ndarray,
    min_consistent_views: int = 3,
    min_separation_m: float = 0.2,
) -> list[tuple[FrameResult, np.ndarray]]:
    """Several people in one synchronised frame, from up to C detections per view.

    The teacher follows one person per image, so a view of a two-person trial holds one
    detection of either person; a second pass on the image with that person masked out gives
    the other (``data.people_teacher``). Which detection in which view is the same person is
    not known: each person is the assignment of one remaining detection or none per view
    ((C + 1)^V of them, at least ``min_consistent_views`` detections) whose triangulation has
    the most views agreeing (then the lowest median residual), by :func:`triangulate_frame`'s
    frame-level check; its detections are then taken out and the next person is searched among
    the rest. A person
    whose joints lie a median ``min_separation_m`` or less from an earlier one's is the same
    person seen twice and is dropped.

    Args:
        candidates_px: (C, V, J, 2) detection c of each view (NaN where none).
        candidates_visibility: (C, V, J) their visibilities (0 where none).

    Returns:
        [(FrameResult, (V,) candidate index per view, -1 where the view took none)] of the
        valid people, most consistent first.
    """
    px = np.asarray(candidates_px, np.float64)
    vis = np.nan_to_num(np.asarray(candidates_visibility, np.float64))
    c, nv = vis.shape[:2]
    if px.shape[:3] != vis.shape or len(cameras) != nv:
        raise ValueError(f"expected (C, {len(cameras)}, J, 2) / (C, V, J) candidates, got "
                         f"{px.shape} / {vis.shape}")
    vis = np.where(np.all(np.isfinite(px), axis=3), vis, 0.0)
    free = vis.any(axis=2)  # (C, V): detections not yet given to a person
    people: list[tuple[FrameResult, np.ndarray]] = []
    while True:
        # a view may show neither detection as this person (it saw only the other one)
        options = [[k for k in range(c) if free[k, v]] + [-1] for v in range(nv)]
        best: tuple[tuple[int, float], FrameResult, np.ndarray] | None = None
        for pick in itertools.product(*options):
            sel = np.array(pick)
            if (sel >= 0).sum() < max(2, min_consistent_views):
                continue
            p = np.stack([px[k, v] if k >= 0 else np.full(px.shape[2:], np.nan)
                          for v, k in enumerate(sel)])  # fmt: skip
            w = np.stack([vis[k, v] if k >= 0 else np.zeros(vis.shape[2])
                          for v, k in enumerate(sel)])  # fmt: skip
            r = triangulate_frame(cameras, p, w, min_consistent_views=min_consistent_views)
            if not r.valid:
                continue
            score = (int(r.view_consistent.sum()),
                     -float(np.mean(r.view_median_px[r.view_consistent])))
            if best is None or score > best[0]:
                best = (score, r, np.where(r.view_consistent, sel, -1))
        if best is None:
            return people
        _, r, used = best
        for v, k in enumerate(used):
            if k >= 0:
                free[k, v] = False
        seen = [np.nanmedian(np.linalg.norm(r.joints_world - q.joints_world, axis=-1))
                for q, _ in people]  # fmt: skip
        if all(d > min_separation_m for d in seen):
            people.append((r, used))
