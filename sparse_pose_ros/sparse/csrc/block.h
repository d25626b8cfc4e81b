// Fused CPU execution of one gated inverted-residual block on flat channels-last buffers.
//
// One call does what the PyTorch-ops path does in ~30 dispatcher round trips:
//   mask unit (1x1 conv -> logit per output, threshold) or a given fixed mask,
//   receptive (dilated) mask, index lists, gather + expand GEMM + ReLU6,
//   masked depthwise 3x3 + ReLU6 on active outputs, project GEMM, scatter(-add) into the output.
// Buffers are passed in (owned and reused by the Python executor), so a frame allocates nothing
// of index or feature size. GEMMs are the micro-kernel of simd_gemm.h (why our own: there);
// everything else is plain loops the compiler vectorises (-O3 -march=native, built on the
// target machine).
//
// Layout: x is (B*H*W + 1, C_in) row-major, row p = (b*H + y)*W + x; the last row is zero.
// Weights: expand (C_in, C_e), depthwise (9, C_e) taps row-major (dy, dx), project (C_e, C_out).
//
// Declarations here; the steps are in block.cpp. Members used only inside block.cpp are
// declared inline (as they were when defined in the class), so that translation unit inlines them
// as before.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd_gemm.h"
#include "worker_pool.h"

namespace spr_cpu {

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
  // What a skipped output cell takes (c_out floats, the model's ``skip_fill``), or nullptr: zero
  // (non-residual) / X unchanged (residual).
  const float* fp = nullptr;
  int32_t *rank, *act, *dil_rows, *dil_ptr, *act_ptr;
  int64_t cap_e, cap_a, strip_rows, threads;
  // Band groups (step 3): groups_per_img chunks of output rows per image, bounds chosen per frame
  // in scan_rows; group_y[b * (groups_per_img + 1) + k] = first output row of group k of image b.
  int64_t groups_per_img = 1;
  std::vector<int32_t> group_y;

  // What step 3 computes in one go: cw channels of the expanded rows with these weights
  // (expand columns, depthwise taps, project rows; ``packed``: the GEMM weights are
  // panel-packed), and where the project GEMM writes (``out``, n_out x c_out).
  struct Slice {
    int64_t c0 = 0, cw = 0;  // its channels of the expanded rows: [c0, c0 + cw)
    const float *we = nullptr, *be = nullptr, *wd = nullptr, *bd = nullptr, *wp = nullptr;
    float* out = nullptr;
    bool packed = true;
    std::vector<float> own_we, own_wd, own_wp;  // a channel slice's copies of its weights
    // use_bf16: its GEMM weights in bf16 (pack_bf16: AMX tiles or the dot product)
    Bf16Weights we16, wp16;
  };
  // Every channel (the plan's own weights, output p_buf): step 3 cut into bands of rows.
  Slice whole;
  // Channel split (``channel_slices`` > 1; the Python side gives one slice a thread to the
  // blocks with an expand conv and enough weights, cpu_kernel.channel_slices says why and what
  // it measured). Cut by rows, every thread streams all the weights through its GEMMs (MoveNet Thunder's 8x8
  // stage: 3.8-5.6 MB for a few dozen active cells) and expands its own copy of the halo rows;
  // cut by channels, each thread reads 1/n of the weights and no row twice. A slice's chunk
  // runs the expand and depthwise of its channels on every row of the image, then the project
  // GEMM over just those channels (a part of the K sum) into its own partial output; the
  // scatter adds the partials. The bands of rows stay inside a slice (L2-sized scratch).
  std::vector<Slice> slices;
  std::vector<float> partial;  // the project outputs of slices 1.. (slice 0 writes p_buf)
  void make_slices(int64_t n, const at::Tensor& w_expand, const at::Tensor& w_project);

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
            const at::Tensor& fill, int64_t channel_slices = 1, bool pack_weights = true);

  void append_steps(std::vector<Step>& steps);

  // From now on the expand and project GEMMs run in bf16 (simd_gemm.h: AMX tiles or the
  // AVX512-BF16 dot product, why and what they measured); the depthwise, index and scatter
  // steps stay in f32. Packs the weights once; refuses where bf16_enable() is false.
  void use_bf16();

  std::vector<int64_t> counts() const { return {n_hard, n_dil_true, compute_all ? 1 : 0}; }
  static constexpr int64_t n_steps() { return 6; }  // as many as append_steps adds

 private:
  inline void mask_chunk(int64_t o0, int64_t o1);

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

  inline void covering(int64_t v, int64_t n_o, int64_t pad, int64_t& lo, int64_t& hi) const;

  inline void count_rows(int64_t r0, int64_t r1);

  static inline int64_t exclusive_scan(int32_t* ptr, int64_t n);

  inline void scan_rows();

  inline void fill_rows(int64_t r0, int64_t r1);

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

  inline void place_groups();

  inline void band_group(int64_t gi, int tid);

  inline void strip(int64_t b, int64_t y0, int64_t y1, int tid, Held& held, const Slice& sl);

  inline void scatter_chunk(int64_t o0, int64_t o1);

  inline void store_row(int64_t o, int64_t k, float g);
  inline void skip_rows(int64_t o0, int64_t o1);
};

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
    const at::Tensor& e_buf, const at::Tensor& d_buf, const at::Tensor& p_buf, int64_t strip_rows,
    const at::Tensor& fill, int64_t channel_slices);

}  // namespace spr_cpu
