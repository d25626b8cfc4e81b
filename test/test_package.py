"""The package as a ROS 2 ament_python package and as a venv install: metadata, layout, rules."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sparse_pose_ros"


def _setup_kwargs() -> dict:
    """Keyword arguments of setup() as setuptools sees them (run_setup stops before commands)."""
    from distutils import core

    import setuptools  # noqa: F401  (provides distutils on Python >= 3.12)

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        dist = core.run_setup(str(ROOT / "setup.py"), stop_after="init")
    finally:
        os.chdir(cwd)
    return {"name": dist.get_name(), "version": dist.get_version(),
            "data_files": dist.data_files, "entry_points": dist.entry_points,
            "install_requires": dist.install_requires, "package_data": dist.package_data}


def test_package_xml_is_format_3_and_matches_setup():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    kw = _setup_kwargs()
    assert root.findtext("name") == kw["name"] == "sparse_pose_ros"
    assert root.findtext("version") == kw["version"]
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for dep in ("rclpy", "sensor_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
                "launch_ros", "rviz2", "python3-numpy", "python3-opencv", "python3-pytest"):
        assert dep in deps, dep


#: Every non-ROS rosdep key package.xml may name, checked against ros/rosdistro
#: rosdep/python.yaml at 8468e88 (2026-08-22). `rosdep install` fails on the first unknown key,
#: so a new python key must be looked up there before it is added here and to package.xml.
ROSDEP_PYTHON_KEYS = {"python3-numpy", "python3-opencv", "python3-yaml", "python3-matplotlib",
                      "python3-onnxruntime-pip", "python3-pytest", "python3-pytest-timeout"}


def test_package_xml_names_only_rosdep_keys_that_exist():
    root = ET.parse(ROOT / "package.xml").getroot()
    python_keys = {e.text for e in root if e.tag.endswith("depend")
                   and e.text.startswith("python3-")}
    assert python_keys <= ROSDEP_PYTHON_KEYS, python_keys - ROSDEP_PYTHON_KEYS
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r" in readme and "rosdep" in readme


def test_run_rejects_an_unknown_command_first_and_fast():
    """`./run foo`: the complaint is the first line (before the usage block), exit status 2,
    and no bootstrap is attempted for a typo."""
    done = subprocess.run([str(ROOT / "run"), "foo"], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "SPARSE_POSE_VENV": "/nonexistent/venv"})
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "[run] unknown command: foo", done.stderr
    assert "./run demo" in done.stderr and "creating" not in done.stderr


def test_setup_installs_nodes_launch_config_and_index_marker():
    kw = _setup_kwargs()
    scripts = {s.split("=")[0].strip() for s in kw["entry_points"]["console_scripts"]}
    assert {"pose_node", "camera_replay"} <= scripts
    files = {dest: srcs for dest, srcs in kw["data_files"]}
    assert files["share/ament_index/resource_index/packages"] == ["resource/sparse_pose_ros"]
    assert "launch/pose.launch.py" in files["share/sparse_pose_ros/launch"]
    assert {"config/pose.yaml", "config/pose.rviz",
            "config/fastdds_large_shm.xml"} <= set(files["share/sparse_pose_ros/config"])
    assert "share/sparse_pose_ros/models" in files
    for srcs in files.values():
        for src in srcs:
            assert (ROOT / src).is_file(), src
    # The PyPI ROS 2 wheels are an extra, never a hard requirement (they would shadow a distro).
    assert not any(r.startswith(("ros-", "rclpy")) for r in kw["install_requires"])
    assert (ROOT / "setup.cfg").read_text().count("$base/lib/sparse_pose_ros") == 2
    # every source compiled at run time (the sparse kernel, the CUDA kernels, the input
    # resampler) is installed with the package, or an installed node falls back silently
    globs = kw["package_data"]["sparse_pose_ros"]
    pkg = ROOT / "sparse_pose_ros"
    sources = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
               if p.suffix in {".c", ".cpp", ".h", ".cu", ".cuh"}]  # fmt: skip
    assert "pipeline/csrc/area_resample.c" in sources
    missing = [s for s in sources if not any(fnmatch.fnmatch(s, g) for g in globs)]
    assert not missing, missing


def test_rclpy_is_imported_only_under_ros():
    offenders = []
    for path in PKG.rglob("*.py"):
        if "ros" in path.relative_to(PKG).parts[:1]:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(re.match(r"(rclpy|rcl_interfaces|\w+_msgs)(\.|$)", n) for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_run_and_ci_scripts():
    run = ROOT / "run"
    assert os.access(run, os.X_OK) and os.access(ROOT / ".ci" / "run", os.X_OK)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and "./run test" in ci
    text = run.read_text()
    for needle in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                   "libosmesa6", "ros-rclpy==9.1.2", "ruff", "pytest", "requirements.txt"):
        assert needle in text, needle
    done = subprocess.run(["bash", "-n", str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    usage = subprocess.run([str(run), "help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and "./run demo" in usage.stdout


def test_requirements_pin_cpu_torch_and_pyproject_tools():
    assert re.search(r"^torch==2\.13\.0$", (ROOT / "requirements.txt").read_text(), re.M)
    if sys.version_info >= (3, 11):
        import tomllib

        cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert cfg["tool"]["ruff"]["line-length"] == 100
        assert cfg["tool"]["ruff"]["target-version"] == "py310"
        assert cfg["tool"]["pytest"]["ini_options"]["testpaths"] == ["test"]
        assert cfg["tool"]["pytest"]["ini_options"]["timeout"] > 0
