// The extension module (sparse_pose_ros_cpu, built by sparse/cpu_kernel.py from every .cpp here):
// the classes and functions Python calls. The work is in the other files, one job each:
//   simd_gemm.h            SIMD / GEMM building blocks (inline: the innermost loops)
//   worker_pool.h/.cpp     the kernel's own worker pool (why not OpenMP: worker_pool.h)
//   block.h/.cpp           one gated inverted-residual block as six steps (+ run_block)
//   stem.h/.cpp            the dense stem (+ stem_conv)
//   head.h/.cpp            the dense neck + factorized head (the light neck)
//   fpn.h/.cpp             MoveNet's FPN neck + person-centre logits
//   window_head.h/.cpp     the person box, the head on its window, the readout + lifter
//   module.cpp (this)      the 1x1 after the last block, BlockSequence (a whole backbone as one
//                          call), Head, Pointwise and the Python bindings
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "block.h"
#include "fpn.h"
#include "head.h"
#include "simd_gemm.h"
#include "stem.h"
#include "window_head.h"
#include "worker_pool.h"

namespace spr_cpu {

// ---- dense 1x1 conv (+ bias, ReLU6) -------------------------------------------------------------
// MoveNet's conv to 1280 channels after the last block (560 -> 1280 on 8x8 at Thunder's 256 px)
// as the last step of the backbone's frame. Why not torch.addmm after the sequence: MKL there
// ran 40 % slower than ONNX Runtime on this 64-row GEMM, and with two threads torch's OpenMP
// worker competed for the second core with ours, still spinning after the frame (2 threads were
// no faster than 1). Chunks are column panels, so with two threads each reads half the weights.
struct PointwisePlan {
  at::Tensor x, out, bias, w;
  std::vector<float> w_panels;
  Bf16Weights w16;  // use_bf16: the weights in bf16 (the conv then runs in bf16)
  int64_t n = 0, c_in = 0, c_out = 0, threads = 1;
  bool relu6 = true;

  // w: (C_in, C_out); x: (n + 1, C_in) flat channels-last rows; out: (n + 1, C_out)
  PointwisePlan(const at::Tensor& w, const at::Tensor& bias_, const at::Tensor& x_,
                const at::Tensor& out_, bool relu6_, int64_t threads_)
      : x(x_), out(out_), bias(bias_), w(w), threads(std::max<int64_t>(1, threads_)), relu6(relu6_) {
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

  void use_bf16() {
    TORCH_CHECK(bf16_enable(),
                "a bf16 1x1 conv needs AMX or AVX512-BF16 (this build or CPU has neither)");
    w16 = pack_bf16(w.data_ptr<float>(), c_in, c_out, c_out);
  }

  // C[:, c0:c1) of the conv of n rows (row r of x at rows[r], or r)
  void conv(const float* xp, const int32_t* rows, int64_t m, float* yp, int64_t c0, int64_t c1) const {
    gemm_weights(w16, true, w_panels.data(), xp, rows, m, c_in, c_out, bias.data_ptr<float>(),
                 relu6, yp, c_in, c_out, c0, c1);
  }

  // The block whose output this conv reads, where every cell it skipped holds one vector (a
  // gated, non-residual block: its fill, or zero): the conv then runs on that block's active
  // cells alone and writes ``skip_out`` (the conv of that vector) at the others. Same result;
  // why: after a whole frame's region MoveNet's 1x1 to 1280 was ~0.6 ms of dense work (two
  // threads) on cells that all read the same input.
  const BlockPlan* src = nullptr;
  std::vector<float> skip_out, compact;

  void read_active_cells_of(const BlockPlan* block, const at::Tensor& w) {
    src = block;
    const float* wp = w.data_ptr<float>();
    const float* b = bias.data_ptr<float>();
    skip_out.assign(static_cast<size_t>(c_out), 0.0f);
    for (int64_t j = 0; j < c_out; ++j) {
      double acc = b[j];
      if (block->fp != nullptr)
        for (int64_t k = 0; k < c_in; ++k) acc += static_cast<double>(block->fp[k]) * wp[k * c_out + j];
      const float v = static_cast<float>(acc);
      skip_out[j] = relu6 ? std::min(std::max(v, 0.0f), 6.0f) : v;
    }
    compact.assign(static_cast<size_t>(n * c_out), 0.0f);
  }

  Step step() {
    return {(c_out + kPanel - 1) / kPanel, 1, false, [this](int64_t p, int64_t, int) {
              const int64_t c0 = p * kPanel, c1 = std::min(c_out, (p + 1) * kPanel);
              const float* xp = x.data_ptr<float>();
              float* yp = out.data_ptr<float>();
              if (src == nullptr || src->compute_all) {
                conv(xp, nullptr, n, yp, c0, c1);
                return;
              }
              const int64_t m = src->n_hard;
              const size_t bytes = static_cast<size_t>(c1 - c0) * sizeof(float);
              if (m > 0) conv(xp, src->act, m, compact.data(), c0, c1);
              for (int64_t k = 0; k < m; ++k)
                std::memcpy(yp + static_cast<int64_t>(src->act[k]) * c_out + c0,
                            compact.data() + k * c_out + c0, bytes);
              for (int64_t r = 0; r < n; ++r)
                if (src->hard[r] <= 0.0f) std::memcpy(yp + r * c_out + c0, skip_out.data() + c0, bytes);
            }};
  }
};

class Pointwise {
 public:
  Pointwise(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& x,
            const at::Tensor& out, bool relu6, int64_t threads)
      : plan_(w, bias, x, out, relu6, threads) {}
  void run() { run_steps(plan_.threads, {plan_.step()}); }
  void use_bf16() { plan_.use_bf16(); }

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
    if (bf16_) last_->use_bf16();
    const BlockPlan* b = blocks_.empty() ? nullptr : blocks_.back().get();
    if (b != nullptr && b->gate != 0 && !b->residual && b->op == x.data_ptr<float>() &&
        b->n_out == last_->n && b->c_out == last_->c_in)
      last_->read_active_cells_of(b, w);
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
           const at::Tensor& p_buf, int64_t strip_rows, const at::Tensor& fill,
           int64_t channel_slices) {
    blocks_.push_back(std::make_unique<BlockPlan>(
        x, out, batch, h, w, stride, pad_top, pad_left, w_expand, b_expand, w_dw, b_dw, w_project,
        b_project, residual, residual_relu, gate, dense_above, mask_weight, mask_bias, threshold, fixed_hard,
        hard, dilated, logits, soft, rank, act_rows, dil_rows, row_ptr, e_buf, d_buf, p_buf,
        strip_rows, fill, channel_slices));
    if (bf16_) blocks_.back()->use_bf16();
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
    stem_window();
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
      run_steps(stem_->threads, steps_, step_done_.data(), linger_us);
      record_times(t0);
    } else {
      run_steps(stem_->threads, steps_, nullptr, linger_us);
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

  // bf16 GEMMs (AMX tiles or the dot product) for the blocks and the 1x1 added from now on (BlockPlan::use_bf16);
  // the stem stays f32. Set before add / set_last.
  void set_bf16(bool on) {
    TORCH_CHECK(!on || bf16_enable(),
                "bf16 needs AMX or AVX512-BF16 (this build or CPU has neither)");
    bf16_ = on;
  }

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

  // The stem computes only what the first block reads when that block's mask is given (fixed:
  // the region or the locator; a learned mask unit reads every pixel): per image, the bounding
  // box of the mask's active outputs grown by their 3x3 windows (StemPlan::window says why).
  // A block that then runs every row (the per-stage policy's dense mode) still only keeps its
  // active outputs, whose windows lie inside that box.
  void stem_window() {
    stem_->window.clear();
    if (blocks_.empty()) return;
    const BlockPlan& b0 = *blocks_.front();
    if (b0.gate != 2 || b0.fixed == nullptr || b0.xp != stem_->out.data_ptr<float>() ||
        b0.h != stem_->ho || b0.w != stem_->wo || b0.batch != stem_->batch)
      return;
    stem_->window.assign(static_cast<size_t>(4 * b0.batch), 0);
    for (int64_t b = 0; b < b0.batch; ++b) {
      int64_t y_lo = b0.ho, y_hi = -1, x_lo = b0.wo, x_hi = -1;
      const float* m = b0.fixed + b * b0.ho * b0.wo;
      for (int64_t oy = 0; oy < b0.ho; ++oy)
        for (int64_t ox = 0; ox < b0.wo; ++ox)
          if (m[oy * b0.wo + ox] > 0.0f) {
            y_lo = std::min(y_lo, oy);
            y_hi = std::max(y_hi, oy);
            x_lo = std::min(x_lo, ox);
            x_hi = std::max(x_hi, ox);
          }
      int64_t* win = stem_->window.data() + 4 * b;
      if (y_hi < 0) continue;  // nothing active: nothing read
      win[0] = std::max<int64_t>(0, y_lo * b0.stride - b0.pad_top);
      win[1] = std::min<int64_t>(b0.h, y_hi * b0.stride - b0.pad_top + 3);
      win[2] = std::max<int64_t>(0, x_lo * b0.stride - b0.pad_left);
      win[3] = std::min<int64_t>(b0.w, x_hi * b0.stride - b0.pad_left + 3);
    }
  }

  bool bf16_ = false;
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

// MoveNet's FPN neck + centre logits (sparse/fpn_plan.py), optionally followed by the person
// box, the head on its window and the readout (attach_head; sparse/window_head_plan.py): one
// run() is one dispatch to the workers. run() reads this frame's features (flat channels-last:
// the stride-32 output, then the taps coarse to fine) and, for a gated head, its mask.
class Fpn {
 public:
  Fpn(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& buffers,
      const std::vector<int64_t>& dims, int64_t threads)
      : plan_(weights, buffers, dims, threads) {
    plan_.append_steps(steps_);
  }
  void use_bf16() { plan_.use_bf16(); }
  void attach_head(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& buffers,
                   const std::vector<int64_t>& dims, const std::vector<double>& scalars) {
    TORCH_CHECK(!head_, "fpn: a head is attached already");
    const auto& top = plan_.levels.back();
    TORCH_CHECK(dims.size() >= 3 && dims[0] == plan_.batch && dims[1] == top.h && dims[2] == top.w,
                "fpn: the head's map is not the FPN's output");
    head_ = std::make_unique<WindowHeadPlan>(top.y, plan_.logits, top.c_out, weights, buffers,
                                             dims, scalars, plan_.threads);
    head_->append_steps(steps_);
  }
  void run(const std::vector<at::Tensor>& feats, const std::optional<at::Tensor>& gate) {
    TORCH_CHECK(feats.size() == plan_.levels.size() + 1, "fpn: one feature map per level + 1");
    const int64_t want_top = plan_.batch * plan_.h0 * plan_.w0 * plan_.c_top_in;
    check_buffer(feats[0], "f_top");
    TORCH_CHECK(feats[0].numel() == want_top, "fpn: the stride-32 features have the wrong size");
    plan_.in[0] = feats[0].data_ptr<float>();
    for (size_t l = 0; l < plan_.levels.size(); ++l) {
      const auto& lv = plan_.levels[l];
      check_buffer(feats[l + 1], "tap");
      TORCH_CHECK(feats[l + 1].numel() == plan_.batch * lv.h * lv.w * lv.c_tap,
                  "fpn: a tap has the wrong size");
      plan_.in[l + 1] = feats[l + 1].data_ptr<float>();
    }
    if (head_) {
      const bool gated = head_->hg > 0;
      TORCH_CHECK(gate.has_value() == gated,
                  gated ? "fpn: this head is gated and needs the mask" : "fpn: no gate expected");
      if (gated) {
        check_buffer(*gate, "gate");
        TORCH_CHECK(gate->numel() == head_->batch * head_->hg * head_->wg,
                    "fpn: the gate mask has the wrong size");
        head_->gate = gate->data_ptr<float>();
      }
    } else {
      TORCH_CHECK(!gate.has_value(), "fpn: a gate without an attached head");
    }
    run_steps(plan_.threads, steps_);
  }
  // The cells (y0, y1, x0, x1) the attached head read in the last frame (tests, diagnostics).
  std::vector<int64_t> head_window() const {
    TORCH_CHECK(head_, "fpn: no head attached");
    return {head_->last[0], head_->last[1], head_->last[2], head_->last[3]};
  }

 private:
  FpnPlan plan_;
  std::unique_ptr<WindowHeadPlan> head_;
  std::vector<Step> steps_;
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
  void run() { run_steps(threads_, steps_); }

 private:
  HeadPlan plan_;
  int64_t threads_;
  std::vector<Step> steps_;
};

}  // namespace spr_cpu

using spr_cpu::BlockSequence;
using spr_cpu::Fpn;
using spr_cpu::Head;
using spr_cpu::Pointwise;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<Head>(m, "Head")
      .def(pybind11::init<const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const std::vector<int64_t>&, const std::vector<at::Tensor>&,
                          const std::vector<at::Tensor>&, int64_t>())
      .def("run", &Head::run);
  pybind11::class_<Fpn>(m, "Fpn")
      .def(pybind11::init<const std::vector<at::Tensor>&, const std::vector<at::Tensor>&,
                          const std::vector<int64_t>&, int64_t>())
      .def("run", &Fpn::run, pybind11::arg("feats"), pybind11::arg("gate") = std::nullopt)
      .def("attach_head", &Fpn::attach_head)
      .def("head_window", &Fpn::head_window)
      .def("use_bf16", &Fpn::use_bf16);
  pybind11::class_<Pointwise>(m, "Pointwise")
      .def(pybind11::init<const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const at::Tensor&, bool, int64_t>())
      .def("run", &Pointwise::run)
      .def("use_bf16", &Pointwise::use_bf16);
  m.def("prewake", &spr_cpu::prewake, pybind11::arg("threads"), pybind11::arg("spin_us"),
        "Wake the pool's workers ahead of a frame; they spin spin_us (or into the frame)");
  m.def("amx_available", &spr_cpu::amx_enable,
        "Whether bf16 GEMMs on AMX tiles can run here (built for AMX, permission granted)");
  m.def("bf16_available", &spr_cpu::bf16_enable,
        "Whether bf16 GEMMs can run here: AMX tiles, or the AVX512-BF16 dot product");
  m.def("bf16_auto", &spr_cpu::bf16_auto,
        "Whether precision 'auto' takes bf16 here (AMX, or AVX512-BF16 on an AMD CPU)");
  m.def("worker_chunks", &spr_cpu::worker_chunks,
        "Chunks the pool's workers (not the caller) have run so far, for a thread count");
  m.def("run_block", &spr_cpu::run_block, "Fused gather-scatter inverted-residual block (CPU)");
  pybind11::class_<BlockSequence>(m, "BlockSequence")
      .def(pybind11::init<>())
      .def("set_stem", &BlockSequence::set_stem)
      .def("set_last", &BlockSequence::set_last)
      .def("add", &BlockSequence::add)
      .def("run", &BlockSequence::run, pybind11::arg("x"), pybind11::arg("linger_us") = 0)
      .def("set_bf16", &BlockSequence::set_bf16)
      .def("set_timing", &BlockSequence::set_timing)
      .def("times", &BlockSequence::times)
      .def("__len__", &BlockSequence::size);
  m.def("stem_conv", &spr_cpu::stem_conv, "Dense 3x3 stem conv + ReLU6 into a channels-last buffer (CPU)");
}
