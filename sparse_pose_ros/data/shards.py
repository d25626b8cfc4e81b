"""Shard files of labelled frames and a torch Dataset that reads them.

A shard is one uncompressed ``.npz`` holding up to ``shard_size`` consecutive frames of a split:
images as concatenated JPEG bytes (quality 95) and masks as concatenated PNG bytes (lossless),
each with an offsets array, plus plain label arrays. No pickled objects anywhere, so loading needs
no ``allow_pickle``. Shard ``k`` always holds frames ``[k*shard_size, (k+1)*shard_size)``, which is
what makes generation resumable: a shard either exists complete (written to a temporary name and
renamed) or is rendered again.

Arrays in a shard (N frames):
    image_bytes uint8 (B,), image_offsets int64 (N+1,)  JPEG RGB frames
    mask_bytes uint8 (M,), mask_offsets int64 (N+1,)     PNG masks, 0/1
    joints_2d float32 (N,17,2) px; joints_3d float32 (N,17,3) mm camera frame (x right, y down,
    z forward); visible, in_frame uint8 (N,17); K float32 (N,3,3); bbox float32 (N,4);
    body_pose float32 (N,21,3); betas float32 (N,10); family, style, occluded uint8 (N,);
    subject int16 (N,); index int64 (N,); elevation_deg, height_fraction, mask_fraction
    float32 (N,);
    info uint8 JSON bytes (format version, split, seed, first index, count).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sparse_pose_ros import skeleton

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1
JPEG_QUALITY = 95
_META_DTYPES: dict[str, Any] = {
    "family": np.uint8,
    "style": np.uint8,
    "subject": np.int16,
    "occluded": np.uint8,
    "elevation_deg": np.float32,
    "height_fraction": np.float32,
    "mask_fraction": np.float32,
    "index": np.int64,
}
_LABEL_KEYS = ("joints_2d", "joints_3d", "visible", "in_frame", "K", "bbox", "body_pose", "betas")


def shard_path(root: Path | str, split: str, shard: int) -> Path:
    return Path(root) / f"{split}-{shard:05d}.npz"


def encode_image(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_mask(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, dtype=np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_image(data: np.ndarray) -> np.ndarray:
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("corrupt JPEG in shard")
    return image[..., ::-1].copy()


def decode_mask(data: np.ndarray) -> np.ndarray:
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError("corrupt PNG in shard")
    return mask


def _pack(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def write_shard(path: Path | str, frames: Sequence[Any], info: dict[str, Any]) -> None:
    """Write ``frames`` (``synthetic.Frame``-like objects) atomically to ``path``."""
    if not frames:
        raise ValueError("a shard needs at least one frame")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    arrays["image_bytes"], arrays["image_offsets"] = _pack([encode_image(f.image) for f in frames])
    arrays["mask_bytes"], arrays["mask_offsets"] = _pack([encode_mask(f.mask) for f in frames])
    for key in _LABEL_KEYS:
        arrays[key] = np.stack([getattr(f, key) for f in frames])
    for key, dtype in _META_DTYPES.items():
        arrays[key] = np.array([f.meta[key] for f in frames], dtype=dtype)
    info = {**info, "format_version": FORMAT_VERSION, "count": len(frames)}
    arrays["info"] = np.frombuffer(json.dumps(info, sort_keys=True).encode(), np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_info(path: Path | str) -> dict[str, Any]:
    """The JSON info of a shard; raises ValueError if the file is unreadable."""
    try:
        with np.load(path) as data:
            return json.loads(data["info"].tobytes().decode())
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"unreadable shard {path}: {err}") from err


def shard_is_complete(path: Path | str, expected: dict[str, Any]) -> bool:
    """True if ``path`` exists, opens and matches ``expected`` (split, seed, first, count)."""
    if not Path(path).exists():
        return False
    try:
        info = read_info(path)
    except ValueError:
        return False
    return all(info.get(k) == v for k, v in expected.items())


class ShardDataset:
    """torch-style map Dataset over all ``*.npz`` shards in ``root`` (one split's folder).

    Labels of all shards are loaded at construction (a few MB); each shard's compressed image and
    mask bytes are loaded on first use and kept (``cache_bytes=True``, ~30 kB per frame).

    Item (dict), after the optional ``transform`` on the numpy sample:
        image      torch.float32 (3, H, W) RGB in [0, 1]
        mask       torch.float32 (1, H, W) visible person pixels, {0, 1}
        joints_2d  torch.float32 (17, 2) pixels (x, y), pixel centres at integers
        joints_3d  torch.float32 (17, 3) millimetres, camera frame (x right, y down, z forward)
        visible    torch.float32 (17,) 1 = inside the image and not occluded
        in_frame   torch.float32 (17,) 1 = inside the image
        K          torch.float32 (3, 3) intrinsics of this (possibly augmented) image
        mask_valid torch.float32 () 1 = ``mask`` is a real label (0 for Human3.6M items)
        family     torch.int64 () pose family id (``poses.ALL_FAMILIES`` order), -1 if none
        index      torch.int64 () frame index within the split
    Joint order: ``skeleton.JOINT_NAMES``.

    Args:
        root: folder with the shards of one split.
        transform: optional callable on the numpy sample dict (e.g. ``augment.Augmenter``).
        cache_bytes: keep loaded shard bytes in memory.
    """

    def __init__(
        self,
        root: Path | str,
        transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
        cache_bytes: bool = True,
    ) -> None:
        self.root = Path(root)
        self.paths = sorted(p for p in self.root.glob("*.npz") if not p.name.endswith(".tmp.npz"))
        if not self.paths:
            raise ValueError(f"no shards (*.npz) in {self.root}")
        self.transform = transform
        self.cache_bytes = cache_bytes
        labels: dict[str, list[np.ndarray]] = {}
        owners = []
        for shard_id, path in enumerate(self.paths):
            try:
                with np.load(path) as data:
                    count = len(data["index"])
                    for key in (*_LABEL_KEYS, *_META_DTYPES):
                        labels.setdefault(key, []).append(data[key])
            except (OSError, KeyError, ValueError) as err:
                raise ValueError(f"unreadable shard {path}: {err}; re-run the generator to "
                                 "re-render it") from err
            owners.append(np.stack([np.full(count, shard_id), np.arange(count)], axis=1))
        self.labels = {k: np.concatenate(v) for k, v in labels.items()}
        self._owner = np.concatenate(owners)
        self._bytes: dict[int, dict[str, np.ndarray]] = {}
        if self.labels["joints_3d"].shape[1] != skeleton.NUM_JOINTS:
            raise ValueError(f"shards in {self.root} do not hold {skeleton.NUM_JOINTS} joints")

    def __len__(self) -> int:
        return len(self._owner)

    def _shard_bytes(self, shard_id: int) -> dict[str, np.ndarray]:
        cached = self._bytes.get(shard_id)
        if cached is not None:
            return cached
        with np.load(self.paths[shard_id]) as data:
            loaded = {k: data[k] for k in ("image_bytes", "image_offsets", "mask_bytes",
                                           "mask_offsets")}
        if self.cache_bytes:
            self._bytes[shard_id] = loaded
        return loaded

    def sample(self, item: int) -> dict[str, np.ndarray]:
        """Frame ``item`` as numpy arrays (uint8 image/mask, float32 labels), no transform."""
        if not 0 <= item < len(self):
            raise IndexError(f"index {item} out of range for {len(self)} frames")
        shard_id, row = (int(x) for x in self._owner[item])
        raw = self._shard_bytes(shard_id)
        io, mo = raw["image_offsets"], raw["mask_offsets"]
        sample = {
            "image": decode_image(raw["image_bytes"][io[row] : io[row + 1]]),
            "mask": decode_mask(raw["mask_bytes"][mo[row] : mo[row + 1]]),
        }
        for key in ("joints_2d", "joints_3d", "visible", "in_frame", "K"):
            sample[key] = self.labels[key][item]
        sample["family"] = np.int64(self.labels["family"][item])
        sample["index"] = np.int64(self.labels["index"][item])
        return sample

    def __getitem__(self, item: int) -> dict[str, Any]:
        sample = self.sample(item)
        if self.transform is not None:
            sample = self.transform(sample)
        return to_tensors(sample)


def to_tensors(sample: dict[str, np.ndarray]) -> dict[str, Any]:
    """Numpy sample (HWC uint8 image, HW mask) -> the tensor item documented in ShardDataset."""
    import torch

    image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1).float() / 255.0
    mask = torch.from_numpy(np.ascontiguousarray(sample["mask"], dtype=np.float32))[None]
    item: dict[str, Any] = {"image": image, "mask": mask}
    for key in ("joints_2d", "joints_3d", "visible", "in_frame", "K"):
        item[key] = torch.from_numpy(np.asarray(sample[key], dtype=np.float32).copy())
    item["mask_valid"] = torch.tensor(float(sample.get("mask_valid", 1.0)), dtype=torch.float32)
    item["family"] = torch.tensor(int(sample.get("family", -1)), dtype=torch.int64)
    item["index"] = torch.tensor(int(sample.get("index", -1)), dtype=torch.int64)
    return item
