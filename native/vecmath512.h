// vecmath.h's exp and f32 -> bf16 rounding in 16 lanes of AVX-512, operation for operation (the same bits in every
// lane), for the files that run AVX-512 paths behind a CPU check (gelu512.cc, attention_amx.cc). Built for AVX-512 by
// the pragma below; call only where the CPU has it.
#pragma once
#include <immintrin.h>
#include "vecmath.h"

#pragma GCC push_options
#pragma GCC target("avx512f")

namespace ag {
namespace v512 {

inline __m512 w(float x) { return _mm512_set1_ps(x); }
// vecmath.h's horner8 in 16 lanes, over the same coefficient tables
template <int N>
inline __m512 horner16(__m512 x, const float (&c)[N]) {
  __m512 t = w(c[0]);
#pragma GCC unroll 16
  for (int i = 1; i < N; i++) t = _mm512_fmadd_ps(t, x, w(c[i]));
  return t;
}
inline __m512 pow2i(__m512i n) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23)); }

// vecmath.h's vexp
inline __m512 wexp(__m512 x) {
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  __m512 xc = _mm512_min_ps(_mm512_max_ps(x, w(-104.0f)), w(89.0f));
  __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(xc, w(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, w(0.693359375f), xc);
  r = _mm512_fnmadd_ps(fx, w(-2.12194440e-4f), r);
  __m512 y = horner16(r, kExpPoly);
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, w(1.0f)));
  __m512i n = _mm512_cvtps_epi32(fx);
  __m512i n1 = _mm512_srai_epi32(n, 1);
  __m512i n2 = _mm512_sub_epi32(n, n1);
  y = _mm512_mul_ps(_mm512_mul_ps(y, pow2i(n1)), pow2i(n2));
  return _mm512_mask_blend_ps(nan, y, x);
}

// vecmath.h's f32_to_bf16_x8 in 16 lanes (round to nearest even; NaN -> sign | 0x7fc0), as 16 u32 lanes
inline __m512i bf16_bits(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i qnan = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)), _mm512_set1_epi32(0x7fc0));
  return _mm512_mask_blend_epi32(nan, rounded, qnan);
}
// those bits widened back to f32 (the rounded value)
inline __m512 bf16_value(__m512i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16)); }

}  // namespace v512
}  // namespace ag

#pragma GCC pop_options
