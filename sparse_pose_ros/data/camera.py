"""Random pinhole camera around a posed body, in the OpenCV optical frame (x right, y down, z fwd).

The camera is sampled by what the image should look like rather than by raw extrinsics: a field
of view, an elevation (camera above or below the body centre, looking at it), a roll, the person's
height in the frame (25-90 % of the image height by default) and the pixel where the body centre
lands. The distance follows from the requested height; the body centre is moved off the principal
axis by rotating the camera, which keeps the intrinsics simple (fx = fy, principal point near the
image centre). Body yaw (0-360 degrees) is applied to the body before this, see ``synthetic.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraRanges:
    """Sampling ranges (degrees, fractions of image height)."""

    fov_deg: tuple[float, float] = (40.0, 75.0)  # horizontal field of view
    elevation_deg: tuple[float, float] = (-10.0, 40.0)  # > 0: camera above, looking down
    roll_std_deg: float = 4.0
    height_fraction: tuple[float, float] = (0.25, 0.90)  # person bbox height / image height
    max_width_fraction: float = 0.95
    truncation_prob: float = 0.1  # chance that the body may be partly outside the frame
    principal_jitter_px: float = 4.0
    min_distance_m: float = 0.8


@dataclass(frozen=True)
class Camera:
    """World -> camera transform ``x_cam = R @ (x_world - centre)`` and intrinsics ``K``."""

    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3)
    centre: np.ndarray  # (3,) camera centre in world, metres
    elevation_deg: float
    height_fraction: float  # requested person height / image height

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera-frame points (same units)."""
        return (np.asarray(points_world) - self.centre) @ self.R.T


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixel coordinates (pixel centres at integers)."""
    points_cam = np.asarray(points_cam, dtype=np.float64)
    uvw = points_cam @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector ``a`` to unit vector ``b`` (Rodrigues)."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def _look_at(forward: np.ndarray) -> np.ndarray:
    """World->camera rotation for a camera looking along ``forward`` with world +Y up."""
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def sample_camera(
    rng: np.random.Generator,
    vertices_world: np.ndarray,
    width: int = 256,
    height: int = 256,
    ranges: CameraRanges = CameraRanges(),
) -> Camera:
    """Sample a camera that frames the body given by ``vertices_world`` (Y up, metres)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    vertices_world = np.asarray(vertices_world, dtype=np.float64)
    fov = np.deg2rad(rng.uniform(*ranges.fov_deg))
    f = (width / 2.0) / np.tan(fov / 2.0)
    cx = (width - 1) / 2.0 + rng.uniform(-1, 1) * ranges.principal_jitter_px
    cy = (height - 1) / 2.0 + rng.uniform(-1, 1) * ranges.principal_jitter_px
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    elevation = rng.uniform(*ranges.elevation_deg)
    el = np.deg2rad(elevation)
    view_dir = np.array([0.0, np.sin(el), np.cos(el)])  # from body centre towards camera
    R_look = _look_at(-view_dir)
    roll = np.deg2rad(np.clip(rng.normal(0.0, ranges.roll_std_deg), -10.0, 10.0))
    cr, sr = np.cos(roll), np.sin(roll)
    R_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    R0 = R_roll @ R_look

    centre = 0.5 * (vertices_world.min(axis=0) + vertices_world.max(axis=0))
    local = (vertices_world - centre) @ R0.T
    ext_x = float(np.ptp(local[:, 0]))
    ext_y = float(np.ptp(local[:, 1]))
    fraction = rng.uniform(*ranges.height_fraction)
    distance = f * ext_y / (fraction * height)
    distance = max(distance, f * ext_x / (ranges.max_width_fraction * width))
    # Perspective makes the near half of the body larger; keep the nearest point far enough.
    distance = max(distance, ranges.min_distance_m + float(np.max(-local[:, 2])))

    # Where the box lands: a uniform position along each axis among the placements that keep the
    # box inside the frame (or up to ``slack`` of it outside when truncation is allowed).
    slack = 0.35 if rng.random() < ranges.truncation_prob else 0.0
    position = rng.uniform(0.0, 1.0, size=2)
    # Perspective and off-axis placement change the projected box, so refine distance and aim
    # from the actual projection (a few fixed-point steps on a vertex subset).
    points = vertices_world[:: max(1, len(vertices_world) // 3000)]
    aim = np.array([cx, cy])
    size = np.array([width, height], dtype=np.float64)
    for _ in range(6):
        R = _aim(K, aim) @ R0
        cam_centre = centre + distance * view_dir
        uv = project((points - cam_centre) @ R.T, K)
        lo_uv, hi_uv = uv.min(axis=0), uv.max(axis=0)
        extent = hi_uv - lo_uv
        grow = max(extent[1] / (fraction * height), extent[0] / (ranges.max_width_fraction * width))
        lo = extent / 2 - slack * extent
        hi = (size - 1) - extent / 2 + slack * extent
        desired = np.where(lo < hi, lo + position * (hi - lo), (size - 1) / 2)
        aim = aim + desired - (lo_uv + hi_uv) / 2
        distance = max(distance * grow, ranges.min_distance_m + float(np.max(-local[:, 2])))
    R = _aim(K, aim) @ R0
    cam_centre = centre + distance * view_dir
    return Camera(K=K, R=R, centre=cam_centre, elevation_deg=float(elevation),
                  height_fraction=float(fraction))


def _aim(K: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Camera rotation that moves the optical axis' target (the body centre) to ``pixel``."""
    ray = np.linalg.solve(K, np.array([pixel[0], pixel[1], 1.0]))
    return _rotation_between(np.array([0.0, 0.0, 1.0]), ray / np.linalg.norm(ray))
