#!/usr/bin/env bash
# Create the BlazePose peer venv (.venv-peer at the repo root) and check it runs offline.
#
# Why a separate venv: mediapipe 0.10.21 (the newest with mp.solutions.pose and the Full model
# inside the wheel) needs numpy < 2 and protobuf < 5; the project venv runs numpy 2.
# Needs Python 3.9-3.12 (mediapipe 0.10.21 has wheels up to cp312). Idempotent.
#
# Usage: tools/peer/setup_venv.sh [python3]      (env PEER_VENV overrides the venv path)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PEER_VENV:-$root/.venv-peer}"
python="${1:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-peer.txt"
# An opencv-python(-headless) wheel next to mediapipe's opencv-contrib-python would overwrite cv2/.
if "$venv/bin/pip" show --quiet opencv-python-headless >/dev/null 2>&1 \
   || "$venv/bin/pip" show --quiet opencv-python >/dev/null 2>&1; then
  "$venv/bin/pip" uninstall --quiet -y opencv-python-headless opencv-python
  "$venv/bin/pip" install --quiet --force-reinstall --no-deps opencv-contrib-python
fi
"$venv/bin/python" - <<'PY'
import pathlib, sys
import cv2, numpy, mediapipe as mp
model = pathlib.Path(mp.__file__).parent / "modules/pose_landmark/pose_landmark_full.tflite"
if not model.is_file():
    sys.exit(f"peer venv broken: {model} missing (would be downloaded at run time)")
print(f"peer venv ok: mediapipe {mp.__version__}, numpy {numpy.__version__}, opencv {cv2.__version__}")
PY
