"""Fixtures of the export tests."""

from __future__ import annotations

import numpy as np
import pytest
from real_frames import frames


@pytest.fixture(scope="session")
def frames128() -> dict[str, np.ndarray]:
    return frames(128)
