"""Entry point: ``python -m sparse_pose_ros.benchmarks sparse-cpu [options]``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
