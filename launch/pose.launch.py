"""Start pose_node with config/pose.yaml; optionally camera_replay and RViz2.

    ros2 launch sparse_pose_ros pose.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info backend:=onnxruntime use_rviz:=true

Every process started here gets FASTDDS_DEFAULT_PROFILES_FILE = the package's
config/fastdds_large_shm.xml unless the user configured Fast DDS (or another RMW) themselves:
without it, camera-sized best-effort images are mostly lost between processes. A camera driver
started elsewhere needs the same variable (README, "Camera frames over DDS").
"""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "sparse_pose_ros"


def _transport_env():
    """The Fast DDS profile variable for the launched processes, as actions (none when the user
    already chose: their variable, a working-directory profile or another RMW)."""
    from sparse_pose_ros.ros.middleware import PROFILE_ENV, apply_default_profile

    env = dict(os.environ)
    apply_default_profile(env, for_children=True)
    if PROFILE_ENV in env and PROFILE_ENV not in os.environ:
        return [SetEnvironmentVariable(PROFILE_ENV, env[PROFILE_ENV])]
    return []


def _nodes(context, *args, **kwargs):
    """Build the nodes once arguments are known (backend/replay are only set when given)."""
    share = Path(get_package_share_directory(PACKAGE))
    remaps = [
        ("image", LaunchConfiguration("image").perform(context)),
        ("camera_info", LaunchConfiguration("camera_info").perform(context)),
    ]
    params = [LaunchConfiguration("config_file").perform(context)]
    backend = LaunchConfiguration("backend").perform(context)
    if backend:
        params.append({"backend": backend})
    actions = _transport_env() + [
        Node(
            package=PACKAGE,
            executable="pose_node",
            name="pose_node",
            parameters=params,
            remappings=remaps,
            # torch's intra-op OpenMP pool (torch backend, preprocessing) spin-waits by default
            # and then steals shared cores from the ROS executor and the sparse kernel's own
            # worker pool (docs/sparse.md, "Threads").
            additional_env={"OMP_WAIT_POLICY": "PASSIVE"},
            output="screen",
        )
    ]
    source = LaunchConfiguration("replay_source").perform(context)
    if source:
        actions.append(
            Node(
                package=PACKAGE,
                executable="camera_replay",
                name="camera_replay",
                parameters=[{"source": source, "rate_hz": 10.0, "loop": True}],
                remappings=remaps,
                output="screen",
            )
        )
    actions.append(
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", str(share / "config" / "pose.rviz")],
            condition=IfCondition(LaunchConfiguration("use_rviz")),
            output="screen",
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config_file",
                default_value=str(share / "config" / "pose.yaml"),
                description="pose_node parameter file (defaults: share/sparse_pose_ros/config).",
            ),
            DeclareLaunchArgument(
                "image",
                default_value="/camera/image_raw",
                description="sensor_msgs/Image topic pose_node subscribes to (remaps 'image').",
            ),
            DeclareLaunchArgument(
                "camera_info",
                default_value="/camera/camera_info",
                description="sensor_msgs/CameraInfo topic matching the image "
                "(remaps 'camera_info').",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="Override the config's backend: auto, sparse-cpu, torch, "
                "onnxruntime, openvino or tensorrt (empty = keep the config file's value).",
            ),
            DeclareLaunchArgument(
                "use_rviz",
                default_value="false",
                description="Start RViz2 with config/pose.rviz (image, skeleton markers, mask).",
            ),
            DeclareLaunchArgument(
                "replay_source",
                default_value="",
                description="Also start camera_replay on this source (video, image folder, "
                "'bundled' or 'synthetic'); empty = use a real camera.",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
