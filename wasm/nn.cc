// Row kernels (softmax / log-softmax and backward, layer norm and backward, cross-entropy and backward), the
// transcendental elementwise ops (exp, tanh, sigmoid, gelu, gelu_tanh, silu and their derivatives), sum
// reductions and the optimizer updates: native/nn.cc, elementwise.cc and optim.cc ported to f32x4, with the same
// float64 accumulations, spread over the threads by rows or blocks.
#include "vecmath.h"

namespace ag {
namespace {

// log(x) for x > 0 in float64: x = m 2^e, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1).
double logd(double x) {
  if (!(x > 0)) return x == 0 ? -__builtin_inf() : __builtin_nan("");
  if (x == __builtin_inf()) return x;
  uint64_t u;
  __builtin_memcpy(&u, &x, 8);
  int e = (int)((u >> 52) & 0x7ff);
  if (e == 0) {  // subnormal
    x *= 0x1p54;
    __builtin_memcpy(&u, &x, 8);
    e = (int)((u >> 52) & 0x7ff) - 54;
  }
  e -= 1022;
  u = (u & 0x000fffffffffffffull) | 0x3fe0000000000000ull;  // m in [0.5, 1)
  double m;
  __builtin_memcpy(&m, &u, 8);
  if (m < 0.70710678118654752) { m *= 2; e -= 1; }
  const double s = (m - 1) / (m + 1), s2 = s * s;
  double t = 1.0 / 23;
  for (int k = 21; k >= 1; k -= 2) t = t * s2 + 1.0 / k;
  return 2 * s * t + e * 0.69314718055994530942;
}

// Runs f(i) for i in [0, n) spread over threads for `work` units of work, in chunks taken from a shared counter.
template <class F>
void par_for(int n, double work, const F& f) {
  int nt = min_(threads_for(work), n);
  if (nt < 1) nt = 1;
  const int per = max_(1, n / (nt * 8));
  struct C { const F* f; int n, per; Counter chunks; } c{&f, n, per, {0, (n + per - 1) / per}};
  parallel([](void* p, int, int) {
    C& c = *(C*)p;
    for (int k; (k = c.chunks.take()) >= 0;) {
      const int i1 = min_(c.n, (k + 1) * c.per);
      for (int i = k * c.per; i < i1; i++) (*c.f)(i);
    }
  }, &c, nt);
}
inline float row_max(const float* x, int n) {
  float m = -__builtin_inff();
  for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}
inline double hsum(v128_t d) { return wasm_f64x2_extract_lane(d, 0) + wasm_f64x2_extract_lane(d, 1); }
inline v128_t widen_add(v128_t acc, F4 v) {
  return wasm_f64x2_add(acc, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(v),
                                            wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1))));
}
// sum_i exp(x[i] - mx) in double; writes the exps to e when e != nullptr
inline double sum_exp(const float* x, int n, float mx, float* e) {
  v128_t acc = wasm_f64x2_splat(0.0);
  const F4 m = v4(mx);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    F4 v = vexp(sub(wasm_v128_load(x + i), m));
    if (e) wasm_v128_store(e + i, v);
    acc = widen_add(acc, v);
  }
  double s = hsum(acc);
  if (i < n) {
    float t[4] __attribute__((aligned(16)));
    for (int j = 0; j < 4; j++) t[j] = i + j < n ? x[i + j] - mx : -__builtin_inff();
    wasm_v128_store(t, vexp(wasm_v128_load(t)));
    for (int j = i; j < n; j++) { s += t[j - i]; if (e) e[j] = t[j - i]; }
  }
  return s;
}
inline double dot_d(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
  return s;
}
inline double sum_d(const float* a, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += (double)a[i];
  return s;
}
inline void log_softmax_row(const float* x, int n, float* o) {
  const float mx = row_max(x, n);
  const float lse = (float)((double)mx + logd(sum_exp(x, n, mx, nullptr)));
  for (int i = 0; i < n; i++) o[i] = x[i] - lse;
}

constexpr float kSqrt2OverPi = 0.7978845608028654f, kKappa = 0.044715f, kInvSqrt2Pi = 0.3989422804014327f;
inline F4 vgelu(F4 x) { return mul(x, vnormcdf(x)); }
inline F4 vgelu_tanh_s(F4 x) {
  F4 x3 = mul(mul(x, x), x);
  F4 u2 = mul(fmadd(x3, v4(kKappa), x), v4(2.0f * kSqrt2OverPi));
  return vsigmoid(u2);
}
// op codes: native/common.h's Unary enum
enum { U_EXP = 1, U_TANH = 5, U_SIGMOID = 6, U_GELU = 8, U_GELU_TANH = 9, U_SILU = 10 };

inline F4 unary_v(int op, F4 v) {
  switch (op) {
    case U_EXP: return vexp(v);
    case U_TANH: return vtanh(v);
    case U_SIGMOID: return vsigmoid(v);
    case U_GELU: return vgelu(v);
    case U_GELU_TANH: return mul(v, vgelu_tanh_s(v));
    default: return mul(v, vsigmoid(v));  // silu
  }
}
inline F4 unary_grad_v(int op, F4 xv) {
  if (op == U_TANH) {
    F4 e = vexp(mul(v4(-2.0f), vabs(xv)));
    F4 q = add(v4(1.0f), e);
    return wasm_f32x4_div(mul(v4(4.0f), e), mul(q, q));
  } else if (op == U_SIGMOID) {
    F4 e = vexp(sub(v4(0.0f), vabs(xv)));
    F4 q = add(v4(1.0f), e);
    return wasm_f32x4_div(e, mul(q, q));
  } else if (op == U_GELU) {
    const F4 e = vnormcdf_tail_exp(xv);
    return fmadd(mul(xv, e), v4(kInvSqrt2Pi), vnormcdf_e(xv, e));
  } else if (op == U_SILU) {
    F4 s = vsigmoid(xv);
    return mul(s, fmadd(xv, sub(v4(1.0f), s), v4(1.0f)));
  }
  F4 s = vgelu_tanh_s(xv);  // gelu_tanh
  F4 du = mul(v4(kSqrt2OverPi), fmadd(mul(xv, xv), v4(3.0f * kKappa), v4(1.0f)));
  F4 t2 = mul(mul(v4(2.0f), xv), mul(s, sub(v4(1.0f), s)));
  return fmadd(t2, du, s);
}
constexpr int kBlock = 4096;
inline int nblocks(int n) { return (n + kBlock - 1) / kBlock; }

}  // namespace
}  // namespace ag

using namespace ag;

// ---- elementwise ----
// Returns 0, or -1 for an op that is not here (the caller runs the portable kernel).
EXPORT(ag_unary) int ag_unary(int op, const float* x, float* out, int n) {
  if (op != U_EXP && op != U_TANH && op != U_SIGMOID && op != U_GELU && op != U_GELU_TANH && op != U_SILU) return -1;
  par_for(nblocks(n), (double)n * 8, [&](int b) {
    const int i0 = b * kBlock, m = min_(kBlock, n - i0);
    switch (op) {
      case U_EXP: vmap(x + i0, out + i0, m, [](F4 v) { return unary_v(U_EXP, v); }); break;
      case U_TANH: vmap(x + i0, out + i0, m, [](F4 v) { return unary_v(U_TANH, v); }); break;
      case U_SIGMOID: vmap(x + i0, out + i0, m, [](F4 v) { return unary_v(U_SIGMOID, v); }); break;
      case U_GELU: vmap(x + i0, out + i0, m, [](F4 v) { return unary_v(U_GELU, v); }); break;
      case U_GELU_TANH: vmap(x + i0, out + i0, m, [](F4 v) { return unary_v(U_GELU_TANH, v); }); break;
      default: vmap(x + i0, out + i0, m, [](F4 v) { return unary_v(U_SILU, v); }); break;
    }
  });
  return 0;
}

// dx = dy * f'(x) for the ops whose derivative is computed from x (tanh, sigmoid, gelu, gelu_tanh, silu).
EXPORT(ag_unary_backward) int ag_unary_backward(int op, const float* x, const float* dy, float* dx, int n) {
  if (op != U_TANH && op != U_SIGMOID && op != U_GELU && op != U_GELU_TANH && op != U_SILU) return -1;
  par_for(nblocks(n), (double)n * 8, [&](int b) {
    const int i0 = b * kBlock, m = min_(kBlock, n - i0);
    const float *xs = x + i0, *gs = dy + i0;
    float* ds = dx + i0;
    float t[4] __attribute__((aligned(16)));
    for (int i = 0; i < m; i += 4) {
      const int k = min_(4, m - i);
      F4 xv;
      if (k == 4) xv = wasm_v128_load(xs + i);
      else { for (int j = 0; j < 4; j++) t[j] = j < k ? xs[i + j] : 0.0f; xv = wasm_v128_load(t); }
      const F4 d = unary_grad_v(op, xv);
      if (k == 4) wasm_v128_store(ds + i, mul(d, wasm_v128_load(gs + i)));
      else { wasm_v128_store(t, d); for (int j = 0; j < k; j++) ds[i + j] = gs[i + j] * t[j]; }
    }
  });
  return 0;
}

// ---- rows ----
EXPORT(ag_softmax) void ag_softmax(const float* x, int rows, int cols, float* out, int log) {
  par_for(rows, (double)rows * cols * 4, [&](int r) {
    const float* xr = x + (size_t)r * cols;
    float* o = out + (size_t)r * cols;
    if (log) { log_softmax_row(xr, cols, o); return; }
    const float mx = row_max(xr, cols);
    const float inv = (float)(1.0 / sum_exp(xr, cols, mx, o));
    for (int i = 0; i < cols; i++) o[i] *= inv;
  });
}

EXPORT(ag_softmax_backward) void ag_softmax_backward(const float* y, const float* dy, int rows, int cols, float* dx, int log) {
  par_for(rows, (double)rows * cols * 2, [&](int r) {
    const float *yr = y + (size_t)r * cols, *g = dy + (size_t)r * cols;
    float* d = dx + (size_t)r * cols;
    if (!log) {
      const float dot = (float)dot_d(g, yr, cols);
      for (int i = 0; i < cols; i++) d[i] = yr[i] * (g[i] - dot);
    } else {
      const float s = (float)sum_d(g, cols);
      vmap(yr, d, cols, [](F4 v) { return vexp(v); });
      for (int i = 0; i < cols; i++) d[i] = g[i] - d[i] * s;
    }
  });
}

EXPORT(ag_layer_norm) void ag_layer_norm(const float* x, const float* g, const float* b, int rows, int cols, float eps,
                                         float* out, float* mean, float* rstd) {
  par_for(rows, (double)rows * cols * 2, [&](int r) {
    const float* xr = x + (size_t)r * cols;
    float* o = out + (size_t)r * cols;
    const double mu = sum_d(xr, cols) / (double)cols;
    double v = 0;
    for (int i = 0; i < cols; i++) { const double d = (double)xr[i] - mu; v += d * d; }
    const float m = (float)mu, rs = (float)(1.0 / __builtin_sqrt(v / (double)cols + (double)eps));
    mean[r] = m;
    rstd[r] = rs;
    if (g && b) for (int i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs * g[i] + b[i];
    else if (g) for (int i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs * g[i];
    else if (b) for (int i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs + b[i];
    else for (int i = 0; i < cols; i++) o[i] = (xr[i] - m) * rs;
  });
}

namespace {
// LayerNorm's backward one row at a time with xhat(r, i) given (from x or from y). dg/db are summed through float64
// partials over chunks of rows whose size depends on the row count alone (native/common.h's sum_chunk_rows), added
// in chunk order: the same bits on any number of threads.
template <class XHat>
void ln_backward(const float* dy, const float* g, const float* rstd, int rows, int cols, float* dx, float* dg, float* db,
                 const XHat& xhat) {
  const int nacc = (dg ? 1 : 0) + (db ? 1 : 0);
  const int chunk = rows > 64 * 16 ? (rows + 63) / 64 : 16;
  const int nch = (rows + chunk - 1) / chunk;
  double* part = nacc ? (double*)alloc_bytes((size_t)nch * nacc * cols * 8) : nullptr;
  if (part) for (size_t i = 0; i < (size_t)nch * nacc * cols; i++) part[i] = 0;
  par_for(nch, (double)rows * cols * 3, [&](int ch) {
    double* pg = dg ? part + (size_t)ch * nacc * cols : nullptr;
    double* pb = db ? part + (size_t)ch * nacc * cols + (dg ? cols : 0) : nullptr;
    const int r1 = min_(rows, (ch + 1) * chunk);
    for (int r = ch * chunk; r < r1; r++) {
      const float* gy = dy + (size_t)r * cols;
      float* d = dx + (size_t)r * cols;
      const float rs = rstd[r];
      double s1 = 0, s2 = 0;
      for (int i = 0; i < cols; i++) {
        const float xh = xhat(r, i);
        const float gi = g ? gy[i] * g[i] : gy[i];
        s1 += gi;
        s2 += (double)gi * xh;
        if (pg) pg[i] += (double)gy[i] * xh;
        if (pb) pb[i] += gy[i];
      }
      const float a = (float)(s1 / (double)cols), c = (float)(s2 / (double)cols);
      for (int i = 0; i < cols; i++) {
        const float xh = xhat(r, i);
        const float gi = g ? gy[i] * g[i] : gy[i];
        d[i] = rs * (gi - a - xh * c);
      }
    }
  });
  for (int k = 0; k < nacc; k++) {
    float* dst = (k == 0 && dg) ? dg : db;
    for (int i = 0; i < cols; i++) {
      double s = 0;
      for (int t = 0; t < nch; t++) s += part[((size_t)t * nacc + k) * cols + i];
      dst[i] += (float)s;
    }
  }
}
}  // namespace

EXPORT(ag_layer_norm_backward) void ag_layer_norm_backward(const float* dy, const float* x, const float* g, const float* mean,
                                                           const float* rstd, int rows, int cols, float* dx, float* dg, float* db) {
  ln_backward(dy, g, rstd, rows, cols, dx, dg, db, [&](int r, int i) { return (x[(size_t)r * cols + i] - mean[r]) * rstd[r]; });
}
EXPORT(ag_layer_norm_backward_y) void ag_layer_norm_backward_y(const float* dy, const float* y, const float* g, const float* b,
                                                               const float* rstd, int rows, int cols, float* dx, float* dg, float* db) {
  ln_backward(dy, g, rstd, rows, cols, dx, dg, db, [&](int r, int i) {
    const float v = y[(size_t)r * cols + i];
    return (b ? v - b[i] : v) / g[i];
  });
}

EXPORT(ag_cross_entropy) void ag_cross_entropy(const float* logits, const int32_t* t, int rows, int cols, int ignore, float ls,
                                               float* loss, float* logp) {
  par_for(rows, (double)rows * cols * 4, [&](int r) {
    float* lp = logp + (size_t)r * cols;
    log_softmax_row(logits + (size_t)r * cols, cols, lp);
    const int32_t tr = t[r];
    if (tr == ignore) { loss[r] = 0.0f; return; }
    double l = -(1.0 - (double)ls) * (double)lp[tr];
    if (ls != 0.0f) l -= (double)ls / (double)cols * sum_d(lp, cols);
    loss[r] = (float)l;
  });
}

EXPORT(ag_cross_entropy_backward) void ag_cross_entropy_backward(const float* logp, const int32_t* t, int rows, int cols,
                                                                 int ignore, float ls, const float* dloss, float* dl) {
  par_for(rows, (double)rows * cols * 3, [&](int r) {
    float* d = dl + (size_t)r * cols;
    const int32_t tr = t[r];
    if (tr == ignore) { for (int i = 0; i < cols; i++) d[i] = 0.f; return; }
    const float g = dloss[r], off = ls / (float)cols;
    vmap(logp + (size_t)r * cols, d, cols, [](F4 v) { return vexp(v); });
    for (int i = 0; i < cols; i++) d[i] = g * (d[i] - off);
    d[tr] -= g * (1.0f - ls);
  });
}

// ---- optimizer updates (PyTorch semantics, per element in double; bias corrections computed by the caller) ----
EXPORT(ag_adamw) void ag_adamw(float* p, const float* g, float* m, float* v, int n, double lr, double b1, double b2,
                               double eps, double wd, double bc1, double bc2, double gs) {
  const double decay = lr * wd;
  // native/optim.cc's form (PyTorch's): the bias corrections folded into two scalars
  const double step_size = lr / bc1, inv_sqrt_bc2 = 1.0 / __builtin_sqrt(bc2);
  par_for(nblocks(n), (double)n * 4, [&](int b) {
    const int i0 = b * kBlock, i1 = min_(n, i0 + kBlock);
    for (int i = i0; i < i1; i++) {
      const double gi = (double)g[i] * gs;
      double pi = p[i];
      pi -= decay * pi;
      const double mi = (float)(b1 * m[i] + (1.0 - b1) * gi);
      const double vi = (float)(b2 * v[i] + (1.0 - b2) * gi * gi);
      pi -= step_size * (mi / (__builtin_sqrt(vi) * inv_sqrt_bc2 + eps));
      m[i] = (float)mi;
      v[i] = (float)vi;
      p[i] = (float)pi;
    }
  });
}

EXPORT(ag_sgd) void ag_sgd(float* p, const float* g, float* buf, int n, double lr, double mom, double damp, int nesterov,
                           double wd, int first, double gs) {
  par_for(nblocks(n), (double)n * 2, [&](int b) {
    const int i0 = b * kBlock, i1 = min_(n, i0 + kBlock);
    for (int i = i0; i < i1; i++) {
      double gi = (double)g[i] * gs;
      if (wd != 0.0) gi += wd * (double)p[i];
      if (mom != 0.0) {
        const double bb = (float)(first ? gi : mom * (double)buf[i] + (1.0 - damp) * gi);
        buf[i] = (float)bb;
        gi = nesterov ? gi + mom * bb : bb;
      }
      p[i] = (float)((double)p[i] - lr * gi);
    }
  });
}

// ---- reductions ----
// Sums over the middle axis of (outer, n, inner) in float64, each output in the portable kernel's order (so the
// same bits), over strips of 256 inner elements.
EXPORT(ag_reduce_sum) void ag_reduce_sum(const float* x, int outer, int n, int inner, float* out) {
  constexpr int S = 256;
  const int strips = (inner + S - 1) / S;
  par_for(outer * strips, (double)outer * n * inner, [&](int w) {
    const int o = w / strips, i0 = (w % strips) * S, m = min_(S, inner - i0);
    double acc[S];
    for (int i = 0; i < m; i++) acc[i] = 0;
    const float* base = x + (size_t)o * n * inner + i0;
    for (int j = 0; j < n; j++) {
      const float* r = base + (size_t)j * inner;
      for (int i = 0; i < m; i++) acc[i] += r[i];
    }
    for (int i = 0; i < m; i++) out[(size_t)o * inner + i0 + i] = (float)acc[i];
  });
}
