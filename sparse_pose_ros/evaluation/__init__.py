"""Evaluation against references we do not train on: real photos/video and the BlazePose peer
(the peer bridge, its joint mapping and the real-frame set live in :mod:`..teachers`)."""
