"""DDP smoke test: two CPU processes (gloo) launched by torchrun train the tiny config."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from sparse_pose_ros.model.checkpoint import read_metadata

_RENDEZVOUS_ERRORS = ("RendezvousConnectionError", "RendezvousTimeoutError", "EADDRINUSE",
                      "Address already in use", "Connection refused")


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)
def test_two_process_gloo_run_trains_and_saves_once(make_config, tmp_path: Path) -> None:
    cfg = make_config(optim={"epochs": 1, "batch_size": 2}, eval={"every_epochs": 0})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sparse_pose_ros.training.train",
        "--config",
        str(cfg),
        "--no-progress",
        "--name",
        "ddp",
    ]
    # torchrun's c10d rendezvous on loopback failed once in a full-suite run on a loaded
    # 2-core machine (not reproduced since): one retry, only for errors of the launcher's
    # networking, never for a failure of the training itself.
    for attempt in range(2):
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            cwd=Path(__file__).resolve().parents[2],
        )
        transient = any(k in proc.stderr for k in _RENDEZVOUS_ERRORS)
        if proc.returncode == 0 or not transient or attempt == 1:
            break
    assert proc.returncode == 0, (
        f"torchrun exit {proc.returncode}\n--- stderr (tail) ---\n{proc.stderr[-4000:]}"
        f"\n--- stdout (tail) ---\n{proc.stdout[-2000:]}"
    )
    run_dir = tmp_path / "runs" / "ddp"
    meta = read_metadata(run_dir / "final.safetensors")["meta"]
    assert meta["world_size"] == 2
    # 12 frames split over 2 ranks = 6 each, batch 2 -> 3 steps per epoch on every rank.
    assert meta["steps"] == 3
    with (run_dir / "train.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # rank 0 alone writes the log
    assert meta["metrics"]["samples"] == 8
