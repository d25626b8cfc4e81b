"""The one framing rule of a person: a square of ``side_factor`` × the joints' box, centred.

Shared by the training crops (``data.augment``), the two-pass evaluation and the tracking window
(``pipeline.roi``), so the network sees at run time the framing it was trained and measured on.
It sits at the bottom of the package so that ``data`` and ``pipeline`` both import it downward.
"""

from __future__ import annotations

import numpy as np


def person_square(
    joints_px: np.ndarray, side_factor: float, min_side: float
) -> tuple[np.ndarray, float]:
    """(centre (2,), side) of the square of ``side_factor`` × the larger side of the joints' box
    (at least ``min_side``), centred on the box: the one framing rule of the training crops,
    the two-pass evaluation and the tracking window."""
    pts = np.asarray(joints_px, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (lo + hi) / 2.0, max(float((hi - lo).max()) * side_factor, float(min_side))
