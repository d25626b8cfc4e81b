"""Compiled whole-backbone path (one C++ call a frame), its worker pool, and the compiled and
ONNX Runtime heads: same results as the per-block path and the eager model, re-recorded when
masks or thresholds change."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sparse_test_utils import randomise_bn

from sparse_pose_ros.benchmarks.masks import clear_fixed_masks, set_blob_masks
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.sparse import SparseBackbone, SparsePoseNetwork
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel
from sparse_pose_ros.sparse.ort_head import ort_available

TOL = 1e-4



def small_net(gate_strided: bool, seed: int) -> PoseNetwork:
    """64 px, width 0.5, random BN statistics and partial learned masks."""
    torch.manual_seed(seed)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5, gate_strided=gate_strided))
    net.eval()
    randomise_bn(net, seed)
    for b in net.gated_blocks():
        b.mask_unit.conv.weight.data.normal_(0, 0.3)
        b.mask_unit.conv.bias.data.zero_()
    return net

pytestmark = pytest.mark.skipif(
    load_cpu_kernel() is None, reason="the sparse CPU kernel cannot be built here (no compiler)"
)


def _run(ex: SparseBackbone, x: torch.Tensor, per_block: bool):
    ex.per_block = per_block  # one run_block call a block instead of the recorded sequence
    feats, skips, masks = ex(x)
    return feats.clone(), [s.clone() for s in skips], [
        m.hard.clone() if m is not None else None for m in masks
    ]


@pytest.mark.parametrize("gate_strided", [False, True])
def test_sequence_equals_per_block_path(gate_strided: bool) -> None:
    net = small_net(gate_strided, seed=3)
    x = torch.randn(1, 3, 64, 64)
    ex = SparseBackbone(net.backbone, kernel="cpp", policy={4: 0.5, 8: "sparse", 16: "dense"})
    with torch.no_grad():
        ref_f, ref_s, _ = net.backbone(x)
    seq = _run(ex, x, per_block=False)
    per_block = _run(ex, x, per_block=True)
    torch.testing.assert_close(seq[0], per_block[0], atol=1e-6, rtol=0)
    for a, b in zip(seq[1], per_block[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for a, b in zip(seq[2], per_block[2], strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    assert (seq[0] - ref_f).abs().max().item() <= TOL
    for a, b in zip(seq[1], ref_s, strict=True):
        assert (a - b).abs().max().item() <= TOL


def test_sequence_follows_threshold_and_fixed_masks() -> None:
    net = small_net(True, seed=4)
    x = torch.randn(1, 3, 64, 64)
    ex = SparseBackbone(net.backbone, kernel="cpp")
    for p in (0.3, 0.7):  # threshold change between frames must be honoured
        net.set_mask_threshold(p)
        with torch.no_grad():
            ref_f, _, ref_m = net.backbone(x)
        f, _, m = ex(x)
        assert (f - ref_f).abs().max().item() <= TOL
        for a, b in zip(m, ref_m, strict=True):
            assert (a is None) == (b is None) and (a is None or torch.equal(a.hard, b.hard))
    for d in (0.1, 0.6):  # new fixed masks, then the same masks edited in place
        set_blob_masks(net.backbone, 1, (64, 64), d)
        with torch.no_grad():
            ref_f = net.backbone(x)[0]
        assert (ex(x)[0] - ref_f).abs().max().item() <= TOL
    for blk in net.gated_blocks():
        blk.fixed_mask.zero_()
    with torch.no_grad():
        ref_f = net.backbone(x)[0]
    assert (ex(x)[0] - ref_f).abs().max().item() <= TOL
    clear_fixed_masks(net.backbone)


@pytest.mark.skipif(not ort_available(), reason="onnxruntime not installed")
def test_ort_head_matches_eager() -> None:
    net = small_net(True, seed=5)
    for m in net.modules():  # make outputs large enough for the tolerance to mean something
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data.mul_(3.0)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
    run = SparsePoseNetwork(net, kernel="cpp", head="ort")
    assert run.head == "ort"
    out = run(x)
    scale = ref.heatmaps.abs().max().item()
    assert scale > 1e-3
    assert (out.heatmaps - ref.heatmaps).abs().max().item() <= TOL * max(1.0, scale)
    assert (out.joints - ref.joints).abs().max().item() <= TOL
    assert (out.triplets - ref.triplets).abs().max().item() <= TOL * max(1.0, scale)
    with pytest.raises(ValueError, match="head"):
        SparsePoseNetwork(net, head="tensorrt")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_worker_pool_gives_the_same_result_at_any_thread_count(threads: int) -> None:
    """The kernel's own worker pool: any team size (also more threads than cores), frames
    back to back and after the workers went to sleep, the per-block path and a batch of 2."""
    net = small_net(True, seed=6)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_f, ref_s, _ = net.backbone(x)
    ex = SparseBackbone(net.backbone, kernel="cpp", policy={2: "sparse", 4: 0.5, 8: "sparse",
                                                            16: "dense"}, threads=threads)
    for k in range(4):
        if k == 3:
            time.sleep(0.05)  # idle workers sleep; the next frame must not depend on them
        ex.per_block = k == 2  # one frame through the per-block calls (run_block / stem_conv)
        f, s, _ = ex(x)
        assert (f - ref_f).abs().max().item() <= TOL
        for a, b in zip(s, ref_s, strict=True):
            assert (a - b).abs().max().item() <= TOL


def _child_runs_kernel(queue: multiprocessing.Queue[float], ref: torch.Tensor) -> None:
    # as torch's DataLoader workers do: libgomp (torch's intra-op pool) is not fork-safe
    torch.set_num_threads(1)
    net = small_net(True, seed=7)
    out = SparseBackbone(net.backbone, kernel="cpp", threads=2)(torch.ones(1, 3, 64, 64))[0]
    queue.put(float((out - ref).abs().max()))


def test_worker_pool_works_in_a_forked_child() -> None:
    """Data loaders and launchers fork: the child has none of the parent's pool threads and
    must build its own instead of waiting on them forever."""
    net = small_net(True, seed=7)
    x = torch.ones(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.backbone(x)[0]
    SparseBackbone(net.backbone, kernel="cpp", threads=2)(x)  # the parent's pool is up
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_runs_kernel, args=(queue, ref))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0, "child hung or crashed"
    assert queue.get(timeout=5) <= TOL


@pytest.mark.parametrize(("size", "threads"), [(64, 1), (64, 2), (80, 3), (96, 2)])
def test_cpp_head_matches_eager(size: int, threads: int) -> None:
    """Neck + factorized head in the compiled kernel == eager (odd maps at 80: 5x5 -> 10x10
    -> 20x20; 96: 6 -> 12 -> 24, softmax split into several chunks at larger sizes)."""
    net = small_net(True, seed=8)
    for m in net.modules():  # outputs large enough for the tolerance to mean something
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data.mul_(3.0)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = net(x)
    run = SparsePoseNetwork(net, kernel="cpp", head="cpp", threads=threads)
    assert run.head == "cpp"
    for _ in range(2):  # second call reuses the recorded plan
        out = run(x)
        scale = ref.heatmaps.abs().max().item()
        assert scale > 1e-2
        assert (out.heatmaps - ref.heatmaps).abs().max().item() <= TOL * max(1.0, scale)
        assert (out.triplets - ref.triplets).abs().max().item() <= TOL * max(1.0, scale)
        assert (out.joints - ref.joints).abs().max().item() <= TOL


def test_cpp_head_refuses_what_it_cannot_run() -> None:
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5, depth_mode="volumetric"))
    net.eval()
    assert SparsePoseNetwork(net, kernel="cpp").head in ("ort", "torch")  # auto falls back
    with pytest.raises(ValueError, match="factorized"):
        SparsePoseNetwork(net, kernel="cpp", head="cpp")
    with pytest.raises(ValueError, match="kernel='cpp'"):
        SparsePoseNetwork(small_net(True, seed=1), kernel="torch", head="cpp")


_SPIN_CHILD = """
import sys, torch
sys.path.insert(0, {test_dir!r})
from test_sequence import small_net
from sparse_pose_ros.sparse import SparseBackbone
net = small_net(True, seed=9)
x = torch.randn(1, 3, 64, 64)
with torch.no_grad():
    ref = net.backbone(x)[0]
ex = SparseBackbone(net.backbone, kernel="cpp", threads=2)
err = max(float((ex(x)[0] - ref).abs().max()) for _ in range(20))
print(err)
"""


@pytest.mark.parametrize("spin", ["0", "not-a-number"])
def test_worker_pool_spin_setting(spin: str) -> None:
    """SPARSE_POSE_SPIN_US=0: workers sleep right after every frame, so every frame starts with
    sleeping workers that must sit it out; an unparsable value falls back to the default."""
    code = _SPIN_CHILD.format(test_dir=str(Path(__file__).parent))
    env = {**os.environ, "SPARSE_POSE_SPIN_US": spin, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= TOL


@pytest.mark.parametrize("threads", [1, 2])
def test_movenet_last_conv_and_sequence_profile(threads: int) -> None:
    """MoveNet's 1x1 to 1280 after the last block runs in the kernel (the sequence's last step,
    or ``Pointwise`` on the per-block path) with the eager result; profiling times the recorded
    sequence itself (stem, every block, the 1x1) and leaves the output unchanged."""
    from sparse_pose_ros.model.network import movenet_config

    torch.manual_seed(7)
    net = PoseNetwork(movenet_config("thunder", gate_strided=False, input_size=64)).eval()
    randomise_bn(net, 7)
    set_blob_masks(net.backbone, 1, (64, 64), 0.3)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.backbone(x)[0]
    assert ref.shape[1] == 1280
    ex = SparseBackbone(net.backbone, kernel="cpp", threads=threads)
    outs = []
    for per_block, profile in ((False, False), (False, True), (True, False)):
        ex.per_block, ex.profile = per_block, profile
        outs.append(ex(x)[0].clone())
        if profile:
            n = len(net.backbone.blocks)
            assert ex.stem_time > 0 and ex.last_time > 0 and len(ex.block_times) == n
            assert all(t >= 0 for t in ex.block_times) and sum(ex.block_times) > 0
    for out in outs:
        assert (out - ref).abs().max().item() <= TOL * max(1.0, ref.abs().max().item())
    clear_fixed_masks(net.backbone)


def test_workers_linger_through_a_head_outside_the_kernel() -> None:
    """With the neck + head outside the kernel (MoveNet's FPN in ONNX Runtime or eager, not
    the compiled window head that ``auto`` picks), the network asks the workers to spin through
    it (``linger_us``: the head's time + 25 %, capped) so that a frame right after finds them
    awake; one thread never lingers; frames with and without lingering give the same result;
    the compiled head, run by the workers themselves, asks for no lingering."""
    from sparse_pose_ros.model.network import movenet_config
    from sparse_pose_ros.sparse.executor import LINGER_CAP_US
    from sparse_pose_ros.sparse.ort_head import ort_available

    kernel = load_cpu_kernel()
    torch.manual_seed(8)
    net = PoseNetwork(movenet_config("lightning", gate_strided=False, input_size=64)).eval()
    randomise_bn(net, 8)
    set_blob_masks(net.backbone, 1, (64, 64), 0.3)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
    outside = "ort" if ort_available() else "torch"
    one = SparsePoseNetwork(net, kernel="cpp", threads=1, head=outside)
    two = SparsePoseNetwork(net, kernel="cpp", threads=2, head=outside)
    compiled = SparsePoseNetwork(net, kernel="cpp", threads=2)
    assert compiled.head == "cpp"
    compiled(x)
    assert compiled.backbone.linger_us == 0
    before = kernel.worker_chunks(2)
    for k in range(3):
        two.backbone.linger_us = 0 if k == 1 else two.backbone.linger_us
        out = two(x)
        assert 200 < two.backbone.linger_us <= LINGER_CAP_US
        assert (out.joints - ref.joints).abs().max().item() <= TOL
        assert (out.heatmaps - ref.heatmaps).abs().max().item() <= TOL * max(
            1.0, ref.heatmaps.abs().max().item()
        )
    assert kernel.worker_chunks(2) >= before  # a counter of the pool, never reset
    one(x)
    assert one.backbone.linger_us == 0
    clear_fixed_masks(net.backbone)


def test_a_dead_process_build_lock_is_cleared(tmp_path):
    """A lock left by a killed build would hang every later load (torch waits without a
    timeout): an old one is removed, a fresh one (a build in progress) is left alone."""
    import os
    import time

    from sparse_pose_ros.sparse.cpu_kernel import STALE_LOCK_S, clear_stale_lock

    assert clear_stale_lock(tmp_path) is False  # no lock
    lock = tmp_path / "lock"
    lock.touch()
    assert clear_stale_lock(tmp_path) is False and lock.exists()  # another build is running
    old = time.time() - STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    assert clear_stale_lock(tmp_path) is True and not lock.exists()


def test_prewake_lets_sleeping_workers_take_part() -> None:
    """Workers asleep when a frame begins sit it out (no worker chunk); woken by ``prewake``
    before the frame they take part, and the result is the same either way. Scheduling on a
    shared machine can delay a woken thread, so each claim gets a few tries, and the frame is
    large enough (512 px) for a worker that starts late to still find chunks."""
    kernel = load_cpu_kernel()
    net = small_net(True, seed=9)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        ref_f = net.backbone(x)[0]
    ex = SparseBackbone(net.backbone, kernel="cpp", threads=2)

    def frame_after_sleep(prewake_us: int) -> int:
        time.sleep(0.05)  # longer than the 1 ms idle spin: the worker sleeps
        if prewake_us:
            ex.prewake(prewake_us)
            time.sleep(0.02)  # the woken worker spins, waiting for the frame
        before = kernel.worker_chunks(2)
        f = ex(x)[0]
        assert (f - ref_f).abs().max().item() <= TOL
        return kernel.worker_chunks(2) - before

    ex(x)
    asleep = [frame_after_sleep(0) for _ in range(5)]
    assert 0 in asleep, f"a sleeping worker should sit a frame out: chunks {asleep}"
    woken = [frame_after_sleep(500_000) for _ in range(5)]
    assert max(woken) > 0, f"a pre-woken worker should take part: chunks {woken}"
    ex.prewake(0)  # no-op
    SparseBackbone(net.backbone, kernel="cpp", threads=1).prewake(10_000)  # one thread: no-op
