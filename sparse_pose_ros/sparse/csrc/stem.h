// The dense stem (3x3 conv + ReLU6, image -> first feature buffer) as a step of a frame
// (stem.cpp has it).
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <vector>

#include "worker_pool.h"

namespace spr_cpu {

// ---- stem -------------------------------------------------------------------------------------------
// Dense 3x3 conv (stride s, BN folded) + ReLU6 from the NCHW image straight into the flat
// channels-last feature buffer the first block reads (no separate layout copy). Zero padding
// pad_top / pad_left before the image (1: PyTorch's padding=1; 0: TF 'SAME' at stride 2 on an
// even size, MoveNet's stem), the pad after is implicit (taps past the image read zero).
// x: (B, C_in, H, W) contiguous; w: (C_in*9, C_out) rows ordered (c, ky, kx); out: (B*Ho*Wo + 1,
// C_out), last row left as is (the zero row). Per output row: interior pixels in tiles of 6
// straight from the image planes (stem_tile, AVX-512), the border pixels through an im2col row
// in the thread's patch buffer + the GEMM micro-kernel with the bias + ReLU6 epilogue.
struct StemPlan {
  at::Tensor w, bias, out, x;
  int64_t stride = 1, pad_top = 1, pad_left = 1, threads = 1, c_out = 0;
  std::vector<std::vector<float>> patches;  // one im2col row buffer per thread, reused
  int64_t batch = 0, c_in = 0, h = 0, wd = 0, ho = 0, wo = 0;  // of the current frame

  StemPlan(const at::Tensor& w_, const at::Tensor& bias_, const at::Tensor& out_, int64_t stride_,
           int64_t pad_top_, int64_t pad_left_, int64_t threads_);

  void prepare(const at::Tensor& x_);

  // Only these output pixels are read by what follows: per image [y0, y1) x [x0, x1) of the
  // output grid (4 values an image), or empty = every pixel. Why: the first block of a gated
  // backbone whose mask is given (the node's region, the locator) reads the stem's output only
  // in its mask's 3x3 footprint, and the dense stem over a whole 256-px frame was ~0.5 ms of a
  // ~4.5 ms backbone (MoveNet Thunder, bf16 GEMMs, 2 threads) for a person in a few % of it.
  std::vector<int64_t> window;

  Step step();

  inline void run_row(int64_t row, int tid);

  inline void patch_range(int64_t row, int64_t ox0, int64_t ox1, int tid);
};

// The stem on its own: x (B, C_in, H, W) -> out, one pass of the pool (tests, per-block path).
void stem_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& out,
               int64_t stride, int64_t pad_top, int64_t pad_left, int64_t threads);

}  // namespace spr_cpu
