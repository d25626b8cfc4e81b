// The person box, the HEMlets head on the box's window and the joint readout, compiled
// (window_head.cpp has the steps): what follows MoveNet's FPN (fpn.h) in a frame.
//
// Why: with the backbone and the FPN on the kernel's workers, what was left in ONNX Runtime
// (the person box from the centre logits, then head_pre + the HEMlets head on the box's window,
// the peak-window soft-argmax and the depth lifter; ~10 M MACs on a small person) took ~1.7-2 ms
// of a ~9 ms network on whole frames on two threads, most of it graph entry, per-operator
// overhead, copies of the window and a second thread pool next to ours. Here it is four more
// steps of the same frame.
//
// Computes, per image (model/movenet_head.py person_region, model/heads.py head_region,
// model/network.py head_in_region / refine_joints, model/lifter.py):
//   region = person box (MoveNet's centre choice + the regression branch at the chosen cell)
//            [x head_region(gate)]                                              (serial step)
//   for the cells of the region's bounding box (the window), rows in parallel:
//     h = relu(pw(dw3x3(y)))            (head_pre, when the network has one; dw reads y's real
//                                        neighbours, zero outside the map)
//     [heatmaps | triplets] = h @ W_ht + b;  depth = [h | heatmaps | triplets] @ W_dep + b
//     outside the region: heatmap logits kOffLogit, triplets 0
//   per joint: the soft-argmax of the heatmap within `readout` cells of its first maximum (the
//   whole map at 0), z = E[tanh(depth)] (skipped with a lifter, which replaces z), and its
//   confidence (backends.base.joint_confidence: the softmax mass near that maximum; in Python
//   it took ~0.2-0.6 ms a frame over the whole 17 x 64 x 64 maps, here only the window is read)
//   joints: strip_to_square, torso mid-points, the lifter MLP                     (serial step)
// Heatmaps and triplets are written (B, C, h, w) into the caller's maps, which keep the outside
// constants between frames: only the previous window is reset. All in f32, also when the FPN
// runs its 1x1s in bf16 (no bf16 head: the machine this plan was written on has no AMX to test
// one on).
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <vector>

#include "simd_gemm.h"
#include "worker_pool.h"

namespace spr_cpu {

struct WindowHeadPlan {
  static constexpr float kOffLogit = -1.0e4f;  // heads.REGION_OFF_LOGIT
  std::vector<at::Tensor> keep;
  int64_t batch = 1, h = 0, w = 0, c = 0, hg = 0, wg = 0, readout = 0, root = 0, conf_radius = 1;
  int64_t n_joints = 0, n_maps = 0, c_head = 0, zw = 0, lifter_hidden = 0, reg_hidden = 0;
  float margin = 0.0f, min_cells = 0.0f, min_score = 0.0f;
  bool person = false, pre = false, depth = false;
  // the neck's output (B*h*w, c) channels-last and the centre logits (B*h*w): the FPN's buffers
  const float *y = nullptr, *centre = nullptr;
  const float* gate = nullptr;  // this frame's (B, 1, hg, wg) execution mask, when gated
  const float *reg_dw = nullptr, *reg_pw = nullptr, *reg_pwb = nullptr, *reg_out = nullptr,
              *reg_outb = nullptr;
  const float *pre_dw = nullptr, *pre_pw = nullptr, *pre_pwb = nullptr;
  const float *w_ht = nullptr, *b_ht = nullptr, *w_dep = nullptr, *b_dep = nullptr;
  const float* mid = nullptr;  // (J, J) torso mid-point matrix, or none
  const float *l1 = nullptr, *lb1 = nullptr, *l2 = nullptr, *lb2 = nullptr, *l3 = nullptr,
              *lb3 = nullptr;  // the lifter, or none
  float *heat = nullptr, *trip = nullptr, *joints = nullptr, *confidence = nullptr;
  // the region (B, h, w) as 0/1; tanh(depth) maps (B, J, h, w) without a lifter; readout joints
  std::vector<float> region, dep, raw;
  int64_t win[4] = {0, 0, 0, 0};  // this frame's window y0, y1, x0, x1
  int64_t last[4] = {0, 0, 0, 0};  // the window the maps hold values in
  std::vector<std::vector<float>> scratch;  // per thread: dw rows, then [h | heat | trip] rows

  // weights (an empty tensor where the network has no such part): the regression branch's
  // dw (9, c), pw (c, R), pw_b, out (R, 2J), out_b; head_pre's dw (9, c), pw (c, Ch), pw_b;
  // W_ht (Ch, J + 3P), b_ht, W_dep (Ch + J + 3P, J), b_dep; the mid-point matrix (J, J); the
  // lifter's (2J, H), (H), (H, H), (H), (H, J), (J). buffers: heatmaps (B, J, h, w), triplets
  // (B, 3P, h, w), joints (B, J, 3), confidence (B, J). dims: batch, h, w, hg, wg (0 without a
  // gate), readout radius, root joint, confidence radius (heads.confidence_radius). scalars:
  // person box margin, min cells, min score.
  WindowHeadPlan(const float* y, const float* centre, int64_t c,
                 const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& buffers,
                 const std::vector<int64_t>& dims, const std::vector<double>& scalars,
                 int64_t threads);

  void append_steps(std::vector<Step>& steps);

 private:
  void make_region();
  void person_box(int64_t b, float* reg);
  void head_row(int64_t row, int tid);
  void readout_joint(int64_t bj);
  float peak_mass(const float* plane, int64_t py, int64_t px, float best) const;
  void finish();
};

}  // namespace spr_cpu
