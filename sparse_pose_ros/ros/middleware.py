"""The Fast DDS profile that lets camera-sized images cross processes, and when to apply it.

Why this exists: with Fast DDS' defaults a best-effort 640x480 image topic between two processes
on one machine loses most frames (the sender's 512 KiB shared-memory segment cannot hold them;
``config/fastdds_large_shm.xml`` says more). The profile must be in a process's environment
*before* its DDS participant is created (``rclpy.init``), so every entry point calls
:func:`apply_default_profile` first; ``./run`` and the launch file set the same variable for the
processes they start. No rclpy import here: the demo driver uses it too.

A user's own Fast DDS configuration always wins: nothing is set when the variable (or its
pre-3.0 spelling) is already present — an empty value is the way to opt out (it is then removed,
as Fast DDS would report it as an XML error) — when a
``DEFAULT_FASTDDS_PROFILES.xml`` in the working directory is auto-loaded by Fast DDS, or when
``RMW_IMPLEMENTATION`` names another middleware (Cyclone DDS, Zenoh: see the README).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_FILE = "fastdds_large_shm.xml"
#: Ways a user may already have configured Fast DDS (the second is the pre-3.0 name).
USER_PROFILE_ENVS = (PROFILE_ENV, "FASTRTPS_DEFAULT_PROFILES_FILE")
#: Files Fast DDS loads on its own from the working directory.
USER_PROFILE_FILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
#: RMW_IMPLEMENTATION values that read Fast DDS XML ("" = unset: Fast DDS is ROS 2's default).
FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def profile_path() -> Path:
    """The shipped profile: the installed share directory (colcon), else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("sparse_pose_ros")) / "config" / PROFILE_FILE
        if share.is_file():
            return share
    except (ImportError, LookupError, OSError, ValueError):  # not installed through colcon
        pass
    return Path(__file__).resolve().parents[2] / "config" / PROFILE_FILE


def apply_default_profile(
    environ: MutableMapping[str, str] | None = None, cwd: Path | None = None,
    for_children: bool = False,
) -> str:
    """Point ``FASTDDS_DEFAULT_PROFILES_FILE`` at the shipped profile unless the user chose.

    Args:
        environ: the environment to edit (default: this process's, before ``rclpy.init``).
        for_children: ``environ`` is for processes still to be started: an empty value (the
            opt-out) is left in place for them to see, instead of being removed.

    Returns the sentence a node logs at start-up, so a user can see which transport
    configuration their frames travel with.
    """
    env = os.environ if environ is None else environ
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw not in FASTDDS_RMWS:
        return f"RMW_IMPLEMENTATION={rmw}: the Fast DDS image profile does not apply"
    for name in USER_PROFILE_ENVS:
        if name in env:
            if env[name]:
                return f"Fast DDS profile from {name}={env[name]}"
            # An empty value is the opt-out; Fast DDS itself would log an XML parser error for
            # it, so a process about to create its participant removes it.
            if not for_children:
                del env[name]
            return f"{name} is empty: Fast DDS defaults (camera-sized images may be lost)"
    here = Path.cwd() if cwd is None else cwd
    for name in USER_PROFILE_FILES:
        if (here / name).is_file():
            return f"Fast DDS profile {here / name} (auto-loaded from the working directory)"
    path = profile_path()
    if not path.is_file():
        return f"Fast DDS image profile not found at {path}: Fast DDS defaults"
    env[PROFILE_ENV] = str(path)
    return f"Fast DDS profile {path} (large shared-memory segment for camera-sized images)"
