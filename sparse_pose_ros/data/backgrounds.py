"""Backgrounds and occluder textures: crops of real photos shipped with installed packages plus
procedural textures, with a held-out set for the test split.

Why real photos: a mask network trained on noise-only backgrounds learns "not noise" instead of
"person". Only package data is used (scikit-image ``data/``, matplotlib ``sample_data/``), nothing
is downloaded. Photos that show people (astronaut, camera, grace_hopper, lfw faces) are excluded:
they are the real-photo evaluation set, and an unlabelled person in a background would teach the
mask to ignore people.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

LOG = logging.getLogger(__name__)

#: Photo files per split. Paths are relative to the package data folders below.
TRAIN_PHOTOS: tuple[str, ...] = (
    "skimage:brick.png", "skimage:chelsea.png", "skimage:coffee.png", "skimage:grass.png",
    "skimage:gravel.png", "skimage:hubble_deep_field.jpg", "skimage:ihc.png", "skimage:moon.png",
    "skimage:page.png", "skimage:retina.jpg", "skimage:rocket.jpg", "skimage:text.png",
    "skimage:chessboard_RGB.png", "skimage:clock_motion.png", "skimage:microaneurysms.png",
    "mpl:logo2.png",
)
TEST_PHOTOS: tuple[str, ...] = (
    "skimage:motorcycle_left.png", "skimage:motorcycle_right.png", "skimage:coins.png",
    "skimage:cell.png", "skimage:color.png", "skimage:horse.png", "skimage:logo.png",
    "skimage:phantom.png", "mpl:Minduka_Present_Blue_Pack.png",
)
TRAIN_PROCEDURAL: tuple[str, ...] = ("value_noise", "stripes", "checker", "gradient", "blobs")
TEST_PROCEDURAL: tuple[str, ...] = ("voronoi",)
PHOTO_PROBABILITY: float = 0.55


def _data_dir(prefix: str) -> Path:
    if prefix == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent
    if prefix == "mpl":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data"
    raise ValueError(f"unknown photo source {prefix!r}")


@functools.lru_cache(maxsize=64)
def load_photo(name: str) -> np.ndarray:
    """Load ``"skimage:file"`` / ``"mpl:file"`` as uint8 RGB (H, W, 3); alpha is dropped."""
    prefix, _, filename = name.partition(":")
    path = _data_dir(prefix) / filename
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"background photo not readable: {path}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        rgb = image[..., :3].astype(np.float32)
        flat = (rgb * alpha + 255.0 * (1 - alpha)).astype(np.uint8)  # onto white
        image = cv2.cvtColor(flat, cv2.COLOR_BGR2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.dtype != np.uint8:
        image = (image / max(1, image.max()) * 255).astype(np.uint8)
    return image


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _palette_map(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a [0, 1] field to colours by interpolating between 2-3 random colours."""
    stops = np.stack([_random_colour(rng) for _ in range(rng.integers(2, 4))])
    pos = np.clip(gray, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    t = (pos - lo)[..., None]
    return stops[lo] * (1 - t) + stops[lo + 1] * t


def _value_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    field = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for octave in range(int(rng.integers(3, 6))):
        cells = int(2 ** (octave + 1) * rng.uniform(0.8, 1.6))
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        field += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= rng.uniform(0.4, 0.7)
    field /= total
    field = (field - field.min()) / max(1e-6, float(np.ptp(field)))
    return _palette_map(field, rng)


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 60)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * phase) if rng.random() < 0.5 else (phase % 1.0 < 0.5)
    return _palette_map(np.asarray(wave, np.float32), rng)


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi / 2)
    cell = rng.uniform(8, 64)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) // cell
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) // cell
    return _palette_map(((u + v) % 2).astype(np.float32), rng)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    return _palette_map(ramp, rng)


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    image = np.empty((size, size, 3), np.float32)
    image[:] = _random_colour(rng)
    _draw_shapes(image, rng, int(rng.integers(8, 30)), None)
    return image


def _voronoi(rng: np.random.Generator, size: int) -> np.ndarray:
    """Flat-coloured cells with dark borders (computed at half resolution, then upsampled)."""
    half = max(8, size // 2)
    seeds = rng.uniform(0, half, size=(int(rng.integers(8, 40)), 2)).astype(np.float32)
    yy, xx = np.mgrid[0:half, 0:half].astype(np.float32)
    dist = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    nearest = np.partition(dist, 1, axis=-1)[..., :2]
    label = np.argmin(dist, axis=-1)
    colours = rng.uniform(0, 255, size=(len(seeds), 3)).astype(np.float32)
    edge = np.sqrt(nearest[..., 1]) - np.sqrt(nearest[..., 0])
    image = colours[label] * np.clip(edge / 1.5, 0.3, 1.0)[..., None]
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


PROCEDURAL: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "value_noise": _value_noise,
    "stripes": _stripes,
    "checker": _checker,
    "gradient": _gradient,
    "blobs": _blobs,
    "voronoi": _voronoi,
}


def _draw_shapes(
    image: np.ndarray, rng: np.random.Generator, count: int, texture: np.ndarray | None
) -> None:
    """Draw ``count`` random ellipses, rectangles and polygons (clutter) into ``image``."""
    size = image.shape[0]
    for _ in range(count):
        mask = np.zeros(image.shape[:2], np.uint8)
        centre = rng.uniform(0, size, 2)
        extent = rng.uniform(0.03, 0.3) * size
        kind = rng.integers(3)
        if kind == 0:
            axes = (int(extent), int(extent * rng.uniform(0.2, 1.0)))
            cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, rng.uniform(0, 180), 0, 360,
                        1, -1)
        elif kind == 1:
            aspect = float(rng.uniform(0.1, 1.5))
            box = ((float(centre[0]), float(centre[1])),
                   (float(extent), float(extent * aspect)), float(rng.uniform(0, 180)))
            cv2.fillPoly(mask, [cv2.boxPoints(box).astype(np.int32)], 1)
        else:
            pts = centre + rng.normal(0, extent / 2, size=(int(rng.integers(3, 7)), 2))
            cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
        fill = texture if texture is not None and rng.random() < 0.5 else _random_colour(rng)
        sel = mask.astype(bool)
        image[sel] = fill[sel] if np.ndim(fill) == 3 else fill


class BackgroundBank:
    """Samples background images (and occluder textures) for one split.

    Args:
        split: "train" or "test"; selects disjoint photo and procedural sets.
        size: output side length in pixels (square).
    """

    def __init__(self, split: str, size: int = 256) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.size = int(size)
        self.photos = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
        self.procedural = TRAIN_PROCEDURAL if split == "train" else TEST_PROCEDURAL

    def photo_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A random crop of a random photo, resized to ``size``, float32 RGB 0..255."""
        photo = load_photo(self.photos[int(rng.integers(len(self.photos)))])
        h, w = photo.shape[:2]
        side = int(rng.uniform(0.25, 1.0) * min(h, w))
        side = max(side, min(h, w, 48))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = photo[y0 : y0 + side, x0 : x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.rot90(crop, int(rng.integers(4))) if rng.random() < 0.3 else crop
        out = cv2.resize(np.ascontiguousarray(crop), (self.size, self.size),
                         interpolation=cv2.INTER_LINEAR).astype(np.float32)
        if np.allclose(out[..., 0], out[..., 1]) and rng.random() < 0.7:
            tint = rng.uniform(0.5, 1.3, size=3)  # colourise grey photos
            out = out * tint
        return np.clip(out, 0, 255)

    def texture(self, rng: np.random.Generator) -> np.ndarray:
        """A procedural texture of this split, float32 RGB 0..255."""
        name = self.procedural[int(rng.integers(len(self.procedural)))]
        return PROCEDURAL[name](rng, self.size).astype(np.float32)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One background: a photo crop or a procedural texture, often with clutter shapes."""
        image = self.photo_crop(rng) if rng.random() < PHOTO_PROBABILITY else self.texture(rng)
        if rng.random() < 0.4:
            fill = self.photo_crop(rng) if rng.random() < 0.5 else self.texture(rng)
            _draw_shapes(image, rng, int(rng.integers(2, 12)), fill)
        if rng.random() < 0.3:
            sigma = rng.uniform(0.5, 3.0)  # defocus: the person is the in-focus subject
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        return image

    def occluder(
        self, rng: np.random.Generator, bbox: tuple[float, float, float, float]
    ) -> np.ndarray:
        """Mask (H, W) bool of one textured occluder overlapping the person box (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = bbox
        bh = max(8.0, y1 - y0)
        mask = np.zeros((self.size, self.size), np.uint8)
        cx = rng.uniform(x0, x1)
        cy = rng.uniform(y0, y1)
        extent = rng.uniform(0.12, 0.35) * bh
        if rng.random() < 0.5:
            box = ((float(cx), float(cy)),
                   (float(extent * rng.uniform(0.5, 2.5)), float(extent * rng.uniform(0.5, 2.5))),
                   float(rng.uniform(0, 180)))
            cv2.fillPoly(mask, [cv2.boxPoints(box).astype(np.int32)], 1)
        else:
            cv2.ellipse(mask, (int(cx), int(cy)),
                        (int(extent), int(extent * rng.uniform(0.4, 1.0))),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return mask.astype(bool)
