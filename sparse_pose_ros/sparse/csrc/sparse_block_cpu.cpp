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

#include <pthread.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

void check_buffer(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline float relu6(float v) { return std::min(std::max(v, 0.0f), 6.0f); }

// a . b over n floats (the mask unit's 1x1 conv to one logit)
inline float dot(const float* a, const float* b, int64_t n) {
#ifdef __AVX512F__
  __m512 acc = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), acc);
  if (c < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - c)) - 1u);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), acc);
  }
  return _mm512_reduce_add_ps(acc);
#else
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
#endif
}

// C (n x N, row stride ldc) = A (n x K) @ B (K x N) [+ bias] [ReLU6].
// Row r of A is a + rows[r] * lda when ``rows`` is given (rows read in place from the feature
// buffer, no gather copy), else a + r * lda. lda / ldc <= 0 mean K / N (packed rows).
#ifdef __AVX512F__
// mask of the first min(n, 16) lanes (the tail of a channel loop)
inline __mmask16 lanes(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFF : ((1u << n) - 1));
}

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
  const __mmask16 tail = lanes(rem);
  switch (nv) {
    case 1: micro_tile<MR, 1>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    case 2: micro_tile<MR, 2>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    case 3: micro_tile<MR, 3>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    default: micro_tile<MR, 4>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
  }
}

void gemm(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* B, int64_t N,
          const float* bias, bool act, float* C, int64_t lda = 0, int64_t ldc = 0) {
  if (lda <= 0) lda = K;
  if (ldc <= 0) ldc = N;
  constexpr int MR = 6;  // 6 x 4 zmm accumulators: 24 of the 32 vector registers
  // K blocked so a B slab stays in L1; one block when the whole B panel is small anyway
  // (K = 129 or 144 would otherwise add a pass over C for the last 1 or 16 k).
  const int64_t KC = K * std::min<int64_t>(N, 64) * 4 <= 32768 ? K : 128;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t k1 = std::min(K, k0 + KC);
    const bool first = k0 == 0, last = k1 == K;
    for (int64_t col0 = 0; col0 < N; col0 += 64) {
      const float* ar[MR];
      int64_t crow[MR];
      for (int64_t r0 = 0; r0 < n; r0 += MR) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, n - r0));
        for (int r = 0; r < mr; ++r) {
          ar[r] = a + (rows ? static_cast<int64_t>(rows[r0 + r]) : r0 + r) * lda;
          crow[r] = (r0 + r) * ldc;
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
          const float* bias, bool act, float* C, int64_t lda = 0, int64_t ldc = 0) {
  if (lda <= 0) lda = K;
  if (ldc <= 0) ldc = N;
  for (int64_t r = 0; r < n; ++r) {
    const float* ar = a + (rows ? static_cast<int64_t>(rows[r]) : r) * lda;
    float* c = C + r * ldc;
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

// Weights in column panels of kPanel: panel j holds columns [kPanel*j, kPanel*j + kPanel) of the
// (K x N) matrix as K contiguous rows of its width. Why: the micro-kernel streams one K slab of
// a panel per tile column; read from the row-major matrix that slab is K short runs N floats
// apart (6.7 KB apart for MoveNet Thunder's 1680-wide expand), which the hardware prefetcher
// follows badly once the weights no longer fit L2 (the stride-16 / 32 blocks: 1.3-5.6 MB of
// weights against 1 MB of L2 on Zen 4); packed, the slab is one sequential 32 KB read. The
// weights are constant, so they are packed once when a plan is made.
constexpr int64_t kPanel = 64;

std::vector<float> pack_panels(const float* B, int64_t K, int64_t N) {
  std::vector<float> out(static_cast<size_t>(K * N));
  float* o = out.data();
  for (int64_t c0 = 0; c0 < N; c0 += kPanel) {
    const int64_t nw = std::min(kPanel, N - c0);
    for (int64_t k = 0; k < K; ++k, o += nw) std::copy_n(B + k * N + c0, nw, o);
  }
  return out;
}

// gemm on panel-packed B (pack_panels): columns [c0, c1) of C, c0 a multiple of kPanel; one
// gemm call per panel (its B rows contiguous, kPanel wide).
void gemm_packed(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* Bp,
                 int64_t N, const float* bias, bool act, float* C, int64_t lda, int64_t ldc,
                 int64_t c0 = 0, int64_t c1 = -1) {
  if (lda <= 0) lda = K;
  if (ldc <= 0) ldc = N;
  if (c1 < 0) c1 = N;
  for (int64_t col = c0; col < c1; col += kPanel) {
    const int64_t nw = std::min(kPanel, N - col);
    gemm(a, rows, n, K, Bp + col * K, nw, bias ? bias + col : nullptr, act, C + col, lda, ldc);
  }
}

// One output of the masked depthwise 3x3: acc = ReLU6(bias + sum over present taps of w[t] * src).
inline void depthwise_row(const float* const* src, const int* tap_of, int n_taps, const float* wd,
                          const float* bd, int64_t c_e, float* acc) {
#ifdef __AVX512F__
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  for (int64_t c = 0; c < c_e; c += 16) {
    const int64_t left = c_e - c;
    const __mmask16 m = lanes(left);
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

// Source rows of the 3x3 window centred on (cy, cx) of an h x w grid for depthwise_row: taps
// outside the grid are left out, and so are those for which ``source(y, x)`` returns nullptr
// (positions outside the dilated set). Returns the number of taps written to src / tap_of.
template <typename Source>
inline int window_taps(int64_t cy, int64_t cx, int64_t h, int64_t w, Source&& source,
                       const float** src, int* tap_of) {
  int n_taps = 0;
  for (int t = 0; t < 9; ++t) {
    const int64_t y = cy + t / 3 - 1, x = cx + t % 3 - 1;
    if (y < 0 || y >= h || x < 0 || x >= w) continue;
    const float* row = source(y, x);
    if (row == nullptr) continue;
    src[n_taps] = row;
    tap_of[n_taps++] = t;
  }
  return n_taps;
}

// All 9 taps present: rows[dy] points at the window's left column of input row dy, the next
// columns follow at a stride of c_e floats (a run of the compacted expand buffer, or of x).
inline void depthwise_full(const float* const* rows, const float* wd, const float* bd,
                           int64_t c_e, float* acc) {
  static constexpr int kAllTaps[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  const float* src[9];
  for (int t = 0; t < 9; ++t) src[t] = rows[t / 3] + (t % 3) * c_e;
  depthwise_row(src, kAllTaps, 9, wd, bd, c_e, acc);
}

// ``n`` outputs of one row whose 3x3 windows are all present: rows[dy] points at the first
// window's left column of input row dy; window j starts ``step`` floats after window j-1 (one
// or two input columns), columns are c_e floats apart. The 9 weight vectors of a channel block
// stay in registers across the run; no per-output index work.
inline void depthwise_run(const float* const* rows, int64_t n, int64_t step, const float* wd,
                          const float* bd, int64_t c_e, float* acc) {
#ifdef __AVX512F__
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  for (int64_t c = 0; c < c_e; c += 16) {
    const int64_t left = c_e - c;
    const __mmask16 m = lanes(left);
    __m512 wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = _mm512_maskz_loadu_ps(m, wd + t * c_e + c);
    const __m512 bias = _mm512_maskz_loadu_ps(m, bd + c);
    for (int64_t j = 0; j < n; ++j) {
      __m512 a = bias;
      for (int dy = 0; dy < 3; ++dy) {
        const float* s = rows[dy] + j * step + c;
        a = _mm512_fmadd_ps(wv[dy * 3], _mm512_maskz_loadu_ps(m, s), a);
        a = _mm512_fmadd_ps(wv[dy * 3 + 1], _mm512_maskz_loadu_ps(m, s + c_e), a);
        a = _mm512_fmadd_ps(wv[dy * 3 + 2], _mm512_maskz_loadu_ps(m, s + 2 * c_e), a);
      }
      _mm512_mask_storeu_ps(acc + j * c_e + c, m, _mm512_min_ps(_mm512_max_ps(a, zero), six));
    }
  }
#else
  for (int64_t j = 0; j < n; ++j) {
    const float* win[3] = {rows[0] + j * step, rows[1] + j * step, rows[2] + j * step};
    depthwise_full(win, wd, bd, c_e, acc + j * c_e);
  }
#endif
}

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

#ifdef __AVX512F__
// exp(x), 16 lanes: x = k ln2 + r with |r| <= ln2/2 (ln2 split in two for exactness), exp(r) by
// its degree-7 Taylor polynomial (relative error < 1e-7 on that range), times 2^k by scalef.
// Arguments are clamped to [-87.3, 88.7] (the float range); no NaN inputs occur here.
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, k);
}
#endif

// ---- threading ------------------------------------------------------------------------------------
// A frame is a list of steps (the stem, then per block: mask, index lists, bands, scatter). A
// step is cut into chunks that the calling thread and a small pool of persistent workers claim
// from one atomic counter; the caller waits until every chunk of a step is *done* (not until
// every thread has *arrived*), then opens the next step. Why not OpenMP regions/barriers: on a
// VM vCPU that has gone idle between frames (a camera gives one every 33 ms), waking a sleeping
// thread took ~8 ms here; with barriers every frame paid it (measured 10 ms instead of 1.9 ms
// for the backbone at 30 fps pacing), and with OMP_WAIT_POLICY=PASSIVE (what the node needs so
// idle threads do not spin on the cores ROS and ONNX Runtime use) each of ~70 regions a frame
// paid a futex wake. Here a worker that wakes late simply joins at whatever step is open, and
// the caller never waits for a thread that has not started; between the steps of a frame the
// workers spin (µs apart), after the frame they spin briefly and then sleep.
struct Step {
  int64_t n_items = 0;
  int64_t chunk = 1;
  bool serial = false;  // run by the caller alone (prefix sums, the soft-argmax combine)
  std::function<void(int64_t begin, int64_t end, int tid)> fn;
  int64_t n_chunks() const { return (n_items + chunk - 1) / chunk; }
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Waits for ``ready()`` inside a frame, where the other side is µs away: ~0.2 ms of pause,
// then yield the core (the thread we wait for may be preempted on a loaded machine).
template <typename Ready>
inline void spin_until(Ready&& ready) {
  constexpr int kSpins = 1 << 12;
  for (int spins = 0; !ready(); ++spins) {
    if (spins < kSpins) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Pool {
 public:
  Pool(int threads, int64_t idle_spin_us) : threads_(threads), idle_spin_us_(idle_spin_us) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(sleep_m_);
      stop_.store(true);
    }
    sleep_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  // Runs the steps in order on the caller (tid 0) and whichever workers are awake. ``done_at``
  // (optional, one entry a step): steady-clock ns at which each step was complete (profiling).
  // ``linger_us``: after this frame the workers spin at least that long (on top of the idle
  // spin) before they sleep, so that they are still awake when the caller comes back after
  // work of its own between frames (see BlockSequence::run).
  void run(const std::vector<Step>& steps, int64_t* done_at = nullptr, int64_t linger_us = 0) {
    std::lock_guard<std::mutex> one_frame_at_a_time(run_m_);
    steps_ = &steps;
    bool woken = false;  // one wake-up call a frame: workers only sleep between frames
    for (size_t p = 0; p < steps.size(); ++p) {
      const Step& s = steps[p];
      const int64_t n = s.n_chunks();
      if (done_at != nullptr) done_at[p] = 0;  // set below; 0 marks a step with nothing to do
      if (n <= 0) continue;
      if (s.serial || threads_ == 1 || n == 1) {
        for (int64_t c = 0; c < n; ++c) s.fn(c * s.chunk, std::min(s.n_items, (c + 1) * s.chunk), 0);
        if (done_at != nullptr) done_at[p] = now_ns();
        continue;
      }
      const uint64_t epoch = ++epoch_;
      done_.store(0, std::memory_order_relaxed);
      claim_.store(epoch << 32, std::memory_order_relaxed);
      cur_.store((epoch << 32) | static_cast<uint32_t>(p), std::memory_order_seq_cst);
      if (!woken) {
        wake_sleepers();  // a futex call per step while a worker wakes up cost ms on this VM
        woken = true;
      }
      work(p, epoch, 0);
      spin_until([&] { return done_.load(std::memory_order_acquire) >= n; });
      if (done_at != nullptr) done_at[p] = now_ns();
    }
    linger_until_ns_.store(linger_us > 0 ? now_ns() + linger_us * 1000 : 0,
                           std::memory_order_relaxed);
    cur_.store((++epoch_ << 32) | kIdle, std::memory_order_seq_cst);
    // A worker inside this frame may still read ``steps``: wait until it has seen kIdle.
    while (inside_.load(std::memory_order_seq_cst) != 0) cpu_relax();
    steps_ = nullptr;
  }

 private:
  static constexpr uint32_t kIdle = 0xFFFFFFFFu;

  static uint32_t phase_of(uint64_t c) { return static_cast<uint32_t>(c); }

  // Claims and runs chunks of step ``p`` while it is the open step (``epoch``).
  void work(size_t p, uint64_t epoch, int tid) {
    const Step& s = (*steps_)[p];
    const uint64_t n = static_cast<uint64_t>(s.n_chunks());
    uint64_t w = claim_.load(std::memory_order_acquire);
    for (;;) {
      if ((w >> 32) != epoch || (w & 0xFFFFFFFFu) >= n) return;
      if (!claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) continue;
      const int64_t c = static_cast<int64_t>(w & 0xFFFFFFFFu);
      s.fn(c * s.chunk, std::min(s.n_items, (c + 1) * s.chunk), tid);
      if (tid != 0) worker_chunks_.fetch_add(1, std::memory_order_relaxed);
      done_.fetch_add(1, std::memory_order_release);
      w = claim_.load(std::memory_order_acquire);
    }
  }

  void wake_sleepers() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    { std::lock_guard<std::mutex> lk(sleep_m_); }
    sleep_cv_.notify_all();
  }

  // Waits until ``cur_`` differs from ``seen`` and is a step (not idle); false on stop.
  // ``slept``: whether the wait ended in the condition variable (the thread was asleep).
  bool wait_for_step(uint64_t& c, uint64_t seen, bool& slept) {
    slept = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(idle_spin_us_);
    for (int spins = 0;; ++spins) {
      c = cur_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return false;
      if (c != seen && phase_of(c) != kIdle) return true;
      if ((spins & 63) != 0 || std::chrono::steady_clock::now() < until ||
          now_ns() < linger_until_ns_.load(std::memory_order_relaxed)) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lk(sleep_m_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      sleep_cv_.wait(lk, [&] {
        c = cur_.load(std::memory_order_seq_cst);
        return stop_.load() || (c != seen && phase_of(c) != kIdle);
      });
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      slept = true;
      return !stop_.load();
    }
  }

  void worker_loop(int tid) {
    uint64_t seen = cur_.load();
    for (;;) {
      uint64_t c = 0;
      bool slept = false;
      if (!wait_for_step(c, seen, slept)) return;
      if (slept) {
        // Woken for a frame that is already running: sit it out. On this VM a vCPU woken
        // from idle ran its first chunks so late that the caller, waiting for them, took
        // 10 ms instead of the 5.7 ms it needs alone (camera pacing, 33 ms between frames).
        // Back to back (worker still spinning) every frame is shared as usual.
        spin_until([&] {
          c = cur_.load(std::memory_order_acquire);
          return phase_of(c) == kIdle || stop_.load(std::memory_order_relaxed);
        });
        if (stop_.load(std::memory_order_relaxed)) return;
        seen = c;
        continue;
      }
      inside_.fetch_add(1, std::memory_order_seq_cst);
      c = cur_.load(std::memory_order_seq_cst);
      while (phase_of(c) != kIdle) {
        work(phase_of(c), c >> 32, tid);
        seen = c;
        // next step of the same frame: the caller opens it within µs (or ends the frame)
        spin_until([&] { return (c = cur_.load(std::memory_order_acquire)) != seen; });
      }
      seen = c;
      inside_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  const int threads_;
  const int64_t idle_spin_us_;  // how long a worker spins after a frame before sleeping
  std::atomic<int64_t> linger_until_ns_{0};  // and until then (run's linger_us), if later

 public:
  // chunks the workers (not the caller) have run since the pool started: whether they take part
  std::atomic<int64_t> worker_chunks_{0};

 private:
  std::vector<std::thread> workers_;
  std::mutex run_m_, sleep_m_;
  std::condition_variable sleep_cv_;
  const std::vector<Step>* steps_ = nullptr;
  uint64_t epoch_ = 0;  // written by the caller only
  std::atomic<uint64_t> cur_{static_cast<uint64_t>(kIdle)};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> inside_{0}, sleepers_{0};
  std::atomic<bool> stop_{false};
};

// One pool per thread count, created on first use and kept for the process (its workers sleep
// when idle). A forked child has none of the parent's threads: it starts with fresh pools.
std::mutex* g_pools_m = new std::mutex;
std::map<int, Pool*>* g_pools = new std::map<int, Pool*>;
void reset_pools_in_child() {
  g_pools_m = new std::mutex;           // the parent's may have been held by another thread
  g_pools = new std::map<int, Pool*>;   // the parent's pools are leaked: no threads behind them
}

// SPARSE_POSE_SPIN_US: microseconds a worker keeps spinning after a frame (default 1000: covers
// the gap between the backbone and the head and back-to-back frames; a camera frame 33 ms later
// finds it asleep and runs on the caller). 40000 keeps workers hot at 30 fps the way ONNX
// Runtime does by default, at the price of a busy core.
int64_t idle_spin_us() {
  const char* env = std::getenv("SPARSE_POSE_SPIN_US");
  if (env == nullptr || *env == '\0') return 1000;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  return (end != nullptr && *end == '\0' && v >= 0) ? static_cast<int64_t>(v) : 1000;
}

Pool& pool_for(int64_t threads);

// Chunks run by the workers of the pool for ``threads`` so far (diagnostics, benchmarks).
int64_t worker_chunks(int64_t threads);

Pool& pool_for(int64_t threads) {
  static const int registered = pthread_atfork(nullptr, nullptr, reset_pools_in_child);
  (void)registered;
  const int t = static_cast<int>(std::max<int64_t>(1, threads));
  std::lock_guard<std::mutex> lk(*g_pools_m);
  Pool*& p = (*g_pools)[t];
  if (p == nullptr) p = new Pool(t, idle_spin_us());
  return *p;
}

int64_t worker_chunks(int64_t threads) {
  return pool_for(threads).worker_chunks_.load(std::memory_order_relaxed);
}

// ---- one block ------------------------------------------------------------------------------------
// Everything ``run_block`` needs, checked once when the plan is made (a TORCH_CHECK must not
// throw inside the parallel region). The tensors are held so the raw pointers stay valid.
struct BlockPlan {
  static constexpr int64_t kMinChunk = 2048;
  std::vector<at::Tensor> keep;
  int64_t batch, h, w, stride, ho, wo, n_in, n_out, c_in, c_e, c_out;
  // Zero rows / columns the depthwise conv pads before the input: 1 for PyTorch's padding=1,
  // 0 for a TF 'SAME' stride-2 conv on an even size (MoveNet). Output (oy, ox) reads the 3x3
  // window whose top-left input is (oy*stride - pad_top, ox*stride - pad_left); the pad after is
  // implicit (taps past the grid read zero).
  int64_t pad_top = 1, pad_left = 1;
  bool has_expand, residual, residual_relu;
  int64_t gate;
  double dense_above;
  float mask_bias, threshold;
  const float *xp, *mw, *fixed, *we, *be, *wd, *bd, *wp, *bp;
  std::vector<float> we_panels, wp_panels;  // expand / project weights, pack_panels
  bool packed = true;                       // we / wp point at the panels, else row-major
  float *op, *hard, *dil, *lg, *sp, *e_base, *d_base, *pp;
  int32_t *rank, *act, *dil_rows, *dil_ptr, *act_ptr;
  int64_t cap_e, cap_a, strip_rows, threads;
  // Band groups (step 3): groups_per_img chunks of output rows per image, bounds chosen per frame
  // in scan_rows; group_y[b * (groups_per_img + 1) + k] = first output row of group k of image b.
  int64_t groups_per_img = 1;
  std::vector<int32_t> group_y;

  // Written by the caller in the index step, read by every thread in the later steps.
  int64_t n_hard = 0, n_dil_true = 0, n_act = 0;
  bool compute_all = false;

  BlockPlan(const at::Tensor& x, const at::Tensor& out, int64_t batch_, int64_t h_, int64_t w_,
            int64_t stride_, int64_t pad_top_, int64_t pad_left_, const at::Tensor& w_expand, const at::Tensor& b_expand,
            const at::Tensor& w_dw, const at::Tensor& b_dw, const at::Tensor& w_project,
            const at::Tensor& b_project, bool residual_, bool residual_relu_, int64_t gate_,
            double dense_above_, const at::Tensor& mask_weight, double mask_bias_,
            double threshold_, const at::Tensor& fixed_hard, const at::Tensor& hard_t,
            const at::Tensor& dilated, const at::Tensor& logits, const at::Tensor& soft,
            const at::Tensor& rank_t, const at::Tensor& act_rows, const at::Tensor& dil_rows_t,
            const at::Tensor& row_ptr, const at::Tensor& e_buf,
            const at::Tensor& d_buf, const at::Tensor& p_buf, int64_t strip_rows_,
            bool pack_weights = true)
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
    keep = {x, out, w_expand, b_expand, w_dw, b_dw, w_project, b_project, mask_weight,
            fixed_hard, hard_t, dilated, logits, soft, rank_t, act_rows, dil_rows_t, row_ptr,
            e_buf, d_buf, p_buf};
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
  }

  // The block as six steps of a frame; ``tid`` < ``threads`` picks the scratch slice.
  void append_steps(std::vector<Step>& steps) {
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
    steps.push_back({batch * groups_per_img, 1, false,
                     [this](int64_t g, int64_t, int tid) { band_group(g, tid); }});
    steps.push_back({n_out, kMinChunk, false,
                     [this](int64_t b, int64_t e, int) { scatter_chunk(b, e); }});
  }

  std::vector<int64_t> counts() const { return {n_hard, n_dil_true, compute_all ? 1 : 0}; }
  static constexpr int64_t n_steps() { return 6; }  // as many as append_steps adds

 private:
  // ---- 1. mask: none (ungated), learned (1x1 conv logit >= threshold) or fixed -----------------
  void mask_chunk(int64_t o0, int64_t o1) {
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

  // ---- 2. receptive mask, active list, dilated list + rank map -------------------------------------
  // Three steps so that only a prefix sum over rows runs on one thread:
  //   count (rows in parallel): dil of every input row, computed by reading the 3x3 (stride 1)
  //       or 1-2 x 1-2 (stride 2) outputs whose window covers it, and per-row counts of dilated
  //       inputs (into dil_ptr) and active outputs (into act_ptr);
  //   scan (caller): totals, the per-stage policy decision, exclusive prefix sums -> row pointers;
  //   fill (rows in parallel): rank map + dilated list per input row, active list per output row.
  // Per-stage policy: above ``dense_above`` (fraction of active outputs) every row is computed
  // and the mask is applied at the scatter (masked dense), because there dense is faster.
  // The true counts (for diagnostics) are returned either way. Row pointers: dil_ptr[r] /
  // act_ptr[r] = list entries before combined row r = b*H + y; both lists are row-major, so the
  // entries of any band of rows form one contiguous range.
  int64_t index_rows() const { return std::max(batch * h, batch * ho); }

  // output index range [lo, hi] whose 3x3 window (inputs i*stride - pad .. i*stride - pad + 2)
  // covers input coordinate v
  inline void covering(int64_t v, int64_t n_o, int64_t pad, int64_t& lo, int64_t& hi) const {
    lo = v + pad - 2 > 0 ? (v + pad - 2 + stride - 1) / stride : 0;
    hi = std::min(n_o - 1, (v + pad) / stride);
  }

  // Dilation is separable: OR (max of 0/1 floats) over the covering output rows, then over the
  // covering output columns; both are straight vector loops over a row.
  void count_rows(int64_t r0, int64_t r1) {
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
  static int64_t exclusive_scan(int32_t* ptr, int64_t n) {
    int64_t total = 0;
    for (int64_t r = 0; r < n; ++r) {
      const int32_t c = ptr[r];
      ptr[r] = static_cast<int32_t>(total);
      total += c;
    }
    ptr[n] = static_cast<int32_t>(total);
    return total;
  }

  void scan_rows() {
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
  void fill_rows(int64_t r0, int64_t r1) {
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

  // ---- 3. bands of output rows: gather -> expand GEMM -> depthwise -> project GEMM -------------
  // Working on bands of ``strip_rows`` output rows keeps each band's expanded rows in L2 (the
  // whole-image expand output of a 128x128 block is several MB); every thread uses its own
  // scratch slice. Results go to p_buf; the scatter waits for every band, because residual
  // blocks update x in place.
  // A chunk of the band step is a group of consecutive output rows of one image, run by one
  // thread as consecutive bands: the expanded rows a band shares with the previous one (the 3x3
  // halo) are moved to the front of the scratch buffer instead of being expanded again, so only
  // a group's first band expands its upper halo. The group bounds are placed per frame
  // (place_groups) so that the groups of an image carry about equal work: with groups of equal
  // *rows*, a centred person left the outer groups nearly empty, and balancing them took ~3
  // groups a thread, each paying its own halo (1.46x the expand rows on the 16x16 grids).
  struct Held {  // the dilated-list range [begin, end) of image b held in the scratch buffer
    int64_t b = -1, begin = 0, end = 0;
  };

  // Groups per image: one a thread. One thread: the whole image is one group (every halo
  // reused). Two groups a thread (dynamic balance) measured 3-11 % slower per block than one
  // (more halos), at 256 px, density 0.25, 2 threads.
  static int64_t group_count(int64_t threads_) { return std::max<int64_t>(1, threads_); }

  // Group bounds of every image from the final row pointers: estimated work up to output row y
  // is W(y) = A * (active outputs in rows < y) + E * (dilated inputs in rows < stride * y), with
  // A, E the MACs of one active output (depthwise + project) and of one expanded row; bound k
  // is the row where W comes closest to k / groups of the image's total.
  void place_groups() {
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

  // C = A @ B (+ bias, ReLU6) with B one of this plan's weights, packed or not (``packed``)
  void mm(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* B, int64_t N,
          const float* bias, bool act, float* C) const {
    if (packed) {
      gemm_packed(a, rows, n, K, B, N, bias, act, C, K, N);
    } else {
      gemm(a, rows, n, K, B, N, bias, act, C);
    }
  }

  void band_group(int64_t gi, int tid) {
    if (n_act == 0) return;
    const int64_t b = gi / groups_per_img;
    const int32_t* gy = group_y.data() + b * (groups_per_img + 1) + gi % groups_per_img;
    Held held;
    for (int64_t y0 = gy[0]; y0 < gy[1]; y0 += strip_rows)
      strip(b, y0, std::min<int64_t>(y0 + strip_rows, gy[1]), tid, held);
  }

  // output rows [y0, y1) of image b
  void strip(int64_t b, int64_t y0, int64_t y1, int tid, Held& held) {
    const int64_t a_begin = act_ptr[b * ho + y0], a_end = act_ptr[b * ho + y1];
    const int64_t n_a = a_end - a_begin;
    if (n_a == 0) return;
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
          std::memmove(em, em + (e_begin - held.begin) * c_e,
                       static_cast<size_t>((held.end - e_begin) * c_e) * sizeof(float));
        from = held.end;
      }
      if (e_end > from)
        mm(compute_all ? xp + from * c_in : xp, compute_all ? nullptr : dil_rows + from,
           e_end - from, c_in, we, c_e, be, true, em + (from - e_begin) * c_e);
      held = {b, e_begin, e_end};
      ep = em;
    }
    // masked depthwise: taps outside the image or the dilated set read zero. The 9 source rows
    // of an output are looked up once, then every channel vector accumulates its 9 taps in a
    // register (one store per vector, instead of a load/store per tap).
    float* dp = d_base + tid * cap_a * c_e;
    // input position p (rank rk != 0) -> its expanded row in ep, or its row of x in place
    auto source_row = [&](int64_t p, int32_t rk) -> const float* {
      return has_expand ? ep + (static_cast<int64_t>(rk) - 1 - e_begin) * c_e : xp + p * c_in;
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
      depthwise_row(src, tap_of, n_taps, wd, bd, c_e, dp + k * c_e);
    };
    const int64_t step = stride * c_e;
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
          depthwise_run(rows, j1 - j0, step, wd, bd, c_e, dp + (k + j0) * c_e);
          j = j1 - 1;
          continue;
        }
        one_output(k + j, cy, cx0 + j * stride);
      }
      k += len;
    }
    mm(dp, nullptr, n_a, c_e, wp, c_out, nullptr, false, pp + a_begin * c_out);
  }

  // ---- 4. scatter(-add) with the project bias, zeros, residual ReLU --------------------------------
  // Chunks of output positions: a non-residual block writes every position (zero where the mask
  // is off), a residual block adds at the active ones; compute_all on a gated block applies G here.
  void scatter_chunk(int64_t o0, int64_t o1) {
    if (compute_all) {
      for (int64_t o = o0; o < o1; ++o) store_row(o, o, hard[o]);
    } else {
      // entries of the (sorted) active list in [o0, o1); a non-residual block zeroes the gaps
      int64_t k = std::lower_bound(act, act + n_act, static_cast<int32_t>(o0)) - act;
      int64_t o = o0;
      for (; k < n_act && act[k] < o1; ++k) {
        if (!residual) std::fill(op + o * c_out, op + act[k] * c_out, 0.0f);
        store_row(act[k], k, 1.0f);
        o = act[k] + 1;
      }
      if (!residual) std::fill(op + o * c_out, op + o1 * c_out, 0.0f);
    }
    if (residual && residual_relu) {
      float* xo = op + o0 * c_out;
      const int64_t n = (o1 - o0) * c_out;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) xo[i] = std::max(xo[i], 0.0f);
    }
  }

  inline void store_row(int64_t o, int64_t k, float g) {
    float* dst = op + o * c_out;
    const float* src = pp + k * c_out;
    if (residual) {
#pragma omp simd
      for (int64_t c = 0; c < c_out; ++c) dst[c] += g * (src[c] + bp[c]);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < c_out; ++c) dst[c] = g * (src[c] + bp[c]);
    }
  }
};

// ---- stem -------------------------------------------------------------------------------------------
// Dense 3x3 conv (stride s, BN folded) + ReLU6 from the NCHW image straight into the flat
// channels-last feature buffer the first block reads (no separate layout copy). Zero padding
// pad_top / pad_left before the image (1: PyTorch's padding=1; 0: TF 'SAME' at stride 2 on an
// even size, MoveNet's stem), the pad after is implicit (taps past the image read zero).
// x: (B, C_in, H, W) contiguous; w: (C_in*9, C_out) rows ordered (c, ky, kx); out: (B*Ho*Wo + 1,
// C_out), last row left as is (the zero row). Per output row: interior pixels in tiles of 6
// straight from the image planes (stem_tile, AVX-512), the border pixels through an im2col row
// in the thread's patch buffer + the GEMM micro-kernel with the bias + ReLU6 epilogue.
struct StemPlan {
  at::Tensor w, bias, out, x;
  int64_t stride = 1, pad_top = 1, pad_left = 1, threads = 1, c_out = 0;
  std::vector<std::vector<float>> patches;  // one im2col row buffer per thread, reused
  int64_t batch = 0, c_in = 0, h = 0, wd = 0, ho = 0, wo = 0;  // of the current frame

  StemPlan(const at::Tensor& w_, const at::Tensor& bias_, const at::Tensor& out_, int64_t stride_,
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
  void prepare(const at::Tensor& x_) {
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

  Step step() {
    return {batch * ho, 1, false, [this](int64_t row, int64_t, int tid) { run_row(row, tid); }};
  }

  void run_row(int64_t row, int tid) {
    const int64_t oy = row % ho;
#ifdef __AVX512F__
    // interior pixels of interior rows: tiles of 12 or 6 read the image planes directly
    if (oy * stride - pad_top >= 0 && oy * stride - pad_top + 2 <= h - 1 && c_out <= 64) {
      // interior columns: ox * stride - pad_left >= 0 and ox * stride - pad_left + 2 <= wd - 1
      const int64_t lo = std::min<int64_t>(pad_left, wo);
      const int64_t last = wd - 3 + pad_left;  // largest interior ox * stride
      const int64_t hi = std::min<int64_t>(wo, std::max<int64_t>(lo, last >= 0 ? last / stride + 1 : 0));
      const float* img = x.data_ptr<float>() + (row / ho) * c_in * h * wd;
      float* orow = out.data_ptr<float>() + row * wo * c_out;
      const float* wp = w.data_ptr<float>();
      const float* bp = bias.data_ptr<float>();
      const int nv = static_cast<int>((c_out + 15) / 16);
      // tiles of 12 pixels while 12 x NV accumulators fit the 32 vector registers (NV <= 2),
      // then of 6: the B vectors are loaded once per 12 (or 6) pixels
      int64_t ox = lo;
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
      patch_range(row, 0, lo, tid);
      patch_range(row, fast_end, wo, tid);
      return;
    }
#endif
    patch_range(row, 0, wo, tid);
  }

  // pixels [ox0, ox1) of one output row: im2col (zero padding) + the GEMM micro-kernel
  void patch_range(int64_t row, int64_t ox0, int64_t ox1, int tid) {
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
};

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
inline int64_t nearest_src(int64_t i, int64_t in, int64_t out) {  // = F.interpolate "nearest"
  if (in == out) return i;
  if (out == 2 * in) return i >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  return std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in - 1);
}

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

  void append_steps(std::vector<Step>& steps) {
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

 private:
  // ya = ReLU6(skip @ W_l + b_l) + nearest_up(coarse); yb = dw3x3(ya) (+ bias, ReLU6)
  void append_level(std::vector<Step>& steps, const float* skip, int64_t c_skip, const float* w_l,
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
  void lateral(const float* skip, int64_t c_skip, const float* w, const float* b,
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
  void depthwise(const float* x, int64_t h, int64_t wdt, const float* w, const float* b, float* y,
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

  // region = nearest_up(dilate3x3(gate)); an image whose region is empty gets all of it
  void make_region() {
    thread_local std::vector<float> dilated;
    if (static_cast<int64_t>(dilated.size()) < hg * wg) dilated.resize(hg * wg);
    const int64_t hw = h4 * w4;
    for (int64_t bi = 0; bi < batch; ++bi) {
      const float* g = gate + bi * hg * wg;
      for (int64_t y = 0; y < hg; ++y)
        for (int64_t x = 0; x < wg; ++x) {
          float v = 0.0f;
          for (int64_t yy = std::max<int64_t>(0, y - 1); yy <= std::min(hg - 1, y + 1); ++yy)
            for (int64_t xx = std::max<int64_t>(0, x - 1); xx <= std::min(wg - 1, x + 1); ++xx)
              v = std::max(v, g[yy * wg + xx] > 0.0f ? 1.0f : 0.0f);
          dilated[y * wg + x] = v;
        }
      float* reg = region + bi * hw;
      bool any = false;
      for (int64_t y = 0; y < h4; ++y) {
        const float* src = dilated.data() + nearest_src(y, hg, h4) * wg;
        for (int64_t x = 0; x < w4; ++x) {
          const float v = src[nearest_src(x, wg, w4)];
          reg[y * w4 + x] = v;
          any = any || v > 0.0f;
        }
      }
      if (!any) std::fill(reg, reg + hw, 1.0f);
    }
  }

  // stride-4 rows: pw conv into z[:, :ch], heatmaps + triplets into z[:, ch:], depth from all of z.
  // Gated: only runs of rows inside the region; outside, heatmap logits kOffLogit, triplets 0.
  void outputs(int64_t r0, int64_t r1) {
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

  void outputs_run(int64_t r0, int64_t r1) {
    const int64_t n = r1 - r0;
    float* zr = z + r0 * zw;
    gemm(y4b + r0 * ch, nullptr, n, ch, w_p4, ch, b_p4, true, zr, ch, zw);
    gemm(zr, nullptr, n, ch, w_ht, n_maps, b_ht, false, zr + ch, zw, zw);
    gemm(zr, nullptr, n, zw, w_dep, n_joints, b_dep, false, dep + r0 * n_joints, zw, n_joints);
  }

  // chunk c = (batch item, block of positions): per joint the max logit m and, relative to it,
  // s = sum e, sx = sum e*x, sy = sum e*y, sz = sum e*tanh(depth)
  void softmax_part(int64_t c) {
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

  void combine() {
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
};

}  // namespace

// Returns (n_active, n_dilated, computed_all): the mask's counts (not the executed rows when
// every row was computed) and whether the block ran densely. See the Python wrapper
// (cpu_kernel.py) for argument meanings.
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
    const at::Tensor& e_buf, const at::Tensor& d_buf, const at::Tensor& p_buf, int64_t strip_rows) {
  BlockPlan plan(x, out, batch, h, w, stride, pad_top, pad_left, w_expand, b_expand, w_dw, b_dw, w_project, b_project,
                 residual, residual_relu, gate, dense_above, mask_weight, mask_bias, threshold,
                 fixed_hard, hard, dilated, logits, soft, rank, act_rows, dil_rows, row_ptr,
                 e_buf, d_buf, p_buf, strip_rows, /*pack_weights=*/false);
  std::vector<Step> steps;
  plan.append_steps(steps);
  pool_for(plan.threads).run(steps);
  return plan.counts();
}

void stem_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& out,
               int64_t stride, int64_t pad_top, int64_t pad_left, int64_t threads) {
  StemPlan stem(w, bias, out, stride, pad_top, pad_left, threads);
  stem.prepare(x);
  pool_for(stem.threads).run({stem.step()});
}

// ---- dense 1x1 conv (+ bias, ReLU6) -------------------------------------------------------------
// MoveNet's conv to 1280 channels after the last block (560 -> 1280 on 8x8 at Thunder's 256 px)
// as the last step of the backbone's frame. Why not torch.addmm after the sequence: MKL there
// ran 40 % slower than ONNX Runtime on this 64-row GEMM, and with two threads torch's OpenMP
// worker competed for the second core with ours, still spinning after the frame (2 threads were
// no faster than 1). Chunks are column panels, so with two threads each reads half the weights.
struct PointwisePlan {
  at::Tensor x, out, bias;
  std::vector<float> w_panels;
  int64_t n = 0, c_in = 0, c_out = 0, threads = 1;
  bool relu6 = true;

  // w: (C_in, C_out); x: (n + 1, C_in) flat channels-last rows; out: (n + 1, C_out)
  PointwisePlan(const at::Tensor& w, const at::Tensor& bias_, const at::Tensor& x_,
                const at::Tensor& out_, bool relu6_, int64_t threads_)
      : x(x_), out(out_), bias(bias_), threads(std::max<int64_t>(1, threads_)), relu6(relu6_) {
    check_buffer(w, "w");
    check_buffer(bias, "bias");
    check_buffer(x, "x");
    check_buffer(out, "out");
    c_in = w.size(0);
    c_out = w.size(1);
    n = x.size(0) - 1;
    TORCH_CHECK(x.size(1) == c_in, "pointwise: x has the wrong width");
    TORCH_CHECK(out.size(0) == n + 1 && out.size(1) == c_out, "pointwise: out has the wrong shape");
    TORCH_CHECK(bias.numel() == c_out, "pointwise: bias must have C_out entries");
    w_panels = pack_panels(w.data_ptr<float>(), c_in, c_out);
  }

  Step step() {
    return {(c_out + kPanel - 1) / kPanel, 1, false, [this](int64_t p, int64_t, int) {
              gemm_packed(x.data_ptr<float>(), nullptr, n, c_in, w_panels.data(), c_out,
                          bias.data_ptr<float>(), relu6, out.data_ptr<float>(), c_in, c_out,
                          p * kPanel, std::min(c_out, (p + 1) * kPanel));
            }};
  }
};

class Pointwise {
 public:
  Pointwise(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& x,
            const at::Tensor& out, bool relu6, int64_t threads)
      : plan_(w, bias, x, out, relu6, threads) {}
  void run() { pool_for(plan_.threads).run({plan_.step()}); }

 private:
  PointwisePlan plan_;
};

// A whole backbone as one call: the stem and every block's plan are recorded once per (shape,
// threads, masks, thresholds) by the Python executor and replayed per frame, so a frame costs
// one Python -> C++ transition and one pass of the worker pool instead of one per block.
class BlockSequence {
 public:
  void set_stem(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& out,
                int64_t stride, int64_t pad_top, int64_t pad_left, int64_t threads) {
    stem_ = std::make_unique<StemPlan>(w, bias, out, stride, pad_top, pad_left, threads);
  }
  // A dense 1x1 conv (+ ReLU6) after the last block, run as the frame's last step.
  void set_last(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& x,
                const at::Tensor& out, bool relu6) {
    TORCH_CHECK(stem_ != nullptr, "BlockSequence: set_stem before set_last");
    last_ = std::make_unique<PointwisePlan>(w, bias, x, out, relu6, stem_->threads);
    steps_.clear();
  }
  void add(const at::Tensor& x, const at::Tensor& out, int64_t batch, int64_t h, int64_t w,
           int64_t stride, int64_t pad_top, int64_t pad_left, const at::Tensor& w_expand, const at::Tensor& b_expand,
           const at::Tensor& w_dw, const at::Tensor& b_dw, const at::Tensor& w_project,
           const at::Tensor& b_project, bool residual, bool residual_relu, int64_t gate,
           double dense_above, const at::Tensor& mask_weight, double mask_bias, double threshold,
           const at::Tensor& fixed_hard, const at::Tensor& hard, const at::Tensor& dilated,
           const at::Tensor& logits, const at::Tensor& soft, const at::Tensor& rank,
           const at::Tensor& act_rows, const at::Tensor& dil_rows, const at::Tensor& row_ptr,
           const at::Tensor& e_buf, const at::Tensor& d_buf,
           const at::Tensor& p_buf, int64_t strip_rows) {
    blocks_.push_back(std::make_unique<BlockPlan>(
        x, out, batch, h, w, stride, pad_top, pad_left, w_expand, b_expand, w_dw, b_dw, w_project,
        b_project, residual, residual_relu, gate, dense_above, mask_weight, mask_bias, threshold, fixed_hard,
        hard, dilated, logits, soft, rank, act_rows, dil_rows, row_ptr, e_buf, d_buf, p_buf,
        strip_rows));
    TORCH_CHECK(blocks_.front()->threads == blocks_.back()->threads,
                "every block of a sequence needs scratch for the same thread count");
    rebuild_steps();
  }

  // Runs stem + blocks; returns (n_active, n_dilated, ran_dense) of every block, flattened.
  // ``linger_us``: the workers keep spinning that long after the frame (Pool::run). The
  // executor passes the time of the ONNX Runtime neck + head that runs between two frames on
  // the caller alone: with only the idle spin (1 ms) a worker was asleep when the next frame
  // began after MoveNet's FPN head (~2 ms), sat that frame out (a woken worker does, see
  // worker_loop), and every back-to-back frame's backbone ran on one thread.
  std::vector<int64_t> run(const at::Tensor& x, int64_t linger_us = 0) {
    TORCH_CHECK(stem_ != nullptr, "BlockSequence: set_stem was not called");
    TORCH_CHECK(blocks_.empty() || blocks_.front()->threads == stem_->threads,
                "the stem and the blocks need the same thread count");
    stem_->prepare(x);
    if (steps_.size() != block_steps_.size() + 1 + (last_ ? 1 : 0)) {
      steps_.clear();
      steps_.push_back(stem_->step());
      steps_.insert(steps_.end(), block_steps_.begin(), block_steps_.end());
      if (last_) steps_.push_back(last_->step());
    } else {
      steps_[0] = stem_->step();  // the image size may differ from the last frame's
    }
    if (timing_) {
      step_done_.assign(steps_.size(), 0);
      const int64_t t0 = now_ns();
      pool_for(stem_->threads).run(steps_, step_done_.data(), linger_us);
      record_times(t0);
    } else {
      pool_for(stem_->threads).run(steps_, nullptr, linger_us);
    }
    std::vector<int64_t> counts;
    counts.reserve(3 * blocks_.size());
    for (const auto& blk : blocks_) {
      const auto c = blk->counts();
      counts.insert(counts.end(), c.begin(), c.end());
    }
    return counts;
  }
  int64_t size() const { return static_cast<int64_t>(blocks_.size()); }

  // Profiling: with timing on, every run records the wall time of the stem, of each block and
  // of the 1x1 after the last block (times(): seconds, in that order) from the moments the
  // steps were complete, inside the one C++ call a frame makes (the per-block Python path, the
  // only one that could be timed before, pays a plan and a Python round trip per block).
  void set_timing(bool on) { timing_ = on; }
  std::vector<double> times() const { return times_; }

 private:
  void record_times(int64_t t0) {
    // segment of every step: 0 = stem, 1 + k = block k, 1 + blocks = the 1x1 after them
    std::vector<int64_t> seg_steps;
    seg_steps.push_back(1);
    for (const auto& blk : blocks_) seg_steps.push_back(blk->n_steps());
    if (last_) seg_steps.push_back(1);
    times_.assign(seg_steps.size(), 0.0);
    int64_t prev = t0;
    size_t p = 0;
    for (size_t g = 0; g < seg_steps.size(); ++g) {
      for (int64_t i = 0; i < seg_steps[g] && p < step_done_.size(); ++i, ++p) {
        if (step_done_[p] == 0) continue;  // a step with no chunks ends nothing
        times_[g] += static_cast<double>(step_done_[p] - prev) * 1e-9;
        prev = step_done_[p];
      }
    }
  }

  bool timing_ = false;
  std::vector<int64_t> step_done_;
  std::vector<double> times_;

  void rebuild_steps() {
    block_steps_.clear();
    for (auto& blk : blocks_) blk->append_steps(block_steps_);
    steps_.clear();  // rebuilt with the stem on the next run
  }

  std::unique_ptr<StemPlan> stem_;
  std::unique_ptr<PointwisePlan> last_;
  std::vector<std::unique_ptr<BlockPlan>> blocks_;
  std::vector<Step> block_steps_, steps_;
};

// The neck + head on their own (recorded once per feature buffers by sparse/head_plan.py).
class Head {
 public:
  Head(const at::Tensor& f16, const at::Tensor& f8, const at::Tensor& f4,
       const std::vector<int64_t>& dims, const std::vector<at::Tensor>& weights,
       const std::vector<at::Tensor>& buffers, int64_t threads)
      : plan_(f16, f8, f4, dims, weights, buffers), threads_(std::max<int64_t>(1, threads)) {
    plan_.append_steps(steps_);
  }
  void run() { pool_for(threads_).run(steps_); }

 private:
  HeadPlan plan_;
  int64_t threads_;
  std::vector<Step> steps_;
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<Head>(m, "Head")
      .def(pybind11::init<const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const std::vector<int64_t>&, const std::vector<at::Tensor>&,
                          const std::vector<at::Tensor>&, int64_t>())
      .def("run", &Head::run);
  pybind11::class_<Pointwise>(m, "Pointwise")
      .def(pybind11::init<const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const at::Tensor&, bool, int64_t>())
      .def("run", &Pointwise::run);
  m.def("worker_chunks", &worker_chunks,
        "Chunks the pool's workers (not the caller) have run so far, for a thread count");
  m.def("run_block", &run_block, "Fused gather-scatter inverted-residual block (CPU)");
  pybind11::class_<BlockSequence>(m, "BlockSequence")
      .def(pybind11::init<>())
      .def("set_stem", &BlockSequence::set_stem)
      .def("set_last", &BlockSequence::set_last)
      .def("add", &BlockSequence::add)
      .def("run", &BlockSequence::run, pybind11::arg("x"), pybind11::arg("linger_us") = 0)
      .def("set_timing", &BlockSequence::set_timing)
      .def("times", &BlockSequence::times)
      .def("__len__", &BlockSequence::size);
  m.def("stem_conv", &stem_conv, "Dense 3x3 stem conv + ReLU6 into a channels-last buffer (CPU)");
}
