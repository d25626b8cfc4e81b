"""Teachers and the real frames they label: MediaPipe BlazePose run in its own venv (``peer``),
its 33 landmarks mapped to Human3.6M-17 (``blazepose_map``), and the offline real-frame set
(``real_frames``). Low in the package: data labelling and evaluation both build on it."""
