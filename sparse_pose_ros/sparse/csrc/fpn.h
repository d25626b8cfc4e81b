// MoveNet's FPN neck and its person-centre logits, compiled (fpn.cpp has the steps).
//
// Why: on a whole camera frame the sparse backbone (bf16 GEMMs) takes ~4 ms and the FPN neck +
// person prior ran ~1.4-1.9 ms of the ~3 ms the neck + head took in ONNX Runtime (MoveNet
// Thunder, 256 px, held-out real frames): ~28 M MACs of small convs on maps of 8x8 to 64x64,
// where ONNX Runtime spends its time on per-operator overhead and layout changes from the
// backbone's channels-last buffers. Here they are a few more steps for the kernel's workers.
//
// Computes (model/fpn.py, model/movenet_head.py):
//   y = top_1x1(f32)
//   for each tap (stride 16, 8, 4): z = bilinear_x2(y) + lateral_1x1(tap);
//                                   y = relu(pointwise_1x1(depthwise_3x3(z)))
//   centre = out_1x1(relu(pointwise_1x1(depthwise_3x3(y))))   (MoveNet's centre branch, logits)
// on flat channels-last rows (row p = (b*H + y)*W + x), depthwise without bias, zero padding,
// bilinear x2 with half-pixel centres (PyTorch's align_corners=False, TF's half_pixel_centers).
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <vector>

#include "simd_gemm.h"
#include "worker_pool.h"

namespace spr_cpu {

struct FpnPlan {
  struct Level {
    int64_t h = 0, w = 0, c_tap = 0, c_in = 0, c_out = 0;
    const float *lat_w = nullptr, *lat_b = nullptr, *dw = nullptr, *pw_w = nullptr,
                *pw_b = nullptr;
    float *z = nullptr, *y = nullptr;
    Bf16Weights lat16, pw16;  // use_bf16
  };
  std::vector<at::Tensor> keep;
  int64_t batch = 1, threads = 1, h0 = 0, w0 = 0, c_top_in = 0, c_top = 0, hid = 0;
  const float *top_w = nullptr, *top_b = nullptr;
  float* y0 = nullptr;
  std::vector<Level> levels;
  const float *c_dw = nullptr, *c_pw = nullptr, *c_pwb = nullptr, *c_out = nullptr;
  float c_outb = 0.0f;
  float* logits = nullptr;
  std::vector<std::vector<float>> scratch;  // per thread: depthwise rows, then hidden rows
  const float* in[4] = {nullptr, nullptr, nullptr, nullptr};  // this frame's features

  // weights: top_w (C_in, C0), top_b, then per level lat_w (C_tap, C_l), lat_b, dw (9, C_l),
  // pw_w (C_l, C_l+1), pw_b, then the centre branch's dw (9, C), pw (C, hid), pw_b, out (hid),
  // out_b (1). buffers: y0 (B*h0*w0, C0), per level z (B*h*w, C_l), y (B*h*w, C_l+1), then the
  // logits (B*h*w). dims: batch, h0, w0 (the stride-32 grid; each level doubles it).
  FpnPlan(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& buffers,
          const std::vector<int64_t>& dims, int64_t threads);

  void append_steps(std::vector<Step>& steps);

  // The 1x1 convs from now on in bf16 (simd_gemm.h: AMX tiles or the AVX512-BF16 dot
  // product); the depthwise, upsampling and the centre's last 1x1 stay f32. Refuses where
  // bf16_enable() is false.
  void use_bf16();
  Bf16Weights top16, c_pw16;

 private:
  inline void upsample_add(const Level& lv, const float* prev, int64_t row) const;
};

}  // namespace spr_cpu
