// Fused CPU execution of one gated inverted-residual block on flat channels-last buffers.
//
// One call does what the PyTorch-ops path does in ~30 dispatcher round trips:
//   mask unit (1x1 conv -> logit per output, threshold) or a given fixed mask,
//   receptive (dilated) mask, index lists, gather + expand GEMM + ReLU6,
//   masked depthwise 3x3 + ReLU6 on active outputs, project GEMM, scatter(-add) into the output.
// Buffers are passed in (owned and reused by the Python executor), so a frame allocates nothing
// of index or feature size. GEMMs go to at::mm (MKL); everything else is plain loops
// the compiler vectorises (-O3 -march=native, built on the target machine).
//
// Layout: x is (B*H*W + 1, C_in) row-major, row p = (b*H + y)*W + x; the last row is zero.
// Weights: expand (C_in, C_e), depthwise (9, C_e) taps row-major (dy, dx), project (C_e, C_out).

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

void check_buffer(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline float relu6(float v) { return std::min(std::max(v, 0.0f), 6.0f); }

}  // namespace

// Returns (n_active, n_dilated, computed_all): the mask's counts (not the executed rows when
// every row was computed) and whether the block ran densely. See the Python wrapper (cpu_kernel.py) for argument meanings.
std::vector<int64_t> run_block(
    const at::Tensor& x, at::Tensor& out, int64_t batch, int64_t h, int64_t w, int64_t stride,
    const at::Tensor& w_expand, const at::Tensor& b_expand, const at::Tensor& w_dw,
    const at::Tensor& b_dw, const at::Tensor& w_project, const at::Tensor& b_project,
    bool residual, bool residual_relu, int64_t gate, double dense_above,
    const at::Tensor& mask_weight,
    double mask_bias, double threshold, const at::Tensor& fixed_hard, at::Tensor& hard,
    at::Tensor& dilated, at::Tensor& logits, at::Tensor& soft, at::Tensor& rank,
    at::Tensor& act_rows, at::Tensor& dil_rows, at::Tensor& row_ptr, at::Tensor& g_buf,
    at::Tensor& e_buf, at::Tensor& d_buf, at::Tensor& p_buf, int64_t strip_rows) {
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
    at::parallel_for(0, n_out, 256, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
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
    });
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
  if (!residual && !compute_all) out.zero_();
  if (n_act == 0) {
    if (residual && residual_relu) out.clamp_min_(0.0);
    return {n_hard, n_dil_true, compute_all ? 1 : 0};
  }
  // ---- 3-5. strips of output rows: gather -> expand GEMM -> depthwise -> project GEMM ----------
  // Working on bands of ``strip_rows`` output rows keeps each band's expanded rows in L2 (the
  // whole-image expand output of a 128x128 block is several MB) and gives one parallel region
  // per block; inside it MKL runs single-threaded on per-thread scratch. The rows shared by
  // two bands (the 3x3 halo) are expanded by both. Results go to p_buf; the scatter happens
  // after every band has read its input, because residual blocks update x in place.
  const int64_t threads = g_buf.size(0);
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
  float* pp = p_buf.data_ptr<float>();
  (void)we;
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
    // gather (contiguous rows need no copy when every position is computed)
    at::Tensor g;
    if (compute_all) {
      g = x.narrow(0, e_begin, n_e);
    } else {
      float* gp = g_buf[tid].data_ptr<float>();
      for (int64_t k = 0; k < n_e; ++k)
        std::copy_n(xp + static_cast<int64_t>(dil_rows_p[e_begin + k]) * c_in, c_in, gp + k * c_in);
      g = g_buf[tid].narrow(0, 0, n_e);
    }
    const float* ep;
    if (has_expand) {
      at::Tensor e = e_buf[tid].narrow(0, 0, n_e);
      at::mm_out(e, g, w_expand);
      float* em = e.data_ptr<float>();
      for (int64_t k = 0; k < n_e; ++k) {
        float* row = em + k * c_e;
#pragma omp simd
        for (int64_t c = 0; c < c_e; ++c) row[c] = relu6(row[c] + be[c]);
      }
      ep = em;
    } else {
      ep = g.data_ptr<float>();
    }
    // masked depthwise: taps outside the image or the dilated set read zero
    float* dp = d_buf[tid].data_ptr<float>();
    for (int64_t k = 0; k < n_a; ++k) {
      const int64_t o = act_p[a_begin + k];
      const int64_t r = o % (ho * wo);
      const int64_t cy = (r / wo) * stride, cx = (r % wo) * stride;
      float* acc = dp + k * c_e;
      std::copy_n(bd, c_e, acc);
      for (int64_t t = 0; t < 9; ++t) {
        const int64_t y = cy + t / 3 - 1, xx = cx + t % 3 - 1;
        if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
        const int32_t rk = rank_p[(b * h + y) * w + xx];
        if (rk == 0) continue;
        const float* src_row = ep + (static_cast<int64_t>(rk) - 1 - e_begin) * c_e;
        const float* wt = wd + t * c_e;
#pragma omp simd
        for (int64_t c = 0; c < c_e; ++c) acc[c] += wt[c] * src_row[c];
      }
#pragma omp simd
      for (int64_t c = 0; c < c_e; ++c) acc[c] = relu6(acc[c]);
    }
    at::Tensor pv = p_buf.narrow(0, a_begin, n_a);
    at::mm_out(pv, d_buf[tid].narrow(0, 0, n_a), w_project);
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
    at::parallel_for(0, n_in * c_out, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) xo[i] = std::max(xo[i], 0.0f);
    });
  }
  return {n_hard, n_dil_true, compute_all ? 1 : 0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("run_block", &run_block, "Fused gather-scatter inverted-residual block (CPU)");
}
