"""ament_python package: the library, the two nodes, launch/config/models and the RViz file.

Works in both worlds:
- colcon on a ROS 2 machine (`colcon build`): rclpy and the message packages come from the distro,
  executables go to lib/sparse_pose_ros (setup.cfg), data files to share/sparse_pose_ros.
- `pip install -e .` into a venv without a ROS distro (what ./run does): the PyPI ROS 2 wheels are
  an *extra* (`[ros-wheels]`), never a hard requirement, because they would shadow a system ROS 2.
torch and OpenCV are not in install_requires either: pip must not replace a system/Jetson build
(or pull a CUDA wheel); requirements.txt pins them for the venv.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "sparse_pose_ros"
HERE = Path(__file__).resolve().parent


def _files(pattern: str) -> list[str]:
    """Relative paths of existing files matching ``pattern`` (models/ may be empty in a clone)."""
    return sorted(p for p in glob(pattern, root_dir=HERE) if (HERE / p).is_file())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={
        PACKAGE: [
            "sparse/kernels/*.cu",
            "sparse/kernels/*.cuh",
            "sparse/kernels/*.h",
            "sparse/kernels/*.cpp",
            "sparse/csrc/*.cpp",
            "sparse/csrc/*.h",
            "pipeline/csrc/*.c",
        ]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.launch.py")),
        (
            f"share/{PACKAGE}/config",
            _files("config/*.yaml") + _files("config/*.rviz") + _files("config/*.xml"),
        ),
        (
            f"share/{PACKAGE}/models",
            _files("models/*.safetensors") + _files("models/*.onnx") + _files("models/*.md"),
        ),
    ],
    install_requires=["numpy", "pyyaml", "safetensors"],
    extras_require={
        "ros-wheels": [
            "ros-rclpy==9.1.2",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-geometry-msgs",
            "ros-visualization-msgs",
            "ros-diagnostic-msgs",
            "ros-rmw-fastrtps-cpp",
        ],
        "test": ["pytest", "pytest-timeout"],
    },
    zip_safe=False,
    maintainer="sparse_pose_ros maintainers",
    maintainer_email="maintainers@sparse-pose-ros.invalid",
    description="Monocular 3D human pose with spatially sparse execution, as a ROS 2 node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"pose_node = {PACKAGE}.ros.pose_node:main",
            f"camera_replay = {PACKAGE}.ros.camera_replay:main",
            f"pose_recorder = {PACKAGE}.ros.recorder:main",
            f"sparse-pose-export = {PACKAGE}.export.cli:main",
        ],
    },
)
