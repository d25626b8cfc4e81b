"""Copy-paste of teacher-segmented people: joints follow the paste, occlusion, clipping."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.data.copy_paste import (
    composite,
    cut_person,
    paste,
    random_placements,
)


def _frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 200x160 grey frame with a red 'person' box at x 40..79, y 60..139 (mask at 1/4)."""
    img = np.full((200, 160, 3), 90, np.uint8)
    img[60:140, 40:80] = (220, 20, 20)
    mask = np.zeros((50, 40), np.uint8)
    mask[15:35, 10:20] = 255
    joints = np.stack([np.linspace(45, 75, 17), np.linspace(65, 135, 17)], axis=1)
    return img, mask, joints


def test_cut_person_crops_box_and_moves_joints() -> None:
    img, mask, joints = _frame()
    j3 = np.random.default_rng(0).normal(0, 0.3, (17, 3)) + [0, 0, 3.0]
    cut = cut_person(img, mask, joints, np.ones(17), "f0", j3, "triangulated", margin=0.0)
    assert cut is not None
    # person pixels (alpha > 0.5) are exactly the red box, give or take the bilinear edge
    assert abs(cut.rgb.shape[0] - 80) <= 2 and abs(cut.rgb.shape[1] - 40) <= 2
    assert np.all(cut.rgb[cut.alpha > 0.99] == (220, 20, 20))
    assert abs(cut.origin[0] - 40) <= 1 and abs(cut.origin[1] - 60) <= 1
    np.testing.assert_allclose(cut.joints_px + cut.origin, joints)
    np.testing.assert_allclose(cut.joints_3d[0], 0.0)  # root-relative
    assert cut_person(img, np.zeros_like(mask), joints, np.ones(17)) is None
    tiny = np.zeros_like(mask)
    tiny[20, 12] = 255
    assert cut_person(img, tiny, joints, np.ones(17)) is None


def test_paste_scales_joints_and_blends() -> None:
    img, mask, joints = _frame()
    cut = cut_person(img, mask, joints, np.ones(17), margin=0.0)
    assert cut is not None
    bg = np.zeros((300, 400, 3), np.uint8)
    out, pj, alpha = paste(bg, cut, 0.5, (100, 50))
    nh, nw = round(cut.rgb.shape[0] * 0.5), round(cut.rgb.shape[1] * 0.5)
    sx, sy = nw / cut.rgb.shape[1], nh / cut.rgb.shape[0]
    np.testing.assert_allclose(pj, cut.joints_px * [sx, sy] + [100, 50])
    assert out[:50].max() == 0 and out[:, :100].max() == 0  # nothing outside the paste
    core = alpha > 0.99
    assert core.any() and np.all(out[core] == (220, 20, 20))
    assert alpha.max() <= 1.0 and (alpha > 0).sum() <= nh * nw
    with pytest.raises(ValueError):
        paste(bg, cut, 0.0, (0, 0))


def test_composite_occludes_earlier_people_and_clips_at_the_border() -> None:
    img, mask, joints = _frame()
    cut = cut_person(img, mask, joints, np.ones(17), "f0", margin=0.0)
    assert cut is not None
    bg = np.full((240, 320, 3), 30, np.uint8)
    comp = composite(bg, [cut, cut], [(1.0, (50, 40)), (1.0, (50, 40))])
    first, second = comp.people
    assert first.visibility.max() == 0.0  # entirely behind the second paste
    assert second.visibility.min() == 1.0
    # a paste hanging over the right border: joints outside get visibility 0
    comp = composite(bg, [cut], [(1.0, (300, 40))])
    p = comp.people[0]
    outside = p.joints_px[:, 0] >= 320
    assert outside.any() and np.all(p.visibility[outside] == 0) and np.all(p.visibility[~outside])
    assert comp.person_mask.shape == (240, 320) and comp.person_mask[:, 300:].max() > 0.99


def test_random_placements_sizes_in_range() -> None:
    img, mask, joints = _frame()
    cut = cut_person(img, mask, joints, np.ones(17), margin=0.0)
    assert cut is not None
    rng = np.random.default_rng(1)
    places = random_placements(rng, [cut] * 200, (480, 640), height_frac=(0.1, 0.5))
    heights = np.array([s * cut.height for s, _ in places]) / 480
    assert heights.min() >= 0.1 - 1e-9 and heights.max() <= 0.5 + 1e-9
    assert np.mean(heights < 0.22) > 0.35  # log-uniform: small people are common
    centres = np.array([(x + s * cut.rgb.shape[1] / 2, y + s * cut.height / 2)
                        for s, (x, y) in places])
    assert np.all((centres > -1) & (centres < [641, 481]))


def test_no_training_pastes_from_heldout_sources(tmp_path) -> None:
    from sparse_pose_ros.data import label_cache as lc
    from sparse_pose_ros.data.copy_paste import cutouts_from_label_set
    from sparse_pose_ros.data.real_sources import SOURCES_BY_ID

    rec = SOURCES_BY_ID["sports2d_demo"].record()
    bp = {k: np.zeros((0, *shape), np.float32) for k, shape in lc.BLAZEPOSE_ARRAYS.items()}
    bp["detected"], bp["frame_ids"] = np.zeros(0, bool), np.array([], str)
    lc.write_label_set(tmp_path / "s", {"source": rec, "frames": [], "files": []}, bp)
    ls = lc.load_label_set(tmp_path / "s")
    with pytest.raises(ValueError, match="held out"):
        next(cutouts_from_label_set(ls))
    assert list(cutouts_from_label_set(ls, allow_heldout=True)) == []
