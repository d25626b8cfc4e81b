"""The TensorRT plugin library (``libsparse_pose_ros_plugins.so``, built from ``plugin/``): where
it is looked for, and its registration with TensorRT's plugin registry (once per process).

A gated network's plugin graph references the sparse gather-scatter plugin by name, so the
library must be registered before its ONNX is parsed or its plan deserialized.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..runtime.model_info import BackendError

LOG = logging.getLogger(__name__)

PLUGIN_LIBRARY_NAME = "libsparse_pose_ros_plugins.so"
PLUGIN_LIBRARY_ENV = "SPARSE_POSE_ROS_PLUGIN_LIB"


def plugin_library_candidates() -> list[Path]:
    """Where ``custom_plugin_lib`` is looked for when not given, in order.

    $SPARSE_POSE_ROS_PLUGIN_LIB; the colcon/ament install prefix (``<prefix>/lib``, where
    ``cmake --install`` puts it); the in-tree build folder ``build/plugin`` of a checkout.
    """
    out: list[Path] = []
    if os.environ.get(PLUGIN_LIBRARY_ENV):
        out.append(Path(os.environ[PLUGIN_LIBRARY_ENV]))
    package_dir = Path(__file__).resolve().parents[1]
    # <prefix>/lib/python3.X/site-packages/sparse_pose_ros -> <prefix>/lib
    out.append(package_dir.parents[2] / PLUGIN_LIBRARY_NAME)
    out.append(package_dir.parent / "build" / "plugin" / PLUGIN_LIBRARY_NAME)
    return out


def find_plugin_library(explicit: str | os.PathLike[str] | None) -> Path:
    """The plugin library to load (explicit path wins).

    Raises:
        BackendError: the explicit file is missing, or none of the candidates exists (the
            message says how to build it).
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BackendError(f"custom_plugin_lib {path} does not exist")
        return path
    candidates = plugin_library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise BackendError(
        f"{PLUGIN_LIBRARY_NAME} not found (looked in {', '.join(map(str, candidates))}); build it "
        "with `cmake -S plugin -B build/plugin -DTENSORRT_ROOT=<TensorRT> && cmake --build "
        "build/plugin` or set custom_plugin_lib"
    )


_LOADED_PLUGINS: dict[str, Any] = {}


def load_plugin_library(trt: Any, path: Path) -> None:
    """Register the plugin creators of ``path`` with TensorRT's registry, once per process."""
    key = str(path.resolve())
    if key in _LOADED_PLUGINS:
        return
    handle = trt.get_plugin_registry().load_library(key)
    if handle is None:
        raise BackendError(
            f"TensorRT could not load plugin library {path} (see the TensorRT log; a creator "
            "with the same name/version/namespace may already be registered)"
        )
    _LOADED_PLUGINS[key] = handle
    LOG.info("tensorrt: plugin library %s loaded", path)
