// The person box, the head on its window and the readout (window_head.h says what and why).
#include "window_head.h"

#include <algorithm>
#include <cmath>

#include "head.h"

namespace spr_cpu {

namespace {
float* required_ptr(const at::Tensor& t, int64_t numel, const char* name) {
  TORCH_CHECK(t.numel() > 0, "window head: ", name, " is missing");
  return checked_ptr(t, numel, "window head", name);
}

// A weight of ``numel`` floats, or nullptr for an empty tensor (the network has no such part).
const float* optional_ptr(const at::Tensor& t, int64_t numel, const char* name) {
  return t.numel() == 0 ? nullptr : required_ptr(t, numel, name);
}

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
}  // namespace

WindowHeadPlan::WindowHeadPlan(const float* y_, const float* centre_, int64_t c_,
                               const std::vector<at::Tensor>& wt,
                               const std::vector<at::Tensor>& buffers,
                               const std::vector<int64_t>& dims,
                               const std::vector<double>& scalars, int64_t threads)
    : c(c_), y(y_), centre(centre_) {
  TORCH_CHECK(wt.size() == 19, "window head: 19 weights (empty where absent)");
  TORCH_CHECK(buffers.size() == 4, "window head: heatmaps, triplets, joints, confidence");
  TORCH_CHECK(dims.size() == 8,
              "window head: dims are batch, h, w, hg, wg, readout, root, confidence radius");
  TORCH_CHECK(scalars.size() == 3, "window head: scalars are margin, min cells, min score");
  batch = dims[0];
  h = dims[1];
  w = dims[2];
  hg = dims[3];
  wg = dims[4];
  readout = dims[5];
  root = dims[6];
  conf_radius = dims[7];
  margin = static_cast<float>(scalars[0]);
  min_cells = static_cast<float>(scalars[1]);
  min_score = static_cast<float>(scalars[2]);
  TORCH_CHECK(batch >= 1 && h >= 1 && w >= 1 && readout >= 0 && hg >= 0 && wg >= 0 &&
                  conf_radius >= 0,
              "window head: bad dims");
  keep = wt;
  keep.insert(keep.end(), buffers.begin(), buffers.end());
  // head_pre (optional) and the heads
  pre = wt[5].numel() > 0;
  c_head = pre ? wt[6].size(1) : c;
  TORCH_CHECK(wt[8].dim() == 2 && wt[8].size(0) == c_head, "window head: W_ht does not fit");
  n_maps = wt[8].size(1);
  n_joints = wt[11].numel();
  zw = c_head + n_maps;
  TORCH_CHECK(n_maps > n_joints && root >= 0 && root < n_joints, "window head: bad head shapes");
  if (pre) {
    pre_dw = required_ptr(wt[5], 9 * c, "head_pre dw");
    pre_pw = required_ptr(wt[6], c * c_head, "head_pre pw");
    pre_pwb = required_ptr(wt[7], c_head, "head_pre pw_b");
  }
  w_ht = required_ptr(wt[8], c_head * n_maps, "W_ht");
  b_ht = required_ptr(wt[9], n_maps, "b_ht");
  w_dep = required_ptr(wt[10], zw * n_joints, "W_dep");
  b_dep = required_ptr(wt[11], n_joints, "b_dep");
  mid = optional_ptr(wt[12], n_joints * n_joints, "mid-point matrix");
  // the lifter (optional): it replaces z, so the depth conv only runs without it
  if (wt[13].numel() > 0) {
    lifter_hidden = wt[13].size(1);
    const int64_t H = lifter_hidden, J = n_joints;
    l1 = required_ptr(wt[13], 2 * J * H, "lifter 1");
    lb1 = required_ptr(wt[14], H, "lifter b1");
    l2 = required_ptr(wt[15], H * H, "lifter 2");
    lb2 = required_ptr(wt[16], H, "lifter b2");
    l3 = required_ptr(wt[17], H * J, "lifter 3");
    lb3 = required_ptr(wt[18], J, "lifter b3");
  }
  depth = l1 == nullptr;
  // the person box (optional): MoveNet's regression branch at the chosen centre
  person = wt[0].numel() > 0;
  if (person) {
    TORCH_CHECK(centre != nullptr, "window head: the person box needs the centre logits");
    reg_hidden = wt[1].size(1);
    reg_dw = required_ptr(wt[0], 9 * c, "regress dw");
    reg_pw = required_ptr(wt[1], c * reg_hidden, "regress pw");
    reg_pwb = required_ptr(wt[2], reg_hidden, "regress pw_b");
    reg_out = required_ptr(wt[3], reg_hidden * 2 * n_joints, "regress out");
    reg_outb = required_ptr(wt[4], 2 * n_joints, "regress out_b");
  }
  const int64_t hw = h * w;
  heat = required_ptr(buffers[0], batch * n_joints * hw, "heatmaps");
  trip = required_ptr(buffers[1], batch * (n_maps - n_joints) * hw, "triplets");
  joints = required_ptr(buffers[2], batch * n_joints * 3, "joints");
  confidence = required_ptr(buffers[3], batch * n_joints, "confidence");
  region.assign(static_cast<size_t>(batch * hw), 0.0f);
  if (depth) dep.assign(static_cast<size_t>(batch * n_joints * hw), 0.0f);
  raw.assign(static_cast<size_t>(batch * n_joints * 3), 0.0f);
  const int64_t per_thread = std::max({w * (c + zw + n_joints), c + reg_hidden + 2 * n_joints,
                                       3 * n_joints + 2 * lifter_hidden});
  scratch.assign(static_cast<size_t>(std::max<int64_t>(1, threads)),
                 std::vector<float>(static_cast<size_t>(per_thread)));
}

void WindowHeadPlan::append_steps(std::vector<Step>& steps) {
  steps.push_back({1, 1, true, [this](int64_t, int64_t, int) { make_region(); }});
  steps.push_back({batch * h, 1, false, [this](int64_t r0, int64_t r1, int tid) {
                     for (int64_t r = r0; r < r1; ++r) head_row(r, tid);
                   }});
  steps.push_back({batch * n_joints, 1, false, [this](int64_t j0, int64_t j1, int) {
                     for (int64_t j = j0; j < j1; ++j) readout_joint(j);
                   }});
  steps.push_back({1, 1, true, [this](int64_t, int64_t, int) { finish(); }});
}

// MoveNet's person box on image b (movenet_head.person_region): the centre cell that maximises
// sigmoid(logit) / (distance to the frame centre + 1.8) (the first such in row-major order),
// the regression branch on that cell's 3x3 patch alone, the rough keypoints' box grown by
// margin x its longer side (at least min_cells); the whole map where the centre is faint.
void WindowHeadPlan::person_box(int64_t b, float* reg) {
  const float* cl = centre + b * h * w;
  const float hc = static_cast<float>(h) / 2.0f, wc = static_cast<float>(w) / 2.0f;
  float best = -INFINITY;
  int64_t cy = 0, cx = 0;
  for (int64_t yy = 0; yy < h; ++yy)
    for (int64_t xx = 0; xx < w; ++xx) {
      const float dy = static_cast<float>(yy) - hc, dx = static_cast<float>(xx) - wc;
      const float v = sigmoid(cl[yy * w + xx]) * (1.0f / (std::sqrt(dy * dy + dx * dx) + 1.8f));
      if (v > best) {
        best = v;
        cy = yy;
        cx = xx;
      }
    }
  if (sigmoid(cl[cy * w + cx]) < min_score) {  // nobody clear: read the whole map
    std::fill(reg, reg + h * w, 1.0f);
    return;
  }
  float* d = scratch[0].data();  // serial step: the caller's scratch
  float* hid = d + c;
  float* rv = hid + reg_hidden;
  depthwise_plain(y, h, w, c, reg_dw, b, cy, cx, cx + 1, d);
  gemm(d, nullptr, 1, c, reg_pw, reg_hidden, reg_pwb, false, hid);
  relu_rows(hid, reg_hidden);
  gemm(hid, nullptr, 1, reg_hidden, reg_out, 2 * n_joints, reg_outb, false, rv);
  float y0 = INFINITY, y1 = -INFINITY, x0 = INFINITY, x1 = -INFINITY;
  for (int64_t k = 0; k < n_joints; ++k) {
    const float ry = static_cast<float>(cy) + rv[2 * k], rx = static_cast<float>(cx) + rv[2 * k + 1];
    y0 = std::min(y0, ry);
    y1 = std::max(y1, ry);
    x0 = std::min(x0, rx);
    x1 = std::max(x1, rx);
  }
  const float pad = std::max(margin * std::max(y1 - y0, x1 - x0), min_cells);
  for (int64_t yy = 0; yy < h; ++yy) {
    const float fy = static_cast<float>(yy);
    const bool row_in = fy >= y0 - pad && fy <= y1 + pad;
    for (int64_t xx = 0; xx < w; ++xx) {
      const float fx = static_cast<float>(xx);
      reg[yy * w + xx] = row_in && fx >= x0 - pad && fx <= x1 + pad ? 1.0f : 0.0f;
    }
  }
}

// The region (person box x gate region), the window = its bounding box over the batch (the
// whole map where it is empty), and the maps reset where the last window was.
void WindowHeadPlan::make_region() {
  const int64_t hw = h * w;
  win[0] = h;
  win[1] = 0;
  win[2] = w;
  win[3] = 0;
  for (int64_t b = 0; b < batch; ++b) {
    float* reg = region.data() + b * hw;
    if (person) {
      person_box(b, reg);
    } else {
      std::fill(reg, reg + hw, 1.0f);
    }
    if (gate != nullptr) {
      thread_local std::vector<float> gated;
      gated.resize(static_cast<size_t>(hw));
      gate_region(gate + b * hg * wg, hg, wg, h, w, gated.data());
      for (int64_t p = 0; p < hw; ++p) reg[p] *= gated[static_cast<size_t>(p)];
    }
    for (int64_t yy = 0; yy < h; ++yy)
      for (int64_t xx = 0; xx < w; ++xx)
        if (reg[yy * w + xx] > 0.0f) {
          win[0] = std::min(win[0], yy);
          win[1] = std::max(win[1], yy + 1);
          win[2] = std::min(win[2], xx);
          win[3] = std::max(win[3], xx + 1);
        }
  }
  if (win[1] <= win[0]) {  // empty region: the head reads every cell (all off)
    win[0] = 0;
    win[1] = h;
    win[2] = 0;
    win[3] = w;
  }
  const int64_t n_trip = n_maps - n_joints;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t yy = last[0]; yy < last[1]; ++yy) {
      for (int64_t j = 0; j < n_joints; ++j) {
        float* p = heat + (b * n_joints + j) * hw + yy * w;
        std::fill(p + last[2], p + last[3], kOffLogit);
      }
      for (int64_t t = 0; t < n_trip; ++t) {
        float* p = trip + (b * n_trip + t) * hw + yy * w;
        std::fill(p + last[2], p + last[3], 0.0f);
      }
    }
  std::copy(win, win + 4, last);
}

// One map row of the window: head_pre, the heads, the depth conv (without a lifter); written
// into the (B, C, h, w) maps with the outside constants where the region is off.
void WindowHeadPlan::head_row(int64_t row, int tid) {
  const int64_t b = row / h, yy = row % h;
  if (yy < win[0] || yy >= win[1]) return;
  const int64_t x0 = win[2], n = win[3] - win[2], hw = h * w, J = n_joints;
  float* d = scratch[static_cast<size_t>(tid)].data();
  float* z = d + n * c;
  float* dr = z + n * zw;
  if (pre) {
    depthwise_plain(y, h, w, c, pre_dw, b, yy, x0, x0 + n, d);
    gemm(d, nullptr, n, c, pre_pw, c_head, pre_pwb, false, z, c, zw);
    for (int64_t i = 0; i < n; ++i) relu_rows(z + i * zw, c_head);
  } else {
    const float* src = y + ((b * h + yy) * w + x0) * c;
    for (int64_t i = 0; i < n; ++i) std::copy_n(src + i * c, c, z + i * zw);
  }
  gemm(z, nullptr, n, c_head, w_ht, n_maps, b_ht, false, z + c_head, zw, zw);
  if (depth) gemm(z, nullptr, n, zw, w_dep, J, b_dep, false, dr, zw, J);
  const float* in = region.data() + b * hw + yy * w + x0;
  for (int64_t j = 0; j < J; ++j) {
    float* out = heat + (b * J + j) * hw + yy * w + x0;
    const float* src = z + c_head + j;
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] > 0.0f ? src[i * zw] : kOffLogit;
  }
  const int64_t n_trip = n_maps - J;
  for (int64_t t = 0; t < n_trip; ++t) {
    float* out = trip + (b * n_trip + t) * hw + yy * w + x0;
    const float* src = z + c_head + J + t;
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] > 0.0f ? src[i * zw] : 0.0f;
  }
  if (depth)
    for (int64_t j = 0; j < J; ++j) {
      float* out = dep.data() + (b * J + j) * hw + yy * w + x0;
      for (int64_t i = 0; i < n; ++i) out[i] = std::tanh(dr[i * J + j]);
    }
}

// Joint bj = (image, joint): the soft-argmax of its heatmap within ``readout`` cells (Chebyshev)
// of its first maximum (heads.peak_window; the whole map at 0), z = E[tanh(depth)]. Outside the
// window the map holds kOffLogit, whose weight exp(kOffLogit - max) is 0 in float.
void WindowHeadPlan::readout_joint(int64_t bj) {
  const int64_t hw = h * w;
  const float* plane = heat + bj * hw;
  float best = -INFINITY;
  int64_t py = 0, px = 0;
  for (int64_t yy = win[0]; yy < win[1]; ++yy) {
    const float* r = plane + yy * w;
    for (int64_t xx = win[2]; xx < win[3]; ++xx)
      if (r[xx] > best) {
        best = r[xx];
        py = yy;
        px = xx;
      }
  }
  int64_t y0 = win[0], y1 = win[1], x0 = win[2], x1 = win[3];
  const bool empty = !(best > kOffLogit);
  if (empty) {  // nothing read (an empty region): uniform over the whole map, as peak_window
    y0 = 0;     // leaves a map whose every cell is kOffLogit
    y1 = h;
    x0 = 0;
    x1 = w;
    best = kOffLogit;  // the first cell is the argmax, as numpy's
  }
  confidence[bj] = peak_mass(plane, empty ? 0 : py, empty ? 0 : px, best);
  if (empty) {
  } else if (readout > 0) {
    y0 = std::max<int64_t>(0, py - readout);
    y1 = std::min(h, py + readout + 1);
    x0 = std::max<int64_t>(0, px - readout);
    x1 = std::min(w, px + readout + 1);
  }
  const float* dp = depth ? dep.data() + bj * hw : nullptr;
  float s = 0.0f, sx = 0.0f, sy = 0.0f, sz = 0.0f;
  for (int64_t yy = y0; yy < y1; ++yy) {
    const float fy = (static_cast<float>(yy) + 0.5f) / static_cast<float>(h);
    float rs = 0.0f, rx = 0.0f, rz = 0.0f;
    for (int64_t xx = x0; xx < x1; ++xx) {
      const float e = std::exp(plane[yy * w + xx] - best);
      rs += e;
      rx += e * ((static_cast<float>(xx) + 0.5f) / static_cast<float>(w));
      if (dp != nullptr) rz += e * dp[yy * w + xx];
    }
    s += rs;
    sx += rx;
    sy += rs * fy;
    sz += rz;
  }
  float* out = raw.data() + bj * 3;
  out[0] = sx / s;
  out[1] = sy / s;
  out[2] = dp != nullptr ? sz / s : 0.0f;
}

// backends.base.joint_confidence of the map ``plane`` whose first maximum ``best`` is at (py, px):
// the softmax mass within conf_radius cells (Chebyshev) of it. Outside the window every cell
// holds kOffLogit, so the softmax's total is the window's sum plus that constant's share: the
// map is read only where the head wrote it. Sums in double, as numpy's over float32 exps.
float WindowHeadPlan::peak_mass(const float* plane, int64_t py, int64_t px, float best) const {
  const int64_t y0 = win[0], y1 = win[1], x0 = win[2], x1 = win[3];
  double total = 0.0;
  for (int64_t yy = y0; yy < y1; ++yy)
    for (int64_t xx = x0; xx < x1; ++xx) total += std::exp(plane[yy * w + xx] - best);
  total += static_cast<double>(h * w - (y1 - y0) * (x1 - x0)) * std::exp(kOffLogit - best);
  double mass = 0.0;
  for (int64_t yy = std::max<int64_t>(0, py - conf_radius); yy < std::min(h, py + conf_radius + 1);
       ++yy)
    for (int64_t xx = std::max<int64_t>(0, px - conf_radius);
         xx < std::min(w, px + conf_radius + 1); ++xx)
      mass += std::exp(plane[yy * w + xx] - best);
  return static_cast<float>(std::min(std::max(mass / total, 0.0), 1.0));
}

// heads.strip_to_square, then PoseNetwork.refine_joints: torso mid-points in the image, the
// lifter's z from the normalised 2D skeleton (lifter.normalise_2d), the mid-points in depth
// re-rooted at the pelvis.
void WindowHeadPlan::finish() {
  const int64_t J = n_joints;
  float* tmp = scratch[0].data();  // serial step: the caller's scratch
  for (int64_t b = 0; b < batch; ++b) {
    float* jt = joints + b * J * 3;
    const float* r = raw.data() + b * J * 3;
    std::copy_n(r, J * 3, jt);
    if (h != w) {
      const float side = static_cast<float>(std::max(h, w));
      const float sx = static_cast<float>(w) / side, sy = static_cast<float>(h) / side;
      for (int64_t j = 0; j < J; ++j) {
        jt[j * 3] = (jt[j * 3] - 0.5f) * sx + 0.5f;
        jt[j * 3 + 1] = (jt[j * 3 + 1] - 0.5f) * sy + 0.5f;
      }
    }
    if (mid != nullptr) {  // joints = M @ joints
      std::copy_n(jt, J * 3, tmp);
      for (int64_t i = 0; i < J; ++i)
        for (int k = 0; k < 3; ++k) {
          float acc = 0.0f;
          for (int64_t j = 0; j < J; ++j) acc += mid[i * J + j] * tmp[j * 3 + k];
          jt[i * 3 + k] = acc;
        }
    }
    if (l1 == nullptr) continue;
    const int64_t H = lifter_hidden;
    float* in = tmp;
    float* h1 = in + 2 * J;
    float* h2 = h1 + H;
    float* z = h2 + H;
    const float rx = jt[root * 3], ry = jt[root * 3 + 1];
    float sq = 0.0f;
    for (int64_t j = 0; j < J; ++j) {
      in[2 * j] = jt[j * 3] - rx;
      in[2 * j + 1] = jt[j * 3 + 1] - ry;
      sq += in[2 * j] * in[2 * j] + in[2 * j + 1] * in[2 * j + 1];
    }
    const float radius = std::max(std::sqrt(sq / static_cast<float>(J)), 1e-3f);  // MIN_RADIUS
    for (int64_t k = 0; k < 2 * J; ++k) in[k] /= radius;
    gemm(in, nullptr, 1, 2 * J, l1, H, lb1, false, h1);
    relu_rows(h1, H);
    gemm(h1, nullptr, 1, H, l2, H, lb2, false, h2);
    relu_rows(h2, H);
    gemm(h2, nullptr, 1, H, l3, J, lb3, false, z);
    const float z_root = z[root];
    for (int64_t j = 0; j < J; ++j) z[j] -= z_root;
    if (mid != nullptr) {  // z = M @ z, re-rooted at the new pelvis
      float* mz = h1;  // h1 is free now
      for (int64_t i = 0; i < J; ++i) {
        float acc = 0.0f;
        for (int64_t j = 0; j < J; ++j) acc += mid[i * J + j] * z[j];
        mz[i] = acc;
      }
      const float m_root = mz[root];
      for (int64_t j = 0; j < J; ++j) z[j] = mz[j] - m_root;
    }
    for (int64_t j = 0; j < J; ++j) jt[j * 3 + 2] = z[j];
  }
}

}  // namespace spr_cpu
