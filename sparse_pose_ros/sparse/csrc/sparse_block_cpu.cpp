// Fused CPU execution of one gated inverted-residual block on flat channels-last buffers.
//
// One call does what the PyTorch-ops path does in ~30 dispatcher round trips:
//   mask unit (1x1 conv -> logit per output, threshold) or a given fixed mask,
//   receptive (dilated) mask, index lists, gather + expand GEMM + ReLU6,
//   masked depthwise 3x3 + ReLU6 on active outputs, project GEMM, scatter(-add) into the output.
// Buffers are passed in (owned and reused by the Python executor), so a frame allocates nothing
// of index or feature size. GEMMs go to at::addmm (MKL / oneDNN); everything else is plain loops
// the compiler vectorises (-O3 -march=native, built on the target machine).
//
// Layout: x is (B*H*W + 1, C_in) row-major, row p = (b*H + y)*W + x; the last row is zero.
// Weights: expand (C_in, C_e), depthwise (9, C_e) taps row-major (dy, dx), project (C_e, C_out).

#include <torch/extension.h>

#include <ATen/Parallel.h>

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
    at::Tensor& act_rows, at::Tensor& dil_rows, at::Tensor& g_buf, at::Tensor& e_buf,
    at::Tensor& d_buf, at::Tensor& p_buf) {
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
  int64_t n_dil_true = 0;
  for (int64_t p = 0; p < n_in; ++p) {
    if (dil_p[p] > 0.0f) {
      dil_rows_p[n_dil_true] = static_cast<int32_t>(p);
      rank_p[p] = static_cast<int32_t>(++n_dil_true);
    } else {
      rank_p[p] = 0;
    }
  }
  if (compute_all)
    for (int64_t p = 0; p < n_in; ++p) rank_p[p] = static_cast<int32_t>(p + 1);
  const int64_t n_act = compute_all ? n_out : n_hard;
  const int64_t n_dil = compute_all ? n_in : n_dil_true;
  if (!residual && !compute_all) out.zero_();
  if (n_act == 0) {
    if (residual && residual_relu) out.clamp_min_(0.0);
    return {n_hard, n_dil_true, compute_all ? 1 : 0};
  }
  const bool all_in = n_dil == n_in;

  // ---- 3. gather + expand GEMM + ReLU6 --------------------------------------------------------------
  at::Tensor e = e_buf.narrow(0, 0, n_dil);
  at::Tensor src;
  if (all_in) {
    src = x.narrow(0, 0, n_in);
  } else {
    float* gp = g_buf.data_ptr<float>();
    at::parallel_for(0, n_dil, 64, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k)
        std::copy_n(xp + static_cast<int64_t>(dil_rows_p[k]) * c_in, c_in, gp + k * c_in);
    });
    src = g_buf.narrow(0, 0, n_dil);
  }
  if (has_expand) {
    // Plain GEMM (no beta=1 bias broadcast pass), bias + ReLU6 fused into one epilogue pass.
    at::mm_out(e, src, w_expand);
    float* ep = e.data_ptr<float>();
    const float* be = b_expand.data_ptr<float>();
    at::parallel_for(0, n_dil, 64, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        float* row = ep + k * c_e;
#pragma omp simd
        for (int64_t c = 0; c < c_e; ++c) row[c] = relu6(row[c] + be[c]);
      }
    });
  } else {
    e.copy_(src);
  }

  // ---- 4. masked depthwise 3x3 on active outputs (taps outside the dilated set / image read 0) -------
  const float* ep = e.data_ptr<float>();
  const float* wd = w_dw.data_ptr<float>();
  const float* bd = b_dw.data_ptr<float>();
  float* dp = d_buf.data_ptr<float>();
  at::parallel_for(0, n_act, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t o = act_p[k];
      const int64_t b = o / (ho * wo), r = o % (ho * wo);
      const int64_t cy = (r / wo) * stride, cx = (r % wo) * stride;
      float* acc = dp + k * c_e;
      std::copy_n(bd, c_e, acc);
      for (int64_t t = 0; t < 9; ++t) {
        const int64_t y = cy + t / 3 - 1, xx = cx + t % 3 - 1;
        if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
        const int32_t rk = rank_p[(b * h + y) * w + xx];
        if (rk == 0) continue;
        const float* src_row = ep + static_cast<int64_t>(rk - 1) * c_e;
        const float* wt = wd + t * c_e;
#pragma omp simd
        for (int64_t c = 0; c < c_e; ++c) acc[c] += wt[c] * src_row[c];
      }
#pragma omp simd
      for (int64_t c = 0; c < c_e; ++c) acc[c] = relu6(acc[c]);
    }
  });

  // ---- 5. project GEMM, scatter(-add) -------------------------------------------------------------------
  at::Tensor d = d_buf.narrow(0, 0, n_act);
  at::Tensor p = p_buf.narrow(0, 0, n_act);
  at::mm_out(p, d, w_project);  // bias added in the scatter pass below
  const float* pp = p.data_ptr<float>();
  const float* bp = b_project.data_ptr<float>();
  at::parallel_for(0, n_act, 64, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t o = act_p[k];
      float* dst = op + o * c_out;
      const float* s = pp + k * c_out;
      // compute_all on a gated block: masked dense, G applied here (1 for computed rows else).
      const float g = compute_all ? hard_p[o] : 1.0f;
      if (residual) {
#pragma omp simd
        for (int64_t c = 0; c < c_out; ++c) dst[c] += g * (s[c] + bp[c]);
      } else {
#pragma omp simd
        for (int64_t c = 0; c < c_out; ++c) dst[c] = g * (s[c] + bp[c]);
      }
    }
  });
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
