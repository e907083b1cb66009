// Row kernels: softmax / log-softmax (+backward), layer norm and RMS norm (+backward), gather / scatterAdd,
// cross-entropy (+backward), rotary embedding.
#include <algorithm>
#include <cstring>
#include <vector>
#include "common.h"
#include "vecmath.h"

namespace ag {

namespace {
template <class F>
inline void rows_loop(int64_t rows, int64_t cols, F f) {
  if (par(rows * cols) && rows > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) f(r);
  } else for (int64_t r = 0; r < rows; r++) f(r);
}
// The largest of x[0..n), NaNs skipped (std::max(m, x[i]) in order gives the same value). In four vectors of eight:
// GCC left the `omp simd reduction(max)` loop this replaces scalar, one maxss after another (4 cycles each), and
// that was half of softmax's and cross-entropy's time (1024 x 512: softmax 1.33 ms on one thread, exp alone 0.37).
inline float row_max(const float* x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {  // a NaN in x gives m (the second operand)
    m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    m2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), m2);
    m3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), m3);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
  const __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
  alignas(32) float l[8];
  _mm256_store_ps(l, m);
  float mx = -INFINITY;
  for (int j = 0; j < 8; j++) mx = std::max(mx, l[j]);
  for (; i < n; i++) mx = std::max(mx, x[i]);
  return mx;
}
inline double hsum_pd(__m256d v) {
  alignas(32) double t[4];
  _mm256_store_pd(t, v);
  return (t[0] + t[1]) + (t[2] + t[3]);
}
// sum_i exp(x[i] - mx), accumulated in double; writes the exps to e when e != nullptr
inline double sum_exp(const float* x, int64_t n, float mx, float* e) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  const __m256 m = _mm256_set1_ps(mx);
  int64_t i = use_avx512() ? sum_exp_avx512(x, 0, n, mx, e, &s0, &s1) : 0;  // its 8-lane loop's bits, 16 at a time
  for (; i + 8 <= n; i += 8) {
    __m256 v = vexp(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    if (e) _mm256_storeu_ps(e + i, v);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  double s = hsum_pd(_mm256_add_pd(s0, s1));
  if (i < n) {
    alignas(32) float t[8];
    for (int j = 0; j < 8; j++) t[j] = i + j < n ? x[i + j] - mx : -INFINITY;
    _mm256_store_ps(t, vexp(_mm256_load_ps(t)));
    for (int64_t j = i; j < n; j++) { s += t[j - i]; if (e) e[j] = t[j - i]; }
  }
  return s;
}
// y = exp(x): vmap's bits, 16 at a time where the CPU has AVX-512
inline void exp_row(const float* x, float* y, int64_t n) {
  const int64_t done = use_avx512() ? exp_avx512(x, y, n) : 0;
  vmap(x + done, y + done, n - done, vexp);
}
inline double sum_d(const float* a, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += (double)a[i];
  return s;
}
// log(sum exp(x)) of one row, in float (the max first, the sum in double)
inline float row_lse(const float* x, int64_t n) {
  const float mx = row_max(x, n);
  return (float)((double)mx + std::log(sum_exp(x, n, mx, nullptr)));
}
// log-softmax of one row into o (o may alias x)
inline void log_softmax_row(const float* x, int64_t n, float* o) {
  const float lse = row_lse(x, n);
  for (int64_t i = 0; i < n; i++) o[i] = x[i] - lse;
}
// One row of cross-entropy's gradient from its log-probabilities lp (d may be lp): g * (exp(lp) - ls / n), less
// g * (1 - ls) at the target.
inline void ce_grad_row(const float* lp, float* d, int64_t n, int32_t target, float g, float ls) {
  const float off = ls / (float)n;
  exp_row(lp, d, n);
  for (int64_t i = 0; i < n; i++) d[i] = g * (d[i] - off);
  d[target] -= g * (1.0f - ls);
}
}  // namespace

void softmax(const float* x, int64_t rows, int64_t cols, float* out, bool log) {
  rows_loop(rows, cols * 4, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    if (log) { log_softmax_row(xr, cols, o); return; }
    const float mx = row_max(xr, cols);
    const float inv = (float)(1.0 / sum_exp(xr, cols, mx, o));
    for (int64_t i = 0; i < cols; i++) o[i] *= inv;
  });
}

void softmax_backward(const float* y, const float* dy, int64_t rows, int64_t cols, float* dx, bool log) {
  rows_loop(rows, cols * 2, [&](int64_t r) {
    const float *yr = y + r * cols, *g = dy + r * cols;
    float* d = dx + r * cols;
    if (!log) {
      const float dot = (float)dot_d(g, yr, cols);
      for (int64_t i = 0; i < cols; i++) d[i] = yr[i] * (g[i] - dot);
    } else {
      const float s = (float)sum_d(g, cols);
      exp_row(yr, d, cols);
      for (int64_t i = 0; i < cols; i++) d[i] = g[i] - d[i] * s;
    }
  });
}

// sum of x[i] - c (sq: of its squares) in four float vectors of eight, their lanes added in double: a row of a norm's
// input (at most a few thousand columns) in independent chains. In double, one vector of four, the two sums of a row
// were latency-bound: layerNorm 2048 x 256 0.22-0.30 ms on 2 threads.
template <bool Sq>
inline double row_sum_f(const float* x, int64_t n, float c) {
  const __m256 vc = _mm256_set1_ps(c);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const auto term = [&](__m256 v, __m256 acc) {
    v = _mm256_sub_ps(v, vc);
    return Sq ? _mm256_fmadd_ps(v, v, acc) : _mm256_add_ps(acc, v);
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = term(_mm256_loadu_ps(x + i), a0);
    a1 = term(_mm256_loadu_ps(x + i + 8), a1);
    a2 = term(_mm256_loadu_ps(x + i + 16), a2);
    a3 = term(_mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = term(_mm256_loadu_ps(x + i), a0);
  alignas(32) float l[8];
  _mm256_store_ps(l, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double s = 0;
  for (int j = 0; j < 8; j++) s += l[j];
  for (; i < n; i++) { const double d = (double)x[i] - c; s += Sq ? d * d : d; }
  return s;
}

void layer_norm(const float* x, const float* g, const float* b, int64_t rows, int64_t cols, float eps, float* out,
                float* mean, float* rstd) {
  rows_loop(rows, cols * 2, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const float m = (float)(row_sum_f<false>(xr, cols, 0.0f) / (double)cols);
    const double v = row_sum_f<true>(xr, cols, m);  // two passes: no cancellation
    const float rs = (float)(1.0 / std::sqrt(v / (double)cols + (double)eps));
    mean[r] = m;
    rstd[r] = rs;
    if (g && b) for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs * g[i] + b[i];
    else if (g) for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs * g[i];
    else if (b) for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs + b[i];
    else for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs;
  });
}

// The backward pass of LayerNorm (Centered) or RMSNorm, with xhat given row by row by xhat_row(r, xh): from the input
// ((x - mean) * rstd, x * rstd) or from the output ((y - beta) / gamma, y / gamma). g = dy * gamma;
// LayerNorm: dx = rstd (g - mean(g) - xhat mean(g xhat)); RMSNorm: dx = rstd (g - xhat mean(g xhat)).
// One pass over dy and y per row (xhat kept in L1 for the second, which writes dx): the row sums in two float vectors
// of eight (a row is at most a few thousand columns), the parameter gradients' partials in float over blocks of 16
// rows and then in double, per chunk of rows (sum_chunk_rows), the chunks added in order: the same bits for any
// thread count. dx may be dy (each row is read whole before it is written). 2048 x 256 on 2 threads: 0.6 -> 0.2 ms.
template <bool Centered, class XHatRow>
static void norm_backward_rows(const float* dy, const float* g, const float* rstd, int64_t rows, int64_t cols, float* dx,
                               float* dg, float* db, XHatRow xhat_row) {
  const int nacc = (dg ? 1 : 0) + (db ? 1 : 0);
  const int64_t chunk = sum_chunk_rows(rows, 32), nchunks = (rows + chunk - 1) / chunk;
  std::vector<double> part((size_t)(nacc ? nchunks * nacc * cols : 0), 0.0);
  auto row = [&](int64_t r, float* xh, float* fg, float* fb) {
    xhat_row(r, xh);
    const float* gy = dy + r * cols;
    float* d = dx + r * cols;
    __m256 s1a = _mm256_setzero_ps(), s1b = s1a, s2a = s1a, s2b = s1a;
    int64_t i = 0;
    for (; i + 16 <= cols; i += 16) {
      const __m256 y0 = _mm256_loadu_ps(gy + i), y1 = _mm256_loadu_ps(gy + i + 8);
      const __m256 x0 = _mm256_loadu_ps(xh + i), x1 = _mm256_loadu_ps(xh + i + 8);
      const __m256 g0 = g ? _mm256_mul_ps(y0, _mm256_loadu_ps(g + i)) : y0, g1 = g ? _mm256_mul_ps(y1, _mm256_loadu_ps(g + i + 8)) : y1;
      if constexpr (Centered) { s1a = _mm256_add_ps(s1a, g0); s1b = _mm256_add_ps(s1b, g1); }
      s2a = _mm256_fmadd_ps(g0, x0, s2a);
      s2b = _mm256_fmadd_ps(g1, x1, s2b);
      if (fg) {
        _mm256_storeu_ps(fg + i, _mm256_fmadd_ps(y0, x0, _mm256_loadu_ps(fg + i)));
        _mm256_storeu_ps(fg + i + 8, _mm256_fmadd_ps(y1, x1, _mm256_loadu_ps(fg + i + 8)));
      }
      if (fb) {
        _mm256_storeu_ps(fb + i, _mm256_add_ps(y0, _mm256_loadu_ps(fb + i)));
        _mm256_storeu_ps(fb + i + 8, _mm256_add_ps(y1, _mm256_loadu_ps(fb + i + 8)));
      }
    }
    alignas(32) float l1[8], l2[8];
    _mm256_store_ps(l1, _mm256_add_ps(s1a, s1b));
    _mm256_store_ps(l2, _mm256_add_ps(s2a, s2b));
    double s1 = 0, s2 = 0;
    for (int j = 0; j < 8; j++) { s1 += l1[j]; s2 += l2[j]; }
    for (; i < cols; i++) {
      const float gi = g ? gy[i] * g[i] : gy[i];
      if constexpr (Centered) s1 += gi;
      s2 += (double)gi * xh[i];
      if (fg) fg[i] += gy[i] * xh[i];
      if (fb) fb[i] += gy[i];
    }
    const float a = Centered ? (float)(s1 / (double)cols) : 0.0f, c = (float)(s2 / (double)cols), rs = rstd[r];
    if (g) for (i = 0; i < cols; i++) d[i] = rs * (gy[i] * g[i] - a - xh[i] * c);
    else for (i = 0; i < cols; i++) d[i] = rs * (gy[i] - a - xh[i] * c);
  };
  auto do_chunk = [&](int64_t k) {
    thread_local std::vector<float> buf;
    if ((int64_t)buf.size() < 3 * cols) buf.resize((size_t)(3 * cols));
    float* xh = buf.data();
    float* fg = dg ? xh + cols : nullptr;
    float* fb = db ? xh + 2 * cols : nullptr;
    double* pg = dg ? part.data() + (size_t)(k * nacc * cols) : nullptr;
    double* pb = db ? part.data() + (size_t)(k * nacc * cols + (dg ? cols : 0)) : nullptr;
    const int64_t r1 = std::min(rows, (k + 1) * chunk);
    for (int64_t r = k * chunk; r < r1; r += 16) {
      if (fg) std::fill(fg, fg + cols, 0.0f);
      if (fb) std::fill(fb, fb + cols, 0.0f);
      for (int64_t q = r; q < std::min(r1, r + 16); q++) row(q, xh, fg, fb);
      if (pg) for (int64_t i = 0; i < cols; i++) pg[i] += fg[i];
      if (pb) for (int64_t i = 0; i < cols; i++) pb[i] += fb[i];
    }
  };
  if (par(rows * cols * 3) && nchunks > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nchunks; k++) do_chunk(k);
  } else for (int64_t k = 0; k < nchunks; k++) do_chunk(k);
  for (int a = 0; a < nacc; a++) {
    float* dst = (a == 0 && dg) ? dg : db;
    for (int64_t i = 0; i < cols; i++) {
      double s = 0;
      for (int64_t k = 0; k < nchunks; k++) s += part[(size_t)((k * nacc + a) * cols + i)];
      dst[i] += (float)s;
    }
  }
}

void layer_norm_backward(const float* dy, const float* x, const float* g, const float* mean, const float* rstd,
                         int64_t rows, int64_t cols, float* dx, float* dg, float* db) {
  norm_backward_rows<true>(dy, g, rstd, rows, cols, dx, dg, db, [&](int64_t r, float* xh) {
    const float* xr = x + r * cols;
    const float m = mean[r], rs = rstd[r];
    for (int64_t i = 0; i < cols; i++) xh[i] = (xr[i] - m) * rs;
  });
}

// The same gradients from the forward pass's output y = xhat * gamma + beta instead of its input: xhat = (y - beta) /
// gamma (the caller checks that gamma is far enough from 0). The layer then need not keep x when y is held anyway.
void layer_norm_backward_y(const float* dy, const float* y, const float* g, const float* b, const float* rstd,
                           int64_t rows, int64_t cols, float* dx, float* dg, float* db) {
  norm_backward_rows<true>(dy, g, rstd, rows, cols, dx, dg, db, [&](int64_t r, float* xh) {
    const float* yr = y + r * cols;
    if (b) for (int64_t i = 0; i < cols; i++) xh[i] = (yr[i] - b[i]) / g[i];
    else for (int64_t i = 0; i < cols; i++) xh[i] = yr[i] / g[i];
  });
}

void rms_norm(const float* x, const float* g, int64_t rows, int64_t cols, float eps, float* out, float* rstd) {
  rows_loop(rows, cols * 2, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const float rs = (float)(1.0 / std::sqrt(row_sum_f<true>(xr, cols, 0.0f) / (double)cols + (double)eps));
    rstd[r] = rs;
    if (g) for (int64_t i = 0; i < cols; i++) o[i] = xr[i] * rs * g[i];
    else for (int64_t i = 0; i < cols; i++) o[i] = xr[i] * rs;
  });
}

void rms_norm_backward(const float* dy, const float* x, const float* g, const float* rstd, int64_t rows, int64_t cols,
                       float* dx, float* dg) {
  norm_backward_rows<false>(dy, g, rstd, rows, cols, dx, dg, nullptr, [&](int64_t r, float* xh) {
    const float* xr = x + r * cols;
    const float rs = rstd[r];
    for (int64_t i = 0; i < cols; i++) xh[i] = xr[i] * rs;
  });
}

// The same gradients from the output y = xhat * gamma: xhat = y / gamma (gamma nonzero, checked by the caller).
void rms_norm_backward_y(const float* dy, const float* y, const float* g, const float* rstd, int64_t rows, int64_t cols,
                         float* dx, float* dg) {
  norm_backward_rows<false>(dy, g, rstd, rows, cols, dx, dg, nullptr, [&](int64_t r, float* xh) {
    const float* yr = y + r * cols;
    for (int64_t i = 0; i < cols; i++) xh[i] = yr[i] / g[i];
  });
}

void gather(const float* table, const int32_t* idx, int64_t n, int64_t cols, float* out) {
  rows_loop(n, cols, [&](int64_t i) { std::memcpy(out + i * cols, table + (int64_t)idx[i] * cols, cols * sizeof(float)); });
}

void scatter_add(const float* src, const int32_t* idx, int64_t n, int64_t cols, float* dt) {
  // parallel over column strips: each thread owns whole columns, so repeated indices are safe
  const int64_t strip = 64;
  const int64_t ns = (cols + strip - 1) / strip;
  auto run = [&](int64_t s) {
    const int64_t j0 = s * strip, w = std::min(strip, cols - j0);
    for (int64_t i = 0; i < n; i++) {
      float* d = dt + (int64_t)idx[i] * cols + j0;
      const float* sr = src + i * cols + j0;
      for (int64_t j = 0; j < w; j++) d[j] += sr[j];
    }
  };
  if (par(n * cols) && ns > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < ns; s++) run(s);
  } else for (int64_t s = 0; s < ns; s++) run(s);
}

void cross_entropy(const float* logits, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float ls,
                   float* loss, float* logp) {
  rows_loop(rows, cols * 4, [&](int64_t r) {
    float* lp = logp + r * cols;
    log_softmax_row(logits + r * cols, cols, lp);
    const int32_t tr = t[r];
    if (tr == ignore) { loss[r] = 0.0f; return; }
    double l = -(1.0 - (double)ls) * (double)lp[tr];
    if (ls != 0.0f) l -= (double)ls / (double)cols * sum_d(lp, cols);
    loss[r] = (float)l;
  });
}

void cross_entropy_backward(const float* logp, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float ls,
                            const float* dloss, float* dl) {
  rows_loop(rows, cols * 3, [&](int64_t r) {
    float* d = dl + r * cols;
    const int32_t tr = t[r];
    if (tr == ignore) { std::memset(d, 0, cols * sizeof(float)); return; }
    ce_grad_row(logp + r * cols, d, cols, tr, dloss[r], ls);
  });
}

// cross_entropy without label smoothing and without writing the log-probabilities: the losses and each row's
// log-sum-exp, for a caller that keeps the logits for the backward pass (cross_entropy_backward_lse) instead of a
// (rows x cols) buffer of log-probabilities written here and read there. The same losses, bit for bit: logp[t] is
// x[t] - lse in float, as log_softmax_row writes it.
void cross_entropy_lse(const float* logits, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float* loss,
                       float* lse) {
  rows_loop(rows, cols * 2, [&](int64_t r) {
    const float* x = logits + r * cols;
    const float l = row_lse(x, cols);
    lse[r] = l;
    const int32_t tr = t[r];
    loss[r] = tr == ignore ? 0.0f : (float)(-(double)(x[tr] - l));
  });
}

// cross_entropy_backward (label smoothing 0) from the logits and cross_entropy_lse's lse: the row's log-probabilities
// x - lse made in place first, as cross_entropy writes them, so the same bits. dlogits may be the logits.
void cross_entropy_backward_lse(const float* logits, const float* lse, const int32_t* t, int64_t rows, int64_t cols,
                                int32_t ignore, const float* dloss, float* dl) {
  rows_loop(rows, cols * 3, [&](int64_t r) {
    float* d = dl + r * cols;
    const int32_t tr = t[r];
    if (tr == ignore) { std::memset(d, 0, cols * sizeof(float)); return; }
    const float* x = logits + r * cols;
    const float l = lse[r];
    for (int64_t i = 0; i < cols; i++) d[i] = x[i] - l;  // the row's log-probabilities, in L1
    ce_grad_row(d, d, cols, tr, dloss[r], 0.0f);
  });
}

// crossEntropy and crossEntropyBackward at once, the gradient rounded to bf16 (the fused LM head under bf16 autocast,
// whose products take it in bf16): one pass of exponentials, kept in x (scratch, overwritten), where the two kernels
// and a cast take two and five passes over the (rows x cols) logits. With dl null the rounded gradient stays in x,
// in f32 storage (the widening products of CPUs without bf16 hardware take it so, with no bf16 copy to widen). The
// loss is computed as cross_entropy does (the label-smoothing term from sum(x) - cols * lse, in double); the gradient
// g * (e / s - ls / cols), minus g * (1 - ls) at the target, as cross_entropy_backward's g * (exp(logp) - ls / cols)
// up to f32 rounding.
void cross_entropy_grad_bf16(float* logits, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float ls,
                             const float* dloss, float* loss, uint16_t* dl) {
  rows_loop(rows, cols * 4, [&](int64_t r) {
    float* x = logits + r * cols;
    uint16_t* d = dl ? dl + r * cols : nullptr;
    const int32_t tr = t[r];
    if (tr == ignore) {
      loss[r] = 0.0f;
      if (d) std::memset(d, 0, cols * sizeof(uint16_t));
      else std::memset(x, 0, cols * sizeof(float));
      return;
    }
    const float mx = row_max(x, cols);
    const double sx = ls != 0.0f ? sum_d(x, cols) : 0.0;
    const float xt = x[tr];
    const double s = sum_exp(x, cols, mx, x);  // x := exp(x - mx)
    const float lse = (float)((double)mx + std::log(s));
    double l = -(1.0 - (double)ls) * (double)(xt - lse);
    if (ls != 0.0f) l -= (double)ls / (double)cols * (sx - (double)cols * (double)lse);
    loss[r] = (float)l;
    const float g = dloss[r], off = ls / (float)cols, inv = (float)(1.0 / s);
    const float et = x[tr];
    const __m256 vg = _mm256_set1_ps(g), vinv = _mm256_set1_ps(inv), voff = _mm256_set1_ps(off);
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8)  // in place, then rounded a row at a time
      _mm256_storeu_ps(x + i, _mm256_mul_ps(vg, _mm256_fmsub_ps(_mm256_loadu_ps(x + i), vinv, voff)));
    for (; i < cols; i++) x[i] = g * (x[i] * inv - off);
    x[tr] = g * (et * inv - off) - g * (1.0f - ls);
    if (d) {
      f32_to_bf16_row(x, d, cols);
      return;
    }
    round_bf16_row(x, x, cols);  // rounded in place: the bits of the bf16 row widened
  });
}

void rope(const float* x, const float* cs, const float* sn, int64_t rows, int64_t T, int64_t D, int64_t rot, bool inv,
          float* out) {
  const int64_t h = rot / 2;
  rows_loop(rows * T, D, [&](int64_t rt) {
    const int64_t tpos = rt % T;
    const float* xr = x + rt * D;
    float* o = out + rt * D;
    const float *c = cs + tpos * h, *s = sn + tpos * h;
    if (!inv) {
      for (int64_t i = 0; i < h; i++) {
        const float x1 = xr[i], x2 = xr[i + h];
        o[i] = x1 * c[i] - x2 * s[i];
        o[i + h] = x2 * c[i] + x1 * s[i];
      }
    } else {
      for (int64_t i = 0; i < h; i++) {
        const float x1 = xr[i], x2 = xr[i + h];
        o[i] = x1 * c[i] + x2 * s[i];
        o[i + h] = x2 * c[i] - x1 * s[i];
      }
    }
    if (o != xr) for (int64_t i = 2 * h; i < D; i++) o[i] = xr[i];
  });
}

}  // namespace ag
