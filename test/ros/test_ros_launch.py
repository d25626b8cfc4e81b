"""launch/pose.launch.py: structure always (against a colcon-style install), a live launch when
launch/launch_ros are importable."""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "pose.launch.py"


@pytest.fixture(scope="module")
def install_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the package the way colcon's ament_python build does (setup.py install)."""
    base = tmp_path_factory.mktemp("colcon")
    prefix = base / "install"
    cmd = [sys.executable, "setup.py", "-q", "build", "--build-base", str(base / "build"),
           "egg_info", "--egg-base", str(base), "install", "--prefix", str(prefix),
           "--record", str(base / "record.txt"), "--single-version-externally-managed"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return prefix


def _launch_strings() -> set[str]:
    tree = ast.parse(LAUNCH.read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_install_layout_has_everything_the_launch_file_references(install_prefix):
    share = install_prefix / "share" / "sparse_pose_ros"
    marker = install_prefix / "share" / "ament_index" / "resource_index" / "packages"
    assert (marker / "sparse_pose_ros").is_file()
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "pose.launch.py").is_file()
    strings = _launch_strings()
    for exe in ("pose_node", "camera_replay"):
        assert exe in strings
        path = install_prefix / "lib" / "sparse_pose_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), path
    for name in ("pose.yaml", "pose.rviz"):
        assert name in strings
        assert (share / "config" / name).is_file()
    # The Fast DDS image profile the launch file (through ros.middleware) and pose_node apply.
    from sparse_pose_ros.ros.middleware import PROFILE_FILE

    assert (share / "config" / PROFILE_FILE).is_file()
    assert "SetEnvironmentVariable" in LAUNCH.read_text()
    # Every declared launch argument has a description.
    tree = ast.parse(LAUNCH.read_text())
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            assert any(k.arg == "description" for k in call.keywords), ast.dump(call)[:80]


def test_installed_share_dir_is_found_through_the_ament_index(install_prefix, monkeypatch):
    from ament_index_python.packages import get_package_share_directory

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(install_prefix))
    share = Path(get_package_share_directory("sparse_pose_ros"))
    assert (share / "config" / "pose.yaml").is_file()


HAVE_LAUNCH = all(importlib.util.find_spec(m) is not None for m in ("launch", "launch_ros"))


@pytest.mark.skipif(not HAVE_LAUNCH, reason="launch/launch_ros not importable (they are not "
                    "published as PyPI wheels; a ROS 2 distro or colcon workspace provides them)")
def test_launch_file_starts_pose_node(install_prefix, tmp_path, tiny_model):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    site = next((install_prefix / "lib").glob("python3*/site-packages"))
    ament = f"{install_prefix}:{os.environ.get('AMENT_PREFIX_PATH', '')}"
    env = dict(os.environ, AMENT_PREFIX_PATH=ament,
               PYTHONPATH=f"{site}:{os.environ.get('PYTHONPATH', '')}",
               PATH=f"{install_prefix / 'bin'}:{os.environ['PATH']}")
    config = tmp_path / "pose.yaml"
    config.write_text(
        "pose_node:\n  ros__parameters:\n"
        f"    model_file_path: {tiny_model}\n    backend: torch\n"
        "    diagnostics_period_sec: 0.2\n")
    script = (
        "import sys\n"
        "from launch import LaunchService\n"
        "from launch.actions import IncludeLaunchDescription\n"
        "from launch.launch_description_sources import PythonLaunchDescriptionSource\n"
        "from launch import LaunchDescription\n"
        "ls = LaunchService()\n"
        "ls.include_launch_description(LaunchDescription([IncludeLaunchDescription(\n"
        f"    PythonLaunchDescriptionSource({str(LAUNCH)!r}),\n"
        f"    launch_arguments={{'config_file': {str(config)!r}}}.items())]))\n"
        "sys.exit(ls.run())\n"
    )
    # its own process group, signalled as a whole: Ctrl-C in a terminal reaches launch and the
    # node alike, and launch relies on that (it does not forward a SIGINT it got itself)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("launch_probe", context=context)
        seen: list = []
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: seen.extend(
            s for s in m.status if s.name == "sparse_pose_ros: /pose_node"
            and any(kv.key == "model_state" and kv.value == "ready" for kv in s.values)), 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 90
        while not seen and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert seen, "pose_node started by the launch file never reported a loaded model"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        rclpy.shutdown(context=context)
    assert "pose_node" in out
    assert "escalating to 'SIGTERM'" not in out, out[-2000:]  # the node stops on Ctrl-C
