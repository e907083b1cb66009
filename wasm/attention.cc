// Fused scaled-dot-product attention, forward and backward: native/attention.cc with this module's sgemm in place
// of cblas_sgemm and f32x4 in place of AVX2. Each (batch, kv head) pair is one independent problem (the query
// heads sharing a kv head run in the same task, so dK/dV accumulate without races); pairs are spread over the
// threads. P is not kept: the forward pass stores each row's max and 1/sum and the backward pass rebuilds P
// bit for bit from a recomputed S.
#include "vecmath.h"

namespace ag {
namespace {

struct Shape {
  int B, H, Hkv, Tq, Tk, D, Dv;
  int qs[3], ks[3], vs[3], os[3];
  float scale;
  int causal;
};

// exp(s[j] - mx) * mul over j < visible, 0 where the key mask is set; adds the unscaled exponentials to *sum.
inline void exp_row(float* s, int visible, const float* km, float mx, float mul_, double* sum) {
  const F4 vmx = v4(mx), vmul = v4(mul_), zero = v4(0.f);
  v128_t acc = wasm_f64x2_splat(0.0);
  float ts[4] __attribute__((aligned(16))), tk[4] __attribute__((aligned(16)));
  for (int j = 0; j < visible; j += 4) {
    const int w = min_(4, visible - j);
    F4 x, keep;
    if (w == 4) {
      x = wasm_v128_load(s + j);
      keep = km ? wasm_f32x4_eq(wasm_v128_load(km + j), zero) : wasm_i32x4_splat(-1);
    } else {
      for (int t = 0; t < 4; t++) { ts[t] = t < w ? s[j + t] : mx; tk[t] = t < w && (!km || km[j + t] == 0.f) ? 0.f : 1.f; }
      x = wasm_v128_load(ts);
      keep = wasm_f32x4_eq(wasm_v128_load(tk), zero);
    }
    const F4 e = wasm_v128_and(vexp(sub(x, vmx)), keep);
    acc = wasm_f64x2_add(acc, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(e),
                                             wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(e, e, 2, 3, 0, 1))));
    const F4 r = mul(e, vmul);
    if (w == 4) wasm_v128_store(s + j, r);
    else { wasm_v128_store(ts, r); for (int t = 0; t < w; t++) s[j + t] = ts[t]; }
  }
  if (sum) *sum += wasm_f64x2_extract_lane(acc, 0) + wasm_f64x2_extract_lane(acc, 1);
}

inline void softmax_row(float* s, int n, int visible, const float* km, float* st) {
  float mx = -__builtin_inff();
  for (int j = 0; j < visible; j++) {
    if (km && km[j] != 0.f) continue;
    if (s[j] > mx) mx = s[j];
  }
  if (mx == -__builtin_inff()) {
    for (int j = 0; j < n; j++) s[j] = 0.f;
    st[0] = 0.f;
    st[1] = 0.f;
    return;
  }
  double sum = 0;
  exp_row(s, visible, km, mx, 1.f, &sum);
  for (int j = visible; j < n; j++) s[j] = 0.f;
  const float inv = (float)(1.0 / sum);
  for (int j = 0; j < visible; j++) s[j] *= inv;
  st[0] = mx;
  st[1] = inv;
}

inline void rebuild_row(float* s, int n, int visible, const float* km, const float* st) {
  const float mx = st[0], inv = st[1];
  if (inv == 0.f) {
    for (int j = 0; j < n; j++) s[j] = 0.f;
    return;
  }
  exp_row(s, visible, km, mx, inv, nullptr);
  for (int j = visible; j < n; j++) s[j] = 0.f;
}

inline int visible_keys(const Shape& p, int i) {
  return max_(p.causal ? min_(p.Tk, p.Tk - p.Tq + i + 1) : p.Tk, 0);
}

// The first key query i may see (fk: this batch row's first allowed keys, or null; packed rows: its document's
// start), clamped to [0, visible].
inline int first_key(const int* fk, int i, int visible) {
  return fk ? min_(max_(fk[i], 0), visible) : 0;
}

// Row i of P in place: softmax over keys [lo, visible), 0 elsewhere (rebuild: from the forward pass's statistics).
inline void softmax_at(float* row, int n, int visible, int lo, const float* km, float* st) {
  softmax_row(row + lo, n - lo, visible - lo, km ? km + lo : nullptr, st);
  for (int j = 0; j < lo; j++) row[j] = 0.f;
}
inline void rebuild_at(float* row, int n, int visible, int lo, const float* km, const float* st) {
  rebuild_row(row + lo, n - lo, visible - lo, km ? km + lo : nullptr, st);
  for (int j = 0; j < lo; j++) row[j] = 0.f;
}

struct Task {
  const Shape* p;
  const float *q, *k, *v, *keymask;
  const int* firstkey;
  const float *stats_in, *dout;
  float *out, *stats, *dq, *dk, *dv;
  const int* dos;
  float* scratch;  // per thread: 2 * Tq * Tk floats
  Counter pairs;   // (batch, kv head) pairs
};

// Causal attention runs each head's products by blocks of kRowBlock query rows, each over the keys its last row
// sees: the scores above the diagonal are never computed (about 3/8 of the products at T = 128), nor multiplied
// (P is 0 there). Rows [i0, i1) read keys [0, keys_for(p, i1)).
constexpr int kRowBlock = 32;
inline int row_block(const Shape& p) { return p.causal ? min_(kRowBlock, p.Tq) : p.Tq; }
inline int keys_for(const Shape& p, int i1) { return p.causal ? visible_keys(p, i1 - 1) : p.Tk; }

void forward_task(void* ctx, int tid, int) {
  Task& t = *(Task*)ctx;
  const Shape& p = *t.p;
  const int groups = p.H / p.Hkv, rb = row_block(p);
  float* P = t.scratch + (size_t)tid * 2 * p.Tq * p.Tk;
  for (int bk; (bk = t.pairs.take()) >= 0;) {
    const int b = bk / p.Hkv, hk = bk % p.Hkv;
    const float* K = t.k + (size_t)b * p.ks[0] + (size_t)hk * p.ks[1];
    const float* V = t.v + (size_t)b * p.vs[0] + (size_t)hk * p.vs[1];
    const float* km = t.keymask ? t.keymask + (size_t)b * p.Tk : nullptr;
    const int* fk = t.firstkey ? t.firstkey + (size_t)b * p.Tq : nullptr;
    for (int g = 0; g < groups; g++) {
      const int h = hk * groups + g;
      const float* Q = t.q + (size_t)b * p.qs[0] + (size_t)h * p.qs[1];
      float* st = t.stats + ((size_t)b * p.H + h) * p.Tq * 2;
      float* O = t.out + (size_t)b * p.os[0] + (size_t)h * p.os[1];
      for (int i0 = 0; i0 < p.Tq; i0 += rb) {
        const int i1 = min_(p.Tq, i0 + rb), kv = keys_for(p, i1);
        float* Pb = P + (size_t)i0 * p.Tk;
        sgemm(tid, false, true, i1 - i0, kv, p.D, p.scale, Q + (size_t)i0 * p.qs[2], p.qs[2], K, p.ks[2], 0.f, Pb, p.Tk);
        for (int i = i0; i < i1; i++) {
          const int vis = visible_keys(p, i);
          softmax_at(P + (size_t)i * p.Tk, p.Tk, vis, first_key(fk, i, vis), km, st + i * 2);
        }
        sgemm(tid, false, false, i1 - i0, p.Dv, kv, 1.f, Pb, p.Tk, V, p.vs[2], 0.f, O + (size_t)i0 * p.os[2], p.os[2]);
      }
    }
  }
}

// Rows [0, rows) of a strided (rows, cols) matrix set to 0.
inline void zero_rows(float* x, int rows, int cols, int ld) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) x[(size_t)r * ld + c] = 0.f;
}

void backward_task(void* ctx, int tid, int) {
  Task& t = *(Task*)ctx;
  const Shape& p = *t.p;
  const int groups = p.H / p.Hkv, rb = row_block(p);
  float* P = t.scratch + (size_t)tid * 2 * p.Tq * p.Tk;
  float* dS = P + (size_t)p.Tq * p.Tk;
  const int* dos = t.dos;
  for (int bk; (bk = t.pairs.take()) >= 0;) {
    const int b = bk / p.Hkv, hk = bk % p.Hkv;
    const float* K = t.k + (size_t)b * p.ks[0] + (size_t)hk * p.ks[1];
    const float* V = t.v + (size_t)b * p.vs[0] + (size_t)hk * p.vs[1];
    float* dK = t.dk + (size_t)b * p.ks[0] + (size_t)hk * p.ks[1];
    float* dV = t.dv + (size_t)b * p.vs[0] + (size_t)hk * p.vs[1];
    const float* km = t.keymask ? t.keymask + (size_t)b * p.Tk : nullptr;
    const int* fk = t.firstkey ? t.firstkey + (size_t)b * p.Tq : nullptr;
    if (rb < p.Tq) {  // the row blocks add into dK and dV
      zero_rows(dK, p.Tk, p.D, p.ks[2]);
      zero_rows(dV, p.Tk, p.Dv, p.vs[2]);
    }
    for (int g = 0; g < groups; g++) {
      const int h = hk * groups + g;
      const float* Q = t.q + (size_t)b * p.qs[0] + (size_t)h * p.qs[1];
      const float* st = t.stats_in + ((size_t)b * p.H + h) * p.Tq * 2;
      const float* dO = t.dout + (size_t)b * dos[0] + (size_t)h * dos[1];
      float* dQ = t.dq + (size_t)b * p.qs[0] + (size_t)h * p.qs[1];
      for (int i0 = 0; i0 < p.Tq; i0 += rb) {
        const int i1 = min_(p.Tq, i0 + rb), m = i1 - i0, kv = keys_for(p, i1);
        const float beta = g == 0 && rb == p.Tq ? 0.f : 1.f;  // blocked: dK, dV zeroed above
        float *Pb = P + (size_t)i0 * p.Tk, *dSb = dS + (size_t)i0 * p.Tk;
        const float *Qb = Q + (size_t)i0 * p.qs[2], *dOb = dO + (size_t)i0 * dos[2];
        sgemm(tid, false, true, m, kv, p.D, p.scale, Qb, p.qs[2], K, p.ks[2], 0.f, Pb, p.Tk);
        for (int i = i0; i < i1; i++) {
          const int vis = visible_keys(p, i);
          rebuild_at(P + (size_t)i * p.Tk, p.Tk, vis, first_key(fk, i, vis), km, st + i * 2);
        }
        sgemm(tid, true, false, kv, p.Dv, m, 1.f, Pb, p.Tk, dOb, dos[2], beta, dV, p.vs[2]);
        sgemm(tid, false, true, m, kv, p.Dv, 1.f, dOb, dos[2], V, p.vs[2], 0.f, dSb, p.Tk);
        for (int i = i0; i < i1; i++) {
          float* r = dS + (size_t)i * p.Tk;
          const float* pr = P + (size_t)i * p.Tk;
          double dot = 0;
          for (int j = 0; j < kv; j++) dot += (double)r[j] * pr[j];
          const float d = (float)dot;
          for (int j = 0; j < kv; j++) r[j] = pr[j] * (r[j] - d) * p.scale;
        }
        sgemm(tid, false, false, m, p.D, kv, 1.f, dSb, p.Tk, K, p.ks[2], 0.f, dQ + (size_t)i0 * p.qs[2], p.qs[2]);
        sgemm(tid, true, false, kv, p.D, m, 1.f, dSb, p.Tk, Qb, p.qs[2], beta, dK, p.ks[2]);
      }
    }
  }
}

int threads_for_shape(const Shape& p) {
  const double work = (double)p.B * p.H * p.Tq * p.Tk * (p.D + p.Dv) / 16;
  return min_(threads_for(work), p.B * p.Hkv);
}

}  // namespace
}  // namespace ag

using namespace ag;

// shape: ints {B, H, Hkv, Tq, Tk, D, Dv, qs[3], ks[3], vs[3], os[3], causal} and the scale; keymask (B, Tk) and
// firstkey (B, Tq) may be null.
EXPORT(ag_attention) int ag_attention(const int* shape, float scale, const float* q, const float* k, const float* v,
                                      const float* keymask, const int* firstkey, float* out, float* stats) {
  Shape p;
  __builtin_memcpy(&p, shape, 7 * 4 + 12 * 4);
  p.causal = shape[19];
  p.scale = scale;
  const int nt = threads_for_shape(p);
  float* scratch = (float*)alloc_bytes((size_t)nt * 2 * p.Tq * p.Tk * 4);
  if (!scratch) return -1;
  Task t{&p, q, k, v, keymask, firstkey, nullptr, nullptr, out, stats, nullptr, nullptr, nullptr, nullptr, scratch, {0, p.B * p.Hkv}};
  parallel(forward_task, &t, nt);
  return 0;
}

EXPORT(ag_attention_backward) int ag_attention_backward(const int* shape, float scale, const float* q, const float* k,
                                                        const float* v, const float* keymask, const int* firstkey, const float* stats,
                                                        const float* dout, const int* dos, float* dq, float* dk, float* dv) {
  Shape p;
  __builtin_memcpy(&p, shape, 7 * 4 + 12 * 4);
  p.causal = shape[19];
  p.scale = scale;
  const int nt = threads_for_shape(p);
  float* scratch = (float*)alloc_bytes((size_t)nt * 2 * p.Tq * p.Tk * 4);
  if (!scratch) return -1;
  Task t{&p, q, k, v, keymask, firstkey, stats, dout, nullptr, nullptr, dq, dk, dv, dos, scratch, {0, p.B * p.Hkv}};
  parallel(backward_task, &t, nt);
  return 0;
}
