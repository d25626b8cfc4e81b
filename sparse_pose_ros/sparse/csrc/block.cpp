// The steps of one gated inverted-residual block (block.h), and run_block (one block, one call).
#include "block.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "simd_gemm.h"

namespace spr_cpu {

BlockPlan::BlockPlan(const at::Tensor& x, const at::Tensor& out, int64_t batch_, int64_t h_, int64_t w_,
                     int64_t stride_, int64_t pad_top_, int64_t pad_left_, const at::Tensor& w_expand, const at::Tensor& b_expand,
                     const at::Tensor& w_dw, const at::Tensor& b_dw, const at::Tensor& w_project,
                     const at::Tensor& b_project, bool residual_, bool residual_relu_, int64_t gate_,
                     double dense_above_, const at::Tensor& mask_weight, double mask_bias_,
                     double threshold_, const at::Tensor& fixed_hard, const at::Tensor& hard_t,
                     const at::Tensor& dilated, const at::Tensor& logits, const at::Tensor& soft,
                     const at::Tensor& rank_t, const at::Tensor& act_rows, const at::Tensor& dil_rows_t,
                     const at::Tensor& row_ptr, const at::Tensor& e_buf,
                     const at::Tensor& d_buf, const at::Tensor& p_buf, int64_t strip_rows_,
                     const at::Tensor& fill, int64_t channel_slices, bool pack_weights)
    : batch(batch_), h(h_), w(w_), stride(stride_), pad_top(pad_top_), pad_left(pad_left_),
      residual(residual_),
      residual_relu(residual_relu_), gate(gate_), dense_above(dense_above_),
      mask_bias(static_cast<float>(mask_bias_)), threshold(static_cast<float>(threshold_)),
      strip_rows(strip_rows_) {
  check_buffer(x, "x");
  check_buffer(out, "out");
  TORCH_CHECK(stride == 1 || stride == 2, "stride must be 1 or 2");
  TORCH_CHECK(stride == 2 ? (pad_top == 0 || pad_top == 1) && (pad_left == 0 || pad_left == 1)
                          : pad_top == 1 && pad_left == 1,
              "depthwise pad before must be 1 at stride 1 and 0 or 1 at stride 2");
  TORCH_CHECK(gate >= 0 && gate <= 2, "gate must be 0 (none), 1 (learned) or 2 (fixed)");
  ho = (h - 1) / stride + 1;
  wo = (w - 1) / stride + 1;
  n_in = batch * h * w;
  n_out = batch * ho * wo;
  c_in = x.size(1);
  has_expand = w_expand.defined() && w_expand.numel() > 0;
  c_e = w_dw.size(1);
  c_out = w_project.size(1);
  TORCH_CHECK(x.size(0) == n_in + 1, "x must have B*H*W + 1 rows");
  TORCH_CHECK(out.size(0) == n_out + 1 && out.size(1) == c_out, "out has the wrong shape");
  TORCH_CHECK(!residual || out.data_ptr() == x.data_ptr(), "residual blocks update x in place");
  TORCH_CHECK(has_expand || c_e == c_in, "without expand, C_e must equal C_in");
  TORCH_CHECK(e_buf.is_contiguous() && d_buf.is_contiguous() &&
                  p_buf.is_contiguous() && w_project.is_contiguous() && w_dw.is_contiguous() &&
                  b_dw.is_contiguous() && b_project.is_contiguous(),
              "scratch buffers and weights must be contiguous");
  TORCH_CHECK(!has_expand || (w_expand.is_contiguous() && b_expand.is_contiguous()),
              "expand weights must be contiguous");
  TORCH_CHECK(hard_t.numel() == n_out && logits.numel() == n_out && soft.numel() == n_out &&
                  dilated.numel() == n_in && rank_t.numel() == n_in &&
                  act_rows.numel() == n_out && dil_rows_t.numel() == n_in &&
                  row_ptr.numel() == batch * h + 1 + batch * ho + 1,
              "mask / index buffers have the wrong size");
  TORCH_CHECK(gate != 2 || fixed_hard.numel() == n_out, "fixed mask has the wrong size");
  TORCH_CHECK(gate != 1 || mask_weight.numel() == c_in, "mask weight must have C_in entries");
  threads = e_buf.size(0);  // one scratch slice per thread
  TORCH_CHECK(threads >= 1 && d_buf.size(0) == threads,
              "scratch buffers need one slice per thread");
  cap_e = e_buf.size(1);
  cap_a = d_buf.size(1);
  TORCH_CHECK(strip_rows >= 1, "strip_rows must be >= 1");
  TORCH_CHECK(std::min<int64_t>(h, stride * strip_rows + 2) * w <= cap_e &&
                  strip_rows * wo <= cap_a && e_buf.size(2) == c_e && d_buf.size(2) == c_e &&
                  p_buf.size(0) >= n_out && p_buf.size(1) == c_out,
              "scratch buffers too small for strip_rows");
  groups_per_img = std::min<int64_t>(ho, group_count(threads));
  group_y.assign(static_cast<size_t>(batch * (groups_per_img + 1)), 0);
  const bool has_fill = fill.defined() && fill.numel() > 0;
  TORCH_CHECK(!has_fill || (fill.numel() == c_out && fill.is_contiguous() &&
                            fill.scalar_type() == at::kFloat),
              "fill must be c_out contiguous floats (or empty)");
  keep = {x, out, w_expand, b_expand, w_dw, b_dw, w_project, b_project, mask_weight,
          fixed_hard, hard_t, dilated, logits, soft, rank_t, act_rows, dil_rows_t, row_ptr,
          e_buf, d_buf, p_buf, fill};
  fp = has_fill ? fill.data_ptr<float>() : nullptr;
  xp = x.data_ptr<float>();
  op = out.data_ptr<float>();
  mw = gate == 1 ? mask_weight.data_ptr<float>() : nullptr;
  fixed = gate == 2 ? fixed_hard.data_ptr<float>() : nullptr;
  // a plan replayed every frame packs its weights once; a one-off run_block call would pay
  // the packing (MBs for the stride-32 blocks) every call, so it reads them as they are
  packed = pack_weights;
  if (has_expand && packed) we_panels = pack_panels(w_expand.data_ptr<float>(), c_in, c_e);
  we = has_expand ? (packed ? we_panels.data() : w_expand.data_ptr<float>()) : nullptr;
  be = has_expand ? b_expand.data_ptr<float>() : nullptr;
  wd = w_dw.data_ptr<float>();
  bd = b_dw.data_ptr<float>();
  if (packed) wp_panels = pack_panels(w_project.data_ptr<float>(), c_e, c_out);
  wp = packed ? wp_panels.data() : w_project.data_ptr<float>();
  bp = b_project.data_ptr<float>();
  hard = hard_t.data_ptr<float>();
  dil = dilated.data_ptr<float>();
  lg = logits.data_ptr<float>();
  sp = soft.data_ptr<float>();
  rank = rank_t.data_ptr<int32_t>();
  act = act_rows.data_ptr<int32_t>();
  dil_rows = dil_rows_t.data_ptr<int32_t>();
  dil_ptr = row_ptr.data_ptr<int32_t>();
  act_ptr = dil_ptr + batch * h + 1;
  e_base = e_buf.data_ptr<float>();
  d_base = d_buf.data_ptr<float>();
  pp = p_buf.data_ptr<float>();
  whole.c0 = 0;
  whole.cw = c_e;
  whole.we = we;
  whole.be = be;
  whole.wd = wd;
  whole.bd = bd;
  whole.wp = wp;
  whole.out = pp;
  whole.packed = packed;
  TORCH_CHECK(channel_slices >= 1, "channel_slices must be >= 1");
  if (channel_slices > 1) {
    TORCH_CHECK(has_expand, "a channel split needs an expand conv (the depthwise reads x in place without)");
    make_slices(channel_slices, w_expand, w_project);
  }
}

// Slice s holds channels [c0, c0 + cw) of the expanded rows, cut at multiples of 16 (one AVX-512
// vector) into near-equal widths, with its own copies of those columns of the expand weights,
// taps of the depthwise and rows of the project weights (all panel-packed where GEMM reads
// them), and its own partial output of the project GEMM: slice 0 writes p_buf, as the whole
// block does (the scatter reads it after adding the others in), the rest ``partial``.
void BlockPlan::make_slices(int64_t n, const at::Tensor& w_expand, const at::Tensor& w_project) {
  const int64_t vec = 16, units = (c_e + vec - 1) / vec;
  n = std::min(n, units);
  groups_per_img = 1;  // a slice's chunk runs every row of its image
  partial.assign(static_cast<size_t>((n - 1) * n_out * c_out), 0.0f);
  const float* wex = w_expand.data_ptr<float>();
  const float* wpr = w_project.data_ptr<float>();
  slices.resize(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    const int64_t c0 = std::min(c_e, units * s / n * vec);
    const int64_t c1 = std::min(c_e, units * (s + 1) / n * vec);
    Slice& sl = slices[static_cast<size_t>(s)];
    sl.c0 = c0;
    sl.cw = c1 - c0;
    std::vector<float> cols(static_cast<size_t>(c_in * sl.cw));
    for (int64_t k = 0; k < c_in; ++k)
      std::copy_n(wex + k * c_e + c0, sl.cw, cols.data() + k * sl.cw);
    sl.own_we = pack_panels(cols.data(), c_in, sl.cw);
    sl.own_wd.resize(static_cast<size_t>(9 * sl.cw));
    for (int64_t t = 0; t < 9; ++t) std::copy_n(wd + t * c_e + c0, sl.cw, sl.own_wd.data() + t * sl.cw);
    sl.own_wp = pack_panels(wpr + c0 * c_out, sl.cw, c_out);
    sl.we = sl.own_we.data();
    sl.wd = sl.own_wd.data();
    sl.wp = sl.own_wp.data();
    sl.be = be + c0;
    sl.bd = bd + c0;
    sl.packed = true;
    sl.out = s == 0 ? pp : partial.data() + (s - 1) * n_out * c_out;
  }
}

void BlockPlan::use_bf16() {
  TORCH_CHECK(bf16_enable(),
              "bf16 blocks need AMX or AVX512-BF16 (this build or CPU has neither)");
  const float* wex = has_expand ? keep[2].data_ptr<float>() : nullptr;  // (c_in, c_e)
  const float* wpr = keep[6].data_ptr<float>();                          // (c_e, c_out)
  auto pack = [&](Slice& sl) {
    if (wex != nullptr) sl.we16 = pack_bf16(wex + sl.c0, c_in, sl.cw, c_e);
    sl.wp16 = pack_bf16(wpr + sl.c0 * c_out, sl.cw, c_out, c_out);
  };
  pack(whole);
  for (Slice& sl : slices) pack(sl);
}

// The block as six steps of a frame; ``tid`` < ``threads`` picks the scratch slice.
void BlockPlan::append_steps(std::vector<Step>& steps) {
  // Index steps take chunks of >= kMinChunk positions: on the 16x16 and 32x32 grids a step
  // is then one chunk, which the caller runs without a hand-off (a few µs of sync per step
  // against < 1 µs of work).
  const int64_t row_chunk = std::max<int64_t>(8, (kMinChunk + w - 1) / w);
  steps.push_back({n_out, kMinChunk, false, [this](int64_t b, int64_t e, int) { mask_chunk(b, e); }});
  steps.push_back({index_rows(), row_chunk, false,
                  [this](int64_t b, int64_t e, int) { count_rows(b, e); }});
  steps.push_back({1, 1, true, [this](int64_t, int64_t, int) { scan_rows(); }});
  steps.push_back({index_rows(), row_chunk, false,
                  [this](int64_t b, int64_t e, int) { fill_rows(b, e); }});
  const int64_t band_chunks = slices.empty() ? batch * groups_per_img
                                             : batch * static_cast<int64_t>(slices.size());
  steps.push_back({band_chunks, 1, false,
                  [this](int64_t g, int64_t, int tid) { band_group(g, tid); }});
  steps.push_back({n_out, kMinChunk, false,
                  [this](int64_t b, int64_t e, int) { scatter_chunk(b, e); }});
}

// ---- 1. mask: none (ungated), learned (1x1 conv logit >= threshold) or fixed -----------------
inline void BlockPlan::mask_chunk(int64_t o0, int64_t o1) {
  if (gate == 0) {
    std::fill(hard + o0, hard + o1, 1.0f);
    return;
  }
  if (gate == 2) {
#pragma omp simd
    for (int64_t o = o0; o < o1; ++o) {
      const float on = fixed[o] > 0.0f ? 1.0f : 0.0f;
      hard[o] = on;
      lg[o] = on * 2.0f - 1.0f;
      sp[o] = on;
    }
    return;
  }
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t b = o / (ho * wo), r = o % (ho * wo);
    const int64_t iy = (r / wo) * stride, ix = (r % wo) * stride;
    lg[o] = dot(xp + ((b * h + iy) * w + ix) * c_in, mw, c_in) + mask_bias;
  }
  int64_t o = o0;
#ifdef __AVX512F__
  const __m512 one = _mm512_set1_ps(1.0f), thr = _mm512_set1_ps(threshold);
  for (; o + 16 <= o1; o += 16) {
    const __m512 l = _mm512_loadu_ps(lg + o);
    _mm512_storeu_ps(sp + o, _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(
                     _mm512_setzero_ps(), l)))));
    _mm512_storeu_ps(hard + o, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(l, thr, _CMP_GE_OQ), one));
  }
#endif
  for (; o < o1; ++o) {
    sp[o] = 1.0f / (1.0f + std::exp(-lg[o]));
    hard[o] = lg[o] >= threshold ? 1.0f : 0.0f;
  }
}

// output index range [lo, hi] whose 3x3 window (inputs i*stride - pad .. i*stride - pad + 2)
// covers input coordinate v
inline void BlockPlan::covering(int64_t v, int64_t n_o, int64_t pad, int64_t& lo, int64_t& hi) const {
  lo = v + pad - 2 > 0 ? (v + pad - 2 + stride - 1) / stride : 0;
  hi = std::min(n_o - 1, (v + pad) / stride);
}

// Dilation is separable: OR (max of 0/1 floats) over the covering output rows, then over the
// covering output columns; both are straight vector loops over a row.
inline void BlockPlan::count_rows(int64_t r0, int64_t r1) {
  thread_local std::vector<float> any_row;  // sized once per thread, reused every frame
  if (static_cast<int64_t>(any_row.size()) < wo) any_row.resize(wo);
  float* t = any_row.data();
  for (int64_t r = r0; r < r1; ++r) {
    if (r < batch * h) {  // input row r: dil + count
      const int64_t b = r / h, y = r % h;
      int64_t oy_lo, oy_hi;
      covering(y, ho, pad_top, oy_lo, oy_hi);
      std::copy(hard + (b * ho + oy_lo) * wo, hard + (b * ho + oy_lo + 1) * wo, t);
      for (int64_t oy = oy_lo + 1; oy <= oy_hi; ++oy) {
        const float* hrow = hard + (b * ho + oy) * wo;
#pragma omp simd
        for (int64_t x = 0; x < wo; ++x) t[x] = std::max(t[x], hrow[x]);
      }
      float* drow = dil + r * w;
      if (stride == 1) {  // w == wo: window [x-1, x+1]
        drow[0] = wo > 1 ? std::max(t[0], t[1]) : t[0];
#pragma omp simd
        for (int64_t x = 1; x < w - 1; ++x) drow[x] = std::max(std::max(t[x - 1], t[x]), t[x + 1]);
        if (w > 1) drow[w - 1] = std::max(t[w - 2], t[w - 1]);
      } else if (pad_left == 1) {  // input 2k: output k; input 2k+1: outputs k and k+1
#pragma omp simd
        for (int64_t x = 0; x < w; ++x) {
          const int64_t k = x >> 1;
          const bool two = (x & 1) && k + 1 < wo;
          drow[x] = two ? std::max(t[k], t[k + 1]) : t[k];
        }
      } else {  // TF 'SAME' (pad 0 before): input 2k: outputs k-1 and k; input 2k+1: output k
#pragma omp simd
        for (int64_t x = 0; x < w; ++x) {
          const int64_t k = std::min<int64_t>(x >> 1, wo - 1);
          const bool two = !(x & 1) && k >= 1 && (x >> 1) <= wo - 1;
          drow[x] = two ? std::max(t[k - 1], t[k]) : t[k];
        }
      }
      int32_t cnt = 0;
#pragma omp simd reduction(+ : cnt)
      for (int64_t x = 0; x < w; ++x) cnt += drow[x] > 0.0f ? 1 : 0;
      dil_ptr[r] = cnt;
    }
    if (r < batch * ho) {  // output row r: active count
      const float* hrow = hard + r * wo;
      int32_t cnt = 0;
#pragma omp simd reduction(+ : cnt)
      for (int64_t x = 0; x < wo; ++x) cnt += hrow[x] > 0.0f ? 1 : 0;
      act_ptr[r] = cnt;
    }
  }
}

// per-row counts ptr[0..n) -> exclusive prefix sums, ptr[n] = total; returns the total
inline int64_t BlockPlan::exclusive_scan(int32_t* ptr, int64_t n) {
  int64_t total = 0;
  for (int64_t r = 0; r < n; ++r) {
    const int32_t c = ptr[r];
    ptr[r] = static_cast<int32_t>(total);
    total += c;
  }
  ptr[n] = static_cast<int32_t>(total);
  return total;
}

inline void BlockPlan::scan_rows() {
  n_hard = exclusive_scan(act_ptr, batch * ho);
  compute_all = static_cast<double>(n_hard) > dense_above * static_cast<double>(n_out);
  n_dil_true = exclusive_scan(dil_ptr, batch * h);
  if (compute_all) {  // every row is computed: the lists are the identity
    for (int64_t r = 0; r <= batch * h; ++r) dil_ptr[r] = static_cast<int32_t>(r * w);
    for (int64_t r = 0; r <= batch * ho; ++r) act_ptr[r] = static_cast<int32_t>(r * wo);
  }
  n_act = compute_all ? n_out : n_hard;
  place_groups();
}

// Rows without (or with only) dilated / active entries take a straight loop.
inline void BlockPlan::fill_rows(int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    if (r < batch * h) {
      const int64_t k0 = dil_ptr[r], n = dil_ptr[r + 1] - k0, p0 = r * w;
      int32_t* rk = rank + p0;
      if (compute_all) {
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) rk[i] = static_cast<int32_t>(p0 + i + 1);
      } else if (n == 0) {
        std::fill(rk, rk + w, 0);
      } else if (n == w) {
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) {
          dil_rows[k0 + i] = static_cast<int32_t>(p0 + i);
          rk[i] = static_cast<int32_t>(k0 + i + 1);
        }
      } else {
        int64_t k = k0;
        for (int64_t i = 0; i < w; ++i) {
          if (dil[p0 + i] > 0.0f) {
            dil_rows[k] = static_cast<int32_t>(p0 + i);
            rk[i] = static_cast<int32_t>(++k);
          } else {
            rk[i] = 0;
          }
        }
      }
    }
    if (r < batch * ho) {
      int64_t k = act_ptr[r];
      const int64_t n = act_ptr[r + 1] - k;
      if (n == wo) {
        for (int64_t o = r * wo; o < (r + 1) * wo; ++o) act[k++] = static_cast<int32_t>(o);
      } else if (n > 0) {
        for (int64_t o = r * wo; o < (r + 1) * wo; ++o)
          if (hard[o] > 0.0f) act[k++] = static_cast<int32_t>(o);
      }
    }
  }
}

// Group bounds of every image from the final row pointers: estimated work up to output row y
// is W(y) = A * (active outputs in rows < y) + E * (dilated inputs in rows < stride * y), with
// A, E the MACs of one active output (depthwise + project) and of one expanded row; bound k
// is the row where W comes closest to k / groups of the image's total.
inline void BlockPlan::place_groups() {
  const int64_t g = groups_per_img;
  const double A = static_cast<double>(c_e * (9 + c_out) + c_out);
  const double E = static_cast<double>(has_expand ? c_in * c_e : c_e);
  for (int64_t b = 0; b < batch; ++b) {
    int32_t* gy = group_y.data() + b * (g + 1);
    const int32_t* ap = act_ptr + b * ho;
    const int32_t* dp = dil_ptr + b * h;
    auto work = [&](int64_t y) {
      return A * (ap[y] - ap[0]) + E * (dp[std::min(stride * y, h)] - dp[0]);
    };
    const double total = work(ho);
    int64_t y = 0;
    gy[0] = 0;
    for (int64_t k = 1; k < g; ++k) {
      const double target = total * static_cast<double>(k) / static_cast<double>(g);
      while (y < ho && work(y + 1) <= target) ++y;  // W(y) <= target < W(y + 1)
      const bool next = y < ho && work(y + 1) - target < target - work(y);
      gy[k] = static_cast<int32_t>(std::max<int64_t>(gy[k - 1], next ? y + 1 : y));
    }
    gy[g] = static_cast<int32_t>(ho);
  }
}

inline void BlockPlan::band_group(int64_t gi, int tid) {
  if (n_act == 0) return;
  Held held;
  if (!slices.empty()) {  // channel split: chunk gi = (image, slice), every row of the image
    const int64_t n_s = static_cast<int64_t>(slices.size());
    const int64_t b = gi / n_s;
    for (int64_t y0 = 0; y0 < ho; y0 += strip_rows)
      strip(b, y0, std::min<int64_t>(y0 + strip_rows, ho), tid, held, slices[gi % n_s]);
    return;
  }
  const int64_t b = gi / groups_per_img;
  const int32_t* gy = group_y.data() + b * (groups_per_img + 1) + gi % groups_per_img;
  for (int64_t y0 = gy[0]; y0 < gy[1]; y0 += strip_rows)
    strip(b, y0, std::min<int64_t>(y0 + strip_rows, gy[1]), tid, held, whole);
}

// output rows [y0, y1) of image b, channels of ``sl`` (all of them, or one channel slice)
inline void BlockPlan::strip(int64_t b, int64_t y0, int64_t y1, int tid, Held& held,
                             const Slice& sl) {
  const int64_t a_begin = act_ptr[b * ho + y0], a_end = act_ptr[b * ho + y1];
  const int64_t n_a = a_end - a_begin;
  if (n_a == 0) return;
  const int64_t cw = sl.cw;  // channels of the expanded rows here (their row stride)
  const int64_t in_lo = std::max<int64_t>(0, stride * y0 - pad_top);
  const int64_t in_hi = std::min<int64_t>(h - 1, stride * (y1 - 1) - pad_top + 2);
  const int64_t e_begin = dil_ptr[b * h + in_lo], e_end = dil_ptr[b * h + in_hi + 1];
  // expand GEMM straight from the feature buffer (row list or contiguous rows), bias + ReLU6
  // Without an expand conv the depthwise reads the input rows in place (no gather copy).
  const float* ep = nullptr;
  if (has_expand) {
    float* em = e_base + tid * cap_e * c_e;
    int64_t from = e_begin;  // first dilated entry still to expand
    if (held.b == b && e_begin >= held.begin && e_begin <= held.end && held.end <= e_end) {
      if (e_begin > held.begin && held.end > e_begin)
        std::memmove(em, em + (e_begin - held.begin) * cw,
                     static_cast<size_t>((held.end - e_begin) * cw) * sizeof(float));
      from = held.end;
    }
    if (e_end > from)
      gemm_weights(sl.we16, sl.packed, sl.we, compute_all ? xp + from * c_in : xp,
                   compute_all ? nullptr : dil_rows + from, e_end - from, c_in, cw, sl.be, true,
                   em + (from - e_begin) * cw, c_in, cw);
    held = {b, e_begin, e_end};
    ep = em;
  }
  // masked depthwise: taps outside the image or the dilated set read zero. The 9 source rows
  // of an output are looked up once, then every channel vector accumulates its 9 taps in a
  // register (one store per vector, instead of a load/store per tap).
  float* dp = d_base + tid * cap_a * c_e;
  // input position p (rank rk != 0) -> its expanded row in ep, or its row of x in place
  auto source_row = [&](int64_t p, int32_t rk) -> const float* {
    return has_expand ? ep + (static_cast<int64_t>(rk) - 1 - e_begin) * cw : xp + p * c_in;
  };
  // Active outputs come in runs of consecutive columns of one row: one division per run, and
  // an interior run whose three input rows are dilated across its whole span (consecutive
  // dilated positions of a row have consecutive ranks, so the two ends decide) goes through
  // depthwise_run. Border outputs and partial windows take the per-output path.
  auto one_output = [&](int64_t k, int64_t cy, int64_t cx) {
    const float* src[9];
    int tap_of[9];
    const int n_taps = window_taps(cy, cx, h, w, [&](int64_t y, int64_t xx) -> const float* {
      const int64_t pos = (b * h + y) * w + xx;
      const int32_t rk = rank[pos];
      return rk == 0 ? nullptr : source_row(pos, rk);
    }, src, tap_of);
    depthwise_row(src, tap_of, n_taps, sl.wd, sl.bd, cw, dp + k * cw);
  };
  const int64_t step = stride * cw;
  for (int64_t k = 0; k < n_a;) {
    const int64_t o = act[a_begin + k];
    const int64_t r = o % (ho * wo);
    const int64_t oy = r / wo, ox = r % wo;
    int64_t len = 1;
    while (k + len < n_a && ox + len < wo && act[a_begin + k + len] == o + len) ++len;
    // window centres: input (oy*stride + 1 - pad_top, ox*stride + 1 - pad_left)
    const int64_t cy = oy * stride + 1 - pad_top, cx0 = ox * stride + 1 - pad_left;
    // interior columns of the run: 1 <= cx and cx + 1 < w
    int64_t j0 = cx0 >= 1 ? 0 : 1;
    int64_t j1 = len;
    while (j1 > j0 && cx0 + (j1 - 1) * stride + 1 >= w) --j1;
    bool full = cy >= 1 && cy + 1 < h && j1 > j0;
    const float* rows[3];
    for (int dy = 0; dy < 3 && full; ++dy) {
      const int64_t pl = (b * h + cy - 1 + dy) * w + cx0 + j0 * stride - 1;
      const int64_t pr = pl + (j1 - 1 - j0) * stride + 2;
      const int32_t rl = rank[pl];
      full = rl != 0 && rank[pr] == rl + (pr - pl);
      rows[dy] = source_row(pl, rl);
    }
    for (int64_t j = 0; j < len; ++j) {
      if (full && j == j0) {
        depthwise_run(rows, j1 - j0, step, sl.wd, sl.bd, cw, dp + (k + j0) * cw);
        j = j1 - 1;
        continue;
      }
      one_output(k + j, cy, cx0 + j * stride);
    }
    k += len;
  }
  gemm_weights(sl.wp16, sl.packed, sl.wp, dp, nullptr, n_a, cw, c_out, nullptr, false,
               sl.out + a_begin * c_out, cw, c_out);
}

// ---- 4. scatter(-add) with the project bias, zeros / fill, residual ReLU ------------------------
// Chunks of output positions: a non-residual block writes every position (zero where the mask
// is off, or the fill), a residual block adds at the active ones (and the fill at the others);
// compute_all on a gated block applies G here.
inline void BlockPlan::scatter_chunk(int64_t o0, int64_t o1) {
  if (compute_all) {
    for (int64_t o = o0; o < o1; ++o) store_row(o, o, hard[o]);
  } else {
    // entries of the (sorted) active list in [o0, o1); a non-residual block zeroes the gaps
    int64_t k = std::lower_bound(act, act + n_act, static_cast<int32_t>(o0)) - act;
    int64_t o = o0;
    for (; k < n_act && act[k] < o1; ++k) {
      skip_rows(o, act[k]);
      store_row(act[k], k, 1.0f);
      o = act[k] + 1;
    }
    skip_rows(o, o1);
  }
  if (residual && residual_relu) {
    float* xo = op + o0 * c_out;
    const int64_t n = (o1 - o0) * c_out;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) xo[i] = std::max(xo[i], 0.0f);
  }
}

inline void BlockPlan::store_row(int64_t o, int64_t k, float g) {
  float* dst = op + o * c_out;
  float* src = whole.out + k * c_out;
  // channel split: the project GEMM's K was cut between the slices; add their partial rows
  for (size_t s = 1; s < slices.size(); ++s) {
    const float* part = slices[s].out + k * c_out;
#pragma omp simd
    for (int64_t c = 0; c < c_out; ++c) src[c] += part[c];
  }
  if (residual) {
#pragma omp simd
    for (int64_t c = 0; c < c_out; ++c) dst[c] += g * (src[c] + bp[c]);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < c_out; ++c) dst[c] = g * (src[c] + bp[c]);
  }
  if (fp != nullptr && g != 1.0f) {
    const float u = 1.0f - g;
#pragma omp simd
    for (int64_t c = 0; c < c_out; ++c) dst[c] += u * fp[c];
  }
}

// Output rows [o0, o1) the mask skipped: zero or the fill (non-residual), + the fill (residual).
inline void BlockPlan::skip_rows(int64_t o0, int64_t o1) {
  if (o1 <= o0) return;
  if (fp == nullptr) {
    if (!residual) std::fill(op + o0 * c_out, op + o1 * c_out, 0.0f);
    return;
  }
  for (int64_t o = o0; o < o1; ++o) {
    float* dst = op + o * c_out;
    if (residual) {
#pragma omp simd
      for (int64_t c = 0; c < c_out; ++c) dst[c] += fp[c];
    } else {
      std::memcpy(dst, fp, static_cast<size_t>(c_out) * sizeof(float));
    }
  }
}

std::vector<int64_t> run_block(
    const at::Tensor& x, const at::Tensor& out, int64_t batch, int64_t h, int64_t w, int64_t stride,
    int64_t pad_top, int64_t pad_left, const at::Tensor& w_expand, const at::Tensor& b_expand,
    const at::Tensor& w_dw,
    const at::Tensor& b_dw, const at::Tensor& w_project, const at::Tensor& b_project,
    bool residual, bool residual_relu, int64_t gate, double dense_above,
    const at::Tensor& mask_weight,
    double mask_bias, double threshold, const at::Tensor& fixed_hard, const at::Tensor& hard,
    const at::Tensor& dilated, const at::Tensor& logits, const at::Tensor& soft, const at::Tensor& rank,
    const at::Tensor& act_rows, const at::Tensor& dil_rows, const at::Tensor& row_ptr,
    const at::Tensor& e_buf, const at::Tensor& d_buf, const at::Tensor& p_buf, int64_t strip_rows,
    const at::Tensor& fill, int64_t channel_slices) {
  BlockPlan plan(x, out, batch, h, w, stride, pad_top, pad_left, w_expand, b_expand, w_dw, b_dw, w_project, b_project,
                 residual, residual_relu, gate, dense_above, mask_weight, mask_bias, threshold,
                 fixed_hard, hard, dilated, logits, soft, rank, act_rows, dil_rows, row_ptr,
                 e_buf, d_buf, p_buf, strip_rows, fill, channel_slices,
                 /*pack_weights=*/false);
  std::vector<Step> steps;
  plan.append_steps(steps);
  run_steps(plan.threads, steps);
  return plan.counts();
}

}  // namespace spr_cpu
