"""``python -m sparse_pose_ros.pretrained`` = ``./run import-weights``."""

import sys

from .cli import main

sys.exit(main())
