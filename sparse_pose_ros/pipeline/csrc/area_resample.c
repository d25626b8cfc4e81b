/* The network's input tensor straight from a camera frame: an area (box) filter over an image
 * window, normalised, written channel-planar into a canvas (pipeline/area_resample.py says why).
 *
 * src: (H, W, 3) uint8, row stride src_stride bytes. The window [x0, x0 + rw) x [y0, y0 + rh)
 * may leave the image: those pixels are `fill`. It is averaged onto ow x oh output pixels (each
 * the mean of the window pixels its footprint covers, fractional pixels weighted by their
 * covered share: OpenCV's INTER_AREA when shrinking) placed at (ox, oy) of the (3, S, Wc) float
 * canvas `out`, value * scale[c] + offset[c]; the rest of the canvas is fill * scale + offset.
 * Separable: each output row first sums its source rows over the window's width (contiguous,
 * vectorised), then each output pixel its columns of that row. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int32_t first; /* first source index of the output pixel's footprint */
  int32_t count; /* how many source indices it covers */
  int32_t offset; /* into the weights array */
} span_t;

/* Footprints of n_dst output pixels over n_src source pixels (n_src >= n_dst). */
static int make_spans(int64_t n_src, int64_t n_dst, span_t* spans, float* weights) {
  const double s = (double)n_src / (double)n_dst;
  int32_t off = 0;
  for (int64_t j = 0; j < n_dst; ++j) {
    const double a = (double)j * s, b = (double)(j + 1) * s;
    int64_t i0 = (int64_t)floor(a), i1 = (int64_t)ceil(b);
    if (i1 > n_src) i1 = n_src;
    spans[j].first = (int32_t)i0;
    spans[j].offset = off;
    int32_t n = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const double lo = a > (double)i ? a : (double)i;
      const double hi = b < (double)(i + 1) ? b : (double)(i + 1);
      weights[off + n] = (float)((hi - lo) / s);
      ++n;
    }
    spans[j].count = n;
    off += n;
  }
  return off;
}

/* Returns 0, or -1 for arguments it refuses (the caller checked them; this is a guard). */
int spr_area_normalise(const uint8_t* src, int64_t H, int64_t W, int64_t src_stride,
                       int64_t x0, int64_t y0, int64_t rw, int64_t rh, float* out, int64_t S,
                       int64_t Wc, int64_t ox, int64_t oy, int64_t ow, int64_t oh,
                       const float* fill, const float* scale, const float* offset) {
  if (rw < ow || rh < oh || ow < 1 || oh < 1 || ox < 0 || oy < 0 || ox + ow > Wc ||
      oy + oh > S || H < 1 || W < 1)
    return -1;
  float bg[3];
  for (int c = 0; c < 3; ++c) bg[c] = fill[c] * scale[c] + offset[c];
  const int64_t plane = S * Wc;
  for (int c = 0; c < 3; ++c) {
    float* p = out + c * plane;
    for (int64_t i = 0; i < plane; ++i) p[i] = bg[c];
  }
  /* at most ceil(s) + 1 taps each */
  span_t* sy = (span_t*)malloc(sizeof(span_t) * (size_t)oh);
  span_t* sx = (span_t*)malloc(sizeof(span_t) * (size_t)ow);
  float* wy = (float*)malloc(sizeof(float) * (size_t)(oh + rh + 1));
  float* wx = (float*)malloc(sizeof(float) * (size_t)(ow + rw + 1));
  float* row = (float*)malloc(sizeof(float) * (size_t)(rw * 3));
  if (!sy || !sx || !wy || !wx || !row) {
    free(sy); free(sx); free(wy); free(wx); free(row);
    return -1;
  }
  make_spans(rh, oh, sy, wy);
  make_spans(rw, ow, sx, wx);
  /* the window's columns inside the image: [cx0, cx1) in window coordinates */
  int64_t cx0 = -x0 > 0 ? -x0 : 0, cx1 = W - x0 < rw ? W - x0 : rw;
  if (cx1 < cx0) cx1 = cx0;
  for (int64_t r = 0; r < oh; ++r) {
    memset(row, 0, sizeof(float) * (size_t)(rw * 3));
    for (int32_t k = 0; k < sy[r].count; ++k) {
      const float w = wy[sy[r].offset + k];
      const int64_t y = y0 + sy[r].first + k;
      if (y < 0 || y >= H || cx1 == cx0) { /* a row (or all columns) off the image: fill */
        for (int64_t i = 0; i < rw; ++i)
          for (int c = 0; c < 3; ++c) row[i * 3 + c] += w * fill[c];
        continue;
      }
      for (int64_t i = 0; i < cx0; ++i)
        for (int c = 0; c < 3; ++c) row[i * 3 + c] += w * fill[c];
      for (int64_t i = cx1; i < rw; ++i)
        for (int c = 0; c < 3; ++c) row[i * 3 + c] += w * fill[c];
      const uint8_t* s = src + y * src_stride + (x0 + cx0) * 3;
      float* d = row + cx0 * 3;
      const int64_t n = (cx1 - cx0) * 3;
      for (int64_t i = 0; i < n; ++i) d[i] += w * (float)s[i];
    }
    float* o0 = out + (oy + r) * Wc + ox;
    for (int64_t j = 0; j < ow; ++j) {
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
      const float* t = row + (int64_t)sx[j].first * 3;
      const float* wj = wx + sx[j].offset;
      for (int32_t k = 0; k < sx[j].count; ++k) {
        a0 += wj[k] * t[k * 3];
        a1 += wj[k] * t[k * 3 + 1];
        a2 += wj[k] * t[k * 3 + 2];
      }
      o0[j] = a0 * scale[0] + offset[0];
      o0[plane + j] = a1 * scale[1] + offset[1];
      o0[2 * plane + j] = a2 * scale[2] + offset[2];
    }
  }
  free(sy); free(sx); free(wy); free(wx); free(row);
  return 0;
}
