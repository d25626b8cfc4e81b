"""Import of pretrained weights from registry packages (MoveNet TF.js graph models)."""
