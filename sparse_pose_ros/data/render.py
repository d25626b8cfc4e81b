"""Off-screen rasterisation of a posed body with pyrender on OSMesa (CPU, no display).

Why OSMesa: it needs no X server or GPU, so every helper and CI machine can render. It gives RGB
only, so the person mask is ``depth > 0`` and compositing over a background happens in numpy.

The renderer takes vertices already expressed in the OpenCV camera frame (x right, y down, z
forward, metres) and pixel-index intrinsics (pixel centre at integer coordinates). It converts both
to pyrender's OpenGL conventions internally so callers never see them.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass

import numpy as np

if "PYOPENGL_PLATFORM" not in os.environ:
    # Must happen before anything imports OpenGL; an explicit user choice (e.g. egl) wins.
    os.environ["PYOPENGL_PLATFORM"] = "osmesa"

import OpenGL  # noqa: E402
import OpenGL.contextdata  # noqa: E402
import OpenGL.platform  # noqa: E402
import pyrender  # noqa: E402

LOG = logging.getLogger(__name__)

#: pyrender pins PyOpenGL 3.1.0, whose OSMesa binding lacks OSMesaCreateContextAttribs; any
#: ``pip install`` that re-resolves pyrender's pin silently downgrades it.
MIN_PYOPENGL = (3, 1, 10)


def _check_gl_stack() -> None:
    """Fail early with the fix in the message instead of deep inside pyrender."""
    version = tuple(int(p) for p in OpenGL.__version__.split(".")[:3] if p.isdigit())
    if os.environ.get("PYOPENGL_PLATFORM") == "osmesa" and version < MIN_PYOPENGL:
        raise ImportError(
            f"PyOpenGL {OpenGL.__version__} cannot create OSMesa contexts; run "
            "`pip install pyopengl==3.1.10` (pyrender's 3.1.0 pin is wrong; its pip warning is "
            "harmless)"
        )
    platform_name = type(OpenGL.platform.PLATFORM).__name__
    if os.environ.get("PYOPENGL_PLATFORM") == "osmesa" and "OSMesa" not in platform_name:
        raise ImportError(
            f"OpenGL was imported with platform {platform_name} before sparse_pose_ros.data.render "
            "set PYOPENGL_PLATFORM=osmesa; import this module first or export the variable"
        )


_check_gl_stack()

#: OpenCV camera frame -> OpenGL camera frame (flip y and z).
_CV_TO_GL = np.array([1.0, -1.0, -1.0])


def _context_address(context: object | None = None) -> object:
    """Stable, hashable id of the current GL context.

    PyOpenGL's ``getContext`` returns a fresh ctypes pointer object on every call under OSMesa, so
    pyrender's shader cache (keyed by it) never hits: shaders are recompiled every frame and memory
    grows ~3 MB/frame. The integer address of the context is stable, so the cache works.
    """
    if context is not None:
        return context
    current = OpenGL.platform.PLATFORM.GetCurrentContext()
    if not current:
        raise OpenGL.error.Error("Attempt to retrieve context when no valid context")
    address = ctypes.cast(current, ctypes.c_void_p).value
    return int(address) if address is not None else current


def install_context_leak_fix() -> None:
    """Patch ``OpenGL.contextdata.getContext`` to return the integer context address.

    Idempotent; applied on import of this module."""
    if getattr(OpenGL.contextdata.getContext, "_sparse_pose_fix", False):
        return
    _context_address._sparse_pose_fix = True  # type: ignore[attr-defined]
    OpenGL.contextdata.getContext = _context_address


install_context_leak_fix()


@dataclass
class Lighting:
    """Scene lighting for one frame (directions in the OpenCV camera frame)."""

    key_direction: np.ndarray  # (3,) unit vector the key light travels along
    key_intensity: float
    key_colour: np.ndarray  # (3,) RGB 0..1
    fill_direction: np.ndarray
    fill_intensity: float
    ambient: float


@dataclass
class Surface:
    """Material of the body for one frame."""

    colour: np.ndarray  # (3,) RGB 0..1, multiplies the vertex colours when both are given
    roughness: float
    metallic: float
    vertex_colours: np.ndarray | None = None  # (V, 3) RGB 0..1 (clothes, skin, hair), optional


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted per-vertex normals (pyrender needs normals for lit shading)."""
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    flat = faces.reshape(-1)
    for axis in range(3):
        normals[:, axis] = np.bincount(
            flat, weights=np.repeat(face_normals[:, axis], 3), minlength=len(vertices)
        )
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(norm, 1e-12)


def _light_pose(direction_cv: np.ndarray) -> np.ndarray:
    """4x4 GL pose whose -Z axis points along ``direction_cv`` (pyrender lights shine down -Z)."""
    d = np.asarray(direction_cv, dtype=np.float64) * _CV_TO_GL
    d = d / np.linalg.norm(d)
    z_axis = -d
    helper = np.array([0.0, 1.0, 0.0]) if abs(z_axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x_axis = np.cross(helper, z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = x_axis, y_axis, z_axis
    return pose


class BodyRenderer:
    """One OSMesa context that renders a triangle mesh seen by a pinhole camera.

    Args:
        width: image width in pixels.
        height: image height in pixels.
    """

    def __init__(self, width: int = 256, height: int = 256) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width = int(width)
        self.height = int(height)
        self._renderer = pyrender.OffscreenRenderer(self.width, self.height)

    def render(
        self,
        vertices_cv: np.ndarray,
        faces: np.ndarray,
        K: np.ndarray,
        surface: Surface,
        lighting: Lighting,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render the body over an empty (black) background.

        Args:
            vertices_cv: (V, 3) body vertices in the OpenCV camera frame, metres.
            faces: (F, 3) triangle indices.
            K: (3, 3) intrinsics, pixel centres at integer coordinates.
            surface: body material.
            lighting: lights for this frame.

        Returns:
            (rgb uint8 (H, W, 3), depth float32 (H, W) metres along +z with 0 = empty).
            The person silhouette is ``depth > 0``.
        """
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got {K.shape}")
        scene = pyrender.Scene(
            bg_color=np.zeros(4), ambient_light=np.full(3, float(lighting.ambient))
        )
        scene.add(self._mesh(vertices_cv, faces, surface))
        camera = pyrender.IntrinsicsCamera(
            fx=K[0, 0], fy=K[1, 1], cx=K[0, 2] + 0.5, cy=K[1, 2] + 0.5, znear=0.05, zfar=100.0
        )
        scene.add(camera, pose=np.eye(4))
        scene.add(
            pyrender.DirectionalLight(
                color=np.asarray(lighting.key_colour, dtype=np.float64),
                intensity=float(lighting.key_intensity),
            ),
            pose=_light_pose(lighting.key_direction),
        )
        scene.add(
            pyrender.DirectionalLight(color=np.ones(3), intensity=float(lighting.fill_intensity)),
            pose=_light_pose(lighting.fill_direction),
        )
        rgb, depth = self._renderer.render(scene)
        return np.ascontiguousarray(rgb[..., :3]), depth.astype(np.float32)

    @staticmethod
    def _mesh(vertices_cv: np.ndarray, faces: np.ndarray, surface: Surface) -> pyrender.Mesh:
        verts_gl = np.asarray(vertices_cv, dtype=np.float64) * _CV_TO_GL
        normals = vertex_normals(verts_gl, faces)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=np.append(np.asarray(surface.colour, dtype=np.float64), 1.0),
            metallicFactor=float(surface.metallic),
            roughnessFactor=float(surface.roughness),
        )
        colours = None
        if surface.vertex_colours is not None:
            colours = np.asarray(surface.vertex_colours, dtype=np.float32)
            if colours.shape != (len(verts_gl), 3):
                raise ValueError(
                    f"vertex_colours must be ({len(verts_gl)}, 3), got {colours.shape}")
        primitive = pyrender.Primitive(
            positions=verts_gl.astype(np.float32),
            normals=normals.astype(np.float32),
            color_0=colours,
            indices=np.asarray(faces, dtype=np.uint32),
            material=material,
        )
        return pyrender.Mesh([primitive])

    def close(self) -> None:
        """Release the GL context."""
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def __enter__(self) -> BodyRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
