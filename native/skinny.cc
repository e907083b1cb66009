// Products with one dimension of at most 16: the low-rank factors of LoRA (x A^T, (x A^T) B^T and their
// gradients at rank 8). OpenBLAS runs these at 12-23 GFLOP/s on this machine (2 cores, 2048 x 1024 x 8: 2.5 ms
// for a pass over 8 MB), because its kernels pack panels sized for large products. Each case below reads its big
// operand once, in order, with AVX2 FMAs over a small packed operand that stays in L1/L2, and is limited by memory
// bandwidth instead:
//   N small: C (M x r) = op(A) (M x K) Bp (K x r)      rows of C in registers, or (A stored K x M) C^T = Bp^T A
//                                                      with A's rows read in order, as below
//   M small: C (r x N) = Ap (r x K) op(B) (K x N)      B stored K x N: its rows split over threads, read in order,
//                                                      summed into per-thread accumulators; B stored N x K: dots
//   K small: C (M x N) = op(A) (M x r) Bp (r x N)      a rank-r update, rows of C split over threads
// Accumulation is in f32 with FMA, in k order, as sgemm's is.
#include <immintrin.h>
#include <algorithm>
#include <vector>
#include "common.h"

namespace ag {
namespace {

constexpr int64_t kSmall = 16;

inline float elemA(const float* a, const MatmulP& p, int64_t m, int64_t k) {
  return p.transA ? a[k * p.M + m] : a[m * p.K + k];
}
inline float elemB(const float* b, const MatmulP& p, int64_t k, int64_t n) {
  return p.transB ? b[n * p.K + k] : b[k * p.N + n];
}

// C = alpha * acc + beta * C for one row segment (beta = 0 never reads C).
inline void store_row(float* c, const float* acc, int64_t n, float alpha, float beta) {
  if (beta == 0.f) {
    for (int64_t j = 0; j < n; j++) c[j] = alpha * acc[j];
  } else {
    for (int64_t j = 0; j < n; j++) c[j] = alpha * acc[j] + beta * c[j];
  }
}

// acc (r x X) += P^T X-rows: acc[i][x] += sum over k in [k0, k1) of P[k * r + i] * src[k * ld + x]. Four rows of
// src are streamed together along x (prefetch-friendly), each 8 columns of acc loaded once for those four rows;
// acc (r x X) stays in L1/L2.
template <int MR>
void reduce_rows_mr(const float* src, int64_t ld, int64_t k0, int64_t k1, int64_t X, const float* P, int64_t r,
                    int64_t m0, float* acc) {
  const int64_t xv = X / 8 * 8;
  int64_t k = k0;
  for (; k + 4 <= k1; k += 4) {
    const float* s0 = src + k * ld;
    const float* s1 = s0 + ld;
    const float* s2 = s1 + ld;
    const float* s3 = s2 + ld;
    __m256 p0[MR], p1[MR], p2[MR], p3[MR];
    for (int i = 0; i < MR; i++) {
      p0[i] = _mm256_set1_ps(P[k * r + m0 + i]);
      p1[i] = _mm256_set1_ps(P[(k + 1) * r + m0 + i]);
      p2[i] = _mm256_set1_ps(P[(k + 2) * r + m0 + i]);
      p3[i] = _mm256_set1_ps(P[(k + 3) * r + m0 + i]);
    }
    for (int64_t j = 0; j < xv; j += 8) {
      const __m256 b0 = _mm256_loadu_ps(s0 + j), b1 = _mm256_loadu_ps(s1 + j);
      const __m256 b2 = _mm256_loadu_ps(s2 + j), b3 = _mm256_loadu_ps(s3 + j);
      for (int i = 0; i < MR; i++) {
        float* a = acc + (m0 + i) * X + j;
        __m256 v = _mm256_loadu_ps(a);
        v = _mm256_fmadd_ps(p0[i], b0, v);
        v = _mm256_fmadd_ps(p1[i], b1, v);
        v = _mm256_fmadd_ps(p2[i], b2, v);
        v = _mm256_fmadd_ps(p3[i], b3, v);
        _mm256_storeu_ps(a, v);
      }
    }
    for (int64_t j = xv; j < X; j++)
      for (int i = 0; i < MR; i++) {
        float v = acc[(m0 + i) * X + j];
        for (int64_t kk = k; kk < k + 4; kk++) v += P[kk * r + m0 + i] * src[kk * ld + j];
        acc[(m0 + i) * X + j] = v;
      }
  }
  for (; k < k1; k++)
    for (int i = 0; i < MR; i++) {
      const float pk = P[k * r + m0 + i];
      for (int64_t j = 0; j < X; j++) acc[(m0 + i) * X + j] += pk * src[k * ld + j];
    }
}

void reduce_rows(const float* src, int64_t ld, int64_t k0, int64_t k1, int64_t X, const float* P, int64_t r, float* acc) {
  for (int64_t m0 = 0; m0 < r; m0 += 8) {
    switch (std::min<int64_t>(8, r - m0)) {
      case 1: reduce_rows_mr<1>(src, ld, k0, k1, X, P, r, m0, acc); break;
      case 2: reduce_rows_mr<2>(src, ld, k0, k1, X, P, r, m0, acc); break;
      case 3: reduce_rows_mr<3>(src, ld, k0, k1, X, P, r, m0, acc); break;
      case 4: reduce_rows_mr<4>(src, ld, k0, k1, X, P, r, m0, acc); break;
      case 5: reduce_rows_mr<5>(src, ld, k0, k1, X, P, r, m0, acc); break;
      case 6: reduce_rows_mr<6>(src, ld, k0, k1, X, P, r, m0, acc); break;
      case 7: reduce_rows_mr<7>(src, ld, k0, k1, X, P, r, m0, acc); break;
      default: reduce_rows_mr<8>(src, ld, k0, k1, X, P, r, m0, acc); break;
    }
  }
}

// out (r x X) = P^T src over all K rows of src (ld apart), over deterministic row chunks (sum_chunk_rows).
void reduce_all_rows(const float* src, int64_t ld, int64_t K, int64_t X, const float* P, int64_t r, std::vector<float>& out) {
  const int64_t rows = sum_chunk_rows(K, 256);
  const int64_t nchunk = std::max<int64_t>(1, (K + rows - 1) / rows);
  std::vector<float> parts((size_t)(nchunk * r * X), 0.f);
#pragma omp parallel for schedule(static) if (nchunk > 1 && par(K * X))
  for (int64_t c = 0; c < nchunk; c++)
    reduce_rows(src, ld, c * rows, std::min(K, (c + 1) * rows), X, P, r, parts.data() + (size_t)c * r * X);
  out.assign(parts.begin(), parts.begin() + r * X);
  for (int64_t c = 1; c < nchunk; c++)
    for (int64_t i = 0; i < r * X; i++) out[i] += parts[(size_t)c * r * X + i];
}

// N <= 16. C = op(A) Bp with Bp = op(B) packed (K, ld): ld = 16 (zero-padded) for the register path, N otherwise.
void small_n(const float* a, const float* b, float* c, const MatmulP& p) {
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t ld = p.transA ? N : kSmall;
  std::vector<float> bp((size_t)(K * ld), 0.f);
  for (int64_t k = 0; k < K; k++)
    for (int64_t n = 0; n < N; n++) bp[k * ld + n] = elemB(b, p, k, n);
  const float* B = bp.data();
  const bool two = N > 8;
  if (!p.transA) {
    // 4 rows at a time: each packed row of B is loaded once for 4 rows of A.
    const int64_t blocks = (M + 3) / 4;
#pragma omp parallel for schedule(static) if (par(M * K))
    for (int64_t blk = 0; blk < blocks; blk++) {
      const int64_t m0 = blk * 4, rows = std::min<int64_t>(4, M - m0);
      __m256 lo[4], hi[4];
      for (int r = 0; r < 4; r++) lo[r] = hi[r] = _mm256_setzero_ps();
      const float* ar[4];
      for (int r = 0; r < 4; r++) ar[r] = a + (m0 + std::min<int64_t>(r, rows - 1)) * K;
      for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * kSmall);
        if (two) {
          const __m256 b1 = _mm256_loadu_ps(B + k * kSmall + 8);
          for (int r = 0; r < 4; r++) {
            const __m256 av = _mm256_broadcast_ss(ar[r] + k);
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
          }
        } else {
          for (int r = 0; r < 4; r++) lo[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(ar[r] + k), b0, lo[r]);
        }
      }
      alignas(32) float acc[16];
      for (int64_t r = 0; r < rows; r++) {
        _mm256_store_ps(acc, lo[r]);
        _mm256_store_ps(acc + 8, hi[r]);
        store_row(c + (m0 + r) * N, acc, N, p.alpha, p.beta);
      }
    }
    return;
  }
  // op(A) = A^T, A stored (K, M): C^T (N x M) = Bp^T A, A's rows read in order.
  std::vector<float> ct;
  reduce_all_rows(a, M, K, M, B, N, ct);
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      float* o = c + m * N + n;
      *o = p.beta == 0.f ? p.alpha * ct[n * M + m] : p.alpha * ct[n * M + m] + p.beta * *o;
    }
}

// M <= 16 (and N > 16). op(A) packed (K, M) (column k of op(A) per row) when B is read by rows, (M, K) for dots.
void small_m(const float* a, const float* b, float* c, const MatmulP& p) {
  const int64_t M = p.M, N = p.N, K = p.K;
  std::vector<float> ap((size_t)(K * M));
  if (!p.transB) {
    // B stored (K, N): its rows read in order.
    for (int64_t k = 0; k < K; k++)
      for (int64_t m = 0; m < M; m++) ap[k * M + m] = elemA(a, p, m, k);
    std::vector<float> acc;
    reduce_all_rows(b, N, K, N, ap.data(), M, acc);
    for (int64_t m = 0; m < M; m++) store_row(c + m * N, acc.data() + m * N, N, p.alpha, p.beta);
    return;
  }
  // B stored (N, K): C[m, n] = dot(row m of op(A), row n of B).
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) ap[m * K + k] = elemA(a, p, m, k);
  const float* At = ap.data();
#pragma omp parallel for schedule(static) if (par(N * K))
  for (int64_t n = 0; n < N; n++) {
    const float* brow = b + n * K;
    __m256 acc[kSmall];
    for (int64_t m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const __m256 bv = _mm256_loadu_ps(brow + k);
      for (int64_t m = 0; m < M; m++) acc[m] = _mm256_fmadd_ps(_mm256_loadu_ps(At + m * K + k), bv, acc[m]);
    }
    for (int64_t m = 0; m < M; m++) {
      alignas(32) float t[8];
      _mm256_store_ps(t, acc[m]);
      float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
      for (int64_t kk = k; kk < K; kk++) s += At[m * K + kk] * brow[kk];
      float* o = c + m * N + n;
      *o = p.beta == 0.f ? p.alpha * s : p.alpha * s + p.beta * *o;
    }
  }
}

// K <= 16 (M, N > 16): a rank-K update. Bp is (K, N) = op(B).
void small_k(const float* a, const float* b, float* c, const MatmulP& p) {
  const int64_t M = p.M, N = p.N, K = p.K;
  const float* B = b;
  std::vector<float> bp;
  if (p.transB) {
    bp.resize((size_t)(K * N));
    for (int64_t n = 0; n < N; n++)
      for (int64_t k = 0; k < K; k++) bp[k * N + n] = b[n * K + k];
    B = bp.data();
  }
  const int64_t nv = N / 8 * 8;
#pragma omp parallel for schedule(static) if (par(M * N))
  for (int64_t m = 0; m < M; m++) {
    float am[kSmall];
    for (int64_t k = 0; k < K; k++) am[k] = p.alpha * elemA(a, p, m, k);
    float* cr = c + m * N;
    const __m256 vbeta = _mm256_set1_ps(p.beta);
    for (int64_t j = 0; j < nv; j += 8) {
      __m256 s = p.beta == 0.f ? _mm256_setzero_ps() : _mm256_mul_ps(vbeta, _mm256_loadu_ps(cr + j));
      for (int64_t k = 0; k < K; k++) s = _mm256_fmadd_ps(_mm256_set1_ps(am[k]), _mm256_loadu_ps(B + k * N + j), s);
      _mm256_storeu_ps(cr + j, s);
    }
    for (int64_t j = nv; j < N; j++) {
      float s = p.beta == 0.f ? 0.f : p.beta * cr[j];
      for (int64_t k = 0; k < K; k++) s += am[k] * B[k * N + j];
      cr[j] = s;
    }
  }
}

}  // namespace

bool skinny_sgemm(const float* a, const float* b, float* c, const MatmulP& p) {
  const int64_t M = p.M, N = p.N, K = p.K;
  // Only where sgemm is measurably slow: one dimension <= 16, the other two large enough to matter.
  if (N <= kSmall && M * K >= 65536) { small_n(a, b, c, p); return true; }
  if (M <= kSmall && N * K >= 65536) { small_m(a, b, c, p); return true; }
  if (K <= kSmall && M * N >= 65536) { small_k(a, b, c, p); return true; }
  return false;
}

}  // namespace ag
