"""Change a checkpoint's readout settings without touching its weights.

    python -m sparse_pose_ros.training.readout_settings --checkpoint models/pose_dense.safetensors \
        [--person-prior on|off] [--input-size N] [--out PATH]

Why a tool of its own: ``person_prior`` (``NetworkConfig``) decides how the joints are read off
the heatmaps, and ``input_size`` the side a whole frame is read at by default (every runtime's
"the model's own size"; the network is convolutional, any multiple of its output stride runs),
not what the network learned, so changing either for a trained checkpoint needs no training
run. Why ``input_size``: the Lightning pair was trained on 192-px crops, MoveNet Lightning's own
size, but at 192 a whole frame shows people of 1–8 % of it too small to be found (held-out real
frames, the node's path: PCK@0.1 0.78 with whole frames at 192, 0.90 at 256;
``models/MODEL_CARD.md``). The file is rewritten with the new config (hence a new model hash, so
every runtime re-exports it), the same tensors in the same precision, and a ``readout_changes``
entry in its metadata saying what changed, when and by which command. The weights are compared
before the file is replaced.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..model.network import PoseNetwork

#: The config fields this tool may change: readout only, never what the weights mean.
READOUT_FIELDS: tuple[str, ...] = ("person_prior", "input_size")


def set_readout(path: Path, out: Path, command: str, **changes: bool | int) -> str:
    """Rewrite ``path`` to ``out`` with ``changes`` applied to its config; returns the new model
    hash. Raises ValueError for a field that is not a readout setting or a config the network
    refuses (e.g. ``person_prior`` without MoveNet's heads, an ``input_size`` that is not a
    multiple of its output stride), CheckpointError for a bad file."""
    unknown = sorted(set(changes) - set(READOUT_FIELDS))
    if unknown:
        raise ValueError(f"not readout settings: {unknown} (only {READOUT_FIELDS})")
    net, info = load_checkpoint(path)
    new = PoseNetwork(replace(net.cfg, **changes))
    new.load_state_dict(net.state_dict(), strict=True)
    if info["fp16"]:
        new = new.half()
    before = net.half().state_dict() if info["fp16"] else net.state_dict()
    after = new.state_dict()
    if before.keys() != after.keys() or any(not torch.equal(before[k], after[k]) for k in after):
        raise CheckpointError(f"{path}: the weights changed while rewriting the config")
    meta = dict(info["meta"])
    entry = {"changes": dict(changes), "command": command,
             "from_model_hash": info["model_hash"],
             "utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    meta["readout_changes"] = [*meta.get("readout_changes", []), entry]
    return save_checkpoint(out, new.eval(), meta=meta)


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return value == "on"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sparse_pose_ros.training.readout_settings",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help=".safetensors checkpoint to rewrite")
    p.add_argument("--person-prior", type=_on_off, default=None,
                   help="on/off: joints only inside the box of the person MoveNet's centre "
                        "heads pick (needs a checkpoint with MoveNet's heads)")
    p.add_argument("--input-size", type=int, default=None,
                   help="the checkpoint's own input side (whole frames), a multiple of its "
                        "output stride")
    p.add_argument("--out", default=None, help="output path (default: rewrite in place)")
    args = p.parse_args(argv)
    changes = {k: v for k, v in (("person_prior", args.person_prior),
                                 ("input_size", args.input_size)) if v is not None}
    if not changes:
        p.error("nothing to change: give --person-prior and/or --input-size")
    path = Path(args.checkpoint)
    command = "python -m sparse_pose_ros.training.readout_settings " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    try:
        digest = set_readout(path, Path(args.out or path), command, **changes)
    except (CheckpointError, ValueError) as exc:
        print(f"readout_settings: {exc}", file=sys.stderr)
        return 2
    said = ", ".join(f"{k} {('on' if v else 'off') if isinstance(v, bool) else v}"
                     for k, v in changes.items())
    print(f"{args.out or path}: {said}, model hash {digest[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
