"""``python -m sparse_pose_ros.export`` (see :mod:`.cli`)."""

import sys

from .cli import main

sys.exit(main())
