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
// log-softmax of one row into o (o may alias x)
inline void log_softmax_row(const float* x, int64_t n, float* o) {
  const float mx = row_max(x, n);
  const float lse = (float)((double)mx + std::log(sum_exp(x, n, mx, nullptr)));
  for (int64_t i = 0; i < n; i++) o[i] = x[i] - lse;
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

void layer_norm(const float* x, const float* g, const float* b, int64_t rows, int64_t cols, float eps, float* out,
                float* mean, float* rstd) {
  rows_loop(rows, cols * 2, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const double mu = sum_d(xr, cols) / (double)cols;
    double v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t i = 0; i < cols; i++) { const double d = (double)xr[i] - mu; v += d * d; }
    const float m = (float)mu, rs = (float)(1.0 / std::sqrt(v / (double)cols + (double)eps));
    mean[r] = m;
    rstd[r] = rs;
    if (g && b) for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs * g[i] + b[i];
    else if (g) for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs * g[i];
    else if (b) for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs + b[i];
    else for (int64_t i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs;
  });
}

// Shared driver for the norm backwards: per-thread double partials for the parameter gradients.
template <class RowF>
static void norm_backward_driver(int64_t rows, int64_t cols, float* dg, float* db, RowF rowf) {
  const bool parallel = par(rows * cols * 3) && rows > 1;
  const int nt = parallel ? num_threads() : 1;
  const int nacc = (dg ? 1 : 0) + (db ? 1 : 0);
  std::vector<double> part((size_t)nt * nacc * cols, 0.0);
  auto body = [&](int t, int64_t r0, int64_t r1) {
    double* pg = dg ? part.data() + (size_t)t * nacc * cols : nullptr;
    double* pb = db ? part.data() + (size_t)t * nacc * cols + (dg ? cols : 0) : nullptr;
    for (int64_t r = r0; r < r1; r++) rowf(r, pg, pb);
  };
  if (parallel) {
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t chunk = (rows + n - 1) / n;
      body(t, std::min(rows, t * chunk), std::min(rows, (t + 1) * chunk));
    }
  } else body(0, 0, rows);
  for (int k = 0; k < nacc; k++) {
    float* dst = (k == 0 && dg) ? dg : db;
    for (int64_t i = 0; i < cols; i++) {
      double s = 0;
      for (int t = 0; t < nt; t++) s += part[((size_t)t * nacc + k) * cols + i];
      dst[i] += (float)s;
    }
  }
}

// The backward pass of LayerNorm (Centered) or RMSNorm, one row at a time, with xhat(r, i) given: from the input
// ((x - mean) * rstd, x * rstd) or from the output ((y - beta) / gamma, y / gamma). g = dy * gamma;
// LayerNorm: dx = rstd (g - mean(g) - xhat mean(g xhat)); RMSNorm: dx = rstd (g - xhat mean(g xhat)).
// xhat is computed once per row into a per-thread buffer (it was computed in both loops: two divisions per element
// from the output), and the parameter gradients' partials are their own loops: 2-5x faster.
template <bool Centered, class XHat>
static void norm_backward_rows(const float* dy, const float* g, const float* rstd, int64_t rows, int64_t cols, float* dx,
                               float* dg, float* db, XHat xhat) {
  norm_backward_driver(rows, cols, dg, db, [&](int64_t r, double* pg, double* pb) {
    thread_local std::vector<float> xbuf;
    if ((int64_t)xbuf.size() < cols) xbuf.resize((size_t)cols);
    float* xh = xbuf.data();
    for (int64_t i = 0; i < cols; i++) xh[i] = xhat(r, i);
    const float* gy = dy + r * cols;
    float* d = dx + r * cols;
    const float rs = rstd[r];
    // (float products are exact in double, so the vectorised sums' order changes the float results only in the
    // rarest ties; with the gamma test inside the loop the compiler had left this loop scalar)
    double s1 = 0, s2 = 0;  // sum(g) (LayerNorm only), sum(g * xhat)
    if (g) {
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t i = 0; i < cols; i++) {
        const float gi = gy[i] * g[i];
        if constexpr (Centered) s1 += gi;
        s2 += (double)gi * xh[i];
      }
    } else {
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t i = 0; i < cols; i++) {
        if constexpr (Centered) s1 += gy[i];
        s2 += (double)gy[i] * xh[i];
      }
    }
    if (pg) for (int64_t i = 0; i < cols; i++) pg[i] += (double)gy[i] * xh[i];
    if (pb) for (int64_t i = 0; i < cols; i++) pb[i] += gy[i];
    const float a = (float)(s1 / (double)cols), c = (float)(s2 / (double)cols);
    if (g) {
      for (int64_t i = 0; i < cols; i++) {
        if constexpr (Centered) d[i] = rs * (gy[i] * g[i] - a - xh[i] * c);
        else d[i] = rs * (gy[i] * g[i] - xh[i] * c);
      }
    } else {
      for (int64_t i = 0; i < cols; i++) {
        if constexpr (Centered) d[i] = rs * (gy[i] - a - xh[i] * c);
        else d[i] = rs * (gy[i] - xh[i] * c);
      }
    }
  });
}

void layer_norm_backward(const float* dy, const float* x, const float* g, const float* mean, const float* rstd,
                         int64_t rows, int64_t cols, float* dx, float* dg, float* db) {
  norm_backward_rows<true>(dy, g, rstd, rows, cols, dx, dg, db,
                           [&](int64_t r, int64_t i) { return (x[r * cols + i] - mean[r]) * rstd[r]; });
}

// The same gradients from the forward pass's output y = xhat * gamma + beta instead of its input: xhat = (y - beta) /
// gamma (the caller checks that gamma is far enough from 0). The layer then need not keep x when y is held anyway.
void layer_norm_backward_y(const float* dy, const float* y, const float* g, const float* b, const float* rstd,
                           int64_t rows, int64_t cols, float* dx, float* dg, float* db) {
  norm_backward_rows<true>(dy, g, rstd, rows, cols, dx, dg, db, [&](int64_t r, int64_t i) {
    const float v = y[r * cols + i];
    return (b ? v - b[i] : v) / g[i];
  });
}

void rms_norm(const float* x, const float* g, int64_t rows, int64_t cols, float eps, float* out, float* rstd) {
  rows_loop(rows, cols * 2, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const float rs = (float)(1.0 / std::sqrt(dot_d(xr, xr, cols) / (double)cols + (double)eps));
    rstd[r] = rs;
    if (g) for (int64_t i = 0; i < cols; i++) o[i] = xr[i] * rs * g[i];
    else for (int64_t i = 0; i < cols; i++) o[i] = xr[i] * rs;
  });
}

void rms_norm_backward(const float* dy, const float* x, const float* g, const float* rstd, int64_t rows, int64_t cols,
                       float* dx, float* dg) {
  norm_backward_rows<false>(dy, g, rstd, rows, cols, dx, dg, nullptr, [&](int64_t r, int64_t i) { return x[r * cols + i] * rstd[r]; });
}

// The same gradients from the output y = xhat * gamma: xhat = y / gamma (gamma nonzero, checked by the caller).
void rms_norm_backward_y(const float* dy, const float* y, const float* g, const float* rstd, int64_t rows, int64_t cols,
                         float* dx, float* dg) {
  norm_backward_rows<false>(dy, g, rstd, rows, cols, dx, dg, nullptr, [&](int64_t r, int64_t i) { return y[r * cols + i] / g[i]; });
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
    const float g = dloss[r], off = ls / (float)cols;
    exp_row(logp + r * cols, d, cols);
    for (int64_t i = 0; i < cols; i++) d[i] = g * (d[i] - off);
    d[tr] -= g * (1.0f - ls);
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
