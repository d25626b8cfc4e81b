"""Train and calibrate the person locator (``model.locator``) on teacher person masks.

The locator is small (9 k weights, 4.3 M MACs a look at 256 px), so it trains from scratch on the
recipe's samples in minutes on a 2-core CPU: every sample is an image with a person mask
(BlazePose segmentation for real crops and pastes, the renderer's silhouette for synthetic
frames). Targets are the stride-16 cells holding any person pixel; the loss is BCE with the
person cells up-weighted, because a missed person cell costs accuracy while a wasted background
cell only costs time. Calibration then sets the locator's logit offset on held-out samples so
that ``recall`` of their person cells are on, which is the operating point the threshold 0.5
means at run time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.locator import LOCATOR_STRIDE, PersonLocator

LOG = logging.getLogger("sparse_pose_ros.locator_fit")


def cell_targets(person: Tensor, grid: tuple[int, int], margin: int = 0) -> Tensor:
    """(B, 1, H, W) person mask in [0, 1] → (B, 1, h, w) 0/1: cells of ``grid`` holding person
    pixels, ± ``margin`` cells (the locator's targets; the mask units' with their margin)."""
    cells = (F.adaptive_max_pool2d(person.float(), grid) > 0.5).float()
    if margin > 0:
        cells = F.max_pool2d(cells, 2 * margin + 1, stride=1, padding=margin)
    return cells


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def zoom_out(x: Tensor, person: Tensor, rng: np.random.Generator, share: float,
             min_scale: float = 0.3) -> tuple[Tensor, Tensor]:
    """With probability ``share`` per sample: shrink the sample (image and person mask) by a
    random factor in [``min_scale``, 1] and place it at a random spot of a canvas of the
    letterbox fill (0 after normalisation).

    Why: most samples are crops centred on their person, so without this the locator learns
    "the middle of the picture" and "anything that is not padding", and on whole camera frames
    (people small, anywhere, letterbox bars) it turned on 77 % of the backbone.
    """
    b, _, h, w = x.shape
    out_x, out_p = torch.zeros_like(x), torch.zeros_like(person)
    for i in range(b):
        if rng.random() >= share:
            out_x[i], out_p[i] = x[i], person[i]
            continue
        s = rng.uniform(min_scale, 1.0)
        nh, nw = max(8, int(h * s)), max(8, int(w * s))
        y0, x0 = int(rng.integers(0, h - nh + 1)), int(rng.integers(0, w - nw + 1))
        out_x[i, :, y0:y0 + nh, x0:x0 + nw] = F.interpolate(
            x[i:i + 1], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        out_p[i, :, y0:y0 + nh, x0:x0 + nw] = F.interpolate(
            person[i:i + 1], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    return out_x, out_p


def fit_locator(locator: PersonLocator, images: np.ndarray, person: np.ndarray,
                normalise: Any, epochs: int, recall: float, seed: int = 0, batch: int = 64,
                lr: float = 3e-3, pos_weight: float = 4.0, val_share: float = 0.1,
                zoom_share: float = 0.6) -> dict[str, Any]:
    """Train ``locator`` in place, then calibrate its offset. ``images``: (N, S, S, 3) uint8;
    ``person``: (N, S, S) in [0, 1]; ``normalise``: uint8 NHWC array → the network's input
    tensor; ``zoom_share``: share of training samples shrunk onto a padded canvas
    (:func:`zoom_out`). Returns the report (losses, held-out recall / cells on / pixel
    recall)."""
    n, size = len(images), images.shape[1]
    grid = (size // LOCATOR_STRIDE, size // LOCATOR_STRIDE)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = max(1, int(round(n * val_share)))
    val, train = order[:n_val], order[n_val:]
    opt = torch.optim.AdamW(locator.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    weight = torch.tensor(pos_weight)
    t0 = time.perf_counter()
    losses = []
    for epoch in range(epochs):
        locator.train()
        total, count = 0.0, 0
        for idx in _batches(len(train), batch, rng):
            rows = train[idx]
            x = normalise(images[rows])
            pix = torch.from_numpy(person[rows])[:, None].float()
            if zoom_share > 0:
                x, pix = zoom_out(x, pix, rng, zoom_share)
            y = cell_targets(pix, grid)
            if rng.random() < 0.5:  # mirror: people face both ways
                x, y = x.flip(-1), y.flip(-1)
            logits = locator(x)
            loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
        losses.append(total / max(count, 1))
        LOG.info("locator epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, epochs, losses[-1],
                 time.perf_counter() - t0)
    locator.eval()
    report = calibrate(locator, images[val], person[val], normalise, recall)
    report.update(epochs=epochs, zoom_share=zoom_share, losses=[round(v, 5) for v in losses],
                  train_samples=len(train), val_samples=len(val),
                  seconds=round(time.perf_counter() - t0, 1))
    return report


@torch.no_grad()
def raw_logits(locator: PersonLocator, images: np.ndarray, normalise: Any,
               batch: int = 64) -> Tensor:
    """Logits without the calibration offset, (N, 1, h, w)."""
    out = []
    for i in range(0, len(images), batch):
        out.append(locator(normalise(images[i:i + batch])) - locator.offset)
    return torch.cat(out)


@torch.no_grad()
def calibrate(locator: PersonLocator, images: np.ndarray, person: np.ndarray, normalise: Any,
              recall: float, margin: int = 1) -> dict[str, Any]:
    """Set ``locator.offset`` so that ``recall`` of the person cells of these samples score ≥ 0;
    report what that gives (cells on with and without the margin, person pixels covered)."""
    size = images.shape[1]
    grid = (size // LOCATOR_STRIDE, size // LOCATOR_STRIDE)
    logits = raw_logits(locator, images, normalise)
    y = cell_targets(torch.from_numpy(person)[:, None], grid) > 0
    on_person = logits[y]
    offset = -float(torch.quantile(on_person, 1.0 - recall)) if on_person.numel() else 0.0
    locator.offset.fill_(offset)
    hard = (logits + offset >= 0).float()
    dilated = F.max_pool2d(hard, 2 * margin + 1, stride=1, padding=margin)
    pix = torch.from_numpy(person)[:, None].float() > 0.5
    up = F.interpolate(dilated, size=(size, size), mode="nearest") > 0
    return {
        "recall_target": recall, "offset": round(offset, 4),
        "cell_recall": round(float(hard[y].mean()), 4),
        "cells_on": round(float(hard.mean()), 4),
        "cells_on_with_margin": round(float(dilated.mean()), 4),
        "person_cells": round(float(y.float().mean()), 4),
        "pixel_recall_with_margin": round(float(up[pix].float().mean()), 4),
        "margin": margin,
    }  # fmt: skip
