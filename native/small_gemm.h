// Register-blocked f32 products for attention's per-head matrices (a few dozen to a few hundred rows, a head's
// 32-128 features), where a BLAS call's packing and dispatch cost as much as the arithmetic: OpenBLAS's sgemm ran
// these at 17-40 GFLOP/s on one Zen 3 core, against 65 for large products.
//
// C (m x n) = alpha * A B, or C += alpha * A B, where A(i, k) = A[i * ars + k * acs] (any strides: a row-major
// matrix or its transpose is read in place, one broadcast per element) and B(k, j) = B[k * ldb + j] (rows
// contiguous). 6 x 16 tiles (6 x 32 in AVX-512): 12 accumulators, two loads of B and six broadcasts of A per k, the tail columns
// through masked loads and stores.
//
// Every element of C is one chain of FMAs over k in ascending order from 0, then one product by alpha (then one sum
// with C): its bits depend on neither the tile it falls in nor m or n, so a caller may compute any subset of a
// matrix's rows and columns (attention's causal triangle, a recomputation in the backward pass) and get the same
// values as for the whole. Terms whose A(i, k) is zero add nothing (but with inf or NaN in B), so a caller may also
// skip a range of k where A is zero.
#pragma once
#include <immintrin.h>
#include <algorithm>
#include <cstdint>
#include <vector>

namespace ag {
bool use_avx512();  // gelu512.cc: the CPU has AVX-512 and AUTOGLM_NO_AVX512 is not 1
namespace sg {

// Lanes [0, n) of a 16-wide tile as two 8-lane masks
inline void tail_masks(int64_t n, __m256i* m0, __m256i* m1) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  *m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
  *m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n - 8), idx);
}

// c0[r], c1[r] += A(r, k) times B's row k (two 8-column halves, from load(k, &b0, &b1)) over k < K
template <int MR, class Load>
inline void fma_rows(int64_t K, const float* A, int64_t ars, int64_t acs, __m256* c0, __m256* c1, Load load) {
  for (int64_t k = 0; k < K; k++) {
    __m256 b0, b1;
    load(k, &b0, &b1);
    const float* a = A + k * acs;
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const __m256 x = _mm256_broadcast_ss(a + r * ars);
      c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
    }
  }
}

// Rows [0, MR) and columns [0, n) (n <= 16) of C from K terms
template <int MR>
inline void tile(int64_t K, const float* A, int64_t ars, int64_t acs, const float* B, int64_t ldb, int64_t n,
                 float alpha, float* C, int64_t ldc, bool accumulate) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_ps();
  if (n == 16) {
    fma_rows<MR>(K, A, ars, acs, c0, c1, [&](int64_t k, __m256* b0, __m256* b1) {
      *b0 = _mm256_loadu_ps(B + k * ldb);
      *b1 = _mm256_loadu_ps(B + k * ldb + 8);
    });
  } else {
    __m256i m0, m1;
    tail_masks(n, &m0, &m1);
    if (n > 8) {
      fma_rows<MR>(K, A, ars, acs, c0, c1, [&](int64_t k, __m256* b0, __m256* b1) {
        *b0 = _mm256_loadu_ps(B + k * ldb);
        *b1 = _mm256_maskload_ps(B + k * ldb + 8, m1);
      });
    } else {
      // one half: no second row of FMAs
      for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_maskload_ps(B + k * ldb, m0);
        const float* a = A + k * acs;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) c0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r * ars), b0, c0[r]);
      }
    }
  }
  const __m256 va = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    float* c = C + r * ldc;
    __m256 v0 = _mm256_mul_ps(c0[r], va), v1 = _mm256_mul_ps(c1[r], va);
    if (n == 16) {
      if (accumulate) { v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c)); v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8)); }
      _mm256_storeu_ps(c, v0);
      _mm256_storeu_ps(c + 8, v1);
    } else {
      __m256i m0, m1;
      tail_masks(n, &m0, &m1);
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_maskload_ps(c, m0));
        v1 = _mm256_add_ps(v1, _mm256_maskload_ps(c + 8, m1));
      }
      _mm256_maskstore_ps(c, m0, v0);
      _mm256_maskstore_ps(c + 8, m1, v1);
    }
  }
}

// tile in AVX-512, where the CPU has it (use_avx512), on panels of up to 32 columns (gemm's panels there): two
// 16-lane registers per row, so each broadcast of A feeds twice the columns it does in AVX2 (whose 6 x 16 tile is
// bound by those broadcasts as much as by its FMAs). Each element is the same chain of FMAs over k in ascending
// order, then the product by alpha and the sum with C: the same bits as tile's (test/helpers/attention-bits.ts).
template <int MR>
__attribute__((target("avx512f"))) void tile512(int64_t K, const float* A, int64_t ars, int64_t acs, const float* B,
                                                int64_t ldb, int64_t n, float alpha, float* C, int64_t ldc,
                                                bool accumulate) {
  const __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
  const __mmask16 m1 = n >= 32 ? (__mmask16)0xffff : n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1);
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  if (n > 16) {
    for (int64_t k = 0; k < K; k++) {
      const __m512 b0 = _mm512_loadu_ps(B + k * ldb), b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
      const float* a = A + k * acs;
#pragma GCC unroll 6
      for (int r = 0; r < MR; r++) {
        const __m512 x = _mm512_set1_ps(a[r * ars]);
        c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
        c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
      }
    }
  } else {
    for (int64_t k = 0; k < K; k++) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
      const float* a = A + k * acs;
#pragma GCC unroll 6
      for (int r = 0; r < MR; r++) c0[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * ars]), b0, c0[r]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    float* cr = C + r * ldc;
    __m512 v0 = _mm512_mul_ps(c0[r], va);
    if (accumulate) v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
    _mm512_mask_storeu_ps(cr, m0, v0);
    if (n > 16) {
      __m512 v1 = _mm512_mul_ps(c1[r], va);
      if (accumulate) v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
      _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
  }
}

template <int MR>
inline void tile_any(bool avx512, int64_t K, const float* A, int64_t ars, int64_t acs, const float* B, int64_t ldb,
                     int64_t n, float alpha, float* C, int64_t ldc, bool accumulate) {
  if (avx512) tile512<MR>(K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate);
  else tile<MR>(K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate);
}

// Rows [0, mr) (mr <= 6) of a column block of n columns: n <= 32 for the AVX-512 tiles (avx512), else n <= 16
inline void tile_rows(bool avx512, int64_t mr, int64_t K, const float* A, int64_t ars, int64_t acs, const float* B, int64_t ldb,
                      int64_t n, float alpha, float* C, int64_t ldc, bool accumulate) {
  switch (mr) {
    case 6: tile_any<6>(avx512, K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate); break;
    case 5: tile_any<5>(avx512, K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate); break;
    case 4: tile_any<4>(avx512, K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate); break;
    case 3: tile_any<3>(avx512, K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate); break;
    case 2: tile_any<2>(avx512, K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate); break;
    default: tile_any<1>(avx512, K, A, ars, acs, B, ldb, n, alpha, C, ldc, accumulate); break;
  }
}

// Per thread, kept between calls (one buffer for every instantiation of gemm)
inline std::vector<float>& pack_buffer() {
  thread_local std::vector<float> buf;
  return buf;
}

constexpr int64_t kMR = 6, kNR = 16, kPackSpan = 32768;

// C = alpha * A B (accumulate: C += alpha * A B) over m rows, n columns and K terms, where the rows [i0, i1) of one
// 6-row block need only the columns [c0, c1) given by cols(i0, i1, &c0, &c1) and the terms [k0, k1) given by
// terms(i0, i1, &k0, &k1) (both start as everything): attention's causal triangle (columns or terms past a block's
// last visible key), packed rows (keys before a block's earliest document start) and the zeros of P and dS that
// these leave (terms outside the queries that see a block of keys). The panels (32 columns for the AVX-512 tiles, 16 for AVX2's) that
// hold no needed column are not written.
template <class Cols, class Terms>
inline void gemm(int64_t m, int64_t n, int64_t K, float alpha, const float* A, int64_t ars, int64_t acs, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate, Cols cols, Terms terms) {
  // Where B's rows span more than kPackSpan bytes (they may lie a page or more apart and miss the TLB on every
  // term), B is first copied into contiguous 16-column panels, each K rows of 16. The rows of C go in chunks of about
  // 16 KiB of A, each chunk against every panel of B. Neither changes any arithmetic.
  const bool avx512 = use_avx512();
  const int64_t nr = avx512 ? 2 * kNR : kNR;
  const bool pack = m > 2 * kMR && K * ldb * (int64_t)sizeof(float) > kPackSpan;
  const int64_t panels = (n + nr - 1) / nr;
  std::vector<float>& packed = pack_buffer();
  if (pack) {
    if (packed.size() < (size_t)(panels * K * nr)) packed.resize((size_t)(panels * K * nr));
    for (int64_t p = 0; p < panels; p++) {
      const int64_t j0 = p * nr, w = std::min(nr, n - j0);
      float* dst = packed.data() + p * K * nr;
      for (int64_t k = 0; k < K; k++) std::copy(B + k * ldb + j0, B + k * ldb + j0 + w, dst + k * nr);
    }
  }
  const int64_t mc = std::max<int64_t>(kMR, 4096 / std::max<int64_t>(K, 1) / kMR * kMR);
  for (int64_t ic = 0; ic < m; ic += mc) {
    const int64_t ie = std::min(m, ic + mc);
    for (int64_t p = 0; p < panels; p++) {
      const int64_t j0 = p * nr, wmax = std::min(nr, n - j0);
      const float* Bp = pack ? packed.data() + p * K * nr : B + j0;
      const int64_t ldp = pack ? nr : ldb;
      for (int64_t i0 = ic; i0 < ie; i0 += kMR) {
        const int64_t i1 = std::min(ie, i0 + kMR);
        int64_t c0 = 0, c1 = n;
        cols(i0, i1, &c0, &c1);
        c1 = std::min(c1, n);
        if (j0 >= c1 || j0 + nr <= c0) continue;
        const int64_t w = std::min(wmax, c1 - j0);
        int64_t k0 = 0, k1 = K;
        terms(i0, i1, &k0, &k1);
        k0 = std::max<int64_t>(k0, 0);
        k1 = std::min(k1, K);
        float* c = C + i0 * ldc + j0;
        if (k1 <= k0) {
          // no terms: alpha * 0 (or C unchanged)
          if (!accumulate)
            for (int64_t i = i0; i < i1; i++) std::fill(C + i * ldc + j0, C + i * ldc + j0 + w, 0.f);
          continue;
        }
        tile_rows(avx512, i1 - i0, k1 - k0, A + i0 * ars + k0 * acs, ars, acs, Bp + k0 * ldp, ldp, w, alpha, c, ldc, accumulate);
      }
    }
  }
}

inline void all_cols(int64_t, int64_t, int64_t*, int64_t*) {}
inline void all_terms(int64_t, int64_t, int64_t*, int64_t*) {}

// dst (cols x rows, row stride ldd) = src (rows x cols, row stride lds) transposed, 8 x 8 blocks in registers
inline void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  int64_t r0 = 0;
  for (; r0 + 8 <= rows; r0 += 8) {
    int64_t c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8) {
      __m256 r[8];
      for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_ps(src + (r0 + t) * lds + c0);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + c0 * ldd + r0;
      _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; c0 < cols; c0++)
      for (int64_t t = 0; t < 8; t++) dst[c0 * ldd + r0 + t] = src[(r0 + t) * lds + c0];
  }
  for (; r0 < rows; r0++)
    for (int64_t c = 0; c < cols; c++) dst[c * ldd + r0] = src[r0 * lds + c];
}

}  // namespace sg
}  // namespace ag
