"""Pose and mask metrics, on numpy arrays so evaluation, tests and peer comparisons share them.

Conventions:
- 3D joints are (N, J, 3) in millimetres in the camera frame or root-relative; every 3D metric
  subtracts the root joint first (Human3.6M protocol 1 = MPJPE of root-relative joints,
  protocol 2 = after a similarity Procrustes alignment per sample).
- 2D joints are (N, J, 2) in pixels; PCK@α counts a joint correct when its error is below
  α × the size of the person's box (the larger side of the box around the ground-truth joints,
  unless a box size is given), the usual "PCK of the bbox" for single-person crops.
- Masks are binary arrays; recall is the share of person-silhouette pixels that lie inside the
  executed region (what the sparse backbone must not miss), precision the share of executed
  pixels that are person.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import skeleton


def _check_joints(pred: np.ndarray, gt: np.ndarray, dims: int) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    if pred.ndim != 3 or pred.shape[-1] != dims:
        raise ValueError(f"joints must be (N, J, {dims}), got {pred.shape}")


def root_relative(joints: np.ndarray, root: int = skeleton.ROOT) -> np.ndarray:
    """Subtract the root joint from every joint: (N, J, 3) -> (N, J, 3)."""
    return joints - joints[:, root : root + 1, :]


def joint_errors_3d(pred: np.ndarray, gt: np.ndarray, root: int = skeleton.ROOT) -> np.ndarray:
    """Root-relative Euclidean error per sample and joint, (N, J), in the input's unit (mm)."""
    _check_joints(pred, gt, 3)
    return np.linalg.norm(root_relative(pred, root) - root_relative(gt, root), axis=-1)


def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int = skeleton.ROOT) -> float:
    """Protocol 1: mean per-joint position error after aligning the roots."""
    return float(joint_errors_3d(pred, gt, root).mean())


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Best similarity transform (rotation, uniform scale, translation) of ``pred`` onto ``gt``.

    Per sample, least squares (Umeyama 1991). Reflections are excluded: a mirrored skeleton
    swaps left and right, which is an error the metric must keep.
    """
    _check_joints(pred, gt, 3)
    mu_p = pred.mean(axis=1, keepdims=True)
    mu_g = gt.mean(axis=1, keepdims=True)
    p0 = pred - mu_p
    g0 = gt - mu_g
    # Covariance H = P0^T G0 per sample; R maps p onto g.
    h = np.einsum("nji,njk->nik", p0, g0)
    u, s, vt = np.linalg.svd(h)
    v = np.transpose(vt, (0, 2, 1))
    d = np.sign(np.linalg.det(np.einsum("nij,nkj->nik", v, u)))
    d[d == 0] = 1.0
    fix = np.ones_like(s)
    fix[:, -1] = d
    rot = np.einsum("nij,nj,nkj->nik", v, fix, u)  # V diag(1,1,d) U^T
    var_p = (p0**2).sum(axis=(1, 2))
    scale = (s * fix).sum(axis=1) / np.maximum(var_p, 1e-12)
    aligned = scale[:, None, None] * np.einsum("nij,nkj->nki", rot, p0) + mu_g
    return aligned


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Protocol 2: MPJPE after per-sample Procrustes alignment."""
    aligned = procrustes_align(pred, gt)
    return float(np.linalg.norm(aligned - gt, axis=-1).mean())


def mean_pose_baseline(train_joints: np.ndarray, test_joints: np.ndarray) -> dict[str, float]:
    """MPJPE / PA-MPJPE of always answering the mean root-relative training pose.

    The floor any pose model must beat: a network that outputs the same skeleton for every
    image scores this. Both arrays are camera-frame (N, J, 3).
    """
    mean_pose = root_relative(np.asarray(train_joints, np.float64)).mean(axis=0)
    gt = np.asarray(test_joints, np.float64)
    pred = np.broadcast_to(mean_pose, gt.shape) + gt[:, :1]
    return {"mpjpe_mm": mpjpe(pred, gt), "pa_mpjpe_mm": pa_mpjpe(np.array(pred), gt)}


def bbox_size(joints_2d: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Larger side of the box around the (visible) 2D joints, per sample: (N,)."""
    if joints_2d.ndim != 3 or joints_2d.shape[-1] != 2:
        raise ValueError(f"2D joints must be (N, J, 2), got {joints_2d.shape}")
    if visible is None:
        visible = np.ones(joints_2d.shape[:2], dtype=bool)
    big = np.where(visible[..., None], joints_2d, np.nan)
    with np.errstate(all="ignore"):
        span = np.nanmax(big, axis=1) - np.nanmin(big, axis=1)
    return np.nan_to_num(span.max(axis=-1), nan=0.0)


def pck_2d(
    pred: np.ndarray,
    gt: np.ndarray,
    alpha: float = 0.1,
    box: np.ndarray | None = None,
    visible: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """PCK@alpha of the box: (overall fraction, per-joint fraction (J,)).

    Args:
        pred, gt: (N, J, 2) pixel coordinates.
        alpha: threshold as a fraction of the box size.
        box: (N,) box sizes in pixels; default :func:`bbox_size` of the ground truth.
        visible: (N, J) bool; only these joints count (e.g. joints inside the image).
    """
    _check_joints(pred, gt, 2)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if visible is None:
        visible = np.ones(gt.shape[:2], dtype=bool)
    if box is None:
        box = bbox_size(gt, visible)
    err = np.linalg.norm(pred - gt, axis=-1)
    ok = (err <= alpha * np.asarray(box, dtype=np.float64)[:, None]) & visible
    counted = visible.sum()
    overall = float(ok.sum() / counted) if counted else float("nan")
    per_joint_n = visible.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(per_joint_n > 0, ok.sum(axis=0) / np.maximum(per_joint_n, 1), np.nan)
    return overall, per_joint


def mirrored_pose(joints: np.ndarray, root: int = skeleton.ROOT) -> np.ndarray:
    """Root-relative (N, J, 3) pose with left/right labels swapped and depth negated.

    What the same image would be labelled if the person were seen from the other side: a
    featureless mannequin seen from the back looks like one seen from the front, and the two
    ground truths differ by exactly this. Diagnostic only.
    """
    rel = root_relative(np.asarray(joints, np.float64), root)[:, skeleton.flip_permutation()]
    rel[..., 2] *= -1.0
    return rel


def mirror_tolerant_mpjpe(pred: np.ndarray, gt: np.ndarray, root: int = skeleton.ROOT) -> float:
    """Diagnostic, never a replacement for MPJPE: per-sample min of the MPJPE against the ground
    truth and against its :func:`mirrored_pose`.

    The gap to :func:`mpjpe` bounds what resolving the front/back (left/right) ambiguity alone
    could gain for these predictions.
    """
    _check_joints(pred, gt, 3)
    pr = root_relative(np.asarray(pred, np.float64), root)
    direct = np.linalg.norm(pr - root_relative(gt, root), axis=-1).mean(axis=1)
    mirrored = np.linalg.norm(pr - mirrored_pose(gt, root), axis=-1).mean(axis=1)
    return float(np.minimum(direct, mirrored).mean())


def left_right_separation_ratio(pred_2d: np.ndarray, gt_2d: np.ndarray) -> float:
    """Diagnostic: mean 2D distance between predicted left/right joint pairs over the same in the
    ground truth (``skeleton.FLIP_PAIRS``).

    About 1 when the network places left and right limbs apart as they are; near 0 when it
    cannot tell them apart and answers their midpoint for both (what a soft-argmax over a
    two-peaked heatmap gives).
    """
    _check_joints(pred_2d, gt_2d, 2)
    a = [i for i, _ in skeleton.FLIP_PAIRS]
    b = [j for _, j in skeleton.FLIP_PAIRS]
    gt_sep = np.linalg.norm(gt_2d[:, a] - gt_2d[:, b], axis=-1).mean()
    if gt_sep <= 0:
        return float("nan")
    return float(np.linalg.norm(pred_2d[:, a] - pred_2d[:, b], axis=-1).mean() / gt_sep)


def resize_nearest(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of (..., H, W) by index mapping (exact for integer ratios)."""
    h, w = mask.shape[-2:]
    ys = (np.arange(hw[0]) * h // hw[0]).clip(0, h - 1)
    xs = (np.arange(hw[1]) * w // hw[1]).clip(0, w - 1)
    return mask[..., ys[:, None], xs[None, :]]


@dataclass
class MaskStats:
    """Running recall / precision / density of one gated block against person silhouettes.

    Counts are accumulated at the silhouette's resolution: the block mask (one cell per output
    position) is upsampled to it, so a cell counts for every image pixel it executes for.
    """

    person: int = 0
    person_hit: int = 0
    executed: int = 0
    pixels: int = 0

    def update(self, block_mask: np.ndarray, silhouette: np.ndarray) -> None:
        """block_mask: (N, h, w) binary; silhouette: (N, H, W) binary at image resolution."""
        if (
            block_mask.ndim != 3
            or silhouette.ndim != 3
            or block_mask.shape[0] != silhouette.shape[0]
        ):
            raise ValueError(
                f"need (N, h, w) masks and (N, H, W) silhouettes, got {block_mask.shape} and "
                f"{silhouette.shape}"
            )
        up = resize_nearest(block_mask > 0, silhouette.shape[-2:])
        sil = silhouette > 0
        self.person += int(sil.sum())
        self.person_hit += int((up & sil).sum())
        self.executed += int(up.sum())
        self.pixels += int(up.size)

    @property
    def recall(self) -> float:
        return self.person_hit / self.person if self.person else float("nan")

    @property
    def precision(self) -> float:
        return self.person_hit / self.executed if self.executed else float("nan")

    @property
    def density(self) -> float:
        return self.executed / self.pixels if self.pixels else float("nan")


@dataclass
class PoseAccumulator:
    """Collects per-sample predictions so the final metrics are computed once over the split."""

    pred_3d: list[np.ndarray] = field(default_factory=list)
    gt_3d: list[np.ndarray] = field(default_factory=list)
    pred_2d: list[np.ndarray] = field(default_factory=list)
    gt_2d: list[np.ndarray] = field(default_factory=list)
    visible: list[np.ndarray] = field(default_factory=list)

    def update(
        self,
        pred_3d: np.ndarray,
        gt_3d: np.ndarray,
        pred_2d: np.ndarray,
        gt_2d: np.ndarray,
        visible: np.ndarray | None = None,
    ) -> None:
        _check_joints(pred_3d, gt_3d, 3)
        _check_joints(pred_2d, gt_2d, 2)
        self.pred_3d.append(np.asarray(pred_3d, dtype=np.float64))
        self.gt_3d.append(np.asarray(gt_3d, dtype=np.float64))
        self.pred_2d.append(np.asarray(pred_2d, dtype=np.float64))
        self.gt_2d.append(np.asarray(gt_2d, dtype=np.float64))
        vis = np.ones(gt_2d.shape[:2], dtype=bool) if visible is None else visible.astype(bool)
        self.visible.append(vis)

    def __len__(self) -> int:
        return int(sum(len(p) for p in self.pred_3d))

    def summary(self, pck_alpha: float = 0.1) -> dict[str, object]:
        """MPJPE, PA-MPJPE, PCK and per-joint errors (names from ``skeleton``)."""
        if not self.pred_3d:
            raise ValueError("no samples accumulated")
        p3, g3 = np.concatenate(self.pred_3d), np.concatenate(self.gt_3d)
        p2, g2 = np.concatenate(self.pred_2d), np.concatenate(self.gt_2d)
        vis = np.concatenate(self.visible)
        errors = joint_errors_3d(p3, g3)
        per_joint_err = errors.mean(axis=0)
        per_frame = errors.mean(axis=1)
        pck, pck_joint = pck_2d(p2, g2, pck_alpha, visible=vis)
        names = skeleton.JOINT_NAMES if p3.shape[1] == skeleton.NUM_JOINTS else None
        keys = names or tuple(str(i) for i in range(p3.shape[1]))
        return {
            "samples": int(len(p3)),
            "mpjpe_mm": float(errors.mean()),  # mpjpe(p3, g3), from the errors already at hand
            "pa_mpjpe_mm": pa_mpjpe(p3, g3),
            # the spread over frames: whether a mean comes from a few lost frames or from all
            "mpjpe_frame_median_mm": float(np.median(per_frame)),
            "mpjpe_frame_p90_mm": float(np.percentile(per_frame, 90)),
            f"pck@{pck_alpha:g}": pck,
            "diag_mirror_tolerant_mpjpe_mm": mirror_tolerant_mpjpe(p3, g3),
            "diag_left_right_separation": left_right_separation_ratio(p2, g2),
            "per_joint_mpjpe_mm": {k: float(v) for k, v in zip(keys, per_joint_err, strict=True)},
            f"per_joint_pck@{pck_alpha:g}": {
                k: float(v) for k, v in zip(keys, pck_joint, strict=True)
            },
        }
