"""Training configuration: one YAML file per experiment, validated into typed sections.

A config file has the sections ``model`` (``NetworkConfig`` fields), ``loss`` (``LossConfig``
fields), ``masks`` (mask schedule), ``optim``, ``data``, ``eval`` and ``run``. Every key is
optional except what differs from the defaults; unknown keys are an error (a typo must not
silently train the wrong model). The resolved config is stored inside every checkpoint, so a
checkpoint always says how it was made.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..model.losses import LossConfig
from ..model.network import NetworkConfig


@dataclass
class MaskScheduleConfig:
    """Arguments of ``model.schedule.MaskSchedule`` (θ and the anneal fraction live in ``loss``).

    Attributes:
        tau: Gumbel-softmax temperature (1 for pose, as dynconv).
        noise_off_fraction: last fraction of the epochs trained without Gumbel noise.
        mask_lr_scale: learning-rate factor of the mask units.
        sparsity_delay: fraction of training with the sparsity weight at 0 (the network first
            learns features the mask units can tell a person from; from scratch, early pressure
            drives the masks to a person-blind pattern and the pose loss stalls).
        sparsity_ramp: fraction of training after the delay over which the sparsity weight
            rises linearly to ``loss.alpha_sparsity``.
    """

    tau: float = 1.0
    noise_off_fraction: float = 0.2
    mask_lr_scale: float = 1.0
    sparsity_delay: float = 0.0
    sparsity_ramp: float = 0.0


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio`` × lr.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step *per process* (DDP multiplies it by the world size).
        lr: peak learning rate.
        weight_decay: AdamW decay (never applied to mask units).
        warmup_epochs: linear warm-up length (fractions allowed).
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        grad_clip: max global gradient norm (0 = off).
        amp: mixed precision on CUDA (ignored on CPU, where autocast would only slow down).
        freeze: top-level modules whose weights stay fixed (any of :data:`FREEZABLE`), e.g.
            ``[backbone, neck, movenet]`` to train only the heads and the mask units on the
            features of an imported MoveNet; mask units are never frozen.
        freeze_batchnorm: keep every BatchNorm in eval mode (running statistics, not updated).
            Required for an imported MoveNet: its BatchNorm is folded (fake statistics), and
            train-mode batch statistics ruin the pretrained features (PRETRAINED.md, trap 3).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.02
    grad_clip: float = 5.0
    amp: bool = True
    freeze: tuple[str, ...] = ()
    freeze_batchnorm: bool = False

    def __post_init__(self) -> None:
        self.freeze = tuple(str(v) for v in self.freeze)
        unknown = sorted(set(self.freeze) - set(FREEZABLE))
        if unknown:
            raise ValueError(f"optim.freeze: unknown module(s) {unknown}; choose from {FREEZABLE}")


#: Top-level modules of ``PoseNetwork`` that ``optim.freeze`` may name.
FREEZABLE: tuple[str, ...] = ("backbone", "neck", "head_pre", "head", "movenet", "lifter")


@dataclass
class DataConfig:
    """Where the frames come from and how they are augmented.

    Attributes:
        dataset: "synthetic" (rendered shards) or "h36m" (preprocessed Human3.6M layout).
        root: data directory; relative paths are resolved against the current directory.
        train_split, test_split: split names (sub-folders for synthetic shards).
        max_train_frames, max_test_frames: cap (0 = all), for smoke tests and quick runs.
        workers: DataLoader worker processes (0 = load in the training process).
        flip: probability of a horizontal flip (joints swapped left/right).
        scale: zoom range ±scale (0.25 = ×0.75 … ×1.25) about the principal point.
        rotation_deg: in-plane rotation range ±deg (3D joints rotate with it).
        shift: translation range ± this fraction of the image side.
        colour: colour-jitter strength (0 = off).
        heatmap_sigma: Gaussian sigma of the targets, in heatmap pixels.
        person_crop: chance of zooming onto the person (``data.augment.Augmenter``): the
            node feeds the network crops around the tracked person (``pipeline.roi``).
    """

    dataset: str = "synthetic"
    root: str = "data_cache/synth_v1"
    train_split: str = "train"
    test_split: str = "test"
    max_train_frames: int = 0
    max_test_frames: int = 0
    workers: int = 0
    flip: float = 0.5
    scale: float = 0.25
    rotation_deg: float = 30.0
    shift: float = 0.08
    colour: float = 1.0
    heatmap_sigma: float = 1.5
    person_crop: float = 0.0


@dataclass
class EvalConfig:
    """Periodic evaluation on the held-out split during training.

    Attributes:
        every_epochs: evaluate after every N epochs and after the last (0 = only the last).
        max_frames: frames of the test split used by periodic evals (0 = all).
        batch_size: evaluation batch size.
    """

    every_epochs: int = 1
    max_frames: int = 256
    batch_size: int = 32


@dataclass
class RunConfig:
    """Bookkeeping of a run.

    Attributes:
        name: run name; outputs go to ``out_dir/name``.
        out_dir: directory of run folders (checkpoints, logs).
        seed: RNG seed (sampling order, augmentation, mask noise).
        threads: torch CPU threads per process (0 = leave torch's default).
        log_every: steps between CSV/TensorBoard log rows.
        checkpoint_every: save a resumable checkpoint every N epochs (the last is always saved).
        device: "auto" (CUDA if available), "cpu" or "cuda".
        export_path: where the final checkpoint is also written (e.g. ``models/X.safetensors``;
            empty = only the run folder). ``--export`` overrides it.
    """

    name: str = "run"
    out_dir: str = "runs"
    seed: int = 0
    threads: int = 0
    log_every: int = 20
    checkpoint_every: int = 1
    device: str = "auto"
    export_path: str = ""


@dataclass
class TrainConfig:
    """All sections of a training config."""

    model: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    masks: MaskScheduleConfig = field(default_factory=MaskScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        o, d, e, r = self.optim, self.data, self.eval, self.run
        if o.epochs <= 0 or o.batch_size <= 0:
            raise ValueError(
                f"optim.epochs and optim.batch_size must be > 0, got {o.epochs}, {o.batch_size}"
            )
        if o.lr <= 0 or o.weight_decay < 0 or o.warmup_epochs < 0 or o.grad_clip < 0:
            raise ValueError(
                "optim: need lr > 0, weight_decay >= 0, warmup_epochs >= 0, grad_clip >= 0"
            )
        if not 0.0 <= o.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {o.min_lr_ratio}")
        if d.dataset not in ("synthetic", "h36m"):
            raise ValueError(f"data.dataset must be 'synthetic' or 'h36m', got {d.dataset!r}")
        if min(d.max_train_frames, d.max_test_frames, d.workers) < 0:
            raise ValueError("data.max_*_frames and data.workers must be >= 0")
        if not 0 <= d.flip <= 1 or not 0 <= d.scale < 1 or d.rotation_deg < 0 or d.colour < 0:
            raise ValueError(
                "data: need flip in [0, 1], 0 <= scale < 1, rotation_deg >= 0, colour >= 0"
            )
        if not 0 <= d.shift < 0.5:
            raise ValueError(f"data.shift must be in [0, 0.5), got {d.shift}")
        if not 0 <= d.person_crop <= 1:
            raise ValueError(f"data.person_crop must be in [0, 1], got {d.person_crop}")
        if d.heatmap_sigma <= 0:
            raise ValueError(f"data.heatmap_sigma must be > 0, got {d.heatmap_sigma}")
        if e.every_epochs < 0 or e.max_frames < 0 or e.batch_size <= 0:
            raise ValueError("eval: need every_epochs >= 0, max_frames >= 0, batch_size > 0")
        if r.threads < 0 or r.log_every <= 0 or r.checkpoint_every <= 0:
            raise ValueError("run: need threads >= 0, log_every > 0, checkpoint_every > 0")
        if r.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"run.device must be auto, cpu or cuda, got {r.device!r}")
        if not r.name or "/" in r.name:
            raise ValueError(f"run.name must be a non-empty name without '/', got {r.name!r}")
        m = self.masks
        if m.tau <= 0 or not 0 <= m.noise_off_fraction <= 1 or m.mask_lr_scale <= 0:
            raise ValueError("masks: need tau > 0, noise_off_fraction in [0, 1], mask_lr_scale > 0")
        if m.sparsity_delay < 0 or m.sparsity_ramp < 0 or m.sparsity_delay + m.sparsity_ramp > 1:
            raise ValueError("masks: need sparsity_delay, sparsity_ramp >= 0 with sum <= 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "loss": asdict(self.loss),
            "masks": asdict(self.masks),
            "optim": asdict(self.optim),
            "data": asdict(self.data),
            "eval": asdict(self.eval),
            "run": asdict(self.run),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name


_SECTIONS: dict[str, type] = {
    "model": NetworkConfig,
    "loss": LossConfig,
    "masks": MaskScheduleConfig,
    "optim": OptimConfig,
    "data": DataConfig,
    "eval": EvalConfig,
    "run": RunConfig,
}


def _section(name: str, cls: type, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"config section {name!r} must be a mapping, got {type(raw).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in section {name!r}: {unknown}; known: {sorted(known)}")
    try:
        if cls is NetworkConfig:
            return NetworkConfig.from_dict(raw)
        return cls(**raw)
    except TypeError as exc:
        raise ValueError(f"bad value in section {name!r}: {exc}") from exc


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Validate a parsed YAML mapping into a :class:`TrainConfig`."""
    if not isinstance(raw, dict):
        raise ValueError("a training config must be a YAML mapping of sections")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; known: {sorted(_SECTIONS)}")
    parts = {name: _section(name, cls, raw.get(name)) for name, cls in _SECTIONS.items()}
    return TrainConfig(**parts)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"config {path} is not valid YAML: {exc}") from exc
    raw = apply_overrides(raw, overrides or [])
    return config_from_dict(raw)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``section.key=value`` overrides applied."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise ValueError(f"override must look like section.key=value, got {item!r}")
        out.setdefault(section, {})
        if out[section] is None:
            out[section] = {}
        out[section][name] = yaml.safe_load(value)
    return out
