// The dense neck + factorized head (head.h).
#include "head.h"

#include <algorithm>
#include <cmath>

#include "simd_gemm.h"

namespace spr_cpu {

void gate_region(const float* gate, int64_t hg, int64_t wg, int64_t h, int64_t w, float* reg) {
  thread_local std::vector<float> dilated;
  if (static_cast<int64_t>(dilated.size()) < hg * wg) dilated.resize(hg * wg);
  for (int64_t y = 0; y < hg; ++y)
    for (int64_t x = 0; x < wg; ++x) {
      float v = 0.0f;
      for (int64_t yy = std::max<int64_t>(0, y - 1); yy <= std::min(hg - 1, y + 1); ++yy)
        for (int64_t xx = std::max<int64_t>(0, x - 1); xx <= std::min(wg - 1, x + 1); ++xx)
          v = std::max(v, gate[yy * wg + xx] > 0.0f ? 1.0f : 0.0f);
      dilated[y * wg + x] = v;
    }
  bool any = false;
  for (int64_t y = 0; y < h; ++y) {
    const float* src = dilated.data() + nearest_src(y, hg, h) * wg;
    for (int64_t x = 0; x < w; ++x) {
      const float v = src[nearest_src(x, wg, w)];
      reg[y * w + x] = v;
      any = any || v > 0.0f;
    }
  }
  if (!any) std::fill(reg, reg + h * w, 1.0f);
}

HeadPlan::HeadPlan(const at::Tensor& f16_t, const at::Tensor& f8_t, const at::Tensor& f4_t,
                   const std::vector<int64_t>& dims, const std::vector<at::Tensor>& wts,
                   const std::vector<at::Tensor>& bufs) {
  TORCH_CHECK(dims.size() == 7 || dims.size() == 9,
              "dims must be (batch, h16, w16, h8, w8, h4, w4[, h_gate, w_gate])");
  TORCH_CHECK(wts.size() == 18, "the head needs 9 (weight, bias) pairs");
  gated = dims.size() == 9;
  TORCH_CHECK(bufs.size() == (gated ? 11u : 9u),
              "the head needs 9 buffers (+ gate mask and region when gated)");
  batch = dims[0];
  h16 = dims[1]; w16 = dims[2]; h8 = dims[3]; w8 = dims[4]; h4 = dims[5]; w4 = dims[6];
  n16 = batch * h16 * w16;
  n8 = batch * h8 * w8;
  n4 = batch * h4 * w4;
  for (const auto* t : {&f16_t, &f8_t, &f4_t}) check_buffer(*t, "head input");
  for (const auto& t : wts) check_buffer(t, "head weight");
  for (const auto& t : bufs) check_buffer(t, "head buffer");
  c16 = f16_t.size(1);
  c8 = f8_t.size(1);
  c4 = f4_t.size(1);
  TORCH_CHECK(f16_t.size(0) >= n16 && f8_t.size(0) >= n8 && f4_t.size(0) >= n4,
              "head inputs have fewer rows than the feature maps");
  ch = wts[0].size(1);
  n_joints = wts[17].numel();
  n_maps = wts[15].numel();  // heatmaps + triplet maps
  zw = ch + n_maps;
  TORCH_CHECK(n_maps > n_joints, "W_ht must cover the heatmaps and the triplets");
  auto shape_is = [](const at::Tensor& t, int64_t r, int64_t c) {
    return t.dim() == 2 && t.size(0) == r && t.size(1) == c;
  };
  TORCH_CHECK(shape_is(wts[0], c16, ch) && shape_is(wts[2], c8, ch) && shape_is(wts[4], c4, ch) &&
                  shape_is(wts[6], 9, ch) && shape_is(wts[8], ch, ch) &&
                  shape_is(wts[10], 9, ch) && shape_is(wts[12], ch, ch) &&
                  shape_is(wts[14], ch, n_maps) && shape_is(wts[16], zw, n_joints),
              "head weight shapes do not fit together");
  for (int i = 0; i < 9; ++i)
    TORCH_CHECK(wts[2 * i + 1].numel() == wts[2 * i].size(1), "head bias size mismatch");
  n_pc = (h4 * w4 + kSoftmax - 1) / kSoftmax;
  TORCH_CHECK(shape_is(bufs[0], n16, ch) && shape_is(bufs[1], n8, ch) &&
                  shape_is(bufs[2], n8, ch) && shape_is(bufs[3], n4, ch) &&
                  shape_is(bufs[4], n4, ch) && shape_is(bufs[5], n4, zw) &&
                  shape_is(bufs[6], n4, n_joints) &&
                  bufs[7].numel() == batch * n_pc * n_joints * 5 &&
                  bufs[8].numel() == batch * n_joints * 3,
              "head buffers have the wrong shapes");
  keep = wts;
  keep.insert(keep.end(), bufs.begin(), bufs.end());
  keep.insert(keep.end(), {f16_t, f8_t, f4_t});
  f16 = f16_t.data_ptr<float>();
  f8 = f8_t.data_ptr<float>();
  f4 = f4_t.data_ptr<float>();
  const float** wp[18] = {&w_red, &b_red, &w_l8, &b_l8, &w_l4, &b_l4, &w_d8, &b_d8, &w_p8,
                          &b_p8, &w_d4, &b_d4, &w_p4, &b_p4, &w_ht, &b_ht, &w_dep, &b_dep};
  for (int i = 0; i < 18; ++i) *wp[i] = wts[static_cast<size_t>(i)].data_ptr<float>();
  float** bp[9] = {&y16, &y8a, &y8b, &y4a, &y4b, &z, &dep, &part, &joints};
  for (int i = 0; i < 9; ++i) *bp[i] = bufs[static_cast<size_t>(i)].data_ptr<float>();
  if (gated) {
    hg = dims[7];
    wg = dims[8];
    TORCH_CHECK(hg >= 1 && wg >= 1 && bufs[9].numel() == batch * hg * wg &&
                    bufs[10].numel() == n4,
                "gate mask / region buffer have the wrong size");
    gate = bufs[9].data_ptr<float>();
    region = bufs[10].data_ptr<float>();
  }
}

void HeadPlan::append_steps(std::vector<Step>& steps) {
  if (gated) steps.push_back({1, 1, true, [this](int64_t, int64_t, int) { make_region(); }});
  steps.push_back({n16, kRows, false, [this](int64_t r0, int64_t r1, int) {
                     gemm(f16 + r0 * c16, nullptr, r1 - r0, c16, w_red, ch, b_red, true,
                          y16 + r0 * ch);
                   }});
  // stride 8: y8a = lateral + up(y16), y8b = dw(y8a), y8a = pw(y8b)
  append_level(steps, f8, c8, w_l8, b_l8, y16, h16, w16, h8, w8, w_d8, b_d8, y8a, y8b);
  steps.push_back({n8, kRows, false, [this](int64_t r0, int64_t r1, int) {
                     gemm(y8b + r0 * ch, nullptr, r1 - r0, ch, w_p8, ch, b_p8, true,
                          y8a + r0 * ch);
                   }});
  // stride 4: y4a = lateral + up(y8a), y4b = dw(y4a); the pw conv is fused into outputs()
  append_level(steps, f4, c4, w_l4, b_l4, y8a, h8, w8, h4, w4, w_d4, b_d4, y4a, y4b);
  steps.push_back({n4, kRows, false, [this](int64_t r0, int64_t r1, int) { outputs(r0, r1); }});
  steps.push_back({batch * n_pc, 1, false, [this](int64_t c, int64_t, int) { softmax_part(c); }});
  steps.push_back({1, 1, true, [this](int64_t, int64_t, int) { combine(); }});
}

// ya = ReLU6(skip @ W_l + b_l) + nearest_up(coarse); yb = dw3x3(ya) (+ bias, ReLU6)
inline void HeadPlan::append_level(std::vector<Step>& steps, const float* skip, int64_t c_skip, const float* w_l,
                                   const float* b_l, const float* coarse, int64_t hc, int64_t wc, int64_t h,
                                   int64_t wdt, const float* w_d, const float* b_d, float* ya, float* yb) {
  const int64_t n = batch * h * wdt;
  steps.push_back({n, kRows, false, [=, this](int64_t r0, int64_t r1, int) {
                     lateral(skip, c_skip, w_l, b_l, coarse, hc, wc, h, wdt, ya, r0, r1);
                   }});
  steps.push_back({n, kRows, false, [=, this](int64_t r0, int64_t r1, int) {
                     depthwise(ya, h, wdt, w_d, b_d, yb, r0, r1);
                   }});
}

// y[r] = ReLU6(skip[r] @ W + b) + coarse[nearest(r)]. Positions are walked as (image, row,
// column) counters: a division per position cost more than the add itself.
inline void HeadPlan::lateral(const float* skip, int64_t c_skip, const float* w, const float* b,
                              const float* coarse, int64_t hc, int64_t wc, int64_t h, int64_t wdt, float* y,
                              int64_t r0, int64_t r1) {
  gemm(skip + r0 * c_skip, nullptr, r1 - r0, c_skip, w, ch, b, true, y + r0 * ch);
  int64_t bi = r0 / (h * wdt), yy = (r0 % (h * wdt)) / wdt, xx = r0 % wdt;
  int64_t src_row = (bi * hc + nearest_src(yy, hc, h)) * wc;
  for (int64_t r = r0; r < r1; ++r) {
    float* dst = y + r * ch;
    const float* s = coarse + (src_row + nearest_src(xx, wc, wdt)) * ch;
#pragma omp simd
    for (int64_t c = 0; c < ch; ++c) dst[c] += s[c];
    if (++xx == wdt) {
      xx = 0;
      if (++yy == h) {
        yy = 0;
        ++bi;
      }
      src_row = (bi * hc + nearest_src(yy, hc, h)) * wc;
    }
  }
}

// dense depthwise 3x3, zero padding, + bias + ReLU6: interior runs of a row through
// depthwise_run, the border columns / rows with their present taps only
inline void HeadPlan::depthwise(const float* x, int64_t h, int64_t wdt, const float* w, const float* b, float* y,
                                int64_t r0, int64_t r1) {
  auto border = [&](int64_t bi, int64_t cy, int64_t cx, float* out) {
    const float* src[9];
    int tap_of[9];
    const int n_taps = window_taps(cy, cx, h, wdt, [&](int64_t yy, int64_t xx) -> const float* {
      return x + ((bi * h + yy) * wdt + xx) * ch;
    }, src, tap_of);
    depthwise_row(src, tap_of, n_taps, w, b, ch, out);
  };
  for (int64_t r = r0; r < r1;) {
    const int64_t bi = r / (h * wdt), p = r % (h * wdt);
    const int64_t cy = p / wdt, x0 = p % wdt;
    const int64_t x1 = std::min(wdt, x0 + (r1 - r));  // this row's columns [x0, x1)
    const int64_t ia = std::max<int64_t>(x0, 1), ib = std::min<int64_t>(x1, wdt - 1);
    const bool inner_row = cy >= 1 && cy + 1 < h && ib > ia;
    for (int64_t cx = x0; cx < x1; ++cx) {
      if (inner_row && cx == ia) {
        const float* rows[3];
        for (int dy = 0; dy < 3; ++dy) rows[dy] = x + ((bi * h + cy - 1 + dy) * wdt + ia - 1) * ch;
        depthwise_run(rows, ib - ia, ch, w, b, ch, y + (r + ia - x0) * ch);
        cx = ib - 1;
        continue;
      }
      border(bi, cy, cx, y + (r + cx - x0) * ch);
    }
    r += x1 - x0;
  }
}

inline void HeadPlan::make_region() {
  for (int64_t bi = 0; bi < batch; ++bi)
    gate_region(gate + bi * hg * wg, hg, wg, h4, w4, region + bi * h4 * w4);
}

// stride-4 rows: pw conv into z[:, :ch], heatmaps + triplets into z[:, ch:], depth from all of z.
// Gated: only runs of rows inside the region; outside, heatmap logits kOffLogit, triplets 0.
inline void HeadPlan::outputs(int64_t r0, int64_t r1) {
  if (!gated) {
    outputs_run(r0, r1);
    return;
  }
  for (int64_t r = r0; r < r1;) {
    const bool in = region[r] > 0.0f;
    int64_t e = r + 1;
    while (e < r1 && (region[e] > 0.0f) == in) ++e;
    if (in) {
      outputs_run(r, e);
    } else {
      for (int64_t q = r; q < e; ++q) {
        float* zq = z + q * zw + ch;
        std::fill(zq, zq + n_joints, kOffLogit);
        std::fill(zq + n_joints, z + (q + 1) * zw, 0.0f);
      }
    }
    r = e;
  }
}

inline void HeadPlan::outputs_run(int64_t r0, int64_t r1) {
  const int64_t n = r1 - r0;
  float* zr = z + r0 * zw;
  gemm(y4b + r0 * ch, nullptr, n, ch, w_p4, ch, b_p4, true, zr, ch, zw);
  gemm(zr, nullptr, n, ch, w_ht, n_maps, b_ht, false, zr + ch, zw, zw);
  gemm(zr, nullptr, n, zw, w_dep, n_joints, b_dep, false, dep + r0 * n_joints, zw, n_joints);
}

// chunk c = (batch item, block of positions): per joint the max logit m and, relative to it,
// s = sum e, sx = sum e*x, sy = sum e*y, sz = sum e*tanh(depth)
inline void HeadPlan::softmax_part(int64_t c) {
  const int64_t bi = c / n_pc, pc = c % n_pc, hw = h4 * w4, J = n_joints;
  const int64_t p0 = pc * kSoftmax, p1 = std::min(hw, p0 + kSoftmax);
  float m[64], s[64], sx[64], sy[64], sz[64];
  for (int64_t j0 = 0; j0 < J; j0 += 64) {
    const int64_t nj = std::min<int64_t>(64, J - j0);
    for (int64_t j = 0; j < nj; ++j) {
      m[j] = -INFINITY;
      s[j] = sx[j] = sy[j] = sz[j] = 0.0f;
    }
    for (int64_t p = p0; p < p1; ++p) {
      const float* l = z + (bi * hw + p) * zw + ch + j0;
#pragma omp simd
      for (int64_t j = 0; j < nj; ++j) m[j] = std::max(m[j], l[j]);
    }
#ifdef __AVX512F__
    // 16 joints a vector, our own exp (glibc only vectorises expf under -ffast-math, which
    // this file must not be built with: it would change the GEMMs' and ReLU6's semantics)
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    for (int64_t j = 0; j < nj; j += 16) {
      const int64_t left = nj - j;
      const __mmask16 mk = lanes(left);
      const __m512 mv = _mm512_maskz_loadu_ps(mk, m + j);
      __m512 sv = _mm512_setzero_ps(), sxv = sv, syv = sv, szv = sv;
      for (int64_t p = p0; p < p1; ++p) {
        if (gated && !(region[bi * hw + p] > 0.0f)) continue;  // softmax weight 0 there
        const float* l = z + (bi * hw + p) * zw + ch + j0 + j;
        const float* d = dep + (bi * hw + p) * J + j0 + j;
        const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, l), mv));
        const __m512 t = exp512(_mm512_mul_ps(two, _mm512_maskz_loadu_ps(mk, d)));
        const __m512 th = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(t, one)));
        const float px = (static_cast<float>(p % w4) + 0.5f) / static_cast<float>(w4);
        const float py = (static_cast<float>(p / w4) + 0.5f) / static_cast<float>(h4);
        sv = _mm512_add_ps(sv, e);
        sxv = _mm512_fmadd_ps(e, _mm512_set1_ps(px), sxv);
        syv = _mm512_fmadd_ps(e, _mm512_set1_ps(py), syv);
        szv = _mm512_fmadd_ps(e, th, szv);
      }
      _mm512_mask_storeu_ps(s + j, mk, sv);
      _mm512_mask_storeu_ps(sx + j, mk, sxv);
      _mm512_mask_storeu_ps(sy + j, mk, syv);
      _mm512_mask_storeu_ps(sz + j, mk, szv);
    }
#else
    for (int64_t p = p0; p < p1; ++p) {
      if (gated && !(region[bi * hw + p] > 0.0f)) continue;  // softmax weight 0 there
      const float* l = z + (bi * hw + p) * zw + ch + j0;
      const float* d = dep + (bi * hw + p) * J + j0;
      const float px = (static_cast<float>(p % w4) + 0.5f) / static_cast<float>(w4);
      const float py = (static_cast<float>(p / w4) + 0.5f) / static_cast<float>(h4);
      for (int64_t j = 0; j < nj; ++j) {
        const float e = std::exp(l[j] - m[j]);
        const float th = 1.0f - 2.0f / (std::exp(2.0f * d[j]) + 1.0f);  // tanh
        s[j] += e;
        sx[j] += e * px;
        sy[j] += e * py;
        sz[j] += e * th;
      }
    }
#endif
    for (int64_t j = 0; j < nj; ++j) {
      float* out = part + ((bi * n_pc + pc) * J + j0 + j) * 5;
      out[0] = m[j];
      out[1] = s[j];
      out[2] = sx[j];
      out[3] = sy[j];
      out[4] = sz[j];
    }
  }
}

inline void HeadPlan::combine() {
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t j = 0; j < n_joints; ++j) {
      float mx = -INFINITY;
      for (int64_t pc = 0; pc < n_pc; ++pc)
        mx = std::max(mx, part[((bi * n_pc + pc) * n_joints + j) * 5]);
      double s = 0, sx = 0, sy = 0, sz = 0;
      for (int64_t pc = 0; pc < n_pc; ++pc) {
        const float* q = part + ((bi * n_pc + pc) * n_joints + j) * 5;
        const double f = std::exp(static_cast<double>(q[0]) - mx);
        s += f * q[1];
        sx += f * q[2];
        sy += f * q[3];
        sz += f * q[4];
      }
      float* out = joints + (bi * n_joints + j) * 3;
      out[0] = static_cast<float>(sx / s);
      out[1] = static_cast<float>(sy / s);
      out[2] = static_cast<float>(sz / s);
    }
}

}  // namespace spr_cpu
