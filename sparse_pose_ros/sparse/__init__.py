"""Gather-scatter execution of the gated backbone (inference only).

* :mod:`.folding`   BN folded into conv weights once, in channels-last GEMM layouts;
* :mod:`.indices`   fixed-capacity, sync-free index buffers (active rows, dilated rows, taps);
* :mod:`.torch_ops` portable PyTorch-ops kernels (reference / fallback / GPU-capable);
* :mod:`.cpu_kernel` compiled fused C++ CPU kernel (built on first use with the machine's g++);
* :mod:`.executor`  walks a PoseNetwork with a per-stage sparse/dense policy.
"""

from .executor import SparseBackbone, SparsePoseNetwork

__all__ = ["SparseBackbone", "SparsePoseNetwork"]
