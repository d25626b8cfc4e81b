"""Evaluation against references we do not train on: real photos/video and the BlazePose peer.

Kept import-light on purpose (no torch, no cv2 here): ``tools/peer/blazepose_runner.py`` imports
:mod:`.blazepose_map` from inside the peer venv, which has numpy < 2 and no torch.
"""
