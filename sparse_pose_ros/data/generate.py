"""CLI: render a synthetic split into shards, in parallel, resumably.

    python -m sparse_pose_ros.data.generate --out DIR --split train --count 24000 --workers 1 \
        --seed 0 [--outfits]

Re-running the same command skips shards that are already complete, so an interrupted run
continues where it stopped. Frames depend only on (seed, split, index), so the result is the same
for any number of workers. Prints the rate in frames/s at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import queue
import sys
import time
from pathlib import Path

from tqdm import tqdm

from sparse_pose_ros.data.shards import shard_is_complete, shard_path, write_shard

LOG = logging.getLogger(__name__)

#: Default seeds: the test split also differs by split code, see synthetic.frame_rng.
DEFAULT_SEEDS = {"train": 0, "test": 1}

_WORKER: dict[str, object] = {}


def _shard_range(shard: int, shard_size: int, count: int) -> range:
    return range(shard * shard_size, min((shard + 1) * shard_size, count))


def _expected_info(split: str, seed: int, frames: range, outfits: bool) -> dict[str, object]:
    return {"split": split, "seed": seed, "first": frames.start, "count": len(frames),
            "outfits": outfits}


def _is_complete(path: Path, expected: dict[str, object]) -> bool:
    """``shard_is_complete``, reading shards written before outfits existed as plain bodies."""
    if not expected["outfits"] and shard_is_complete(path, {**expected, "outfits": None}):
        return True
    return shard_is_complete(path, expected)


def _render_shard(out: Path, split: str, seed: int, shard: int, frames: range, generator: object,
                  progress: object) -> None:
    rendered = []
    for index in frames:
        rendered.append(generator.frame(index))  # type: ignore[attr-defined]
        progress(1)  # type: ignore[operator]
    from sparse_pose_ros import skeleton
    from sparse_pose_ros.data.poses import ALL_FAMILIES
    from sparse_pose_ros.data.synthetic import STYLES

    info = {
        **_expected_info(split, seed, frames, generator.config.outfits),  # type: ignore[attr-defined]
        "joint_names": list(skeleton.JOINT_NAMES),
        "families": list(ALL_FAMILIES),
        "styles": list(STYLES),
        "units": {"joints_2d": "px", "joints_3d": "mm, camera frame x right y down z forward"},
    }
    write_shard(shard_path(out, split, shard), rendered, info)


def _generator(split: str, seed: int, outfits: bool) -> object:
    from sparse_pose_ros.data.synthetic import SyntheticConfig, SyntheticGenerator

    return SyntheticGenerator(split, seed, SyntheticConfig(outfits=outfits))


def _init_worker(split: str, seed: int, outfits: bool, progress_queue: mp.Queue) -> None:
    _WORKER["generator"] = _generator(split, seed, outfits)
    _WORKER["queue"] = progress_queue


def _worker_task(args: tuple[str, str, int, int, int, int]) -> int:
    out, split, seed, shard, shard_size, count = args
    q = _WORKER["queue"]
    _render_shard(Path(out), split, seed, shard, _shard_range(shard, shard_size, count),
                  _WORKER["generator"], lambda n: q.put(n))  # type: ignore[attr-defined]
    return shard


def generate(out: Path, split: str, count: int, workers: int, seed: int, shard_size: int,
             show_progress: bool = True, outfits: bool = False) -> dict[str, float]:
    """Render ``count`` frames of ``split`` into ``out``; returns rendered frames and rate.

    ``outfits=True`` dresses the bodies (``synth_v2``, ``data/outfit.py``)."""
    if count <= 0 or workers <= 0 or shard_size <= 0:
        raise ValueError("count, workers and shard_size must be positive")
    out.mkdir(parents=True, exist_ok=True)
    num_shards = (count + shard_size - 1) // shard_size
    todo = [
        k for k in range(num_shards)
        if not _is_complete(
            shard_path(out, split, k),
            _expected_info(split, seed, _shard_range(k, shard_size, count), outfits))
    ]
    remaining = sum(len(_shard_range(k, shard_size, count)) for k in todo)
    LOG.info("%s: %d of %d shards to render (%d frames)", split, len(todo), num_shards, remaining)
    bar = tqdm(total=count, initial=count - remaining, desc=f"render {split}", unit="frame",
               disable=not show_progress, smoothing=0.05)
    start = time.perf_counter()
    if workers == 1 and todo:
        generator = _generator(split, seed, outfits)
        try:
            for k in todo:
                _render_shard(out, split, seed, k, _shard_range(k, shard_size, count), generator,
                              bar.update)
        finally:
            generator.close()
    elif todo:
        ctx = mp.get_context("spawn")  # a fresh process per worker: one GL context each
        progress_queue = ctx.Queue()
        tasks = [(str(out), split, seed, k, shard_size, count) for k in todo]
        with ctx.Pool(workers, initializer=_init_worker,
                      initargs=(split, seed, outfits, progress_queue)) as pool:
            result = pool.map_async(_worker_task, tasks, chunksize=1)
            while not result.ready() or not progress_queue.empty():
                try:
                    bar.update(progress_queue.get(timeout=0.5))
                except queue.Empty:
                    pass
            result.get()
    bar.close()
    elapsed = time.perf_counter() - start
    rate = remaining / elapsed if elapsed > 0 and remaining else 0.0
    manifest = {"split": split, "seed": seed, "count": count, "shard_size": shard_size,
                "num_shards": num_shards, "outfits": outfits}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"rendered": float(remaining), "seconds": elapsed, "frames_per_s": rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder for this split")
    parser.add_argument("--split", choices=("train", "test"), required=True)
    parser.add_argument("--count", type=int, required=True, help="number of frames")
    parser.add_argument("--workers", type=int, default=1, help="parallel render processes")
    parser.add_argument("--seed", type=int, default=None,
                        help="base seed (default: 0 for train, 1 for test)")
    parser.add_argument("--shard-size", type=int, default=200, help="frames per shard file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--outfits", action="store_true",
                        help="dress the bodies: skin, hair, clothes, shoes (synth_v2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seed = DEFAULT_SEEDS[args.split] if args.seed is None else args.seed
    try:
        stats = generate(args.out, args.split, args.count, args.workers, seed, args.shard_size,
                         show_progress=not args.no_progress, outfits=args.outfits)
    except ValueError as err:
        parser.error(str(err))
    print(f"{args.split}: rendered {int(stats['rendered'])} frames in {stats['seconds']:.1f} s "
          f"= {stats['frames_per_s']:.2f} frames/s ({args.workers} worker(s)) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
