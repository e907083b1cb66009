// AVX2/FMA vector math (x86-64-v3 baseline): exp, tanh, normal cdf (for gelu), with Cephes-style
// polynomials, accurate to a few float ulps (checked against float64 in the smoke test).
#pragma once
#include <immintrin.h>
#include <cstdint>

namespace ag {

bool use_avx512();  // gelu512.cc
int64_t f32_to_bf16_avx512(const float* s, uint16_t* d, int64_t n);

static inline __m256 v8(float x) { return _mm256_set1_ps(x); }

// The polynomials' coefficients, highest power first, shared with the AVX-512 copies of these functions (gelu512.cc):
// both evaluate them by horner8 / horner16, the same FMAs in the same order, so the two paths give the same bits.
constexpr float kExpPoly[6] = {1.9875691500E-4f, 1.3981999507E-3f, 8.3334519073E-3f, 4.1665795894E-2f, 1.6666665459E-1f,
                               5.0000001201E-1f};
// erf(z) / z in z^2 for |z| < 1
constexpr float kErfSmall[7] = {7.853861353153693E-5f, -8.010193625184903E-4f, 5.188327685732524E-3f, -2.685381193529856E-2f,
                                1.128358514861418E-1f, -3.761262582423300E-1f, 1.128379165726710E+0f};
// erfc(a) / exp(-a^2) in q = 1/a: on [0.5, 1] (1 <= a < 2) and on [0.1, 0.5]
constexpr float kErfcP[9] = {8.096867561e-03f, -6.632242754e-02f, 2.448147206e-01f, -5.317197927e-01f, 7.307269789e-01f,
                             -5.904442368e-01f, 7.916633926e-02f, 5.524968259e-01f, 7.683010854e-04f};
constexpr float kErfcR[8] = {2.626462933e-01f, -6.308388202e-01f, 5.100500137e-01f, 2.252538858e-02f, -2.930454322e-01f,
                             1.827186195e-03f, 5.640464345e-01f, 4.379489699e-06f};

// c[0] x^(N-1) + ... + c[N-1] by Horner's rule in FMAs
template <int N>
static inline __m256 horner8(__m256 x, const float (&c)[N]) {
  __m256 t = v8(c[0]);
#pragma GCC unroll 16
  for (int i = 1; i < N; i++) t = _mm256_fmadd_ps(t, x, v8(c[i]));
  return t;
}

// sum_i a[i] * b[i] in double (vectorised; a fixed order for a given build)
static inline double dot_d(const float* a, const float* b, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
  return s;
}

// 2^n for integer n in [-126, 127] (as float vector)
static inline __m256 pow2i(__m256i n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

// exp(x): Cephes expf; result scaled in two steps so that denormal results and overflow to inf are right.
static inline __m256 vexp(__m256 x) {
  const __m256 nanmask = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, v8(-104.0f)), v8(89.0f));
  __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, v8(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, v8(0.693359375f), xc);
  r = _mm256_fnmadd_ps(fx, v8(-2.12194440e-4f), r);
  __m256 y = horner8(r, kExpPoly);
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, v8(1.0f)));
  __m256i n = _mm256_cvtps_epi32(fx);
  __m256i n1 = _mm256_srai_epi32(n, 1);
  __m256i n2 = _mm256_sub_epi32(n, n1);
  y = _mm256_mul_ps(_mm256_mul_ps(y, pow2i(n1)), pow2i(n2));
  return _mm256_blendv_ps(y, x, nanmask);
}

static inline __m256 vabs(__m256 x) { return _mm256_andnot_ps(v8(-0.0f), x); }

// tanh(x): odd polynomial for |x| < 0.625, else sign(x) * (1 - 2/(exp(2|x|)+1)).
static inline __m256 vtanh(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, v8(-0.0f));
  const __m256 a = vabs(x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = v8(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, v8(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, v8(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, v8(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, v8(-3.33332819422E-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  __m256 e = vexp(_mm256_add_ps(a, a));
  __m256 big = _mm256_sub_ps(v8(1.0f), _mm256_div_ps(v8(2.0f), _mm256_add_ps(e, v8(1.0f))));
  big = _mm256_or_ps(big, sign);
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, v8(0.625f), _CMP_LT_OQ));
}

// exp(-x*x/2) with the rounding error of x*x compensated (matters for |x| >= 3).
static inline __m256 vexp_neghalfsq(__m256 x) {
  __m256 s = _mm256_mul_ps(x, x);
  __m256 e = _mm256_fmsub_ps(x, x, s);  // x*x - s exactly
  __m256 r = vexp(_mm256_mul_ps(v8(-0.5f), s));
  return _mm256_fnmadd_ps(_mm256_mul_ps(r, v8(0.5f)), e, r);  // r * (1 - e/2)
}

// exp(-x*x/2) as Phi's tail needs it (|x| capped at 14.5, past which it is 0 in float anyway). GELU's backward
// pass shares it between Phi(x) and the density phi(x) = it / sqrt(2 pi).
static inline __m256 vnormcdf_tail_exp(__m256 x) { return vexp_neghalfsq(_mm256_min_ps(vabs(x), _mm256_set1_ps(14.5f))); }

// Phi for |z| < 1, z = x / sqrt2: 0.5 + 0.5 erf(z), erf(z) = z * T(z^2).
static inline __m256 vnormcdf_small(__m256 z) {
  __m256 zz = _mm256_mul_ps(z, z);
  __m256 t = horner8(zz, kErfSmall);
  return _mm256_fmadd_ps(_mm256_mul_ps(z, t), v8(0.5f), v8(0.5f));
}

static inline bool all_below_one(__m256 a) { return _mm256_movemask_ps(_mm256_cmp_ps(a, v8(1.0f), _CMP_LT_OQ)) == 0xFF; }

// Phi(x) = 0.5 * (1 + erf(x / sqrt2)), accurate in relative terms also in the far left tail (erfc form); `e` is
// vnormcdf_tail_exp(x). When all 8 lanes have |x| < sqrt2 (most activations), the tail branch is skipped.
static inline __m256 vnormcdf_e(__m256 x, __m256 e) {
  const __m256 z = _mm256_mul_ps(x, v8(0.70710678118654752f));
  const __m256 a = vabs(z);
  const __m256 small = vnormcdf_small(z);
  if (all_below_one(a)) return small;  // (a NaN lane fails the test and takes the full path)
  // |z| >= 1: erfc(a) = exp(-a^2) * poly(1/a), least-squares fits in q = 1/a on [0.5, 1] and [0.1, 0.5]
  __m256 q = _mm256_div_ps(v8(1.0f), _mm256_max_ps(a, v8(1.0f)));
  __m256 P = horner8(q, kErfcP);
  __m256 R = horner8(q, kErfcR);
  __m256 poly = _mm256_blendv_ps(R, P, _mm256_cmp_ps(a, v8(2.0f), _CMP_LT_OQ));
  __m256 erfc = _mm256_mul_ps(e, poly);
  __m256 half_erfc = _mm256_mul_ps(erfc, v8(0.5f));
  __m256 big = _mm256_blendv_ps(_mm256_sub_ps(v8(1.0f), half_erfc), half_erfc, z);  // sign bit of z selects
  __m256 r = _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, v8(1.0f), _CMP_LT_OQ));
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
static inline __m256 vnormcdf(__m256 x) {
  const __m256 z = _mm256_mul_ps(x, v8(0.70710678118654752f));
  if (all_below_one(vabs(z))) return vnormcdf_small(z);  // no exp needed
  return vnormcdf_e(x, vnormcdf_tail_exp(x));
}

// sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) for x < 0, with e = exp(-|x|): never overflows, keeps the tiny left tail.
static inline __m256 vsigmoid(__m256 x) {
  const __m256 e = vexp(_mm256_sub_ps(v8(0.0f), vabs(x)));
  const __m256 r = _mm256_div_ps(v8(1.0f), _mm256_add_ps(v8(1.0f), e));
  return _mm256_blendv_ps(r, _mm256_mul_ps(e, r), x);  // sign bit of x selects e/(1+e)
}

// Applies f (a __m256 -> __m256 lambda) over n floats, 8 at a time, the tail through a padded buffer.
template <class F>
static inline void vmap(const float* x, float* out, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = i; j < n; j++) t[j - i] = x[j];
    __m256 r = f(_mm256_load_ps(t));
    _mm256_store_ps(t, r);
    for (int64_t j = i; j < n; j++) out[j] = t[j - i];
  }
}

// 8 floats to bf16 with f32_to_bf16's rule exactly (round to nearest even; NaN -> sign | 0x7fc0), as 8 u32 lanes
static inline __m256i f32_to_bf16_x8(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  const __m256i qnan = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000)), _mm256_set1_epi32(0x7fc0));
  return _mm256_blendv_epi8(rounded, qnan, nan);
}
// n floats to bf16 (f32_to_bf16's rule), 16 at a time (in 16 lanes where the CPU has AVX-512: the same bits), the
// tail through a padded buffer
static inline void f32_to_bf16_row(const float* s, uint16_t* d, int64_t n) {
  int64_t i = n >= 32 && use_avx512() ? f32_to_bf16_avx512(s, d, n) : 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i lo = f32_to_bf16_x8(_mm256_loadu_ps(s + i)), hi = f32_to_bf16_x8(_mm256_loadu_ps(s + i + 8));
    // packus interleaves the 128-bit lanes (lo0-3 hi0-3 lo4-7 hi4-7); the permute puts them in order
    _mm256_storeu_si256((__m256i*)(d + i), _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8));
  }
  if (i < n) {
    alignas(32) float t[16] = {0};
    alignas(32) uint16_t h[16];
    for (int64_t j = i; j < n; j++) t[j - i] = s[j];
    const __m256i lo = f32_to_bf16_x8(_mm256_load_ps(t)), hi = f32_to_bf16_x8(_mm256_load_ps(t + 8));
    _mm256_store_si256((__m256i*)h, _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8));
    for (int64_t j = i; j < n; j++) d[j] = h[j - i];
  }
}
// 8 bf16 values widened to f32 (exact)
static inline __m256 widen_bf16_x8(const uint16_t* h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)h)), 16));
}
static inline void bf16_to_f32_row(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, widen_bf16_x8(s + i));
  for (; i < n; i++) d[i] = bf16_to_f32(s[i]);
}
// n floats rounded to bf16 precision in f32 storage (the bits of f32_to_bf16_row's output widened); d may be s
static inline __m256 round_bf16_x8(__m256 x) { return _mm256_castsi256_ps(_mm256_slli_epi32(f32_to_bf16_x8(x), 16)); }
static inline void round_bf16_row(const float* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, round_bf16_x8(_mm256_loadu_ps(s + i)));
  if (i < n) {
    alignas(32) float t[8] = {0};
    for (int64_t j = i; j < n; j++) t[j - i] = s[j];
    _mm256_store_ps(t, round_bf16_x8(_mm256_load_ps(t)));
    for (int64_t j = i; j < n; j++) d[j] = t[j - i];
  }
}

}  // namespace ag
