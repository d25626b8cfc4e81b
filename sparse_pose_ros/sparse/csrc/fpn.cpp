// MoveNet's FPN neck + centre logits (fpn.h says what and why).
#include "fpn.h"

#include <algorithm>

#include "simd_gemm.h"

namespace spr_cpu {

namespace {
// Source rows / columns of bilinear x2 with half-pixel centres for output index o of a 2n grid:
// src = max(0, o/2 - 1/4), i0 = floor(src), i1 = min(i0 + 1, n - 1), weight of i1 = src - i0.
inline void half_pixel(int64_t o, int64_t n, int64_t& i0, int64_t& i1, float& f1) {
  const float src = std::max(0.0f, 0.5f * static_cast<float>(o) - 0.25f);
  i0 = std::min<int64_t>(static_cast<int64_t>(src), n - 1);
  i1 = std::min<int64_t>(i0 + 1, n - 1);
  f1 = src - static_cast<float>(i0);
}

inline float* tensor_ptr(const at::Tensor& t, int64_t numel, const char* name) {
  return checked_ptr(t, numel, "fpn", name);
}

// relu(h) . v over n floats (the centre branch's ReLU fused into its last 1x1)
inline float relu_dot(const float* h, const float* v, int64_t n) {
#ifdef __AVX512F__
  const __m512 zero = _mm512_setzero_ps();
  __m512 acc = zero;
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 m = lanes(n - k);
    acc = _mm512_fmadd_ps(_mm512_max_ps(_mm512_maskz_loadu_ps(m, h + k), zero),
                          _mm512_maskz_loadu_ps(m, v + k), acc);
  }
  return _mm512_reduce_add_ps(acc);
#else
  float acc = 0.0f;
  for (int64_t k = 0; k < n; ++k) acc += std::max(h[k], 0.0f) * v[k];
  return acc;
#endif
}
}  // namespace

FpnPlan::FpnPlan(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& buffers,
                 const std::vector<int64_t>& dims, int64_t threads_)
    : threads(std::max<int64_t>(1, threads_)) {
  TORCH_CHECK(dims.size() == 3, "fpn: dims are batch, h0, w0");
  batch = dims[0];
  h0 = dims[1];
  w0 = dims[2];
  const size_t n_levels = (weights.size() - 7) / 5;
  TORCH_CHECK(weights.size() == 7 + 5 * n_levels && n_levels >= 1 && n_levels <= 3,
              "fpn: wrong weight count (1-3 levels)");
  TORCH_CHECK(buffers.size() == 2 + 2 * n_levels, "fpn: wrong buffer count");
  keep = weights;
  keep.insert(keep.end(), buffers.begin(), buffers.end());
  c_top_in = weights[0].size(0);
  c_top = weights[0].size(1);
  top_w = tensor_ptr(weights[0], c_top_in * c_top, "top_w");
  top_b = tensor_ptr(weights[1], c_top, "top_b");
  y0 = tensor_ptr(buffers[0], batch * h0 * w0 * c_top, "y0");
  int64_t h = h0, w = w0, c = c_top;
  for (size_t l = 0; l < n_levels; ++l) {
    const at::Tensor* wl = weights.data() + 2 + 5 * l;
    Level lv;
    h *= 2;
    w *= 2;
    lv.h = h;
    lv.w = w;
    lv.c_tap = wl[0].size(0);
    lv.c_in = c;
    lv.c_out = wl[3].size(1);
    TORCH_CHECK(wl[0].size(1) == c && wl[3].size(0) == c, "fpn: level widths do not chain");
    lv.lat_w = tensor_ptr(wl[0], lv.c_tap * c, "lat_w");
    lv.lat_b = tensor_ptr(wl[1], c, "lat_b");
    lv.dw = tensor_ptr(wl[2], 9 * c, "dw");
    lv.pw_w = tensor_ptr(wl[3], c * lv.c_out, "pw_w");
    lv.pw_b = tensor_ptr(wl[4], lv.c_out, "pw_b");
    lv.z = tensor_ptr(buffers[1 + 2 * l], batch * h * w * c, "z");
    lv.y = tensor_ptr(buffers[2 + 2 * l], batch * h * w * lv.c_out, "y");
    levels.push_back(lv);
    c = lv.c_out;
  }
  const at::Tensor* cw = weights.data() + 2 + 5 * n_levels;
  hid = cw[1].size(1);
  c_dw = tensor_ptr(cw[0], 9 * c, "centre dw");
  c_pw = tensor_ptr(cw[1], c * hid, "centre pw");
  c_pwb = tensor_ptr(cw[2], hid, "centre pw_b");
  c_out = tensor_ptr(cw[3], hid, "centre out");
  c_outb = tensor_ptr(cw[4], 1, "centre out_b")[0];
  logits = tensor_ptr(buffers.back(), batch * h * w, "logits");
  int64_t widest = 0;
  for (const Level& lv : levels) widest = std::max(widest, lv.w * std::max(lv.c_in, lv.c_out));
  widest = std::max(widest, levels.back().w * (c + hid));
  scratch.assign(static_cast<size_t>(threads), std::vector<float>(static_cast<size_t>(widest)));
}

// z row ``row`` (= b*h + y) += bilinear x2 of the previous level's y (h/2 x w/2, c_in channels)
inline void FpnPlan::upsample_add(const Level& lv, const float* prev, int64_t row) const {
  const int64_t b = row / lv.h, y = row % lv.h, hp = lv.h / 2, wp = lv.w / 2, c = lv.c_in;
  int64_t ya, yb;
  float fy;
  half_pixel(y, hp, ya, yb, fy);
  const float* ra = prev + (b * hp + ya) * wp * c;
  const float* rb = prev + (b * hp + yb) * wp * c;
  float* z = lv.z + row * lv.w * c;
  for (int64_t x = 0; x < lv.w; ++x) {
    int64_t xa, xb;
    float fx;
    half_pixel(x, wp, xa, xb, fx);
    const float w00 = (1.0f - fy) * (1.0f - fx), w01 = (1.0f - fy) * fx, w10 = fy * (1.0f - fx),
                w11 = fy * fx;
    const float *p00 = ra + xa * c, *p01 = ra + xb * c, *p10 = rb + xa * c, *p11 = rb + xb * c;
    float* o = z + x * c;
#pragma omp simd
    for (int64_t k = 0; k < c; ++k)
      o[k] += w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k];
  }
}

void FpnPlan::use_bf16() {
  TORCH_CHECK(bf16_enable(),
              "a bf16 FPN needs AMX or AVX512-BF16 (this build or CPU has neither)");
  top16 = pack_bf16(top_w, c_top_in, c_top, c_top);
  for (Level& lv : levels) {
    lv.lat16 = pack_bf16(lv.lat_w, lv.c_tap, lv.c_in, lv.c_in);
    lv.pw16 = pack_bf16(lv.pw_w, lv.c_in, lv.c_out, lv.c_out);
  }
  c_pw16 = pack_bf16(c_pw, levels.back().c_out, hid, hid);
}

void FpnPlan::append_steps(std::vector<Step>& steps) {
  // the 1x1 on the stride-32 features
  steps.push_back({batch * h0 * w0, 8, false, [this](int64_t r0, int64_t r1, int) {
                     gemm_weights(top16, false, top_w, in[0] + r0 * c_top_in, nullptr, r1 - r0,
                                  c_top_in, c_top, top_b, false, y0 + r0 * c_top, c_top_in, c_top);
                   }});
  for (size_t l = 0; l < levels.size(); ++l) {
    const Level* lv = &levels[l];
    const float* prev = l == 0 ? y0 : levels[l - 1].y;
    const int64_t rows = batch * lv->h, chunk = std::max<int64_t>(1, lv->h / 16);
    steps.push_back({rows, chunk, false, [this, lv, prev, l](int64_t r0, int64_t r1, int) {
                       const float* tap = in[l + 1];
                       for (int64_t row = r0; row < r1; ++row) {
                         gemm_weights(lv->lat16, false, lv->lat_w, tap + row * lv->w * lv->c_tap,
                                      nullptr, lv->w, lv->c_tap, lv->c_in, lv->lat_b, false,
                                      lv->z + row * lv->w * lv->c_in, lv->c_tap, lv->c_in);
                         upsample_add(*lv, prev, row);
                       }
                     }});
    steps.push_back({rows, chunk, false, [this, lv](int64_t r0, int64_t r1, int tid) {
                       float* d = scratch[static_cast<size_t>(tid)].data();
                       for (int64_t row = r0; row < r1; ++row) {
                         depthwise_plain(lv->z, lv->h, lv->w, lv->c_in, lv->dw, row / lv->h, row % lv->h, 0,
                                         lv->w, d);
                         float* y = lv->y + row * lv->w * lv->c_out;
                         gemm_weights(lv->pw16, false, lv->pw_w, d, nullptr, lv->w, lv->c_in,
                                      lv->c_out, lv->pw_b, false, y, lv->c_in, lv->c_out);
                         relu_rows(y, lv->w * lv->c_out);
                       }
                     }});
  }
  const Level* last = &levels.back();
  steps.push_back({batch * last->h, std::max<int64_t>(1, last->h / 16), false,
                   [this, last](int64_t r0, int64_t r1, int tid) {
                     const int64_t w = last->w, c = last->c_out;
                     float* d = scratch[static_cast<size_t>(tid)].data();
                     float* hbuf = d + w * c;
                     for (int64_t row = r0; row < r1; ++row) {
                       depthwise_plain(last->y, last->h, w, c, c_dw, row / last->h, row % last->h, 0, w,
                                       d);
                       gemm_weights(c_pw16, false, c_pw, d, nullptr, w, c, hid, c_pwb, false, hbuf,
                                    c, hid);
                       for (int64_t x = 0; x < w; ++x)
                         logits[row * w + x] = relu_dot(hbuf + x * hid, c_out, hid) + c_outb;
                     }
                   }});
}

}  // namespace spr_cpu
