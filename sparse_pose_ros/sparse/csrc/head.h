// The dense neck + factorized head as steps of a frame (head.cpp has them).
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "worker_pool.h"

namespace spr_cpu {

inline int64_t nearest_src(int64_t i, int64_t in, int64_t out) {  // = F.interpolate "nearest"
  if (in == out) return i;
  if (out == 2 * in) return i >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  return std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in - 1);
}

// One image's head region from its execution mask (model/heads.py head_region): the (hg, wg)
// mask dilated by one cell (3x3), nearest-upsampled to (h, w) as 0/1; all ones where empty.
void gate_region(const float* gate, int64_t hg, int64_t wg, int64_t h, int64_t w, float* reg);

// ---- neck + head ------------------------------------------------------------------------------------
// The dense FPN neck and the factorized HEMlets head (model/heads.py) on the backbone's
// channels-last buffers, as more steps of the same frame. Why here and not in ONNX Runtime: a
// second thread pool next to ours either sleeps (ORT without spinning gains nothing from a
// second thread on these small maps) or spins and slows the backbone; in one program the head
// shares the workers and pays no graph-entry cost. Folded weights come from the Python side
// (sparse/head_plan.py), which also checks they are the layers this plan assumes.
//
// Per level: y = ReLU6(lateral(skip)) + nearest_up(y_coarser); y = pw(dw(y)) (both ReLU6).
// At stride 4 one row-local step does pw, then [heatmaps | triplets] = y @ W_ht + b into the
// same row buffer z = [y | heatmaps | triplets] (the concatenation the depth conv reads), then
// depth = z @ W_dep + b. The factorized soft-argmax is a per-chunk online softmax (max, sums
// relative to it) combined at the end, so it is parallel over positions, too.
struct HeadPlan {
  static constexpr int64_t kRows = 64;       // rows per chunk of the 1x1 / depthwise steps
  static constexpr int64_t kSoftmax = 512;   // positions per chunk of the soft-argmax
  std::vector<at::Tensor> keep;
  int64_t batch, h16, w16, h8, w8, h4, w4, n16, n8, n4, ch, n_joints, n_maps, zw, n_pc;
  const float *f16, *f8, *f4;
  const float *w_red, *b_red, *w_l8, *b_l8, *w_l4, *b_l4, *w_d8, *b_d8, *w_p8, *b_p8;
  const float *w_d4, *b_d4, *w_p4, *b_p4, *w_ht, *b_ht, *w_dep, *b_dep;
  int64_t c16, c8, c4;
  float *y16, *y8a, *y8b, *y4a, *y4b, *z, *dep, *part, *joints;
  // Head gating (model/heads.py head_region): the last execution mask (hg x wg per image) and
  // the stride-4 region derived from it; outputs() and the soft-argmax skip rows outside it.
  const float* gate = nullptr;
  float* region = nullptr;
  int64_t hg = 0, wg = 0;
  bool gated = false;
  static constexpr float kOffLogit = -1.0e4f;  // heads.REGION_OFF_LOGIT

  HeadPlan(const at::Tensor& f16_t, const at::Tensor& f8_t, const at::Tensor& f4_t,
           const std::vector<int64_t>& dims, const std::vector<at::Tensor>& wts,
           const std::vector<at::Tensor>& bufs);

  void append_steps(std::vector<Step>& steps);

 private:
  inline void append_level(std::vector<Step>& steps, const float* skip, int64_t c_skip, const float* w_l,
                           const float* b_l, const float* coarse, int64_t hc, int64_t wc, int64_t h,
                           int64_t wdt, const float* w_d, const float* b_d, float* ya, float* yb);

  inline void lateral(const float* skip, int64_t c_skip, const float* w, const float* b,
                      const float* coarse, int64_t hc, int64_t wc, int64_t h, int64_t wdt, float* y,
                      int64_t r0, int64_t r1);

  inline void depthwise(const float* x, int64_t h, int64_t wdt, const float* w, const float* b, float* y,
                        int64_t r0, int64_t r1);

  inline void make_region();

  inline void outputs(int64_t r0, int64_t r1);

  inline void outputs_run(int64_t r0, int64_t r1);

  inline void softmax_part(int64_t c);

  inline void combine();
};

}  // namespace spr_cpu
