"""Train a dense or gated pose network from a YAML config.

    python -m sparse_pose_ros.training.train --config training_configs/tiny_sparse.yaml
    python -m sparse_pose_ros.training.train --config training_configs/tiny_sparse.yaml --resume
    torchrun --nproc_per_node 4 -m sparse_pose_ros.training.train \
        --config training_configs/full_sparse.yaml

What a run does: AdamW with linear warm-up and cosine decay (per step), the dynconv mask schedule
(Gumbel noise off for the last epochs, sparsity bounds annealed), no weight decay on mask units,
mixed precision on CUDA, a resumable checkpoint after every epoch (weights in safetensors,
optimiser state as a tensors-only ``torch.save`` read back with ``weights_only=True``), periodic
evaluation on the held-out split, CSV logs (+ TensorBoard if installed) and a tqdm bar with
loss, density and ETA. Outputs: ``<out_dir>/<name>/{final,last}.safetensors``, ``train.csv``,
``eval.csv``, ``config.yaml``; ``--export PATH`` also writes the final checkpoint to PATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import platform
import random
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model.blocks import freeze_batchnorm
from ..model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..model.losses import PoseLoss
from ..model.network import PoseNetwork
from ..model.schedule import MaskSchedule, param_groups
from ..model.targets import build_targets
from . import distributed as dist_utils
from .batches import Batch
from .config import TrainConfig, load_config
from .data_setup import build_loaders, set_epoch
from .evaluation import evaluate_model
from .logs import ScalarLogger

LOG = logging.getLogger("sparse_pose_ros.train")
STATE_FILE = "last_state.pt"
WEIGHTS_FILE = "last.safetensors"
FINAL_FILE = "final.safetensors"


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def sparsity_weight(progress: float, alpha: float, delay: float, ramp: float) -> float:
    """α_sp at training progress in [0, 1]: 0 during ``delay``, linear rise over ``ramp``."""
    if progress < delay:
        return 0.0
    if ramp <= 0:
        return alpha
    return alpha * min(1.0, (progress - delay) / ramp)


def init_from(net: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy into ``net`` every tensor of checkpoint ``path`` whose name it has.

    Why: dynconv trains its masks on a pretrained backbone; from scratch here the masks of an
    all-gated network went person-blind before the features could tell a person from the
    background (training_configs/tiny_sparse_allgated.yaml). Starting a gated model from a
    trained dense one gives the mask units useful features from step 0. Tensors the source
    lacks (the mask units) keep their fresh initialisation. Raises ValueError when nothing
    matches or when a tensor of the same name has another shape (another width or layout)."""
    try:
        loaded, info = load_checkpoint(path, map_location="cpu")
    except CheckpointError as exc:
        raise ValueError(f"--init-from: {exc}") from exc
    src = loaded.state_dict()
    dst = net.state_dict()
    clashes = [k for k, v in src.items() if k in dst and dst[k].shape != v.shape]
    if clashes:
        # A same-named tensor of another shape means another width or layout: copying the rest
        # would start from a half-initialised mix without anyone noticing.
        raise ValueError(
            f"--init-from: {path} is another architecture ({len(clashes)} tensors differ in "
            f"shape, e.g. {clashes[0]}: {tuple(src[clashes[0]].shape)} vs "
            f"{tuple(dst[clashes[0]].shape)}); match the config's model section to it"
        )
    copied = [k for k, v in src.items() if k in dst]
    if not copied:
        raise ValueError(f"--init-from: no tensor of {path} fits this model")
    with torch.no_grad():
        for k in copied:
            dst[k].copy_(src[k])
    fresh = sorted(set(dst) - set(copied))
    LOG.info("initialised %d of %d tensors from %s (fresh: %d, e.g. %s)", len(copied), len(dst),
             path, len(fresh), fresh[:3])  # fmt: skip
    out = {"path": str(path), "model_hash": info["model_hash"], "copied": len(copied),
           "fresh": len(fresh)}  # fmt: skip
    if "source" in info["meta"]:  # an imported checkpoint (pretrained/): keep its provenance
        out["source"] = info["meta"]["source"]
    return out


def freeze_modules(net: nn.Module, names: tuple[str, ...]) -> int:
    """Stop gradients into the named top-level modules, except their mask units (which learn
    where to compute on top of fixed features); returns how many tensors were frozen."""
    count = 0
    for name, p in net.named_parameters():
        if name.split(".", 1)[0] in names and ".mask_unit." not in name:
            p.requires_grad_(False)
            count += 1
    return count


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("run.device=cuda but no CUDA device is available")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save of plain containers of tensors/numbers only, so weights_only=True loads it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_training_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"--resume: no training state at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


class Trainer:
    """One training run (one process of a DDP job)."""

    def __init__(self, cfg: TrainConfig, args: argparse.Namespace) -> None:
        self.cfg = cfg
        self.args = args
        self.dist = dist_utils.from_environment()
        self.device = pick_device(cfg.run.device)
        dist_utils.init(self.dist, self.device)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        seed_everything(cfg.run.seed + self.dist.rank)
        self.run_dir = cfg.run_dir
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        # Channels-last: the depthwise and 1x1 convs of the MobileNet blocks run ~15 % faster
        # per step on the CPU (measured at 128 px, batch 8, one thread) and on GPUs with AMP.
        self.net = PoseNetwork(cfg.model)
        self.init_info: dict[str, Any] | None = None
        if getattr(args, "init_from", None):
            if args.resume:
                raise ValueError("--init-from starts a new run; not with --resume")
            self.init_info = init_from(self.net, args.init_from)
        frozen = freeze_modules(self.net, cfg.optim.freeze)
        if frozen:
            LOG.info("frozen: %s (%d tensors; mask units stay trainable)",
                     ", ".join(cfg.optim.freeze), frozen)
        if self.init_info and self.init_info.get("source") and not cfg.optim.freeze_batchnorm:
            raise ValueError(
                f"--init-from {args.init_from}: an imported checkpoint has folded BatchNorm "
                "(fake statistics); train it with optim.freeze_batchnorm: true"
            )
        self.net = self.net.to(self.device, memory_format=torch.channels_last)
        self.model: nn.Module = self.net
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.train_loader, self.test_loader, self.data_desc = build_loaders(cfg, self.dist)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError("the training split is smaller than one batch")
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.optimizer = torch.optim.AdamW(
            param_groups(self.net, cfg.optim.lr, cfg.optim.weight_decay, cfg.masks.mask_lr_scale)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, self.total_steps, self.warmup_steps, cfg.optim.min_lr_ratio),
        )
        self.use_amp = cfg.optim.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = PoseLoss(dataclasses.replace(cfg.loss))
        self.mask_schedule = MaskSchedule(
            cfg.optim.epochs,
            tau=cfg.masks.tau,
            noise_off_fraction=cfg.masks.noise_off_fraction,
            theta=cfg.loss.theta,
            anneal_fraction=cfg.loss.anneal_fraction,
        )
        self.heatmap_size = cfg.model.input_size // 4
        self.start_epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        if args.resume:
            self._resume()
        self.train_log = ScalarLogger(self.run_dir, "train") if self.dist.is_main else None
        self.eval_log = (
            ScalarLogger(self.run_dir, "eval", tensorboard=False) if self.dist.is_main else None
        )

    # -- checkpoints ------------------------------------------------------------------------
    def _meta(self, epoch: int, metrics: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "command": " ".join(
                shlex.quote(a)
                for a in ["python", "-m", "sparse_pose_ros.training.train", *self.args.argv]
            ),
            "config_yaml": self.cfg.to_yaml(),
            "data": self.data_desc,
            "epochs_done": epoch,
            "epochs": self.cfg.optim.epochs,
            "steps": self.step,
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "torch": torch.__version__,
            "machine": f"{platform.node()} {platform.machine()} {platform.processor()}".strip(),
            "train_seconds": round(self.train_seconds, 1),
            "saved_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metrics": metrics or {},
            "eval_history": self.history,
            **({"init_from": self.init_info} if self.init_info else {}),
        }

    def _save(self, epoch: int, metrics: dict[str, Any] | None = None) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.run_dir / WEIGHTS_FILE, self.net, self._meta(epoch, metrics))
        save_training_state(
            self.run_dir / STATE_FILE,
            {
                "epoch": epoch,
                "step": self.step,
                "train_seconds": self.train_seconds,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": _rng_state(),
            },
        )

    def _resume(self) -> None:
        weights = self.run_dir / WEIGHTS_FILE
        if not weights.is_file():
            raise ValueError(f"--resume: no checkpoint at {weights}")
        loaded, info = load_checkpoint(weights, map_location="cpu")
        if info["config"] != self.cfg.model.to_dict():
            raise ValueError(f"--resume: {weights} was trained with a different model config")
        self.net.load_state_dict(loaded.state_dict())
        state = load_training_state(self.run_dir / STATE_FILE)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start_epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.history = list(info["meta"].get("eval_history", []))
        LOG.info("resumed %s at epoch %d (step %d)", weights, self.start_epoch, self.step)

    # -- loop -------------------------------------------------------------------------------
    def _train_mode(self) -> None:
        """``net.train()``, with BatchNorm kept in eval mode when the config says so."""
        self.net.train()
        if self.cfg.optim.freeze_batchnorm:
            freeze_batchnorm(self.net)

    def _train_step(self, batch: Batch, progress: float) -> dict[str, float]:
        batch = batch.to(self.device, non_blocking=True)
        targets = build_targets(
            batch.joints2d,
            batch.joints_z,
            batch.visibility,
            self.heatmap_size,
            sigma=self.cfg.data.heatmap_sigma,
        )
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            output = self.model(batch.images.contiguous(memory_format=torch.channels_last))
            loss, parts = self.loss_fn(
                output, targets, self.net, progress, silhouette=batch.silhouette
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = float(nn.utils.clip_grad_norm_(
                [p for p in self.net.parameters() if p.requires_grad], self.cfg.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return parts

    def _evaluate(self, epoch: int, full: bool) -> dict[str, Any] | None:
        if not self.dist.is_main:
            return None
        max_frames = 0 if full else self.cfg.eval.max_frames
        result = evaluate_model(self.net, self.test_loader, self.device, max_frames)
        self._train_mode()
        row = {
            "epoch": epoch,
            "frames": result["samples"],
            "mpjpe_mm": result["mpjpe_mm"],
            "pa_mpjpe_mm": result["pa_mpjpe_mm"],
            "pck": result["pck@0.1"],
            "backbone_flops_fraction": result["backbone_flops_fraction"],
            "gated_density": result["gated_density"],
            "first_gated_recall": result.get("first_gated_recall", ""),
        }
        assert self.eval_log is not None
        self.eval_log.write(self.step, row)
        self.history.append({k: v for k, v in row.items() if v != ""})
        LOG.info(
            "eval epoch %d: MPJPE %.1f mm, PA-MPJPE %.1f mm, PCK@0.1 %.3f, backbone FLOPs %.3f",
            epoch,
            row["mpjpe_mm"],
            row["pa_mpjpe_mm"],
            row["pck"],
            row["backbone_flops_fraction"],
        )
        return result

    def fit(self) -> dict[str, Any] | None:
        cfg = self.cfg
        epochs = cfg.optim.epochs
        stop_after = self.args.stop_after or epochs
        if self.dist.is_main:
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
            LOG.info(
                "training %s: %d epochs x %d steps (batch %d x %d processes) on %s, data: %s",
                cfg.run.name,
                epochs,
                self.steps_per_epoch,
                cfg.optim.batch_size,
                self.dist.world_size,
                self.device,
                self.data_desc,
            )
        self._train_mode()
        final: dict[str, Any] | None = None
        bar = self._progress_bar()
        try:
            for epoch in range(self.start_epoch, epochs):
                if epoch >= stop_after:
                    LOG.info("stopping after epoch %d as asked (--stop-after); use --resume", epoch)
                    return None
                set_epoch(self.train_loader, epoch, cfg.run.seed + 1000 * self.dist.rank)
                t_epoch = time.perf_counter()
                self._run_epoch(epoch, bar)
                self.train_seconds += time.perf_counter() - t_epoch
                done = epoch + 1
                last = done == epochs
                every = cfg.eval.every_epochs
                metrics = None
                if last or (every and done % every == 0):
                    metrics = self._evaluate(done, full=last)
                if last:
                    final = metrics
                if last or done % cfg.run.checkpoint_every == 0:
                    self._save(done, metrics)
                dist_utils.barrier(self.dist)
        finally:
            if bar is not None:
                bar.close()
        if self.dist.is_main:
            self._finish(final)
        return final

    def _progress_bar(self) -> Any:
        if not self.dist.is_main or self.args.no_progress:
            return None
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        return tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.cfg.run.name,
            unit="step",
            mininterval=1.0 if tty else 30.0,
            dynamic_ncols=tty,
            ncols=None if tty else 120,
        )

    def _run_epoch(self, epoch: int, bar: Any) -> None:
        cfg = self.cfg
        t_log, n_log, n_steps = time.perf_counter(), 0, 0
        sums: dict[str, float] = {}
        for i, batch in enumerate(self.train_loader):
            # Fractional epoch: the noise switch and the bounds move every step, so short
            # schedules (a few epochs) still get the last 20 % without noise.
            frac_epoch = epoch + i / self.steps_per_epoch
            self.mask_schedule.apply(self.net, frac_epoch)
            progress = frac_epoch / cfg.optim.epochs
            self.loss_fn.cfg.alpha_sparsity = sparsity_weight(
                progress, cfg.loss.alpha_sparsity, cfg.masks.sparsity_delay, cfg.masks.sparsity_ramp
            )
            parts = self._train_step(batch, progress)
            n_log += len(batch)
            n_steps += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if not math.isfinite(parts["total"]):
                raise FloatingPointError(f"loss became {parts['total']} at step {self.step}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    ep=epoch + 1,
                    loss=f"{parts['total']:.3f}",
                    dens=f"{parts['density']:.2f}",
                    lr=f"{self.scheduler.get_last_lr()[0]:.1e}",
                    refresh=False,
                )
            if self.step % cfg.run.log_every == 0:
                row = {
                    k: dist_utils.mean_scalar(v / n_steps, self.dist, self.device)
                    for k, v in sums.items()
                }
                elapsed = time.perf_counter() - t_log
                row.update(
                    alpha_sparsity=self.loss_fn.cfg.alpha_sparsity,
                    epoch=epoch + i / self.steps_per_epoch,
                    lr=self.scheduler.get_last_lr()[0],
                    images_per_s=n_log * self.dist.world_size / max(elapsed, 1e-9),
                    noise=int(self.net.gated_blocks()[0].mask_unit.gumbel_noise)
                    if self.net.gated_blocks()
                    else 0,
                )
                if self.train_log is not None:
                    self.train_log.write(self.step, row)
                sums, t_log, n_log, n_steps = {}, time.perf_counter(), 0, 0

    def _finish(self, final: dict[str, Any] | None) -> None:
        src = self.run_dir / WEIGHTS_FILE
        dst = self.run_dir / FINAL_FILE
        shutil.copyfile(src, dst)
        export = self.args.export or self.cfg.run.export_path
        if export:
            out = Path(export)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
            LOG.info("exported the final checkpoint to %s", out)
        for logger in (self.train_log, self.eval_log):
            if logger is not None:
                logger.close()
        if final is not None:
            LOG.info(
                "done: MPJPE %.1f mm, PA-MPJPE %.1f mm, PCK@0.1 %.3f on %d held-out frames, "
                "%.0f s of training",
                final["mpjpe_mm"],
                final["pa_mpjpe_mm"],
                final["pck@0.1"],
                final["samples"],
                self.train_seconds,
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sparse_pose_ros.training.train",
        description="Train a pose network (dense or gated) from a YAML config. Multi-GPU: "
        "torchrun --nproc_per_node N -m sparse_pose_ros.training.train --config ...",
    )
    p.add_argument("--config", required=True, help="YAML config (see training_configs/)")
    p.add_argument(
        "--resume", action="store_true", help="continue <out_dir>/<name> from its last checkpoint"
    )
    p.add_argument("--data-root", help="override data.root")
    p.add_argument("--dataset", choices=("synthetic", "h36m"), help="override data.dataset")
    p.add_argument("--epochs", type=int, help="override optim.epochs")
    p.add_argument("--out-dir", help="override run.out_dir")
    p.add_argument("--name", help="override run.name")
    p.add_argument("--export", help="also write the final checkpoint to this path")
    p.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start from a checkpoint's weights (every tensor with a matching name and shape, "
        "e.g. a trained dense model for a gated one; mask units stay fresh)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop after this many epochs (as if interrupted; finish later with --resume)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value (YAML syntax), repeatable",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.set)
    for flag, key in (
        ("data_root", "data.root"),
        ("dataset", "data.dataset"),
        ("epochs", "optim.epochs"),
        ("out_dir", "run.out_dir"),
        ("name", "run.name"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
    if config and Path(config).is_file():
        from .frozen_recipe import is_frozen_recipe
        from .frozen_recipe import main as frozen_main

        if is_frozen_recipe(config):  # heads + masks on MoveNet's frozen features
            return frozen_main(argv)
    args = parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = config_from_args(args)
        trainer = Trainer(cfg, args)
    except ValueError as exc:
        LOG.error("%s", exc)
        return 2
    try:
        trainer.fit()
    finally:
        dist_utils.shutdown(trainer.dist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
