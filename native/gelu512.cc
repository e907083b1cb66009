// The MLP activations (gelu, gelu_tanh, silu: value, and value with derivative) in 16 lanes of AVX-512, for the CPUs
// that have it (the AMX and AVX512-BF16 ones where bf16 autocast runs): vecmath.h's and elementwise.cc's functions
// operation for operation, so every lane gets the bits of the AVX2 path (test/bf16-kernels.test.ts compares the two
// over tails, huge values, infinities and NaN). They were arithmetic-bound: 2048 x 1024 values took 2.0-2.6 ms in AVX2
// on an Emerald Rapids (gelu's erfc branch: a division and two polynomials; the sigmoid's division), where casting
// the same bytes takes 0.55 ms. Built for AVX-512 by the pragma below, called only after use_avx512() has checked
// the CPU; AUTOGLM_NO_AVX512=1 keeps the AVX2 path (the tests' comparison).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>
#include "common.h"
#include "vecmath.h"
#include "vecmath512.h"

namespace ag {

bool use_avx512() {
  static const bool yes = [] {
    const char* e = getenv("AUTOGLM_NO_AVX512");
    if (e && e[0] == '1' && e[1] == 0) return false;
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}

#pragma GCC push_options
#pragma GCC target("avx512f")

namespace {
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kKappa = 0.044715f;

using v512::w;
using v512::horner16;
using v512::wexp;
inline __m512 wabs(__m512 x) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff))); }
inline __mmask16 sign_set(__m512 x) { return _mm512_cmplt_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512()); }

// vecmath.h's vnormcdf_tail_exp: exp(-x^2/2), |x| capped at 14.5, x*x's rounding error compensated
inline __m512 wtail_exp(__m512 x) {
  x = _mm512_min_ps(wabs(x), w(14.5f));
  __m512 s = _mm512_mul_ps(x, x);
  __m512 e = _mm512_fmsub_ps(x, x, s);
  __m512 r = wexp(_mm512_mul_ps(w(-0.5f), s));
  return _mm512_fnmadd_ps(_mm512_mul_ps(r, w(0.5f)), e, r);
}

// vecmath.h's vnormcdf_small and vnormcdf_e: Phi(x), e = wtail_exp(x)
inline __m512 wnormcdf_small(__m512 z) {
  __m512 zz = _mm512_mul_ps(z, z);
  __m512 t = horner16(zz, kErfSmall);
  return _mm512_fmadd_ps(_mm512_mul_ps(z, t), w(0.5f), w(0.5f));
}
inline __m512 wnormcdf_e(__m512 x, __m512 e) {
  const __m512 z = _mm512_mul_ps(x, w(0.70710678118654752f));
  const __m512 a = wabs(z);
  const __m512 small = wnormcdf_small(z);
  const __mmask16 below = _mm512_cmp_ps_mask(a, w(1.0f), _CMP_LT_OQ);
  if (below == 0xFFFF) return small;
  __m512 q = _mm512_div_ps(w(1.0f), _mm512_max_ps(a, w(1.0f)));
  __m512 P = horner16(q, kErfcP);
  __m512 R = horner16(q, kErfcR);
  __m512 poly = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, w(2.0f), _CMP_LT_OQ), R, P);
  __m512 erfc = _mm512_mul_ps(e, poly);
  __m512 half_erfc = _mm512_mul_ps(erfc, w(0.5f));
  __m512 big = _mm512_mask_blend_ps(sign_set(z), _mm512_sub_ps(w(1.0f), half_erfc), half_erfc);
  __m512 r = _mm512_mask_blend_ps(below, big, small);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r, x);
}
inline __m512 wnormcdf(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, w(0.70710678118654752f));
  if (_mm512_cmp_ps_mask(wabs(z), w(1.0f), _CMP_LT_OQ) == 0xFFFF) return wnormcdf_small(z);
  return wnormcdf_e(x, wtail_exp(x));
}
// vecmath.h's vsigmoid, elementwise.cc's vgelu_tanh_s (sigmoid(2u)), dsilu and dgelu_tanh
inline __m512 wsigmoid(__m512 x) {
  const __m512 e = wexp(_mm512_sub_ps(w(0.0f), wabs(x)));
  const __m512 r = _mm512_div_ps(w(1.0f), _mm512_add_ps(w(1.0f), e));
  return _mm512_mask_blend_ps(sign_set(x), r, _mm512_mul_ps(e, r));
}
inline __m512 wgelu_tanh_s(__m512 x) {
  __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  __m512 u2 = _mm512_mul_ps(_mm512_fmadd_ps(x3, w(kKappa), x), w(2.0f * kSqrt2OverPi));
  return wsigmoid(u2);
}
inline __m512 wdsilu(__m512 x, __m512 s) { return _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(w(1.0f), s), w(1.0f))); }
inline __m512 wdgelu_tanh(__m512 x, __m512 s) {
  __m512 du = _mm512_mul_ps(w(kSqrt2OverPi), _mm512_fmadd_ps(_mm512_mul_ps(x, x), w(3.0f * kKappa), w(1.0f)));
  __m512 t2 = _mm512_mul_ps(_mm512_mul_ps(w(2.0f), x), _mm512_mul_ps(s, _mm512_sub_ps(w(1.0f), s)));
  return _mm512_fmadd_ps(t2, du, s);
}
inline __mmask16 lanes(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }
}  // namespace

// y = f(x) over m values (one thread's block): gelu = x Phi(x), gelu_tanh = x sigmoid(2u), silu = x sigmoid(x)
void act_f32_avx512(int op, const float* x, float* y, int64_t m) {
  for (int64_t i = 0; i < m; i += 16) {
    const __mmask16 k = lanes(m - i);
    const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);  // a tail's missing lanes are 0, as vmap pads them
    const __m512 f = op == U_GELU ? wnormcdf(xv) : op == U_SILU ? wsigmoid(xv) : wgelu_tanh_s(xv);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(xv, f));
  }
}

// y = f(x) and d = f'(x) over m values (one thread's block), as vact_grad computes them
void act_grad_avx512(int op, const float* x, float* y, float* d, int64_t m) {
  for (int64_t i = 0; i < m; i += 16) {
    const __mmask16 k = lanes(m - i);
    const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
    if (op == U_GELU) {
      const __m512 e = wtail_exp(xv);
      const __m512 phi = wnormcdf_e(xv, e);
      _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(xv, phi));
      _mm512_mask_storeu_ps(d + i, k, _mm512_fmadd_ps(_mm512_mul_ps(xv, e), w(kInvSqrt2Pi), phi));
    } else if (op == U_SILU) {
      const __m512 s = wsigmoid(xv);
      _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(xv, s));
      _mm512_mask_storeu_ps(d + i, k, wdsilu(xv, s));
    } else {
      const __m512 s = wgelu_tanh_s(xv);
      _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(xv, s));
      _mm512_mask_storeu_ps(d + i, k, wdgelu_tanh(xv, s));
    }
  }
}

// exp(x - mx) over whole blocks of 16 from i on (while i + 16 <= n), written to e where e is set, and added in double
// to s0 (lanes 0-3 of each 8) and s1 (lanes 4-7) in nn.cc's sum_exp order: its 8-lane loop's bits, two blocks of 8 at
// a time. Returns where it stopped (nn.cc's loop goes on from there).
int64_t sum_exp_avx512(const float* x, int64_t i, int64_t n, float mx, float* e, __m256d* s0, __m256d* s1) {
  const __m512 m = w(mx);
  __m256d a = *s0, b = *s1;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = wexp(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
    if (e) _mm512_storeu_ps(e + i, v);
    const __m256 lo = _mm512_castps512_ps256(v), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(lo)));
    b = _mm256_add_pd(b, _mm256_cvtps_pd(_mm256_extractf128_ps(lo, 1)));
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(hi)));
    b = _mm256_add_pd(b, _mm256_cvtps_pd(_mm256_extractf128_ps(hi, 1)));
  }
  *s0 = a;
  *s1 = b;
  return i;
}

// y = exp(x) over whole blocks of 16 (vexp's bits); returns how many it did
// f32_to_bf16_x8's rule in 16 lanes (round to nearest even on the bits; NaN -> sign | 0x7fc0) for the whole blocks of
// 16 of n floats; returns how many it wrote. Not the AVX512-BF16 instruction: it treats subnormal inputs as zero.
int64_t f32_to_bf16_avx512(const float* s, uint16_t* d, int64_t n) {
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff), mag = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf = _mm512_set1_epi32(0x7f800000), sign = _mm512_set1_epi32(0x8000), quiet = _mm512_set1_epi32(0x7fc0);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_loadu_si512(s + i);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, half), _mm512_and_si512(hi, one)), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, mag), inf);
    const __m512i out = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_and_si512(hi, sign), quiet));
    _mm256_storeu_si256((__m256i*)(d + i), _mm512_cvtepi32_epi16(out));
  }
  return i;
}

int64_t exp_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, wexp(_mm512_loadu_ps(x + i)));
  return i;
}

#pragma GCC pop_options

}  // namespace ag
