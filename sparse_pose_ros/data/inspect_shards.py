"""CLI: contact sheet (frames with their 2D skeletons) and label statistics of a shard folder.

    python -m sparse_pose_ros.data.inspect_shards --data data_cache/synth_v1/train \
        --sheet docs/images/synthetic_contact_sheet.png --stats out/synth_v1_train_stats.json

Why: the pose and camera distribution is documented from the data actually written, not from
the sampler's intentions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.poses import ALL_FAMILIES
from sparse_pose_ros.data.shards import ShardDataset
from sparse_pose_ros.data.synthetic import STYLES


def _bgr(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    return (int(rgb[2] * 255), int(rgb[1] * 255), int(rgb[0] * 255))


def draw_skeleton(image_rgb: np.ndarray, joints_2d: np.ndarray, visible: np.ndarray,
                  scale: int = 2) -> np.ndarray:
    """Upscaled copy of the frame with bones (side colours) and joints; hidden joints hollow."""
    canvas = cv2.resize(image_rgb[..., ::-1], None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_NEAREST)
    pts = [(int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
           for x, y in joints_2d]
    width = max(1, scale)
    for (p, c), colour in zip(skeleton.BONES, skeleton.BONE_COLOURS, strict=True):
        cv2.line(canvas, pts[p], pts[c], _bgr(colour), width, cv2.LINE_AA)
    for j, colour in enumerate(skeleton.JOINT_COLOURS):
        cv2.circle(canvas, pts[j], 1 + width, _bgr(colour), -1 if visible[j] else 1, cv2.LINE_AA)
    return np.ascontiguousarray(canvas[..., ::-1])


def contact_sheet(data: ShardDataset, count: int, columns: int, seed: int,
                  scale: int = 1) -> np.ndarray:
    """RGB grid of ``count`` random frames with skeletons and family labels."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(data), size=min(count, len(data)), replace=False))
    tiles = []
    for i in picks:
        s = data.sample(int(i))
        tile = draw_skeleton(s["image"], s["joints_2d"], s["visible"], scale)
        family = ALL_FAMILIES[int(s["family"])]
        style = STYLES[int(data.labels["style"][i])]
        for colour, thickness in (((255, 255, 255), 3), ((0, 0, 0), 1)):
            cv2.putText(tile, f"{family} / {style}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        colour, thickness, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def statistics(data: ShardDataset) -> dict[str, Any]:
    """Distribution of families, styles, person size, visibility, occluders, depth."""
    lab = data.labels
    bbox_h = (lab["bbox"][:, 3] - lab["bbox"][:, 1]) / 256.0
    root_depth = lab["joints_3d"][:, skeleton.ROOT, 2] / 1000.0

    def pct(x: np.ndarray) -> dict[str, float]:
        q = np.percentile(x, [5, 25, 50, 75, 95])
        return {f"p{p}": round(float(v), 3) for p, v in zip((5, 25, 50, 75, 95), q, strict=True)}

    fam = np.bincount(lab["family"], minlength=len(ALL_FAMILIES)) / len(data)
    sty = np.bincount(lab["style"], minlength=len(STYLES)) / len(data)
    return {
        "frames": len(data),
        "family_share": {n: round(float(v), 3) for n, v in zip(ALL_FAMILIES, fam, strict=True)},
        "style_share": {n: round(float(v), 3) for n, v in zip(STYLES, sty, strict=True)},
        "subjects": int(len(np.unique(lab["subject"]))),
        "occluder_share": round(float(lab["occluded"].mean()), 3),
        "person_bbox_height_fraction": pct(bbox_h),
        "person_mask_area_fraction": pct(lab["mask_fraction"]),
        "share_frames_person_area_below_25pct": round(
            float((lab["mask_fraction"] < 0.25).mean()), 3),
        "camera_elevation_deg": pct(lab["elevation_deg"]),
        "root_depth_m": pct(root_depth),
        "all_joints_in_frame_share": round(float(lab["in_frame"].all(axis=1).mean()), 3),
        "visible_share_per_joint": {
            n: round(float(v), 3)
            for n, v in zip(skeleton.JOINT_NAMES, lab["visible"].mean(axis=0), strict=True)
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with one split's shards")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    parser.add_argument("--stats", type=Path, help="write label statistics JSON here")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1, help="upscale factor of each tile")
    args = parser.parse_args(argv)
    try:
        data = ShardDataset(args.data)
    except ValueError as err:
        parser.error(str(err))
    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet = contact_sheet(data, args.count, args.columns, args.seed, args.scale)
        cv2.imwrite(str(args.sheet), sheet[..., ::-1])
        print(f"contact sheet: {args.sheet} ({sheet.shape[1]}x{sheet.shape[0]})")
    stats = statistics(data)
    text = json.dumps(stats, indent=2)
    if args.stats:
        args.stats.parent.mkdir(parents=True, exist_ok=True)
        args.stats.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
