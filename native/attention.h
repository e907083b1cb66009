// Row helpers and the shape of the fused attention kernels (attention.cc: f32; attention_bf16.cc: bf16 products),
// shared so that both compute softmax rows, masks and statistics the same way. See attention.cc for the scheme.
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>
#include "args.h"
#include "vecmath.h"

namespace ag {
namespace attn {

// v's data, grown to n elements first where it holds fewer: per-thread scratch kept between calls (fresh buffers of a
// few MB each call come back from the OS as zeroed pages, whose faults cost more than the products)
template <class T>
T* sized(std::vector<T>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize((size_t)n);
  return v.data();
}

struct Shape {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int64_t qs[3], ks[3], vs[3], os[3];
  float scale;
  bool causal;
  const float* keymask;
  const int32_t* firstkey;
};

// exp(s[j] - mx) * mul over j < visible, 0 where the key mask is set, 8 lanes at a time (the tail through a
// padded buffer, so every element goes through the same vexp); adds the unscaled exponentials to *sum in double.
inline void exp_row(float* s, int64_t visible, const float* km, float mx, float mul, double* sum) {
  const __m256 vmx = _mm256_set1_ps(mx), vmul = _mm256_set1_ps(mul), zero = _mm256_setzero_ps();
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  alignas(32) float ts[8], tk[8];
  for (int64_t j = 0; j < visible; j += 8) {
    const int64_t w = std::min<int64_t>(8, visible - j);
    __m256 x, keep;
    if (w == 8) {
      x = _mm256_loadu_ps(s + j);
      keep = km ? _mm256_cmp_ps(_mm256_loadu_ps(km + j), zero, _CMP_EQ_OQ) : _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    } else {
      for (int t = 0; t < 8; t++) { ts[t] = t < w ? s[j + t] : mx; tk[t] = t < w && (!km || km[j + t] == 0.f) ? 0.f : 1.f; }
      x = _mm256_load_ps(ts);
      keep = _mm256_cmp_ps(_mm256_load_ps(tk), zero, _CMP_EQ_OQ);
    }
    const __m256 e = _mm256_and_ps(vexp(_mm256_sub_ps(x, vmx)), keep);
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    const __m256 r = _mm256_mul_ps(e, vmul);
    if (w == 8) _mm256_storeu_ps(s + j, r);
    else { _mm256_store_ps(ts, r); for (int t = 0; t < w; t++) s[j + t] = ts[t]; }
  }
  if (sum) {
    alignas(32) double d[4];
    _mm256_store_pd(d, _mm256_add_pd(acc0, acc1));
    *sum += (d[0] + d[1]) + (d[2] + d[3]);
  }
}

// The largest of s[j] over j < visible whose key is not masked (km[j] == 0), NaNs skipped; -inf if there is none
inline float row_max(const float* s, int64_t visible, const float* km) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m256 m = _mm256_set1_ps(ninf);
  const __m256 vninf = m, zero = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= visible; j += 8) {
    __m256 x = _mm256_loadu_ps(s + j);
    if (km) x = _mm256_blendv_ps(x, vninf, _mm256_cmp_ps(_mm256_loadu_ps(km + j), zero, _CMP_NEQ_UQ));
    m = _mm256_max_ps(x, m);  // a NaN in x gives m (the second operand)
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, m);
  float mx = ninf;
  for (int t = 0; t < 8; t++) mx = l[t] > mx ? l[t] : mx;
  for (; j < visible; j++) {
    if (km && km[j] != 0.f) continue;
    if (s[j] > mx) mx = s[j];
  }
  return mx;
}

// Masked softmax of one row of S in place. Writes the row's max and 1/sum to st[0], st[1], so that the backward
// pass rebuilds the same P from S bit for bit (see rebuild_row); a row whose keys are all masked is set to 0 and
// gets st[1] = 0.
inline void softmax_row(float* s, int64_t n, int64_t visible, const float* km, float* st) {
  const float mx = row_max(s, visible, km);
  if (mx == -std::numeric_limits<float>::infinity()) {
    std::memset(s, 0, n * sizeof(float));
    st[0] = 0.f;
    st[1] = 0.f;
    return;
  }
  double sum = 0;
  exp_row(s, visible, km, mx, 1.f, &sum);
  for (int64_t j = visible; j < n; j++) s[j] = 0.f;
  const float inv = (float)(1.0 / sum);
  const __m256 vinv = _mm256_set1_ps(inv);
  int64_t j = 0;
  for (; j + 8 <= visible; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), vinv));
  for (; j < visible; j++) s[j] *= inv;
  st[0] = mx;
  st[1] = inv;
}

// P from a recomputed row of S and the forward pass's statistics: the same operations as softmax_row (exp, then
// one rounding multiply by 1/sum).
inline void rebuild_row(float* s, int64_t n, int64_t visible, const float* km, const float* st) {
  const float mx = st[0], inv = st[1];
  if (inv == 0.f) {
    std::memset(s, 0, n * sizeof(float));
    return;
  }
  exp_row(s, visible, km, mx, inv, nullptr);
  for (int64_t j = visible; j < n; j++) s[j] = 0.f;
}

inline int64_t visible_keys(const Shape& p, int64_t i) {
  return std::max<int64_t>(p.causal ? std::min(p.Tk, p.Tk - p.Tq + i + 1) : p.Tk, 0);
}

// The first key query i may see (fk: this batch row's first allowed keys, or null), clamped to [0, visible].
inline int64_t first_key(const int32_t* fk, int64_t i, int64_t visible) {
  return fk ? std::min<int64_t>(std::max<int64_t>(fk[i], 0), visible) : 0;
}

// Row i of P in place: softmax over keys [lo, visible), 0 at [z0, lo) and [visible, z1), the keys past those left as
// they are (z0 <= lo <= visible <= z1; the f32 kernel zeroes only what its products read). rebuild_span: from the
// forward pass's statistics.
inline void softmax_span(float* row, int64_t z0, int64_t z1, int64_t visible, int64_t lo, const float* km, float* st) {
  softmax_row(row + lo, z1 - lo, visible - lo, km ? km + lo : nullptr, st);
  if (lo > z0) std::memset(row + z0, 0, (lo - z0) * sizeof(float));
}
inline void rebuild_span(float* row, int64_t z0, int64_t z1, int64_t visible, int64_t lo, const float* km, const float* st) {
  rebuild_row(row + lo, z1 - lo, visible - lo, km ? km + lo : nullptr, st);
  if (lo > z0) std::memset(row + z0, 0, (lo - z0) * sizeof(float));
}
// The whole row of n keys: 0 outside [lo, visible)
inline void softmax_at(float* row, int64_t n, int64_t visible, int64_t lo, const float* km, float* st) {
  softmax_span(row, 0, n, visible, lo, km, st);
}
inline void rebuild_at(float* row, int64_t n, int64_t visible, int64_t lo, const float* km, const float* st) {
  rebuild_span(row, 0, n, visible, lo, km, st);
}

// Reads the shape object {B, H, Hkv, Tq, Tk, D, Dv, qStrides, kStrides, vStrides, outStrides, scale, causal}.
inline Shape read_shape(const Args& a, size_t i) {
  if (!a.info[i].IsObject()) a.type_err(i, "an attention shape object");
  Napi::Object o = a.info[i].As<Napi::Object>();
  auto num = [&](const char* key) -> double {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) a.need(false, std::string("shape.") + key + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  auto strides = [&](const char* key, int64_t* out) {
    Napi::Value v = o.Get(key);
    if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) a.need(false, std::string("shape.") + key + " must be 3 strides");
    Napi::Array arr = v.As<Napi::Array>();
    for (uint32_t j = 0; j < 3; j++) {
      Napi::Value e = arr[j];
      if (!e.IsNumber()) a.need(false, std::string("shape.") + key + " must hold numbers");
      out[j] = (int64_t)e.As<Napi::Number>().DoubleValue();
      if (out[j] < 0) a.need(false, std::string("shape.") + key + " must be non-negative");
    }
  };
  Shape s{};
  s.B = (int64_t)num("B"); s.H = (int64_t)num("H"); s.Hkv = (int64_t)num("Hkv");
  s.Tq = (int64_t)num("Tq"); s.Tk = (int64_t)num("Tk"); s.D = (int64_t)num("D"); s.Dv = (int64_t)num("Dv");
  strides("qStrides", s.qs); strides("kStrides", s.ks); strides("vStrides", s.vs); strides("outStrides", s.os);
  s.scale = (float)num("scale");
  Napi::Value c = o.Get("causal");
  s.causal = c.IsBoolean() && c.As<Napi::Boolean>().Value();
  a.need(s.B > 0 && s.H > 0 && s.Hkv > 0 && s.Tq > 0 && s.Tk > 0 && s.D > 0 && s.Dv > 0, "every size must be positive");
  a.need(s.H % s.Hkv == 0, "H must be a multiple of Hkv");
  return s;
}

// The furthest element a (b, h, t, feature) view reaches, + 1.
inline int64_t extent(const int64_t* st, int64_t B, int64_t H, int64_t T, int64_t D) {
  return (B - 1) * st[0] + (H - 1) * st[1] + (T - 1) * st[2] + D;
}

}  // namespace attn

// attention_amx.cc: the bf16 kernel's arithmetic on AMX tiles, head by head, over q, k, v packed as attention_bf16.cc
// packs them ((B, H, T, D) dense bf16); amx_attention_takes says where it runs
bool amx_attention_available();
void amx_attention_enable(bool on);
bool amx_attention_takes(const attn::Shape& p);
// q, k, v f32, or bf16 with in16 (a projection written in bf16: its rows copied as they are); out f32, or bf16 with
// out16; dout likewise with dout16; dq, dk, dv f32, or bf16 with `bf16`
void amx_attention_forward(const attn::Shape& p, const void* q, const void* k, const void* v, bool in16, void* out,
                           bool out16, float* stats, uint16_t* ql, uint16_t* kl, uint16_t* vl);
void amx_attention_backward(const attn::Shape& p, const uint16_t* ql, const uint16_t* kl, const uint16_t* vl,
                            const float* stats, const void* dout, bool dout16, const int64_t* dos, void* dq, void* dk,
                            void* dv, bool bf16);
}  // namespace ag
