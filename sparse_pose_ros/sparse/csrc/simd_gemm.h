// SIMD / GEMM building blocks of the compiled CPU kernel, shared by the block, stem and head
// plans (block.cpp, stem.cpp, head.cpp): buffer checks, the register-blocked GEMM micro-kernel
// (AVX-512 when the build machine has it, a vectorisable loop otherwise) and its panel-packed
// weights, the masked depthwise 3x3 rows, a vector exp.
//
// Why our own GEMM: the matrices here are small (K, N <= a few hundred, a band of rows), where a
// library call's fixed cost (dispatcher, tensor views, packing) is comparable to the arithmetic,
// and the micro-kernel can read gathered rows in place through a row list (no gather copy) and
// fuse bias + ReLU6 into its store.
//
// Everything here is inline in this header on purpose: these are the innermost loops, and each
// plan's translation unit must be able to inline and specialise them as the single-file kernel
// did (a call into another translation unit would stop that).
#pragma once

#include <torch/extension.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define SPR_HAVE_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define SPR_HAVE_DPBF16 1
#endif

namespace spr_cpu {

inline void check_buffer(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// A checked float buffer of exactly ``numel`` values (a plan's weight or buffer); ``plan`` names
// the plan in the message.
inline float* checked_ptr(const at::Tensor& t, int64_t numel, const char* plan, const char* name) {
  check_buffer(t, name);
  TORCH_CHECK(t.numel() == numel, plan, ": ", name, " has ", t.numel(), " values, expected ",
              numel);
  return t.data_ptr<float>();
}

inline void relu_rows(float* p, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) p[i] = std::max(p[i], 0.0f);
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
// How far ahead (rows of B) the first row tile of a K block prefetches B. Why: a frame streams
// its weights (~20 MB for MoveNet Thunder in f32) from L3 / memory, a few dozen rows each on the
// sparse blocks, and the hardware prefetcher alone left that latency-bound: on a 2-core Xeon VM
// a 16 x 1680 x 560 GEMM on cold weights ran at 22-28 GMAC/s (4-7 GB/s of weights); 16 rows of
// software prefetch took it from 537-677 to 424-465 us (results/gemm_prefetch_microbench.json,
// two runs), and the sparse network's blocks from 6.7 to 5.5 ms a frame on real video. The
// rows after the first tile read the slab from L1.
inline constexpr int64_t kPrefetchRows = 16;

// One MR x (16*NV) tile over k in [k0, k1): starts from zero (first K block) or from C, adds the
// bias and ReLU6 only after the last K block. K is blocked so a B slab stays in L1. PF: prefetch
// B kPrefetchRows ahead (the first row tile of the block: it is the one that reads B from
// memory; prefetches never fault, also past the end of B).
template <int MR, int NV, bool PF>
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
    if constexpr (PF) {
      const uintptr_t ahead = reinterpret_cast<uintptr_t>(bk) + kPrefetchRows * N * 4;
      UNROLL
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * v), _MM_HINT_T0);
    }
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

template <int MR, bool PF>
inline void row_tile_pf(const float* const* ar, int64_t k0, int64_t k1, const float* B, int64_t N,
                        int64_t col0, const float* bias, bool act, bool first, bool last, float* C,
                        const int64_t* crow) {
  const int64_t left = N - col0;
  const int nv = static_cast<int>(std::min<int64_t>(4, (left + 15) / 16));
  const int64_t rem = left - 16 * (nv - 1);
  const __mmask16 tail = lanes(rem);
  switch (nv) {
    case 1: micro_tile<MR, 1, PF>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    case 2: micro_tile<MR, 2, PF>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    case 3: micro_tile<MR, 3, PF>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
    default: micro_tile<MR, 4, PF>(ar, k0, k1, B, N, col0, tail, bias, act, first, last, C, crow); break;
  }
}

template <int MR>
inline void row_tile(const float* const* ar, int64_t k0, int64_t k1, const float* B, int64_t N,
                     int64_t col0, const float* bias, bool act, bool first, bool last, float* C,
                     const int64_t* crow, bool prefetch) {
  if (prefetch) {
    row_tile_pf<MR, true>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow);
  } else {
    row_tile_pf<MR, false>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow);
  }
}

inline void gemm(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* B, int64_t N,
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
        const bool pf = r0 == 0;
        switch (mr) {
          case 1: row_tile<1>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow, pf); break;
          case 2: row_tile<2>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow, pf); break;
          case 3: row_tile<3>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow, pf); break;
          case 4: row_tile<4>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow, pf); break;
          case 5: row_tile<5>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow, pf); break;
          default: row_tile<6>(ar, k0, k1, B, N, col0, bias, act, first, last, C, crow, pf); break;
        }
      }
    }
  }
}
#else
inline void gemm(const float* a, const int32_t* rows, int64_t n, int64_t K, const float* B, int64_t N,
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

// ---- bf16 GEMMs: AMX tiles, or the AVX512-BF16 dot product ---------------------------------
// Why: on CPUs with AMX (Intel Sapphire Rapids and later) a tile multiply does 16 x 16 x 32
// bf16 MACs into f32; on MoveNet Thunder's wide late blocks (K, N of 168-1680, a few dozen
// active rows) it ran 2.5-5x faster than the f32 micro-kernel above (both single-threaded,
// conversions of A included), where the f32 kernel streams MBs of weights for few rows. The
// AVX512-BF16 dot product (vdpbf16ps, the f32 micro-kernel's tiling on bf16 pairs: gemm_dot)
// ran 1.3-1.7x the f32 kernel's time on that Xeon, but 0.49-0.57x on an AMD EPYC (Zen 4/5)
// without AMX (results/amx_gemm_microbench.json, results/dpbf16_gemm_microbench.json): so
// tiles where there is AMX, the dot product where the CPU is AMD (bf16_auto), f32 elsewhere.
// Products are of bf16-rounded inputs (round to nearest even), sums in f32: ~0.25 % relative
// error per GEMM, like OpenVINO's bf16.
//
// Weights are packed once. For the tiles: column blocks of 16, each holding the K rows
// (zero-padded to a multiple of 32) as pairs of k interleaved per column ([K/2][16][2] bf16,
// the "VNNI" layout TDPBF16PS wants), so a B tile is 16 consecutive 64-byte rows. For the dot
// product: column panels of 64 (as pack_panels), each [K/2][width][2] (K padded to even).
struct Bf16Weights {
  std::vector<uint16_t> data;
  int64_t K = 0, N = 0, Kp = 0;
  bool tiles = true;  // AMX layout, else the dot product's panels
  bool empty() const { return data.empty(); }
};

// float -> bf16, round to nearest even (the weights: packed once, no need for SIMD)
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// B: (K x N) with row stride ldb (a column or row range of a larger matrix)
inline Bf16Weights pack_amx(const float* B, int64_t K, int64_t N, int64_t ldb) {
  Bf16Weights w;
  w.K = K;
  w.N = N;
  w.Kp = (K + 31) / 32 * 32;
  const int64_t nb = (N + 15) / 16;
  w.data.assign(static_cast<size_t>(nb * w.Kp * 16), 0);
  for (int64_t j = 0; j < N; ++j)
    for (int64_t k = 0; k < K; ++k)
      w.data[static_cast<size_t>((j / 16) * w.Kp * 16 + (k / 2) * 32 + (j % 16) * 2 + k % 2)] =
          to_bf16(B[k * ldb + j]);
  return w;
}

// Whether this build and this process can run gemm_amx: compiled for AMX and the kernel grants
// the process the tile data state (Linux asks for it once, arch_prctl ARCH_REQ_XCOMP_PERM).
inline bool amx_enable() {
#ifdef SPR_HAVE_AMX
  static const bool ok = [] {
    constexpr int kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

#if defined(SPR_HAVE_AMX) || defined(SPR_HAVE_DPBF16)
// One row of A (K floats at s) rounded to bf16 (nearest even) into d[0, Kp), zero past K: what
// both bf16 GEMMs multiply (Kp: the tiles' multiple of 32, or the dot product's even K).
inline void round_row_bf16(const float* s, int64_t K, int64_t Kp, uint16_t* d) {
  for (int64_t k = 0; k < Kp; k += 32) {
    const __m512 lo = _mm512_maskz_loadu_ps(lanes(std::max<int64_t>(0, K - k)), s + k);
    const __m512 hi = _mm512_maskz_loadu_ps(lanes(std::max<int64_t>(0, K - k - 16)), s + k + 16);
    const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    const int64_t left = std::min<int64_t>(32, Kp - k);
    _mm512_mask_storeu_epi16(d + k, left >= 32 ? ~0u : ((1u << left) - 1u), v);
  }
}
#endif

#ifdef SPR_HAVE_AMX
// C[:, c0:c1) (row stride ldc) = A (n x K, row r at a + (rows ? rows[r] : r) * lda) @ W
// [+ bias] [ReLU6]; c0 a multiple of 16. A's rows are rounded to bf16 into a per-thread buffer
// (zero-padded to 16 rows and W.Kp columns), each 16 x 16 C tile goes through a per-thread
// f32 tile for the bias, ReLU6 and the partial edges.
inline void gemm_amx(const float* a, const int32_t* rows, int64_t n, int64_t K,
                     const Bf16Weights& W, const float* bias, bool act, float* C, int64_t lda,
                     int64_t ldc, int64_t c0 = 0, int64_t c1 = -1) {
  if (n <= 0) return;
  if (lda <= 0) lda = K;
  if (ldc <= 0) ldc = W.N;
  if (c1 < 0) c1 = W.N;
  const int64_t Kp = W.Kp, Mp = (n + 15) / 16 * 16;
  thread_local std::vector<uint16_t> abuf;
  thread_local float ct[4][256];
  if (static_cast<int64_t>(abuf.size()) < Mp * Kp) abuf.resize(static_cast<size_t>(Mp * Kp));
  for (int64_t r = 0; r < Mp; ++r) {
    uint16_t* d = abuf.data() + r * Kp;
    if (r >= n) {
      std::memset(d, 0, static_cast<size_t>(Kp) * sizeof(uint16_t));
      continue;
    }
    round_row_bf16(a + (rows ? static_cast<int64_t>(rows[r]) : r) * lda, K, Kp, d);
  }
  struct alignas(64) TileConfig {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {  // 0-3: C, 4-5: A, 6-7: B; every tile 16 rows of 64 bytes
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  const int64_t kb_n = Kp / 32, jb1 = (c1 + 15) / 16;
  const uint16_t* A = abuf.data();
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  for (int64_t jb = c0 / 16; jb < jb1; jb += 2) {
    const bool two_c = jb + 1 < jb1;
    const uint16_t* B0 = W.data.data() + jb * Kp * 16;
    const uint16_t* B1 = B0 + Kp * 16;
    for (int64_t r0 = 0; r0 < Mp; r0 += 32) {
      const bool two_r = r0 + 16 < Mp;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t kb = 0; kb < kb_n; ++kb) {
        _tile_loadd(4, A + r0 * Kp + kb * 32, Kp * 2);
        _tile_loadd(6, B0 + kb * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (two_c) {
          _tile_loadd(7, B1 + kb * 512, 64);
          _tile_dpbf16ps(1, 4, 7);
        }
        if (two_r) {
          _tile_loadd(5, A + (r0 + 16) * Kp + kb * 32, Kp * 2);
          _tile_dpbf16ps(2, 5, 6);
          if (two_c) _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, ct[0], 64);
      if (two_c) _tile_stored(1, ct[1], 64);
      if (two_r) {
        _tile_stored(2, ct[2], 64);
        if (two_c) _tile_stored(3, ct[3], 64);
      }
      for (int t = 0; t < 4; ++t) {
        const int64_t col = (jb + (t & 1)) * 16, row0 = r0 + (t >> 1) * 16;
        if (((t & 1) && !two_c) || ((t >> 1) && !two_r)) continue;
        const __mmask16 m = lanes(std::min<int64_t>(c1, W.N) - col);
        const __m512 bb = bias ? _mm512_maskz_loadu_ps(m, bias + col) : zero;
        for (int64_t r = row0; r < std::min(n, row0 + 16); ++r) {
          __m512 o = _mm512_add_ps(_mm512_loadu_ps(ct[t] + (r - row0) * 16), bb);
          if (act) o = _mm512_min_ps(_mm512_max_ps(o, zero), six);
          _mm512_mask_storeu_ps(C + r * ldc + col, m, o);
        }
      }
    }
  }
}
#else
inline void gemm_amx(const float*, const int32_t*, int64_t, int64_t, const Bf16Weights&,
                     const float*, bool, float*, int64_t, int64_t, int64_t = 0, int64_t = -1) {
  TORCH_CHECK(false, "bf16 GEMM needs a build for a CPU with AMX (see amx_enable)");
}
#endif

// Weights in column panels of kPanel: panel j holds columns [kPanel*j, kPanel*j + kPanel) of the
// (K x N) matrix as K contiguous rows of its width. Why: the micro-kernel streams one K slab of
// a panel per tile column; read from the row-major matrix that slab is K short runs N floats
// apart (6.7 KB apart for MoveNet Thunder's 1680-wide expand), which the hardware prefetcher
// follows badly once the weights no longer fit L2 (the stride-16 / 32 blocks: 1.3-5.6 MB of
// weights against 1 MB of L2 on Zen 4); packed, the slab is one sequential 32 KB read. The
// weights are constant, so they are packed once when a plan is made.
inline constexpr int64_t kPanel = 64;

inline std::vector<float> pack_panels(const float* B, int64_t K, int64_t N) {
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
inline void gemm_packed(const float* a, const int32_t* rows, int64_t n, int64_t K,
                        const float* Bp, int64_t N, const float* bias, bool act, float* C, int64_t lda, int64_t ldc,
                 int64_t c0 = 0, int64_t c1 = -1) {
  if (lda <= 0) lda = K;
  if (ldc <= 0) ldc = N;
  if (c1 < 0) c1 = N;
  for (int64_t col = c0; col < c1; col += kPanel) {
    const int64_t nw = std::min(kPanel, N - col);
    gemm(a, rows, n, K, Bp + col * K, nw, bias ? bias + col : nullptr, act, C + col, lda, ldc);
  }
}

// Whether this build can run gemm_dot (compiled for AVX512-BF16: -march=native on a CPU that
// has it).
inline bool dot_bf16_available() {
#ifdef SPR_HAVE_DPBF16
  return true;
#else
  return false;
#endif
}

// bf16 GEMMs run here: AMX tiles, else the AVX512-BF16 dot product.
inline bool bf16_enable() { return amx_enable() || dot_bf16_available(); }

// Where "auto" takes bf16: where it was measured faster than f32 (see the section's comment):
// AMX tiles, or the dot product on an AMD CPU.
inline bool bf16_auto() {
  if (amx_enable()) return true;
#if defined(SPR_HAVE_DPBF16) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_is("amd");
#else
  return false;
#endif
}

// The dot product's layout (see Bf16Weights): B (K x N) with row stride ldb.
inline Bf16Weights pack_dot(const float* B, int64_t K, int64_t N, int64_t ldb) {
  Bf16Weights w;
  w.K = K;
  w.N = N;
  w.Kp = (K + 1) / 2 * 2;
  w.tiles = false;
  w.data.assign(static_cast<size_t>(w.Kp * N), 0);
  uint16_t* o = w.data.data();
  for (int64_t c0 = 0; c0 < N; c0 += kPanel) {
    const int64_t nw = std::min(kPanel, N - c0);
    for (int64_t k2 = 0; k2 < w.Kp / 2; ++k2)
      for (int64_t j = 0; j < nw; ++j)
        for (int64_t q = 0; q < 2; ++q, ++o) {
          const int64_t k = 2 * k2 + q;
          *o = k < K ? to_bf16(B[k * ldb + c0 + j]) : static_cast<uint16_t>(0);
        }
  }
  return w;
}

// The layout this machine's bf16 GEMM reads: AMX tiles where granted, else the dot product's.
inline Bf16Weights pack_bf16(const float* B, int64_t K, int64_t N, int64_t ldb) {
  TORCH_CHECK(bf16_enable(), "bf16 GEMMs need AMX or AVX512-BF16 (this build or CPU has neither)");
  return amx_enable() ? pack_amx(B, K, N, ldb) : pack_dot(B, K, N, ldb);
}

#ifdef SPR_HAVE_DPBF16
// One MR x (16*NV) tile of the dot product over k pairs [k0, k1): A rows as 32-bit bf16 pairs,
// B rows of the panel ldb uint16 apart; the f32 micro-kernel's structure (micro_tile).
template <int MR, int NV>
inline void dot_tile(const uint32_t* const* ar, int64_t k0, int64_t k1, const uint16_t* B,
                     int64_t ldb, __mmask16 tail, const float* bias, bool act, bool first,
                     bool last, float* C, const int64_t* crow) {
  __m512 acc[MR][NV];
  UNROLL for (int r = 0; r < MR; ++r) UNROLL for (int v = 0; v < NV; ++v) {
    const __mmask16 m = v == NV - 1 ? tail : static_cast<__mmask16>(0xFFFF);
    acc[r][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, C + crow[r] + 16 * v);
  }
  for (int64_t k = k0; k < k1; ++k) {
    const uint16_t* bk = B + k * ldb;
    __m512bh bv[NV];
    UNROLL for (int v = 0; v < NV; ++v) {  // a 32-bit lane = one column's pair of k
      const __mmask16 m = v == NV - 1 ? tail : static_cast<__mmask16>(0xFFFF);
      bv[v] = (__m512bh)_mm512_maskz_loadu_epi32(m, bk + 32 * v);
    }
    UNROLL for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(ar[r][k]));
      UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  UNROLL for (int v = 0; v < NV; ++v) {
    const __mmask16 m = v == NV - 1 ? tail : static_cast<__mmask16>(0xFFFF);
    const __m512 bb = (last && bias) ? _mm512_maskz_loadu_ps(m, bias + 16 * v) : zero;
    UNROLL for (int r = 0; r < MR; ++r) {
      __m512 o = last ? _mm512_add_ps(acc[r][v], bb) : acc[r][v];
      if (last && act) o = _mm512_min_ps(_mm512_max_ps(o, zero), six);
      _mm512_mask_storeu_ps(C + crow[r] + 16 * v, m, o);
    }
  }
}

template <int MR>
inline void dot_row_tile(const uint32_t* const* ar, int64_t k0, int64_t k1, const uint16_t* B,
                         int64_t ldb, int64_t nw, const float* bias, bool act, bool first,
                         bool last, float* C, const int64_t* crow) {
  const int64_t nv = (nw + 15) / 16;
  const __mmask16 tail = lanes(nw - 16 * (nv - 1));
  switch (nv) {
    case 1: dot_tile<MR, 1>(ar, k0, k1, B, ldb, tail, bias, act, first, last, C, crow); break;
    case 2: dot_tile<MR, 2>(ar, k0, k1, B, ldb, tail, bias, act, first, last, C, crow); break;
    case 3: dot_tile<MR, 3>(ar, k0, k1, B, ldb, tail, bias, act, first, last, C, crow); break;
    default: dot_tile<MR, 4>(ar, k0, k1, B, ldb, tail, bias, act, first, last, C, crow); break;
  }
}

// C[:, c0:c1) (row stride ldc) = A (n x K, row r at a + (rows ? rows[r] : r) * lda) @ W
// [+ bias] [ReLU6], W packed by pack_dot; c0 a multiple of 16. A's rows are rounded to bf16
// pairs into a per-thread buffer first.
inline void gemm_dot(const float* a, const int32_t* rows, int64_t n, int64_t K,
                     const Bf16Weights& W, const float* bias, bool act, float* C, int64_t lda,
                     int64_t ldc, int64_t c0 = 0, int64_t c1 = -1) {
  if (n <= 0) return;
  if (lda <= 0) lda = K;
  if (ldc <= 0) ldc = W.N;
  if (c1 < 0 || c1 > W.N) c1 = W.N;
  const int64_t Kp = W.Kp, K2 = Kp / 2;
  thread_local std::vector<uint16_t> abuf;
  if (static_cast<int64_t>(abuf.size()) < n * Kp) abuf.resize(static_cast<size_t>(n * Kp));
  for (int64_t r = 0; r < n; ++r) {
    const float* s = a + (rows ? static_cast<int64_t>(rows[r]) : r) * lda;
    uint16_t* d = abuf.data() + r * Kp;
    round_row_bf16(s, K, Kp, d);
  }
  constexpr int MR = 6;
  // k pairs blocked so a B slab (K2 x 64 columns x 4 bytes) stays in L1
  const int64_t KC = K2 * 64 * 4 <= 32768 ? K2 : 64;
  for (int64_t col = c0; col < c1;) {
    const int64_t panel = col / kPanel * kPanel, pw = std::min(kPanel, W.N - panel);
    const int64_t nw = std::min(c1, panel + pw) - col;
    const uint16_t* B = W.data.data() + panel * Kp + (col - panel) * 2;
    for (int64_t k0 = 0; k0 < K2; k0 += KC) {
      const int64_t k1 = std::min(K2, k0 + KC);
      const bool first = k0 == 0, last = k1 == K2;
      const uint32_t* ar[MR];
      int64_t crow[MR];
      for (int64_t r0 = 0; r0 < n; r0 += MR) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, n - r0));
        for (int r = 0; r < mr; ++r) {
          ar[r] = reinterpret_cast<const uint32_t*>(abuf.data() + (r0 + r) * Kp);
          crow[r] = (r0 + r) * ldc + col;
        }
        const float* bb = bias ? bias + col : nullptr;
        switch (mr) {
          case 1: dot_row_tile<1>(ar, k0, k1, B, pw * 2, nw, bb, act, first, last, C, crow); break;
          case 2: dot_row_tile<2>(ar, k0, k1, B, pw * 2, nw, bb, act, first, last, C, crow); break;
          case 3: dot_row_tile<3>(ar, k0, k1, B, pw * 2, nw, bb, act, first, last, C, crow); break;
          case 4: dot_row_tile<4>(ar, k0, k1, B, pw * 2, nw, bb, act, first, last, C, crow); break;
          case 5: dot_row_tile<5>(ar, k0, k1, B, pw * 2, nw, bb, act, first, last, C, crow); break;
          default: dot_row_tile<6>(ar, k0, k1, B, pw * 2, nw, bb, act, first, last, C, crow); break;
        }
      }
    }
    col += nw;
  }
}
#else
inline void gemm_dot(const float*, const int32_t*, int64_t, int64_t, const Bf16Weights&,
                     const float*, bool, float*, int64_t, int64_t, int64_t = 0, int64_t = -1) {
  TORCH_CHECK(false, "the bf16 dot-product GEMM needs a build for a CPU with AVX512-BF16");
}
#endif

// C[:, c0:c1) = A @ W [+ bias] [ReLU6] with W in whichever form a plan holds it: bf16
// (``w16`` not empty: AMX tiles or the dot product, pack_bf16), panel-packed f32 (``packed``, pack_panels) or row-major f32 (every
// column; c0 = 0, c1 = -1). Rows of A and lda / ldc as in gemm.
inline void gemm_weights(const Bf16Weights& w16, bool packed, const float* W, const float* a,
                         const int32_t* rows, int64_t n, int64_t K, int64_t N, const float* bias,
                         bool act, float* C, int64_t lda, int64_t ldc, int64_t c0 = 0,
                         int64_t c1 = -1) {
  if (!w16.empty()) {
    if (w16.tiles) {
      gemm_amx(a, rows, n, K, w16, bias, act, C, lda, ldc, c0, c1);
    } else {
      gemm_dot(a, rows, n, K, w16, bias, act, C, lda, ldc, c0, c1);
    }
  } else if (packed) {
    gemm_packed(a, rows, n, K, W, N, bias, act, C, lda, ldc, c0, c1);
  } else {
    gemm(a, rows, n, K, W, N, bias, act, C, lda, ldc);
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

// Depthwise 3x3 without bias or activation, zero padding (Keras SeparableConv2D's first half):
// outputs of columns [x0, x1) of row y of image b of an h x w map with c channels (channels-last
// rows of w * c floats) into out[(x - x0) * c]. Per pixel and 16-channel block the taps
// accumulate in a register, one store each (a load-add-store per tap stalled on store
// forwarding of the masked 24-channel tails: 2x slower).
inline void depthwise_plain(const float* src, int64_t h, int64_t w, int64_t c, const float* wd,
                            int64_t b, int64_t y, int64_t x0, int64_t x1, float* out) {
  const float* rows[3];
  int64_t n_rows = 0, dys[3];
  for (int64_t dy = -1; dy <= 1; ++dy) {
    if (y + dy < 0 || y + dy >= h) continue;
    rows[n_rows] = src + (b * h + y + dy) * w * c;
    dys[n_rows++] = dy + 1;
  }
  for (int64_t x = x0; x < x1; ++x) {
    const int64_t dx0 = x > 0 ? -1 : 0, dx1 = x + 1 < w ? 1 : 0;
    float* o = out + (x - x0) * c;
#ifdef __AVX512F__
    for (int64_t k = 0; k < c; k += 16) {
      const __mmask16 m = lanes(c - k);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t i = 0; i < n_rows; ++i)
        for (int64_t dx = dx0; dx <= dx1; ++dx)
          acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wd + (dys[i] * 3 + dx + 1) * c + k),
                                _mm512_maskz_loadu_ps(m, rows[i] + (x + dx) * c + k), acc);
      _mm512_mask_storeu_ps(o + k, m, acc);
    }
#else
    std::fill(o, o + c, 0.0f);
    for (int64_t i = 0; i < n_rows; ++i)
      for (int64_t dx = dx0; dx <= dx1; ++dx) {
        const float* wt = wd + (dys[i] * 3 + dx + 1) * c;
        const float* sp = rows[i] + (x + dx) * c;
        for (int64_t k = 0; k < c; ++k) o[k] += wt[k] * sp[k];
      }
#endif
  }
}

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

}  // namespace spr_cpu
