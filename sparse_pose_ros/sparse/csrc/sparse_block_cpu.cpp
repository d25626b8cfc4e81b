// Fused CPU execution of one gated inverted-residual block on flat channels-last buffers.
//
// One call does what the PyTorch-ops path does in ~30 dispatcher round trips:
//   mask unit (1x1 conv -> logit per output, threshold) or a given fixed mask,
//   receptive (dilated) mask, index lists, gather + expand GEMM + ReLU6,
//   masked depthwise 3x3 + ReLU6 on active outputs, project GEMM, scatter(-add) into the output.
// Buffers are passed in (owned and reused by the Python executor), so a frame allocates nothing
// of index or feature size. GEMMs are the micro-kernel below; everything else is plain loops
// the compiler vectorises (-O3 -march=native, built on the target machine).
// GEMMs are our own register-blocked micro-kernel (AVX-512 when the build machine has it, a
// vectorisable loop otherwise): the matrices here are small (K, N <= a few hundred, a band of
// rows), where a library call's fixed cost (dispatcher, tensor views, packing) is comparable to
// the arithmetic, and the micro-kernel can read the gathered rows in place through the row list
// (no gather copy) and fuse bias + ReLU6 into its store.
//
// Layout: x is (B*H*W + 1, C_in) row-major, row p = (b*H + y)*W + x; the last row is zero.
// Weights: expand (C_in, C_e), depthwise (9, C_e) taps row-major (dy, dx), project (C_e, C_out).

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <omp.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace {

void check_buffer(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline float relu6(float v) { return std::min(std::max(v, 0.0f), 6.0f); }

// C (n x N, row stride N) = A (n x K) @ B (K x N) [+ bias] [ReLU6].
// Row r of A is a + rows[r] * K when ``rows`` is given (rows read in place from the feature
// buffer, no gather copy), else a + r * K.
#ifdef __AVX512F__
// Fully unrolled small loops keep the accumulators in registers (GCC otherwise spills them).
#define UNROLL _Pragma("GCC unroll 16")
// One MR x (16*NV) tile over k in [k0, k1): starts from zero (first K block) or from C, adds the
// bias and ReLU6 only after the last K block. K is blocked so a B slab stays in L1.
template <int MR, int NV>
inline void micro_tile(const float* const* ar, int64_t k0, int64_t k1, const float* B, int64_t N,
                       int64_t col0, __mmask16 tail, const float* bias, bool act, bool first,
                       bool last, float* C, const int64_t* crow) {
  __m512 acc[MR][NV];
  UNROLL
  for (int r = 0; r < MR; ++r)
    UNROLL
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = (v == NV - 1) ? tail : static_cast<__mmask16>(0xFFFF);
      acc[r][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, C + crow[r] + col0 + 16 * v);
    }
  const float* a[MR];
  UNROLL
  for (int r = 0; r < MR; ++r) a[r] = ar[r];
  for (int64_t k = k0; k < k1; ++k) {
    const float* bk = B + k * N + col0;
    __m512 bv[NV];
    UNROLL
    for (int v = 0; v < NV; ++v)
      bv[v] = (v == NV - 1) ? _mm512_maskz_loadu_ps(tail, bk + 16 * v) : _mm512_loadu_ps(bk + 16 * v);
    UNROLL
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r][k]);
      UNROLL
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  UNROLL
  for (int v = 0; v < NV; ++v) {
    const __mmask16 m = (v == NV - 1) ? tail : static_cast<__mmask16>(0xFFFF);
    const __m512 bb = (last && bias) ? _mm512_maskz_loadu_ps(m, bias + col0 + 16 * v) : zero;
    UNROLL
    for (int r = 0; r < MR; ++r) {
      __m512 o = last ? _mm512_add_ps(acc[r][v], bb) : acc[r][v];
      if (last && act) o = _mm512_min_ps(_mm512_max_ps(o, zero), six);
      _mm512_mask_storeu_ps(C + crow[r] + col0 + 16 * v, m, o);
    }
  }
}

template <int MR>
inline void row_tile(const float* const* ar, int64_t k0, int64_t k1, const float* B, int64_t N,
                     int64_t col0, const float* bias, bool act, bool first, bool last, float* C,
                     const int64_t* crow) {
  const int64_t left = N - col0;
  const int nv = static_cast<int>(std::min<int64_t>(4, (left + 15) / 16));
  const int64_t rem = left - 16 * (nv - 1);
  const __mmask16 tail = static_cast<__mmask16>(rem >= 16 ? 0xFFFF : ((1u << rem) - 1));
  switch (nv) {
    case 1: micro_tile<MR, 1>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    case 2: micro_tile<MR, 2>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    case 3: micro_tile<MR, 3>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    default: micro_tile<MR, 4>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
  }
}

void gemm(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* B, int64_t N,
          const float* bias, bool act, float* C) {
  constexpr int MR = 6;  // 6 x 4 zmm accumulators: 24 of the 32 vector registers
  constexpr int64_t KC = 128;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t k1 = std::min(K, k0 + KC);
    const bool first = k0 == 0, last = k1 == K;
    for (int64_t col0 = 0; col0 < N; col0 += 64) {
      const float* ar[MR];
      int64_t crow[MR];
      for (int64_t r0 = 0; r0 < n; r0 += MR) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, n - r0));
        for (int r = 0; r < mr; ++r) {
          ar[r] = a + (rows ? static_cast<int64_t>(rows[r0 + r]) : r0 + r) * K;
          crow[r] = (r0 + r) * N;
        }
        switch (mr) {
          case 1: row_tile<1>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow); break;
          case 2: row_tile<2>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow); break;
          case 3: row_tile<3>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow); break;
          case 4: row_tile<4>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow); break;
          case 5: row_tile<5>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow); break;
          default: row_tile<6>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow); break;
        }
      }
    }
  }
}
#else
void gemm(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* B, int64_t N,
          const float* bias, bool act, float* C) {
  for (int64_t r = 0; r < n; ++r) {
    const float* ar = a + (rows ? static_cast<int64_t>(rows[r]) : r) * K;
    float* c = C + r * N;
    if (bias) {
      std::copy_n(bias, N, c);
    } else {
      std::fill(c, c + N, 0.0f);
    }
    for (int64_t k = 0; k < K; ++k) {
      const float av = ar[k];
      const float* bk = B + k * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) c[j] += av * bk[j];
    }
    if (act) {
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) c[j] = relu6(c[j]);
    }
  }
}
#endif

// One output of the masked depthwise 3x3: acc = ReLU6(bias + sum over present taps of w[t] * src).
inline void depthwise_row(const float* const* src, const int* tap_of, int n_taps, const float* wd,
                          const float* bd, int64_t c_e, float* acc) {
#ifdef __AVX512F__
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  for (int64_t c = 0; c < c_e; c += 16) {
    const int64_t left = c_e - c;
    const __mmask16 m = static_cast<__mmask16>(left >= 16 ? 0xFFFF : ((1u << left) - 1));
    __m512 a = _mm512_maskz_loadu_ps(m, bd + c);
    for (int i = 0; i < n_taps; ++i)
      a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wd + tap_of[i] * c_e + c),
                          _mm512_maskz_loadu_ps(m, src[i] + c), a);
    _mm512_mask_storeu_ps(acc + c, m, _mm512_min_ps(_mm512_max_ps(a, zero), six));
  }
#else
  std::copy_n(bd, c_e, acc);
  for (int i = 0; i < n_taps; ++i) {
    const float* s = src[i];
    const float* wt = wd + tap_of[i] * c_e;
#pragma omp simd
    for (int64_t c = 0; c < c_e; ++c) acc[c] += wt[c] * s[c];
  }
#pragma omp simd
  for (int64_t c = 0; c < c_e; ++c) acc[c] = relu6(acc[c]);
#endif
}

}  // namespace

// Returns (n_active, n_dilated, computed_all): the mask's counts (not the executed rows when
// every row was computed) and whether the block ran densely. See the Python wrapper (cpu_kernel.py) for argument meanings.
std::vector<int64_t> run_block(
    const at::Tensor& x, const at::Tensor& out, int64_t batch, int64_t h, int64_t w, int64_t stride,
    const at::Tensor& w_expand, const at::Tensor& b_expand, const at::Tensor& w_dw,
    const at::Tensor& b_dw, const at::Tensor& w_project, const at::Tensor& b_project,
    bool residual, bool residual_relu, int64_t gate, double dense_above,
    const at::Tensor& mask_weight,
    double mask_bias, double threshold, const at::Tensor& fixed_hard, const at::Tensor& hard,
    const at::Tensor& dilated, const at::Tensor& logits, const at::Tensor& soft, const at::Tensor& rank,
    const at::Tensor& act_rows, const at::Tensor& dil_rows, const at::Tensor& row_ptr, const at::Tensor& g_buf,
    const at::Tensor& e_buf, const at::Tensor& d_buf, const at::Tensor& p_buf, int64_t strip_rows) {
  check_buffer(x, "x");
  check_buffer(out, "out");
  TORCH_CHECK(stride == 1 || stride == 2, "stride must be 1 or 2");
  const int64_t ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1;
  const int64_t n_in = batch * h * w, n_out = batch * ho * wo;
  const int64_t c_in = x.size(1);
  const bool has_expand = w_expand.defined() && w_expand.numel() > 0;
  const int64_t c_e = w_dw.size(1);
  const int64_t c_out = w_project.size(1);
  TORCH_CHECK(x.size(0) == n_in + 1, "x must have B*H*W + 1 rows");
  TORCH_CHECK(out.size(0) == n_out + 1 && out.size(1) == c_out, "out has the wrong shape");
  TORCH_CHECK(!residual || out.data_ptr() == x.data_ptr(), "residual blocks update x in place");
  TORCH_CHECK(has_expand || c_e == c_in, "without expand, C_e must equal C_in");

  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* hard_p = hard.data_ptr<float>();
  float* dil_p = dilated.data_ptr<float>();
  int32_t* rank_p = rank.data_ptr<int32_t>();
  int32_t* act_p = act_rows.data_ptr<int32_t>();
  int32_t* dil_rows_p = dil_rows.data_ptr<int32_t>();

  // Every parallel region of the kernel uses the same team size (the scratch's thread count):
  // alternating team sizes with torch's own pool makes libgomp rebuild its team (ms per call).
  const int64_t threads = g_buf.size(0);
  // ---- 1. mask: none (ungated), learned (1x1 conv logit >= threshold) or fixed -------------------
  TORCH_CHECK(gate >= 0 && gate <= 2, "gate must be 0 (none), 1 (learned) or 2 (fixed)");
  if (gate == 0) {
    std::fill(hard_p, hard_p + n_out, 1.0f);
  } else if (gate == 2) {
    TORCH_CHECK(fixed_hard.numel() == n_out, "fixed mask has the wrong size");
    const float* f = fixed_hard.data_ptr<float>();
    float* lg = logits.data_ptr<float>();
    float* sp = soft.data_ptr<float>();
    for (int64_t i = 0; i < n_out; ++i) {
      hard_p[i] = f[i] > 0.0f ? 1.0f : 0.0f;
      lg[i] = hard_p[i] * 2.0f - 1.0f;
      sp[i] = hard_p[i];
    }
  } else {
    const float* mw = mask_weight.data_ptr<float>();
    float* lg = logits.data_ptr<float>();
    float* sp = soft.data_ptr<float>();
    const float mb = static_cast<float>(mask_bias), thr = static_cast<float>(threshold);
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
    for (int64_t o = 0; o < n_out; ++o) {
      {
        const int64_t b = o / (ho * wo), r = o % (ho * wo);
        const int64_t iy = (r / wo) * stride, ix = (r % wo) * stride;
        const float* row = xp + ((b * h + iy) * w + ix) * c_in;
        float acc = 0.0f;
        for (int64_t c = 0; c < c_in; ++c) acc += row[c] * mw[c];
        acc += mb;
        lg[o] = acc;
        sp[o] = 1.0f / (1.0f + std::exp(-acc));
        hard_p[o] = acc >= thr ? 1.0f : 0.0f;
      }
    }
  }

  // ---- 2. receptive mask, active list, dilated list + rank map ------------------------------------
  // Per-stage policy: above ``dense_above`` (fraction of active outputs) every row is computed
  // and the mask is applied at the scatter (masked dense), because there dense is faster.
  // The true counts (for diagnostics) are returned either way.
  int64_t n_hard = 0;
  for (int64_t o = 0; o < n_out; ++o) n_hard += hard_p[o] > 0.0f ? 1 : 0;
  const bool compute_all = static_cast<double>(n_hard) > dense_above * static_cast<double>(n_out);
  std::fill(dil_p, dil_p + n_in, 0.0f);
  int64_t k_act = 0;
  for (int64_t o = 0; o < n_out; ++o) {
    if (compute_all) act_p[o] = static_cast<int32_t>(o);
    if (hard_p[o] <= 0.0f) continue;
    if (!compute_all) act_p[k_act++] = static_cast<int32_t>(o);
    const int64_t b = o / (ho * wo), r = o % (ho * wo);
    const int64_t cy = (r / wo) * stride, cx = (r % wo) * stride;
    for (int64_t y = std::max<int64_t>(cy - 1, 0); y <= std::min<int64_t>(cy + 1, h - 1); ++y)
      for (int64_t xx = std::max<int64_t>(cx - 1, 0); xx <= std::min<int64_t>(cx + 1, w - 1); ++xx)
        dil_p[(b * h + y) * w + xx] = 1.0f;
  }
  // Row pointers: dil_ptr[r] / act_ptr[r] = list entries before combined row r = b*H + y. Both
  // lists are in row-major order, so the entries of any band of rows form one contiguous range.
  int32_t* dil_ptr = row_ptr.data_ptr<int32_t>();
  int32_t* act_ptr = dil_ptr + batch * h + 1;
  int64_t n_dil_true = 0;
  for (int64_t r = 0; r < batch * h; ++r) {
    dil_ptr[r] = static_cast<int32_t>(compute_all ? r * w : n_dil_true);
    for (int64_t p = r * w; p < (r + 1) * w; ++p) {
      if (dil_p[p] > 0.0f) {
        if (!compute_all) dil_rows_p[n_dil_true] = static_cast<int32_t>(p);
        rank_p[p] = static_cast<int32_t>(++n_dil_true);
      } else {
        rank_p[p] = 0;
      }
    }
  }
  dil_ptr[batch * h] = static_cast<int32_t>(compute_all ? n_in : n_dil_true);
  if (compute_all)
    for (int64_t p = 0; p < n_in; ++p) rank_p[p] = static_cast<int32_t>(p + 1);
  {
    int64_t k = 0;
    for (int64_t r = 0; r < batch * ho; ++r) {
      act_ptr[r] = static_cast<int32_t>(k);
      if (compute_all) {
        k += wo;
      } else {
        for (int64_t o = r * wo; o < (r + 1) * wo; ++o) k += hard_p[o] > 0.0f ? 1 : 0;
      }
    }
    act_ptr[batch * ho] = static_cast<int32_t>(k);
  }
  const int64_t n_act = compute_all ? n_out : n_hard;
  if (!residual && !compute_all) std::fill(op, op + out.numel(), 0.0f);  // no ATen pool
  if (n_act == 0) {
    if (residual && residual_relu)
      for (int64_t i = 0; i < n_in * c_out; ++i) op[i] = std::max(op[i], 0.0f);
    return {n_hard, n_dil_true, compute_all ? 1 : 0};
  }
  // ---- 3-5. strips of output rows: gather -> expand GEMM -> depthwise -> project GEMM ----------
  // Working on bands of ``strip_rows`` output rows keeps each band's expanded rows in L2 (the
  // whole-image expand output of a 128x128 block is several MB) and gives one parallel region
  // per block; inside it MKL runs single-threaded on per-thread scratch. The rows shared by
  // two bands (the 3x3 halo) are expanded by both. Results go to p_buf; the scatter happens
  // after every band has read its input, because residual blocks update x in place.
  const int64_t cap_e = g_buf.size(1), cap_a = d_buf.size(1);
  TORCH_CHECK(strip_rows >= 1, "strip_rows must be >= 1");
  TORCH_CHECK(std::min<int64_t>(h, stride * strip_rows + 2) * w <= cap_e &&
                  strip_rows * wo <= cap_a,
              "scratch buffers too small for strip_rows");
  const int64_t strips_per_img = (ho + strip_rows - 1) / strip_rows;
  const int64_t n_strips = batch * strips_per_img;
  const float* we = has_expand ? w_expand.data_ptr<float>() : nullptr;
  const float* be = has_expand ? b_expand.data_ptr<float>() : nullptr;
  const float* wd = w_dw.data_ptr<float>();
  const float* bd = b_dw.data_ptr<float>();
  const float* bp = b_project.data_ptr<float>();
  const float* wp = w_project.data_ptr<float>();
  float* pp = p_buf.data_ptr<float>();
  float* g_base = g_buf.data_ptr<float>();
  float* e_base = e_buf.data_ptr<float>();
  float* d_base = d_buf.data_ptr<float>();
  TORCH_CHECK(g_buf.is_contiguous() && e_buf.is_contiguous() && d_buf.is_contiguous() &&
                  p_buf.is_contiguous() && w_project.is_contiguous() && w_dw.is_contiguous(),
              "scratch buffers and weights must be contiguous");
  TORCH_CHECK(!has_expand || w_expand.is_contiguous(), "w_expand must be contiguous");
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(threads))
  for (int64_t si = 0; si < n_strips; ++si) {
    const int tid = omp_get_thread_num();
    const int64_t b = si / strips_per_img;
    const int64_t y0 = (si % strips_per_img) * strip_rows;
    const int64_t y1 = std::min(y0 + strip_rows, ho);
    const int64_t a_begin = act_ptr[b * ho + y0], a_end = act_ptr[b * ho + y1];
    const int64_t n_a = a_end - a_begin;
    if (n_a == 0) continue;
    const int64_t in_lo = std::max<int64_t>(0, stride * y0 - 1);
    const int64_t in_hi = std::min<int64_t>(h - 1, stride * (y1 - 1) + 1);
    const int64_t e_begin = dil_ptr[b * h + in_lo], e_end = dil_ptr[b * h + in_hi + 1];
    const int64_t n_e = e_end - e_begin;
    // expand GEMM straight from the feature buffer (row list or contiguous rows), bias + ReLU6
    const float* ep;
    if (has_expand) {
      float* em = e_base + tid * cap_e * c_e;
      gemm(compute_all ? xp + e_begin * c_in : xp, compute_all ? nullptr : dil_rows_p + e_begin,
           n_e, c_in, we, c_e, be, true, em);
      ep = em;
    } else if (compute_all) {
      ep = xp + e_begin * c_in;
    } else {
      float* gp = g_base + tid * cap_e * c_in;
      for (int64_t k = 0; k < n_e; ++k)
        std::copy_n(xp + static_cast<int64_t>(dil_rows_p[e_begin + k]) * c_in, c_in, gp + k * c_in);
      ep = gp;
    }
    // masked depthwise: taps outside the image or the dilated set read zero. The 9 source rows
    // of an output are looked up once, then every channel vector accumulates its 9 taps in a
    // register (one store per vector, instead of a load/store per tap).
    float* dp = d_base + tid * cap_a * c_e;
    for (int64_t k = 0; k < n_a; ++k) {
      const int64_t o = act_p[a_begin + k];
      const int64_t r = o % (ho * wo);
      const int64_t cy = (r / wo) * stride, cx = (r % wo) * stride;
      const float* src[9];
      int n_taps = 0;
      int tap_of[9];
      for (int t = 0; t < 9; ++t) {
        const int64_t y = cy + t / 3 - 1, xx = cx + t % 3 - 1;
        if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
        const int32_t rk = rank_p[(b * h + y) * w + xx];
        if (rk == 0) continue;
        src[n_taps] = ep + (static_cast<int64_t>(rk) - 1 - e_begin) * c_e;
        tap_of[n_taps++] = t;
      }
      float* acc = dp + k * c_e;
      depthwise_row(src, tap_of, n_taps, wd, bd, c_e, acc);
    }
    gemm(dp, nullptr, n_a, c_e, wp, c_out, nullptr, false, pp + a_begin * c_out);
  }

  // scatter(-add) with the project bias; compute_all on a gated block applies G here
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
  for (int64_t k = 0; k < n_act; ++k) {
    const int64_t o = act_p[k];
    float* dst = op + o * c_out;
    const float* src = pp + k * c_out;
    const float g = compute_all ? hard_p[o] : 1.0f;
    if (residual) {
#pragma omp simd
      for (int64_t c = 0; c < c_out; ++c) dst[c] += g * (src[c] + bp[c]);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < c_out; ++c) dst[c] = g * (src[c] + bp[c]);
    }
  }
  if (residual && residual_relu) {
    float* xo = op;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
    for (int64_t i = 0; i < n_in * c_out; ++i) xo[i] = std::max(xo[i], 0.0f);
  }
  return {n_hard, n_dil_true, compute_all ? 1 : 0};
}

// Stem: dense 3x3 conv (padding 1, stride s, BN folded) + ReLU6 from the NCHW image straight
// into the flat channels-last feature buffer the first block reads (no separate layout copy).
// x: (B, C_in, H, W) contiguous; w: (C_in*9, C_out) rows ordered (c, ky, kx); out: (B*Ho*Wo + 1,
// C_out), last row left as is (the zero row). Per output row: im2col (W_o x 27) + the GEMM
// micro-kernel with the bias + ReLU6 epilogue.
void stem_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& out,
               int64_t stride, int64_t threads) {
  check_buffer(x, "x");
  check_buffer(w, "w");
  check_buffer(bias, "bias");
  check_buffer(out, "out");
  TORCH_CHECK(x.dim() == 4, "x must be (B, C, H, W)");
  const int64_t batch = x.size(0), c_in = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t ho = (h - 1) / stride + 1, wo = (wd - 1) / stride + 1;
  const int64_t c_out = w.size(1);
  TORCH_CHECK(w.size(0) == c_in * 9, "stem weight must be (C_in*9, C_out)");
  TORCH_CHECK(bias.numel() == c_out, "stem bias must have C_out entries");
  TORCH_CHECK(out.size(0) == batch * ho * wo + 1 && out.size(1) == c_out, "stem out has the wrong shape");
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t k_taps = c_in * 9;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    std::vector<float> patch(static_cast<size_t>(wo * k_taps));  // one output row's im2col
#pragma omp for schedule(static)
    for (int64_t row = 0; row < batch * ho; ++row) {
      const int64_t b = row / ho, oy = row % ho;
      const float* img = xp + b * c_in * h * wd;
      for (int64_t ox = 0; ox < wo; ++ox) {
        float* pr = patch.data() + ox * k_taps;
        for (int64_t c = 0; c < c_in; ++c)
          for (int64_t ky = 0; ky < 3; ++ky) {
            const int64_t iy = oy * stride + ky - 1;
            for (int64_t kx = 0; kx < 3; ++kx) {
              const int64_t ix = ox * stride + kx - 1;
              pr[(c * 3 + ky) * 3 + kx] =
                  (iy < 0 || iy >= h || ix < 0 || ix >= wd) ? 0.0f : img[(c * h + iy) * wd + ix];
            }
          }
      }
      gemm(patch.data(), nullptr, wo, k_taps, wp, c_out, bp, true, op + row * wo * c_out);
    }
  }
}

// A whole backbone as one call: the stem and every block's run_block arguments are recorded once
// per (shape, threads, masks, thresholds) by the Python executor and replayed per frame, so a frame
// costs one Python -> C++ transition instead of one per block (~15 us each, comparable to a
// whole low-resolution block at density 0.25).
class BlockSequence {
 public:
  void set_stem(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& out,
                int64_t stride, int64_t threads) {
    stem_ = [=](const at::Tensor& x) mutable { stem_conv(x, w, bias, out, stride, threads); };
  }
  void add(const at::Tensor& x, const at::Tensor& out, int64_t batch, int64_t h, int64_t w,
           int64_t stride, const at::Tensor& w_expand, const at::Tensor& b_expand,
           const at::Tensor& w_dw, const at::Tensor& b_dw, const at::Tensor& w_project,
           const at::Tensor& b_project, bool residual, bool residual_relu, int64_t gate,
           double dense_above, const at::Tensor& mask_weight, double mask_bias, double threshold,
           const at::Tensor& fixed_hard, const at::Tensor& hard, const at::Tensor& dilated,
           const at::Tensor& logits, const at::Tensor& soft, const at::Tensor& rank,
           const at::Tensor& act_rows, const at::Tensor& dil_rows, const at::Tensor& row_ptr,
           const at::Tensor& g_buf, const at::Tensor& e_buf, const at::Tensor& d_buf,
           const at::Tensor& p_buf, int64_t strip_rows) {
    blocks_.push_back([=]() mutable {
      return run_block(x, out, batch, h, w, stride, w_expand, b_expand, w_dw, b_dw, w_project,
                       b_project, residual, residual_relu, gate, dense_above, mask_weight,
                       mask_bias, threshold, fixed_hard, hard, dilated, logits, soft, rank,
                       act_rows, dil_rows, row_ptr, g_buf, e_buf, d_buf, p_buf, strip_rows);
    });
  }
  // Runs stem + blocks; returns (n_active, n_dilated, ran_dense) of every block, flattened.
  std::vector<int64_t> run(const at::Tensor& x) {
    TORCH_CHECK(static_cast<bool>(stem_), "BlockSequence: set_stem was not called");
    stem_(x);
    std::vector<int64_t> counts;
    counts.reserve(3 * blocks_.size());
    for (auto& blk : blocks_) {
      const auto c = blk();
      counts.insert(counts.end(), c.begin(), c.end());
    }
    return counts;
  }
  int64_t size() const { return static_cast<int64_t>(blocks_.size()); }

 private:
  std::function<void(const at::Tensor&)> stem_;
  std::vector<std::function<std::vector<int64_t>()>> blocks_;
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("run_block", &run_block, "Fused gather-scatter inverted-residual block (CPU)");
  pybind11::class_<BlockSequence>(m, "BlockSequence")
      .def(pybind11::init<>())
      .def("set_stem", &BlockSequence::set_stem)
      .def("add", &BlockSequence::add)
      .def("run", &BlockSequence::run)
      .def("__len__", &BlockSequence::size);
  m.def("stem_conv", &stem_conv, "Dense 3x3 stem conv + ReLU6 into a channels-last buffer (CPU)");
}
