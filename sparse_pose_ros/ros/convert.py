"""Message conversion: ROS messages <-> numpy / pipeline types. No node logic here.

Images are decoded by cv_bridge when it is importable (a ROS distro install) and by our own
:mod:`sparse_pose_ros.image_codec` otherwise; in both cases the header/buffer checks of the codec
run first, so a malformed message never reaches cv_bridge.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from .. import image_codec, skeleton
from ..pipeline.lift import Intrinsics

try:  # cv_bridge ships with ROS distros, not with the PyPI wheels
    from cv_bridge import CvBridge

    _BRIDGE: CvBridge | None = CvBridge()
except ImportError:
    _BRIDGE = None

JOINT_DIAMETER_M = 0.06
BONE_WIDTH_M = 0.025


def image_fields(msg: Image) -> image_codec.ImageFields:
    return image_codec.ImageFields(
        height=msg.height,
        width=msg.width,
        encoding=msg.encoding,
        is_bigendian=msg.is_bigendian,
        step=msg.step,
        data=msg.data,
    )


def image_to_rgb8(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``msg``; raises image_codec.ImageDecodeError for bad messages."""
    fields = image_fields(msg)
    image_codec.validate(fields)
    if _BRIDGE is not None and msg.encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    return image_codec.decode_rgb8(fields)


def array_to_image(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    f = image_codec.encode(pixels, encoding)
    return Image(
        header=header,
        height=f.height,
        width=f.width,
        encoding=f.encoding,
        is_bigendian=f.is_bigendian,
        step=f.step,
        data=f.data,
    )


def camera_info_to_intrinsics(msg: CameraInfo) -> Intrinsics:
    """Validated intrinsics from K; ValueError (with the reason) for NaN/zero/absurd values."""
    return Intrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))


def intrinsics_to_camera_info(intr: Intrinsics, header: Header) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera (plumb_bob with zero distortion)."""
    k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    return CameraInfo(
        header=header,
        width=intr.width,
        height=intr.height,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=k,
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def pose_array(joints_m: np.ndarray | None, header: Header) -> PoseArray:
    """Joints as poses (identity orientation) in skeleton.JOINT_NAMES order; None -> empty."""
    msg = PoseArray(header=header)
    if joints_m is not None:
        for x, y, z in np.asarray(joints_m, dtype=np.float64):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
            pose.orientation.w = 1.0
            msg.poses.append(pose)
    return msg


def pose_array_to_numpy(msg: PoseArray) -> np.ndarray:
    return np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses], np.float64)


def _colour(rgb: tuple[float, float, float], alpha: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))


def skeleton_markers(joints_m: np.ndarray | None, header: Header, ns: str = "pose") -> MarkerArray:
    """DELETEALL first (so a vanished person leaves nothing behind), then spheres + bone lines.

    ``joints_m`` None yields only the DELETEALL: RViz clears the skeleton for "no person".
    """
    clear = Marker(header=header, ns=ns, id=0, action=Marker.DELETEALL)
    out = MarkerArray(markers=[clear])
    if joints_m is None:
        return out
    pts = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(joints_m)]
    spheres = Marker(header=header, ns=ns, id=1, type=Marker.SPHERE_LIST, action=Marker.ADD)
    spheres.pose.orientation.w = 1.0
    spheres.scale.x = spheres.scale.y = spheres.scale.z = JOINT_DIAMETER_M
    spheres.color = _colour((1.0, 1.0, 1.0))
    spheres.points = pts
    spheres.colors = [_colour(c) for c in skeleton.JOINT_COLOURS]
    bones = Marker(header=header, ns=ns, id=2, type=Marker.LINE_LIST, action=Marker.ADD)
    bones.pose.orientation.w = 1.0
    bones.scale.x = BONE_WIDTH_M
    bones.color = _colour((1.0, 1.0, 1.0))
    for (p, c), colour in zip(skeleton.BONES, skeleton.BONE_COLOURS, strict=True):
        bones.points += [pts[p], pts[c]]
        bones.colors += [_colour(colour), _colour(colour)]
    out.markers += [spheres, bones]
    return out


def diagnostic_status(
    name: str, hardware_id: str, level: bytes, message: str, values: dict[str, object]
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=_fmt(v)) for k, v in values.items()],
    )


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def stamp_seconds(stamp: Time) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(t: float) -> Time:
    sec = int(t)
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)
