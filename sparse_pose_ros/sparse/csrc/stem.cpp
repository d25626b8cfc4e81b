// The dense stem (stem.h): interior pixels through stem_tile, the border through im2col + GEMM.
#include "stem.h"

#include <algorithm>

#include "simd_gemm.h"

namespace spr_cpu {

#ifdef __AVX512F__
// Stem interior: 6 output pixels of one row whose 3x3 windows lie inside the image. The image
// values are broadcast straight from the NCHW planes (no im2col copy); 6 x NV accumulators.
template <int NV, int MR>
inline void stem_tile(const float* img, int64_t plane, int64_t wd, int64_t c_in, int64_t iy0,
                      int64_t ix0, int64_t stride, const float* w, const float* bias,
                      int64_t c_out, float* out) {
  const int64_t rem = c_out - 16 * (NV - 1);
  const __mmask16 tail = lanes(rem);
  __m512 acc[MR][NV];
  UNROLL
  for (int v = 0; v < NV; ++v) {
    const __mmask16 m = (v == NV - 1) ? tail : static_cast<__mmask16>(0xFFFF);
    const __m512 bb = _mm512_maskz_loadu_ps(m, bias + 16 * v);
    UNROLL
    for (int r = 0; r < MR; ++r) acc[r][v] = bb;
  }
  for (int64_t c = 0; c < c_in; ++c)
    for (int64_t ky = 0; ky < 3; ++ky) {
      const float* rp = img + c * plane + (iy0 + ky) * wd + ix0;
      for (int64_t kx = 0; kx < 3; ++kx) {
        const float* bk = w + ((c * 3 + ky) * 3 + kx) * c_out;
        __m512 bv[NV];
        UNROLL
        for (int v = 0; v < NV; ++v)
          bv[v] = (v == NV - 1) ? _mm512_maskz_loadu_ps(tail, bk + 16 * v) : _mm512_loadu_ps(bk + 16 * v);
        UNROLL
        for (int r = 0; r < MR; ++r) {
          const __m512 av = _mm512_set1_ps(rp[r * stride + kx]);
          UNROLL
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
      }
    }
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  UNROLL
  for (int r = 0; r < MR; ++r)
    UNROLL
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = (v == NV - 1) ? tail : static_cast<__mmask16>(0xFFFF);
      _mm512_mask_storeu_ps(out + r * c_out + 16 * v, m,
                            _mm512_min_ps(_mm512_max_ps(acc[r][v], zero), six));
    }
}
#endif

StemPlan::StemPlan(const at::Tensor& w_, const at::Tensor& bias_, const at::Tensor& out_, int64_t stride_,
                   int64_t pad_top_, int64_t pad_left_, int64_t threads_)
    : w(w_), bias(bias_), out(out_), stride(stride_), pad_top(pad_top_), pad_left(pad_left_),
      threads(std::max<int64_t>(1, threads_)) {
  check_buffer(w, "w");
  check_buffer(bias, "bias");
  check_buffer(out, "out");
  TORCH_CHECK(stride == 1 || stride == 2, "stem stride must be 1 or 2");
  TORCH_CHECK(pad_top >= 0 && pad_top <= 1 && pad_left >= 0 && pad_left <= 1,
              "stem pad before must be 0 or 1");
  c_out = w.size(1);
  TORCH_CHECK(bias.numel() == c_out, "stem bias must have C_out entries");
  TORCH_CHECK(out.size(1) == c_out, "stem out has the wrong width");
  patches.resize(static_cast<size_t>(threads));
}

// Before the frame (caller only): checks the image and sizes the patch buffers.
void StemPlan::prepare(const at::Tensor& x_) {
  check_buffer(x_, "x");
  TORCH_CHECK(x_.dim() == 4, "x must be (B, C, H, W)");
  x = x_;
  batch = x.size(0);
  c_in = x.size(1);
  h = x.size(2);
  wd = x.size(3);
  ho = (h - 1) / stride + 1;
  wo = (wd - 1) / stride + 1;
  TORCH_CHECK(w.size(0) == c_in * 9, "stem weight must be (C_in*9, C_out)");
  TORCH_CHECK(out.size(0) == batch * ho * wo + 1, "stem out has the wrong shape");
  for (auto& p : patches) p.resize(static_cast<size_t>(wo * c_in * 9));
}

Step StemPlan::step() {
  return {batch * ho, 1, false, [this](int64_t row, int64_t, int tid) { run_row(row, tid); }};
}

inline void StemPlan::run_row(int64_t row, int tid) {
  const int64_t oy = row % ho;
  int64_t c0 = 0, c1 = wo;  // the columns to compute
  if (!window.empty()) {
    const int64_t* win = window.data() + 4 * (row / ho);
    if (oy < win[0] || oy >= win[1]) return;
    c0 = win[2];
    c1 = win[3];
  }
  if (c1 <= c0) return;
#ifdef __AVX512F__
  // interior pixels of interior rows: tiles of 12 or 6 read the image planes directly
  if (oy * stride - pad_top >= 0 && oy * stride - pad_top + 2 <= h - 1 && c_out <= 64) {
    // interior columns: ox * stride - pad_left >= 0 and ox * stride - pad_left + 2 <= wd - 1
    const int64_t lo = std::min<int64_t>(pad_left, wo);
    const int64_t last = wd - 3 + pad_left;  // largest interior ox * stride
    const int64_t hi0 = std::min<int64_t>(wo, std::max<int64_t>(lo, last >= 0 ? last / stride + 1 : 0));
    // the interior columns inside [c0, c1)
    const int64_t ilo = std::min(std::max<int64_t>(lo, c0), c1);
    const int64_t hi = std::max(ilo, std::min(hi0, c1));
    const float* img = x.data_ptr<float>() + (row / ho) * c_in * h * wd;
    float* orow = out.data_ptr<float>() + row * wo * c_out;
    const float* wp = w.data_ptr<float>();
    const float* bp = bias.data_ptr<float>();
    const int nv = static_cast<int>((c_out + 15) / 16);
    // tiles of 12 pixels while 12 x NV accumulators fit the 32 vector registers (NV <= 2),
    // then of 6: the B vectors are loaded once per 12 (or 6) pixels
    int64_t ox = ilo;
    auto tile = [&](auto nv_c, auto mr_c) {
      constexpr int kNV = decltype(nv_c)::value, kMR = decltype(mr_c)::value;
      for (; ox + kMR <= hi; ox += kMR)
        stem_tile<kNV, kMR>(img, h * wd, wd, c_in, oy * stride - pad_top, ox * stride - pad_left,
                            stride, wp, bp, c_out, orow + ox * c_out);
    };
    using I1 = std::integral_constant<int, 1>;
    using I2 = std::integral_constant<int, 2>;
    using I3 = std::integral_constant<int, 3>;
    using I4 = std::integral_constant<int, 4>;
    using R6 = std::integral_constant<int, 6>;
    using R12 = std::integral_constant<int, 12>;
    switch (nv) {
      case 1: tile(I1{}, R12{}); tile(I1{}, R6{}); break;
      case 2: tile(I2{}, R12{}); tile(I2{}, R6{}); break;
      case 3: tile(I3{}, R6{}); break;
      default: tile(I4{}, R6{}); break;
    }
    const int64_t fast_end = ox;
    patch_range(row, c0, ilo, tid);
    patch_range(row, fast_end, c1, tid);
    return;
  }
#endif
  patch_range(row, c0, c1, tid);
}

// pixels [ox0, ox1) of one output row: im2col (zero padding) + the GEMM micro-kernel
inline void StemPlan::patch_range(int64_t row, int64_t ox0, int64_t ox1, int tid) {
  if (ox1 <= ox0) return;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t k_taps = c_in * 9;
  float* patch = patches[static_cast<size_t>(tid)].data();
  const int64_t b = row / ho, oy = row % ho;
  const float* img = xp + b * c_in * h * wd;
  for (int64_t ox = ox0; ox < ox1; ++ox) {
    float* pr = patch + (ox - ox0) * k_taps;
    for (int64_t c = 0; c < c_in; ++c)
      for (int64_t ky = 0; ky < 3; ++ky) {
        const int64_t iy = oy * stride + ky - pad_top;
        for (int64_t kx = 0; kx < 3; ++kx) {
          const int64_t ix = ox * stride + kx - pad_left;
          pr[(c * 3 + ky) * 3 + kx] =
              (iy < 0 || iy >= h || ix < 0 || ix >= wd) ? 0.0f : img[(c * h + iy) * wd + ix];
        }
      }
  }
  gemm(patch, nullptr, ox1 - ox0, k_taps, wp, c_out, bp, true, op + (row * wo + ox0) * c_out);
}

void stem_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& out,
               int64_t stride, int64_t pad_top, int64_t pad_left, int64_t threads) {
  StemPlan stem(w, bias, out, stride, pad_top, pad_left, threads);
  stem.prepare(x);
  run_steps(stem.threads, {stem.step()});
}

}  // namespace spr_cpu
