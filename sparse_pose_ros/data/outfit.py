"""Clothing, skin and hair colours painted on the mannequin's vertices.

Why: a one-colour mannequin looks the same from the front and from the back, so an image does not
say which side is the person's left; the labels then differ by a left/right swap plus a flip of
every root-relative depth, and a network trained with L1 answers the midpoint of the two (the
collapse diagnosed in models/MODEL_CARD.md). Real people carry the cues that break the tie: hair on
the back of the head and a face on the front, shoes pointing forward, shirts with a print or
buttons on the front, trousers, sleeves and skin. Painting those regions onto the mesh with random
but plausible colours gives the network the same cues and brings the synthetic images closer to
real photographs.

Regions are labelled once per body, in the rest (T) pose, where "front" is +Z, "up" is +Y and
left is +X (DATA.md): each vertex takes the bone (parent -> child segment of the SMPL-X skeleton)
nearest to it, and the head is split into face and hair by the rest-pose position. Labels follow
the vertices through any pose because the vertex order never changes.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Region(IntEnum):
    """Body regions an outfit colours separately."""

    FACE = 0
    HAIR = 1
    NECK = 2
    TORSO = 3
    CHEST_FRONT = 4  # front of the chest: where a print, a zip or buttons go
    HIPS = 5
    UPPER_ARM = 6
    FOREARM = 7
    HAND = 8
    THIGH = 9
    SHIN = 10
    FOOT = 11


#: SMPL-X parents of joints 0..21 (body joints; 22/23 are the hand roots, parents 20/21).
SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)

#: Region of the bone that starts at each parent joint (index = parent joint, SMPL-X order).
_BONE_REGION: dict[int, Region] = {
    0: Region.HIPS, 1: Region.THIGH, 2: Region.THIGH, 3: Region.TORSO, 4: Region.SHIN,
    5: Region.SHIN, 6: Region.TORSO, 7: Region.FOOT, 8: Region.FOOT, 9: Region.TORSO,
    12: Region.NECK, 13: Region.TORSO, 14: Region.TORSO, 16: Region.UPPER_ARM,
    17: Region.UPPER_ARM, 18: Region.FOREARM, 19: Region.FOREARM, 20: Region.HAND,
    21: Region.HAND,
}

#: Rest-pose cuts relative to the Head joint (which sits at the skull base), metres.
HAIR_BACK_Z = -0.01  # head vertices behind this depth are hair
HAIR_TOP_Y = 0.09  # head vertices higher than this above the Head joint are hair
#: Chest print: front torso vertices between these heights relative to the Spine3 joint.
CHEST_Y = (-0.22, 0.05)
CHEST_FRONT_Z = 0.04  # at least this far in front of the Spine3 joint


def _segment_distances(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every point to the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def label_regions(rest_vertices: np.ndarray, rest_joints: np.ndarray,
                  head_vertices: np.ndarray) -> np.ndarray:
    """Region id (``Region``) of every vertex.

    Args:
        rest_vertices: (V, 3) vertices in the rest pose (Y up, body facing +Z).
        rest_joints: (>=22, 3) SMPL-X joint positions in the same pose.
        head_vertices: indices of the vertices that move rigidly with the Head joint.
    """
    rest_vertices = np.asarray(rest_vertices, dtype=np.float64)
    bones = [(p, c) for c, p in enumerate(SMPLX_PARENTS[:22]) if p >= 0]
    distances = np.stack([
        _segment_distances(rest_vertices, rest_joints[p], rest_joints[c]) for p, c in bones
    ], axis=1)
    nearest = np.argmin(distances, axis=1)
    lookup = np.array([_BONE_REGION[p] for p, _ in bones], dtype=np.int8)
    regions = lookup[nearest]

    # SMPL-X puts the hand roots (22, 23) on the wrists, so the wrist->hand bones have no length:
    # the hand is whatever lies beyond the wrist along the forearm.
    for elbow, wrist in ((18, 20), (19, 21)):
        axis = rest_joints[wrist] - rest_joints[elbow]
        beyond = ((rest_vertices - rest_joints[wrist]) @ axis) > 0
        regions[(regions == Region.FOREARM) & beyond] = Region.HAND

    spine3 = rest_joints[9]
    rel = rest_vertices - spine3
    chest = ((regions == Region.TORSO) & (rel[:, 2] > CHEST_FRONT_Z)
             & (rel[:, 1] > CHEST_Y[0]) & (rel[:, 1] < CHEST_Y[1]) & (np.abs(rel[:, 0]) < 0.12))
    regions[chest] = Region.CHEST_FRONT

    head = np.asarray(head_vertices, dtype=np.int64)
    rel_head = rest_vertices[head] - rest_joints[15]
    hair = (rel_head[:, 2] < HAIR_BACK_Z) | (rel_head[:, 1] > HAIR_TOP_Y)
    regions[head] = np.where(hair, Region.HAIR, Region.FACE).astype(np.int8)
    return regions


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


@dataclass(frozen=True)
class Outfit:
    """Colour (RGB 0..1) of each region for one frame."""

    colours: np.ndarray  # (len(Region), 3)

    def vertex_colours(self, regions: np.ndarray) -> np.ndarray:
        """(V, 3) float32 colours for per-vertex region labels."""
        return self.colours[np.asarray(regions, dtype=np.int64)].astype(np.float32)


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """A random, plausible outfit: skin tone, hair, top (with optional front print and sleeve
    length), trousers or shorts, shoes."""
    skin = _hsv(rng.uniform(0.02, 0.10), rng.uniform(0.2, 0.65), rng.uniform(0.25, 0.95))
    if rng.random() < 0.85:  # dark to brown hair
        hair = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.3, 0.9), rng.uniform(0.03, 0.45))
    else:  # blond / grey / dyed
        hair = _hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.5, 0.95))
    top = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.1, 1.0))
    bottom = _hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.08, 0.8))
    shoes = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.03, 0.6))
    if rng.random() < 0.6:  # a print / zip / buttons: a contrasting front panel
        print_colour = _hsv(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.05, 1.0))
    else:
        print_colour = top
    sleeves = rng.choice(3, p=[0.2, 0.4, 0.4])  # none, short, long
    long_legs = rng.random() < 0.8

    colours = np.zeros((len(Region), 3))
    colours[Region.FACE] = skin
    colours[Region.HAIR] = hair
    colours[Region.NECK] = skin
    colours[Region.TORSO] = top
    colours[Region.CHEST_FRONT] = print_colour
    colours[Region.HIPS] = bottom
    colours[Region.UPPER_ARM] = top if sleeves >= 1 else skin
    colours[Region.FOREARM] = top if sleeves == 2 else skin
    colours[Region.HAND] = skin
    colours[Region.THIGH] = bottom
    colours[Region.SHIN] = bottom if long_legs else skin
    colours[Region.FOOT] = shoes
    return Outfit(colours=colours)
