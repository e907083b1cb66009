// 128-bit wasm SIMD vector math: native/vecmath.h's Cephes-style exp, tanh, sigmoid and normal cdf (for GELU)
// ported lane for lane from AVX2 to f32x4. wasm's base SIMD set has no fused multiply-add, so fmadd is a multiply
// then an add (one more rounding; the polynomials stay within a few float ulps), and the one place that needs an
// exact product (x*x in exp(-x^2/2)) uses Dekker's two-product.
#pragma once
#include "common.h"

namespace ag {

typedef v128_t F4;
static inline F4 v4(float x) { return wasm_f32x4_splat(x); }
static inline F4 add(F4 a, F4 b) { return wasm_f32x4_add(a, b); }
static inline F4 sub(F4 a, F4 b) { return wasm_f32x4_sub(a, b); }
static inline F4 mul(F4 a, F4 b) { return wasm_f32x4_mul(a, b); }
static inline F4 fmadd(F4 a, F4 b, F4 c) { return add(mul(a, b), c); }
static inline F4 fnmadd(F4 a, F4 b, F4 c) { return sub(c, mul(a, b)); }
static inline F4 vabs(F4 x) { return wasm_f32x4_abs(x); }
// mask ? a : b (mask lanes all ones or all zeros)
static inline F4 select(F4 mask, F4 a, F4 b) { return wasm_v128_bitselect(a, b, mask); }
// sign bit of s set ? a : b
static inline F4 select_sign(F4 s, F4 a, F4 b) { return select(wasm_i32x4_shr(s, 31), a, b); }

static inline F4 pow2i(v128_t n) { return wasm_i32x4_shl(wasm_i32x4_add(n, wasm_i32x4_splat(127)), 23); }

// exp(x): Cephes expf; result scaled in two steps so that denormal results and overflow to inf are right.
static inline F4 vexp(F4 x) {
  const F4 nanmask = wasm_f32x4_ne(x, x);
  F4 xc = wasm_f32x4_pmin(wasm_f32x4_pmax(x, v4(-104.0f)), v4(89.0f));
  F4 fx = wasm_f32x4_nearest(mul(xc, v4(1.44269504088896341f)));
  F4 r = fnmadd(fx, v4(0.693359375f), xc);
  r = fnmadd(fx, v4(-2.12194440e-4f), r);
  F4 y = v4(1.9875691500E-4f);
  y = fmadd(y, r, v4(1.3981999507E-3f));
  y = fmadd(y, r, v4(8.3334519073E-3f));
  y = fmadd(y, r, v4(4.1665795894E-2f));
  y = fmadd(y, r, v4(1.6666665459E-1f));
  y = fmadd(y, r, v4(5.0000001201E-1f));
  y = fmadd(y, mul(r, r), add(r, v4(1.0f)));
  v128_t n = wasm_i32x4_trunc_sat_f32x4(fx);
  v128_t n1 = wasm_i32x4_shr(n, 1);
  v128_t n2 = wasm_i32x4_sub(n, n1);
  y = mul(mul(y, pow2i(n1)), pow2i(n2));
  return select(nanmask, x, y);
}

// tanh(x): odd polynomial for |x| < 0.625, else sign(x) * (1 - 2/(exp(2|x|)+1)).
static inline F4 vtanh(F4 x) {
  const F4 sign = wasm_v128_and(x, v4(-0.0f));
  const F4 a = vabs(x);
  F4 z = mul(x, x);
  F4 p = v4(-5.70498872745E-3f);
  p = fmadd(p, z, v4(2.06390887954E-2f));
  p = fmadd(p, z, v4(-5.37397155531E-2f));
  p = fmadd(p, z, v4(1.33314422036E-1f));
  p = fmadd(p, z, v4(-3.33332819422E-1f));
  F4 small = fmadd(mul(p, z), x, x);
  F4 e = vexp(add(a, a));
  F4 big = sub(v4(1.0f), wasm_f32x4_div(v4(2.0f), add(e, v4(1.0f))));
  big = wasm_v128_or(big, sign);
  return select(wasm_f32x4_lt(a, v4(0.625f)), small, big);
}

// exp(-x*x/2) with the rounding error of x*x compensated (matters for |x| >= 3): Dekker's exact product.
static inline F4 vexp_neghalfsq(F4 x) {
  F4 s = mul(x, x);
  F4 c = mul(x, v4(4097.0f));
  F4 hi = sub(c, sub(c, x)), lo = sub(x, hi);
  F4 e = add(add(sub(mul(hi, hi), s), mul(add(hi, hi), lo)), mul(lo, lo));  // x*x - s
  F4 r = vexp(mul(v4(-0.5f), s));
  return fnmadd(mul(r, v4(0.5f)), e, r);  // r * (1 - e/2)
}

static inline F4 vnormcdf_tail_exp(F4 x) { return vexp_neghalfsq(wasm_f32x4_pmin(vabs(x), v4(14.5f))); }

static inline F4 vnormcdf_small(F4 z) {
  F4 zz = mul(z, z);
  F4 t = v4(7.853861353153693E-5f);
  t = fmadd(t, zz, v4(-8.010193625184903E-4f));
  t = fmadd(t, zz, v4(5.188327685732524E-3f));
  t = fmadd(t, zz, v4(-2.685381193529856E-2f));
  t = fmadd(t, zz, v4(1.128358514861418E-1f));
  t = fmadd(t, zz, v4(-3.761262582423300E-1f));
  t = fmadd(t, zz, v4(1.128379165726710E+0f));
  return fmadd(mul(z, t), v4(0.5f), v4(0.5f));
}

static inline bool all_below_one(F4 a) { return wasm_i32x4_all_true(wasm_f32x4_lt(a, v4(1.0f))); }

static inline F4 vnormcdf_e(F4 x, F4 e) {
  const F4 z = mul(x, v4(0.70710678118654752f));
  const F4 a = vabs(z);
  const F4 small = vnormcdf_small(z);
  if (all_below_one(a)) return small;
  F4 q = wasm_f32x4_div(v4(1.0f), wasm_f32x4_pmax(a, v4(1.0f)));
  F4 P = v4(8.096867561e-03f);
  P = fmadd(P, q, v4(-6.632242754e-02f));
  P = fmadd(P, q, v4(2.448147206e-01f));
  P = fmadd(P, q, v4(-5.317197927e-01f));
  P = fmadd(P, q, v4(7.307269789e-01f));
  P = fmadd(P, q, v4(-5.904442368e-01f));
  P = fmadd(P, q, v4(7.916633926e-02f));
  P = fmadd(P, q, v4(5.524968259e-01f));
  P = fmadd(P, q, v4(7.683010854e-04f));
  F4 R = v4(2.626462933e-01f);
  R = fmadd(R, q, v4(-6.308388202e-01f));
  R = fmadd(R, q, v4(5.100500137e-01f));
  R = fmadd(R, q, v4(2.252538858e-02f));
  R = fmadd(R, q, v4(-2.930454322e-01f));
  R = fmadd(R, q, v4(1.827186195e-03f));
  R = fmadd(R, q, v4(5.640464345e-01f));
  R = fmadd(R, q, v4(4.379489699e-06f));
  F4 poly = select(wasm_f32x4_lt(a, v4(2.0f)), P, R);
  F4 erfc = mul(e, poly);
  F4 half_erfc = mul(erfc, v4(0.5f));
  F4 big = select_sign(z, half_erfc, sub(v4(1.0f), half_erfc));
  F4 r = select(wasm_f32x4_lt(a, v4(1.0f)), small, big);
  return select(wasm_f32x4_ne(x, x), x, r);
}
static inline F4 vnormcdf(F4 x) {
  const F4 z = mul(x, v4(0.70710678118654752f));
  if (all_below_one(vabs(z))) return vnormcdf_small(z);
  return vnormcdf_e(x, vnormcdf_tail_exp(x));
}

static inline F4 vsigmoid(F4 x) {
  const F4 e = vexp(sub(v4(0.0f), vabs(x)));
  const F4 r = wasm_f32x4_div(v4(1.0f), add(v4(1.0f), e));
  return select_sign(x, mul(e, r), r);
}

// Applies f over n floats, 4 at a time, the tail through a padded buffer.
template <class F>
static inline void vmap(const float* x, float* out, size_t n, F f) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(out + i, f(wasm_v128_load(x + i)));
  if (i < n) {
    float t[4] __attribute__((aligned(16))) = {0, 0, 0, 0};
    for (size_t j = i; j < n; j++) t[j - i] = x[j];
    wasm_v128_store(t, f(wasm_v128_load(t)));
    for (size_t j = i; j < n; j++) out[j] = t[j - i];
  }
}

}  // namespace ag
